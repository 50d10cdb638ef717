"""Unit tests of the daemon's wiring: own-alert skipping, verdict -> alert, sinks from config."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time

import pytest

from lograven.alerts import Alert
from lograven.config import parse_config
from lograven.detector import DetectorSettings, Verdict
from lograven.masking import line_pattern
from lograven.parsing import Parser
from lograven.errors import LogravenError
from lograven.service import Service, alert_from_verdict, build_router, own_alert_predicate


class _Det:
    def __init__(self, rule="relative"):
        self.settings = DetectorSettings(sequence_rule=rule)
        self.relative_threshold = self.settings.sequence_relative_threshold
        self.probability_threshold = self.settings.sequence_threshold
        self.probability_floor = 0.0
        self.sequence_rule_value = self.settings.rule_value  # no calibration in this fake

    def template(self, t):
        return {3: "session opened for user <*>", 4: "Accepted password for <*>"}.get(t)

    def type_count(self, t):
        return {3: 40, 4: 7}.get(t, 0)

    def rare_fires(self, t, rank, end_more_likely=False):  # no rare types in this fake
        return False

    def line_pattern(self, line):
        return line_pattern(line)


def test_own_alerts_are_skipped_but_other_lograven_lines_are_not():
    skip = own_alert_predicate("lograven")
    own = b'Nov 23 14:42:13 web01 lograven[812]: @cee: {"v":1,"id":"x"}'
    assert skip(own)
    assert not skip(b"Nov 23 14:42:13 web01 lograven[812]: started, watching 2 files")
    assert not skip(b'Nov 23 14:42:13 web01 sshd[1]: user typed @cee: {"v":1} lograven[')
    assert own_alert_predicate("myids")(b"Nov 23 14:42:13 web01 myids: @cee: {}")
    # whatever header the file has: RFC 5424 (rsyslog's RSYSLOG_SyslogProtocol23Format, two spaces before
    # the message), no host name (glibc's form on the socket), ISO time stamps, an extra space
    assert skip(b'<12>1 2026-12-06T17:40:00.123+00:00 vm lograven 17584 - -  @cee: {"v":1,"id":"x"}')
    assert skip(b'Dec  6 17:40:00 lograven[1]: @cee: {"v":1,"id":"x"}')
    assert skip(b'<12>Dec  6 17:40:00 lograven[4711]: @cee: {"v":1,"id":"x"}')
    assert skip(b'2026-12-06T17:40:00.123+00:00 vm lograven[1]:  @cee: {"v":1,"id":"x"}')
    assert own_alert_predicate("lr.alert-1")(b'<12>1 2026-12-06T17:40:00Z vm lr.alert-1 9 - - @cee: {"v":1}')
    # only in syslog-format sources: in an application's own log an attacker may start a line so
    assert not own_alert_predicate("lograven", "iso")(b'2026-12-06T10:00:00Z lograven: @cee: {"v":1,"id":"x"}')
    assert not own_alert_predicate("lograven", "raw")(b'Dec  6 17:40:00 lograven[1]: @cee: {"v":1,"id":"x"}')
    # another program's message that starts with the cookie, or quotes an alert, is scored
    assert not skip(b'<12>1 2026-12-06T17:40:00Z vm myapp 9 - - @cee: {"v":1,"id":"x"}')
    assert not skip(b'Dec  6 17:40:00 vm myapp[9]: got lograven[1]: @cee: {"v":1}')


def test_alert_from_sequence_verdict_explains_and_names_expected():
    rec = Parser("syslog").parse("Jun  9 06:06:20 web01 sshd[5]: Accepted password for bob from 1.2.3.4 port 22 ssh2")
    v = Verdict(type_id=4, template="Accepted password for <*>", anomaly=True, detectors=["sequence"], sequence_p=0.001,
                sequence_rank=7, expected=[(3, 0.6)], ae_error=0.5, ae_threshold=2.0, sequence_ratio=0.02,
                previous_type=3)  # fmt: skip
    a = alert_from_verdict(v, path="/var/log/messages", offset=120, stream="/var/log/messages", line="L", record=rec,
                           detector=_Det(), host="fallback", version="v1")  # fmt: skip
    assert isinstance(a, Alert) and a.host == "web01" and a.type_id == 4 and a.previous_type_id == 3
    hit = a.detectors[0]
    assert hit.name == "sequence" and hit.score == 0.02 and hit.threshold == 0.1 and hit.rule.startswith("p/p_train")
    assert a.expected[0].template == "session opened for user <*>"
    d = json.loads(a.to_compact_json())
    assert d["previous_type_id"] == 3 and d["model_version"] == "v1"
    # unknown type -> type_id -1, no expected types
    u = Verdict(type_id=0, template=None, anomaly=True, detectors=["unknown_type", "autoencoder"], ae_error=5.0, ae_threshold=2.0)
    a2 = alert_from_verdict(u, path="f", offset=0, stream="f", line="x", record=rec, detector=_Det(), host="h", version="v")
    assert a2.type_id == -1 and not a2.expected and [h.name for h in a2.detectors] == ["unknown_type", "autoencoder"]
    # top-k rule explains with ranks
    a3 = alert_from_verdict(v, path="f", offset=0, stream="f", line="x", record=rec, detector=_Det("top_k"), host="h", version="v")
    assert a3.detectors[0].rule == "rank>9" and a3.detectors[0].score == 7


def test_sinks_follow_the_config(tmp_path):
    cfg = parse_config(
        {
            "alerts": {
                "syslog": {"enabled": True, "socket": str(tmp_path / "no-such-socket")},
                "jsonl": {"enabled": True, "path": str(tmp_path / "a.jsonl")},
                "stdout": {"enabled": True},
            },
            "state_dir": str(tmp_path),
        }
    )
    names = [s.name for s in build_router(cfg, None).sinks]
    assert names == ["jsonl", "syslog", "stdout"]
    # plugin mode: stdout carries the omprog protocol, so no stdout sink
    assert [s.name for s in build_router(cfg, None, stdin_mode=True).sinks] == ["jsonl", "syslog"]
    # by default only the jsonl file holds the checkpoint back; `required` sets it per sink
    assert [s.required for s in build_router(cfg, None).sinks] == [True, False, False]
    strict = parse_config({
        "alerts": {"syslog": {"socket": str(tmp_path / "no-such-socket"), "required": True},
                   "jsonl": {"path": str(tmp_path / "a.jsonl"), "required": False},
                   "stdout": {"enabled": True, "required": True}, "max_per_minute": 0},
        "state_dir": str(tmp_path)})  # fmt: skip
    router = build_router(strict, None)
    assert [s.required for s in router.sinks] == [False, True, True]
    assert router.max_per_minute is None  # 0: no rate limit, as docs/alerts.md says


def test_fast_score_writer_equals_the_reference_json():
    """`lograven score` writes JSON by hand for speed; it must equal json.dumps(verdict_json(...))."""
    from lograven.cli import VerdictWriter, verdict_json

    rec = Parser("syslog").parse('Jun  9 06:06:20 web01 sshd[5]: say "hi" \\ é ✓')
    raw = Parser("syslog").parse("no header at all")
    verdicts = [
        Verdict(4, "Accepted password for <*>", True, ["sequence"], sequence_p=0.00123456789, sequence_rank=7,
                expected=[(3, 0.6123456789), (4, 1e-07)], ae_error=0.512345, ae_threshold=2.0,
                sequence_ratio=0.0212345678, previous_type=3),
        Verdict(0, None, True, ["unknown_type", "autoencoder"], ae_error=5.0, ae_threshold=2.0),
        Verdict(3, "session opened for user <*>", False, [], sequence_p=0.5, sequence_rank=1, expected=[(3, 0.5)],
                sequence_ratio=1.5),
    ]
    w = VerdictWriter(_Det())
    for i, v in enumerate(verdicts):
        for r in (rec, raw):
            for blank in (False, True):
                fast = json.loads(w.line('/var/log/"odd" é', i + 1, "s\\1", r, v, blank))
                ref = json.loads(json.dumps(verdict_json('/var/log/"odd" é', i + 1, "s\\1", r, v, _Det(), blank)))
                assert fast == ref and (fast["parsed"] is None) == blank


def test_status_goes_to_the_journal_once_per_stage_and_at_most_a_minute_apart(tmp_path, caplog, monkeypatch):
    """`run` logs at INFO by default; learn mode's progress ("sequence 40%") must not write a line per percent."""
    import lograven.service as service_module
    from lograven.service import Service

    clock = [1000.0]
    monkeypatch.setattr(service_module.time, "monotonic", lambda: clock[0])
    svc = Service(parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [str(tmp_path / "x.log")]}]}), None)
    with caplog.at_level("INFO", logger="lograven.service"):
        for pct in range(0, 101, 5):
            svc._set_status(f"learn mode: sequence {pct}%")
            clock[0] += 1.0
        svc._set_status("learn mode: autoencoder 0%")
        clock[0] += 61.0
        svc._set_status("learn mode: autoencoder 50%")
    logged = [r.getMessage() for r in caplog.records if r.name == "lograven.service"]
    assert logged == ["learn mode: sequence 0%", "learn mode: autoencoder 0%", "learn mode: autoencoder 50%"], logged
    assert svc._status == "learn mode: autoencoder 50%"  # systemd's STATUS gets every change


def test_unknown_lines_are_one_pattern_by_the_models_own_masks(bundle) -> None:
    """An unknown message that differs only in a value the model's `extra_masks` cover is one alert
    pattern: de-duplicated together, and `lograven allow ALERT_ID` on one suppresses the others, also
    from alerts.jsonl. Built-in masks alone would make each job name a new pattern."""
    from lograven.allowlist import rule_from_alert
    from lograven.detector import Detector
    from lograven.masking import ExtraMask

    bundle.types.extra_masks = [ExtraMask("JOB", r"job-[a-z]+")]  # as a model trained with this mask
    det = Detector(bundle)
    rec = Parser("syslog").parse("Jun  9 06:06:20 web01 batch[5]: x")
    u = Verdict(type_id=0, template=None, anomaly=True, detectors=["unknown_type"])
    lines = [f"Jun  9 06:06:2{i} web01 batch[5]: scheduler lost {j} on node 4" for i, j in enumerate(["job-alpha", "job-beta"])]
    a, b = (alert_from_verdict(u, path="/var/log/messages", offset=0, stream="s", line=ln, record=rec, detector=det,
                               host="h", version="v") for ln in lines)  # fmt: skip
    assert a.pattern == b.pattern and "<JOB>" in a.pattern
    assert line_pattern(lines[0]) != line_pattern(lines[1])  # the built-in masks alone tell them apart
    assert a.dedup_key() == b.dedup_key()
    stored = json.loads(a.to_json())  # as `lograven allow ALERT_ID` reads it from alerts.jsonl
    assert stored["pattern"] == a.pattern and "pattern" not in json.loads(a.to_compact_json())
    assert Alert.from_dict(stored).pattern == a.pattern
    rule = rule_from_alert(stored)
    assert rule.matches(b)
    other = alert_from_verdict(u, path="/var/log/messages", offset=0, stream="s", line=lines[0].replace("lost", "found"),
                               record=rec, detector=det, host="h", version="v")  # fmt: skip
    assert not rule.matches(other)
    # an alert written before alerts carried their pattern: the built-in masks, as then
    old = {k: v for k, v in stored.items() if k != "pattern"}
    assert rule_from_alert(old).pattern == line_pattern(lines[0])
    # known lines carry no pattern
    k = Verdict(type_id=4, template="T", anomaly=True, detectors=["autoencoder"], ae_error=5.0, ae_threshold=2.0)
    assert alert_from_verdict(k, path="f", offset=0, stream="s", line=lines[0], record=rec, detector=det, host="h",
                              version="v").pattern is None  # fmt: skip


def test_checkpoint_positions_go_to_the_source_that_matches_the_file(tmp_path, caplog) -> None:
    """Positions saved per source index are handed out by file: reordered, inserted or removed sources
    and glob patterns each get their own files' offsets; a file no source matches any more is dropped."""
    from lograven.service import positions_by_source

    logs = tmp_path / "logs"
    saved = {"0": {f"{logs}/messages": {"file_id": "1:2:ab", "offset": 10}},
             "1": {f"{logs}/app/x.log": {"file_id": "1:3:cd", "offset": 20},
                   f"{logs}/old.log": {"file_id": "1:4:ef", "offset": 30}}}  # fmt: skip
    cfg = parse_config({"sources": [{"paths": [f"{logs}/new.log"]}, {"paths": [f"{logs}/app/*.log"]},
                                    {"paths": [f"{logs}/messages"]}], "state_dir": str(tmp_path)})  # fmt: skip
    with caplog.at_level("INFO"):
        got = positions_by_source(cfg, saved)
    assert got == [{}, {f"{logs}/app/x.log": saved["1"][f"{logs}/app/x.log"]},
                   {f"{logs}/messages": saved["0"][f"{logs}/messages"]}]  # fmt: skip
    assert f"position in {logs}/old.log is dropped" in caplog.text
    assert positions_by_source(cfg, None) == [{}, {}, {}] and positions_by_source(cfg, {"0": "junk"}) == [{}, {}, {}]
    # patterns are read as glob reads them (a review): `*` stays within a name, so `logs/*.log` does not
    # take `logs/app/x.log` from a later source (that source had started at the file's end while the
    # first read it too); `**/` may stand for no directory, so `logs/**/*.log` keeps `logs/top.log`
    # (its position had been dropped at every restart)
    saved = {"0": {f"{logs}/app/x.log": {"file_id": "1:3:cd", "offset": 20},
                   f"{logs}/top.log": {"file_id": "1:5:aa", "offset": 40},
                   f"{logs}/deep/er/y.log": {"file_id": "1:6:bb", "offset": 50}}}  # fmt: skip
    cfg = parse_config({"sources": [{"paths": [f"{logs}/*.log"]}, {"paths": [f"{logs}/app/*.log"]}],
                        "state_dir": str(tmp_path)})  # fmt: skip
    assert positions_by_source(cfg, saved) == [{f"{logs}/top.log": saved["0"][f"{logs}/top.log"]},
                                               {f"{logs}/app/x.log": saved["0"][f"{logs}/app/x.log"]}]
    cfg = parse_config({"sources": [{"paths": [f"{logs}/**/*.log"]}], "state_dir": str(tmp_path)})
    assert positions_by_source(cfg, saved) == [saved["0"]]
    # as glob, a wildcard does not give a hidden file (`*.log` is not `.hidden.log`'s source: it had read
    # its lines as its own, while the source naming it started at its end); and a pattern with brackets
    # that matched nothing keeps its "followed, no file yet" entry (`app[12].log` matched no key)
    saved = {"0": {f"{logs}/.hidden.log": {"file_id": "1:7:cc", "offset": 5}, f"{logs}/app[12].log": {}}}
    cfg = parse_config({"sources": [{"paths": [f"{logs}/*.log"]}, {"paths": [f"{logs}/.hidden.log"]},
                                    {"paths": [f"{logs}/app[12].log"]}], "state_dir": str(tmp_path)})  # fmt: skip
    assert positions_by_source(cfg, saved) == [{}, {f"{logs}/.hidden.log": saved["0"][f"{logs}/.hidden.log"]},
                                               {f"{logs}/app[12].log": {}}]  # fmt: skip
    # but a file literally named `app[12].log` is not the bracket pattern's (glob gives it no such name): its
    # position goes to the source whose pattern gives it (a review)
    saved = {"0": {f"{logs}/app[12].log": {"file_id": "1:2:abcd", "offset": 2}}}
    cfg = parse_config({"sources": [{"paths": [f"{logs}/app[12].log"]}, {"paths": [f"{logs}/*.log"]}],
                        "state_dir": str(tmp_path)})  # fmt: skip
    assert positions_by_source(cfg, saved) == [{}, saved["0"]]


