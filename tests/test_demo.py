"""`lograven demo` end to end: the real daemon on a live stream catches each kind of injected anomaly."""
from __future__ import annotations

import json
import subprocess
import sys

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
