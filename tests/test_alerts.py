"""Alerts: record formats, the three sinks, and the router's filtering and retry."""
from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import socket
import time
import threading
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lograven import alerts as alerts_mod
from lograven.alerts import (
    Alert,
    AlertRouter,
    AlertSink,
    DetectorHit,
    Expected,
    JsonlSink,
    SinkError,
    StdoutSink,
    SyslogSink,
    format_human,
    iso_utc,
    new_alert_id,
)
from lograven.errors import LogravenError
from lograven.metrics import Metrics


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_alert(
    line: str = "Jun  9 06:06:20 web1 sshd[991]: error: kex_exchange_identification: Connection closed",
    *,
    file: str = "/var/log/messages",
    type_id: int = 17,
    detectors: list[DetectorHit] | None = None,
    expected: list[Expected] | None = None,
    offset: int = 4096,
) -> Alert:
    return Alert(
        id=new_alert_id(),
        time=iso_utc(),
        host="web1",
        file=file,
        offset=offset,
        stream=file,
        line=line,
        type_id=type_id,
        template=r"sshd\[\d+\]: error: kex_exchange_identification: .*",
        detectors=detectors if detectors is not None else [DetectorHit("sequence", 0.0003, 0.02, "p<0.02")],
        expected=expected
        if expected is not None
        else [Expected(4, "sshd session opened for user .*", 0.61), Expected(9, "pam_unix session closed", 0.22)],
        model_version="2026-11-01-7f3a",
    )


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class RecordingSink:
    """A sink that records batches and can be told to fail."""

    def __init__(self, name: str = "rec", required: bool = False) -> None:
        self.name = name
        self.required = required
        self.batches: list[list[Alert]] = []
        self.fail_with: Exception | None = None
        self.closed = False

    def emit(self, alerts: list[Alert]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(list(alerts))

    def close(self) -> None:
        self.closed = True

    @property
    def delivered(self) -> list[Alert]:
        return [a for b in self.batches for a in b]


# --------------------------------------------------------------------------- records


def test_sinks_satisfy_the_protocol(tmp_path: Path) -> None:
    for sink in (SyslogSink(str(tmp_path / "log")), JsonlSink(tmp_path / "a.jsonl"), StdoutSink(), RecordingSink()):
        assert isinstance(sink, AlertSink)


def test_small_alert_compact_json_keeps_everything() -> None:
    a = make_alert()
    text = a.to_compact_json()
    doc = json.loads(text)
    assert text == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))  # compact separators
    assert doc["line"] == a.line and "truncated" not in doc
    assert doc["detectors"] == [{"name": "sequence", "score": 0.0003, "threshold": 0.02, "rule": "p<0.02"}]
    assert [e["type_id"] for e in doc["expected"]] == [4, 9]
    assert doc["v"] == 1 and doc["type_id"] == 17 and doc["offset"] == 4096


@pytest.mark.parametrize(
    "line",
    [
        "x" * 1_000_000,
        "é" * 300_000,  # 2 bytes each
        "日本語のログ" * 100_000,  # 3 bytes each
        "😀" * 200_000,  # 4 bytes each
        "\x00\x1b\"\\" * 100_000,  # JSON escapes: up to 6 bytes per character
        "a" * 1500 + "😀" * 300,
    ],
    ids=["ascii", "latin1", "cjk", "emoji", "escapes", "mixed"],
)
def test_compact_json_of_huge_line_fits_2048_bytes(line: str) -> None:
    a = make_alert(line, expected=[Expected(i, f"template {i} " + "w" * 50, 0.1) for i in range(10)])
    text = a.to_compact_json()
    size = len(text.encode("utf-8"))
    assert size <= 2048
    assert size > 1700  # the bound is used, not wasted
    doc = json.loads(text)
    assert doc["truncated"] is True
    assert doc["line"].endswith("…")
    assert line.startswith(doc["line"][:-1])
    assert len(doc["expected"]) == 3


def test_compact_json_with_huge_other_fields_still_fits() -> None:
    a = make_alert("short line")
    a.template = "t" * 50_000
    a.file = "/var/log/" + "ü" * 10_000
    a.expected = [Expected(1, "e" * 20_000, 0.5)] * 5
    text = a.to_compact_json(1024)
    assert len(text.encode("utf-8")) <= 1024
    doc = json.loads(text)
    assert doc["truncated"] is True and doc["id"] == a.id
    assert doc["line"] == "short line"  # the line itself fitted: not marked as cut


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=3000)


@settings(max_examples=150, deadline=None)
@given(
    line=st.text(max_size=5000),
    host=_text,
    template=st.none() | _text,
    expected=st.lists(st.tuples(st.integers(-5, 10_000), _text, st.floats(allow_nan=True)), max_size=6),
    max_bytes=st.integers(512, 4096),
)
def test_compact_json_is_always_valid_and_bounded(line, host, template, expected, max_bytes) -> None:
    a = make_alert(line, expected=[Expected(t, s, p) for t, s, p in expected])
    a.host = host
    a.template = template
    text = a.to_compact_json(max_bytes)
    assert len(text.encode("utf-8")) <= max_bytes
    doc = json.loads(text)
    assert doc["id"] == a.id


def test_compact_json_rejects_tiny_bound() -> None:
    with pytest.raises(ValueError):
        make_alert().to_compact_json(100)