def test_a_reload_names_the_changes_it_cannot_apply(tmp_path) -> None:
    """The metrics listener, state_dir, queue size and threads are set at start: a reload that changes
    them says so (and when), instead of reporting a silent success."""
    from lograven.service import restart_only_changes

    base = {"state_dir": str(tmp_path), "metrics": {"listen": "127.0.0.1:9077"}}
    old = parse_config(base)
    assert restart_only_changes(old, parse_config(base)) == []
    new = parse_config({**base, "metrics": {"listen": "127.0.0.1:9078"}, "runtime": {"threads": 2},
                        "alerts": {"dedup_window_seconds": 5}})  # fmt: skip
    assert restart_only_changes(old, new) == ["metrics.listen", "runtime.threads"]


def _failing_jsonl(monkeypatch) -> dict:
    """alerts.jsonl fails to write (a full disk) while the returned switch's "on" is true."""
    from lograven import alerts as alerts_mod
    from lograven.alerts import SinkError

    real_emit = alerts_mod.JsonlSink.emit
    failing = {"on": True}

    def emit(self, batch):
        if failing["on"]:
            raise SinkError("No space left on device")
        real_emit(self, batch)

    monkeypatch.setattr(alerts_mod.JsonlSink, "emit", emit)
    return failing


def test_plugin_mode_refuses_messages_while_the_alerts_file_fails(tmp_path, bundle_dir, monkeypatch) -> None:
    """`run --stdin` (rsyslog omprog with confirmMessages): while the jsonl sink cannot write, a message
    whose alert it could not take is answered with an error instead of OK, so rsyslog keeps it queued and
    sends it again; once the file works, OK again, nothing lost, and each alert written once (a soak: the
    line that met the failure alerted twice, its first alert kept for retry and the resent line's too)."""
    import io

    from lograven import alerts as alerts_mod
    from lograven.service import Service

    failing = _failing_jsonl(monkeypatch)
    out = tmp_path / "alerts.jsonl"
    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(out)}}})  # fmt: skip
    unknown = "Jun  9 07:00:0{} web01 kernel: /dev/sdz{} out of diskspace marker-{}\n"
    answers = io.StringIO()

    class Rsyslog:
        """Sends the six messages in order, each again while it is refused; the disk is freed after the
        fourth refusal."""

        def __iter__(self):
            i, refused = 0, 0
            while i < 6:
                yield unknown.format(i, i, i).encode()
                if answers.getvalue().splitlines()[-1].startswith("Error: "):  # the reply to it (lockstep)
                    refused += 1
                    failing["on"] = refused < 4
                else:
                    i += 1

    svc = Service(cfg, stdin_mode=True, stdin=Rsyslog(), stdout=answers)
    real_flush = alerts_mod.AlertRouter.flush  # no back-off between retries here: the next line retries
    monkeypatch.setattr(alerts_mod.AlertRouter, "flush", lambda self, force=False: real_flush(self, True))
    assert svc.run() == 0
    replies = answers.getvalue().splitlines()
    assert replies[0] == "OK" and replies[1:5] == [svc._refusal().strip()] * 4 and replies[5:] == ["OK"] * 6, replies
    got = [json.loads(x)["line"] for x in out.read_text().splitlines()]
    assert got == [unknown.format(i, i, i).strip() for i in range(6)], got  # each once, in order
    assert svc.router.pending() == 0


def test_a_reload_uses_the_new_configurations_allowlist(tmp_path) -> None:
    """`alerts.allowlist` changed by a reload takes effect with that reload, not the next one."""
    from lograven.service import Service

    old = parse_config({"state_dir": str(tmp_path), "alerts": {"allowlist": str(tmp_path / "a.json")}})
    new = parse_config({"state_dir": str(tmp_path), "alerts": {"allowlist": str(tmp_path / "b.json")}})
    svc = Service(old)
    assert svc._allowlist().__self__.path == tmp_path / "a.json"
    assert svc._allowlist(new).__self__.path == tmp_path / "b.json"


def test_a_reload_keeps_the_allowlist_rules_while_the_file_does_not_parse(tmp_path, caplog) -> None:
    """From a review: a SIGHUP while allowlist.json had a syntax error (a hand edit) built a new Allowlist,
    which had no previous rules to keep: every rule was dropped ("keeping the previous rules (0 valid)")
    and the alerts they suppressed came. A reload keeps the allowlist of the same file; a copy with the old
    time stamp (`cp -p`) is still read (it had been compared by mtime alone)."""
    from lograven.alerts import Alert, DetectorHit
    from lograven.allowlist import Allowlist, new_rule
    from lograven.service import Service

    def alert(type_id: int) -> Alert:
        return Alert(id=f"a{type_id}", time="2026-12-07T00:00:00Z", host="h", file="/var/log/x.log", offset=0,
                     stream="/var/log/x.log", line="noise", type_id=type_id, template="noise",
                     detectors=[DetectorHit("sequence", 0.0003, 0.02, "p<0.02")])

    path = tmp_path / "allowlist.json"
    Allowlist(path).add(new_rule(type_id=7, detector="sequence", file=None, comment="known noise"))
    cfg = parse_config({"state_dir": str(tmp_path), "alerts": {"allowlist": str(path)}})
    svc = Service(cfg)
    matches = svc._allowlist()
    assert matches(alert(7))
    stamp = path.stat()
    path.write_text(path.read_text().rstrip().rstrip("}").rstrip().rstrip("]") + ",]}")  # a trailing comma
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 5 * 10**9))
    time.sleep(1.1)
    assert matches(alert(7))  # running: the rules in force are kept
    after_hup = svc._allowlist(cfg)  # SIGHUP
    time.sleep(1.1)
    assert after_hup(alert(7)), "a reload dropped the rules in force"
    said = [r.getMessage() for r in caplog.records if "keeping the previous rules" in r.getMessage()]
    assert said and all("(1 valid)" in m for m in said), said
    # the file mended by a copy that keeps the broken one's time stamp (cp -p): read, with its new rule
    other = tmp_path / "mended.json"
    Allowlist(other).add(new_rule(type_id=9, detector="sequence", file=None, comment="other noise"))
    broken = path.stat()
    os.replace(other, path)
    os.utime(path, ns=(broken.st_atime_ns, broken.st_mtime_ns))
    time.sleep(1.1)
    assert after_hup(alert(9)) and not after_hup(alert(7))


def test_series_of_files_no_longer_followed_are_removed(tmp_path, caplog) -> None:
    """Per-file series go with their file (forgotten an hour after it went, or dropped by a reload):
    globs over dated files do not pile up series, and a stale `file_readable 0` fires no alert."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from lograven.service import Service
    from lograven.tailer import FileStats

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    files = {"/var/log/app-1.log": FileStats(lines=3, offset=30, size=30), "/var/log/app-2.log": FileStats(lines=1, skipped_lines=1)}
    svc._sources = [SimpleNamespace(tailer=SimpleNamespace(stats=lambda: dict(files)))]
    svc._export_file_stats()
    text = generate_latest(svc.metrics.registry).decode()
    assert 'lograven_lines_read_total{file="/var/log/app-1.log"} 3.0' in text and "app-2.log" in text
    # each detector's series is there at 0 before its first anomaly: a rate or ratio over it is 0, not empty
    for detector in ("unknown_type", "sequence", "autoencoder"):
        assert f'lograven_anomalies_total{{detector="{detector}",file="/var/log/app-1.log"}} 0.0' in text, text
    assert 'lograven_unknown_type_lines_total{file="/var/log/app-1.log"} 0.0' in text
    assert 'lograven_lines_dropped_total{file="/var/log/app-1.log",reason="blank"} 0.0' in text
    del files["/var/log/app-1.log"]
    files["/var/log/app-2.log"].lines = 4
    svc._export_file_stats()
    text = generate_latest(svc.metrics.registry).decode()
    assert "app-1.log" not in text
    # lines read include the ones dropped unscored (own alerts), as lines_dropped_total's meaning says
    assert 'lograven_lines_read_total{file="/var/log/app-2.log"} 5.0' in text
    # and the journal says once that a file holds lograven's own alerts, with the fix (it had been the metric alone)
    said = [r.getMessage() for r in caplog.records if "holds lograven's own alerts" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("/var/log/app-2.log holds") and "rsyslog-lograven.conf" in said[0]
    files["/var/log/app-2.log"].skipped_lines = 3
    svc._export_file_stats()
    assert len([r for r in caplog.records if "holds lograven's own alerts" in r.getMessage()]) == 1
    # the drop-in's own file, matched by a glob: the fix is the glob (a review: it had said to install the drop-in)
    files["/var/log/lograven-alerts.log"] = FileStats(lines=0, skipped_lines=2)
    svc._export_file_stats()
    (said,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("/var/log/lograven-alerts.log")]
    assert "narrow sources[].paths so that they do not match it" in said and "install" not in said
    # a file whose counters did not change is not exported again: with 371 idle files that was most
    # of the daemon's idle CPU (3.8% of a core against 0.1% for one file)
    exported = []
    real = svc.metrics.set_file_position
    svc.metrics.set_file_position = lambda path, *a: exported.append(path) or real(path, *a)
    files["/var/log/app-3.log"] = FileStats(lines=7, offset=70, size=70)
    svc._export_file_stats()
    svc._export_file_stats()
    assert exported == ["/var/log/app-3.log"]
    files["/var/log/app-3.log"].size = 90  # grew: its lag is exported
    svc._export_file_stats()
    assert exported == ["/var/log/app-3.log"] * 2
    assert 'lograven_file_lag_bytes{file="/var/log/app-3.log"} 20.0' in generate_latest(svc.metrics.registry).decode()


def test_blank_lines_count_as_dropped_not_as_unknown_types(tmp_path) -> None:
    """The detector does not judge a blank line (type 0, no detector): it is counted in
    lines_dropped{reason="blank"}, not in unknown_type_lines, which would suggest a new message."""
    from lograven.service import Service

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    rec = Parser("syslog").parse("")
    none = Verdict(type_id=0, template=None, anomaly=False, detectors=[])
    svc._account([none, none, none], [("/f", 0, "/f", "", rec, None), ("/f", 1, "/f", "   ", rec, None),
                                      ("/f", 5, "/f", "Jun  9 06:06:20 web01 zz: never seen", rec, None)])  # fmt: skip
    m = svc.metrics
    assert m.registry.get_sample_value("lograven_lines_dropped_total", {"file": "/f", "reason": "blank"}) == 2
    assert m.registry.get_sample_value("lograven_unknown_type_lines_total", {"file": "/f"}) == 1


def _reloadable_service(tmp_path, model_path, **extra):
    """A Service with its config in a file (so `_do_reload` re-reads it), `model_path` activated and its
    router built: the state a SIGHUP finds. Returns (service, the config's dict, the config file)."""
    import yaml

    from lograven.bundle import load_bundle
    from lograven.service import Service

    base = {"state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
            "sources": [{"paths": [str(tmp_path / "a.log")]}],
            "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts.jsonl")}}, **extra}  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base))
    svc = Service(parse_config(base), str(path))
    svc._prepare_state_dir()
    svc._activate(load_bundle(model_path), model_path, svc.cfg)
    svc.router = build_router(svc.cfg, svc.metrics, suppress=svc._allowlist())
    return svc, base, path


