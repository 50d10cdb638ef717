"""Errors a newcomer meets: one line that says what is wrong and what to do, exit code 1, no traceback.

Most cases call `cli.main` in-process; the ones that start the daemon run it as
a process, because `Service.run` installs signal handlers.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import sys
from pathlib import Path

import pytest

from lograven import cli, training
from lograven.errors import LogravenError
from lograven.generator import LogGenerator, write_log

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 1, err
    assert "Traceback" not in err, err
    assert any(ln.startswith("lograven ") and ": error: " in ln for ln in err.splitlines()), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    path = tmp_path / "messages"
    write_log(path, LogGenerator(seed=3).lines(300))
    return path


def _lograven(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lograven", *args], capture_output=True, text=True, timeout=120, **kw)


def _daemon_config(tmp_path: Path, logfile: Path, *, listen: str, model: str | None = str(DEFAULT)) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
sources:
  - paths: ["{logfile}"]
model: {model if model else "null"}
state_dir: {tmp_path / "state"}
alerts:
  syslog: {{enabled: false}}
  jsonl: {{path: {tmp_path / "alerts.jsonl"}}}
metrics: {{listen: "{listen}"}}
"""
    )
    return cfg


# ---------------------------------------------------------------- log files
def test_unreadable_log_file_says_how_to_get_access(capsys, logfile, monkeypatch) -> None:
    real_open = open

    def deny(path, *args, **kwargs):  # what a 0600 root file does to a non-root user
        if str(path) == str(logfile):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(training, "open", deny, raising=False)
    rc, _, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(logfile))
    assert_user_error(rc, err, str(logfile), "permission denied", "adm", "setfacl")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_log_file_for_real(capsys, logfile) -> None:
    logfile.chmod(0)
    rc, _, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(logfile))
    assert_user_error(rc, err, "permission denied")


def test_missing_log_file(capsys, tmp_path) -> None:
    missing = tmp_path / "nope.log"
    rc, _, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(missing))
    assert_user_error(rc, err, str(missing), "no such file")
    rc, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "m"), str(missing))
    assert_user_error(rc, err, "no such file")
    assert not (tmp_path / "m").exists()


# -------------------------------------------------------------------- model
def test_no_model_yet(capsys, logfile) -> None:
    rc, _, err = run_cli(capsys, "score", "--model", "/nonexistent", str(logfile))
    assert_user_error(rc, err, "/nonexistent", "lograven train")


def test_score_accepts_the_daemons_model_directory(capsys, logfile, tmp_path) -> None:
    """`--model /var/lib/lograven/models` (numbered versions + current) is what a newcomer tries."""
    store = tmp_path / "models"
    store.mkdir()
    (store / "v0001").symlink_to(DEFAULT, target_is_directory=True)
    (store / "current").symlink_to("v0001")
    rc, out, err = run_cli(capsys, "score", "--model", str(store), str(logfile))
    assert rc == 0, err
    assert len(out.splitlines()) == 300


def test_score_checks_every_file_before_the_first_verdict(capsys, logfile, tmp_path, monkeypatch) -> None:
    """A bad path after good ones is an error before any output (not 1,024 verdicts and then an error);
    a file that fails while it is read keeps the verdicts of the lines read before."""
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(logfile), str(tmp_path / "nope.log"))
    assert_user_error(rc, err, "nope.log", "no such file")
    assert out == ""

    def failing(files, max_line_bytes):
        yield from ((str(logfile), i, "Jun  9 06:06:20 web01 sshd[1]: Accepted password for alice") for i in range(1, 4))
        raise training.LogravenError(f"{logfile}: Input/output error")

    monkeypatch.setattr(cli, "iter_input_lines", failing)
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(logfile))
    assert rc != 0 and "Input/output error" in err and len(out.splitlines()) == 3


def test_stream_key_example_from_the_help_works(capsys, tmp_path) -> None:
    """`--help` suggests --stream-key 'blk_-?\\d+' (no group): the whole match is the stream."""
    log = tmp_path / "hdfs.log"
    log.write_text("Jun  9 06:06:20 web01 dn[1]: Receiving block blk_-123 src: /10.0.0.1\n")
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), "--stream-key", r"blk_-?\d+", str(log))
    assert rc == 0, err
    assert '"stream": "blk_-123"' in out
    # with the config's `regex:` prefix, as `evaluate --stream-key` takes it too
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), "--stream-key", r"regex:(blk_-?\d+)", str(log))
    assert rc == 0, err
    assert '"stream": "blk_-123"' in out
    rc, _, err = run_cli(capsys, "score", "--model", str(DEFAULT), "--stream-key", "blk_(", str(log))
    assert_user_error(rc, err, "--stream-key", "blk_(", "not a valid regular expression")


def test_score_warns_when_the_format_timestamp_group_holds_no_timestamp(capsys, caplog, tmp_path) -> None:
    """A regex whose groups fall in the wrong places matches every line: only its timestamps tell it."""
    log = tmp_path / "hdfs.log"
    log.write_text("".join(f"081109 2035{i:02d} 143 INFO dfs.DataNode: Receiving block blk_-{i}\n" for i in range(5)))
    shifted = r"regex:(?P<pid>\S+) (?P<timestamp>\S+) (?P<message>.*)"  # the date is taken for the pid
    with caplog.at_level("WARNING"):
        rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), "--format", shifted, str(log))
    assert rc == 0 and len(out.splitlines()) == 5, err
    assert "held no timestamp lograven reads in 5 of 5 lines (e.g. '203500')" in caplog.text, caplog.text
    assert "give the files' --format" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), "--format",
                               r"regex:(?P<timestamp>\S+ \S+) (?P<pid>\S+) (?P<message>.*)", str(log))
    assert rc == 0 and "timestamp" not in caplog.text, caplog.text


def test_score_warns_when_most_lines_do_not_match_the_format(capsys, caplog, tmp_path) -> None:
    log = tmp_path / "sys.log"
    log.write_text("Jun  9 06:06:20 web01 sshd[1]: Accepted password for alice\n\n" * 3)
    with caplog.at_level("WARNING"):
        rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), "--format", "iso", str(log))
    assert rc == 0, err
    assert len(out.splitlines()) == 6  # still one verdict per line, blank lines included
    assert "3 of 3 lines do not match --format iso" in caplog.text, caplog.text
    blank = [json.loads(x) for x in out.splitlines()][1]
    assert blank["anomaly"] is False and blank["detectors"] == [] and blank["type"] == 0
    assert blank["parsed"] is None  # not a line of another layout (score.md: `select(.parsed == false)`)
    caplog.clear()
    with caplog.at_level("WARNING"):
        rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(log))
    assert rc == 0 and "do not match" not in caplog.text, caplog.text


