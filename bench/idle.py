"""Idle CPU: `lograven run` following 10 quiet files.

Ten files with 1,000 lines each already in them (start_position end: not
read), nothing written afterwards. After READY=1 and a few seconds to
settle, the daemon's utime + stime (/proc/PID/stat, all threads) is read
over 60 s (`--smoke`: 3 s); the result is CPU seconds per second, as a
percentage of one core. Wake-ups come from stat polling (runtime.
poll_interval_seconds, 1 s), the main loop's queue timeout and housekeeping.
"""
from __future__ import annotations

import time

from bench.common import MEASURE_CPU, Context, Daemon, read_lines, row

TITLE = "Idle CPU (10 quiet files)"
TARGET_PERCENT = 0.5


def run(ctx: Context) -> dict:
    model = ctx.default_model()
    seconds = ctx.seconds(60.0, 3.0)
    lines = read_lines(ctx.generated(ctx.lines(200_000, 20_000), seed=7), limit=1000)
    root = ctx.work / "idle"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(10):
        (logs / f"quiet{i}.log").write_bytes(b"".join(lines))
    with Daemon(root, [str(logs / "*.log")], model=model, cpu=MEASURE_CPU) as d:
        d.start()
        time.sleep(ctx.seconds(5.0, 1.0))
        c0, t0 = d.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        cpu, wall = d.cpu_seconds() - c0, time.perf_counter() - t0
        st = d.status()
    pct = cpu / wall * 100
    rows = [row("idle CPU, 10 quiet files", pct, "% of one core", target=f"≤ {TARGET_PERCENT} %", ok=pct <= TARGET_PERCENT,
                note=f"{cpu:.2f} CPU-s over {wall:.0f} s (clock tick 10 ms: ±{1 / wall:.2f} %); RSS {st.get('VmRSS', 0):.0f} MB")]  # fmt: skip
    return {"title": TITLE, "rows": rows, "details": {"cpu_s": cpu, "wall_s": wall, "status": st}}