def test_to_dict_is_full_and_round_trips() -> None:
    a = make_alert("y" * 10_000, expected=[Expected(i, f"t{i}", 0.1) for i in range(7)])
    a.detectors.append(DetectorHit("autoencoder", 5.21, 3.1))
    d = a.to_dict()
    assert d["line"] == a.line and len(d["expected"]) == 7
    assert d["read_from"] is None and "read_from" not in json.loads(a.to_compact_json())
    assert Alert.from_dict(json.loads(a.to_json())) == a
    a.read_from = "/var/log/messages.1"  # a line read after its file was rotated
    assert Alert.from_dict(json.loads(a.to_json())) == a
    assert json.loads(a.to_compact_json())["read_from"] == "/var/log/messages.1"


def test_non_finite_numbers_and_surrogates_still_give_valid_json() -> None:
    a = make_alert("bad byte: \udcff here", detectors=[DetectorHit("autoencoder", math.inf, math.nan)])
    for text in (a.to_json(), a.to_compact_json()):
        doc = json.loads(text)
        assert doc["detectors"][0]["score"] is None and doc["detectors"][0]["threshold"] is None
        assert doc["line"] == "bad byte: \ufffd here"
        text.encode("utf-8")


def test_alert_ids_are_unique_short_and_time_ordered() -> None:
    ids = {new_alert_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(re.fullmatch(r"[0-9a-hjkmnp-tv-z]{16}", i) for i in list(ids)[:100])
    assert new_alert_id(now=1_800_000_000.000) < new_alert_id(now=1_800_000_000.002)


def test_iso_utc_format() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_800_000_000.5) == "2027-01-15T08:00:00.500Z"


def test_detector_hit_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        DetectorHit("magic", 1.0, 0.5)


def test_human_format_explains_each_detector() -> None:
    a = make_alert("evil \x1b[2J line", expected=[Expected(i, f"type {i}", 0.5 - i / 10) for i in range(5)])
    a.detectors = [
        DetectorHit("sequence", 0.0003, 0.02, "p<0.02"),
        DetectorHit("autoencoder", 5.2134, 3.1),
    ]
    text = format_human(a)
    # the byte offset says it is one: `file:N` reads as a line number
    assert "  /var/log/messages byte 4096  " in text and "messages:4096" not in text
    a.read_from = "/var/log/messages.1"
    assert "  /var/log/messages (read from /var/log/messages.1) byte 4096  " in format_human(a)
    a.read_from, a.file, a.offset = None, "stdin", 7
    assert "  stdin message 7  " in format_human(a)
    a.file, a.offset = "/var/log/messages", 4096
    assert "sequence: p=0.0003 < 0.02; expected: #0 type 0 (0.50), #1 type 1 (0.40), #2 type 2 (0.30), …" in text
    assert "autoencoder: error 5.21 > threshold 3.10" in text
    assert "\x1b" not in text and "\\x1b[2J" in text  # a log line must not drive the terminal
    unknown = make_alert(type_id=-1, detectors=[DetectorHit("unknown_type", 1.0, 0.0)], expected=[])
    unknown.template = None
    text = format_human(unknown)
    assert "type: UNKNOWN" in text and "unknown_type: no learned message type matches" in text
    topk = make_alert(detectors=[DetectorHit("sequence", 12, 9, "rank>9")], expected=[])
    assert "sequence: rank 12 > 9" in format_human(topk)
    assert "max_line_bytes" not in format_human(topk)
    topk.line_truncated = True  # a line longer than runtime.max_line_bytes: the screen says so too
    assert "[longer than runtime.max_line_bytes: its start]" in format_human(topk).splitlines()[1]


# --------------------------------------------------------------------------- syslog


@pytest.fixture
def syslog_server(tmp_path: Path):
    path = str(tmp_path / "dev-log")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    yield path, srv
    srv.close()


def test_syslog_datagram_format(syslog_server) -> None:
    path, srv = syslog_server
    sink = SyslogSink(path, facility="local3", severity="err", tag="lograven")
    a = make_alert("ünïcode line")
    sink.emit([a])
    data = srv.recv(65536).decode("utf-8")
    m = re.fullmatch(r"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) lograven\[(\d+)\]: @cee: (.*)", data, re.S)
    assert m, data
    assert int(m.group(1)) == 19 * 8 + 3
    assert int(m.group(3)) == os.getpid()
    doc = json.loads(m.group(4))
    assert doc["id"] == a.id and doc["line"] == "ünïcode line"
    assert len(data.encode()) < 2048 + 64
    sink.close()


def test_syslog_stream_socket_as_glibc_does(tmp_path: Path) -> None:
    """Some syslog daemons (syslog-ng's unix-stream) listen on a stream socket at /dev/log: connecting a
    datagram socket fails with EPROTOTYPE, and the sink falls back to a stream, each message ending
    with a NUL byte as glibc's syslog(3) sends it; a restarted daemon is reconnected to."""
    path = str(tmp_path / "dev-log")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(5)
    sink = SyslogSink(path, tag="lograven")
    alerts = [make_alert(f"line {i}") for i in range(3)]
    sink.emit(alerts[:2])
    conn, _ = srv.accept()
    conn.settimeout(5)
    data = b""
    while data.count(b"\0") < 2:
        data += conn.recv(65536)
    messages = data.split(b"\0")[:2]
    for a, m in zip(alerts, messages):
        assert re.fullmatch(rb"<12>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d lograven\[\d+\]: @cee: .*", m, re.S), m
        assert json.loads(m.split(b"@cee: ", 1)[1])["id"] == a.id
    conn.close()  # the syslog daemon restarts
    srv.close()
    os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(5)
    try:
        sink.emit([alerts[2]])
    except SinkError:  # the first send after the peer closed may only tell that it did
        sink.emit([alerts[2]])
    conn, _ = srv.accept()
    conn.settimeout(5)
    data = b""
    while b"\0" not in data:
        data += conn.recv(65536)
    assert json.loads(data.split(b"\0")[0].split(b"@cee: ", 1)[1])["id"] == alerts[2].id
    conn.close()
    srv.close()
    sink.close()