# ------------------------------------------------------------------- config
def test_config_with_a_yaml_error_names_file_and_line(capsys, tmp_path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sources:\n  - paths: [/var/log/messages\n    format: syslog\n")
    rc, _, err = run_cli(capsys, "check", "--config", str(cfg))
    assert_user_error(rc, err, str(cfg), "line 3", "invalid YAML")


def test_config_with_a_wrong_key_suggests_the_right_one(capsys, tmp_path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sources:\n  - path: [/var/log/messages]\nmetrics:\n  listen: 9077\n")
    rc, _, err = run_cli(capsys, "check", "--config", str(cfg))
    assert_user_error(rc, err, "sources[0].path", "did you mean 'paths'", "metrics.listen", "put it in quotes")


def test_missing_config_file(capsys, tmp_path) -> None:
    rc, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "nothere.yaml"))
    assert_user_error(rc, err, "nothere.yaml", "no such file", "config.example.yaml")


def test_check_says_a_source_that_is_a_symlink_loop_loops(capsys, tmp_path, logfile) -> None:
    """Hostile-input review (2026-12-07): a source that is a symbolic link loop was "no file matches ... yet;
    lograven reads it once it appears", which it never will."""
    loop = tmp_path / "loop.log"
    loop.symlink_to(loop)
    cfg = _daemon_config(tmp_path, loop, listen="127.0.0.1:9077")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, err
    assert f"warning: sources[0].paths: {loop} is a symbolic link that loops (pointing, at last, to itself)" in out
    assert "no file matches" not in out


def test_check_warns_about_sources_that_match_nothing(capsys, tmp_path, logfile) -> None:
    cfg = _daemon_config(tmp_path, tmp_path / "typo" / "mesages", listen="127.0.0.1:9077")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, err
    assert "model bundle OK" in out
    assert "warning: sources[0].paths: no file matches" in out
    assert "apt install rsyslog" not in out  # Debian's missing /var/log/syslog is no hint for a path elsewhere
    # the thresholds the daemon would use with this model, after calibration
    assert "detectors in force: sequence p/p_train < " in out and "autoencoder error > " in out, out
    # one typo among several paths of an entry is said too (a glob that matches nothing yet is not)
    text = cfg.read_text().replace(f'["{tmp_path / "typo" / "mesages"}"]', f'["{logfile}", "/var/log/secrue", "{tmp_path}/*.lgo"]')
    cfg.write_text(text)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, err
    assert "warning: sources[0].paths: /var/log/secrue does not exist" in out and ".lgo" not in out, out
    # where `run` could not write: said by check, not found out at start; a file where a directory must
    # be fails for every user, so check fails (`check && systemctl reload` must not pass it)
    (tmp_path / "afile").write_text("x")
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "state"), str(tmp_path / "afile" / "state")))
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 1 and "configuration OK" not in out, out  # failed first, not after an OK
    assert f"state_dir {tmp_path / 'afile' / 'state'}: {tmp_path / 'afile'} is not a directory; choose another path" in err, err
    assert "alerts.jsonl.path" not in out + err  # its directory is writable
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "afile" / "state"), str(tmp_path / "afile")))
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 1 and f"state_dir {tmp_path / 'afile'}: is a file, not a directory; choose another path" in err, err
    # /proc takes no file, not even root's (access() says yes to root): check said OK to a state_dir there, which
    # `run` refused (hostile-input review, 2026-12-07)
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "afile"), "/proc/nonexistent/state"))
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 1 and "state_dir /proc/nonexistent/state: lies under /proc or /sys" in err, err
    cfg.write_text(cfg.read_text().replace("/proc/nonexistent/state", str(tmp_path / "afile")))
    # an alerts file `run` cannot open: check fails, and `run` refuses to start
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "afile"), str(tmp_path / "state"))
                   .replace(str(tmp_path / "alerts.jsonl"), str(tmp_path / "afile" / "alerts.jsonl")))  # fmt: skip
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 1 and f"alerts.jsonl.path {tmp_path / 'afile' / 'alerts.jsonl'}: " in err, err
    r = subprocess.run([sys.executable, "-m", "lograven", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "alerts.jsonl.path" in r.stderr, r.stderr[-2000:]


def test_check_shows_default_model_thresholds_and_unlearned_stream_ends(capsys, tmp_path) -> None:
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "models" / "default"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {model}\nsources:\n  - paths: [{tmp_path}/x.log]\n"
                   "detectors:\n  sequence: {rule: probability, stream_end_after: 5}\n")  # fmt: skip
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, err
    line = next(ln for ln in out.splitlines() if "detectors in force" in ln)
    # the default model's held-back lines lower p < 0.02 to their 0.001 quantile, and it has a floor
    assert "(calibrated from 0.02)" in line and "(floor)" in line, line
    assert "did not learn stream ends" in line, line


# ------------------------------------------------------------------- daemon
@pytest.mark.slow
def test_run_with_the_metrics_port_in_use_detects_and_serves_once_it_is_free(tmp_path, logfile) -> None:
    """Any local user may hold the metrics port before lograven starts. Refusing to start made that a way
    to stop all detection (and answer Prometheus in lograven's name): the daemon now says so, detects and
    alerts without /metrics, and serves them once the port is free."""
    import signal
    import time
    import urllib.request

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    listen = f"127.0.0.1:{busy.getsockname()[1]}"
    cfg = _daemon_config(tmp_path, logfile, listen=listen)
    err = tmp_path / "stderr"
    with open(err, "wb") as e:
        p = subprocess.Popen([sys.executable, "-m", "lograven", "run", "--config", str(cfg)], stderr=e)
    try:
        alerts = tmp_path / "alerts.jsonl"
        deadline = time.monotonic() + 90
        while not (alerts.exists() and "kernel panic" in alerts.read_text()) and time.monotonic() < deadline:
            assert p.poll() is None, err.read_text()
            with open(logfile, "a") as f:
                f.write("Jun  9 07:00:00 web01 kernel: kernel panic, never seen before: fatal exception 0x1f\n")
            time.sleep(1)
        text = err.read_text()
        assert "kernel panic" in alerts.read_text(), text  # detecting and alerting
        assert "metrics.listen" in text and listen in text and "already in use" in text and "Traceback" not in text
        busy.close()
        deadline, body = time.monotonic() + 40, None
        while body is None and time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://{listen}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and "lograven_lines_read_total" in body, err.read_text()
        assert "was free again: serving /metrics now" in err.read_text()
    finally:
        busy.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, err.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_second_daemon_on_the_same_state_dir_is_refused(tmp_path, logfile) -> None:
    """Two daemons on one state_dir would overwrite each other's checkpoint and send every alert twice."""
    first = _daemon_config(tmp_path, logfile, listen=f"127.0.0.1:{_free_port()}")
    lock = tmp_path / "state" / "lock"

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "lograven", "-q", "run", "--config", str(first)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().split()[:1] == [str(proc.pid)]):
            assert proc.poll() is None and time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        return proc

    proc = start()
    try:
        other = tmp_path / "second"
        other.mkdir()
        second = _daemon_config(other, logfile, listen=f"127.0.0.1:{_free_port()}")
        second.write_text(second.read_text().replace(str(other / "state"), str(tmp_path / "state")))
        r = _lograven("run", "--config", str(second))
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert f"is in use by another lograven (pid {proc.pid})" in r.stderr, r.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    # once it has stopped (the lock file stays), the state_dir is free again
    again = start()
    again.terminate()
    assert again.wait(timeout=60) == 0, again.stderr.read()


