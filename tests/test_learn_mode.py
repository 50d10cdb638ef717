"""Learn mode: `lograven run` without a model learns one from the files first, then detects from there."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lograven.generator import LogGenerator, write_log
from lograven.modelstore import ModelStore

pytestmark = pytest.mark.slow

TINY = """
training:
  sequence: {units: 16, embedding_dim: 8, window: 16, epochs: 2}
  autoencoder: {vocab_size: 128, epochs: 2, filters: 16, latent_dim: 8, embedding_dim: 8}
"""


def _config(tmp: Path, min_lines: int) -> Path:
    cfg = tmp / "config.yaml"
    cfg.write_text(
        f"""
sources:
  - paths: ["{tmp}/logs/*.log"]
model: null
state_dir: {tmp}/state
alerts:
  syslog: {{enabled: false}}
  jsonl: {{path: {tmp}/alerts.jsonl}}
  dedup_window_seconds: 0
metrics: {{enabled: false}}
learn: {{max_lines: 5000, min_lines: {min_lines}}}
runtime: {{poll_interval_seconds: 0.2, checkpoint_interval_seconds: 0.5}}
{TINY}"""
    )
    return cfg


def _start(cfg: Path, tmp: Path) -> tuple[subprocess.Popen, socket.socket]:
    sock_path = str(tmp / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(240)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lograven", "-v", "run", "--config", str(cfg)],
        env=dict(os.environ, NOTIFY_SOCKET=sock_path), stderr=open(tmp / "err.txt", "w"),
    )  # fmt: skip
    return proc, sock


def _wait_ready(sock: socket.socket) -> list[str]:
    """READY=1 comes before learning (systemd's start timeout must not wait for it), with a learn-mode
    status; then wait until the daemon watches its files with the learned model."""
    statuses: list[str] = []
    ready = False
    while True:
        msg = sock.recv(4096).decode().split("\n")
        if "READY=1" in msg and not ready:
            ready = True
            assert [m for m in msg if m.startswith("STATUS=learn mode")], msg  # ready while learning
            assert not statuses or not any(s.startswith("STATUS=watching") for s in statuses)
        statuses += [m for m in msg if m.startswith("STATUS=")]
        if ready and any(m.startswith("STATUS=watching") for m in msg):
            return statuses


def _wait_alert(path: Path, needle: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return True
        time.sleep(0.1)
    return False


def test_learns_from_existing_content_then_detects(tmp_path):
    (tmp_path / "logs").mkdir()
    write_log(tmp_path / "logs" / "a.log", LogGenerator(seed=1).lines(1500))
    write_log(tmp_path / "logs" / "b.log", LogGenerator(seed=2).lines(1500))
    proc, sock = _start(_config(tmp_path, min_lines=1000), tmp_path)
    try:
        statuses = _wait_ready(sock)
        assert any("learn mode" in s for s in statuses), statuses
        assert "STATUS=learn mode: message types" in statuses, statuses  # a stage starts without "0%"
        assert not [s for s in statuses if s.endswith((" 0%", " 100%"))], statuses
        # training ran in a child process: TensorFlow never entered the serving daemon
        rss_kb = int(next(x for x in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if x.startswith("VmRSS")).split()[1])
        assert rss_kb < 300_000, f"daemon RSS {rss_kb} kB after learn mode"
        store = ModelStore(tmp_path / "state" / "models")
        assert store.current_name() == "v0001"
        manifest = json.loads((store.current_path() / "manifest.json").read_text())
        assert manifest["training"]["lines"] == 3000  # both files, all of their existing content
        # where learning stopped is checkpointed at once, before any new line: a crash now resumes there
        time.sleep(1.0)
        ck = json.loads((tmp_path / "state" / "checkpoint.json").read_text())
        offsets = {p: e["offset"] for group in ck["state"]["positions"].values() for p, e in group.items()}
        logs = [tmp_path / "logs" / "a.log", tmp_path / "logs" / "b.log"]
        assert offsets == {str(f): f.stat().st_size for f in logs}
        # what was learned is not alerted on; what comes after is detected
        with open(tmp_path / "logs" / "a.log", "a") as f:
            f.write("Jun  9 07:00:00 web01 kernel: /dev/learnx1 out of diskspace marker-learn\n")
        assert _wait_alert(tmp_path / "alerts.jsonl", "marker-learn")
        alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        assert all("marker-learn" in a["line"] for a in alerts), "lines learned from were alerted"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        sock.close()
    # a first model of 3,000 lines is weak at orderings, and the journal says so and what to do
    steps = manifest["sequence"]["validation"]["steps"]
    err = (tmp_path / "err.txt").read_text()
    assert (f"learn mode: model v0001 learned from 3000 lines, and held back {steps} steps to calibrate its sequence "
            "rule (too few: the configured thresholds apply): it may miss never-seen orderings") in err, err


def test_waits_for_enough_lines_before_learning(tmp_path):
    (tmp_path / "logs").mkdir()
    gen = LogGenerator(seed=3)
    write_log(tmp_path / "logs" / "a.log", gen.lines(200))
    proc, sock = _start(_config(tmp_path, min_lines=800), tmp_path)
    try:
        time.sleep(1.0)
        assert proc.poll() is None  # still collecting, not failed
        with open(tmp_path / "logs" / "a.log", "a") as f:
            for line in gen.lines(700):
                f.write(line + "\n")
        statuses = _wait_ready(sock)
        assert any("collecting" in s or "training" in s for s in statuses), statuses
        manifest = json.loads((ModelStore(tmp_path / "state" / "models").current_path() / "manifest.json").read_text())
        assert manifest["training"]["lines"] == 900
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        sock.close()


def test_periodic_relearning_makes_a_new_current_version(tmp_path):
    """learn.schedule: quiet lines are relearned in a child process into a new version made current."""
    import shutil

    from lograven.config import parse_config
    from lograven.parsing import Parser
    from lograven.service import Service

    default = Path(__file__).resolve().parents[1] / "models" / "default"
    if not (default / "manifest.json").exists():
        pytest.skip("models/default is missing")
    store = ModelStore(tmp_path / "state" / "models")
    for _ in range(3):
        shutil.copytree(default, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0003")
    (tmp_path / "logs").mkdir()
    cfg = parse_config(
        {
            "sources": [{"paths": [f"{tmp_path}/logs/*.log"]}],
            "state_dir": str(tmp_path / "state"),
            "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}},
            "metrics": {"enabled": False},
            "learn": {"schedule": "10m", "min_lines": 500, "keep_versions": 2},
            "training": {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}},
        }
    )
    svc = Service(cfg)
    svc._prepare_state_dir()
    svc._setup_relearning()
    assert svc._relearn_buffer is not None
    parser = Parser("syslog")  # each buffered line keeps its source's parser and its stream
    for line in LogGenerator(seed=9, skipped_transition=None).lines(800):
        svc._relearn_buffer.append((parser, str(tmp_path / "logs" / "a.log"), line, str(tmp_path / "logs" / "a.log")))
    from types import SimpleNamespace

    svc.bundle = SimpleNamespace(path=store.root / "v0001")  # the version the daemon still runs
    svc._start_relearning()
    svc._relearn_thread.join(timeout=240)
    assert store.current_name() == "v0004"
    # learn.keep_versions: 2 keeps the newest two, and the version the daemon runs is not deleted
    assert store.versions() == ["v0001", "v0003", "v0004"]
    m = json.loads((store.current_path() / "manifest.json").read_text())
    assert "periodic relearning" in m["training"]["learned_from"] and m["training"]["learned_lines"] == 800


def test_a_training_child_killed_by_the_kernel_says_what_probably_happened(tmp_path):
    """The out-of-memory killer SIGKILLs the training child: the error names the likely cause and the fix
    (learn.max_lines, MemoryMax=), not just an exit code."""
    import multiprocessing as mp
    import os
    import signal

    from lograven.childproc import run_training_child
    from lograven.config import Config
    from lograven.errors import LogravenError
    from lograven.training import Corpus

    def kill_it():
        for child in mp.active_children():
            if child.name.startswith("lograven-") and child.pid:
                os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(LogravenError, match=r"train child process died \(killed by SIGKILL: most often the kernel's "
                                            r"out-of-memory killer .*learn\.max_lines.*MemoryMax="):
        run_training_child("train", Corpus(), cfg=Config().to_dict(), out=str(tmp_path / "m"), tick=kill_it)


def test_a_training_child_stopped_by_sigterm_is_stopped_not_failed(tmp_path, caplog):
    """systemd stopping the service sends SIGTERM to the learn-mode child too: it ends as an exception
    (its cleanups run, and never between the renames of a new bundle), says so, and the daemon takes it
    as stopped (None), not as a failed training (which would count toward the back-off)."""
    import multiprocessing as mp

    from lograven.childproc import run_training_child
    from lograven.config import Config
    from lograven.errors import LogravenError
    from lograven.generator import LogGenerator, write_log
    from lograven.training import read_corpus

    log = tmp_path / "messages"
    write_log(log, LogGenerator(seed=1).lines(3000))
    sent = []

    def term_once_working(status: str) -> None:  # the child reports progress: its handler is in place
        for child in mp.active_children():
            if child.name.startswith("lograven-") and child.pid and not sent:
                sent.append(child.pid)
                os.kill(child.pid, signal.SIGTERM)

    asked = []

    def stopping_once_asked_again() -> bool:  # the daemon's own SIGTERM, seen after the child's message came
        if sent:
            asked.append(1)
        return len(asked) > 1

    with caplog.at_level("WARNING", logger="lograven.childproc"):
        result = run_training_child("train", read_corpus([str(log)]), cfg=Config().to_dict(), out=str(tmp_path / "m"),
                                    on_status=term_once_working, should_stop=stopping_once_asked_again)  # fmt: skip
    assert sent and result is None and "child was stopped (SIGTERM)" in caplog.text
    assert not (tmp_path / "m").exists() and [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    # the child alone stopped (an admin's kill), the daemon going on: a failed training, said
    sent.clear()
    with pytest.raises(LogravenError, match="stopped by a SIGTERM from outside lograven"):
        run_training_child("train", read_corpus([str(log)]), cfg=Config().to_dict(), out=str(tmp_path / "m"),
                           on_status=term_once_working)  # fmt: skip


def _learning_service(tmp_path):
    """A Service in learn mode over 50 lines of logs/a.log, its state_dir prepared."""
    from lograven.config import parse_config
    from lograven.service import Service

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("\n".join(LogGenerator(seed=3).lines(50)) + "\n")
    cfg = parse_config({"sources": [{"paths": [f"{tmp_path}/logs/*.log"]}], "state_dir": str(tmp_path / "state"),
                        "learn": {"min_lines": 10}})  # fmt: skip
    svc = Service(cfg)
    svc._prepare_state_dir()
    return svc


def test_learn_mode_backs_off_after_failed_trainings(tmp_path, monkeypatch, caplog):
    """A training killed again and again (the OOM killer; systemd restarts the daemon at once) is not
    retried every few seconds: each failure is recorded in state_dir, and the next start waits 1, 2, 4 ...
    60 min first (stoppable, with the watchdog pinged). A success clears the record."""
    import time

    from lograven import learnmode
    from lograven.errors import LogravenError

    svc = _learning_service(tmp_path)

    def oom(*a, **k):
        raise LogravenError("train child process died (killed by SIGKILL: ...)")

    monkeypatch.setattr(learnmode, "run_training_child", oom)
    with pytest.raises(LogravenError):
        learnmode.learn_initial_model(svc)
    assert learnmode._failures(svc)[0] == 1
    waits = []
    monkeypatch.setattr(svc._stop, "wait", lambda t: (waits.append(t), svc._stop.set())[1] or True)
    with caplog.at_level("WARNING", logger="lograven.learnmode"):
        learnmode.learn_initial_model(svc)  # the next start: waits (and is stopped while waiting)
    assert "training failed 1 time(s) before (last: train child process died (killed by SIGKILL: ...)); waiting" \
        in caplog.text and waits
    assert "if it was killed for memory: lower learn.max_lines" in caplog.text
    assert learnmode._failures(svc)[0] == 1  # a stop is no attempt
    # a failure that is not the kernel's (TensorFlow missing) gets its own words, not the memory advice
    # (admin review, 2026-12-07)
    learnmode._record_failure(svc, "training needs TensorFlow, which is not installed in this environment")
    svc._stop.clear()  # (the waiting stub stops it again)
    caplog.clear()
    with caplog.at_level("WARNING", logger="lograven.learnmode"):
        learnmode.learn_initial_model(svc)
    assert "(last: training needs TensorFlow, which is not installed in this environment)" in caplog.text
    assert "fix what it says" in caplog.text and "max_lines" not in caplog.text
    assert learnmode._failures(svc)[0] == 2
    svc._stop.clear()
    monkeypatch.setattr(learnmode, "BACKOFF_FIRST", 0.0)
    monkeypatch.setattr(learnmode, "run_training_child", lambda *a, **k: {"seconds": {"total": 1.0}})
    monkeypatch.setattr(svc.store, "set_current", lambda name: None)
    learnmode.learn_initial_model(svc)
    assert learnmode._failures(svc) == (0, 0.0) and not (tmp_path / "state" / learnmode._FAILURES).exists()
    svc._release_lock()


def test_learn_mode_waits_for_room_to_save_its_model_before_training(tmp_path, monkeypatch, caplog):
    """A full state_dir: learn mode trained for minutes, failed to save, failed to record the failure (the
    disk was full), and the restart trained again at once, a loop of trainings (a robustness review). It
    now looks for room before training, says so once, waits (stoppable, the watchdog pinged) and trains
    once there is room."""
    import errno

    from lograven import bundle as bundle_mod
    from lograven import learnmode

    svc = _learning_service(tmp_path)
    # a version directory left without a bundle is no reason to wait (a review: it was probed, and refused)
    (svc.store.root / "v0001").mkdir(parents=True)
    (svc.store.root / "v0001" / "partial.npz").write_bytes(b"x")
    full = [True]
    monkeypatch.setattr(bundle_mod, "_free_bytes", lambda where: 4096 if full[0] else 10 * 2**30)
    trained = []
    monkeypatch.setattr(learnmode, "run_training_child", lambda *a, **k: trained.append(1) or {"seconds": {"total": 1.0}})
    monkeypatch.setattr(svc.store, "set_current", lambda name: None)
    pings, looks = [], []
    monkeypatch.setattr(svc.notifier, "watchdog", lambda: pings.append(1))

    def wait(t):  # the clock: each wait is the retry interval; room comes at the second look
        looks.append(t)
        if len(looks) == 2:
            full[0] = False
        return False

    monkeypatch.setattr(svc._stop, "wait", wait)
    monkeypatch.setattr(learnmode, "ROOM_RETRY_SECONDS", 0.05)
    with caplog.at_level("INFO", logger="lograven.learnmode"):
        learnmode.learn_initial_model(svc)
    assert trained == [1] and looks and pings
    said = [r.getMessage() for r in caplog.records if "could not be saved, so it is not trained yet" in r.getMessage()]
    assert len(said) == 1 and os.strerror(errno.ENOSPC) in said[0] and "free space on that file system" in said[0]
    assert "room to save the model again; training" in caplog.text
    assert learnmode._failures(svc) == (0, 0.0)  # waiting is no failed training
    # stopped while waiting: nothing trained, nothing recorded
    full[0], trained[:] = True, []
    monkeypatch.setattr(svc._stop, "wait", lambda t: True)
    learnmode.learn_initial_model(svc)
    assert trained == [] and learnmode._failures(svc) == (0, 0.0)
    svc._release_lock()


def test_learn_mode_learns_the_history_in_rotated_generations_first(tmp_path, caplog):
    """A file rotated daily may hold a few hours of a host's messages when the daemon first starts: too few
    lines to learn its orderings (train and check say so). What the files leave of learn.max_lines now goes
    to the last lines of their rotated generations (plain or compressed), read before the file's own
    lines as one stream, in the order they were written. A generation that is itself a configured file
    is not read twice; one that cannot be read is skipped and said; the tailer's positions are the
    files' own."""
    import bz2
    import gzip

    from lograven.config import parse_config
    from lograven.learnmode import existing_lines

    def lines(tag, n):
        return "".join(f"Jun  9 07:00:00 web01 app[1]: {tag} line {i}\n" for i in range(n))

    log = tmp_path / "app.log"
    log.write_text(lines("now", 100))
    (tmp_path / "app.log.1").write_text(lines("gen1", 200))
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(lines("gen2", 300).encode()))
    (tmp_path / "app.log.3.bz2").write_bytes(bz2.compress(lines("gen3", 50).encode()))
    (tmp_path / "app.log.4.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 40)  # zstd: not read, said
    for age, name in enumerate(["app.log.1", "app.log.2.gz", "app.log.3.bz2", "app.log.4.zst"], 1):
        os.utime(tmp_path / name, (time.time() - 86400 * age, time.time() - 86400 * age))
    (tmp_path / "app.log.bak").write_text(lines("backup", 10))  # not a rotated name
    cfg = parse_config({"sources": [{"paths": [str(log)]}], "learn": {"max_lines": 10_000}})
    with caplog.at_level("INFO", logger="lograven.learnmode"):
        corpus, positions, n_read = existing_lines(cfg, [[str(log)]])
    order = [m.split()[0] for m in corpus.messages]
    assert order == ["gen3"] * 50 + ["gen2"] * 300 + ["gen1"] * 200 + ["now"] * 100, order[:5]
    assert set(corpus.streams) == {str(log)} and n_read == 1
    assert positions == {"0": {str(log): positions["0"][str(log)]}} and positions["0"][str(log)]["offset"] == log.stat().st_size
    assert f"{tmp_path / 'app.log.4.zst'} is zstd-compressed, which the standard library cannot read" in caplog.text
    assert "learn mode: 650 lines in all, 550 of them from rotated generations" in caplog.text
    # the budget: the files' own lines first, then the newest generations' last lines
    cfg = parse_config({"sources": [{"paths": [str(log)]}], "learn": {"max_lines": 250, "min_lines": 100}})
    corpus, _, _ = existing_lines(cfg, [[str(log)]])
    assert [m.split()[0] for m in corpus.messages] == ["gen1"] * 150 + ["now"] * 100
    assert corpus.messages[0] == "gen1 line 50"
    # a damaged one is skipped and said
    (tmp_path / "app.log.1").rename(tmp_path / "app.log.1.gz")
    (tmp_path / "app.log.1.gz").write_bytes(gzip.compress(lines("gen1", 200).encode())[:40])
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.learnmode"):
        corpus, _, _ = existing_lines(cfg, [[str(log)]])
    assert f"cannot read {tmp_path / 'app.log.1.gz'} for history" in caplog.text, caplog.text
    # damaged after many lines: those lines are history all the same (a review: all dropped)
    whole = gzip.compress(lines("gen1", 5000).encode())
    (tmp_path / "app.log.1.gz").write_bytes(whole[: len(whole) // 2])
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.learnmode"):
        corpus, _, _ = existing_lines(cfg, [[str(log)]])
    assert "learning the 150 lines read before the error" in caplog.text, caplog.text
    assert sum(m.startswith("gen1") for m in corpus.messages) == 150
    (tmp_path / "app.log.1.gz").unlink()
    (tmp_path / "app.log.1").write_text(lines("gen1", 200))
    # the watchdog is fed while a generation is read, and a stop ends the reading
    ticks = []
    corpus, _, _ = existing_lines(parse_config({"sources": [{"paths": [str(log)]}], "learn": {"max_lines": 10_000}}),
                                  [[str(log)]], lambda: ticks.append(1) or len(ticks) > 2)  # fmt: skip
    assert len(ticks) == 3 and not any(m.startswith("gen") for m in corpus.messages)
    # ... by the bytes read, not by lines: an archive of text without a newline yields none for long
    (tmp_path / "app.log.1").unlink()
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(os.urandom(300_000).hex().encode()))  # one "line"
    ticks.clear()
    existing_lines(parse_config({"sources": [{"paths": [str(log)]}], "learn": {"max_lines": 10_000}}),
                   [[str(log)]], lambda: ticks.append(1) and False)  # fmt: skip
    assert len(ticks) >= 2 + 300_000 * 2 // 2 // (64 * 1024), len(ticks)  # the loop, the generation, and per 64 KiB
    (tmp_path / "app.log.1").write_text(lines("gen1", 200))
    # a generation that a source names is that source's file, not history
    cfg = parse_config({"sources": [{"paths": [str(log)]}, {"paths": [str(tmp_path / "app.log.1")]}],
                        "learn": {"max_lines": 10_000}})  # fmt: skip
    corpus, _, n_read = existing_lines(cfg, [[str(log)], [str(tmp_path / "app.log.1")]])
    assert n_read == 2 and sum(m.startswith("gen1") for m in corpus.messages) == 200


def test_existing_lines_use_the_whole_budget_whatever_the_files_and_line_lengths(tmp_path):
    """learn.max_lines was split evenly per file, and a short file's unused share was lost (25,000 of
    40,000 lines learned from a 40,000-line and a 5,000-line file); and a file's last lines were found
    with a guess of 160 bytes per line (7,565 of 20,000 lines of 420 bytes). Both now give the budget."""
    from lograven.config import parse_config
    from lograven.learnmode import _tail_lines, existing_lines

    long_lines = tmp_path / "long.log"
    long_lines.write_text("".join(f"Jun  9 07:00:00 web01 app[1]: {i:06d} " + "x" * 400 + "\n" for i in range(3000)))
    got, pos = _tail_lines(str(long_lines), 2000, 65536, 256)
    assert len(got) == 2000 and got[0].split()[5] == b"001000" and got[-1].split()[5] == b"002999"
    assert pos["offset"] == long_lines.stat().st_size
    assert len(_tail_lines(str(long_lines), 5000, 65536, 256)[0]) == 3000  # fewer lines than asked: all of them

    big, small = tmp_path / "big.log", tmp_path / "small.log"
    big.write_text("".join(f"Jun  9 07:00:00 web01 app[1]: big line {i}\n" for i in range(4000)))
    small.write_text("".join(f"Jun  9 07:00:00 web01 app[1]: small line {i}\n" for i in range(500)))
    cfg = parse_config({"sources": [{"paths": [str(big)]}, {"paths": [str(small)]}],
                        "learn": {"max_lines": 4000}})  # fmt: skip
    corpus, positions, n_read = existing_lines(cfg, [[str(big)], [str(small)]])
    assert n_read == 2 and len(corpus) == 4000  # 500 from the small file, 3,500 from the big one
    assert sum(m.startswith("small") for m in corpus.messages) == 500
    assert positions["0"][str(big)]["offset"] == big.stat().st_size and str(small) in positions["1"]
    corpus, _, n_read = existing_lines(cfg, [[str(tmp_path / "missing.log")], []])
    assert n_read == 0 and len(corpus) == 0
    sparse = tmp_path / "wtmp"  # a binary file a glob matched: no newline anywhere
    with sparse.open("wb") as f:
        f.truncate(300 * 2**20)
    got, pos = _tail_lines(str(sparse), 1000, 65536, 256)  # reads one window, not 65 GB of growing ones
    assert got == [] and pos["offset"] == sparse.stat().st_size


def test_a_reload_in_learn_mode_takes_the_fixed_configuration(tmp_path):
    """A first start with a mistyped source path waits in learn mode ("collecting lines (0/800)"); the
    admin fixes the path and runs `systemctl reload`: SIGHUP was ignored until a restart (admin review,
    2026-12-07). Now a bad config is rejected and learning goes on; the fixed one restarts learning
    with its sources."""
    (tmp_path / "logs").mkdir()
    write_log(tmp_path / "logs" / "a.log", LogGenerator(seed=3).lines(1000))
    cfg = _config(tmp_path, min_lines=800)
    good = cfg.read_text()
    cfg.write_text(good.replace(f"{tmp_path}/logs/*.log", f"{tmp_path}/log/*.log"))  # the typo
    proc, sock = _start(cfg, tmp_path)
    try:
        err = tmp_path / "err.txt"
        deadline = time.monotonic() + 60
        while "collecting lines" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        cfg.write_text("sources: [\n")  # half-edited: rejected, learning goes on
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "reload rejected" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "reload rejected, learn mode goes on with the running configuration" in err.read_text()
        assert proc.poll() is None
        cfg.write_text(good)
        proc.send_signal(signal.SIGHUP)
        _wait_ready(sock)
        assert "reload: learn mode starts again with the new configuration" in err.read_text()
        manifest = json.loads((ModelStore(tmp_path / "state" / "models").current_path() / "manifest.json").read_text())
        assert manifest["training"]["lines"] == 1000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        sock.close()
