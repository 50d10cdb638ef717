"""`lograven train`, `types` and `score` through the CLI, on synthetic data and (when present) ../shared/data."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lograven.generator import LogGenerator, write_log

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"
TINY = """
training:
  sequence: {units: 16, embedding_dim: 8, window: 16, epochs: 2}
  autoencoder: {vocab_size: 128, epochs: 2, filters: 16, latent_dim: 8, embedding_dim: 8}
"""


def _lograven(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lograven", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed (pip install -e '.[plots]')")
def test_train_with_plots_and_summary(tmp_path, tiny_cfg):
    log = tmp_path / "syn.log"
    write_log(log, LogGenerator(seed=2).lines(3000))
    out = tmp_path / "m"
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(out), "--plots", str(log))
    assert r.returncode == 0, r.stderr
    assert "bundle written to" in r.stdout and "message types" in r.stdout and "seconds" in r.stdout
    for name in ("clusters.png", "sequence_loss.png", "autoencoder_loss.png", "autoencoder_errors.png"):
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
    manifest = json.loads((out / "manifest.json").read_text())
    assert "plots/clusters.png" in manifest["files"]  # plots are hashed like everything else
    assert manifest["training"]["lines"] == 3000


def test_train_says_when_data_is_too_small(tmp_path, tiny_cfg):
    """Too few lines for a useful model, or for calibration: `train` says so instead of leaving it to be found
    out from false alarms."""
    log = tmp_path / "small.log"
    write_log(log, LogGenerator(seed=4).lines(200))
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(tmp_path / "m"), str(log))
    assert r.returncode == 0, r.stderr
    assert "warning: only 200 lines" in r.stderr, r.stderr
    assert "mostly wildcards" not in r.stderr and "do not match" not in r.stderr, r.stderr
    assert "not calibrated: " in r.stdout and "calibration and the floor need 1000" in r.stdout, r.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {tmp_path / 'm'}\nsources: [{{paths: [{log}]}}]\n")
    r = _lograven("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "(not calibrated: the model held back" in r.stdout, r.stdout


def test_train_into_a_model_directory_writes_its_next_version_and_never_the_one_in_use(tmp_path, tiny_cfg):
    """The daemon's model directory (`v0001`, `current -> v0001`): `--out` the directory writes the next
    version, not made current, and says how to use it; `--out` the version in use is refused (an admin
    following the docs had replaced the model a running daemon used, which went on with the old one)."""
    from lograven.modelstore import ModelStore

    log = tmp_path / "syn.log"
    write_log(log, LogGenerator(seed=2).lines(1500))
    models = tmp_path / "models"
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(models / "v0001"), str(log))
    assert r.returncode == 0, r.stderr
    os.symlink("v0001", models / "current")
    before = (models / "v0001" / "manifest.json").read_bytes()
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(models / "v0001"), str(log))
    assert r.returncode == 1 and f"--out {models / 'v0001'}: is the version in use" in r.stderr, r.stderr
    assert f"give --out {models} to write its next version" in r.stderr
    assert (models / "v0001" / "manifest.json").read_bytes() == before
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(models), str(log))
    assert r.returncode == 0, r.stderr
    assert f"version v0002 written to {models} (not in use yet)" in r.stderr
    assert f"lograven models rollback --dir {models} --to v0002" in r.stderr
    store = ModelStore(models)
    assert store.versions() == ["v0001", "v0002"] and store.current_name() == "v0001"
    assert f"bundle written to {models / 'v0002'}" in r.stdout
    # a version directory left without a bundle (a stopped save) takes its number; the next is written (a
    # review: it had been refused as "exists, is not empty and holds no bundle")
    (models / "v0003").mkdir()
    (models / "v0003" / "partial.npz").write_bytes(b"x")
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(models), str(log))
    assert r.returncode == 0 and "version v0004 written" in r.stderr, r.stderr
    # learn into the model directory checks the same place (it had refused the version without a bundle)
    from types import SimpleNamespace

    from lograven import cli

    (models / "v0005").mkdir()
    (models / "v0005" / "partial.npz").write_bytes(b"x")
    cli._check_learn_target(SimpleNamespace(out=None, model=str(models)))
    # the daemon's model directory before learn mode saved a version (empty or missing) is one too (a review:
    # the bundle's files had been written into it as if it were the bundle)
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(tiny_cfg.read_text() + f"state_dir: {tmp_path / 'state'}\n")
    r = _lograven("train", "--config", str(cfg), "--out", str(tmp_path / "state" / "models"), str(log))
    assert r.returncode == 0 and "version v0001 written" in r.stderr, r.stderr
    assert ModelStore(tmp_path / "state" / "models").versions() == ["v0001"]
    assert not (tmp_path / "state" / "models" / "manifest.json").exists()


def test_train_and_check_say_when_calibration_rests_on_few_steps(tmp_path, tiny_cfg):
    """A model of 15,000 lines is calibrated (1,500 held-back steps), but on so few that its rule is as
    loose as their rarest, and a soak's model of 20,000 lines missed every forbidden transition: `train`
    and `check` say so, and what to do; with more than 5,000 steps neither does."""
    log = tmp_path / "mid.log"
    write_log(log, LogGenerator(seed=5).lines(15_000))
    r = _lograven("train", "--config", str(tiny_cfg), "--out", str(tmp_path / "m"), str(log))
    assert r.returncode == 0, r.stderr
    steps = json.loads((tmp_path / "m" / "manifest.json").read_text())["sequence"]["validation"]["steps"]
    assert 1000 <= steps < 5000
    assert f"calibrated on only {steps:,} held-back steps" in r.stdout and "train on 100,000 lines or more" in r.stdout, r.stdout
    assert "not calibrated" not in r.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {tmp_path / 'm'}\nsources: [{{paths: [{log}]}}]\n")
    r = _lograven("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert f"(calibrated on only {steps:,} held-back steps: may miss never-seen transitions" in r.stdout, r.stdout
    # with a rule calibration does not set (top_k), or no calibration, nothing to say
    top_k = tmp_path / "top_k.yaml"
    top_k.write_text(tiny_cfg.read_text() + "detectors:\n  sequence: {rule: top_k}\n")
    r = _lograven("train", "--config", str(top_k), "--out", str(tmp_path / "m2"), str(log))
    assert r.returncode == 0 and "held-back steps" not in r.stdout, r.stdout + r.stderr
    # the default model held back 10,000: nothing said
    from lograven.demo import default_model_dir

    cfg.write_text(f"model: {default_model_dir()}\nsources: [{{paths: [{log}]}}]\n")
    r = _lograven("check", "--config", str(cfg))
    assert r.returncode == 0 and "sequence p/p_train <" in r.stdout and "calibrated on only" not in r.stdout, r.stdout + r.stderr


def test_train_warns_about_a_wrong_format_and_catch_all_types(tmp_path, tiny_cfg):
    """A model that would look fine but miss new messages: lines not in --format (their timestamps learned
    as text) and lines so varied that the types are mostly wildcards. `train` says both, and why."""
    import random

    rnd = random.Random(6)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(3000)]
    log = tmp_path / "noise.log"
    log.write_text("".join(f"Jun  9 06:{i // 60 % 60:02d}:{i % 60:02d} web01 app[7]: {' '.join(rnd.sample(words, rnd.randint(3, 6)))}\n"
                           for i in range(600)))  # fmt: skip
    r = _lograven("train", "--config", str(tiny_cfg), "--format", "iso", "--out", str(tmp_path / "m"), str(log))
    assert r.returncode == 0, r.stderr
    assert f"600 of 600 lines of {log} do not match --format iso" in r.stderr, r.stderr
    m = re.search(r"warning: (\d+) message type\(s\) are mostly wildcards .* and cover (\d+)% of the lines", r.stderr)
    assert m and int(m.group(2)) >= 20, r.stderr
    summary = json.loads((tmp_path / "m" / "manifest.json").read_text())["training"]
    assert len(summary["catch_all_types"]) == int(m.group(1)) and summary["catch_all_lines"] >= 120


def test_train_rejects_bad_input(tmp_path, tiny_cfg):
    r = _lograven("train", "--out", str(tmp_path / "m"), str(tmp_path / "missing.log"))
    assert r.returncode == 1 and "missing.log: no such file" in r.stderr and "Traceback" not in r.stderr
    r = _lograven("train", "--format", "regex:(?P<msg>.*)", "--out", str(tmp_path / "m"), str(tmp_path / "x.log"))
    assert r.returncode == 1 and "message" in r.stderr
    blank = tmp_path / "blank.log"
    blank.write_text("\n  \n\n")
    r = _lograven("train", "--out", str(tmp_path / "m"), str(blank))
    assert r.returncode == 1 and f"{blank}: only 0 usable lines (blank lines do not count)" in r.stderr, r.stderr
    # invalid UTF-8, NUL bytes and an enormous line train fine
    log = tmp_path / "odd.log"
    lines = [x.encode() for x in LogGenerator(seed=3).lines(600)]
    lines[10] = b"Jun  9 06:06:20 web01 kernel: \xff\xfe bad \x00 bytes"
    lines[20] = b"Jun  9 06:06:20 web01 kernel: " + b"A" * 200_000
    log.write_bytes(b"\n".join(lines) + b"\n")
    r = _lograven("train", "--config", str(tiny_cfg), "--json", "--out", str(tmp_path / "m2"), str(log))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["truncated_lines"] == 1


@pytest.mark.parametrize("name", ["Linux", "OpenSSH"])
def test_loghub_train_types_score(tmp_path, tiny_cfg, name):
    """Issue acceptance: train on the real 2k logs; every line matches exactly one type's regex;
    score reproduces the types."""
    log = SHARED / name / f"{name}_2k.log"
    if not log.exists():
        pytest.skip(f"{log} not present (../shared/data is optional)")
    out = tmp_path / "m"
    r = _lograven("train", "--config", str(tiny_cfg), "--format", "syslog", "--out", str(out), str(log))
    assert r.returncode == 0, r.stderr
    types = json.loads(_lograven("types", "--json", str(out)).stdout)
    assert len(types) >= 20
    listing = _lograven("types", str(out)).stdout
    assert all(t["regex"] in listing for t in types)
    regexes = {t["id"]: re.compile(t["regex"]) for t in types}
    scored = [json.loads(x) for x in _lograven("score", "--model", str(out), str(log)).stdout.splitlines()]
    assert len(scored) == 2000
    assert [s["line"] for s in scored] == list(range(1, 2001))
    from lograven.parsing import Parser

    parser = Parser("syslog")
    texts = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for s, text in zip(scored, texts):
        msg = parser.parse(text).message
        hits = [i for i, rx in regexes.items() if rx.match(msg)]
        assert hits == [s["type"]], (text, hits, s["type"])


def test_train_says_before_training_that_the_format_timestamp_group_holds_no_timestamp(tmp_path, caplog) -> None:
    """read_corpus records what its parser's timestamp group held; train and learn say it before training."""
    from lograven import cli
    from lograven.training import read_corpus

    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-12-07T10:00:{i % 60:02d} worker-{i % 3} job {i} done\n" for i in range(30)))
    shifted = r"regex:(?P<host>\S+) (?P<timestamp>\S+) (?P<message>.*)"
    corpus = read_corpus([str(log)], fmt=shifted)
    assert corpus.unparsed == 0 and "in 30 of 30 lines (e.g. 'worker-0')" in (corpus.misread or "")
    assert read_corpus([str(log)], fmt=shifted, max_lines=5).misread is not None  # stopped early: said too
    with caplog.at_level("WARNING"):
        cli._warn_unparsed(corpus, shifted)
    assert "the timestamp group of format" in caplog.text and caplog.text.rstrip().endswith("then retrain"), caplog.text
    assert read_corpus([str(log)], fmt=r"regex:(?P<timestamp>\S+) (?P<host>\S+) (?P<message>.*)").misread is None