def test_plugin_mode_without_a_model(tmp_path, logfile) -> None:
    cfg = _daemon_config(tmp_path, logfile, listen="127.0.0.1:9077", model=None)
    r = _lograven("run", "--stdin", "--config", str(cfg), stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "model" in r.stderr and "lograven train" in r.stderr, r.stderr


def test_the_daemon_says_what_it_does_by_default(tmp_path, logfile) -> None:
    """`run` logs at INFO without -v (the journal shows start, model, reloads); -q keeps warnings only."""
    cfg = _daemon_config(tmp_path, logfile, listen="127.0.0.1:9077")
    r = _lograven("run", "--stdin", "--config", str(cfg), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert " INFO " in r.stderr and "loaded from" in r.stderr, r.stderr
    r = _lograven("-q", "run", "--stdin", "--config", str(cfg), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert " INFO " not in r.stderr, r.stderr


# --------------------------------------------------------------- TensorFlow
def test_train_without_tensorflow_says_how_to_install_it(capsys, logfile, tmp_path, monkeypatch) -> None:
    """A serving-only install (no TensorFlow) can score but not train: say so before any slow work."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now raises ImportError
    monkeypatch.setitem(sys.modules, "keras", None)
    rc, _, err = run_cli(capsys, "-q", "train", "--out", str(tmp_path / "m"), str(logfile))
    assert_user_error(rc, err, "TensorFlow", "pip install tensorflow")
    assert not (tmp_path / "m").exists()
    # serving still works in the same environment
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(logfile))
    assert rc == 0, err
    assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None


def test_options_are_never_abbreviated() -> None:
    """argparse would read `--alert ID` as `--alerts ID` (a file) and fail with an unrelated message."""
    from lograven.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["allow", "--alert", "abc"])
    assert build_parser().parse_args(["allow", "abc"]).alert_id == "abc"


def test_compressed_logs_are_read_as_zcat_would(tmp_path, capsys, bundle_dir, training_log) -> None:
    """Rotated logs come compressed (messages.1.gz): train and score read gzip, bzip2 and xz
    transparently, from files and from standard input; a damaged archive and zstd are errors that
    name the file and the fix, never compressed bytes learned or scored as text."""
    import bz2
    import gzip
    import io
    import lzma

    text = "".join(training_log.read_text().splitlines(keepends=True)[:200]).encode()
    plain = tmp_path / "messages.1"
    plain.write_bytes(text)
    packed = {"gz": gzip.compress(text), "bz2": bz2.compress(text), "xz": lzma.compress(text)}
    ref = training.read_corpus([str(plain)])
    for ext, data in packed.items():
        p = tmp_path / f"messages.1.{ext}"
        p.write_bytes(data)
        c = training.read_corpus([str(p)])
        assert c.messages == ref.messages and c.unparsed == 0, ext
    rc, want, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(plain))
    assert rc == 0, err
    rc, got, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(tmp_path / "messages.1.gz"))
    assert rc == 0 and "do not match" not in err, err
    strip = lambda out: [{k: v for k, v in json.loads(ln).items() if k not in ("file", "stream")} for ln in out.splitlines()]  # noqa: E731
    assert len(got.splitlines()) == 200 and strip(got) == strip(want)

    class _Stdin:
        buffer = io.BufferedReader(io.BytesIO(packed["xz"]))

    old, sys.stdin = sys.stdin, _Stdin()
    try:
        rc, got, err = run_cli(capsys, "score", "--model", str(bundle_dir), "-")
        _Stdin.buffer = io.BufferedReader(io.BytesIO(packed["gz"]))
        from_stdin = training.read_corpus(["-"])  # `zcat ... | lograven train -`, or the archive itself
    finally:
        sys.stdin = old
    assert rc == 0 and strip(got) == strip(want), err
    assert from_stdin.messages == ref.messages and from_stdin.files == ["-"] * 200

    cut = tmp_path / "cut.gz"
    cut.write_bytes(packed["gz"][: len(packed["gz"]) // 2])
    rc, _, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(cut))
    assert_user_error(rc, err, f"{cut}: gzip-compressed but cannot be decompressed", f"gzip -t {cut}")
    for ext, at in (("gz", 30), ("xz", 40), ("bz2", 30)):  # a damaged byte: zlib.error / LZMAError / OSError
        bad = tmp_path / f"bad.{ext}"
        data = bytearray(packed[ext])
        data[at] ^= 0xFF
        bad.write_bytes(bytes(data))
        rc, _, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(bad))
        assert_user_error(rc, err, f"{bad}: ")
    # a plain log that happens to start like bzip2's magic is text
    looks = tmp_path / "BZh.log"
    looks.write_text("BZh9 is a model name\n" + text.decode()[:2000])
    assert training.read_corpus([str(looks)]).messages[0] == "BZh9 is a model name"
    # a pipe that delivers the magic in pieces is still recognised
    (tmp_path / "x.xz").write_bytes(packed["xz"])
    writer = ("import sys, time; d = open(sys.argv[1], 'rb').read(); o = sys.stdout.buffer; "
              "o.write(d[:2]); o.flush(); time.sleep(0.2); o.write(d[2:]); o.flush()")
    with subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "x.xz")], stdout=subprocess.PIPE) as proc:
        got_lines = [t for t, _ in training.iter_maybe_compressed(proc.stdout, "<pipe>", 65536)]
    assert got_lines == text.decode().splitlines()
    zst = tmp_path / "messages.1.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    rc, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "m"), str(zst))
    assert_user_error(rc, err, f"{zst}: zstd-compressed; decompress it first")


def test_bytes_after_a_gzip_archive_are_ignored_as_zcat_ignores_them(tmp_path, capsys, caplog, bundle_dir,
                                                                     training_log) -> None:
    """`zcat` reads a gzip file of several members followed by bytes that start no member ("trailing
    garbage ignored"), as Python's bz2 and lzma readers read theirs: every member's lines are read, the
    rest is said once, with the file's name. It had been an error after the lines were read (score gave
    up on the file, learn mode's history dropped the generation's later lines). A member that is cut or
    damaged stays an error: those are not "after the archive"."""
    import gzip

    lines = training_log.read_text().splitlines(keepends=True)[:300]
    text = "".join(lines).encode()
    two = gzip.compress(text[: len(text) // 2]) + gzip.compress(text[len(text) // 2 :])  # cat a.gz b.gz
    p = tmp_path / "messages.2.gz"
    p.write_bytes(two + b"garbage after the archive\n\x00\x01")
    assert subprocess.run(["zcat", str(p)], capture_output=True).stdout == text  # what zcat gives
    caplog.set_level("WARNING")
    c = training.read_corpus([str(p)])
    assert len(c.messages) == 300 and c.unparsed == 0
    said = [r.getMessage() for r in caplog.records if "after the gzip archive" in r.getMessage()]
    assert said and all(str(p) in m for m in said)
    rc, out, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(p))
    assert rc == 0 and len(out.splitlines()) == 300, err
    assert [json.loads(x)["line"] for x in out.splitlines()] == list(range(1, 301))
    # the same bytes read in small pieces (a pipe): nothing before the garbage is lost
    from lograven.osutil import open_decompressed

    with open(p, "rb") as f, open_decompressed("gzip", f, str(p)) as z:
        got = b"".join(iter(lambda: z.read(7), b""))
    assert got == text
    # damage inside a member is still refused
    cut = tmp_path / "cut.gz"
    cut.write_bytes(two[: len(two) - 40] + b"garbage")
    rc, _, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(cut))
    assert_user_error(rc, err, f"{cut}: gzip-compressed but cannot be decompressed")


def test_xz_files_are_read_as_xzcat_reads_them_within_a_memory_limit(tmp_path, capsys, caplog, bundle_dir,
                                                                     training_log, monkeypatch) -> None:
    """An xz generation is read with a memory limit (osutil.XZ_MEMORY_LIMIT): lzma.open() has none, and
    a crafted file can declare a 1.5 GiB dictionary. Under the limit it reads as xzcat does: concatenated
    streams, stream padding between them; bytes after the last stream are said once and the lines before
    them kept. Over the limit, score says why, with the file's name, and how to read it anyway."""
    import lzma

    from lograven import osutil

    lines = training_log.read_text().splitlines(keepends=True)[:300]
    text = "".join(lines).encode()
    two = lzma.compress(text[:5000]) + b"\0" * 8 + lzma.compress(text[5000:])  # cat a.xz b.xz, padded
    p = tmp_path / "messages.2.xz"
    p.write_bytes(two)
    assert subprocess.run(["xzcat", str(p)], capture_output=True).stdout == text  # what xzcat gives
    for piece in (7, 1 << 16):  # small reads (a pipe) and large ones
        with open(p, "rb") as f, osutil.open_decompressed("xz", f, str(p)) as z:
            assert b"".join(iter(lambda: z.read(piece), b"")) == text
    rc, out, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(p))
    assert rc == 0 and [json.loads(x)["line"] for x in out.splitlines()] == list(range(1, 301)), err
    # bytes after the last stream: said, the lines kept
    junk = tmp_path / "junk.xz"
    junk.write_bytes(two + b"not an xz stream\n")
    caplog.set_level("WARNING")
    c = training.read_corpus([str(junk)])
    assert len(c.messages) == 300
    assert [r.getMessage() for r in caplog.records if "after the xz file's last stream" in r.getMessage()] \
        == [f"{junk}: bytes after the xz file's last stream were ignored; the lines before them were read"]
    # a cut stream is still an error
    cut = tmp_path / "cut.xz"
    cut.write_bytes(two[:-30])
    rc, _, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(cut))
    assert_user_error(rc, err, f"{cut}: xz-compressed but cannot be decompressed")
    # a dictionary beyond the limit (here the limit is lowered: -6 decodes in about 9 MiB)
    monkeypatch.setattr(osutil, "XZ_MEMORY_LIMIT", 2**20)
    rc, out, err = run_cli(capsys, "score", "--model", str(bundle_dir), str(p))
    assert_user_error(rc, err, f"{p}: xz-compressed but cannot be decompressed (decompressing it needs more "
                               f"than 1 MiB of memory")
    assert f"`xz -dc {p}`" in err and out == ""


def test_check_verifies_the_model_learn_mode_saved(capsys, tmp_path, bundle_dir, logfile, monkeypatch) -> None:
    """With `model: null` after learn mode, the daemon runs <state_dir>/models/current: check verifies that
    version and shows its thresholds instead of announcing learn mode again."""
    import shutil

    from lograven.modelstore import ModelStore

    cfg = _daemon_config(tmp_path, logfile, listen="127.0.0.1:9077", model=None)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and "learn mode (learns from the configured files on first start)" in out, out + err
    store = ModelStore(tmp_path / "state" / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and "the learned model" in out and "= v0001: model bundle OK" in out, out + err
    assert "detectors in force: " in out and "learn mode (learns" not in out
    (tmp_path / "state" / "models" / "v0001" / "sequence.npz").write_bytes(b"damaged")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert_user_error(rc, err, "sequence.npz")
    # a plain user and the service's 0750 state directory: said, no traceback, the other checks still run
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self.root / "current"))

    monkeypatch.setattr(ModelStore, "current_path", denied)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and "cannot look in" in out and "sudo -u lograven lograven check" in out, out + err