def test_a_reload_applies_learn_schedule_and_names_restart_only_keys(tmp_path, bundle_dir, caplog) -> None:
    """A reload that turns `learn.schedule` on starts periodic relearning; one that also changes sources
    and `runtime.threads` still says that the threads wait for a restart."""
    import shutil

    import yaml

    from lograven.modelstore import ModelStore

    store = ModelStore(tmp_path / "state" / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    svc, base, path = _reloadable_service(tmp_path, store.current_path())
    svc._open_sources(svc.cfg, {})
    assert svc._relearn_buffer is None
    changed = {**base, "learn": {"schedule": "1h"}, "runtime": {"threads": 2},
               "sources": [{"paths": [str(tmp_path / "a.log")]}, {"paths": [str(tmp_path / "b.log")]}]}  # fmt: skip
    path.write_text(yaml.safe_dump(changed))
    said = []
    svc.notifier.ready = lambda status=None: said.append(status)
    with caplog.at_level("INFO"):
        assert svc._do_reload() is True
    # systemctl status says what the daemon does, as at its start, and when it reloaded (it had kept
    # "reloaded; model ..." for good)
    assert len(said) == 1 and said[0].startswith(f"watching 0 file(s), model {svc.bundle.version} (reloaded at "), said
    assert svc._relearn_buffer is not None and svc._next_relearn < float("inf")
    assert "runtime.threads changed, which takes effect only at a restart" in caplog.text
    path.write_text(yaml.safe_dump(base))
    assert svc._do_reload() is True and svc._relearn_buffer is None  # turned off again
    svc._stop_reader()
    for s in svc._sources:
        s.tailer.close()
    svc.router.close()
    svc._release_lock()


def test_a_slow_checkpoint_is_written_less_often(tmp_path, monkeypatch, caplog) -> None:
    """With very many streams a checkpoint takes long: it is then written at most 5% of the time instead
    of every checkpoint_interval_seconds, and the log says so once."""
    from lograven.service import Service

    svc = Service(parse_config({"state_dir": str(tmp_path), "runtime": {"checkpoint_interval_seconds": 10}}))
    svc._prepare_state_dir()
    clock = [1000.0]
    monkeypatch.setattr("lograven.service.time.monotonic", lambda: clock[0])

    def slow_save(state, tick=None):
        clock[0] += 2.0  # a 2 s write

    monkeypatch.setattr(svc.checkpointer, "save", slow_save)
    svc._dirty = True
    svc._checkpoint()
    assert "took 2.00 s: writing one every 40 s instead of every 10 s" in caplog.text
    svc._dirty = True
    assert not svc._checkpoint_due(clock[0] + 30) and svc._checkpoint_due(clock[0] + 39)
    svc._checkpoint()
    assert caplog.text.count("took 2.00 s") == 1  # said once
    monkeypatch.setattr(svc.checkpointer, "save", lambda state, tick=None: None)  # fast again
    svc._checkpoint()
    svc._dirty = True
    assert svc._checkpoint_due(clock[0] + 10)
    svc._release_lock()
    # a fraction is said as one (it said "every 1 s instead of every 1 s" for 1.4 s)
    short = Service(parse_config({"state_dir": str(tmp_path / "b"), "runtime": {"checkpoint_interval_seconds": 1}}))
    short._prepare_state_dir()

    def save_70ms(state, tick=None):
        clock[0] += 0.07

    monkeypatch.setattr(short.checkpointer, "save", save_70ms)
    short._dirty = True
    short._checkpoint()
    assert "took 0.07 s: writing one every 1.4 s instead of every 1 s" in caplog.text
    short._release_lock()


def test_a_checkpoint_of_many_streams_is_written_in_chunks_with_the_watchdog_pinged(tmp_path) -> None:
    """The state of many streams is serialised entry by entry and written in chunks of about 1 MB, the
    watchdog pinged (as due) after each: a checkpoint of a million streams took over WatchdogSec/2 as one
    block. The file reads back whole."""
    from types import SimpleNamespace

    import numpy as np

    from lograven.checkpoint import Checkpointer
    from lograven.sequence import StreamState
    from lograven.service import Service

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    svc._prepare_state_dir()
    rng = np.random.default_rng(0)
    states = {f"blk_{i}": StreamState(rng.normal(size=(2, 384)).astype(np.float32), i, 3) for i in range(3000)}
    svc.detector = SimpleNamespace(states=states)
    sizes = []
    ckpt = tmp_path / "checkpoint.json"

    def ping(force=False):
        tmp = [p for p in tmp_path.glob(".checkpoint.json.*.tmp")]
        sizes.append(tmp[0].stat().st_size if tmp else None)

    svc.notifier.watchdog = ping
    try:
        svc._checkpoint()
    finally:
        svc._release_lock()
    written = [x for x in sizes if x]
    assert len(written) >= 5 and written == sorted(written), sizes  # pinged while the file grew
    state = Checkpointer(ckpt).load()
    assert len(state["streams"]) == 3000 and state["streams"]["blk_7"]["seen"] == 7


def test_streams_without_a_line_for_stream_idle_seconds_are_forgotten(tmp_path, bundle_dir, caplog) -> None:
    """A stream per program (a container's tag) or per session that never comes back kept its GRU state in
    memory and in every checkpoint until max_streams (a soak: 2,471 streams and a 2 MB checkpoint rewritten
    every 10 s after 22 minutes). The checkpoint keeps when each stream's last line came, a restart
    restores it, and a stream quiet for runtime.stream_idle_seconds is forgotten."""
    from conftest import TRAIN_SEED, parse
    from lograven.checkpoint import Checkpointer
    from lograven.generator import LogGenerator

    import time

    svc, base, _ = _reloadable_service(tmp_path, bundle_dir, runtime={"stream_idle_seconds": 3600})
    det = svc.detector
    now = round(time.time())
    det.clock = lambda: now - 7200.0
    recs = [parse(x) for x in LogGenerator(seed=TRAIN_SEED).lines(40)]
    recs = [r for r in recs if det.types.classify(r.message)][:3]
    det.detect([("old", recs[0])])
    det.clock = lambda: now - 60.0
    det.detect([("new", recs[1]), ("new", recs[2])])
    svc._dirty = True
    assert svc._checkpoint()
    state = Checkpointer(tmp_path / "state" / "checkpoint.json").load()
    assert {k: v["at"] for k, v in state["streams"].items()} == {"old": now - 7200.0, "new": now - 60.0}
    svc._release_lock()
    # restarted a day later: the day stopped is not idleness (each stream keeps the idle time it had)
    again, _, _ = _reloadable_service(tmp_path, bundle_dir, runtime={"stream_idle_seconds": 3600})
    again.detector.clock = lambda: now + 86_400.0
    state = again.checkpointer.load()
    again._restore_streams(state)
    at = {k: s.at for k, s in again.detector.states.items()}
    assert at["old"] == pytest.approx(now + 86_400 - 7200, abs=5) and at["new"] == pytest.approx(now + 86_400 - 60, abs=5)
    # one damaged stream entry costs that stream alone (a robustness review: every stream had started fresh)
    damaged = {**state, "streams": {**state["streams"], "bad": {"h": "AAAA", "seen": 3}}}
    (tmp_path / "other").mkdir()
    other, _, _ = _reloadable_service(tmp_path / "other", bundle_dir)
    with caplog.at_level("WARNING"):
        other._restore_streams(damaged)
    assert set(other.detector.states) == {"old", "new"}
    assert "the GRU states of 1 of 3 stream(s) are unreadable (the first, 'bad': " in caplog.text
    assert other.metrics.registry.get_sample_value("lograven_checkpoint_corrupt_total") == 1
    other._release_lock()
    other.router.close()
    caplog.clear()
    again._forget_idle_streams(again._last_idle_check + 1)  # not yet a minute since the last check
    assert set(again.detector.states) == {"old", "new"}
    with caplog.at_level("INFO"):
        again._forget_idle_streams(again._last_idle_check + again.IDLE_CHECK_SECONDS)  # a check is due
    assert list(again.detector.states) == ["new"] and again._dirty
    assert "forgot the GRU state of 1 stream(s) without a line for 3600 s" in caplog.text
    again.cfg = parse_config({**base, "runtime": {"stream_idle_seconds": 0}})  # 0 keeps them
    again.detector.clock = lambda: 1e9
    again._forget_idle_streams(again._last_idle_check + again.IDLE_CHECK_SECONDS)
    assert list(again.detector.states) == ["new"]
    again._release_lock()


def test_the_daemon_lifts_its_open_files_limit_to_the_hard_one() -> None:
    """systemd starts services with 1024 open files (soft); a glob over many files needs more."""
    script = ("import resource\nfrom lograven.service import raise_open_files_limit\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))\n"
              "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4096", "(4096,", "4096)"]


def test_plugin_mode_does_not_notify_the_shippers_service_manager(tmp_path, monkeypatch) -> None:
    """`run --stdin` under rsyslog inherits rsyslog's NOTIFY_SOCKET: notifying it would only fill the
    journal with 'reception only permitted for main PID'. The daemon proper still notifies."""
    from lograven.service import Service

    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    cfg = parse_config({"state_dir": str(tmp_path)})
    assert not Service(cfg, stdin_mode=True).notifier.enabled
    assert Service(cfg).notifier.enabled


def _two_version_store(tmp_path, bundle_dir):
    """A model store holding the tiny bundle twice, v0001 (current) and v0002 (its id ending in -v2)."""
    import shutil

    from lograven.bundle import _manifest_digest
    from lograven.modelstore import ModelStore

    store = ModelStore(tmp_path / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    p2 = store.new_version_path()
    shutil.copytree(bundle_dir, p2, dirs_exist_ok=True)
    m = json.loads((p2 / "manifest.json").read_text())
    m["id"] += "-v2"
    m["manifest_sha256"] = _manifest_digest(m)
    (p2 / "manifest.json").write_text(json.dumps(m))
    store.set_current("v0001")
    return store


def test_plugin_mode_follows_the_current_model_version(tmp_path, bundle_dir, monkeypatch) -> None:
    """`run --stdin` with a model directory switches when `current` moves (`lograven learn`, rollback),
    as the daemon does, without a restart by rsyslog."""
    import io

    from lograven.service import Service

    store = _two_version_store(tmp_path, bundle_dir)
    out = tmp_path / "alerts.jsonl"
    cfg = parse_config({"model": str(tmp_path / "models"), "state_dir": str(tmp_path / "state"),
                        "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(out)}, "dedup_window_seconds": 0}})  # fmt: skip
    unknown = "Jun  9 07:00:00 web01 kernel: /dev/sdz9 out of diskspace marker-{}\n"
    svc: Service

    class Input:
        def __iter__(self):
            yield unknown.format(0).encode()
            store.set_current("v0002")
            svc._last_model_check = -1e9  # the 2 s check is due
            yield unknown.format(1).encode()
            yield unknown.format(2).encode()

    svc = Service(cfg, stdin_mode=True, stdin=Input(), stdout=io.StringIO())
    assert svc.run() == 0
    versions = [json.loads(ln)["model_version"] for ln in out.read_text().splitlines()]
    assert len(versions) == 3 and not versions[0].endswith("-v2") and versions[2].endswith("-v2"), versions


def test_following_current_does_not_reread_a_half_edited_config(tmp_path, bundle_dir, caplog) -> None:
    """A move of `current` switches the model only: the config file, which the admin may be editing,
    is read at their SIGHUP (before, a half-edited file made the new model 'refused' until `current`
    moved again, and a valid unfinished edit was applied without a SIGHUP)."""
    import io

    from lograven.config import load_config
    from lograven.service import Service

    store = _two_version_store(tmp_path, bundle_dir)
    out = tmp_path / "alerts.jsonl"
    good = json.dumps({"model": str(tmp_path / "models"), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                       "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(out)}, "dedup_window_seconds": 0}})  # fmt: skip
    cfgp = tmp_path / "config.yaml"
    cfgp.write_text(good)
    unknown = "Jun  9 07:00:00 web01 kernel: /dev/sdz9 out of diskspace marker-{}\n"
    svc: Service

    class Input:
        def __iter__(self):
            yield unknown.format(0).encode()
            cfgp.write_text(good[:-5] + "\n  # still editing\n")  # invalid YAML, not reloaded by anyone
            store.set_current("v0002")
            svc._last_model_check = -1e9  # the 2 s check is due
            yield unknown.format(1).encode()
            yield unknown.format(2).encode()

    svc = Service(load_config(cfgp), str(cfgp), stdin_mode=True, stdin=Input(), stdout=io.StringIO())
    with caplog.at_level("INFO", logger="lograven.service"):
        assert svc.run() == 0
    versions = [json.loads(ln)["model_version"] for ln in out.read_text().splitlines()]
    assert len(versions) == 3 and not versions[0].endswith("-v2") and versions[2].endswith("-v2"), versions
    assert not [r for r in caplog.records if "rejected" in r.getMessage() or "refused" in r.getMessage()]


def test_state_dir_symlinks_are_not_followed(tmp_path) -> None:
    """A user who can write state_dir must not make lograven truncate or overwrite another file through
    a symlink planted at `lock` or at the write probe."""
    from lograven.errors import LogravenError
    from lograven.service import Service

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / ".write-test").symlink_to(victim)
    (state / "lock").symlink_to(victim)
    svc = Service(parse_config({"state_dir": str(state)}))
    with pytest.raises(LogravenError, match="lock.*remove it"):
        svc._prepare_state_dir()
    assert victim.read_text() == "precious\n"
    (state / "lock").unlink()
    (state / "lock").mkdir()  # a directory there said "Is a directory" and no fix (bundle review, 2026-12-07)
    with pytest.raises(LogravenError, match=r"lock: cannot open the state directory's lock \(Is a directory\); remove it"):
        Service(parse_config({"state_dir": str(state)}))._prepare_state_dir()


def test_a_file_matched_by_two_sources_is_read_by_the_first_only(tmp_path) -> None:
    """Sources `a.log` and `*.log`: a.log is the first source's. The second does not follow it (it would
    score every line twice, and learn mode would learn it twice), and `check` says so."""
    from lograven.service import source_warnings
    from lograven.tailer import GlobPathProvider, Tailer

    (tmp_path / "a.log").write_text("x\n")
    (tmp_path / "b.log").write_text("y\n")
    cfg = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [str(tmp_path / "a.log")]},
                                                                  {"paths": [str(tmp_path / "*.log")]}]})  # fmt: skip
    t = Tailer([str(tmp_path / "*.log")], start_position="beginning", exclude_paths=[str(tmp_path / "a.log")],
               use_watchdog=False)  # fmt: skip
    try:
        assert [ln.path for ln in t.poll()] == [str(tmp_path / "b.log")]
        assert set(t.stats()) == {str(tmp_path / "b.log")}
    finally:
        t.close()
    assert set(GlobPathProvider([str(tmp_path / "*.log")], [str(tmp_path / "a.log")]).expand()[0]) == {str(tmp_path / "b.log")}
    (w,) = [w for w in source_warnings(cfg) if w.startswith("sources[1].paths")]
    assert "a.log also match an earlier source" in w


def test_a_later_glob_over_the_rotated_names_of_an_earlier_source_is_warned_about(tmp_path) -> None:
    """Sources `syslog` and `*`: syslog.1, rotated, is no longer the first source's file by name, so the
    second reads it from its start at every rotation (each line scored twice). Said by check and at start
    (review, 2026-12-07); `*.log` next to `syslog` is fine."""
    from lograven.service import source_warnings

    (tmp_path / "syslog").write_text("x\n")
    (tmp_path / "app.log").write_text("y\n")
    bad = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [str(tmp_path / "syslog")]},
                                                                  {"paths": [str(tmp_path / "*")]}]})  # fmt: skip
    (w,) = [w for w in source_warnings(bad) if "logrotate gives the old files" in w]
    assert w.startswith("sources[1].paths:") and str(tmp_path / "syslog") in w and "narrow the patterns" in w
    good = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [str(tmp_path / "syslog")]},
                                                                   {"paths": [str(tmp_path / "*.log")]}]})  # fmt: skip
    assert not [w for w in source_warnings(good) if "logrotate gives the old files" in w]
    # `*` does not reach into a subdirectory, as glob's does not
    (tmp_path / "nginx").mkdir()
    sub = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [str(tmp_path / "nginx" / "access.log")]},
                                                                  {"paths": [str(tmp_path / "*")]}]})  # fmt: skip
    assert not [w for w in source_warnings(sub) if "logrotate gives the old files" in w]


def test_a_file_named_like_a_glob_pattern_is_said_with_the_escape_that_names_it(tmp_path) -> None:
    """`app[prod].log` in sources is a glob pattern (`[prod]` one of p, r, o, d), which does not match
    the file of that very name: it had been followed silently not at all (a review), with check saying
    only that no file matches yet. Check and the start now say so with the escaped name, which works."""
    from lograven.service import source_warnings
    from lograven.tailer import Tailer

    log = tmp_path / "app[prod].log"
    log.write_text("first\n")
    cfg = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [str(log)]}]})
    (w,) = source_warnings(cfg)
    assert w.startswith("sources[0].paths:") and "read as a glob pattern" in w
    escaped = str(tmp_path / "app[[]prod].log")
    assert w.endswith(escaped)
    assert not source_warnings(parse_config({"state_dir": str(tmp_path), "sources": [{"paths": [escaped]}]}))
    with Tailer([escaped], use_watchdog=False, rotate_wait=0.0, start_position="beginning") as tailer:
        assert [x.data for x in tailer.poll()] == [b"first"] and list(tailer.stats()) == [str(log)]
        log.write_text("first\nsecond\n")
        assert [x.data for x in tailer.poll()] == [b"second"]