def test_syslog_default_priority_is_user_warning(syslog_server) -> None:
    path, srv = syslog_server
    SyslogSink(path).emit([make_alert()])
    assert srv.recv(65536).startswith(b"<12>")


def test_syslog_huge_line_stays_within_bound(syslog_server) -> None:
    path, srv = syslog_server
    SyslogSink(path).emit([make_alert("ß" * 500_000)])
    data = srv.recv(65536)
    payload = data.split(b"@cee: ", 1)[1]
    assert json.loads(payload)["truncated"] is True
    # the whole message, with room for a relay's host name or RFC 5424 header, fits a 2 KiB relay
    # (rsyslog maxMessageSize="2k" cut 2,091 bytes and mmjsonparse failed)
    assert len(data) <= 2048 - 128 and len(data) > 1800


@pytest.mark.parametrize(
    ("kwargs", "key", "hint"),
    [
        ({"facility": "kernel"}, "alerts.syslog.facility", "local0"),
        ({"facility": "kern"}, "alerts.syslog.facility", "daemon"),
        ({"severity": "loud"}, "alerts.syslog.severity", "warning"),
        ({"tag": "has space"}, "alerts.syslog.tag", "letters"),
    ],
)
def test_syslog_settings_are_validated(kwargs, key, hint) -> None:
    with pytest.raises(LogravenError) as err:
        SyslogSink("/dev/log", **kwargs)
    assert key in str(err.value) and hint in str(err.value)


def test_dead_syslog_socket_is_counted_and_recovers(tmp_path: Path) -> None:
    path = str(tmp_path / "dev-log")  # nothing listens yet
    clock, metrics = FakeClock(), Metrics()
    router = AlertRouter([SyslogSink(path)], clock=clock, metrics=metrics)
    first, second = make_alert(type_id=1), make_alert(type_id=2)

    assert router.submit([first]) is True  # syslog is not a required sink: detection carries on
    assert router.pending() == 1
    assert counter(metrics, "lograven_alerts_failed_total", sink="syslog") == 1
    assert counter(metrics, "lograven_alerts_pending", sink="syslog") == 1

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    try:
        clock.advance(1.5)  # past the first back-off
        router.submit([second])
        got = [json.loads(srv.recv(65536).split(b"@cee: ", 1)[1])["id"] for _ in range(2)]
        assert got == [first.id, second.id]
        assert router.pending() == 0
        assert counter(metrics, "lograven_alerts_emitted_total", sink="syslog") == 2
        assert counter(metrics, "lograven_alerts_pending", sink="syslog") == 0
    finally:
        srv.close()


def test_syslog_reconnects_after_receiver_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "dev-log")
    sink = SyslogSink(path)
    for round_ in range(2):  # journald restarting replaces the socket under the same name
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(path)
        srv.settimeout(5)
        a = make_alert(type_id=round_)
        sink.emit([a])
        assert a.id.encode() in srv.recv(65536)
        srv.close()
        os.unlink(path)


def test_syslog_full_receiver_fails_instead_of_blocking(syslog_server) -> None:
    path, srv = syslog_server
    sink = SyslogSink(path)
    batch = [make_alert("z" * 1800) for _ in range(5000)]
    with pytest.raises(SinkError) as err:
        sink.emit(batch)  # nobody reads: the queue fills and the non-blocking send gives up
    assert 0 < err.value.delivered < len(batch)


def test_syslog_slow_reader_gets_every_alert_without_long_back_off(syslog_server) -> None:
    """A syslog daemon that reads slower than alerts come (here 200 datagrams a second, with the socket
    queue of net.unix.max_dgram_qlen, 10 on many hosts) filled the non-blocking socket at once, and
    every partly delivered retry doubled the wait up to 30 s: 81 of 500 alerts in 41 s, the rest
    dropped at the stop. A send now waits for room within a budget, and progress is retried soon."""
    path, srv = syslog_server
    router = AlertRouter([SyslogSink(path)], dedup_window_seconds=0, max_per_minute=None)  # the real clock
    got: list[str] = []
    stop = threading.Event()

    def slow_reader() -> None:
        srv.settimeout(0.5)
        while not stop.is_set() and len(got) < 500:
            try:
                got.append(json.loads(srv.recv(65536).split(b"@cee: ", 1)[1])["id"])
            except socket.timeout:
                continue
            time.sleep(0.005)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    alerts = [make_alert(f"line {i}", type_id=i % 50) for i in range(500)]
    try:
        router.submit(alerts)
        deadline = time.monotonic() + 30
        while router.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
            router.flush()
        reader.join(timeout=10)
    finally:
        stop.set()
    assert router.pending() == 0
    assert got == [a.id for a in alerts]  # every alert, once, in order


def test_a_sink_that_waited_is_retried_a_pause_after_its_attempt_ends() -> None:
    """The retry time was taken from the clock before the attempt: an emit that waited for room in a
    full syslog socket set a retry time already past, so every flush waited again, back to back, and
    detection (and a plugin's answers) got almost no time while the backlog drained."""
    from lograven import alerts as alerts_mod

    clock = FakeClock()

    class Slow:
        name, required = "syslog", False

        def emit(self, alerts):
            clock.advance(alerts_mod.SEND_BUDGET)  # waited for room, delivered one
            raise SinkError("syslog: the syslog daemon is not reading fast enough", delivered=1)

        def close(self):
            pass

    router = AlertRouter([Slow()], dedup_window_seconds=0, max_per_minute=None, clock=clock)
    router.submit([make_alert(f"line {i}", type_id=i) for i in range(5)])
    assert router.pending() == 4
    router.flush()  # not due: the pause runs from the end of the attempt
    assert router.pending() == 4
    clock.advance(alerts_mod.PROGRESS_RETRY_SECONDS)
    router.flush()
    assert router.pending() == 3
    assert alerts_mod.SEND_BUDGET <= alerts_mod.PROGRESS_RETRY_SECONDS  # detection keeps at least half the time


