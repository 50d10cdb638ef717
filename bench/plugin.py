"""Plugin mode: lines/s through `lograven run --stdin` in rsyslog omprog's lockstep.

With `confirmMessages="on"` (operations.md, Plugin mode) rsyslog sends one
message and waits for lograven's `OK` before it sends the next, so every line
is scored alone: one `Detector.detect` call per line, not a batch. This
harness plays rsyslog: it starts `lograven run --stdin` (pinned to one core,
default bundle, syslog alerts off, JSON-lines alerts on, de-duplication off),
waits for the first `OK`, and from the other core writes generator lines one
at a time, each after the previous line's answer. Reported: the sustained
rate, the round-trip time per line (write → `OK` read), and the plugin's CPU
per line; in a worker on the same core, `Detector.detect` on one line at a
time against batches of 256, which is what the lockstep costs in scoring.
"""
from __future__ import annotations

import subprocess
import time

import yaml

from bench.common import (
    LOAD_CPU, MEASURE_CPU, PY, REPO, BenchError, Context, bench_env, percentile, pinned_here, pinner, proc_cpu_seconds,
    read_lines, row, run_worker,
)  # fmt: skip

TITLE = "Plugin mode (`run --stdin`, omprog lockstep: one line, then its OK)"


# ------------------------------------------------------------------ worker side
def detect_alone(bundle: str, data: str, lines: int, warmup: int) -> dict:
    """Microseconds per line of Detector.detect on one line per call, and on batches of 256."""
    from lograven.bundle import load_bundle
    from lograven.detector import Detector
    from lograven.parsing import Parser, decode_line

    parser = Parser("syslog")
    recs = []
    with open(data, "rb") as f:
        for raw in f:
            recs.append(parser.parse(decode_line(raw)[0]))
            if len(recs) >= warmup + lines:
                break
    out = {}
    for name, size in (("one_line_us", 1), ("batch_256_us", 256)):
        det = Detector(load_bundle(bundle))  # its own bundle: no autoencoder cache from the other pass
        for i in range(0, warmup, size):  # the autoencoder cache as warm as a running plugin's
            det.detect([("stdin", r) for r in recs[i : min(i + size, warmup)]])
        todo = recs[warmup:]
        t0 = time.perf_counter()
        for i in range(0, len(todo), size):
            det.detect([("stdin", r) for r in todo[i : i + size]])
        out[name] = (time.perf_counter() - t0) / max(len(todo), 1) * 1e6
    return out


# ------------------------------------------------------------------ driver side
def _plugin(root, model) -> subprocess.Popen:
    cfg = {
        "sources": [{"paths": ["/dev/null"], "format": "syslog", "stream": "file"}],
        "model": str(model),
        "state_dir": str(root / "state"),
        "alerts": {
            "syslog": {"enabled": False},
            "jsonl": {"enabled": True, "path": str(root / "alerts.jsonl")},
            "dedup_window_seconds": 0,
            "max_per_minute": 1_000_000_000,
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return subprocess.Popen(
        [PY, "-m", "lograven", "run", "--stdin", "--config", str(root / "config.yaml")], cwd=REPO, env=bench_env(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(root / "plugin.log", "wb"),
        preexec_fn=pinner(MEASURE_CPU),
    )  # fmt: skip


def run(ctx: Context) -> dict:
    model = ctx.default_model()
    n, warm = ctx.lines(20_000, 1_000), ctx.lines(2_000, 200)
    data = ctx.generated(n + warm)
    lines = read_lines(data, n + warm)
    root = ctx.work / "plugin"
    p = _plugin(root, model)
    assert p.stdin is not None and p.stdout is not None
    rtt: list[float] = []
    try:
        with pinned_here(LOAD_CPU):
            if p.stdout.readline().strip() != b"OK":
                raise BenchError(f"lograven run --stdin did not answer OK:\n{(root / 'plugin.log').read_text()[-2000:]}")
            w, r = p.stdin, p.stdout
            for i, line in enumerate(lines):
                if i == warm:
                    cpu0, t0 = proc_cpu_seconds(p.pid), time.perf_counter()
                t = time.perf_counter()
                w.write(line if line.endswith(b"\n") else line + b"\n")
                w.flush()
                answer = r.readline()
                if answer.strip() != b"OK":
                    raise BenchError(f"line {i + 1}: the plugin answered {answer!r}")
                if i >= warm:
                    rtt.append(time.perf_counter() - t)
            wall = time.perf_counter() - t0
            cpu = proc_cpu_seconds(p.pid) - cpu0
    finally:
        if p.stdin:
            p.stdin.close()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p.returncode != 0:
        raise BenchError(f"lograven run --stdin exited {p.returncode}:\n{(root / 'plugin.log').read_text()[-2000:]}")
    alone = run_worker("plugin", "detect_alone", {"bundle": str(model), "data": str(data), "lines": n, "warmup": warm})
    rate = n / wall
    us = [x * 1e6 for x in rtt]
    rows = [
        row("lines/s in lockstep (all three detectors)", rate, "lines/s", noisy=True,
            note=f"{n:,} generator lines after {warm:,} warm-up lines; the plugin pinned to CPU {MEASURE_CPU}, "
                 f"the sender to CPU {LOAD_CPU}"),
        row("round trip per line (line written → OK read), median", percentile(us, 50), "µs", noisy=True),
        row("round trip per line, p99", percentile(us, 99), "µs", noisy=True),
        row("plugin CPU per line", cpu / n * 1e6, "µs", noisy=True,
            note="reading, parsing, scoring, the alert sink, the answer"),
        row("  of which: Detector.detect on one line per call", alone["one_line_us"], "µs", noisy=True),
        row("  for comparison: Detector.detect in batches of 256, per line", alone["batch_256_us"], "µs", noisy=True),
    ]  # fmt: skip
    return {"title": TITLE, "rows": rows,
            "details": {"lines": n, "warmup": warm, "wall_s": wall, "cpu_s": cpu, "detect": alone}}
