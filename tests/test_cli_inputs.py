"""The research commands on inputs a researcher really gives them: pipes and FIFOs (`<(zcat x.gz)`), a
file named twice, read errors, options that do not go together, and error messages that name the fix.
Each case comes from an audit of `score`, `evaluate`, `learn`, `train` and `models` as researchers use them."""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from lograven import cli
from lograven.generator import LogGenerator, write_log
from lograven.training import read_corpus

from test_cli_errors import assert_user_error, run_cli

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"


def _fifo_with(tmp_path: Path, data: bytes, name: str = "fifo") -> Path:
    """A named pipe that a thread fills with `data` once a reader opens it (as `<(cat f)` does)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as w:  # blocks until the reader opens it
            w.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return fifo


@pytest.fixture
def log_lines(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "messages"
    write_log(path, LogGenerator(seed=5).lines(300))
    return path, path.read_text().splitlines()


@pytest.mark.timeout(60)  # the old code waited for ever for a second writer
def test_score_reads_a_pipe_once_and_loses_no_line(capsys, tmp_path, log_lines) -> None:
    """`score --model M <(cat f)` printed nothing (30 lines) or lost the first 35 of 60,000 lines and
    numbered the rest wrongly: the check that every file is readable read the pipe's first buffer, and
    the real pass opened the pipe again. A named FIFO hung for ever."""
    path, lines = log_lines
    fifo = _fifo_with(tmp_path, path.read_bytes())
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(path), str(fifo))
    assert rc == 0, err
    got = [json.loads(x) for x in out.splitlines()]
    assert len(got) == 2 * len(lines)
    from_fifo = [v for v in got if v["file"] == str(fifo)]
    assert [v["line"] for v in from_fifo] == list(range(1, len(lines) + 1))
    from_file = [v for v in got if v["file"] == str(path)]
    assert [v["type"] for v in from_fifo] == [v["type"] for v in from_file]  # the same lines, the same types


def test_score_of_a_file_whose_name_is_not_utf8_writes_valid_json(tmp_path, log_lines) -> None:
    """`bad\\xffname.log`: the name's surrogate escape reached the JSON raw, so under a strict UTF-8 locale
    score ended in a UnicodeEncodeError traceback, and otherwise wrote a 0xFF byte that no JSON reader
    takes (review, 2026-12-07). It is U+FFFD now, as an undecodable byte in a line is."""
    import subprocess

    path, lines = log_lines
    odd = os.path.join(os.fsencode(tmp_path), b"bad\xffname.log")
    with open(odd, "wb") as f:
        f.write(path.read_bytes())
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    r = subprocess.run([sys.executable, "-m", "lograven", "score", "--model", str(DEFAULT), odd], capture_output=True,
                       env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
    got = [json.loads(x) for x in r.stdout.decode("utf-8").splitlines()]  # strict UTF-8, valid JSON
    assert len(got) == len(lines) and got[0]["file"] == str(tmp_path / "bad\ufffdname.log") == got[0]["stream"]


def test_score_a_file_named_twice_starts_its_history_again(capsys, tmp_path, log_lines) -> None:
    """score.md: several files in one call do not share history. The same file named twice continued the
    GRU state of its first reading (the stream is the path), so its second reading scored differently."""
    path, lines = log_lines
    other = tmp_path / "other"
    write_log(other, LogGenerator(seed=9).lines(50))
    rc, out, err = run_cli(capsys, "score", "--model", str(DEFAULT), str(path), str(other), str(path))
    assert rc == 0, err
    got = [json.loads(x) for x in out.splitlines()]
    first, second = got[: len(lines)], got[len(lines) + 50 :]
    assert len(second) == len(lines)
    assert [v["detectors"] for v in first] == [v["detectors"] for v in second]
    assert second[0]["sequence_p"] is None  # a fresh stream: nothing to predict the first line from
    p1 = [v["sequence_p"] or 0.0 for v in first]
    p2 = [v["sequence_p"] or 0.0 for v in second]
    assert p2 == pytest.approx(p1, abs=1e-5)  # batches differ, so float32 sums may differ in the last bits


def test_a_read_error_names_the_file_without_a_traceback(capsys, tmp_path) -> None:
    """Reading /proc/self/mem fails with EIO (as a file on a lost NFS mount does): score, train,
    evaluate and learn ended with a Python traceback."""
    if not os.path.exists("/proc/self/mem"):
        pytest.skip("no /proc/self/mem to read an I/O error from")
    for argv in (["score", "--model", str(DEFAULT)], ["train", "--out", str(tmp_path / "m")],
                 ["evaluate", "--labels", "bgl"]):
        rc, _, err = run_cli(capsys, *argv, "/proc/self/mem")
        assert_user_error(rc, err, "/proc/self/mem: cannot read it")
        assert "the lines before the error were read" not in err  # none was: it failed at its first read


@pytest.mark.timeout(60)
def test_evaluate_structured_reads_a_pipe_and_refuses_a_compressed_csv(capsys, tmp_path) -> None:
    """`--structured <(cat x.csv)` lost the header (the file was opened twice, once for a BOM check) and
    said the columns were missing; a gzip-compressed CSV was reported by a kilobyte of its raw bytes."""
    import gzip

    rows = ["LineId,Content,EventId"] + [f"{i},session opened for user u{i % 3} by (uid=0),E1" for i in range(40)]
    rows += [f"{40 + i},connection from 10.0.0.{i} port {1000 + i},E2" for i in range(40)]
    data = ("\n".join(rows) + "\n").encode()
    fifo = _fifo_with(tmp_path, data)
    rc, out, err = run_cli(capsys, "evaluate", "--structured", str(fifo))
    assert rc == 0, err
    assert "grouping accuracy (GA)  1.0000" in out and "lines 80: 2 templates" in out
    packed = tmp_path / "s.csv.gz"
    packed.write_bytes(gzip.compress(data))
    # a pipe whose writer sends the first byte alone: the magic is still seen
    slow = tmp_path / "slow"
    os.mkfifo(slow)

    def trickle() -> None:
        import time

        with open(slow, "wb", buffering=0) as w:
            w.write(packed.read_bytes()[:1])
            time.sleep(0.3)
            w.write(packed.read_bytes()[1:])

    threading.Thread(target=trickle, daemon=True).start()
    rc, out, err = run_cli(capsys, "evaluate", "--structured", str(slow))
    assert_user_error(rc, err, "is gzip-compressed")
    rc, out, err = run_cli(capsys, "evaluate", "--structured", str(packed))
    assert_user_error(rc, err, "is gzip-compressed", f"<(zcat {packed})")
    assert len(err) < 400


def test_evaluate_keeps_its_table_when_the_json_cannot_be_written(capsys, tmp_path, monkeypatch) -> None:
    """A --json that could not be written at the end (a full disk after a long run) threw the whole
    result away: the error came before the table."""
    csv = tmp_path / "s.csv"
    csv.write_text("Content,EventId\n" + "".join(f"job {i} done,E1\n" for i in range(20)))
    result = tmp_path / "result.json"
    result.write_text('{"an": "earlier result"}\n')

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the disk fills up while the result is written
    rc, out, err = run_cli(capsys, "evaluate", "--structured", str(csv), "--json", str(result))
    assert_user_error(rc, err, "cannot write the JSON result (No space left on device)", "the table above")
    assert "grouping accuracy (GA)" in out
    # the earlier result is kept whole (it was truncated, then left cut off), and nothing else is left
    assert result.read_text() == '{"an": "earlier result"}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "s.csv"]
    monkeypatch.undo()
    assert run_cli(capsys, "evaluate", "--structured", str(csv), "--json", str(result))[0] == 0
    assert json.loads(result.read_text())["mode"] == "types"


def test_learn_refuses_alert_ids_without_an_alerts_file(capsys, tmp_path, log_lines) -> None:
    """`learn --alert ID LOGFILE` ignored --alert, learned the whole file and made it current (a
    running daemon switched to it)."""
    path, _ = log_lines
    store = tmp_path / "models"
    shutil.copytree(DEFAULT, store / "v0001")
    (store / "current").symlink_to("v0001")
    rc, _, err = run_cli(capsys, "learn", "--model", str(store), "--alert", "1m84dq0jag9hmsnh", str(path))
    assert_user_error(rc, err, "--alert ID picks alerts of --from-alerts")
    assert sorted(p.name for p in store.iterdir()) == ["current", "v0001"]


def test_messages_name_the_right_fix(capsys, tmp_path, log_lines) -> None:
    path, _ = log_lines
    # a bundle from a newer lograven: upgrade, not retrain (which throws the newer model away)
    newer = tmp_path / "newer"
    shutil.copytree(DEFAULT, newer)
    from test_bundle import manifest_of, write_manifest

    m = manifest_of(newer)
    m["format_version"] = 4
    write_manifest(newer, m)
    rc, _, err = run_cli(capsys, "types", str(newer))
    assert_user_error(rc, err, "written by a newer lograven: upgrade lograven")
    # rolling back to a version that is not there: not "train one with --out models/v0009"
    store = tmp_path / "models"
    shutil.copytree(DEFAULT, store / "v0001")
    rc, _, err = run_cli(capsys, "models", "rollback", "--dir", str(store), "--to", "v0009")
    assert_user_error(rc, err, "there is no version v0009", "lograven models list")
    assert "train" not in err
    # a log file, or a mistyped path, given as --model
    for model, needle in ((path, "is a file, not a model"), (tmp_path / "typo", "no such directory")):
        rc, _, err = run_cli(capsys, "score", "--model", str(model), str(path))
        assert_user_error(rc, err, needle)
        assert f"--out {model}" not in err


def test_score_refuses_a_batch_size_below_one(capsys, log_lines) -> None:
    path, _ = log_lines
    with pytest.raises(SystemExit) as e:
        cli.main(["score", "--model", str(DEFAULT), "--batch-size", "0", str(path)])
    assert e.value.code == 2
    assert "argument --batch-size: 0: give at least 1" in capsys.readouterr().err


def test_the_line_limit_says_which_files_were_not_read(tmp_path, caplog, log_lines) -> None:
    """`train --max-lines 400 a.log b.log` said "400 lines from 1 file(s)" and nothing of b.log."""
    path, _ = log_lines
    later = [tmp_path / f"later{i}" for i in range(4)]
    for p in later:
        write_log(p, LogGenerator(seed=1).lines(10))
    files = [str(path), *map(str, later)]
    corpus = read_corpus(files, max_lines=100)
    with caplog.at_level("WARNING"):
        cli._warn_line_budget(corpus, files, 100)
    assert f"was reached in {path}: {later[0]}, {later[1]}, {later[2]} and 1 more not read" in caplog.text
    caplog.clear()
    twice = [str(later[0]), str(path), str(later[0])]  # the limit comes in the second reading of later0
    corpus = read_corpus(twice, max_lines=10 + 300 + 5)
    cli._warn_line_budget(corpus, twice, 10 + 300 + 5)
    assert caplog.text == ""  # it did not say "messages, later0 not read"
    corpus = read_corpus(files, max_lines=10_000)
    cli._warn_line_budget(corpus, files, 10_000)
    assert caplog.text == ""


# ----------------------------------------------------------------- `check --stdin` (an audit of plugin mode)


def _plugin_yaml(tmp_path: Path, model: str | None, **extra: str) -> Path:
    cfg = tmp_path / "omprog.yaml"
    lines = ["sources:", "  - paths: [/dev/null]", f"model: {model or 'null'}", f"state_dir: {tmp_path / 'state'}",
             "alerts:", "  syslog: {enabled: false}", f"  jsonl: {{path: {tmp_path / 'alerts' / 'alerts.jsonl'}}}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_check_stdin_refuses_what_run_stdin_refuses_and_names_what_does_not_apply(capsys, tmp_path) -> None:
    """`check` passed a plugin config that `run --stdin` refuses (model: null: "configuration OK ... learn
    mode"), and said nothing of learn.schedule, which a plugin never applies."""
    cfg = _plugin_yaml(tmp_path, None)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg), "--stdin")
    assert_user_error(rc, err, "plugin mode (--stdin) needs a trained model")
    assert "learn mode" not in out and "configuration OK" not in out  # not OK, then an error (review)
    cfg = _plugin_yaml(tmp_path, str(DEFAULT), learn="{schedule: 1h}")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg), "--stdin", "--user", "root")
    assert rc == 0, err
    assert "plugin mode: lines come on standard input, parsed as format syslog, stream file" in out
    assert "warning: learn.schedule is not applied in plugin mode" in out
    assert "/dev/null" not in out  # the paths are not read: no warning that /dev/null is not a file
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg), "--stdin")
    assert "add --user NAME" in out  # the shipper's user is not lograven.service's