def test_syslog_emit_waits_for_room_within_its_budget(syslog_server) -> None:
    """A stopped syslog reader (SIGSTOP): one emit of many alerts waits SEND_BUDGET in all, not per alert."""
    from lograven import alerts as alerts_mod

    path, srv = syslog_server
    sink = SyslogSink(path)
    t0 = time.monotonic()
    with pytest.raises(SinkError) as err:
        sink.emit([make_alert(f"line {i}") for i in range(200)])
    took = time.monotonic() - t0
    assert 0 < err.value.delivered < 200 and "not reading fast enough" in str(err.value)
    assert alerts_mod.SEND_BUDGET * 0.9 <= took < alerts_mod.SEND_BUDGET + 1.0


# --------------------------------------------------------------------------- jsonl


def test_jsonl_appends_full_objects_and_fsyncs(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("file" if stat.S_ISREG(os.fstat(fd).st_mode) else "dir")
        real_fsync(fd)

    monkeypatch.setattr(alerts_mod.os, "fsync", fsync)
    path = tmp_path / "sub" / "dir" / "alerts.jsonl"  # parents are created
    sink = JsonlSink(path)
    batch1 = [make_alert("x" * 5000, expected=[Expected(i, "t", 0.1) for i in range(6)]), make_alert()]
    sink.emit(batch1)
    sink.emit([make_alert("third")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert synced == ["dir", "file", "file"]  # the new file's directory entry, then once per batch
    first = json.loads(lines[0])
    assert first == batch1[0].to_dict() and len(first["expected"]) == 6 and len(first["line"]) == 5000
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    sink.close()


def test_jsonl_unopenable_path_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LogravenError) as err:
        JsonlSink(blocker / "alerts.jsonl")  # parent is a regular file
    assert "alerts.jsonl.path" in str(err.value) and str(blocker) in str(err.value)
    # a directory at the path is said as such, with a file path to give (it had been told to make the
    # directory writable: a robustness review)
    with pytest.raises(LogravenError) as err:
        JsonlSink(tmp_path)
    assert str(err.value) == (f"alerts.jsonl.path: {tmp_path} is a directory, not a file; give the path of a file "
                              f"(e.g. {tmp_path / 'alerts.jsonl'})")


def test_jsonl_on_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Hostile-input review (2026-12-07): `alerts.jsonl.path` naming a FIFO hung `lograven run` in open() for ever,
    deaf to SIGTERM (systemd's stop then killed it). Refused at once, with the key and the fix; and a FIFO put
    there later (at a reopen after rotation) is an error of the sink, not a hang. A FIFO with a reader, or a
    device (`/dev/stdout` in a container), still works."""
    import threading

    fifo = tmp_path / "alerts.jsonl"
    os.mkfifo(fifo)
    got: list = []
    t = threading.Thread(target=lambda: got.append(_raises(lambda: JsonlSink(fifo))), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "JsonlSink blocked opening a FIFO"
    assert isinstance(got[0], LogravenError) and "alerts.jsonl.path" in str(got[0]) and "FIFO (named pipe) that nothing reads" in str(got[0])
    path = tmp_path / "a.jsonl"
    sink = JsonlSink(path)
    path.rename(tmp_path / "a.jsonl.1")
    os.mkfifo(path)
    with pytest.raises(OSError, match="No such device or address"):  # ENXIO, at once
        sink._reopen_if_moved()
    sink.close()


def test_jsonl_on_a_socket_says_it_is_a_socket() -> None:
    """/dev/stdout under systemd is the journal's stream socket: opening it fails (ENXIO), and the message had
    said "a FIFO that nothing reads" (a code review)."""
    import socket
    import subprocess
    import sys

    a, b = socket.socketpair()
    code = ("import sys\nfrom lograven.alerts import JsonlSink\ntry:\n    JsonlSink('/dev/stdout')\n"
            "except Exception as e:\n    print(e, file=sys.stderr)")
    with a, b:
        got = subprocess.run([sys.executable, "-c", code], stdout=a.fileno(), stderr=subprocess.PIPE, text=True, timeout=60)
    assert "/dev/stdout is a socket" in got.stderr and "FIFO" not in got.stderr, got.stderr


def _raises(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    return None


def test_jsonl_reopens_after_logrotate_rename(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    sink.emit([make_alert("before")])
    path.rename(tmp_path / "alerts.jsonl.1")
    sink.emit([make_alert("after")])
    assert json.loads(path.read_text())["line"] == "after"
    assert json.loads((tmp_path / "alerts.jsonl.1").read_text())["line"] == "before"


def test_a_directory_put_at_the_alerts_path_while_running_is_said_with_the_fix(tmp_path: Path, caplog) -> None:
    """From a review: a directory at alerts.jsonl's path while running (the start refuses one, with the fix)
    was said as "Is a directory" only. The alerts wait, and are written once the path is a file again."""
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    router = AlertRouter([sink], clock=FakeClock(), metrics=Metrics())
    assert router.submit([make_alert(type_id=1)]) is True
    path.rename(tmp_path / "alerts.jsonl.1")
    path.mkdir()
    with caplog.at_level("WARNING"):
        assert router.submit([make_alert(type_id=2)]) is False
    assert f"a directory is at {path}; move it away" in caplog.text
    path.rmdir()
    assert router.flush(force=True) is True
    assert [json.loads(x)["type_id"] for x in path.read_text().splitlines()] == [2]


def test_disk_full_is_counted_retried_and_leaves_no_partial_line(tmp_path: Path, monkeypatch, caplog) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    clock, metrics = FakeClock(), Metrics()
    router = AlertRouter([sink], clock=clock, metrics=metrics)
    a1, a2, a3 = make_alert(type_id=1), make_alert(type_id=2), make_alert(type_id=3)
    assert router.submit([a1]) is True

    real_write_all = sink._write_all

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])  # half a batch lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink, "_write_all", disk_full)
    with caplog.at_level("WARNING"):
        assert router.submit([a2]) is False  # jsonl is required: do not checkpoint past a2
    # the fix, not only the error (hostile-input review, 2026-12-07)
    assert f"No space left on device: free space on the file system of {path.parent}" in caplog.text
    assert router.pending() == 1 and not router.durable()
    assert counter(metrics, "lograven_alerts_failed_total", sink="jsonl") == 1
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == [a1.id]  # the half line was cut off

    monkeypatch.setattr(sink, "_write_all", real_write_all)
    clock.advance(0.5)
    assert router.submit([a3]) is False  # still backing off: nothing retried yet
    clock.advance(1.0)
    assert router.flush() is True
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == [a1.id, a2.id, a3.id]
    assert counter(metrics, "lograven_alerts_emitted_total", sink="jsonl") == 3


# --------------------------------------------------------------------------- stdout


def test_stdout_human_and_json() -> None:
    buf = io.StringIO()
    a = make_alert()
    StdoutSink(buf, human=True).emit([a])
    assert "sequence: p=0.0003 < 0.02" in buf.getvalue() and a.line in buf.getvalue()
    buf = io.StringIO()
    StdoutSink(buf, human=False).emit([a, a])
    assert [json.loads(x)["id"] for x in buf.getvalue().splitlines()] == [a.id, a.id]


def test_stdout_defaults_to_current_sys_stdout(capsys) -> None:
    StdoutSink().emit([make_alert("seen on stdout")])
    assert "seen on stdout" in capsys.readouterr().out


def test_stdout_closed_stream_is_a_sink_error() -> None:
    buf = io.StringIO()
    buf.close()
    with pytest.raises(SinkError):
        StdoutSink(buf).emit([make_alert()])


# --------------------------------------------------------------------------- router


def test_dedup_within_window_and_again_after() -> None:
    clock, metrics, sink = FakeClock(), Metrics(), RecordingSink()
    router = AlertRouter([sink], clock=clock, metrics=metrics, dedup_window_seconds=300, max_per_minute=None)
    router.submit([make_alert(type_id=5)])
    clock.advance(10)
    router.submit([make_alert(type_id=5, offset=9999)])  # same file, type and detectors
    router.submit([make_alert(type_id=6)])  # another type
    router.submit([make_alert(type_id=5, file="/var/log/syslog")])  # another file
    both = [DetectorHit("sequence", 0.001, 0.02), DetectorHit("autoencoder", 4.0, 3.0)]
    router.submit([make_alert(type_id=5, detectors=both)])  # another detector set
    assert len(sink.delivered) == 4
    assert counter(metrics, "lograven_alerts_suppressed_total", reason="dedup") == 1

    clock.advance(299)  # 309 s after the first: window over
    router.submit([make_alert(type_id=5)])
    assert len(sink.delivered) == 5
    router.submit([make_alert(type_id=5)])
    assert len(sink.delivered) == 5
    assert counter(metrics, "lograven_alerts_suppressed_total", reason="dedup") == 2


def test_dedup_window_zero_disables_dedup() -> None:
    sink = RecordingSink()
    router = AlertRouter([sink], clock=FakeClock(), dedup_window_seconds=0, max_per_minute=None)
    router.submit([make_alert(), make_alert()])
    assert len(sink.delivered) == 2


def test_rate_limit_is_a_token_bucket() -> None:
    clock, metrics, sink = FakeClock(), Metrics(), RecordingSink()
    router = AlertRouter([sink], clock=clock, metrics=metrics, max_per_minute=3, dedup_window_seconds=0)
    router.submit([make_alert(type_id=i) for i in range(5)])
    assert [a.type_id for a in sink.delivered] == [0, 1, 2]
    assert counter(metrics, "lograven_alerts_suppressed_total", reason="rate_limit") == 2
    clock.advance(20)  # 3 per minute: one token back
    router.submit([make_alert(type_id=i) for i in range(10, 13)])
    assert [a.type_id for a in sink.delivered] == [0, 1, 2, 10]
    clock.advance(3600)  # the bucket refills to its capacity, not beyond
    router.submit([make_alert(type_id=i) for i in range(20, 30)])
    assert len(sink.delivered) == 7


def test_rate_limited_alert_is_not_remembered_for_dedup() -> None:
    clock, sink = FakeClock(), RecordingSink()
    router = AlertRouter([sink], clock=clock, max_per_minute=1)
    router.submit([make_alert(type_id=1), make_alert(type_id=2)])  # 2 is rate-limited
    clock.advance(60)
    router.submit([make_alert(type_id=2)])  # so it is not a duplicate now
    assert [a.type_id for a in sink.delivered] == [1, 2]


def test_the_record_keeps_what_dedup_and_the_rate_limit_hold_back(tmp_path) -> None:
    """A burst of junk lines used up the rate limit, and one decoy line of a message type de-duplicated the
    real one after it: both real alerts were flagged but left no trace beyond a counter. Now alerts.jsonl
    (the record) keeps them, marked `suppressed`, while syslog and stdout still get only what is sent;
    allowlisted alerts are not kept; and the record's share is bounded per minute."""
    clock, sent = FakeClock(), RecordingSink()
    record = JsonlSink(tmp_path / "alerts.jsonl", fsync=False)
    router = AlertRouter([sent, record], clock=clock, max_per_minute=3, dedup_window_seconds=300,
                         suppress=lambda a: a.type_id == 99)
    junk = [make_alert(type_id=100 + i) for i in range(3)]
    decoy, real = make_alert(type_id=5, line="decoy"), make_alert(type_id=5, line="real", offset=1)
    late = make_alert(type_id=50, line="attack")
    assert router.submit([*junk, make_alert(type_id=99), late])
    clock.advance(30)
    router.submit([decoy, real])
    got = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a.line for a in sent.delivered] == [a.line for a in junk] + ["decoy"]
    assert [(g["type_id"], g.get("suppressed")) for g in got] == [(100, None), (101, None), (102, None),
                                                                  (50, "rate_limit"), (5, None), (5, "dedup")]
    assert Alert.from_dict(got[-1]).suppressed == "dedup" and Alert.from_dict(got[0]).suppressed is None
    # bounded: a storm of one message keeps HELD_PER_MESSAGE held alerts a minute in the record, and distinct
    # ones at most RECORD_HELD_PER_MINUTE a minute
    k = AlertRouter.HELD_PER_MESSAGE
    clock.advance(3600)
    router.submit([make_alert(type_id=7, offset=i) for i in range(500)])
    held = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()][len(got):]
    assert [h.get("suppressed") for h in held] == [None] + ["dedup"] * k
    clock.advance(61)
    router.submit([make_alert(type_id=7, offset=i) for i in range(5)])  # a new minute
    got += [None] * (k + 1 + 5)
    # decoy lines that mask like the real one (another address) do not keep it out of the record
    clock.advance(3600)
    decoys = [make_alert(type_id=8, line=f"Accepted password for root from 10.9.9.{i}") for i in range(3)]
    router.submit([*decoys, make_alert(type_id=8, line="Accepted password for root from 203.0.113.66")])
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()][len(got):]
    assert [x["line"].rsplit(" ", 1)[1] for x in lines] == ["10.9.9.0", "10.9.9.1", "10.9.9.2", "203.0.113.66"]
    assert [x.get("suppressed") for x in lines] == [None, "dedup", "dedup", "dedup"]
    got += [None] * 4
    clock.advance(3600)
    n = AlertRouter.RECORD_HELD_PER_MINUTE
    router.submit([make_alert(type_id=1000 + i) for i in range(n + 50)])
    held = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()][len(got):]
    assert len(held) == n + 3 and sum(h.get("suppressed") == "rate_limit" for h in held) == n
    router.close()


