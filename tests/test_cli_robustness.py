"""The CLI under hostile conditions: a full or unwritable --out, enormous lines, the daemon's model directory.

Most cases call `cli.main` in-process (as tests/test_cli_errors.py does); the ones that
train use the tiny model sizes of tests/conftest.py so they stay fast.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from lograven import cli, training
from lograven.bundle import MANIFEST, load_bundle, read_manifest, save_bundle
from lograven.errors import LogravenError
from lograven.generator import LogGenerator, write_log
from lograven.parsing import decode_line

from conftest import TINY_AUTOENCODER, TINY_SEQUENCE
from test_cli_errors import run_cli

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"
TINY_YAML = f"training: {{seed: 42, sequence: {json.dumps(TINY_SEQUENCE)}, autoencoder: {json.dumps(TINY_AUTOENCODER)}}}\n"


def _permissions_bind() -> bool:
    """False for root (with CAP_DAC_OVERRIDE): a 0500 directory does not stop it."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o500)
        try:
            os.mkdir(os.path.join(d, "x"))
        except PermissionError:
            return True
        finally:
            os.chmod(d, 0o700)
        return False


NO_ROOT = pytest.mark.skipif(not _permissions_bind(), reason="root writes anywhere")


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 1, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith("lograven "), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def _lograven(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lograven", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    path = tmp_path / "messages"
    write_log(path, LogGenerator(seed=3).lines(600))
    return path


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_YAML)
    return p


@pytest.fixture
def read_only_dir(tmp_path: Path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    yield d
    d.chmod(0o700)  # so that pytest can clean up


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name or ".old-" in p.name or ".probe-" in p.name)


# ------------------------------------------------------- 1. a full or unwritable --out
@NO_ROOT
@pytest.mark.slow
def test_train_to_an_unwritable_out_fails_at_once_without_traceback(tmp_path, logfile, tiny_yaml, read_only_dir) -> None:
    """Was: minutes of training, then `PermissionError` and a traceback from save_bundle."""
    out = read_only_dir / "m"
    r = _lograven("train", "--config", str(tiny_yaml), "--out", str(out), str(logfile))
    assert_one_line_error(r.returncode, r.stderr, f"--out {out}", "Permission denied", "choose another --out")
    assert not out.exists()


@NO_ROOT
def test_train_and_learn_check_the_output_before_any_work(capsys, tmp_path, logfile, read_only_dir, monkeypatch) -> None:
    def no_training(*a, **kw):
        raise AssertionError("trained although the output cannot be written")

    monkeypatch.setattr(training, "read_corpus", no_training)
    monkeypatch.setattr(training, "train", no_training)
    out = read_only_dir / "sub" / "m"  # missing parents: the nearest existing one is checked
    rc, _, err = run_cli(capsys, "-q", "train", "--out", str(out), str(logfile))
    assert_one_line_error(rc, err, f"--out {out}", str(read_only_dir), "Permission denied", "choose another --out")
    rc, _, err = run_cli(capsys, "-q", "learn", "--model", str(DEFAULT), "--out", str(out), str(logfile))
    assert_one_line_error(rc, err, f"--out {out}", "Permission denied")
    # learning into a model directory writes its next version there
    store = read_only_dir.parent / "models"
    store.mkdir()
    (store / "v0001").symlink_to(DEFAULT, target_is_directory=True)
    (store / "current").symlink_to("v0001")
    store.chmod(0o500)
    try:
        rc, _, err = run_cli(capsys, "-q", "learn", "--model", str(store), str(logfile))
        assert_one_line_error(rc, err, str(store / "v0002"), "Permission denied", "--out")
    finally:
        store.chmod(0o700)
    assert _leftovers(read_only_dir) == [] and _leftovers(store) == []


def test_train_refuses_an_out_in_the_way_before_training(capsys, tmp_path, logfile, monkeypatch) -> None:
    """What save_bundle refuses after the training (a file, a directory of other data) is refused first."""
    monkeypatch.setattr(training, "train", lambda *a, **kw: pytest.fail("trained"))
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run_cli(capsys, "-q", "train", "--out", str(f), str(logfile))
    assert_one_line_error(rc, err, str(f), "not a bundle directory", "choose another --out")
    d = tmp_path / "data"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    rc, _, err = run_cli(capsys, "-q", "train", "--out", str(d), str(logfile))
    assert_one_line_error(rc, err, str(d), "holds no bundle")
    assert (d / "precious.txt").read_text() == "keep me"
    from lograven.bundle import check_bundle_target

    check_bundle_target(tmp_path / "new" / "deeper" / "m")  # fine, and creates nothing
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path) == []