def test_unreadable_bundle_file_and_model_directory_are_said(capsys, tmp_path, bundle_dir, logfile, monkeypatch) -> None:
    """A plain user pointing --model at the service's files (a 0640 weights file, the 0750 models
    directory) got a PermissionError traceback."""
    import shutil

    from lograven import bundle

    m = tmp_path / "m"
    shutil.copytree(bundle_dir, m)
    real = bundle.sha256_file

    def unreadable_weights(path):
        if Path(path).name == "sequence.npz":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    with monkeypatch.context() as mp:
        mp.setattr(bundle, "sha256_file", unreadable_weights)
        rc, out, err = run_cli(capsys, "score", "--model", str(m), str(logfile))
    assert_user_error(rc, err, f"{m / 'sequence.npz'}: cannot read (Permission denied); run as a user who can read")
    assert out == ""
    real_exists = Path.exists

    def search_denied(self, *a, **k):
        if str(self).startswith(str(tmp_path / "models")):
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *a, **k)

    (tmp_path / "models").mkdir()
    monkeypatch.setattr(Path, "exists", search_denied)
    rc, out, err = run_cli(capsys, "score", "--model", str(tmp_path / "models"), str(logfile))
    assert_user_error(rc, err, f"{tmp_path / 'models'}: cannot look inside (Permission denied)", "sudo -u lograven")