def test_stream_states_past_max_streams_are_counted_and_warned_about(tmp_path, bundle_dir, training_log, caplog) -> None:
    """runtime.max_streams caps the GRU states kept; the ones forgotten are counted on /metrics and
    warned about (at most hourly), so an admin learns why sessions start afresh."""
    import logging

    from lograven.bundle import load_bundle
    from lograven.service import Service

    cfg = parse_config({"state_dir": str(tmp_path), "runtime": {"max_streams": 3}})
    svc = Service(cfg)
    svc._sources = []
    svc._activate(load_bundle(bundle_dir), bundle_dir, cfg)
    parser = Parser("syslog")
    rec = parser.parse(training_log.read_text().splitlines()[0])  # a known type: it advances a GRU state
    svc.detector.detect([(f"blk_{i}", rec) for i in range(5)])
    with caplog.at_level(logging.WARNING, logger="lograven.service"):
        svc._export_file_stats()
        svc.detector.detect([("blk_9", rec)])
        svc._export_file_stats()  # within the hour: counted, not warned again
    reg = svc.metrics.registry
    assert reg.get_sample_value("lograven_streams") == 3
    assert reg.get_sample_value("lograven_streams_evicted_total") == 3
    warned = [r.getMessage() for r in caplog.records if "runtime.max_streams (3)" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("2 stream state(s) forgotten"), warned


def test_a_stream_end_anomaly_series_goes_with_its_file(tmp_path) -> None:
    """A stream end is counted under its last line's file; a file no longer followed (a stream restored
    from the checkpoint after its file went) loses that series at the next export, like every other."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from lograven.detector import StreamEnd
    from lograven.service import Service, _LastLine

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    svc._sources = []
    svc.detector = SimpleNamespace(end_streams=lambda keys: [StreamEnd(k, True, 1e-5, 9, 0.01, 3, 4) for k in keys],
                                   states={}, streams_evicted=0, settings=DetectorSettings())  # fmt: skip
    svc._end_alert = lambda e, last: None
    svc.router = SimpleNamespace(submit=lambda alerts: True)
    svc._stream_last["blk_1"] = _LastLine(0.0, "/var/log/gone.log", 10, "x", None, 3)
    svc._end_streams(["blk_1"], "idle")
    reg = svc.metrics.registry
    assert reg.get_sample_value("lograven_anomalies_total", {"file": "/var/log/gone.log", "detector": "sequence"}) == 1
    svc._export_file_stats()
    assert "gone.log" not in generate_latest(reg).decode()


def test_quiet_lines_for_relearning_are_bounded_in_lines_and_bytes() -> None:
    from lograven.service import QuietLines

    parser = Parser("syslog")
    q = QuietLines(max_lines=5, max_bytes=10_000)
    for i in range(8):
        q.append((parser, "/f", f"line {i}", "/f"))
    assert len(q) == 5 and [e[2] for e in q.take()] == [f"line {i}" for i in range(3, 8)] and len(q) == 0
    for i in range(10):  # 64 KiB lines: the byte budget keeps the newest that fit
        q.append((parser, "/f", f"{i}" + "x" * 4000, "/f"))
    assert len(q) == 2 and q.bytes <= 10_000 and [e[2][0] for e in q.take()] == ["8", "9"]
    q.append((parser, "/f", "y" * 50_000, "/f"))  # one line over the budget is still kept alone
    assert len(q) == 1


def test_a_relearning_run_still_going_at_the_next_schedule_is_said(tmp_path, caplog) -> None:
    import threading

    from lograven.service import Service

    svc = Service(parse_config({"state_dir": str(tmp_path), "learn": {"schedule": "10m", "min_lines": 1}}))
    svc._setup_relearning()
    hold = threading.Event()
    svc._relearn_thread = threading.Thread(target=hold.wait)
    svc._relearn_thread.start()
    svc._relearn_buffer.append((Parser("syslog"), "/f", "x", "/f"))
    try:
        with caplog.at_level("WARNING", logger="lograven.service"):
            svc._start_relearning()
    finally:
        hold.set()
    assert "the run started" in caplog.text and "is still going; this one is skipped" in caplog.text
    assert len(svc._relearn_buffer) == 1  # the quiet lines wait for the next run


def test_a_stop_just_after_learn_mode_saved_its_model_keeps_where_learning_stopped(tmp_path, bundle_dir, monkeypatch) -> None:
    """SIGTERM right after learn mode saved the model: the positions where learning stopped are
    checkpointed, so the next start (now with a model) goes on from there, not from the files' ends."""
    import shutil

    from lograven.checkpoint import Checkpointer
    from lograven.service import Service

    (tmp_path / "logs").mkdir()
    cfg = parse_config({"sources": [{"paths": [f"{tmp_path}/logs/*.log"]}], "state_dir": str(tmp_path / "state"),
                        "metrics": {"enabled": False}, "alerts": {"syslog": {"enabled": False},
                        "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    svc = Service(cfg)
    where = {"0": {f"{tmp_path}/logs/a.log": {"offset": 4096}}}

    def learned_then_stopped():
        shutil.copytree(bundle_dir, svc.store.new_version_path(), dirs_exist_ok=True)
        svc.store.set_current("v0001")
        svc._stop.set()  # the SIGTERM arrives now
        return where

    monkeypatch.setattr(svc, "_learn_mode", learned_then_stopped)
    assert svc.run() == 0
    state = Checkpointer(tmp_path / "state" / "checkpoint.json").load()
    assert state["positions"] == where


def test_a_reader_that_did_not_stop_in_time_never_reads_beside_its_successor(tmp_path, monkeypatch, caplog) -> None:
    """A read hung past the stop timeout (a dead NFS mount): the old reader must not go on queueing lines
    next to the new one (out of order, twice) once its read returns."""
    import threading
    from types import SimpleNamespace

    from lograven.service import Service
    from lograven.tailer import RawLine

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    monkeypatch.setattr(Service, "READER_JOIN_SECONDS", 0.2)
    hung, release = threading.Event(), threading.Event()
    calls = []

    def poll(n):
        calls.append(threading.current_thread().ident)
        if len(calls) == 1:
            hung.set()
            release.wait(10)  # the first read hangs
            return [RawLine("/f", "id", 0, 6, b"stale", False)]
        time.sleep(0.01)
        return []

    tailer = SimpleNamespace(poll=poll, wake=lambda: None, wait=lambda t: time.sleep(0.01))
    svc._sources = [SimpleNamespace(index=0, tailer=tailer)]
    svc._start_reader()
    assert hung.wait(5)
    with caplog.at_level("WARNING", logger="lograven.service"):
        svc._stop_reader()  # times out
    assert "did not stop within" in caplog.text
    svc._start_reader()  # the successor
    release.set()
    time.sleep(0.3)
    svc._stop_reader()
    assert svc._queue.qsize() == 0  # the stale read was not queued


def test_failed_alerts_of_an_optional_sink_are_retried_on_a_quiet_host(tmp_path) -> None:
    """The syslog sink (not required) fails for a burst; with no new alert afterwards the queued ones
    are still delivered once their back-off has passed (before, only a new alert triggered the retry)."""
    from lograven.alerts import Alert, AlertRouter, DetectorHit, SinkError
    from lograven.service import Service

    clock = [100.0]

    class Flaky:
        name, required = "syslog", False

        def __init__(self):
            self.fail, self.got = True, []

        def emit(self, alerts):
            if self.fail:
                raise SinkError("Resource temporarily unavailable")
            self.got.extend(alerts)

    sink = Flaky()
    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    svc._sources = []
    svc.router = AlertRouter([sink], clock=lambda: clock[0], dedup_window_seconds=0)
    alert = Alert("a1", "2026-11-03T12:00:00.000Z", "web1", "/f", 10, "/f", "x", -1, None,
                  [DetectorHit("unknown_type", 1.0, 0.0)], [], "m1")  # fmt: skip
    svc.router.submit([alert])
    assert svc.router.pending() == 1 and not sink.got
    sink.fail = False
    clock[0] += 60  # the back-off has passed; no new alert comes
    svc._housekeeping()
    assert [a.id for a in sink.got] == ["a1"] and svc.router.pending() == 0


def test_a_wrong_source_format_is_said_by_check_and_by_the_running_daemon(tmp_path, bundle_dir, training_log, caplog) -> None:
    """syslog lines under `format: iso`: every line would be an unknown type with its header as text.
    check (and the daemon's start) say so from the files' last lines; the daemon (here plugin mode, whose
    input check cannot see) says so once from the first lines it reads."""
    import io

    from lograven.service import FORMAT_SAMPLE_LINES, Service, source_warnings

    log = tmp_path / "messages"
    log.write_text(training_log.read_text())
    right = parse_config({"sources": [{"paths": [str(log)]}]})
    wrong = parse_config({"sources": [{"paths": [str(log)], "format": "iso"}]})
    assert not [w for w in source_warnings(right) if ".format:" in w]
    [said] = [w for w in source_warnings(wrong) if w.startswith("sources[0].format: ")]
    assert f"100 of the last 100 lines of {log} do not match format 'iso'" in said
    # a file an earlier source reads is judged by that source's format only
    first = parse_config({"sources": [{"paths": [str(log)]}, {"paths": [str(tmp_path / "*")], "format": "iso"}]})
    assert not [w for w in source_warnings(first) if ".format:" in w]

    lines = training_log.read_text().splitlines(keepends=True)[: FORMAT_SAMPLE_LINES + 20]
    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "sources": [{"paths": ["/dev/null"], "format": "iso"}],
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 0
    said = [r.getMessage() for r in caplog.records if "do not match format 'iso'" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("sources[0].format: 100 of the first 100 lines read (standard input)")


def test_a_regex_format_with_its_groups_in_the_wrong_places_is_said_by_check_and_by_the_daemon(tmp_path, bundle_dir, caplog) -> None:
    """Every line matches a pattern shifted by one field, so "do not match" never came; its timestamp group
    holding no timestamp tells it, in check (the files' last lines) and in the daemon (its first lines)."""
    import io

    from lograven.service import FORMAT_SAMPLE_LINES, Service, source_warnings

    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-12-07T10:00:{i % 60:02d} worker-{i % 3} job {i} done\n" for i in range(150)))
    shifted = r"regex:(?P<host>\S+) (?P<timestamp>\S+) (?P<message>.*)"
    right = r"regex:(?P<timestamp>\S+) (?P<host>\S+) (?P<message>.*)"
    [said] = [w for w in source_warnings(parse_config({"sources": [{"paths": [str(log)], "format": shifted}]}))
              if w.startswith("sources[0].format: ")]  # fmt: skip
    assert f"the last 100 lines of {log}: the timestamp group of format" in said, said
    assert "in 100 of 100 lines (e.g. 'worker-" in said
    assert not [w for w in source_warnings(parse_config({"sources": [{"paths": [str(log)], "format": right}]}))
                if ".format:" in w]  # fmt: skip

    lines = log.read_text().splitlines(keepends=True)[: FORMAT_SAMPLE_LINES + 20]
    for fmt, expected in ((shifted, 1), (right, 0)):
        cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                            "sources": [{"paths": ["/dev/null"], "format": fmt}],
                            "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
        svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
        caplog.clear()
        with caplog.at_level("WARNING", logger="lograven.service"):
            assert svc.run() == 0
        said = [r.getMessage() for r in caplog.records if "timestamp group" in r.getMessage()]
        assert len(said) == expected, said
        if expected:
            assert said[0].startswith("sources[0].format (standard input): the timestamp group") and \
                "set the format the input has and reload" in said[0], said


def test_a_switch_to_a_model_with_other_types_says_the_streams_start_afresh(tmp_path, bundle_dir, training_log, caplog) -> None:
    from pathlib import Path

    from lograven.bundle import load_bundle
    from lograven.service import Service

    default = Path(__file__).resolve().parents[1] / "models" / "default"
    if not (default / "manifest.json").exists():
        pytest.skip("models/default is missing")
    cfg = parse_config({"state_dir": str(tmp_path)})
    svc = Service(cfg)
    svc._activate(load_bundle(bundle_dir), bundle_dir, cfg)
    rec = Parser("syslog").parse(training_log.read_text().splitlines()[0])
    svc.detector.detect([("a", rec), ("b", rec)])
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._activate(load_bundle(default), default, cfg)  # e.g. a rollback to a model trained elsewhere
    assert "the GRU state of 2 stream(s) starts afresh" in caplog.text


def test_stopping_says_checkpoint_written_only_when_it_was(tmp_path, monkeypatch, caplog) -> None:
    from types import SimpleNamespace

    from lograven.errors import LogravenError
    from lograven.service import Service

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    svc._prepare_state_dir()
    svc.detector = SimpleNamespace(states={})

    def full(state, tick=None):
        raise LogravenError("cannot save the checkpoint: the disk is full")

    monkeypatch.setattr(svc.checkpointer, "save", full)
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._shutdown()
    assert "checkpoint not written" in caplog.text and "checkpoint written" not in caplog.text.replace("not written", "")
    svc2 = Service(parse_config({"state_dir": str(tmp_path / "b")}))
    svc2._prepare_state_dir()
    svc2.detector = SimpleNamespace(states={})
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.service"):
        svc2._shutdown()
    assert "stopping: checkpoint written (0 stream(s))" in caplog.text
    assert svc._stop_problems and not svc2._stop_problems


def test_run_exits_1_when_its_last_checkpoint_is_not_written(tmp_path, bundle_dir, monkeypatch, caplog) -> None:
    """A stop whose checkpoint failed (a full disk) exited 0: systemd showed a clean stop, and the next
    start re-read and re-alerted what the lost checkpoint covered. Now `run` exits 1 and says why."""
    from lograven import checkpoint
    from lograven.errors import LogravenError
    from lograven.service import Service

    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    lines = [b"Jun  9 07:00:00 web01 kernel: something new happened\n"] * 3

    def run(fail: bool) -> int:
        svc = Service(cfg, stdin_mode=True, stdin=iter(lines), stdout=io.StringIO())
        if fail:
            def full(self, state, tick=None):
                raise LogravenError("cannot save the checkpoint: the disk is full")

            monkeypatch.setattr(checkpoint.Checkpointer, "save", full)
        return svc.run()

    with caplog.at_level("INFO", logger="lograven.service"):
        assert run(fail=False) == 0
        assert "stopped with errors" not in caplog.text
        assert run(fail=True) == 1
    assert "stopped with errors: the last checkpoint was not written" in caplog.text


def test_a_reload_finds_the_running_model_damaged_on_disk(tmp_path, bundle_dir, caplog) -> None:
    """SIGHUP re-verifies an unchanged bundle: damage done since it was loaded was reported as a
    successful reload ("model ... loaded"), and only the next restart failed."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(bundle_dir, model)
    svc, _, _ = _reloadable_service(tmp_path, model, model=str(model))
    running = svc.bundle
    with caplog.at_level("INFO"):
        assert svc._do_reload() is True  # intact: reloaded, the same model, not "loaded" again
    assert svc.bundle is running and "reloaded: model" in caplog.text and "loaded from" not in caplog.text
    data = bytearray((model / "sequence.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model / "sequence.npz").write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert svc._do_reload() is False
    assert "reload rejected" in caplog.text and "the model on disk is damaged since it was loaded" in caplog.text
    assert "sequence.npz: checksum mismatch" in caplog.text and svc.bundle is running
    assert svc.metrics.registry.get_sample_value("lograven_config_last_reload_successful") == 0
    svc.router.close()


def test_source_warnings_name_directories_special_files_and_unreadable_files(tmp_path, monkeypatch) -> None:
    """`check` passed a source that is a directory ("no file matches ... yet", or nothing at all beside
    another file), /dev/null ("Debian 12 without rsyslog"), and a file the daemon cannot read."""
    from lograven import service
    from lograven.service import source_warnings

    (tmp_path / "logs").mkdir()
    (tmp_path / "a.log").write_text("Jun  9 06:06:20 web01 a: x\n")
    (tmp_path / "secret.log").write_text("Jun  9 06:06:20 web01 a: x\n")
    paths = [str(tmp_path / "logs"), str(tmp_path / "a.log")]
    cfg = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": paths}, {"paths": [str(tmp_path / "logs")]},
                                                                  {"paths": ["/dev/null"]},
                                                                  {"paths": [str(tmp_path / "secret.log")]}]})  # fmt: skip
    real_open = open

    def deny(path, *a, **k):  # what a 0600 root file does to the lograven user
        if str(path).endswith("secret.log"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(service, "open", deny, raising=False)
    warnings = source_warnings(cfg)
    by_source = {i: [w for w in warnings if w.startswith(f"sources[{i}].")] for i in range(4)}
    assert by_source[0] == [f"sources[0].paths: {tmp_path / 'logs'} is a directory: lograven reads files; give the files "
                            f"in it, e.g. {tmp_path / 'logs'}/*.log"]  # fmt: skip
    assert len(by_source[1]) == 1 and "is a directory" in by_source[1][0]  # not also "no file matches ... yet"
    assert len(by_source[2]) == 1 and "/dev/null is not a regular file" in by_source[2][0], by_source[2]
    assert len(by_source[3]) == 1 and "cannot read" in by_source[3][0] and "secret.log" in by_source[3][0]
    assert "setfacl" in by_source[3][0]


def test_a_model_of_mostly_rare_types_is_warned_about_once(tmp_path, bundle_dir, caplog) -> None:
    """Learn mode on a small history: most types were seen a few times, and their lines alert as rare
    types. The log said nothing; an admin saw a stream of `rare type` alerts. (The tiny test model,
    3,000 generated lines, is such a model; models/default, 100,000 lines, has no rare type.)"""
    from lograven.bundle import load_bundle
    from lograven.service import Service

    b = load_bundle(bundle_dir)
    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    with caplog.at_level("WARNING", logger="lograven.service"):
        svc._activate(b, bundle_dir, svc.cfg)
        svc._activate(b, bundle_dir, svc.cfg)  # the same model again (a reload): said once
    n_rare = int(svc.detector.rare_type.sum())
    assert n_rare >= len(b.types.types_) / 2
    said = f"saw {n_rare} of its {len(b.types.types_)} message types fewer than 5 times in training"
    assert caplog.text.count(said) == 1, caplog.text
    # another model of the kind (each learned version, a rollback): at info, not a warning again (day-one review:
    # the same warning 5 times in 10 minutes of `journalctl -p warning`)
    import copy

    other = copy.copy(b)
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._activate(other, bundle_dir, svc.cfg)
    assert [r.levelname for r in caplog.records if said in r.getMessage()] == ["INFO"], caplog.text
    caplog.clear()
    off = Service(parse_config({"state_dir": str(tmp_path), "detectors": {"sequence": {"rare_count": 0}}}))
    with caplog.at_level("WARNING", logger="lograven.service"):
        off._activate(b, bundle_dir, off.cfg)
    assert "fewer than" not in caplog.text  # the rule is off: nothing alerts as rare


def test_a_broken_current_is_said_once_while_the_model_runs_on(tmp_path, bundle_dir, caplog) -> None:
    """`current` pointed at a missing version while the daemon followed it: said (error, reload gauge 0,
    which fires LogravenReloadFailed) once, not every 2 s; repaired, the gauge is 1 again."""
    import shutil

    from lograven.bundle import load_bundle
    from lograven.modelstore import ModelStore
    from lograven.service import Service

    store = ModelStore(tmp_path / "state" / "models")
    shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    svc = Service(parse_config({"state_dir": str(tmp_path / "state"), "metrics": {"enabled": False}}))
    svc._prepare_state_dir()
    svc._activate(load_bundle(store.current_path()), store.current_path(), svc.cfg)
    gauge = "lograven_config_last_reload_successful"
    (store.root / "current").unlink()
    (store.root / "current").symlink_to("v0042")
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._follow_current_version(1.0)
        svc._follow_current_version(3.0)
    assert caplog.text.count("current version cannot be used") == 1 and "points to v0042" in caplog.text
    assert svc.metrics.registry.get_sample_value(gauge) == 0
    running = svc.bundle
    (store.root / "current").unlink()
    (store.root / "current").symlink_to("v0001")
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._follow_current_version(5.0)
    assert svc.metrics.registry.get_sample_value(gauge) == 1 and svc.bundle is running
    assert "current version is v0001 again" in caplog.text
    # `current` gone (versions left): said as a broken one, not silently ignored (a review)
    (store.root / "current").unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._follow_current_version(7.0)
    assert "current version cannot be used" in caplog.text and "but no `current` one" in caplog.text
    assert svc.metrics.registry.get_sample_value(gauge) == 0 and svc.bundle is running


def test_a_model_named_by_its_current_link_follows_a_switch(tmp_path, bundle_dir, caplog) -> None:
    """From a review: with `model: /var/lib/lograven/models/current` (which `check` accepts), a switch of
    `current` was never followed: the running path was compared resolved now, not as it was when loaded.
    The daemon also notes in its state_dir the version it runs, which `models prune` keeps."""
    import shutil

    from lograven.bundle import load_bundle
    from lograven.modelstore import ModelStore, running_version
    from lograven.service import Service

    store = ModelStore(tmp_path / "models")
    for _ in range(2):
        shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    cfg = parse_config({"state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "model": str(store.root / "current")})  # fmt: skip
    svc = Service(cfg)
    svc._prepare_state_dir()
    svc._activate(load_bundle(store.root / "current"), svc._model_location(cfg), cfg)
    assert running_version(store, svc.state_dir) == "v0001"
    first = svc.bundle
    store.set_current("v0002")
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._follow_current_version(10.0)
    assert svc.bundle is not first and "reloading the model" in caplog.text
    assert running_version(store, svc.state_dir) == "v0002"
    svc._release_lock()


def test_a_quiet_plugin_stops_and_checkpoints_without_waiting_for_a_line(tmp_path, bundle_dir) -> None:
    """`run --stdin` read its input in the main loop: on a quiet input, SIGTERM waited for the next line
    (a shipper that stops its plugin with a signal waited, then killed it), and the streams' GRU states
    were written only at exit. Now a stop is taken within a second, and the checkpoint is periodic."""
    import io
    import threading

    from lograven.service import Service

    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "runtime": {"checkpoint_interval_seconds": 1},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts.jsonl")}}})  # fmt: skip
    r, w = os.pipe()
    stdin = os.fdopen(r, "rb")
    from conftest import TRAIN_SEED

    from lograven.generator import LogGenerator

    known = LogGenerator(seed=TRAIN_SEED).lines(2)  # lines of known types: they advance the stream's GRU
    os.write(w, "".join(ln + "\n" for ln in known).encode())  # then nothing: the pipe stays open
    answers = io.StringIO()
    svc = Service(cfg, stdin_mode=True, stdin=stdin, stdout=answers)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(svc.run()))
    t.start()
    try:
        ckpt = tmp_path / "state" / "checkpoint.json"
        deadline = time.monotonic() + 30
        while not ckpt.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ckpt.exists(), "no periodic checkpoint while the input was quiet"
        assert answers.getvalue().splitlines() == ["OK", "OK", "OK"]
        assert json.loads(ckpt.read_text())["state"]["streams"], "the stream's GRU state is in the checkpoint"
        t0 = time.monotonic()
        svc._stop.set()  # what SIGTERM does
        t.join(timeout=10)
        assert not t.is_alive() and result == [0] and time.monotonic() - t0 < 5
    finally:
        svc._stop.set()
        os.close(w)
        t.join(timeout=10)


def test_a_refused_plugin_message_leaves_its_stream_as_before(tmp_path, bundle_dir, monkeypatch) -> None:
    """A message whose alert could not be delivered is answered with an error and sent again by rsyslog:
    its first scoring had already advanced the stream's GRU, so the resent message was judged after
    itself (a repeat the model may find improbable), and a periodic checkpoint could keep that state."""
    import io

    import numpy as np
    from conftest import TRAIN_SEED

    from lograven import alerts as alerts_mod
    from lograven.generator import LogGenerator
    from lograven.service import Service

    lines = [ln + "\n" for ln in LogGenerator(seed=TRAIN_SEED).lines(3)]
    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    real_submit = alerts_mod.AlertRouter.submit
    calls = []

    def submit(self, alerts, force=False):
        calls.append(1)
        return False if len(calls) == 2 else real_submit(self, alerts, force)  # the second message: not delivered

    monkeypatch.setattr(alerts_mod.AlertRouter, "submit", submit)
    resent = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in (lines[0], lines[1], lines[1], lines[2])],
                     stdout=io.StringIO())  # fmt: skip
    assert resent.run() == 0
    assert resent.stdout.getvalue().splitlines()[1:] == ["OK", resent._refusal().strip(), "OK", "OK"]
    monkeypatch.setattr(alerts_mod.AlertRouter, "submit", real_submit)
    once = Service(parse_config({**cfg.to_dict(), "state_dir": str(tmp_path / "state2")}), stdin_mode=True,
                   stdin=[ln.encode() for ln in lines], stdout=io.StringIO())  # fmt: skip
    assert once.run() == 0
    a, b = resent.detector.states["stdin"], once.detector.states["stdin"]
    assert (a.seen, a.last) == (b.seen, b.last) and np.allclose(a.h, b.h)


def test_an_alert_for_a_line_cut_at_max_line_bytes_says_so(tmp_path, bundle_dir) -> None:
    """A line longer than runtime.max_line_bytes is scored on its start; its alert showed that start as if
    it were the line. Now `line_truncated` (and `truncated` in the syslog form) say it is not whole."""
    import io

    from lograven.alerts import Alert
    from lograven.service import Service

    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "runtime": {"max_line_bytes": 1024}, "alerts": {"syslog": {"enabled": False}, "dedup_window_seconds": 0,
                                                                         "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    long = "Jun  9 07:00:00 web01 kernel: never seen " + "x" * 3000 + "\n"
    short = "Jun  9 07:00:01 web01 kernel: /dev/sdz9 out of diskspace\n"
    svc = Service(cfg, stdin_mode=True, stdin=[long.encode(), short.encode()], stdout=io.StringIO())
    assert svc.run() == 0
    got = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(a["offset"], a["line_truncated"], len(a["line"].encode()) <= 1024) for a in got] == [(0, True, True), (1, False, True)]
    assert json.loads(Alert.from_dict(got[0]).to_compact_json().split(" ", 0)[0])["truncated"] is True
    assert "truncated" not in json.loads(Alert.from_dict(got[1]).to_compact_json())


@contextlib.contextmanager
def _serving(cfg, bundle_dir, relearning: bool = False):
    """A Service on `cfg` with the model at `bundle_dir`, its alert router and its sources open (not its
    reader thread); closed afterwards."""
    from lograven.bundle import load_bundle

    svc = Service(cfg)
    svc._prepare_state_dir()
    svc._activate(load_bundle(bundle_dir), bundle_dir, cfg)
    svc.router = build_router(cfg, svc.metrics)
    if relearning:
        svc._setup_relearning()
    svc._open_sources(cfg, {})
    try:
        yield svc
    finally:
        for s in svc._sources:
            s.tailer.close()
        svc.router.close()
        svc._release_lock()


def test_a_tailed_line_cut_by_the_tailer_is_marked_in_its_alert(tmp_path, bundle_dir) -> None:
    """The tailer keeps the first max_line_bytes of a longer line and flags it: that flag reaches the alert."""
    from lograven.service import _Item
    from lograven.tailer import RawLine

    log = tmp_path / "a.log"
    log.write_text("")
    cfg = parse_config({"state_dir": str(tmp_path / "state"), "metrics": {"enabled": False}, "sources": [{"paths": [str(log)]}],
                        "runtime": {"max_line_bytes": 1024}, "alerts": {"syslog": {"enabled": False}, "dedup_window_seconds": 0,
                                                                         "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    with _serving(cfg, bundle_dir) as svc:
        kept = ("Jun  9 07:00:00 web01 kernel: never seen " + "x" * 2000).encode()[:1024]
        other = b"Jun  9 07:00:01 web01 kernel: /dev/sdz9 out of diskspace"
        svc._process([_Item(0, RawLine(str(log), "1:2:ab", 0, 5001, kept, True, ack_id="1:2#0")),
                      _Item(0, RawLine(str(log), "1:2:ab", 5001, 5001 + len(other) + 1, other, False, ack_id="1:2#0"))])  # fmt: skip
        svc.router.flush(force=True)
        got = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
        assert [(a["offset"], a["line_truncated"]) for a in got] == [(0, True), (5001, False)]


def test_an_unterminated_line_is_scored_after_runtime_unterminated_line_seconds_and_counted(tmp_path, bundle_dir) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    cfg = parse_config({"state_dir": str(tmp_path / "state"), "sources": [{"paths": [str(log)]}],
                        "metrics": {"enabled": False}, "runtime": {"unterminated_line_seconds": 2},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    with _serving(cfg, bundle_dir) as svc:
        tailer = svc._sources[0].tailer
        assert tailer.unterminated_after == 2
        clock = [100.0]
        tailer._clock = lambda: clock[0]
        with open(log, "ab") as f:
            f.write(b"Jun  9 07:00:00 web01 kernel: /dev/sdz9 out of diskspace")
        assert tailer.poll() == []
        clock[0] += 2
        (line,) = tailer.poll()
        assert line.data.endswith(b"out of diskspace")
        svc._export_file_stats()
        assert f'lograven_lines_unterminated_total{{file="{log}"}} 1.0' in svc.metrics.exposition().decode()


def test_blank_lines_are_not_kept_for_relearning(tmp_path, bundle_dir) -> None:
    """Periodic relearning learns the lines that raised no alert; a blank line is one, and teaches nothing
    (a soak's relearn learned a message type with an empty template from them). And a batch of very long
    lines gives the memory it took back to the system."""
    from conftest import TRAIN_SEED
    from lograven.generator import LogGenerator
    from lograven.service import _Item
    from lograven.tailer import RawLine

    log = tmp_path / "a.log"
    log.write_text("")
    cfg = parse_config({"state_dir": str(tmp_path / "state"), "metrics": {"enabled": False}, "sources": [{"paths": [str(log)]}],
                        "learn": {"schedule": "1h"},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    with _serving(cfg, bundle_dir, relearning=True) as svc:
        known = [x.encode() for x in LogGenerator(seed=TRAIN_SEED).lines(30)]
        lines = [b"", *known[:15], b"   ", *known[15:], b"\t"]
        off, batch = 0, []
        for data in lines:
            batch.append(_Item(0, RawLine(str(log), "1:2:ab", off, off + len(data) + 1, data, False, ack_id="1:2#0")))
            off += len(data) + 1
        trims = []
        import lograven.service as service_mod

        real_trim = service_mod.release_free_memory
        service_mod.release_free_memory = lambda: trims.append(1) or True
        try:
            svc._process(batch)
            kept = [text for _, _, text, _ in svc._relearn_buffer.take()]
            assert len(kept) >= 20 and all(text.strip() for text in kept)  # (the rest: lines that alerted)
            assert trims == []  # an ordinary batch keeps its memory
            # a batch of very long lines gives the heap it grew back (it stayed 250 MB above idle)
            long = (" ".join(f"w{i % 977}x" for i in range(12_000))).encode()[:65_000]
            svc._process([_Item(0, RawLine(str(log), "1:2:ab", off + i * 70_000, off + (i + 1) * 70_000, long, True, ack_id="1:2#0"))
                          for i in range(70)])  # fmt: skip
            assert trims == [1]
        finally:
            service_mod.release_free_memory = real_trim


def test_a_reload_keeps_restart_only_values_in_force_for_everything(tmp_path, bundle_dir, caplog) -> None:
    """A reload that changed state_dir said the old one stays in force, but the allowlist was then read
    from the new one (allowlisted alerts came back); and setting it back warned again."""
    import yaml

    svc, base, path = _reloadable_service(tmp_path, bundle_dir, model=str(bundle_dir))
    old_allowlist = svc.cfg.allowlist_path()
    path.write_text(yaml.safe_dump({**base, "state_dir": str(tmp_path / "elsewhere"), "runtime": {"threads": 2}}))
    with caplog.at_level("WARNING"):
        assert svc._do_reload() is True
    assert "state_dir, runtime.threads changed, which takes effect only at a restart" in caplog.text
    assert svc.cfg.allowlist_path() == old_allowlist and svc.cfg.effective_state_dir() == tmp_path / "state"
    assert svc.cfg.runtime.threads == 1
    caplog.clear()
    path.write_text(yaml.safe_dump(base))  # back to the values in force: nothing waits for a restart
    with caplog.at_level("WARNING"):
        assert svc._do_reload() is True
    assert "only at a restart" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        assert svc._do_reload() is True  # a plain SIGHUP: the same model
    assert "reloaded: model" in caplog.text and "across the model switch" not in caplog.text
    svc.router.close()
    svc._release_lock()


def test_a_reload_that_reopens_the_files_reads_no_line_twice_and_loses_no_count(tmp_path, bundle_dir, monkeypatch) -> None:
    """A reload changing `runtime` reopens the files. They were reopened at the acknowledged positions:
    with alerts.jsonl failing (a full disk), those stay behind, so every reload read and scored the
    lines since again (an anomaly alerted 4 times after 3 reloads, GRU states advanced twice). And
    lograven_lines_read_total lost what the closed tailers had counted since the last export."""
    import yaml

    from lograven.service import Service

    failing = _failing_jsonl(monkeypatch)
    log = tmp_path / "a.log"
    normal = (bundle_dir.parent / "messages").read_text().splitlines()[:100]
    log.write_text("\n".join(normal + ["Jun  9 07:00:00 web01 kernel: marker never seen before 0x1f"]) + "\n")
    svc, base, path = _reloadable_service(tmp_path, bundle_dir, model=str(bundle_dir))
    scored = []
    real_process = Service._process
    monkeypatch.setattr(Service, "_process", lambda self, batch: (scored.extend(batch), real_process(self, batch))[1])
    svc.cfg = replace_start(svc.cfg)
    svc._open_sources(svc.cfg, {})
    svc._start_reader()

    def work(until: int, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while len(scored) < until and time.monotonic() < deadline:
            if batch := svc._take_batch(256, 0.05, timeout=0.2):
                svc._process(batch)

    work(101)
    for ms in (30, 40, 50):  # three reloads that reopen the files, while the sink fails
        path.write_text(yaml.safe_dump({**base, "runtime": {"max_wait_ms": ms}, "sources": [{"paths": [str(log)], "start_position": "beginning"}]}))
        assert svc._do_reload() is True
        work(102, seconds=1.5)  # time to read again what it would
    assert len(scored) == 101, len(scored)  # every line once
    with log.open("a") as f:
        f.write("\n".join(normal[:20]) + "\n")
    work(121)
    failing["on"] = False
    assert svc.router.flush(force=True)
    svc._ack_pending()
    svc._export_file_stats()
    assert len(scored) == 121
    read = svc.metrics.registry.get_sample_value("lograven_lines_read_total", {"file": str(log)})
    assert read == 121, read
    got = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert sum("marker never seen before" in a["line"] for a in got) == 1
    positions = svc._sources[0].tailer.positions()
    assert positions[str(log)]["offset"] == log.stat().st_size  # acknowledged to the end, once delivered
    svc._stop_reader()
    for s in svc._sources:
        s.tailer.close()
    svc.router.close()
    svc._release_lock()


def _paused_service(tmp_path, bundle_dir, monkeypatch, lines: int, batch_size: int, queue_size: int | None = None):
    """A service reading `lines` distinct never-seen messages while alerts.jsonl fails (a full disk), with a
    retry queue of 20 alerts; returns (service, the failing switch, the log, the alerts file)."""
    failing = _failing_jsonl(monkeypatch)
    log = tmp_path / "a.log"
    log.write_text("".join(f"Jun  9 07:00:00 web01 kernel: marker-{i} never seen before {'x' * (i % 7)}\n"
                           for i in range(lines)))
    svc, _, _ = _reloadable_service(tmp_path, bundle_dir, model=str(bundle_dir),
                                    alerts={"syslog": {"enabled": False}, "dedup_window_seconds": 0, "max_per_minute": 0,
                                            "jsonl": {"path": str(tmp_path / "alerts.jsonl")}},
                                    runtime={"batch_size": batch_size, "queue_size": queue_size or batch_size})  # fmt: skip
    svc.router.retry_limit = 20
    svc.cfg = replace_start(svc.cfg)
    svc._open_sources(svc.cfg, {})
    svc._start_reader()
    return svc, failing, log, tmp_path / "alerts.jsonl"


def _close_service(svc) -> None:
    """Stop what a test's service opened: its reader, tailers, alert sinks and state_dir lock."""
    svc._stop_reader()
    for src in svc._sources:
        src.tailer.close()
    svc.router.close()
    svc._release_lock()


def _markers(alerts_file) -> list[int]:
    import re

    return sorted(int(m) for m in re.findall(r"marker-(\d+)", alerts_file.read_text() if alerts_file.exists() else ""))


def test_a_required_sink_whose_retry_queue_fills_pauses_reading_and_loses_no_alert(tmp_path, bundle_dir, monkeypatch,
                                                                                  caplog) -> None:
    """From a review: while alerts.jsonl could not be written, more alerts than its retry queue holds came;
    the oldest were dropped, and once the disk had room the checkpoint moved past their lines: lost for good,
    although docs/alerts.md promises at-least-once. Now reading pauses while a required sink's queue is half
    full (the lines wait in the file), and resumes when it delivers: every alert arrives, none dropped."""
    caplog.set_level("INFO")
    svc, failing, log, alerts_file = _paused_service(tmp_path, bundle_dir, monkeypatch, lines=60, batch_size=4)
    loop = threading.Thread(target=svc._loop, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while svc.router.backlogged() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.router.backlogged() == "jsonl"
        time.sleep(1.0)
        assert 10 <= svc.router.pending() < 20  # paused: no more lines scored, nothing dropped
        assert any("reading is paused until it delivers" in r.getMessage() for r in caplog.records)
        failing["on"] = False
        deadline = time.monotonic() + 60
        while len(_markers(alerts_file)) < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        svc._stop.set()
        loop.join(30)
    assert _markers(alerts_file) == list(range(60))
    assert not svc.router.lost_required
    assert svc.metrics.registry.get_sample_value("lograven_alerts_dropped_total", {"sink": "jsonl"}) in (None, 0.0)
    assert svc._sources[0].tailer.positions()[str(log)]["offset"] == log.stat().st_size
    assert any("reading resumes" in r.getMessage() for r in caplog.records)
    _close_service(svc)


def test_alerts_a_required_sink_dropped_keep_their_lines_unacknowledged(tmp_path, bundle_dir, monkeypatch,
                                                                         caplog) -> None:
    """When a required sink's retry queue overflows all the same (one batch brought more alerts than it
    holds), the dropped alerts' lines are not acknowledged when the sink recovers: the checkpoint stays,
    and a restart reads them again (the log says so). They had been acknowledged: their alerts were lost."""
    svc, failing, log, alerts_file = _paused_service(tmp_path, bundle_dir, monkeypatch, lines=30, batch_size=64)
    deadline = time.monotonic() + 20
    scored = 0
    while scored < 30 and time.monotonic() < deadline:
        if batch := svc._take_batch(64, 0.05, timeout=0.2):
            svc._process(batch)
            scored += len(batch)
    assert scored == 30 and svc.router.lost_required
    said = [r.getMessage() for r in caplog.records if "retry queue is full" in r.getMessage()]
    assert said and "the restart reads those alerts' lines again" in said[0]
    failing["on"] = False
    assert svc.router.flush(force=True)
    svc._ack_pending()
    assert _markers(alerts_file) == list(range(10, 30))  # the ten oldest were dropped
    assert svc._sources[0].tailer.positions()[str(log)]["offset"] == 0  # read again at the next start
    _close_service(svc)


def test_a_line_that_cannot_be_scored_is_skipped_said_and_counted_not_fatal(tmp_path, bundle_dir, monkeypatch,
                                                                           caplog) -> None:
    """From a review: an exception while scoring one line (a bug, or a model that passed its checks and
    fails on that line) stopped the daemon, and systemd's restart read the line again: a crash loop, and no
    monitoring. The batch is scored again line by line; the line that raises is skipped with its traceback,
    counted (lines_dropped{reason="error"}) and acknowledged; the lines around it are scored. In plugin
    mode it is taken (OK), so rsyslog does not send it again and again."""
    import io

    from lograven.detector import Detector
    from lograven.service import Service

    real_detect = Detector.detect

    def detect(self, items):
        if any("poison" in rec.message for _, rec in items):
            raise RuntimeError("a bug met on this line")
        return real_detect(self, items)

    monkeypatch.setattr(Detector, "detect", detect)
    log = tmp_path / "a.log"
    lines = [f"Jun  9 07:00:0{i} web01 kernel: marker-{i} never seen before" for i in range(3)]
    lines.insert(1, "Jun  9 07:00:09 web01 kernel: poison line")
    log.write_text("\n".join(lines) + "\n")
    svc, _, _ = _reloadable_service(tmp_path, bundle_dir, model=str(bundle_dir),
                                    alerts={"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts.jsonl")}})  # fmt: skip
    svc.cfg = replace_start(svc.cfg)
    svc._open_sources(svc.cfg, {})
    batch = svc._sources[0].tailer.poll()
    from lograven.service import _Item

    svc._process_guarded([_Item(0, raw) for raw in batch])
    assert _markers(tmp_path / "alerts.jsonl") == [0, 1, 2]
    dropped = svc.metrics.registry.get_sample_value("lograven_lines_dropped_total", {"file": str(log), "reason": "error"})
    assert dropped == 1.0
    said = [r for r in caplog.records if "cannot score the line at byte" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info and f"byte {len(lines[0]) + 1} of {log}" in said[0].getMessage()
    assert svc.router.flush(force=True)
    svc._ack_pending()
    assert svc._sources[0].tailer.positions()[str(log)]["offset"] == log.stat().st_size
    _close_service(svc)
    # plugin mode: OK for each message, the poison one included
    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state2"), "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts2.jsonl")}}})  # fmt: skip
    quiet = Service(cfg, stdin_mode=True, stdin=iter([]), stdout=io.StringIO())
    assert quiet.run() == 0  # the series is there at 0 before any failure (an increase() rule sees the first)
    assert quiet.metrics.registry.get_sample_value("lograven_lines_dropped_total", {"file": "stdin", "reason": "error"}) == 0
    answers = io.StringIO()
    plugin = Service(cfg, stdin_mode=True, stdin=iter([(x + "\n").encode() for x in lines]), stdout=answers)
    assert plugin.run() == 0
    assert answers.getvalue().splitlines() == ["OK"] * 5
    assert _markers(tmp_path / "alerts2.jsonl") == [0, 1, 2]
    assert plugin.metrics.registry.get_sample_value("lograven_lines_dropped_total",
                                                    {"file": "stdin", "reason": "error"}) == 1.0
    # a failure after scoring (building the alert) is taken as well, and the stream is as before the message
    monkeypatch.setattr(Detector, "detect", real_detect)
    real_account = Service._account

    def account(self, verdicts, meta):
        if any("poison" in m[3] for m in meta):
            raise RuntimeError("a bug met while building the alert")
        return real_account(self, verdicts, meta)

    monkeypatch.setattr(Service, "_account", account)
    answers = io.StringIO()
    cfg3 = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state3"), "metrics": {"enabled": False},
                         "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts3.jsonl")}}})  # fmt: skip
    plugin = Service(cfg3, stdin_mode=True, stdin=iter([(x + "\n").encode() for x in lines]), stdout=answers)
    assert plugin.run() == 0
    assert answers.getvalue().splitlines() == ["OK"] * 5
    assert _markers(tmp_path / "alerts3.jsonl") == [0, 1, 2]


def test_a_failure_after_scoring_finishes_the_other_lines_without_scoring_them_again(tmp_path, bundle_dir, monkeypatch,
                                                                                    caplog) -> None:
    """From a review of the guard: a line that raised while its alert was built made the whole batch be
    scored again line by line, so every stream's GRU advanced twice. The lines scored are now finished one
    by one with their verdicts, counted once; and when every line fails, the log says how many in a row."""
    from lograven.service import Service, _Item

    real_account = Service._account

    def account(self, verdicts, meta):
        if any("poison" in m[3] for m in meta):
            raise RuntimeError("a bug met while building the alert")
        return real_account(self, verdicts, meta)

    monkeypatch.setattr(Service, "_account", account)
    normal = (bundle_dir.parent / "messages").read_text().splitlines()[:40]
    log = tmp_path / "a.log"
    log.write_text("\n".join(normal[:20] + ["Jun  9 07:00:09 web01 kernel: poison line"] + normal[20:]) + "\n")
    svc, _, _ = _reloadable_service(tmp_path, bundle_dir, model=str(bundle_dir),
                                    alerts={"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts.jsonl")}})  # fmt: skip
    svc.cfg = replace_start(svc.cfg)
    svc._open_sources(svc.cfg, {})
    batch = [_Item(0, raw) for raw in svc._sources[0].tailer.poll()]
    assert len(batch) == 41
    svc._process_guarded(batch)
    reference = Service(svc.cfg)  # the same lines scored once, without the poison line
    reference._activate(svc.bundle, bundle_dir, svc.cfg)
    from lograven.parsing import Parser
    from lograven.service import StreamKey

    key, parser = StreamKey(svc.cfg.sources[0].stream), Parser(svc.cfg.sources[0].format)
    ref_items = [(key.key(str(log), parser.parse(t), t), parser.parse(t)) for t in normal]
    judged = sum(v.sequence_p is not None for v in reference.detector.detect(ref_items))
    (stream,) = svc.detector.states
    assert svc.detector.states[stream].seen == reference.detector.states[stream].seen  # not scored twice
    assert svc.metrics.registry.get_sample_value("lograven_sequence_probability_count") == judged  # counted once
    assert svc.metrics.registry.get_sample_value("lograven_lines_dropped_total", {"file": str(log), "reason": "error"}) == 1
    assert svc.router.flush(force=True)
    svc._ack_pending()
    assert svc._sources[0].tailer.positions()[str(log)]["offset"] == log.stat().st_size  # past the poison line
    # every line failing: said as such (not a stop: a burst of crafted lines would stop it at every start)
    svc._error_said_at = -1e9
    caplog.clear()
    with log.open("a") as f:
        f.write("".join(f"Jun  9 07:01:0{i} web01 kernel: poison {i}\n" for i in range(4)))
    svc._process_guarded([_Item(0, raw) for raw in svc._sources[0].tailer.poll()])
    said = [r.getMessage() for r in caplog.records if "cannot score" in r.getMessage()]
    assert len(said) == 1 and "lines in a row have failed" not in said[0]  # the first of them
    svc._error_said_at = -1e9
    with log.open("a") as f:
        f.write("Jun  9 07:02:00 web01 kernel: poison again\n")
    svc._process_guarded([_Item(0, raw) for raw in svc._sources[0].tailer.poll()])
    assert "5 lines in a row have failed" in caplog.records[-1].getMessage()
    assert svc.router.flush(force=True)
    svc._ack_pending()
    assert svc._sources[0].tailer.positions()[str(log)]["offset"] == log.stat().st_size
    _close_service(svc)


