"""Learn mode without training (fast): its per-file metrics, its reloads."""
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
    svc._prepare_state_dir()  # as at a start: learn mode watches its models directory
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
    svc._release_lock()


def test_a_reload_in_learn_mode_refuses_a_model_that_does_not_load_and_any_bad_config(tmp_path, caplog,
                                                                                     monkeypatch) -> None:
    """A SIGHUP whose config named a model that does not load ended learn mode, and the daemon then died
    loading it; a config nested too deeply (a RecursionError from YAML) killed it at once (review of the
    learn-mode reload, 2026-12-07). Both are rejected reloads: learning goes on with the running config."""
    import shutil
    from pathlib import Path

    import pytest

    from lograven import learnmode
    from lograven.service import Service

    default = Path(__file__).resolve().parents[1] / "models" / "default"
    if not (default / "manifest.json").exists():
        pytest.skip("needs models/default")
    bad = tmp_path / "bad"
    shutil.copytree(default, bad)
    (bad / "sequence.npz").write_bytes(b"damaged")
    base = (f"state_dir: {tmp_path / 'st'}\nmetrics: {{enabled: false}}\nsources: [{{paths: ['{tmp_path}/*.log']}}]\n"
            f"alerts: {{syslog: {{enabled: false}}, jsonl: {{path: {tmp_path / 'a.jsonl'}}}}}\n")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(base)
    svc = Service(parse_config(__import__("yaml").safe_load(base)), str(cfg_path))
    running = svc.cfg
    for text, said in ((base + f"model: {bad}\n", "checksum mismatch"),
                       ("sources: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply")):
        cfg_path.write_text(text)
        svc._reload.set()
        caplog.clear()
        with caplog.at_level("ERROR"):
            learnmode.take_reload(svc)  # no Reloaded, no other exception
        assert "reload rejected, learn mode goes on with the running configuration" in caplog.text, caplog.text
        assert said in caplog.text and svc.cfg is running and not svc._reload.is_set()
        assert svc.metrics.registry.get_sample_value("lograven_config_last_reload_successful") == 0
    import lograven.config

    with monkeypatch.context() as m:  # any other failure while reading it: rejected too, never raised
        m.setattr(lograven.config, "load_config", lambda path: (_ for _ in ()).throw(RuntimeError("boom")))
        svc._reload.set()
        caplog.clear()
        with caplog.at_level("ERROR"):
            learnmode.take_reload(svc)
        assert "reload rejected, learn mode goes on with the running configuration: RuntimeError: boom" in caplog.text
    cfg_path.write_text(base + f"model: {default}\n")  # a model that loads: learn mode ends for it
    svc._reload.set()
    with pytest.raises(learnmode.Reloaded):
        learnmode.take_reload(svc)
    assert svc.cfg.model == str(default)


def test_a_version_made_current_while_learn_mode_collects_ends_it(tmp_path, bundle_dir, caplog) -> None:
    """From a review: with `model: null`, an admin who trained a model into the daemon's models directory and
    made it current (operations.md's way) while learn mode waited for lines saw it ignored, then replaced
    by learn mode's own model without a word. Learn mode now ends where it read, and the daemon runs the
    admin's version; versions with none current (learn mode stopped between saving and switching, a
    restore that lost the link) make the newest current at a start, not a new model learned beside them."""
    import shutil

    from lograven import learnmode
    from lograven.service import Service
    from lograven.training import Corpus

    log = tmp_path / "a.log"
    log.write_text("Jun  9 07:00:00 web01 app[1]: one\n")
    cfg = parse_config({"sources": [{"paths": [str(log)]}], "model": None, "state_dir": str(tmp_path / "st"),
                        "metrics": {"enabled": False}, "runtime": {"poll_interval_seconds": 0.1},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    svc = Service(cfg)
    svc._prepare_state_dir()
    svc.store.root.mkdir(parents=True)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(learnmode._collect_more(svc, Corpus(), {}, 1000)))
    worker.start()
    try:
        time.sleep(0.5)
        shutil.copytree(bundle_dir, svc.store.root / "v0001")  # `lograven train --out` the models directory
        svc.store.set_current("v0001")  # `lograven models rollback --to v0001`
        worker.join(20)
    finally:
        svc._stop.set()
        worker.join(20)
    (positions,) = outcome  # where learn mode read: the daemon goes on from there
    assert positions["0"][str(log)]["offset"] == log.stat().st_size
    assert any("v0001 was made current" in r.getMessage() and "learn mode ends" in r.getMessage() for r in caplog.records)
    assert svc._model_location(cfg).name == "v0001"  # what the daemon then loads
    shutil.copytree(bundle_dir, svc.store.root / "v0002")
    os.unlink(svc.store.root / "current")  # learn mode stopped between saving and switching
    svc._adopt_newest_version()
    assert svc.store.current_name() == "v0002"
    assert any("had versions but none current: v0002" in r.getMessage() for r in caplog.records)
    svc._release_lock()


def test_a_stop_just_after_learn_mode_saved_keeps_where_it_read(tmp_path, bundle_dir, monkeypatch) -> None:
    """From a review: a stop between learn mode's save and its switch to the new version wrote no checkpoint
    (no `current` yet), so the next start, which makes that version current, began at the files' ends and
    never scored the lines written meanwhile."""
    import json
    import shutil

    from lograven.checkpoint import Checkpointer
    from lograven.service import Service

    log = tmp_path / "a.log"
    log.write_text("Jun  9 07:00:00 web01 app[1]: one\n")
    cfg = parse_config({"sources": [{"paths": [str(log)]}], "model": None, "state_dir": str(tmp_path / "st"),
                        "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    svc = Service(cfg)
    read = {"0": {str(log): {"file_id": "1:2:ab", "offset": 34, "fingerprint_len": 34}}}

    def learned_then_stopped(self):
        shutil.copytree(bundle_dir, self.store.root / "v0001")  # saved; the stop came before the switch
        self._stop.set()
        return read

    monkeypatch.setattr(Service, "_learn_mode", learned_then_stopped)
    assert svc.run() == 0
    saved = Checkpointer(tmp_path / "st" / "checkpoint.json").load()
    assert json.loads(json.dumps(saved["positions"])) == read