def test_a_broken_current_pointer_says_how_to_repair_it(capsys, tmp_path, bundle_dir, logfile) -> None:
    import shutil

    from lograven.modelstore import ModelStore

    store = ModelStore(tmp_path / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    (store.root / "current").unlink()
    (store.root / "current").symlink_to("v0042")  # a typo'd manual switch, or a version deleted by hand
    rc, _, err = run_cli(capsys, "score", "--model", str(store.root), str(logfile))
    assert_user_error(rc, err, "current: points to v0042, which is not there", "models rollback --dir")
    rc, _, err = run_cli(capsys, "learn", "--model", str(store.root), str(logfile))  # said "train one", before
    assert_user_error(rc, err, "current: points to v0042, which is not there", "models rollback --dir")
    rc, out, err = run_cli(capsys, "models", "list", "--dir", str(store.root))
    assert rc == 0 and "v0001" in out and "warning: current points to v0042, which is not a version here" in err
    (store.root / "current").unlink()
    (store.root / "current").write_text("v0001\n")  # a file instead of the link
    rc, _, err = run_cli(capsys, "score", "--model", str(store.root), str(logfile))
    assert_user_error(rc, err, "current: is a file, not a symbolic link to a version", "--to vNNNN")


def test_run_on_a_full_state_dir_says_so(capsys, tmp_path, logfile, monkeypatch) -> None:
    """A fresh lock file takes no data block, so the write check passed on a full disk and writing the
    pid into it was an ENOSPC traceback."""
    from lograven import service

    def full(fd, data, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.os, "pwrite", full)
    cfg = _daemon_config(tmp_path, logfile, listen=f"127.0.0.1:{_free_port()}")
    rc, _, err = run_cli(capsys, "run", "--config", str(cfg))
    assert_user_error(rc, err, f"state_dir {tmp_path / 'state'}: cannot write the lock file (No space left on device)",
                      "df -h")  # fmt: skip


def test_a_damaged_current_version_at_start_names_the_version_to_roll_back_to(capsys, tmp_path, logfile) -> None:
    """The model directory's current version is damaged when the daemon starts: the error names the earlier
    version `models rollback` can make current, as a running daemon's reload already did (a review)."""
    import shutil

    models = tmp_path / "state" / "models"
    for v in ("v0001", "v0002"):
        shutil.copytree(DEFAULT, models / v)
    data = bytearray((models / "v0002" / "autoencoder.npz").read_bytes())
    (models / "v0002" / "autoencoder.npz").write_bytes(bytes(data[: len(data) // 2]))
    (models / "current").symlink_to("v0002")
    cfg = _daemon_config(tmp_path, logfile, listen=f"127.0.0.1:{_free_port()}", model=None)
    rc, _, err = run_cli(capsys, "run", "--config", str(cfg))
    assert_user_error(rc, err, "v0002/autoencoder.npz: ", f"or roll back to an earlier version: `lograven models "
                      f"rollback --dir {models} --to v0001`")  # fmt: skip


def test_learn_mode_with_a_dangling_current_says_how_to_repair_it(capsys, tmp_path, logfile) -> None:
    models = tmp_path / "state" / "models"
    models.mkdir(parents=True)
    (models / "current").symlink_to("v0042")
    cfg = _daemon_config(tmp_path, logfile, listen=f"127.0.0.1:{_free_port()}", model=None)
    rc, _, err = run_cli(capsys, "run", "--config", str(cfg))
    assert_user_error(rc, err, "current: points to v0042, which is not there", "lograven models rollback")
    rc, _, err = run_cli(capsys, "check", "--config", str(cfg))  # check finds it as run does
    assert_user_error(rc, err, "current: points to v0042, which is not there", "lograven models rollback")


def test_a_current_that_is_a_directory_or_a_loop_is_an_error_not_learn_mode(capsys, tmp_path, bundle_dir,
                                                                           logfile) -> None:
    """A model directory copied with `cp -r` has `current` as a directory: the daemon took that for "no model
    yet", learned afresh beside v0001 (detection off meanwhile), then could not make its version current; and
    `current -> current` (a loop) was a traceback that killed a running daemon (bundle review, 2026-12-07)."""
    import shutil

    from lograven.modelstore import ModelStore

    store = ModelStore(tmp_path / "state" / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    shutil.copytree(bundle_dir, store.root / "current")
    cfg = _daemon_config(tmp_path, logfile, listen=f"127.0.0.1:{_free_port()}", model=None)
    for argv in (["run", "--config", str(cfg)], ["check", "--config", str(cfg)]):
        rc, out, err = run_cli(capsys, *argv)
        assert_user_error(rc, err, f"{store.root / 'current'}: is a directory, not a symbolic link to a version",
                          f"mv {store.root / 'current'} {store.root / 'current.old'}", "--to vNNNN")
        assert "learn mode" not in out + err
    with pytest.raises(LogravenError, match="is a directory, not a symbolic link"):  # rollback said "Is a directory"
        store.set_current("v0001")
    shutil.rmtree(store.root / "current")
    (store.root / "current").symlink_to("current")
    rc, _, err = run_cli(capsys, "score", "--model", str(store.root), str(logfile))
    assert_user_error(rc, err, f"{store.root / 'current'}: cannot be followed", "models rollback")
    (store.root / "current").unlink()
    store.set_current("v0001")
    rc, _, err = run_cli(capsys, "score", "--model", str(store.root), str(logfile))
    assert rc == 0, err


@pytest.mark.parametrize("command", ["train", "learn"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_lines_below_one_is_refused(capsys, tmp_path, logfile, command, value) -> None:
    """`--max-lines 0` silently meant the default, and -5 a single line ("only 1 usable line")."""
    where = ["--out", str(tmp_path / "m")] if command == "train" else ["--model", str(DEFAULT)]
    with pytest.raises(SystemExit) as e:
        cli.main([command, *where, "--max-lines", value, str(logfile)])
    assert e.value.code == 2
    assert f"argument --max-lines: {value}: give at least 1" in capsys.readouterr().err


def test_check_fails_on_a_metrics_host_run_would_refuse(capsys, tmp_path, logfile) -> None:
    """`check` said OK (and only warned about exposure) for a host that `run` cannot bind: not resolvable,
    or not an address of this machine. It must not take the port: the daemon may hold it."""
    for listen, said in (("nosuchhost.invalid:19190", "cannot resolve host 'nosuchhost.invalid'"),
                         ("192.0.2.1:19190", "192.0.2.1 is not an address of this host")):  # TEST-NET-1
        cfg = _daemon_config(tmp_path, logfile, listen=listen)
        rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
        assert_user_error(rc, err, said, "`run` would refuse to start")
        # not "configuration OK" first, nor a warning that /metrics is served beyond this host (review)
        assert "configuration OK" not in out and "served beyond this host" not in out, out
    with socket.socket() as busy:  # the running daemon's port: still fine for check
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = _daemon_config(tmp_path, logfile, listen=f"127.0.0.1:{busy.getsockname()[1]}")
        rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, out + err


def test_check_fails_where_a_file_stands_where_run_needs_a_directory(capsys, tmp_path, logfile) -> None:
    """An alerts file under a path component that is a file (or an alerts path that is a directory, or a
    state_dir that is a file) fails `run` for every user, but `check` only warned and exited 0, so
    `check && systemctl reload` passed it; and `run` said "File exists ... make its directory writable"."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    for alerts, said in ((tmp_path / "afile" / "alerts.jsonl", f"{tmp_path / 'afile'} is not a directory"),
                         (tmp_path / "adir", "is a directory, not a file")):
        cfg = _daemon_config(tmp_path, logfile, listen="127.0.0.1:19191")
        cfg.write_text(cfg.read_text().replace(f"path: {tmp_path / 'alerts.jsonl'}", f"path: {alerts}"))
        rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
        assert_user_error(rc, err, said, "choose another path")
        assert "configuration OK" not in out, out
    # a regular file where the syslog socket should be: said (run only warned once running)
    cfg = _daemon_config(tmp_path, logfile, listen="127.0.0.1:19191")
    cfg.write_text(cfg.read_text().replace("syslog: {enabled: false}", f"syslog: {{socket: {tmp_path / 'afile'}}}"))
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and f"warning: alerts.syslog.socket {tmp_path / 'afile'}: is not a socket" in out, out + err
    from lograven.alerts import JsonlSink

    with pytest.raises(LogravenError, match="a part of its path is a file, not a directory") as e:
        JsonlSink(tmp_path / "afile" / "alerts.jsonl")
    assert "writable" not in str(e.value)
    (tmp_path / "gone").symlink_to(tmp_path / "unmounted")  # a link whose target is not there
    with pytest.raises(LogravenError, match=f"{tmp_path / 'gone'}, is a symbolic link to nothing"):
        JsonlSink(tmp_path / "gone" / "lograven" / "alerts.jsonl")


@pytest.fixture
def shared_dir():
    """A directory other users may look into (tmp_path's parents are root's alone)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="lograven-user-check-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _need_root_and_nobody() -> None:
    """Skip unless this test can act as user `nobody` (as_user needs root)."""
    import pwd

    if os.geteuid() != 0:
        pytest.skip("checking as another user needs root")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user `nobody` on this machine")


def test_check_as_root_also_checks_as_the_service_user(capsys, shared_dir, monkeypatch) -> None:
    """`sudo lograven check` read every file as root and passed, while the service's user could read
    neither /var/log/secure (no ACL) nor a model root trained in a 0700 directory: the daemon then read
    nothing, or failed to start. Now root's check also looks as that user (a forked child with its uid
    and groups) and says what it cannot read."""
    import shutil

    _need_root_and_nobody()
    line = "Jun  9 07:00:00 web01 sshd[1]: Accepted publickey for alice from 10.0.0.1 port 22 ssh2\n"
    secret, public = shared_dir / "secure", shared_dir / "messages"
    secret.write_text(line)
    public.write_text(line)
    secret.chmod(0o600)
    public.chmod(0o644)
    model = shared_dir / "model"
    shutil.copytree(DEFAULT, model)
    model.chmod(0o700)  # trained by root in a private directory
    cfg = shared_dir / "config.yaml"
    cfg.write_text(f"model: {model}\nstate_dir: {shared_dir / 'state'}\nmetrics: {{enabled: false}}\n"
                   f"sources:\n  - paths: [{secret}, {public}]\n")  # fmt: skip
    monkeypatch.setattr(cli, "SERVICE_USER", "nobody")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, err
    assert "also as user nobody (the user lograven.service runs as" in out
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
    assert any(f"user nobody cannot read {secret} " in w for w in warnings), out
    assert not any(str(public) in w for w in warnings), out
    assert any(w.startswith(f"warning: model: user nobody cannot read {model} (permission denied)") for w in warnings), out
    model.chmod(0o755)
    (model / "manifest.json").chmod(0o600)
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg))
    assert f"user nobody cannot read {model / 'manifest.json'} " in out
    (model / "manifest.json").chmod(0o644)
    secret.chmod(0o644)
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg))
    # what the daemon writes is checked as that user too, and against the unit's sandbox (an admin's review:
    # check passed a state_dir and an alerts file the service could not write, which restarted in a loop)
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
    state = shared_dir / "state"
    assert warnings == [
        f"warning: state_dir {state}: {shared_dir} is not writable for user nobody; lograven.service (User=nobody) "
        f"would refuse to start: make the directory that user's (`install -d -o nobody {state}`), or use /var/lib/lograven",
        f"warning: state_dir {state}: lograven.service may write only under /var/lib/lograven and /var/log/lograven "
        "(ProtectSystem=strict), so it would fail there whatever the permissions: keep it there, or allow it with a "
        "drop-in (`systemctl edit lograven`: [Service] ReadWritePaths=DIR)"], out  # fmt: skip
    # the unit's ReadWritePaths= as systemd has it (a drop-in, as the warning advises) counts as writable
    fake = shared_dir / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f"#!/bin/sh\necho '-{shared_dir} /data/logs'\n")
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    assert cli._unit_rw_paths() == (os.path.realpath(shared_dir), "/data/logs")
    state.mkdir()
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and "also as user nobody" in out and "warning:" not in out, out
    secret.chmod(0o600)
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg), "--user", "root")  # root's view only
    assert rc == 0 and "also as user" not in out and "warning:" not in out, out
    rc, _, err = run_cli(capsys, "check", "--config", str(cfg), "--user", "no-such-user-here")
    assert_user_error(rc, err, "--user no-such-user-here: no such user")
    # no service user yet (sysusers not run): root's check says that it checked as root only (it had said nothing)
    monkeypatch.setattr(cli, "SERVICE_USER", "no-such-user-here")
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and "not checked as user no-such-user-here: there is no such user yet" in out, out


