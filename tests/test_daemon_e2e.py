"""End to end: `lograven run` as a real process on a temp dir.

Normal and anomalous lines, rename rotation, copytruncate, restarts by
SIGTERM and SIGKILL, the JSON-lines alerts and /metrics; sd_notify READY=1
is awaited on a socket the test binds (no sleeps where an event exists).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lograven.generator import LogGenerator, write_log

pytestmark = pytest.mark.slow

TINY_TRAINING = """
training:
  sequence: {units: 16, embedding_dim: 8, window: 16, epochs: 3}
  autoencoder: {vocab_size: 128, epochs: 2, filters: 16, latent_dim: 8, embedding_dim: 8}
"""


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _lograven(*args: str, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lograven", *args], capture_output=True, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("e2e-model")
    log = d / "train.log"
    write_log(log, LogGenerator(seed=11).lines(3000))
    cfg = d / "train.yaml"
    cfg.write_text(TINY_TRAINING)
    r = _lograven("train", "--config", str(cfg), "--out", str(d / "model"), str(log))
    assert r.returncode == 0, r.stderr
    return d / "model"


LIVE: list[subprocess.Popen] = []  # started daemons; tests/conftest.py kills leftovers after each test


class Daemon:
    def __init__(self, tmp: Path, model: Path):
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.state = tmp / "state"
        self.alerts = self.state / "alerts.jsonl"
        self.port = _free_port()
        self.cfg = tmp / "config.yaml"
        self.cfg.write_text(
            f"""
sources:
  - paths: ["{self.logs}/messages"]
    start_position: end
model: {model}
state_dir: {self.state}
alerts:
  syslog: {{enabled: false}}
  jsonl: {{path: {self.alerts}}}
  dedup_window_seconds: 0
  max_per_minute: 100000
metrics: {{listen: "127.0.0.1:{self.port}"}}
runtime: {{checkpoint_interval_seconds: 0.2, poll_interval_seconds: 0.2, max_wait_ms: 5}}
"""
        )
        self.proc: subprocess.Popen | None = None
        self.sock_path = str(tmp / "notify.sock")

    def start(self) -> None:
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.sock_path)
        sock.settimeout(60)
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lograven", "-v", "run", "--config", str(self.cfg)],
            env=env, stdout=subprocess.PIPE, stderr=open(self.tmp / "daemon.err", "a"),
        )  # fmt: skip
        LIVE.append(self.proc)
        try:
            while True:
                msg = sock.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    break
        finally:
            sock.close()

    def stop(self, sig=signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self.proc = None
        return rc

    def alert_lines(self) -> list[dict]:
        if not self.alerts.exists():
            return []
        return [json.loads(x) for x in self.alerts.read_text().splitlines() if x.strip()]

    def wait_for_alerts(self, markers: set[str], timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alert_lines()
            found = {m for m in markers if any(m in a["line"] for a in alerts)}
            if found == markers or time.monotonic() > deadline:
                return alerts
            time.sleep(0.1)

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()

    def wait_metric(self, needle: str, timeout: float = 15) -> str:
        """File counters are exported once a second: wait for the sample to appear."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.metrics()
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.1)