def test_a_full_retry_queue_drops_held_back_alerts_first(tmp_path) -> None:
    """While the record's sink fails, its queue holds sent and held-back alerts; when it overflows, the
    held-back ones go first, so that the alerts that were sent are the last to be lost."""
    clock, record = FakeClock(), RecordingSink(name="jsonl", required=True)
    record.record = True
    record.fail_with = SinkError("disk full")
    router = AlertRouter([record], clock=clock, max_per_minute=2, dedup_window_seconds=0, retry_limit=5)
    router.submit([make_alert(type_id=i) for i in range(2)])  # sent
    router.submit([make_alert(type_id=10 + i) for i in range(6)])  # held back (rate limit)
    queued = list(router._sinks[0].queue)
    assert len(queued) == 5 and [a.type_id for a in queued][:2] == [0, 1]
    assert [a.suppressed for a in queued] == [None, None, "rate_limit", "rate_limit", "rate_limit"]
    router.close()


def test_allowlist_suppression_is_counted() -> None:
    metrics, sink = Metrics(), RecordingSink()
    router = AlertRouter([sink], clock=FakeClock(), metrics=metrics, suppress=lambda a: a.type_id == 7)
    router.submit([make_alert(type_id=7), make_alert(type_id=8)])
    assert [a.type_id for a in sink.delivered] == [8]
    assert counter(metrics, "lograven_alerts_suppressed_total", reason="allowlist") == 1