def test_a_glob_in_a_directory_the_service_user_cannot_list_is_named_and_keeps_its_position(capsys, shared_dir,
                                                                                              monkeypatch) -> None:
    """/var/log/app/*.log with app/ 0700 root: glob sees nothing and says nothing, so check said "no file
    matches ... yet; check the path" and the daemon forgot the file's saved position (the file read again
    from its start once the directory was fixed). Checked for real, as user nobody: check names the
    directory and the fix, and a tailer as nobody keeps the position in its checkpoint."""
    import json

    from lograven.osutil import as_user
    from lograven.tailer import Tailer

    _need_root_and_nobody()
    app = shared_dir / "app"
    app.mkdir()
    log = app / "x.log"
    log.write_text("Jun  9 07:00:00 web01 app[1]: started\n")
    log.chmod(0o644)
    pattern = str(app / "*.log")
    cfg = shared_dir / "config.yaml"
    cfg.write_text(f"state_dir: {shared_dir / 'state'}\nmetrics: {{enabled: false}}\nsources:\n  - paths: ['{pattern}']\n")
    monkeypatch.setattr(cli, "SERVICE_USER", "nobody")
    monkeypatch.setattr(cli, "SERVICE_WRITABLE", (str(shared_dir / "state"), "/var/log/lograven"))  # the unit's, here
    app.chmod(0o700)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0, err
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
    assert any(f"user nobody cannot list {app} (permission denied), where {pattern} looks for files" in w
               and "setfacl -m u:nobody:rx" in w for w in warnings), out  # fmt: skip (the user checked as: a day-one review)
    assert not any("no file matches" in w for w in warnings), out
    with Tailer([pattern], start_position="beginning") as tailer:  # root's run: one line read and acknowledged
        got = tailer.poll()
        tailer.acknowledge_lines(got)
        saved = json.loads(json.dumps(tailer.positions()))
    assert list(saved) == [str(log)] and saved[str(log)]["offset"] == log.stat().st_size

    def nobody_starts():
        with Tailer([pattern], start_position="beginning", positions=saved) as t:
            return [len(t.poll()), t.positions()]

    lines, kept = as_user("nobody", nobody_starts)
    assert lines == 0 and kept == saved  # not forgotten, no empty entry for the pattern
    app.chmod(0o755)
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg))
    assert rc == 0 and "warning:" not in out, out