def test_a_reload_or_stop_while_paused_leaves_the_lines_read_unscored(tmp_path, bundle_dir, monkeypatch, caplog) -> None:
    """From a review: a reload while reading was paused (a required sink's queue half full) scored every
    line the reader had queued, so the sink's queue overflowed and alerts were dropped. The lines are left
    for the reopened files (and a restart) to read again."""
    caplog.set_level("INFO")
    svc, failing, log, alerts_file = _paused_service(tmp_path, bundle_dir, monkeypatch, lines=60, batch_size=4,
                                                     queue_size=20)
    deadline = time.monotonic() + 20
    while svc.router.backlogged(4) is None and time.monotonic() < deadline:
        if batch := svc._take_batch(4, 0.05, timeout=0.2):
            svc._process_guarded(batch)
    assert svc.router.backlogged(4) == "jsonl"
    while svc._queue.qsize() < 20 and time.monotonic() < deadline:  # the reader fills its queue meanwhile
        time.sleep(0.05)
    svc._stop_reader()
    assert svc._queue.qsize() > 0
    svc._drain_queue_into_detector()
    assert not svc.router.lost_required and svc.router.pending() < 20
    assert any("left unscored while alert sink jsonl delivers" in r.getMessage() for r in caplog.records)
    failing["on"] = False
    assert svc.router.flush(force=True)
    svc._ack_pending()
    scored = _markers(alerts_file)
    assert scored == list(range(len(scored)))  # the first lines, each once
    saved = svc._sources[0].tailer.positions()
    offset = saved[str(log)]["offset"]
    svc._sources[0].tailer.close()
    from lograven.tailer import Tailer

    with Tailer([str(log)], positions=json.loads(json.dumps(saved)), use_watchdog=False) as t:  # a restart
        again = [r.data.decode() for r in t.poll()]
    assert again and f"marker-{len(scored)} " in again[0] and offset < log.stat().st_size
    svc.router.close()
    svc._release_lock()


