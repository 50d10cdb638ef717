"""Memory: RSS of the serving daemon with 1, 20 and 100 files; peak RSS of `train` on 100k lines.

For each file count, `lograven run` (pinned to CPU 0, default bundle) follows
a glob of that many files in a temp dir while this process writes generator
lines to them, round robin, at 1,000 lines/s in total, so every file has a
stream with GRU state and the autoencoder's cache fills as in service. RSS is
read from /proc/PID/status after the writing stops: VmRSS (now) and VmHWM
(the peak). Training's peak RSS is the `lograven train` process's ru_maxrss
(wait4) from the training benchmark's 100k-line run, or a run of its own.
"""
from __future__ import annotations

import time

from bench.common import LOAD_CPU, MEASURE_CPU, Context, Daemon, LineWriter, pinned_here, read_lines, row

TITLE = "Memory (RSS)"
FILE_COUNTS = (1, 20, 100)
TARGET_RSS_20_MB = 150.0


def run(ctx: Context) -> dict:
    model = ctx.default_model()
    lines = read_lines(ctx.generated(ctx.lines(200_000, 20_000), seed=7))
    seconds = ctx.seconds(20.0, 2.0)
    rows, details = [], {}
    with pinned_here(LOAD_CPU):
        for n in FILE_COUNTS:
            root = ctx.work / "memory" / f"files-{n}"
            logs = root / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            paths = [logs / f"app{i:03d}.log" for i in range(n)]
            for p in paths:
                p.write_bytes(b"")
            with Daemon(root, [str(logs / "*.log")], model=model, cpu=MEASURE_CPU) as d:
                d.start()
                idle = d.status()
                w = LineWriter(paths, lines, 1000.0)
                w.start()
                time.sleep(seconds)
                w.stop()
                time.sleep(2.0)
                st = d.status()
                m = d.metrics()
                files_seen = sum(1 for k in m if k.startswith("lograven_file_lag_bytes{"))
            details[str(n)] = {"after_ready": idle, "after_traffic": st, "lines_written": w.written, "files_in_metrics": files_seen}
            ctx.log(f"    {n:>3} files: RSS {st.get('VmRSS', 0):.0f} MB, peak {st.get('VmHWM', 0):.0f} MB "
                    f"(at READY {idle.get('VmRSS', 0):.0f} MB), {st.get('Threads')} threads")  # fmt: skip
            is_target = n == 20
            rows.append(row(f"serving, {n} file{'s' if n > 1 else ''}: RSS (VmRSS)", st.get("VmRSS"), "MB",
                            target=f"≤ {TARGET_RSS_20_MB:.0f} MB" if is_target else None,
                            ok=(st.get("VmRSS", 1e9) <= TARGET_RSS_20_MB) if is_target else None,
                            note=f"peak (VmHWM) {st.get('VmHWM', 0):.0f} MB; at READY {idle.get('VmRSS', 0):.0f} MB; "
                                 f"{w.written:,} lines written; {st.get('Threads')} threads"))  # fmt: skip
    tr = ctx.shared.get("train_100k")
    n = ctx.lines(100_000, 2_000)  # smoke: the training section's run
    if tr is None:
        cfg = {"training": {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}}} if ctx.smoke else None
        tr = ctx.train(f"train-{n}", [ctx.generated(n, seed=1)], config=cfg)
    details["train"] = {"lines": n, "peak_rss_mb": tr["peak_rss_mb"]}
    rows.append(row(f"`lograven train` {n:,} lines: peak RSS", tr["peak_rss_mb"], "MB", note="ru_maxrss of the train process (TensorFlow included)"))
    return {"title": TITLE, "rows": rows, "details": details}