@pytest.mark.skipif(os.geteuid() != 0, reason="checking as another user needs root")
def test_check_stdin_as_the_shippers_user_checks_what_it_writes(capsys, tmp_path, monkeypatch) -> None:
    """`check --user nobody` passed a plugin config whose state_dir and alerts directory only root could
    write: it checked the sources, which a plugin does not read."""
    import pwd

    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="lograven-check-", dir="/tmp"))  # pytest's tmp_path is under a 0700 directory
    try:
        _check_as_nobody(capsys, base)
    finally:
        shutil.rmtree(base)


def _check_as_nobody(capsys, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    for d in ("state", "alerts"):
        (tmp_path / d).mkdir(mode=0o750)
    model = tmp_path / "model"
    shutil.copytree(DEFAULT, model)
    for p in [model, *model.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    cfg = _plugin_yaml(tmp_path, str(model))
    cfg.chmod(0o644)
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg), "--stdin", "--user", "nobody")
    assert rc == 0, err
    assert "checked state_dir and the alerts file and the model also as user nobody" in out
    assert f"warning: state_dir {tmp_path / 'state'}: not writable for user nobody" in out
    assert f"warning: alerts.jsonl.path {tmp_path / 'alerts' / 'alerts.jsonl'}: " in out
    assert "for user nobody; the plugin as this user would refuse to start" in out
    assert "cannot read" not in out  # the model is readable