def test_turning_a_failing_required_sink_off_does_not_freeze_the_checkpoint(caplog) -> None:
    """From a review: a reload that turned the failing jsonl sink off dropped its queue (said) and set
    lost_required, so the checkpoint never advanced again in that process. A sink removed on purpose is
    no loss to read again for."""
    from lograven.alerts import AlertRouter, SinkError

    class Sink:
        def __init__(self, name, required, fail):
            self.name, self.required, self.fail, self.got = name, required, fail, []

        def emit(self, batch):
            if self.fail:
                raise SinkError("No space left on device")
            self.got.extend(batch)

        def close(self):
            pass

    from lograven.alerts import Alert, DetectorHit

    def alert(i):
        return Alert(id=f"a{i}", time="t", host="h", file="/f", offset=i, stream="s", line=f"x{i}", type_id=-1,
                     template=None, detectors=[DetectorHit("unknown_type", 1.0, 0.0)])

    old = AlertRouter([Sink("jsonl", True, True)], dedup_window_seconds=0, max_per_minute=0)
    assert old.submit([alert(1), alert(2)]) is False
    new = AlertRouter([Sink("stdout", True, False)], dedup_window_seconds=0, max_per_minute=0)
    new.take_over(old)
    assert not new.lost_required and new.durable()
    assert "no longer configured: 2 undelivered alert(s)" in caplog.text