def test_as_user_runs_in_a_child_with_that_users_ids_and_reports_its_failure() -> None:
    import grp
    import pwd

    from lograven.osutil import as_user

    if os.geteuid() != 0:
        pytest.skip("checking as another user needs root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user `nobody` on this machine")
    extra = grp.getgrgid(0).gr_name  # a group `nobody` is not in
    uid, gid, groups = as_user("nobody", lambda: [os.geteuid(), os.getegid(), os.getgroups()], (extra, "no-such-group"))
    assert (uid, gid) == (pw.pw_uid, pw.pw_gid) and 0 in groups and os.geteuid() == 0  # the parent stays root
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        as_user("nobody", lambda: 1 / 0)
    with pytest.raises(RuntimeError, match="not JSON serializable"):
        as_user("nobody", lambda: object())


JOURNAL_SCRIPT = """
import logging, os, sys
f = open(sys.argv[1], "w")
os.dup2(f.fileno(), 2)
st = os.fstat(2)
if sys.argv[2] == "journal":
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
from lograven import cli
rc = cli.main(["types", sys.argv[3]])
logging.getLogger("lograven.tailer").warning("cannot read %s:\\nPermission denied", "/var/log/secure")
logging.getLogger("lograven.service").error("reload rejected")
def boom(args):
    raise RuntimeError("boom")  # an error nothing expected: its traceback goes to the journal at its priority too
cli.COMMANDS["types"] = boom
sys.exit(cli.main(["types", sys.argv[3]]))
"""


@pytest.mark.parametrize("journal", [True, False])
def test_lines_to_the_journal_carry_their_priority(tmp_path, journal) -> None:
    """Under systemd (stderr is JOURNAL_STREAM) each line starts with its syslog priority, so that
    `journalctl -p warning` and rsyslog's severity filters see lograven's warnings and errors (they
    all came in at "info"), and without the timestamp the journal adds; elsewhere, lines are as before."""
    (tmp_path / "some.log").write_text("a line\n")
    err = tmp_path / "stderr.txt"
    r = subprocess.run([sys.executable, "-c", JOURNAL_SCRIPT, str(err), "journal" if journal else "no",
                        str(tmp_path / "some.log")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1, r.stderr
    lines = err.read_text().splitlines()
    if journal:
        assert lines[0].startswith("<3>lograven types: error: ") and "is a file, not a model" in lines[0]
        assert lines[1:4] == ["<4>WARNING lograven.tailer: cannot read /var/log/secure:", "<4>Permission denied",
                              "<3>ERROR lograven.service: reload rejected"]  # fmt: skip
        assert lines[4] == "<2>CRITICAL lograven: uncaught error, stopping" and lines[-1] == "<2>RuntimeError: boom"
        assert all(line.startswith("<2>") for line in lines[4:]), lines
    else:
        assert lines[0].startswith("lograven types: error: ")
        assert " WARNING lograven.tailer: cannot read" in lines[1] and lines[1][:2] == "20"
        assert lines[4] == "Traceback (most recent call last):" and lines[-1] == "RuntimeError: boom"


@pytest.mark.skipif(not os.path.exists("/dev/full") or not (DEFAULT / "manifest.json").exists(),
                    reason="needs /dev/full and models/default")
@pytest.mark.parametrize("argv", [["types", str(DEFAULT)], ["score", "--model", str(DEFAULT)], ["check", "--config"]])
def test_a_standard_output_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path, logfile, argv) -> None:
    """`score ... > verdicts.jsonl` on a full disk ended in a traceback (an OSError from a write), and with
    standard output closed (`>&-`) `types` and `check` printed nothing and exited 0."""
    if argv[0] == "score":
        argv = [*argv, str(logfile)]
    elif argv[0] == "check":
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"model: {DEFAULT}\nsources: [{{paths: ['{logfile}']}}]\nstate_dir: {tmp_path}\n")
        argv = [*argv, str(cfg)]
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "lograven", *argv], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot write to standard output: No space left on device" in r.stderr, r.stderr
    closed = subprocess.run([sys.executable, "-m", "lograven", *argv], stderr=subprocess.PIPE, text=True, timeout=120,
                            preexec_fn=lambda: os.close(1))  # fmt: skip
    assert closed.returncode == 1 and "standard output is closed" in closed.stderr, closed.stderr


@pytest.mark.skipif(not (DEFAULT / "manifest.json").exists(), reason="needs models/default")
def test_a_closed_standard_input_is_an_error_not_a_traceback(tmp_path) -> None:
    """`lograven score --model M - <&-` (and train, run --stdin): Python has no sys.stdin then, and the
    commands ended in an AttributeError traceback (review, 2026-12-07)."""
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text(f"model: {DEFAULT}\nstate_dir: {tmp_path / 'state'}\nmetrics: {{enabled: false}}\n"
                   f"alerts: {{syslog: {{enabled: false}}, jsonl: {{path: {tmp_path / 'a.jsonl'}}}}}\n")
    for argv in (["score", "--model", str(DEFAULT), "-"], ["train", "--out", str(tmp_path / "m"), "-"],
                 ["run", "--stdin", "--config", str(cfg)]):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "lograven", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120, preexec_fn=lambda: os.close(0))  # fmt: skip
        assert r.returncode == 1 and "Traceback" not in r.stderr, (argv, r.stderr)
        assert f"lograven {argv[0]}: error: standard input is closed (started with <&-)" in r.stderr, r.stderr
        assert "pipe them in" in r.stderr and r.stdout == ""