def test_a_model_directory_without_current_says_to_roll_back(capsys, tmp_path, log_lines) -> None:
    path, _ = log_lines
    store = tmp_path / "models"
    shutil.copytree(DEFAULT, store / "v0001")
    rc, _, err = run_cli(capsys, "score", "--model", str(store), str(path))
    assert_user_error(rc, err, "versions (v0001) but no `current` one",
                      f"lograven models rollback --dir {store} --to v0001")


def test_a_source_that_differs_from_the_models_training_is_said(capsys, tmp_path) -> None:
    """A model trained one stream per file, served one stream per program: 67 sequence alerts per 1,000
    normal lines instead of 0.7 (an audit), and neither `check` nor `run` said a word. The manifest's
    format and stream are now compared with each source's; learn mode over sources that differ records
    "mixed", which is not judged."""
    from lograven.bundle import load_bundle
    from lograven.config import parse_config
    from lograven.service import trained_with_warnings

    bundle = load_bundle(DEFAULT)  # trained with format syslog, stream file
    ok = parse_config({"sources": [{"paths": ["/var/log/messages"]}]})
    assert trained_with_warnings(bundle, ok) == []
    off = parse_config({"sources": [{"paths": ["/var/log/messages"]}, {"paths": ["/var/log/app.log"], "stream": "program",
                                                                        "format": "iso"}]})
    # a model from before lograven recorded how every source was read: learn mode then wrote the first
    # source's settings whatever the others' (an upgrade audit got a false warning for sources[1])
    assert "read_as_recorded" not in bundle.manifest["training"]
    assert trained_with_warnings(bundle, off) == []
    bundle.manifest["training"] = {**bundle.manifest["training"], "read_as_recorded": True}
    said = trained_with_warnings(bundle, off)
    assert len(said) == 2 and said[0].startswith("sources[1].stream is 'program', but model ")
    assert "trained with stream 'file'" in said[0] and "set stream: file" in said[0]
    assert said[1].startswith("sources[1].format is 'iso'") and "learn mode (`model: null`) reads each source" in said[1]
    assert trained_with_warnings(bundle, off, stdin_mode=True) == []  # a plugin uses the first source only
    bundle.manifest["training"] = {**bundle.manifest["training"], "stream": "mixed", "format": "mixed"}
    assert trained_with_warnings(bundle, off) == []
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources:\n  - paths: [{tmp_path / 'x.log'}]\n    stream: program\nmodel: {DEFAULT}\n"
                   f"state_dir: {tmp_path / 'state'}\n")
    rc, out, err = run_cli(capsys, "check", "--config", str(cfg), "--user", "root")
    assert rc == 0, err
    assert "warning: sources[0].stream is 'program', but model 20261123T192828Z-36a22461 was trained with stream 'file'" in out