def replace_start(cfg):
    """The config with its sources read from the start of the files (they exist before it opens them)."""
    from dataclasses import replace

    return replace(cfg, sources=tuple(replace(s, start_position="beginning") for s in cfg.sources))


def test_a_failing_checkpoint_is_said_at_once_then_every_10_minutes(tmp_path, monkeypatch, caplog) -> None:
    """A full disk logged "checkpoint not written" at ERROR every 10 seconds, for as long as it lasted."""
    from types import SimpleNamespace

    from lograven.errors import LogravenError
    from lograven.service import Service

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    svc._prepare_state_dir()
    svc.detector = SimpleNamespace(states={})
    clock = [1000.0]
    monkeypatch.setattr("lograven.service.time.monotonic", lambda: clock[0])
    real_save, full = svc.checkpointer.save, {"on": True}

    def save(state, tick=None):
        if full["on"]:
            raise LogravenError("cannot save the checkpoint: the disk is full")
        return real_save(state, tick=tick)

    monkeypatch.setattr(svc.checkpointer, "save", save)
    with caplog.at_level("INFO", logger="lograven.service"):
        svc._dirty = True
        for _ in range(30):  # 5 minutes of a checkpoint every 10 s
            # tried again at each interval without a new line: on a quiet host the failed write was tried
            # only when a line came, so a crash meanwhile replayed lines already alerted (review, 2026-12-07)
            assert svc._checkpoint() is False
            assert not svc._checkpoint_due(clock[0] + 9) and svc._checkpoint_due(clock[0] + 10)
            clock[0] += 10
        assert [r.levelname for r in caplog.records if "checkpoint not written" in r.getMessage()] == ["ERROR"]
        clock[0] += 300
        svc._checkpoint()
        again = [r.getMessage() for r in caplog.records if "checkpoint not written" in r.getMessage()]
        assert len(again) == 2 and "31 failures in a row" in again[1]
        full["on"] = False
        assert svc._checkpoint() is True
        assert not svc._checkpoint_due(clock[0] + 3600)  # written: nothing new to write
    assert "checkpoint written again, after 31 failure(s)" in caplog.text
    assert svc.metrics.registry.get_sample_value("lograven_checkpoint_write_failures_total") == 31
    svc._release_lock()


def test_a_glob_over_compressed_rotated_logs_is_said_as_such(tmp_path, training_log) -> None:
    """`/var/log/app/*` also matches app.log.2.gz: check said its lines "do not match format", as if the
    format were wrong; it is a compressed file, which lograven does not read."""
    import bz2
    import gzip

    from lograven.service import source_warnings

    (tmp_path / "app.log").write_text(training_log.read_text())
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(training_log.read_bytes()))
    (tmp_path / "app.log.3.bz2").write_bytes(bz2.compress(training_log.read_bytes()))
    warnings = source_warnings(parse_config({"sources": [{"paths": [str(tmp_path / "*")]}]}))
    [said] = [w for w in warnings if "compressed" in w]
    assert said.startswith(f"sources[0].paths: {tmp_path / 'app.log.2.gz'}, {tmp_path / 'app.log.3.bz2'} are compressed files")
    assert "does not read them" in said
    assert not [w for w in warnings if ".format:" in w]  # the text file has the right format
    assert not source_warnings(parse_config({"sources": [{"paths": [str(tmp_path / "*.log")]}]}))


def _plugin_cfg(tmp_path, bundle_dir, **extra):
    base = {"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
            "sources": [{"paths": ["/dev/null"]}],
            "alerts": {"syslog": {"enabled": False, "tag": "lograven-omprog"}, "jsonl": {"path": str(tmp_path / "a.jsonl")},
                       "dedup_window_seconds": 0}}  # fmt: skip
    base.update(extra)
    return parse_config(base)


def test_plugin_skips_its_own_alerts_fed_back_by_the_shipper(tmp_path, bundle_dir, training_log, caplog) -> None:
    """Behind rsyslog with a changed alerts.syslog.tag, the documented guard (`$programname != "lograven"`)
    let the plugin's own alerts back in: each alert alerted again (60 in 20 s, up to the rate limit,
    which then held back real alerts). The daemon skipped them; the plugin now does too, with a warning
    that names the fix, and still answers OK for each."""
    cfg = _plugin_cfg(tmp_path, bundle_dir)
    normal = training_log.read_text().splitlines()[:5]
    own = 'Dec  6 15:00:00 web01 lograven-omprog[4242]: @cee: {"id": "1m95zw28x1s", "line": "Dec  6 kernel: disk full"}'
    lines = [*normal, own, own, normal[0]]
    svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 0
    assert svc.stdout.getvalue().splitlines() == ["OK"] * (len(lines) + 1)
    alerted = [json.loads(x)["line"] for x in (tmp_path / "a.jsonl").read_text().splitlines()] if (tmp_path / "a.jsonl").exists() else []
    assert not [x for x in alerted if "@cee:" in x]
    said = [r.getMessage() for r in caplog.records if "own alerts" in r.getMessage()]
    assert len(said) == 1 and "lograven-omprog" in said[0]
    assert svc.detector.states["stdin"].seen == len(normal) + 1  # the alerts never advanced the stream


