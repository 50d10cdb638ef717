"""Start-up: process start to READY=1, with the default bundle.

The harness binds a NOTIFY_SOCKET datagram socket, starts `lograven run`
(pinned to one core) on a temp dir with one log file, and times from just
before the process is spawned to the `READY=1` datagram. Repeated; each start
uses a fresh state directory (no checkpoint). A breakdown of the path
(interpreter, imports, bundle load with hash checks, detector set-up) is
measured in a worker.
"""
from __future__ import annotations

from bench.common import MEASURE_CPU, PY, Context, Daemon, median, row, run_timed, run_worker

TITLE = "Start-up to READY=1"
TARGET_S = 1.0


def breakdown(bundle: str) -> dict:
    """Seconds for the steps of start-up after the interpreter is running."""
    import time

    t0 = time.perf_counter()
    import lograven.service  # noqa: F401  (imports what `run` imports)

    t1 = time.perf_counter()
    from lograven.bundle import load_bundle
    from lograven.detector import Detector

    b = load_bundle(bundle)
    t2 = time.perf_counter()
    Detector(b)
    t3 = time.perf_counter()
    return {"import_service_s": t1 - t0, "load_bundle_s": t2 - t1, "detector_s": t3 - t2}


def run(ctx: Context) -> dict:
    reps = 2 if ctx.smoke else 7
    model = ctx.default_model()
    times = []
    for i in range(reps):
        root = ctx.work / "startup" / f"run{i}"
        log = root / "messages"
        root.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        with Daemon(root, [str(log)], model=model) as d:
            times.append(d.start())
    bd = run_worker("startup", "breakdown", {"bundle": str(model)})
    py = [run_timed([PY, "-c", "pass"], cpu=MEASURE_CPU, sample_rss=False)["wall_s"] for _ in range(3)]
    med = median(times)
    rows = [
        row("process start → READY=1, median", med, "s", target=f"≤ {TARGET_S:.0f} s", ok=med <= TARGET_S,
            note=f"{reps} starts: min {min(times):.2f} s, max {max(times):.2f} s", noisy=True),
        row("  of which: import lograven.service and its dependencies", bd["import_service_s"], "s", noisy=True),
        row("  of which: load + verify the bundle", bd["load_bundle_s"], "s", noisy=True),
        row("  of which: Detector set-up", bd["detector_s"], "s", noisy=True),
        row("  of which: python interpreter start (`python -c pass`)", min(py), "s", noisy=True),
    ]  # fmt: skip
    return {"title": TITLE, "rows": rows, "details": {"starts_s": times, "breakdown": bd}}