def test_learn_records_the_format_and_stream_it_read_with(capsys, tmp_path, log_lines, monkeypatch) -> None:
    """`learn --format/--stream` fine-tuned on lines read otherwise than the parent, but the new version kept
    the parent's format and stream in its manifest, so the warnings of a source that differs judged it wrong."""
    from lograven import learning as learning_mod

    path, _ = log_lines
    seen = []

    def fake_learn(model, corpus, **kw):
        seen.append(kw.get("read_as"))
        assert corpus.vouch_all  # logs given to learn are named normal as a whole (their new types: Detector.unjudged)
        return tmp_path / "out", {"lines": len(corpus)}

    monkeypatch.setattr(learning_mod, "learn", fake_learn)
    for extra in ([], ["--stream", "program"], ["--format", "raw", "--stream-key", r"sshd\[(\d+)\]"]):
        assert cli.main(["learn", "--model", str(DEFAULT), "--out", str(tmp_path / "m"), "--json", *extra, str(path)]) == 0
    assert seen == [{}, {"stream": "program"}, {"format": "raw", "stream": r"regex:sshd\[(\d+)\]"}]


def test_score_and_learn_read_lines_as_the_model_was_trained(tmp_path, capsys, caplog) -> None:
    """A model trained one stream per program, scored without --stream, was fed one stream per file (and
    `learn` learned so), unsaid: its sequences look unusual, a flood of alerts. Without --format, --stream
    or --config, both read lines as the model's manifest records; an option that differs is warned about."""
    from conftest import TINY_AUTOENCODER, TINY_SEQUENCE

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"training: {{seed: 42, sequence: {json.dumps(TINY_SEQUENCE)}, autoencoder: {json.dumps(TINY_AUTOENCODER)}}}\n")
    log = tmp_path / "messages"
    write_log(log, LogGenerator(seed=1).lines(1500))
    model = tmp_path / "m"
    assert cli.main(["-q", "train", "--config", str(cfg), "--stream", "program", "--out", str(model), str(log)]) == 0
    capsys.readouterr()
    assert cli.main(["score", "--model", str(model), str(log)]) == 0
    out, err = capsys.readouterr()
    streams = {json.loads(line)["stream"] for line in out.splitlines()}
    assert str(log) not in streams and f"{log}:sshd" in streams and "warning" not in err, (sorted(streams)[:5], err)
    assert cli.main(["score", "--model", str(model), "--stream", "file", str(log)]) == 0
    out, err = capsys.readouterr()
    assert {json.loads(line)["stream"] for line in out.splitlines()} == {str(log)}
    assert "trained on lines read with stream 'program'" in err and "Give --stream program" in err
    # learn: the new version reads, and records, what its parent did
    new = tmp_path / "new.log"
    write_log(new, LogGenerator(seed=5).lines(300))
    assert cli.main(["-q", "learn", "--model", str(model), "--out", str(tmp_path / "m2"), str(new)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "m2" / "manifest.json").read_text())["training"]["stream"] == "program"
    # a config given says how to read: its first source wins, and the difference is said
    daemon_cfg = tmp_path / "daemon.yaml"
    daemon_cfg.write_text(f"sources: [{{paths: ['{log}'], stream: file}}]\n")
    assert cli.main(["score", "--config", str(daemon_cfg), "--model", str(model), str(log)]) == 0
    assert "Give --stream program" in capsys.readouterr().err
    # a config of detectors (or runtime) only names no source: the model's way is kept. It read the lines
    # with the default source's syslog and file instead (an HDFS model: every line an alert; review)
    only = tmp_path / "detectors.yaml"
    only.write_text("detectors: {sequence: {rule: probability, threshold: 0.02}}\nruntime: {max_streams: 3}\n")
    with caplog.at_level("WARNING"):
        assert cli.main(["score", "--config", str(only), "--model", str(model), str(log)]) == 0
    out, err = capsys.readouterr()
    streams = {json.loads(line)["stream"] for line in out.splitlines()}
    assert str(log) not in streams and f"{log}:sshd" in streams and "Give --stream" not in err, err
    # ... and its runtime.max_streams holds in score too (3 of the log's programs at once), which says
    # that states were forgotten (they were forgotten silently past the daemon's default 100,000)
    assert len(streams) > 3
    assert "stream state(s) were forgotten: more than runtime.max_streams (3) streams were open" in caplog.text


