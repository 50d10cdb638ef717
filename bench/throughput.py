"""Score throughput on one pinned core: types only, types + sequence, all three detectors.

Measured in a worker process pinned to one CPU with one BLAS thread. A pass
parses each line, keys its stream and runs `Detector.detect` in batches, as
`lograven score` does (without writing JSON); each configuration scores the
same lines once, after a short warm-up on other lines, so the autoencoder's
per-text cache is as warm as a running daemon's, not warmer. Models: the
default bundle (models/default), a bundle at the seeds' sizes (GRU 1024,
embeddings 256, BPE vocabulary up to 30,000), and, when ../shared/data is
present, a bundle trained on hdfs_dev.log with one stream per HDFS block.
The `lograven score` command end to end (JSON output to /dev/null) is timed too.
"""
from __future__ import annotations

from pathlib import Path

from bench.common import HDFS_FORMAT, HDFS_STREAM_KEY, MEASURE_CPU, PY, Context, bench_env, row, run_timed, run_worker

TITLE = "Score throughput (one pinned core)"
TARGET = 30_000  # lines/s with all detectors, this 2-core machine

VARIANTS = {
    "types only": {"sequence": False, "autoencoder": False},
    "types + sequence": {"sequence": True, "autoencoder": False},
    "all three detectors": {"sequence": True, "autoencoder": True},
}


# ------------------------------------------------------------------ worker side
def score(bundle: str, data: str, lines: int, warmup: int, sequence: bool, autoencoder: bool, max_seconds: float = 1e9,
          fmt: str = "syslog", stream: str = "file", batch_size: int = 1024) -> dict:  # fmt: skip
    """Parse + detect up to `lines` lines (after `warmup` others) in batches, stopping after the batch that
    passes `max_seconds`; wall and CPU rates."""
    import time

    from lograven.bundle import load_bundle
    from lograven.detector import Detector, DetectorSettings
    from lograven.parsing import Parser, StreamKey, decode_line

    texts = []
    with open(data, "rb") as f:
        for raw in f:
            texts.append(decode_line(raw)[0])
            if len(texts) >= warmup + lines:
                break
    det = Detector(load_bundle(bundle), DetectorSettings(sequence=sequence, autoencoder=autoencoder))
    parser, key = Parser(fmt), StreamKey(stream)

    def run(chunk: list[str], budget: float = 1e9) -> tuple[int, int, int]:
        unknown = anomalies = done = 0
        t0 = time.perf_counter()
        for s in range(0, len(chunk), batch_size):
            if time.perf_counter() - t0 > budget:
                break
            items = []
            for text in chunk[s : s + batch_size]:
                rec = parser.parse(text)
                items.append((key.key(data, rec, text), rec))
            for v in det.detect(items):
                unknown += v.type_id == 0
                anomalies += v.anomaly
            done += len(items)
        return unknown, anomalies, done

    run(texts[:warmup], max_seconds / 4)
    cache0 = len(det.ae._cache)
    w0, c0 = time.perf_counter(), time.process_time()
    unknown, anomalies, n = run(texts[warmup:], max_seconds)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "lines": n, "wall_s": wall, "cpu_s": cpu, "lines_per_s_wall": n / wall, "lines_per_s_cpu": n / cpu,
        "us_per_line_cpu": cpu / n * 1e6, "unknown_fraction": unknown / n, "anomaly_fraction": anomalies / n,
        "streams": len(det.states), "ae_texts_forwarded": len(det.ae._cache) - cache0 if autoencoder else 0,
        "batch_size": batch_size, "gru_units": det.seq.params.units, "n_types": det.seq.n_types_,
        "ae_vocab": det.ae.tokenizer_.vocab_size, "ae_length": det.ae.length_, "lograven_from": _lograven_file(),
    }  # fmt: skip


def _lograven_file() -> str:
    import lograven

    return lograven.__file__