def test_a_second_plugin_on_one_state_dir_is_told_why(tmp_path, bundle_dir, training_log, caplog) -> None:
    """rsyslog ran two plugin instances on one stream (a second worker of the main queue): each saw part of
    the stream, with hundreds of false sequence alerts and one checkpoint overwriting the other, without a
    word. The second one now says why and how to give the action one worker; it is not refused (rsyslog
    would restart a refused plugin for ever). Which lograven holds the directory (plugin or daemon) is
    said, and a lock file the plugin cannot open (left by root) does not stop it."""
    import fcntl

    cfg = _plugin_cfg(tmp_path, bundle_dir)
    state = tmp_path / "state"
    state.mkdir()
    lines = training_log.read_text().splitlines()[:3]
    for kind, needle in (("plugin", "in use by another lograven plugin (pid 4242)"),
                         ("daemon", "in use by the lograven daemon (pid 4242)")):
        holder = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        # the holder's checkpoint: a daemon's file positions were replaced by the plugin's empty ones, and
        # the daemon, restarted, began at its files' ends (review, 2026-12-07)
        from lograven.checkpoint import Checkpointer

        daemons = {"0": {"/var/log/x.log": {"file_id": "1:2:00", "offset": 7}}}  # a plugin's has no file positions
        Checkpointer(state / "checkpoint.json").save(
            {"model": None, "positions": daemons if kind == "daemon" else {}, "streams": {}})
        theirs = (state / "checkpoint.json").read_text()
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)
            os.ftruncate(holder, 0)
            os.pwrite(holder, f"4242 {kind}\n".encode(), 0)
            svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
            caplog.clear()
            with caplog.at_level("WARNING", logger="lograven.service"):
                assert svc.run() == 0
            assert svc.stdout.getvalue().splitlines() == ["OK"] * 4
            said = [r.getMessage() for r in caplog.records if needle in r.getMessage()]
            assert len(said) == 1, caplog.text
            assert ('queue.workerThreads=\"1\"' in said[0]) == (kind == "plugin")
            assert ((state / "checkpoint.json").read_text() == theirs) == (kind == "daemon")
        finally:
            os.close(holder)
    # nor does it load the daemon's checkpoint: load() removed the daemon's checkpoint being written (an
    # unfinished temp file) and set an unusable one aside (review, 2026-12-07)
    (state / "checkpoint.json").write_text("{damaged")
    (state / ".checkpoint.json.99.1.tmp").write_text("being written")
    holder = os.open(state / "lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        os.ftruncate(holder, 0)
        os.pwrite(holder, b"4242 daemon\n", 0)
        svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
        caplog.clear()
        with caplog.at_level("INFO", logger="lograven.service"):
            assert svc.run() == 0
    finally:
        os.close(holder)
    assert (state / ".checkpoint.json.99.1.tmp").read_text() == "being written"
    assert (state / "checkpoint.json").read_text() == "{damaged"
    assert "stopping: no checkpoint written (the state_dir is the daemon's)" in caplog.text
    for leftover in state.glob("*checkpoint.json*"):
        leftover.unlink()
    # alone, it holds the lock while it runs, so that a second instance is told
    held = []

    def input_lines():
        probe = os.open(state / "lock", os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(probe)
        yield lines[0].encode()

    svc = Service(cfg, stdin_mode=True, stdin=input_lines(), stdout=io.StringIO())
    caplog.clear()
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 0
    assert held == [True] and "in use by" not in caplog.text
    assert (state / "lock").read_text().split()[1:] == ["plugin"]
    # a daemon refused by a plugin's lock says so
    holder = os.open(state / "lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        daemon = Service(parse_config({**cfg.to_dict(), "sources": [{"paths": [str(tmp_path / "x.log")]}]}))
        with pytest.raises(LogravenError, match=r"in use by a lograven plugin \(pid \d+\) that a log shipper runs"):
            daemon._prepare_state_dir()
    finally:
        os.close(holder)


def test_plugin_says_learn_schedule_does_not_apply_and_a_failed_checkpoint_reads_nothing_again(
        tmp_path, bundle_dir, training_log, caplog, monkeypatch) -> None:
    cfg = _plugin_cfg(tmp_path, bundle_dir, learn={"schedule": "1h"})
    svc = Service(cfg, stdin_mode=True, stdin=[training_log.read_text().splitlines()[0].encode()], stdout=io.StringIO())
    from lograven import checkpoint as checkpoint_mod

    def full(self, state, **kwargs):
        raise LogravenError(f"{self.path}: cannot write (No space left on device)")

    monkeypatch.setattr(checkpoint_mod.Checkpointer, "save", full)
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 1
    assert "learn.schedule is not applied in plugin mode" in caplog.text
    assert any("nothing is read again in plugin mode" in p for p in svc._stop_problems), svc._stop_problems
    assert not any("re-reads the lines" in p for p in svc._stop_problems)


def test_a_plugin_runs_when_it_cannot_open_the_lock(tmp_path, bundle_dir, training_log, caplog, monkeypatch) -> None:
    """A lock file left by root (a hand test with `sudo lograven run --stdin`) stopped the plugin at every
    start once plugin mode took the lock: under rsyslog, a restart loop. It runs without the lock, and says
    how to fix it; the daemon still refuses, naming the fix."""
    from lograven import service as service_mod

    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("/lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(service_mod.os, "open", denied)
    cfg = _plugin_cfg(tmp_path, bundle_dir)
    svc = Service(cfg, stdin_mode=True, stdin=[training_log.read_text().splitlines()[0].encode()], stdout=io.StringIO())
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 0
    assert "cannot open the state directory's lock (Permission denied); remove it, or give it to the user" in caplog.text
    assert "running without it" in caplog.text
    daemon = Service(parse_config({**cfg.to_dict(), "sources": [{"paths": [str(tmp_path / "x.log")]}]}))
    with pytest.raises(LogravenError, match="cannot open the state directory's lock .Permission denied.; remove it"):
        daemon._prepare_state_dir()


def test_streams_of_files_no_longer_followed_are_forgotten(tmp_path) -> None:
    """A glob over dated or per-container files kept one GRU state per file that ever existed until
    runtime.max_streams pushed them out (an audit: 169 of 540 states were of deleted files; at
    100,000 states the checkpoint is 77 MB). They now go with the file's series; a session's does not."""
    from collections import OrderedDict
    from types import SimpleNamespace

    from lograven.service import Service
    from lograven.tailer import FileStats

    svc = Service(parse_config({"state_dir": str(tmp_path)}))
    files = {"/var/log/a.log": FileStats(lines=3), "/var/log/b.log": FileStats(lines=1)}
    svc._sources = [SimpleNamespace(tailer=SimpleNamespace(stats=lambda: dict(files)))]
    files["/var/log/a.log:8080.log"] = FileStats(lines=2)  # a followed file whose name extends a.log's
    keys = ["/var/log/a.log", "/var/log/a.log:sshd", "/var/log/b.log", "/var/log/b.log:cron", "/var/log/a.logx",
            "blk_42", "/var/log/a.log:8080.log", "/var/log/a.log:8080.log:sshd"]
    svc.detector = SimpleNamespace(states=OrderedDict((k, object()) for k in keys), streams_evicted=0)
    svc._stream_last["/var/log/a.log"] = object()
    svc._export_file_stats()
    assert list(svc.detector.states) == keys
    del files["/var/log/a.log"]
    svc._export_file_stats()
    assert list(svc.detector.states) == ["/var/log/b.log", "/var/log/b.log:cron", "/var/log/a.logx", "blk_42",
                                         "/var/log/a.log:8080.log", "/var/log/a.log:8080.log:sshd"]
    assert svc._dirty and not svc._stream_last  # the next checkpoint leaves them out
    # restored at a start for files not followed then (deleted while lograven was stopped): they go at
    # the first export; a session key stays, and so do the streams of followed files
    svc.cfg = parse_config({"state_dir": str(tmp_path), "sources": [{"paths": ["/var/log/*.log"], "stream": "program"}]})
    svc.detector.states.update((k, object()) for k in ["/var/log/old.log", "/var/log/old.log:sshd", "/run/x"])
    svc._note_restored_files()
    svc._export_file_stats()
    assert list(svc.detector.states) == ["/var/log/b.log", "/var/log/b.log:cron", "blk_42", "/var/log/a.log:8080.log",
                                         "/var/log/a.log:8080.log:sshd"]


def test_the_checkpoints_streams_are_not_kept_after_they_are_restored(tmp_path, bundle_dir, training_log,
                                                                        monkeypatch, caplog) -> None:
    """The parsed checkpoint lived as long as `run`, the daemon's life: with 100,000 streams (a 77 MB
    checkpoint) RSS stayed 150 MB higher after every restart (355 MB against 171 MB before it; 217 MB
    now). Its streams are dropped once restored, and the C heap's free pages are given back."""
    from lograven import service as service_mod
    from lograven.service import Service

    cfg = parse_config({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    lines = training_log.read_bytes().splitlines(keepends=True)[:50]
    assert Service(cfg, stdin_mode=True, stdin=iter(lines), stdout=io.StringIO()).run() == 0  # checkpoints 1 stream
    kept, trimmed = [], []
    real = Service._restore_streams
    monkeypatch.setattr(Service, "_restore_streams", lambda self, state: kept.append(state) or real(self, state))
    monkeypatch.setattr(service_mod, "release_free_memory", lambda: trimmed.append(1) or True)
    with caplog.at_level("INFO", logger="lograven.service"):
        assert Service(cfg, stdin_mode=True, stdin=iter(lines[:5]), stdout=io.StringIO()).run() == 0
    assert "restored GRU state of 1 stream(s)" in caplog.text
    assert len(kept) == 1 and "streams" not in kept[0] and "positions" in kept[0] and trimmed == [1]


def test_release_free_memory_trims_glibcs_heap() -> None:
    import ctypes

    from lograven.osutil import release_free_memory

    if getattr(ctypes.CDLL(None), "malloc_trim", None) is None:
        pytest.skip("no glibc malloc_trim here (musl, macOS)")
    blocks = [bytearray(300) for _ in range(200_000)]  # 60 MB of small blocks, freed: glibc keeps them
    del blocks
    assert release_free_memory() is True  # malloc_trim: 1 when it gave memory back


def test_an_unknown_messages_pattern_leaves_the_host_out(tmp_path) -> None:
    """An allow rule for an unknown message held the host name (`web<N>`): after a host rename, or on a
    central log host, the same message from another host alerted again (an audit: suppressed from web01,
    alerted from app-prod-eu1). The header's host is now <HOST>; the message itself is kept whole, and a
    rule made before (with the host) still matches."""
    from lograven.allowlist import new_rule, rule_from_alert
    from lograven.masking import without_host

    parse = Parser("syslog").parse
    unknown = Verdict(type_id=0, template=None, anomaly=True, detectors=["unknown_type"])

    def alert(line):
        return alert_from_verdict(unknown, path="/var/log/syslog", offset=0, stream="s", line=line, record=parse(line),
                                  detector=_Det(), host="local", version="v1")  # fmt: skip

    a = alert("Dec  6 10:00:00 web01 apt-daily[77]: apt-daily.service: Consumed 2.1s CPU time, memory peak 80M")
    b = alert("Dec  7 11:00:00 app-prod-eu1 apt-daily[12]: apt-daily.service: Consumed 9.3s CPU time, memory peak 60M")
    other = alert("Dec  7 11:00:01 app-prod-eu1 kernel: EXT4-fs error (device sda1): htree_dirblock_to_tree")
    assert a.pattern == b.pattern and a.pattern.startswith("<DATE> <HOST> apt-daily")
    rule = rule_from_alert(a.to_dict())
    assert rule.matches(b) and not rule.matches(other)
    assert a.dedup_key() == b.dedup_key()  # one message from many hosts is one alert within the window
    # the host is masked in the header only
    assert without_host("Dec  6 10:00:00 web01 sshd[1]: reverse map for web01 failed", "web01",
                        "reverse map for web01 failed") == "Dec  6 10:00:00 <HOST> sshd[1]: reverse map for web01 failed"
    # a rule from before kept the host masked as a word: it still allows its own host's lines
    legacy = new_rule(type_id=-1, pattern=line_pattern(a.line))
    assert "web<N>" in legacy.pattern and legacy.matches(a) and not legacy.matches(other) and not legacy.matches(b)
    # ... also where the model has extra masks (the rule was masked by them too)
    from lograven.masking import ExtraMask, Masker

    masker = Masker([ExtraMask("USER", r"(?<=user=)\w+")])
    line = "Dec  6 10:00:00 web01 app[7]: login user=alice ok"
    rec = parse(line)
    old = new_rule(type_id=-1, pattern=masker.mask_text(line))
    c = alert(line)
    c.pattern = masker.mask_text(without_host(line, rec.host, rec.message))
    assert "<USER>" in old.pattern and "<HOST>" in c.pattern and old.matches(c)
    # the host as a whole word only: not out of the time stamp or the month
    for host, stamped in (("10", "Dec  6 10:00:00 10 cron[1]: x"), ("a", "Mar  6 09:00:00 a cron[1]: x"),
                          ("06", "2026-12-06T10:00:00Z 06 cron[1]: x")):  # fmt: skip
        r = parse(stamped)
        assert r.host == host and without_host(stamped, r.host, r.message).count("<HOST>") == 1
        assert without_host(stamped, r.host, r.message).replace("<HOST>", host) == stamped
        assert f" <HOST> cron" in without_host(stamped, r.host, r.message)


def test_a_reload_does_not_hang_on_a_manifest_that_is_a_fifo(tmp_path, bundle_dir) -> None:
    """_manifest_changed read the running model's manifest.json with read_bytes before load_bundle's
    checks: a FIFO there hung the reload for ever (review of today's fixes, 2026-12-07)."""
    import shutil

    from conftest import call_within

    from lograven.bundle import load_bundle
    from lograven.service import _manifest_changed

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    bundle = load_bundle(copy)
    (copy / "manifest.json").unlink()
    os.mkfifo(copy / "manifest.json")
    assert call_within(lambda: _manifest_changed(copy, bundle)) is True  # "changed": load_bundle then refuses it


def test_a_bundle_changed_in_place_is_reloaded_as_a_new_model(tmp_path, bundle_dir) -> None:
    """`lograven train --out <the running bundle>` then SIGHUP: the reload compared the bundle's manifest
    with itself (the same path) and kept the old model, "reloaded" (re-verification, 2026-12-07)."""
    import json
    import shutil

    from lograven.bundle import _manifest_digest, load_bundle
    from lograven.service import _manifest_changed

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    bundle = load_bundle(copy)
    assert _manifest_changed(copy, bundle) is False
    m = json.loads((copy / "manifest.json").read_text())
    m["id"] = "retrained-in-place"
    m["manifest_sha256"] = _manifest_digest(m)
    (copy / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    assert _manifest_changed(copy, bundle) is True


def test_a_plugin_leaves_a_stopped_daemons_checkpoint_alone(tmp_path, bundle_dir, training_log, caplog) -> None:
    """Review of the plugin (2026-12-07, night): on the state_dir of a daemon that was stopped (an upgrade, a
    restart window) the plugin took the lock and rewrote the checkpoint with no file positions, without a
    word; the daemon then read its files again from the start (or, with start_position end, skipped what
    came). Keeping the positions in the plugin's checkpoints was not enough: its sessions' states reached
    the daemon, which alerted on their ends with no file or line. It now writes no checkpoint there, as
    beside a running daemon, and says why."""
    from lograven.checkpoint import Checkpointer

    cfg = _plugin_cfg(tmp_path, bundle_dir)
    state = tmp_path / "state"
    state.mkdir()
    theirs = {"0": {"/var/log/x.log": {"file_id": "1:2:00", "offset": 7, "fingerprint_len": 0}}}
    Checkpointer(state / "checkpoint.json").save({"model": None, "positions": theirs, "streams": {}})
    before = (state / "checkpoint.json").read_bytes()
    (state / "lock").write_text("4242 daemon\n")  # its pid, not running
    lines = training_log.read_text().splitlines()[:3]
    svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 0
    assert svc.stdout.getvalue().splitlines() == ["OK"] * 4
    assert (state / "checkpoint.json").read_bytes() == before
    assert "holds the lograven daemon's checkpoint" in caplog.text and "its own state_dir" in caplog.text
    caplog.clear()  # a plugin's own checkpoint (no file positions): nothing to say, its states are saved
    (state / "checkpoint.json").unlink()
    svc = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
    with caplog.at_level("WARNING", logger="lograven.service"):
        assert svc.run() == 0
    assert "daemon's checkpoint" not in caplog.text
    saved = json.loads((state / "checkpoint.json").read_text())["state"]
    assert saved["positions"] == {} and saved["streams"]


def test_a_daemon_takes_no_streams_from_a_plugins_checkpoint(tmp_path, bundle_dir, training_log, caplog) -> None:
    """Review of the day's diff (2026-12-07, night): a daemon started on a state_dir a plugin had used restored
    the plugin's sessions' GRU states, and judged their ends: alerts with an empty file and line, for
    sessions it never read. It takes the file positions (a plugin writes none) and not the streams."""
    import threading

    from lograven.service import Service

    cfg = _plugin_cfg(tmp_path, bundle_dir)
    lines = training_log.read_text().splitlines()[:3]
    plugin = Service(cfg, stdin_mode=True, stdin=[ln.encode() for ln in lines], stdout=io.StringIO())
    assert plugin.run() == 0
    state = tmp_path / "state"
    assert json.loads((state / "checkpoint.json").read_text())["state"]["streams"]
    log = tmp_path / "app.log"
    log.write_text(lines[0] + "\n")
    daemon_cfg = parse_config({**{"model": str(bundle_dir), "state_dir": str(state), "metrics": {"enabled": False},
                                  "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "d.jsonl")}}},
                               "sources": [{"paths": [str(log)]}]})  # fmt: skip
    svc = Service(daemon_cfg)
    with caplog.at_level("WARNING", logger="lograven.service"):
        t = threading.Thread(target=svc.run)
        t.start()
        try:
            deadline = time.monotonic() + 30
            while svc.detector is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            assert svc.detector is not None and "stdin" not in svc.detector.states
        finally:
            svc.stop()
            t.join(timeout=20)
    assert "was a lograven plugin's" in caplog.text


def test_a_sighup_while_the_plugin_starts_is_a_reload_not_its_death(tmp_path, bundle_dir, training_log) -> None:
    """SIGHUP kills a process by default, and the service installed its handler only once it ran: a HUP
    while the config and the model loaded (omprog's hup.signal, a logrotate postrotate) killed the plugin
    (a review: dead at 0.05, 0.3 and 0.6 s after its start). It is now kept and done as a reload."""
    import subprocess
    import sys

    cfg = tmp_path / "plugin.yaml"
    cfg.write_text(json.dumps({"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                               "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "alerts.jsonl")}}}))  # fmt: skip
    script = (
        "import logging, os, signal, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from lograven import service\n"
        "run = service.Service.run\n"
        "def started(self):\n"
        "    os.kill(os.getpid(), signal.SIGHUP)  # as if sent while the model loaded, before run() began\n"
        "    return run(self)\n"
        "service.Service.run = started\n"
        f"sys.exit(service.run_service({str(cfg)!r}, stdin_mode=True))\n"
    )
    lines = training_log.read_text().splitlines()[:3]
    r = subprocess.run([sys.executable, "-c", script], input="".join(x + "\n" for x in lines), capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.splitlines() == ["OK"] * 4, r.stdout
    assert "reloaded: model" in r.stderr, r.stderr[-2000:]


def test_standard_output_as_the_alerts_file(tmp_path, bundle_dir, training_log) -> None:
    """`alerts.jsonl.path: /dev/stdout`. A plugin's standard output carries omprog's replies: alerts there
    were taken for replies (and rsyslog fell out of step), so `run --stdin` and `check --stdin` refuse it.
    The daemon may write there (a container's log): fsync on a pipe fails (EINVAL), which had made every
    batch fail and be written again, six times each, its lines never acknowledged."""
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    base = {"model": str(bundle_dir), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
            "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": "/dev/stdout"}, "dedup_window_seconds": 0}}
    cfg.write_text(json.dumps(base))
    lines = training_log.read_text().splitlines()[:3] + ["Jun  9 07:00:00 web01 kernel: /dev/sdz9 out of diskspace q1"]
    r = subprocess.run([sys.executable, "-m", "lograven", "run", "--stdin", "--config", str(cfg)],
                       input="".join(x + "\n" for x in lines), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1 and not r.stdout, (r.stdout, r.stderr[-1500:])
    assert "alerts.jsonl.path: /dev/stdout is standard output, which carries the omprog protocol" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "lograven", "check", "--stdin", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1 and "is standard output, which carries the omprog protocol" in r.stderr, r.stderr
    # the daemon on files, its standard output a pipe: each alert written once, and the lines acknowledged
    log = tmp_path / "app.log"
    log.write_text("".join(x + "\n" for x in lines))
    cfg.write_text(json.dumps({**base, "sources": [{"paths": [str(log)], "start_position": "beginning"}],
                               "runtime": {"checkpoint_interval_seconds": 0.2, "poll_interval_seconds": 0.1}}))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "lograven", "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ckpt = tmp_path / "state" / "checkpoint.json"
        deadline = time.monotonic() + 60
        done = False
        while time.monotonic() < deadline and not done:
            time.sleep(0.2)
            if ckpt.exists():
                positions = json.loads(ckpt.read_text())["state"]["positions"]
                done = any(e.get("offset") == log.stat().st_size for g in positions.values() for e in g.values())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert done, err[-2000:]
    alerts = [json.loads(x) for x in out.splitlines()]
    assert [a["line"] for a in alerts].count(lines[-1]) == 1, out
    assert proc.returncode == 0 and "Invalid argument" not in err, err[-2000:]