def test_a_json_result_through_a_link_is_written_through_it(tmp_path) -> None:
    """--json /dev/stdout (a link to /proc/self/fd/1) was renamed over, which as root replaces the
    system's /dev/stdout; a link to a result kept elsewhere lost its link. Links are written through by
    open(), so the kernel's protection of links in sticky directories still applies; a regular file is
    replaced whole, keeping its mode."""
    from lograven.osutil import write_text_replacing

    kept = tmp_path / "results" / "r.json"
    kept.parent.mkdir()
    kept.write_text("old\n")
    link = tmp_path / "r.json"
    link.symlink_to(kept)
    write_text_replacing(link, "new\n")
    assert link.is_symlink() and kept.read_text() == "new\n"
    r, w = os.pipe()  # a descriptor's link, as /dev/stdout is
    fd_link = tmp_path / "stdout"
    fd_link.symlink_to(f"/proc/self/fd/{w}")
    write_text_replacing(fd_link, "through\n")
    os.close(w)
    assert fd_link.is_symlink() and os.read(r, 100) == b"through\n"
    os.close(r)
    plain = tmp_path / "plain.json"
    write_text_replacing(plain, "a\n")
    plain.chmod(0o640)
    write_text_replacing(plain, "b\n")  # replaced, with the mode it had
    assert plain.read_text() == "b\n" and sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "r.json", "results", "stdout"]
    assert (plain.stat().st_mode & 0o777) == 0o640


