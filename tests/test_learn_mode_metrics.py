"""Learn mode's per-file metrics (fast: no training)."""
from __future__ import annotations

import errno
import os
import threading
import time

from lograven.config import parse_config


def test_learn_mode_exports_per_file_metrics_while_it_collects_lines(tmp_path, monkeypatch) -> None:
    """A first start where lograven may not read the log waits in learn mode, and /metrics had no
    lograven_file_* or lograven_lines_* series at all: LogravenFileUnreadable could not fire (admin
    review, 2026-12-07). The collecting tailers' series are exported, and removed when learning stops
    collecting (the running daemon's tailers export their own). Unreadable simulated: tests run as root."""
    from lograven import learnmode, tailer
    from lograven.service import Service
    from lograven.training import Corpus

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("Jun  9 07:00:00 web01 app[1]: one\nJun  9 07:00:01 web01 app[1]: two\n")
    (logs / "b.log").write_text("Jun  9 07:00:00 web01 app[1]: secret\n")
    real_open = os.open

    def os_open(path, flags, *a, **k):
        if os.fspath(path) == str(logs / "b.log"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(tailer.os, "open", os_open)
    cfg = parse_config({"sources": [{"paths": [str(logs / "*.log")]}], "model": None, "state_dir": str(tmp_path / "st"),
                        "metrics": {"enabled": False}, "runtime": {"poll_interval_seconds": 0.1},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    svc = Service(cfg)
    value = svc.metrics.registry.get_sample_value
    done = threading.Thread(target=learnmode._collect_more, args=(svc, Corpus(), {}, 1000))
    done.start()
    try:
        deadline = time.monotonic() + 20
        while value("lograven_file_readable", {"file": str(logs / "b.log")}) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert value("lograven_file_readable", {"file": str(logs / "b.log")}) == 0
        assert value("lograven_file_readable", {"file": str(logs / "a.log")}) == 1
        assert value("lograven_lines_read_total", {"file": str(logs / "a.log")}) == 2
    finally:
        svc._stop.set()
        done.join(20)
    assert not done.is_alive()
    assert value("lograven_file_readable", {"file": str(logs / "b.log")}) is None  # removed with the tailers
    assert value("lograven_lines_read_total", {"file": str(logs / "a.log")}) is None