@pytest.mark.skipif(not (DEFAULT / "manifest.json").exists(), reason="needs models/default")
def test_score_into_a_reader_that_goes_away_is_not_an_error(tmp_path) -> None:
    """`lograven score ... | head -1`: the reader closes the pipe; exit 0 and no traceback. (A catch-all
    for the journal, put before the BrokenPipeError clause, once turned this into a double traceback.)"""
    log = tmp_path / "messages"
    write_log(log, LogGenerator(seed=3).lines(20_000))
    p = subprocess.Popen([sys.executable, "-m", "lograven", "score", "--model", str(DEFAULT), str(log)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()  # as `head -1` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and "Traceback" not in err, err[-2000:]


def test_evaluate_writes_its_json_when_the_table_s_reader_is_gone(tmp_path) -> None:
    """`lograven evaluate ... --json r.json | head -5`: the table was printed first, the closed pipe ended
    the command (exit 0, as `| head` should), and r.json was never written: minutes of training lost
    without a word (review, 2026-12-07). The JSON file is written all the same."""
    csv = tmp_path / "x_structured.csv"
    csv.write_text("LineId,Content,EventId\n" + "".join(f"{i},session opened for user u{i % 7},E1\n" for i in range(200)))
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        p = subprocess.run([sys.executable, "-m", "lograven", "evaluate", "--structured", str(csv),
                            "--json", str(tmp_path / "r.json")], stdout=w, stderr=subprocess.PIPE, timeout=120)  # fmt: skip
    finally:
        os.close(w)
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["grouping_accuracy"] == 1.0


def test_evaluate_refuses_a_model_dir_it_cannot_write_before_training(tmp_path, capsys) -> None:
    """`--model-dir` holding an unrelated file trained for minutes, then failed naming `--out`, an option
    evaluate does not have (review, 2026-12-07): it is checked first, under its own name."""
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    log = tmp_path / "bgl.log"
    log.write_text("- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO ok\n")
    rc = cli.main(["evaluate", "--labels", "bgl", "--model-dir", str(busy), str(log)])
    err = capsys.readouterr().err
    assert rc == 1 and f"--model-dir {busy}: exists, is not empty and holds no bundle; choose another --model-dir" in err, err
    assert "training" not in err.lower() and (busy / "notes.txt").read_text() == "mine"


def test_check_warns_about_relative_paths(capsys, tmp_path, monkeypatch) -> None:
    """`paths: [logs/app.log]`, `state_dir: state`: check, run where they exist, said "configuration OK" and
    nothing else, while the service (working directory /) would never find the log and could not write
    /state (admin review, 2026-12-07). Each relative path is named with both readings."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app.log").write_text("Jun  9 07:00:00 web01 app[1]: started\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {DEFAULT}\nstate_dir: state\nmetrics: {{enabled: false}}\n"
                   "alerts: {syslog: {enabled: false}, jsonl: {path: alerts.jsonl}}\n"
                   "sources:\n  - paths: [logs/app.log]\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg), "--user", "root")
    assert rc == 0, err
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
    assert any(w.startswith("warning: state_dir: state is a relative path: under lograven.service its StateDirectory= "
                            f"wins (/var/lib/lograven, $STATE_DIRECTORY); run otherwise, it is taken from the working "
                            f"directory ({tmp_path / 'state'} from here)") for w in warnings), out  # fmt: skip
    # a plugin runs under the shipper, not lograven.service: no StateDirectory= there
    from lograven.config import load_config

    [plugin] = [w for w in cli._relative_paths(load_config(cfg), plugin=True) if w.startswith("state_dir")]
    assert "/ under systemd (/state)" in plugin and "StateDirectory" not in plugin, plugin
    for key, path in (("alerts.jsonl.path", "alerts.jsonl"), ("sources[0].paths", "logs/app.log")):
        assert any(w.startswith(f"warning: {key}: {path} is a relative path: the service takes it from its working "
                                f"directory, / under systemd (/{path}), not from here ({tmp_path / path})") for w in warnings), out  # fmt: skip
    cfg.write_text(f"model: {DEFAULT}\nstate_dir: {tmp_path / 'state'}\nmetrics: {{enabled: false}}\n"
                   f"alerts: {{syslog: {{enabled: false}}, jsonl: {{path: {tmp_path / 'alerts.jsonl'}}}}}\n"
                   f"sources:\n  - paths: [{tmp_path / 'logs/app.log'}]\n")  # fmt: skip
    rc, out, _ = run_cli(capsys, "check", "--config", str(cfg), "--user", "root")
    assert rc == 0 and "relative path" not in out, out


def test_the_training_child_without_tensorflow_names_this_environments_pip(monkeypatch) -> None:
    """Learn mode's training (a child that imports Keras through tfsetup) said `pip install tensorflow-cpu`,
    the system's pip, which does not install into /opt/lograven (admin review, 2026-12-07)."""
    from lograven import tfsetup

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(LogravenError, match=re.escape(f"`{sys.executable} -m pip install tensorflow-cpu`")):
        tfsetup.keras_session()


def test_a_current_outside_the_model_directory_is_an_error(capsys, tmp_path, bundle_dir, logfile) -> None:
    """`current` pointing at another directory's `v0001` was followed by `score` and `run`, while `models list`
    starred the local v0001 and learn mode took the local one for current: two models for one name."""
    import shutil

    from lograven.modelstore import ModelStore

    store = ModelStore(tmp_path / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    other = tmp_path / "elsewhere" / "v0001"
    shutil.copytree(bundle_dir, other)
    (store.root / "current").symlink_to(other)
    for argv in (["score", "--model", str(store.root), str(logfile)], ["learn", "--model", str(store.root), str(logfile)]):
        rc, _, err = run_cli(capsys, *argv)
        assert_user_error(rc, err, f"current: points to {other}, which is not in {store.root}",
                          f"models rollback --dir {store.root} --to vNNNN", "--model DIR")
    rc, out, err = run_cli(capsys, "models", "list", "--dir", str(store.root))
    assert rc == 0 and out.startswith("  v0001"), out
    assert f"warning: {store.root / 'current'}: points to {other}, which is not in {store.root}" in err
    with pytest.raises(LogravenError, match="which is not in"):
        store.current_path()  # learn mode's view: the local v0001 was taken for current
    store.set_current("v0001")  # the repair the message gives
    rc, _, err = run_cli(capsys, "score", "--model", str(store.root), str(logfile))
    assert rc == 0, err
    (store.root / "current").unlink()
    (store.root / "current").symlink_to(store.root / "v0001")  # an absolute link to a version here is fine
    rc, _, err = run_cli(capsys, "score", "--model", str(store.root), str(logfile))
    assert rc == 0, err


def test_check_accepts_dev_stdout_as_alerts_file_when_it_is_a_pipe(tmp_path) -> None:
    """A second review (2026-12-07): /dev/stdout resolves to /proc/self/fd/1, and check refused it as a path
    under /proc whenever stdout was a pipe (`lograven check ... | cat`), though `run` writes alerts there."""
    import subprocess
    import sys

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nmetrics: {{enabled: false}}\nalerts: {{jsonl: {{path: /dev/stdout}}}}\n")
    got = subprocess.run([sys.executable, "-m", "lograven", "check", "--config", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert got.returncode == 0 and "configuration OK" in got.stdout, got.stderr


def test_check_fails_on_a_state_dir_on_a_read_only_mount(capsys, tmp_path) -> None:
    """A code review (2026-12-07): on a read-only mount, access() fails with EROFS, which `check` read as "not
    writable for user root", a warning: check passed what `run` refuses for every user."""
    import subprocess

    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode:
        pytest.skip("needs root and bind mounts")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"state_dir: {ro / 'state'}\nmetrics: {{enabled: false}}\n")
        rc, out, err = run_cli(capsys, "check", "--config", str(cfg))
        assert rc == 1 and f"state_dir {ro / 'state'}: {ro} is on a read-only file system" in err, err
        assert "configuration OK" not in out
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