def test_a_model_that_did_not_record_how_its_lines_were_read_sets_no_default(bundle_copy) -> None:
    """Learn mode before 0.2.0 wrote the first source's format and stream whatever the other sources'
    were (no `read_as_recorded`): taken as the default, a second source's lines were read the wrong way
    and a correct --format drew the advice to give the wrong one."""
    from test_bundle import manifest_of, write_manifest

    assert cli._model_read_as(str(bundle_copy)) == {"format": "syslog", "stream": "file"}
    m = manifest_of(bundle_copy)
    m["training"] = {**m["training"], "stream": "program"}
    m["training"].pop("read_as_recorded")
    write_manifest(bundle_copy, m)
    assert cli._model_read_as(str(bundle_copy)) == {}
    m["training"] = [1]  # not an object: an AttributeError traceback in score and learn (load_bundle refuses it)
    write_manifest(bundle_copy, m)
    assert cli._model_read_as(str(bundle_copy)) == {}


def test_evaluate_json_to_the_file_standard_output_writes_is_as_json_dash(tmp_path) -> None:
    """`evaluate --json /dev/stdout >> results.txt` reopened the file: what `>>` had kept was truncated,
    and the table printed before came out over the JSON. It is taken as `--json -` now."""
    import subprocess
    import sys

    csv = tmp_path / "s.csv"
    csv.write_text("Content,EventId\n" + "".join(f"job {i} done,E1\n" for i in range(20)))
    out = tmp_path / "results.txt"
    out.write_text("kept\n")
    with out.open("a") as f:
        r = subprocess.run([sys.executable, "-m", "lograven", "evaluate", "--structured", str(csv), "--json", "/dev/stdout"],
                           stdout=f, stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    kept, rest = out.read_text().split("\n", 1)
    assert kept == "kept" and json.loads(rest)["mode"] == "types" and "grouping accuracy" in r.stderr


def test_a_symlink_loop_as_input_is_a_clear_error(capsys, tmp_path, bundle_dir) -> None:
    """Hostile-input review (2026-12-07): `ln -s loop.log loop.log; lograven train loop.log` (and learn, score)
    printed a traceback (OSError: Too many levels of symbolic links)."""
    loop = tmp_path / "loop.log"
    loop.symlink_to(loop)
    for argv in (("score", "--model", str(bundle_dir), str(loop)), ("train", "--out", str(tmp_path / "m"), str(loop)),
                 ("learn", "--model", str(bundle_dir), "--out", str(tmp_path / "m2"), str(loop))):
        rc, _, err = run_cli(capsys, *argv)
        assert_user_error(rc, err, f"{loop}: cannot open it: a symbolic link that loops")
