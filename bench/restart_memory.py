"""Restart memory: RSS of `lograven run` before and after a restart that restores 100,000 streams.

One file of 100,000 lines (`--smoke`: 2,000), each a session of its own (`stream:
'regex:port (\\d+)'`, a message type the default model knows), read from the beginning:
the daemon keeps 100,000 GRU states (runtime.max_streams). RSS (VmRSS) is read once every
line is read, the daemon is stopped (it writes the checkpoint: 77 MB at 100,000 streams),
started again, and RSS is read after READY=1 and a few seconds. Before 2026-12-06 the
parsed checkpoint lived as long as the daemon: 355 MB after the restart against 171 MB
before it.
"""
from __future__ import annotations

import time

import yaml

from bench.common import BenchError, Context, Daemon, row

TITLE = "Restart memory (100,000 streams restored)"
LINE = "Dec  6 10:{m:02d}:{s:02d} web01 sshd[{pid}]: Received disconnect from 10.0.0.{ip} port {i} disconnected by user\n"


def run(ctx: Context) -> dict:
    n = ctx.lines(100_000, 2_000)
    root = ctx.work / "restart-memory"
    log = root / "logs" / "sessions.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(LINE.format(m=(i // 60) % 60, s=i % 60, pid=1000 + i % 50, ip=i % 250, i=i) for i in range(n)))
    d = Daemon(root, [str(log)], model=ctx.default_model(), start_position="beginning")
    cfg = yaml.safe_load(d.config.read_text())
    cfg["sources"][0]["stream"] = r"regex:port (\d+)"
    d.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (root / "state" / "checkpoint.json").unlink(missing_ok=True)
    with d:
        d.start()
        deadline = time.monotonic() + 600
        while d.metrics().get("lograven_streams", 0) < n and time.monotonic() < deadline:
            time.sleep(0.5)
        streams = d.metrics().get("lograven_streams", 0)
        if streams < n:
            raise BenchError(f"only {streams:.0f} of {n} streams after 600 s:\n{d.log_tail()}")
        before = d.status()
    size = (root / "state" / "checkpoint.json").stat().st_size
    with d:
        ready = d.start()
        time.sleep(ctx.seconds(5.0, 1.0))
        after = d.status()
        restored = d.metrics().get("lograven_streams", 0)
    grew = after.get("VmRSS", 0) - before.get("VmRSS", 0)
    rows = [
        row("RSS with the streams, before the restart", before.get("VmRSS", 0), "MB", note=f"{n:,} streams"),
        row("RSS after the restart", after.get("VmRSS", 0), "MB",
            note=f"{restored:,.0f} streams restored from a {size / 2**20:.0f} MB checkpoint; READY after {ready:.1f} s; "
                 f"peak {after.get('VmHWM', 0):.0f} MB; {grew:+.0f} MB"),  # fmt: skip
    ]
    return {"title": TITLE, "rows": rows, "details": {"before": before, "after": after, "checkpoint_bytes": size}}