def test_broken_allowlist_fails_open(caplog) -> None:
    sink = RecordingSink()

    def broken(alert: Alert) -> bool:
        raise RuntimeError("allowlist bug")

    router = AlertRouter([sink], clock=FakeClock(), suppress=broken)
    router.submit([make_alert()])
    assert len(sink.delivered) == 1 and "allowlist" in caplog.text


def test_required_sinks_decide_durability() -> None:
    clock = FakeClock()
    optional, required = RecordingSink("syslog"), RecordingSink("jsonl", required=True)
    router = AlertRouter([optional, required], clock=clock, dedup_window_seconds=0)
    optional.fail_with = SinkError("down")
    assert router.submit([make_alert()]) is True
    assert router.pending() == 1
    optional.fail_with = None
    required.fail_with = SinkError("disk full")
    clock.advance(2)
    assert router.submit([make_alert()]) is False
    assert router.pending() == 1  # syslog caught up; jsonl holds one
    required.fail_with = None
    clock.advance(2)
    assert router.submit([]) is True and router.pending() == 0


def test_partial_delivery_is_not_repeated() -> None:
    clock, sink = FakeClock(), RecordingSink(required=True)
    router = AlertRouter([sink], clock=clock, dedup_window_seconds=0)
    batch = [make_alert(type_id=i) for i in range(5)]
    real_emit = sink.emit

    def two_then_fail(alerts: list[Alert]) -> None:
        real_emit(alerts[:2])
        raise SinkError("gone", delivered=2)

    sink.emit = two_then_fail  # type: ignore[method-assign]
    assert router.submit(batch) is False and router.pending() == 3
    sink.emit = real_emit  # type: ignore[method-assign]
    clock.advance(2)
    assert router.flush() is True
    assert [a.type_id for a in sink.delivered] == [0, 1, 2, 3, 4]