def test_train_refuses_a_full_file_system_before_training(capsys, tmp_path, logfile, monkeypatch) -> None:
    from lograven import bundle

    monkeypatch.setattr(training, "train", lambda *a, **kw: pytest.fail("trained"))
    monkeypatch.setattr(bundle, "_free_bytes", lambda path: 4096)
    out = tmp_path / "m"
    rc, _, err = run_cli(capsys, "-q", "train", "--out", str(out), str(logfile))
    assert_one_line_error(rc, err, f"--out {out}", "No space left on device", "4 KiB free", "free space", "choose another --out")
    assert not out.exists() and _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def default_bundle():
    return load_bundle(DEFAULT)


def _fail_after_some_bytes(code: int, monkeypatch) -> None:
    """The autoencoder's weights file is half written, then the file system fails with `code`."""
    from lograven import autoencoder

    def save_weights(path, arrays):
        Path(path).write_bytes(b"PK\x03\x04 half a file")
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(autoencoder, "save_weights", save_weights)


@pytest.mark.parametrize(
    "code, fix",
    [(errno.ENOSPC, "free space"), (errno.EDQUOT, "quota"), (errno.EROFS, "writable file system"), (errno.EACCES, "choose another --out")],
)
def test_save_bundle_write_error_leaves_nothing_half_written(default_bundle, tmp_path, monkeypatch, code, fix) -> None:
    b = default_bundle
    out = tmp_path / "m"
    _fail_after_some_bytes(code, monkeypatch)
    with pytest.raises(LogravenError) as ei:
        save_bundle(out, b.types, b.sequence, b.autoencoder, training={}, keras_files=False)
    msg = str(ei.value)
    assert str(out) in msg and os.strerror(code) in msg and fix in msg and "no partial bundle" in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no bundle, no temporary directory


def test_learn_mode_bundle_write_error_names_state_dir_not_out(default_bundle, tmp_path, monkeypatch) -> None:
    """The daemon has no --out: its trainings say state_dir."""
    b = default_bundle
    _fail_after_some_bytes(errno.ENOSPC, monkeypatch)
    with pytest.raises(LogravenError) as ei:
        save_bundle(tmp_path / "m", b.types, b.sequence, b.autoencoder, training={}, keras_files=False, option="state_dir")
    assert "choose another state_dir" in str(ei.value) and "--out" not in str(ei.value)


