"""`lograven demo` end to end: the real daemon on a live stream catches each kind of injected anomaly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lograven.demo import KINDS

pytestmark = pytest.mark.slow


def test_demo_catches_every_injected_kind() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lograven", "demo", "--duration", "15", "--every", "1.5", "--rate", "40", "--seed", "1", "--json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    caught = summary["injected_caught"]
    for kind in KINDS:
        assert caught.get(kind, {}).get("injected", 0) >= 1, f"{kind} was never injected: {summary}"
        assert caught[kind]["caught"] >= 1, f"{kind} was injected but never caught: {summary}"
    assert summary["alerts_on_other_lines"] <= 3, summary
    assert summary["lines_written"] >= 300, summary
    # what the user watches: each injection announced, alerts printed in the human format
    assert r.stdout.count(">>> injecting") >= len(KINDS)
    assert "ALERT" in r.stdout


def test_demo_leaves_nothing_behind_when_the_daemon_fails(monkeypatch, tmp_path) -> None:
    """An error inside the demo (here the daemon refusing its state_dir) still removes its temp files."""
    import tempfile

    from lograven import demo, service
    from lograven.errors import LogravenError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def refuse(self):
        raise LogravenError("state_dir: not writable")

    monkeypatch.setattr(service.Service, "run", refuse)
    with pytest.raises(LogravenError):
        demo.run_demo(duration=1, out=open("/dev/null", "w"))
    assert not list(tmp_path.glob("lograven-demo-*"))


def test_types_never_print_terminal_escapes(tmp_path, capsys, monkeypatch) -> None:
    """`lograven types --examples` prints training lines: an escape sequence logged by anyone must not
    reach the admin's terminal as one."""
    from types import SimpleNamespace

    from lograven import bundle as bundle_mod
    from lograven import cli

    t = SimpleNamespace(id=1, count=3, template="x \x1b]0;PWNED\x07 <*>", regex="x .*", examples=["x \x1b[2J\x1b[31m y"])
    fake = SimpleNamespace(types=SimpleNamespace(types_=[t]), version="v")
    from lograven import modelstore

    monkeypatch.setattr(bundle_mod, "load_bundle", lambda path: fake)
    monkeypatch.setattr(modelstore, "resolve_model_path", lambda path: Path(path))
    (tmp_path / "m").mkdir()
    assert cli.main(["types", "--examples", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "PWNED" in out


def test_an_injection_the_daemon_had_not_read_at_the_stop_is_not_counted_as_missed(tmp_path) -> None:
    """Ctrl-C right after an injection: the writer had written it, the daemon had not read it yet, and the
    summary said `caught 2/3`, as if the detector had missed it. The checkpoint says how far it read."""
    from types import SimpleNamespace

    from lograven import demo

    log = tmp_path / "messages"
    state = {"positions": {"0": {str(log): {"file_id": "x", "offset": 300, "fingerprint_len": 64}}}}  # Checkpointer.load
    writer = SimpleNamespace(offsets=[0, 100, 200, 300, 400], written=5,
                             injected=[("unseen_type", "a", 100), ("unseen_type", "b", 200), ("unseen_type", "c", 400)])
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps({"offset": 100, "detectors": [{"name": "unknown_type"}]}) + "\n")
    s = demo._summary(alerts, writer, 1.0, demo._read_to(state, log))
    assert s["injected_caught"]["unseen_type"] == {"caught": 1, "injected": 2} and s["injected_not_read"] == 1
    assert "not read before the stop: 1" in demo._format_summary(s)
    assert demo._read_to(None, log) is None  # no checkpoint: everything counts, as before