def test_failing_sink_backs_off_and_never_raises(caplog) -> None:
    clock, metrics = FakeClock(), Metrics()
    calls: list[int] = []

    class Exploding(RecordingSink):
        def emit(self, alerts: list[Alert]) -> None:
            calls.append(len(alerts))
            raise TypeError("a bug in the sink")  # not even a SinkError

    healthy = RecordingSink("ok")
    router = AlertRouter([Exploding("bad"), healthy], clock=clock, metrics=metrics, dedup_window_seconds=0)
    for _ in range(20):
        router.submit([make_alert()])
        clock.advance(0.1)
    assert len(healthy.delivered) == 20  # the good sink is unaffected
    assert len(calls) < 5  # back-off: 1 s, 2 s, ... between attempts
    assert router.pending() == 20
    assert counter(metrics, "lograven_alerts_failed_total", sink="bad") == len(calls)
    assert caplog.text.count("alert sink bad failed") == 1  # the log is rate-limited too
    assert router.flush(force=True) is True  # not required: durable anyway
    assert len(calls) >= 2


def test_retry_queue_is_bounded_and_drops_oldest(caplog) -> None:
    clock, metrics, sink = FakeClock(), Metrics(), RecordingSink(required=True)
    sink.fail_with = SinkError("down")
    router = AlertRouter([sink], clock=clock, metrics=metrics, retry_limit=5, dedup_window_seconds=0)
    alerts = [make_alert(type_id=i) for i in range(8)]
    router.submit(alerts)
    assert router.pending() == 5
    assert counter(metrics, "lograven_alerts_dropped_total", sink="rec") == 3
    assert "dropped 3 alert(s)" in caplog.text
    sink.fail_with = None
    router.flush(force=True)
    assert [a.type_id for a in sink.delivered] == [3, 4, 5, 6, 7]


def test_close_delivers_what_it_can_and_closes_sinks() -> None:
    clock, sink = FakeClock(), RecordingSink()
    sink.fail_with = SinkError("down")
    router = AlertRouter([sink], clock=clock)
    router.submit([make_alert()])
    sink.fail_with = None
    router.close()  # ignores the back-off
    assert len(sink.delivered) == 1 and sink.closed


def test_a_reload_carries_undelivered_alerts_over(caplog) -> None:
    """The daemon replaces its router on every reload (SIGHUP, a model switch). Alerts a failing sink
    still holds move to the new router's sink of the same name, ahead of new ones, so durability still
    holds the checkpoint back and nothing is lost; de-duplication carries over; a sink the new
    configuration dropped has its alerts dropped, counted and logged."""
    clock, metrics = FakeClock(), Metrics()
    jsonl, syslog = RecordingSink("jsonl", required=True), RecordingSink("syslog")
    jsonl.fail_with = syslog.fail_with = SinkError("No space left on device")
    old = AlertRouter([jsonl, syslog], clock=clock, metrics=metrics, dedup_window_seconds=60)
    assert old.submit([make_alert(type_id=i) for i in range(3)]) is False and old.pending() == 6
    new_jsonl = RecordingSink("jsonl", required=True)
    new_jsonl.fail_with = SinkError("No space left on device")
    new = AlertRouter([new_jsonl], clock=clock, metrics=metrics, dedup_window_seconds=60)
    assert new.take_over(old) == 3
    old.close()
    assert "closed with" not in caplog.text and "syslog is no longer configured: 3" in caplog.text
    assert counter(metrics, "lograven_alerts_dropped_total", sink="syslog") == 3
    assert new.durable() is False and new.pending() == 3  # the checkpoint still waits for them
    assert new.submit([make_alert(type_id=0)]) is False and new.pending() == 3  # seen before the reload
    new.submit([make_alert(type_id=7)])
    new_jsonl.fail_with = None
    assert new.flush(force=True) is True
    assert [a.type_id for a in new_jsonl.delivered] == [0, 1, 2, 7]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"dedup_window_seconds": -1}, "alerts.dedup_window_seconds"), ({"max_per_minute": -5}, "alerts.max_per_minute")],
)
def test_router_settings_are_validated(kwargs, key) -> None:
    with pytest.raises(LogravenError, match=key):
        AlertRouter([RecordingSink()], **kwargs)


def test_duplicate_sink_names_are_rejected() -> None:
    with pytest.raises(ValueError):
        AlertRouter([RecordingSink("a"), RecordingSink("a")])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_jsonl_on_a_device_fails_the_batch_without_truncate_noise(caplog) -> None:
    """alerts.jsonl.path /dev/full: each retry logged "could not cut partial batch off /dev/full" besides
    the write error; a device keeps nothing to cut back."""
    sink = JsonlSink("/dev/full", fsync=False)
    with caplog.at_level("WARNING"), pytest.raises(alerts_mod.SinkError, match="No space left on device"):
        sink.emit([make_alert()])
    assert "could not cut" not in caplog.text
    sink.close()