def test_save_bundle_failing_over_an_existing_bundle_keeps_it(default_bundle, tmp_path, monkeypatch) -> None:
    b = default_bundle
    out = save_bundle(tmp_path / "m", b.types, b.sequence, b.autoencoder, training={"n": 1}, keras_files=False)
    before = read_manifest(out)["id"]
    _fail_after_some_bytes(errno.ENOSPC, monkeypatch)
    with pytest.raises(LogravenError, match="the bundle already there is unchanged"):
        save_bundle(out, b.types, b.sequence, b.autoencoder, training={"n": 2}, keras_files=False)
    assert read_manifest(out)["id"] == before and load_bundle(out).manifest["training"] == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_bundle_fsync_error_is_not_ignored(default_bundle, tmp_path, monkeypatch) -> None:
    """A full disk that shows only at fsync (NFS, some quota setups) must not leave a bundle whose files are lost."""
    b = default_bundle
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(LogravenError, match="No space left on device"):
        save_bundle(tmp_path / "m", b.types, b.sequence, b.autoencoder, training={}, keras_files=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_train_on_a_full_disk_says_so_without_traceback(capsys, tmp_path, logfile, tiny_yaml, monkeypatch) -> None:
    """Was: `OSError: [Errno 28] No space left on device` and a traceback after all the training."""
    out = tmp_path / "m"
    shutil.copytree(DEFAULT, out)  # an older bundle at --out survives the failed replacement
    before = read_manifest(out)["id"]
    _fail_after_some_bytes(errno.ENOSPC, monkeypatch)
    rc, _, err = run_cli(capsys, "-q", "train", "--config", str(tiny_yaml), "--out", str(out), str(logfile))
    assert_one_line_error(rc, err, str(out), "No space left on device", "free space", "choose another --out", "unchanged")
    assert read_manifest(out)["id"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "messages", "tiny.yaml"]


# ------------------------------------------------------- 2. enormous lines
HUGE = 50_000_000  # bytes in the one enormous line
MAX_EXTRA = 25_000_000  # allowed peak of traced memory while scoring it (was over 100 MB)


@pytest.fixture(scope="module")
def huge_log(tmp_path_factory) -> Path:
    """20 normal lines with a 50 MB line as line 11 and a last line without newline."""
    path = tmp_path_factory.mktemp("huge") / "huge.log"
    lines = [x.encode() for x in LogGenerator(seed=3).lines(20)]
    with open(path, "wb") as f:
        for i, line in enumerate(lines, 1):
            if i == 11:
                f.write(b"Jun  9 06:06:20 web01 kernel: ")
                chunk = b"A" * 1_000_000
                for _ in range(HUGE // len(chunk)):
                    f.write(chunk)
                f.write(b"\n")
            f.write(line + (b"\n" if i < len(lines) else b""))
    return path


def _peak_while(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _check_verdicts(out: str, name: str) -> None:
    verdicts = [json.loads(x) for x in out.splitlines()]
    assert len(verdicts) == 21  # one per input line, the enormous one included
    assert [v["line"] for v in verdicts] == list(range(1, 22))
    assert {v["file"] for v in verdicts} == {name}
    assert verdicts[10]["parsed"] is True  # the kept start of the line is scored like any line


def test_score_an_enormous_line_in_bounded_memory(capsys, huge_log) -> None:
    run_cli(capsys, "score", "--model", str(DEFAULT), str(huge_log.with_name("absent")))  # load what loads once
    (rc, out, err), peak = _peak_while(lambda: run_cli(capsys, "score", "--model", str(DEFAULT), str(huge_log)))
    assert rc == 0, err
    _check_verdicts(out, str(huge_log))
    assert peak < MAX_EXTRA, f"peak {peak / 1e6:.1f} MB while scoring a {HUGE / 1e6:.0f} MB line"


def test_score_an_enormous_line_on_stdin_in_bounded_memory(capsys, huge_log, monkeypatch) -> None:
    with open(huge_log, encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        (rc, out, err), peak = _peak_while(lambda: run_cli(capsys, "score", "--model", str(DEFAULT), "-"))
    assert rc == 0, err
    _check_verdicts(out, "-")
    assert peak < MAX_EXTRA, f"peak {peak / 1e6:.1f} MB while scoring a {HUGE / 1e6:.0f} MB line from stdin"


def test_training_reads_an_enormous_line_in_bounded_memory(huge_log) -> None:
    """`train`, `learn` and `evaluate` read log files through read_corpus / iter_file_lines."""
    corpus, peak = _peak_while(lambda: training.read_corpus([str(huge_log)], max_line_bytes=65536))
    assert peak < MAX_EXTRA, f"peak {peak / 1e6:.1f} MB while reading a {HUGE / 1e6:.0f} MB line"
    assert len(corpus) == 21 and corpus.truncated == 1
    assert corpus.messages[10] == "A" * (65536 - len("Jun  9 06:06:20 web01 kernel: "))


def _old_iter_file_lines(data: bytes, max_line_bytes: int) -> list[tuple[str, bool]]:
    """iter_file_lines as it was (whole lines in memory): the reference for what the kept part looks like."""
    import io

    out = []
    for raw in io.BytesIO(data):
        if len(raw) > max_line_bytes:
            out.append((decode_line(raw[:max_line_bytes], max_line_bytes)[0], True))
        else:
            out.append(decode_line(raw.rstrip(b"\n"), max_line_bytes))
    return out


@pytest.mark.parametrize("max_line_bytes", [1, 4, 5, 6, 7, 8, 9, 64])
def test_bounded_reading_keeps_what_lines_looked_like(tmp_path, max_line_bytes) -> None:
    lines = [b"", b"abc", b"abcdefg", b"abcdefgh", b"abcdefghi", b"abcdef\r", b"abcdefg\r", b"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
             b"x\x00y\xff", b"\r", b"z" * 200, b"a\rb", b"q" * 65 + b"\r"]  # fmt: skip
    for tail in (b"", b"\n", b"last line without newline", b"y" * 100):
        data = b"\n".join(lines) + b"\n" + tail
        path = tmp_path / "f.log"
        path.write_bytes(data)
        expected = _old_iter_file_lines(data, max_line_bytes)
        assert list(training.iter_file_lines(str(path), max_line_bytes)) == expected
        # standard input: the same texts, one per line
        with open(path, "rb") as f:
            got = [(text, n) for text, n in _stdin_lines(f, max_line_bytes)]
        assert got == [(t, i) for i, (t, _) in enumerate(expected, 1)]


def _stdin_lines(f, max_line_bytes: int):
    class Stdin:
        buffer = f

    real = sys.stdin
    sys.stdin = Stdin()
    try:
        return [(text, n) for _, n, text in cli.iter_input_lines(["-"], max_line_bytes)]
    finally:
        sys.stdin = real


# ------------------------------------------------------- 3. `types` on the daemon's model directory
def test_types_accepts_the_daemons_model_directory(capsys, tmp_path) -> None:
    """`types /var/lib/lograven/models` (numbered versions + current), as `score --model` and `check` take it."""
    store = tmp_path / "models"
    store.mkdir()
    shutil.copytree(DEFAULT, store / "v0001")
    (store / "current").symlink_to("v0001")
    rc, direct, err = run_cli(capsys, "types", "--json", str(DEFAULT))
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "types", "--json", str(store))
    assert rc == 0, err
    assert json.loads(out) == json.loads(direct)
    rc, out, err = run_cli(capsys, "types", str(store))
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"{len(json.loads(direct))} message types in {store}, current version v0001 (model ")
    # neither a bundle nor a model directory: the message says so, without suggesting damage
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_cli(capsys, "types", str(empty))
    assert_one_line_error(rc, err, str(empty), "neither a model bundle nor a model directory", f"lograven train --out {empty}/v0001",
                          f"lograven models rollback --dir {empty} --to v0001")
    assert "not a complete bundle" not in err
    assert (store / "v0001" / MANIFEST).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the test's directories must be root's (as a plain user they belong to another user than root, refused first for that)")
def test_root_never_writes_a_bundle_where_another_user_could_redirect_it(tmp_path, monkeypatch, default_bundle, capsys) -> None:
    """Root running `lograven learn --model /var/lib/lograven/models` wrote the bundle's files by name into
    a temporary directory that the lograven user could swap for a symbolic link mid-training: any file
    of the system overwritten with log text (a security review reproduced root code execution through
    a .bashrc). Root now refuses such a directory, before training, and names the user to run as."""
    from lograven import bundle as bundle_mod
    from lograven.bundle import check_bundle_target

    monkeypatch.setattr(bundle_mod.os, "geteuid", lambda: 0)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by others, no sticky bit
    with pytest.raises(LogravenError, match=r"may be written by other users: as root, a bundle written there could be redirected"):
        check_bundle_target(shared / "m", "--out")
    b = default_bundle
    with pytest.raises(LogravenError, match="may be written by other users"):
        save_bundle(shared / "m", b.types, b.sequence, b.autoencoder, training={}, keras_files=False)
    assert list(shared.iterdir()) == []
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot rename root's directory
    check_bundle_target(shared / "m", "--out")
    owned = tmp_path / "state"  # a directory another user owns (the service's state_dir)
    (owned / "models").mkdir(parents=True)
    os.chown(owned, 4242, 4242)
    with pytest.raises(LogravenError, match=r"state belongs to (uid 4242|\S+): .* \(`sudo -u (\S+|'#4242') lograven \.\.\.`\)"):
        check_bundle_target(owned / "models" / "v0001", "--out", named=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the test's directories must be root's (as a plain user they belong to another user than root, refused first for that)")
def test_root_writes_a_bundle_through_the_resolved_path(tmp_path, monkeypatch, default_bundle) -> None:
    """A link on the way to --out that another user controls could be re-pointed while root trains: root
    now checks the resolved path and writes there, and a group-writable directory of group root is fine."""
    from lograven import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod.os, "geteuid", lambda: 0)
    target = tmp_path / "safe"
    target.mkdir()
    target.chmod(0o775)  # group write, group root (or this user's group when not run as root)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "link").symlink_to(target)
    b = default_bundle
    if os.getgid() == 0:  # always, as root (the test is skipped otherwise)
        out = save_bundle(shared / "link" / "m", b.types, b.sequence, b.autoencoder, training={}, keras_files=False)
        assert out == target / "m" and (target / "m" / MANIFEST).exists()
        assert (shared / "link").is_symlink() and sorted(p.name for p in shared.iterdir()) == ["link"]
    else:  # the group is not root's: group write is another user's write
        with pytest.raises(LogravenError, match="may be written by other users"):
            save_bundle(shared / "link" / "m", b.types, b.sequence, b.autoencoder, training={}, keras_files=False)


SIGTERM_DURING_SAVE = """
import os, signal, sys
from lograven import bundle, cli
real = bundle.sha256_file
def hash_then_term(path):  # the bundle's files are written: the manifest's checksums come next
    os.kill(os.getpid(), signal.SIGTERM)
    return real(path)
bundle.sha256_file = hash_then_term
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_while_a_bundle_is_written_leaves_nothing_half_written(tmp_path, logfile, tiny_yaml) -> None:
    """SIGTERM (a timeout, systemd stopping a job) during `train --out` left a hidden `.NAME.tmp-*` beside
    it with the bundle's files, log examples included, for ever: the default action kills the process
    before any cleanup. SIGTERM now ends a command as an exception, and the bundle's cleanup runs."""
    out = tmp_path / "m"
    r = subprocess.run([sys.executable, "-c", SIGTERM_DURING_SAVE, "-q", "train", "--config", str(tiny_yaml),
                        "--out", str(out), str(logfile)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.tmp-")] == []