# ------------------------------------------------------------------ driver side
def run(ctx: Context) -> dict:
    n, warm = ctx.lines(200_000, 20_000), ctx.lines(5_000, 500)
    budget = ctx.seconds(20.0, 1.0)
    data = ctx.generated(n + warm, seed=7)
    default = ctx.default_model()
    models = [("default", default)]
    seed = ctx.seed_size_bundle()
    models.append(("seed size", Path(seed["path"])))
    rows, details = [], {}
    for mname, bundle in models:
        for vname, flags in VARIANTS.items():
            r = run_worker("throughput", "score", {"bundle": str(bundle), "data": str(data), "lines": n, "warmup": warm,
                                                   "max_seconds": budget, **flags})
            details[f"{mname}/{vname}"] = r
            ctx.log(f"    {mname:9} {vname:20} {r['lines_per_s_wall']:9,.0f} lines/s wall, {r['lines_per_s_cpu']:9,.0f} per CPU-second")
            is_target = mname == "default" and vname == "all three detectors"
            rows.append(row(f"{mname} model, {vname}", r["lines_per_s_wall"], "lines/s",
                            target=f"≥ {TARGET:,}" if is_target else None,
                            ok=(r["lines_per_s_wall"] >= TARGET) if is_target else None,
                            note=f"{r['us_per_line_cpu']:.1f} µs CPU/line ({r['lines_per_s_cpu']:,.0f} lines per CPU-s)"
                                 + (f"; {r['ae_texts_forwarded']:,} distinct texts through the AE" if flags["autoencoder"] else ""),
                            noisy=True))  # fmt: skip
    for mname, _ in models:  # per-line cost of each detector, from the differences (no profiler overhead)
        t, ts, a = (details[f"{mname}/{v}"]["us_per_line_cpu"] for v in VARIANTS)
        rows.append(row(f"{mname} model: µs CPU per line by stage", t, "µs (types)",
                        note=f"parse + types {t:.1f}; sequence {ts - t:+.1f}; autoencoder {a - ts:+.1f} (differences of the rows above)",
                        noisy=True))  # fmt: skip
    # the daemon's batch size
    r = run_worker("throughput", "score", {"bundle": str(default), "data": str(data), "lines": n, "warmup": warm,
                                           "sequence": True, "autoencoder": True, "batch_size": 256,
                                           "max_seconds": budget})  # fmt: skip
    details["default/all three detectors/batch 256"] = r
    rows.append(row("default model, all three, batch 256 (the daemon's)", r["lines_per_s_wall"], "lines/s",
                    note=f"{r['us_per_line_cpu']:.1f} µs CPU/line", noisy=True))  # fmt: skip
    # real data: HDFS, one stream per block
    hb = ctx.hdfs_bundle()
    if hb is not None:
        src = Path(hb["summary"]["files"][0])
        total = sum(1 for _ in open(src, "rb"))
        warm_h = min(2_000, total // 10)
        r = run_worker("throughput", "score", {"bundle": hb["path"], "data": str(src), "lines": total - warm_h, "warmup": warm_h,
                                               "sequence": True, "autoencoder": True, "fmt": HDFS_FORMAT,
                                               "stream": f"regex:({HDFS_STREAM_KEY})", "max_seconds": budget})  # fmt: skip
        details["hdfs/all three detectors"] = r
        rows.append(row(f"HDFS ({src.name}, block-id streams), all three", r["lines_per_s_wall"], "lines/s",
                        note=f"{r['us_per_line_cpu']:.1f} µs CPU/line; {r['streams']:,} streams; scored on its own training file",
                        noisy=True))  # fmt: skip
    else:
        rows.append(row("HDFS (../shared/data) all three", None, note="skipped: ../shared/data not present"))
    # the CLI end to end, JSON verdicts to /dev/null; start-up measured on a one-line file and subtracted
    one = ctx.work / "data" / "one-line.log"
    one.write_text(data.open().readline())
    env = bench_env()
    cli = [PY, "-m", "lograven", "score", "--model", str(default)]
    t_start = run_timed(cli + [str(one)], cpu=MEASURE_CPU, env=env, sample_rss=False)
    n = ctx.lines(100_000, 10_000)
    cli_data = ctx.generated(n, seed=11)
    t_all = run_timed(cli + [str(cli_data)], cpu=MEASURE_CPU, env=env)
    if t_all["returncode"] != 0:
        raise RuntimeError(f"lograven score failed: {t_all['stderr'][-2000:]}")
    body = max(t_all["wall_s"] - t_start["wall_s"], 1e-9)
    details["cli"] = {"lines": n, "startup": t_start, "run": {k: v for k, v in t_all.items() if k != "rss_samples_mb"}}
    rows.append(row("`lograven score` CLI, all three, JSON to /dev/null", n / body, "lines/s",
                    note=f"start-up ({t_start['wall_s']:.2f} s) subtracted; {n / t_all['wall_s']:,.0f} lines/s including it; "
                         f"peak RSS {t_all['peak_rss_mb']:.0f} MB", noisy=True))  # fmt: skip
    ctx.shared["throughput"] = {k: v["lines_per_s_wall"] for k, v in details.items() if "lines_per_s_wall" in v}
    ctx.shared["throughput_details"] = details
    ctx.shared["throughput_cpu"] = {k: v["lines_per_s_cpu"] for k, v in details.items() if "lines_per_s_cpu" in v}
    return {"title": TITLE, "rows": rows, "details": details}