def test_closing_with_an_optional_sinks_alerts_undelivered_is_a_warning_when_kept_elsewhere(caplog) -> None:
    """No /dev/log (a container): the default syslog sink cannot deliver, and the stop logged an ERROR
    for alerts that alerts.jsonl holds. Only alerts that no required sink holds are an error."""
    clock = FakeClock()
    jsonl, syslog = RecordingSink("jsonl", required=True), RecordingSink("syslog")
    syslog.fail_with = SinkError("[Errno 2] No such file or directory: '/dev/log'")
    router = AlertRouter([jsonl, syslog], clock=clock)
    router.submit([make_alert()])
    with caplog.at_level("WARNING"):
        assert router.close() == 0  # nothing lost: `run` exits 0
    rec = [r for r in caplog.records if "closed with 1 undelivered" in r.getMessage()]
    assert len(rec) == 1 and rec[0].levelname == "WARNING" and "alerts.syslog.enabled: false" in rec[0].getMessage()
    caplog.clear()
    alone = RecordingSink("syslog")
    alone.fail_with = SinkError("down")
    router = AlertRouter([alone], clock=clock)
    router.submit([make_alert()])
    with caplog.at_level("WARNING"):
        assert router.close() == 1  # `run` exits 1
    (rec,) = [r for r in caplog.records if "closed with 1 undelivered" in r.getMessage()]
    assert rec.levelname == "ERROR"  # nowhere else: lost


def test_syslog_error_says_when_the_path_is_not_a_socket(tmp_path: Path) -> None:
    """A regular file at the socket path (a botched restart) fails with ECONNREFUSED, which says little."""
    path = tmp_path / "dev-log"
    path.write_text("")
    with pytest.raises(SinkError, match="it is not a socket"):
        SyslogSink(str(path)).emit([make_alert()])
    path.unlink()
    with pytest.raises(SinkError) as err:  # nothing there: the plain reason
        SyslogSink(str(path)).emit([make_alert()])
    assert "not a socket" not in str(err.value)


def test_standard_output_is_known_by_its_names_and_links(tmp_path) -> None:
    """`check --stdin` must refuse what `run --stdin` refuses, though its own standard output is not the
    plugin's: /dev/stdout by any spelling, and a link to it (a review: `//dev/stdout` and a link passed)."""
    from lograven.alerts import is_standard_output

    link = tmp_path / "out"
    link.symlink_to("/dev/stdout")
    chain = tmp_path / "chain"
    chain.symlink_to(link)
    for p in ("/dev/stdout", "//dev/stdout", "/dev/./stdout", "/proc/self/fd/1", "/dev/fd/1", str(link), str(chain)):
        assert is_standard_output(p), p
    assert not is_standard_output(tmp_path / "alerts.jsonl")


def test_withdrawn_alerts_leave_the_queues_and_give_back_what_no_sink_used() -> None:
    """Plugin mode refuses a line whose alert the required sink could not take, and the shipper sends it
    again: its first alert must not stay queued (it was written twice), and when no sink delivered it, the
    resent line's alert must not be held back as its duplicate or cost a second rate-limit token.""" 
    from lograven.alerts import SinkError

    record = RecordingSink("jsonl", required=True)
    record.record = True  # type: ignore[attr-defined]
    other = RecordingSink("syslog")
    now = [1000.0]
    router = AlertRouter([record, other], dedup_window_seconds=300, max_per_minute=10, clock=lambda: now[0])
    record.fail_with = other.fail_with = SinkError("No space left on device")
    first = make_alert()
    assert router.submit([first], force=True) is False and router.pending() == 2
    router.withdraw([first])
    assert router.pending() == 0 and router.durable()
    record.fail_with = other.fail_with = None
    now[0] += 5  # the shipper's resume interval: the optional sink's back-off has passed too
    again = make_alert()  # the resent line, scored again: the same message
    assert router.submit([again], force=True) is True
    assert record.delivered == [again] and other.delivered == [again] and again.suppressed is None
    assert router._tokens == pytest.approx(9.0, abs=0.01)  # one token spent, not two
    # delivered by syslog already, not by the required record: the repeat goes to both (a review: held
    # back as syslog's duplicate, a required syslog that had failed never got it)
    record.fail_with = SinkError("No space left on device")
    third = make_alert(line="Jun  9 06:06:21 web1 kernel: other", type_id=18)
    assert router.submit([third], force=True) is False
    assert other.delivered[-1] is third
    router.withdraw([third])
    assert router.pending() == 0
    record.fail_with = None
    now[0] += 5
    repeat = make_alert(line="Jun  9 06:06:21 web1 kernel: other", type_id=18)
    assert router.submit([repeat], force=True) is True
    assert repeat.suppressed is None and record.delivered[-1] is repeat and other.delivered[-1] is repeat
    # `force` tries a failing required sink at once, an optional one keeps its back-off
    record.fail_with = other.fail_with = SinkError("down")
    router.submit([make_alert(type_id=19)], force=True)
    tries = {"jsonl": 0, "syslog": 0}
    for sink in (record, other):
        real = sink.emit

        def counted(batch, sink=sink, real=real):
            tries[sink.name] += 1
            return real(batch)

        sink.emit = counted  # type: ignore[method-assign]
    for i in range(5):
        router.submit([], force=True)
    assert tries == {"jsonl": 5, "syslog": 0}, tries


def test_a_write_that_wrote_nothing_cuts_nothing(tmp_path: Path, monkeypatch, caplog) -> None:
    """An immutable alerts file (chattr +i) refuses the write and the truncation alike: "could not cut
    partial batch off" was warned at every retry although no byte had been written (a soak)."""
    import errno as errno_mod

    from lograven.alerts import SinkError

    sink = JsonlSink(tmp_path / "alerts.jsonl")
    sink.emit([make_alert()])

    def refused(*a, **k):
        raise OSError(errno_mod.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "write", refused)
    monkeypatch.setattr(os, "ftruncate", refused)
    with caplog.at_level("WARNING", logger="lograven.alerts"), pytest.raises(SinkError, match="Operation not permitted"):
        sink.emit([make_alert()])
    assert "could not cut" not in caplog.text
