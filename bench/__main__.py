"""`python -m bench`: run lograven's benchmark suite and write bench/results/<timestamp>.{json,md}.

Run it from the repository root with the project's virtualenv:

    .venv/bin/python -m bench                          # everything (about 20 minutes on 2 cores)
    .venv/bin/python -m bench --only throughput,latency
    .venv/bin/python -m bench --smoke                  # every benchmark for about a second
    .venv/bin/python -m bench --big                    # also train on 1M lines

Drain3 and LiteRT are measured only when installed (benchmark-only, not
project dependencies): `.venv/bin/pip install drain3 ai-edge-litert`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from bench.common import (
    DEFAULT_DATA, RESULTS, BenchError, Context, Skip, cpu_snapshot, format_exc, loadavg, machine_info, make_work_dir,
    now_stamp, other_cpu_busy, others_load, render_markdown, rmtree, snapshot_sources, uptime_text, write_results,
)  # fmt: skip

# name -> module; the order they run in (the daemon benchmarks last, training before memory reuses its run)
BENCHMARKS = {
    "throughput": "throughput",
    "baseline": "baseline",
    "drain": "drain",
    "runtime": "runtime_compare",
    "profile": "profile",
    "limits": "limits",
    "training": "training",
    "learn": "learning",
    "startup": "startup",
    "memory": "memory",
    "idle": "idle",
    "restart_memory": "restart_memory",
    "plugin": "plugin",
    "long_lines": "long_lines",
    "latency": "latency",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                 epilog="benchmarks: " + ", ".join(BENCHMARKS), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--only", help="comma-separated benchmarks to run (default: all)")
    ap.add_argument("--skip", help="comma-separated benchmarks not to run")
    ap.add_argument("--smoke", action="store_true", help="quick mode: each measurement about a second (checks the suite, not the numbers)")
    ap.add_argument("--big", action="store_true", help="also train on 1M lines (adds ~15 minutes)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="real data directory (default ../shared/data; skipped when absent)")
    ap.add_argument("--out", default=str(RESULTS), help="where results go (default bench/results)")
    ap.add_argument("--work", help="keep generated data and trained models here and reuse them (default: a temp dir, removed)")
    ap.add_argument("--json", action="store_true", help="print the result JSON path only")
    args = ap.parse_args(argv)

    names = list(BENCHMARKS)
    if args.only:
        want = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in want if n not in BENCHMARKS]
        if bad:
            ap.error(f"unknown benchmark(s) {bad}; choose from {', '.join(BENCHMARKS)}")
        names = [n for n in names if n in want]
    if args.skip:
        names = [n for n in names if n not in {s.strip() for s in args.skip.split(",")}]

    work, temporary = make_work_dir(args.work)
    source = snapshot_sources(work)
    data = Path(args.data)
    log = (lambda s: print(s, file=sys.stderr, flush=True))
    ctx = Context(smoke=args.smoke, big=args.big, work=work, data=data if data.is_dir() else None, log=log)
    out_dir = Path(args.out)
    result = {
        "stamp": now_stamp(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
        "big": args.big,
        "data": str(ctx.data) if ctx.data else None,
        "uptime_start": uptime_text(),
        "busy_start": other_cpu_busy(),
        "machine": machine_info(),
        "source": source,
        "benchmarks": {},
    }
    if ctx.data is None:
        log(f"note: {data} not found; benchmarks on real data are skipped")
    t_all = time.perf_counter()
    try:
        for name in names:
            log(f"[{name}] ...")
            sec = _run_one(name, ctx)
            result["benchmarks"][name] = sec
            log(f"[{name}] {sec['status']} in {sec['seconds']:.0f} s" + (f": {sec['message'].splitlines()[0]}" if sec.get("message") else ""))
            write_results(result, out_dir)
        comp = comparisons(ctx)
        if comp["rows"]:
            result["benchmarks"]["comparisons"] = comp
    finally:
        result["notes"] = ctx.shared.get("notes", [])
        if "default_model" in ctx.shared:
            try:
                man = json.loads((ctx.shared["default_model"] / "manifest.json").read_text())
                result["default_model"] = {"path": str(ctx.shared["default_model"]), "id": man.get("id"),
                                           "types": man.get("msgtypes", {}).get("types"), "created": man.get("created")}  # fmt: skip
                src = ctx.shared.get("default_model_source", ctx.shared["default_model"])
                result["notes"].append(f"default model: {src} (id {man.get('id')}, {man.get('msgtypes', {}).get('types')} message types),"
                                       " copied at its first use")  # fmt: skip
            except (OSError, ValueError):
                pass
        result["uptime_end"] = uptime_text()
        result["busy_end"] = other_cpu_busy()
        result["total_seconds"] = time.perf_counter() - t_all
        jp, mp = write_results(result, out_dir)
        if temporary:
            rmtree(work)
    if args.json:
        print(jp)
    else:
        print(render_markdown(result))
        print(f"results: {jp}\n         {mp}", file=sys.stderr)
    failed = [n for n, s in result["benchmarks"].items() if s["status"] == "error"]
    return 1 if failed else 0


def _run_one(name: str, ctx: Context) -> dict:
    t0 = time.perf_counter()
    la0, snap0 = loadavg(), cpu_snapshot()
    try:
        mod = importlib.import_module(f"bench.{BENCHMARKS[name]}")
        sec = mod.run(ctx)
        sec.setdefault("status", "ok")
    except Skip as e:
        sec = {"title": getattr(mod, "TITLE", name), "status": "skipped", "message": str(e), "rows": []}
    except BenchError as e:
        sec = {"title": getattr(mod, "TITLE", name), "status": "error", "message": str(e), "rows": []}
    except Exception:
        sec = {"title": name, "status": "error", "message": format_exc(), "rows": []}
    sec["seconds"] = time.perf_counter() - t0
    sec["loadavg_start"], sec["loadavg_end"] = la0, loadavg()
    # processes still running (a daemon not yet reaped) make this an overestimate of others' load, never an underestimate
    sec["others_cpus"] = others_load(snap0, cpu_snapshot())
    return sec


def comparisons(ctx: Context) -> dict:
    """lograven's speed as a ratio to the seed-style baseline (needs throughput and baseline in the same run)."""
    from bench.common import row

    tp, base = ctx.shared.get("throughput"), ctx.shared.get("baseline")
    rows = []
    if tp and base:
        seed_pipeline = base.get("seed pipeline")
        pairs = [
            ("default model, all three detectors vs seed pipeline (GRU-1024 + AE per line)", "default/all three detectors", "seed pipeline"),
            ("seed-size model, all three detectors vs seed pipeline", "seed size/all three detectors", "seed pipeline"),
            ("seed-size model, types + sequence vs seed 003 GRU-1024 per line", "seed size/types + sequence", "seed 003 GRU"),
            ("default model, types + sequence vs seed 003 GRU-1024 per line", "default/types + sequence", "seed 003 GRU"),
        ]
        for label, a, b in pairs:
            if a in tp and b in base and base[b]:
                rows.append(row(label, tp[a] / base[b], "×", note=f"{tp[a]:,.0f} vs {base[b]:,.1f} lines/s", noisy=True))
        if seed_pipeline is None:
            rows.append(row("seed pipeline", None, note="baseline incomplete"))
    msg = "" if rows else "needs `throughput` and `baseline` in the same run"
    return {"title": "lograven vs the seed-style baseline (same run)", "status": "ok" if rows else "skipped", "message": msg,
            "rows": rows, "seconds": 0.0, "loadavg_start": loadavg(), "loadavg_end": loadavg()}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