def test_train_and_learn_refuse_a_binary_file(tmp_path, capsys) -> None:
    """Corrective-action review (2026-12-07, night): `learn` on a binary file (wtmp, a journal file) was
    accepted with a format warning, made current, and added 308 types of its bytes, among them `<*>` and
    `<*> <*>`: no one- or two-word message was an unknown type any more. Such a file is refused, named,
    with the fix; a text log with a few garbled lines is not."""
    import random

    from lograven.errors import LogravenError
    from lograven.training import read_corpus

    rng = random.Random(3)
    binary = tmp_path / "wtmp"
    binary.write_bytes(bytes(rng.randrange(256) for _ in range(40_000)))
    with pytest.raises(LogravenError, match=r"wtmp: not a text log \(\d+ of its first \d+ lines"):
        read_corpus([str(binary)])
    text = tmp_path / "messages"
    lines = [f"Dec  7 10:00:{i % 60:02d} host app[1]: request {i} done".encode() for i in range(300)]
    lines[5] = b"Dec  7 10:00:05 host app[1]: \xff\xfe\x00\x01 garbled"
    text.write_bytes(b"\n".join(lines) + b"\n")
    assert len(read_corpus([str(text)])) == 300
    short = tmp_path / "short.bin"  # fewer lines than the sample: judged at the end
    short.write_bytes(b"\x00\x01\x02\x03\xff\xfe" * 50 + b"\n" + b"\x00\x07\x08" * 30 + b"\n")
    with pytest.raises(LogravenError, match="short.bin: not a text log"):
        read_corpus([str(short)])