def _append(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for ln in lines:
            f.write(ln + "\n")


def _marker_lines(tag: str, n: int) -> list[str]:
    return [f"Jun  9 07:00:00 web01 kernel: /dev/e2e{tag}x{i} out of diskspace marker-{tag}-{i}" for i in range(n)]


def test_daemon_end_to_end(tmp_path, tiny_model):
    d = Daemon(tmp_path, tiny_model)
    gen = LogGenerator(seed=21)
    write_log(d.logs / "messages", gen.lines(200))  # existing content: skipped (start_position end)
    d.start()

    # 1. normal lines and anomalies while running
    _append(d.logs / "messages", gen.lines(300))
    m1 = _marker_lines("a", 5)
    _append(d.logs / "messages", m1)
    alerts = d.wait_for_alerts({f"marker-a-{i}" for i in range(5)})
    got = {a["line"] for a in alerts}
    assert all(any(m in g for g in got) for m in m1)
    a0 = next(a for a in alerts if "marker-a-0" in a["line"])
    assert a0["detectors"][0]["name"] == "unknown_type" and a0["type_id"] == -1
    assert a0["file"] == str(d.logs / "messages") and a0["model_version"]
    assert not any("web01" in a["line"] and "marker" not in a["line"] and a["detectors"][0]["name"] == "unknown_type" for a in alerts[:0])

    # 2. rotation by rename + create: lines written to the old file after the rename are not lost
    os.rename(d.logs / "messages", d.logs / "messages.1")
    _append(d.logs / "messages.1", _marker_lines("b", 2))
    _append(d.logs / "messages", gen.lines(50) + _marker_lines("c", 2))
    alerts = d.wait_for_alerts({"marker-b-0", "marker-b-1", "marker-c-0", "marker-c-1"})
    for a in alerts:
        if "marker-c" in a["line"]:
            assert a["read_from"] is None  # the new file is at its name
        elif "marker-b" in a["line"] and a["read_from"] is not None:  # read once the rotation was seen
            assert a["read_from"] == str(d.logs / "messages.1")
            raw = (d.logs / "messages.1").read_bytes()[a["offset"] :]
            assert raw.split(b"\n", 1)[0].decode() == a["line"]  # file:offset leads to the line

    # 3. copytruncate
    os.truncate(d.logs / "messages", 0)
    _append(d.logs / "messages", _marker_lines("d", 2))
    d.wait_for_alerts({"marker-d-0", "marker-d-1"})
    needle = 'lograven_file_truncations_total{file="%s"} 1.0' % (d.logs / "messages")
    metrics = d.wait_metric(needle)
    assert needle in metrics
    assert "lograven_alerts_emitted_total" in metrics and 'lograven_anomalies_total{detector="unknown_type"' in metrics
    assert "lograven_model_info" in metrics

    # 4. SIGTERM: exits 0, lines written while down are read after the restart
    assert d.stop(signal.SIGTERM) == 0
    _append(d.logs / "messages", _marker_lines("e", 3))
    d.start()
    d.wait_for_alerts({"marker-e-0", "marker-e-1", "marker-e-2"})

    # 5. SIGKILL: nothing lost (at-least-once), lines after the kill are read on restart
    _append(d.logs / "messages", _marker_lines("f", 3))
    d.wait_for_alerts({"marker-f-0", "marker-f-1", "marker-f-2"})
    time.sleep(0.5)  # let a checkpoint happen (interval 0.2 s) — not required for correctness
    d.stop(signal.SIGKILL)
    _append(d.logs / "messages", _marker_lines("g", 3))
    d.start()
    alerts = d.wait_for_alerts({"marker-g-0", "marker-g-1", "marker-g-2"})
    assert d.stop(signal.SIGTERM) == 0

    # every injected anomaly alerted at least once; no normal generator line was invented as an alert twice over
    all_markers = {f"marker-{t}-{i}" for t, n in zip("abcdefg", (5, 2, 2, 2, 3, 3, 3)) for i in range(n)}
    lines = [a["line"] for a in alerts]
    missing = [m for m in all_markers if not any(m in ln for ln in lines)]
    assert not missing, missing
    # at-least-once, but not wildly more: each marker at most twice (SIGKILL may replay since the last checkpoint)
    for m in all_markers:
        assert sum(m in ln for ln in lines) <= 2, m
    assert (d.state / "checkpoint.json").exists()


def test_positions_follow_their_file_when_sources_are_inserted(tmp_path, tiny_model):
    """A checkpointed offset belongs to its file, not to the source's place in the list: with a source
    inserted before it, the file resumes where it stopped (start_position end would otherwise skip what
    was written while lograven was stopped; beginning would read it all again)."""
    d = Daemon(tmp_path, tiny_model)
    write_log(d.logs / "messages", [])
    d.start()
    _append(d.logs / "messages", _marker_lines("a", 2))
    d.wait_for_alerts({"marker-a-0", "marker-a-1"})
    assert d.stop() == 0
    write_log(d.logs / "other.log", [])
    text = d.cfg.read_text()
    d.cfg.write_text(text.replace("sources:\n", f'sources:\n  - paths: ["{d.logs}/other.log"]\n    start_position: beginning\n', 1))
    _append(d.logs / "messages", _marker_lines("b", 2))  # written while stopped
    d.start()
    _append(d.logs / "other.log", _marker_lines("c", 1))
    alerts = d.wait_for_alerts({"marker-b-0", "marker-b-1", "marker-c-0"})
    assert d.stop() == 0
    lines = [a["line"] for a in alerts]
    assert sum("marker-b" in ln for ln in lines) == 2 and sum("marker-a" in ln for ln in lines) == 2, lines
    assert any("marker-c-0" in ln for ln in lines)
    assert "is gone" not in (tmp_path / "daemon.err").read_text()


def test_an_unterminated_line_is_scored_and_does_not_hide_the_next_one(tmp_path, tiny_model):
    """With runtime.unterminated_line_seconds, a line left without its newline is scored after that long
    instead of being joined to the next line, which it would hide; a rotated file's unterminated last line
    is scored when the file is let go (it was dropped)."""
    d = Daemon(tmp_path, tiny_model)
    d.cfg.write_text(d.cfg.read_text().replace("max_wait_ms: 5}", "max_wait_ms: 5, unterminated_line_seconds: 1}"))
    log = d.logs / "messages"
    write_log(log, [])
    d.start()
    with open(log, "a") as f:
        f.write("Jun  9 07:00:00 web01 kernel: /dev/e2eopen out of diskspace marker-open")  # no newline
    d.wait_for_alerts({"marker-open"})
    _append(log, _marker_lines("after", 1))
    alerts = d.wait_for_alerts({"marker-open", "marker-after-0"})
    lines = [a["line"] for a in alerts]
    assert lines[-2].endswith("marker-open") and lines[-1].endswith("marker-after-0"), lines[-2:]
    with open(log, "a") as f:
        f.write("Jun  9 07:00:01 web01 kernel: /dev/e2elast out of diskspace marker-last")  # no newline
    os.rename(log, d.logs / "messages.1")
    _append(log, _marker_lines("new", 1))
    alerts = d.wait_for_alerts({"marker-last", "marker-new-0"})
    needle = 'lograven_lines_unterminated_total{file="%s"} 2.0' % log
    assert needle in d.wait_metric(needle)
    assert d.stop() == 0
    lines = [a["line"] for a in alerts]
    assert [ln.rsplit(" ", 1)[1] for ln in lines[-2:]] == ["marker-last", "marker-new-0"], lines[-2:]


def test_a_crash_before_the_first_periodic_checkpoint_loses_nothing(tmp_path, tiny_model):
    """On a first start, no checkpoint was written until the first interval passed with something to say: a
    crash before it (kill -9 on a quiet host) made the next start a first start again, beginning at the
    files' new ends, and what was written meanwhile was never read. The first start now writes its
    checkpoint (the files' ends) before it says READY."""
    d = Daemon(tmp_path, tiny_model)
    d.cfg.write_text(d.cfg.read_text().replace("checkpoint_interval_seconds: 0.2", "checkpoint_interval_seconds: 3600"))
    write_log(d.logs / "messages", LogGenerator(seed=5).lines(50))  # there before the start: not read
    d.start()
    assert (d.state / "checkpoint.json").exists()
    d.stop(signal.SIGKILL)
    _append(d.logs / "messages", _marker_lines("k", 2))  # written while it was down
    d.start()
    alerts = d.wait_for_alerts({"marker-k-0", "marker-k-1"})
    assert d.stop() == 0
    lines = [a["line"] for a in alerts]
    assert sum("marker-k" in ln for ln in lines) == 2, lines
    # The same for a source added to the configuration since (a restart, then a reload): its file starts at
    # its end, and that place is on disk before a crash can come (a review: a kill -9 before the first
    # periodic checkpoint had started it at its new end again, and its lines written meanwhile were lost)
    text = d.cfg.read_text()
    for name in ("new.log", "reloaded.log"):
        write_log(d.logs / name, LogGenerator(seed=6).lines(20))  # there before: not read (start_position: end)
    d.cfg.write_text(text.replace("sources:\n", f'sources:\n  - paths: ["{d.logs}/new.log"]\n    start_position: end\n', 1))
    d.start()
    d.stop(signal.SIGKILL)
    _append(d.logs / "new.log", _marker_lines("n", 2))  # written while it was down
    d.start()
    d.cfg.write_text(d.cfg.read_text().replace("sources:\n", f'sources:\n  - paths: ["{d.logs}/reloaded.log"]\n    start_position: end\n', 1))
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "reloaded: model" not in (tmp_path / "daemon.err").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    d.stop(signal.SIGKILL)
    _append(d.logs / "reloaded.log", _marker_lines("r", 2))  # written while it was down
    d.start()
    alerts = d.wait_for_alerts({"marker-n-0", "marker-n-1", "marker-r-0", "marker-r-1"})
    assert d.stop() == 0
    lines = [a["line"] for a in alerts]
    assert sum("marker-n" in ln for ln in lines) == 2 and sum("marker-r" in ln for ln in lines) == 2, lines


def test_bad_config_is_rejected_with_key_and_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("detectors:\n  sequence:\n    threshhold: 0.5\n")
    r = _lograven("check", "--config", str(cfg))
    assert r.returncode == 1
    assert str(cfg) in r.stderr and "detectors.sequence.threshhold" in r.stderr and "threshold" in r.stderr


def test_stdin_plugin_mode(tmp_path, tiny_model):
    cfg = tmp_path / "c.yaml"
    alerts = tmp_path / "alerts.jsonl"
    cfg.write_text(
        f"model: {tiny_model}\nstate_dir: {tmp_path}/state\nalerts:\n  syslog: {{enabled: false}}\n"
        f"  jsonl: {{path: {alerts}}}\n  dedup_window_seconds: 0\nmetrics: {{enabled: false}}\n"
    )
    lines = LogGenerator(seed=5).lines(20) + _marker_lines("s", 2)
    r = _lograven("run", "--stdin", "--config", str(cfg), input="\n".join(lines) + "\n", timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out == ["OK"] * (len(lines) + 1)  # once ready, then one per message
    got = alerts.read_text()
    assert "marker-s-0" in got and "marker-s-1" in got


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stdin_plugin_mode_stops_on_a_signal_while_its_input_is_quiet(tmp_path, tiny_model, sig):
    """A stop while the input is open and quiet (a shipper stopping its plugin, Ctrl-C at a terminal):
    it waited for the next line; then, with a reader thread inside the buffered stdin, the interpreter
    aborted at exit ("could not acquire lock for <stdin>", SIGABRT)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model: {tiny_model}\nstate_dir: {tmp_path}/state\nalerts:\n  syslog: {{enabled: false}}\n"
        f"  jsonl: {{path: {tmp_path}/alerts.jsonl}}\nmetrics: {{enabled: false}}\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "lograven", "-q", "run", "--stdin", "--config", str(cfg)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout.readline() == b"OK\n"  # ready
        proc.stdin.write("".join(ln + "\n" for ln in LogGenerator(seed=5).lines(3)).encode())
        proc.stdin.flush()
        assert [proc.stdout.readline() for _ in range(3)] == [b"OK\n"] * 3
        t0 = time.monotonic()
        proc.send_signal(sig)  # the input stays open
        rc = proc.wait(timeout=30)
        err = proc.stderr.read().decode(errors="replace")
        assert rc == 0 and time.monotonic() - t0 < 10, (rc, err)
        assert "Fatal Python error" not in err and "Traceback" not in err, err
        assert (tmp_path / "state" / "checkpoint.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
