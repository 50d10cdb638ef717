"""Alerts: the record the detectors produce, the sinks that deliver it, and the router between them.

An `Alert` says which line (file and byte offset) looked anomalous, which
detectors fired and why, and, for the sequence detector, which message types
were expected instead. Sinks are small and interchangeable (`AlertSink`):
`SyslogSink` (local /dev/log, one `@cee:` JSON object per datagram),
`JsonlSink` (an append-only JSON-lines file, fsynced per batch: the durable
one) and `StdoutSink` (human-readable or JSON, for the demo and plugin mode).

`AlertRouter` sits between the detector and the sinks: it drops allow-listed
alerts, de-duplicates repeats, applies a global rate limit, and keeps a
bounded retry buffer per sink so a dead sink neither raises into the
detection loop nor loses alerts while it is down. `submit()` returns whether
every *required* sink holds everything so far; the daemon checkpoints past a
line only then.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import socket
import stat
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence, TextIO, runtime_checkable

from lograven.errors import LogravenError
from lograven.masking import line_pattern
from lograven.osutil import whoami

if TYPE_CHECKING:
    from lograven.metrics import Metrics

log = logging.getLogger(__name__)

UNKNOWN_TYPE_ID = -1
"""`Alert.type_id` of a line no learned message type matched."""

DETECTORS = ("unknown_type", "sequence", "autoencoder")
"""Names a `DetectorHit` may carry."""

ALERT_FORMAT_VERSION = 1
"""Value of the `v` key in every alert JSON object; bumped on incompatible changes."""

COMPACT_MAX_BYTES = 2048
"""Default size bound of one compact alert (`Alert.to_compact_json`)."""

SYSLOG_MAX_BYTES = 2048
"""Default size bound of one whole syslog message (header, tag and JSON; SyslogSink): RFC 5424's
2048 octets, which relays that keep the old 2 KiB limit (rsyslog's `maxMessageSize="2k"`) accept."""

RELAY_ROOM = 128
"""Bytes of SYSLOG_MAX_BYTES left for what a relay adds to the message: the host name, or an RFC 5424
header (`1 2026-12-06T17:40:00.123456+00:00 host lograven 4711 - - ` instead of the RFC 3164 one)."""

MIN_COMPACT_BYTES = 512
"""Smallest `max_bytes` `Alert.to_compact_json` accepts; below it not even the skeleton fits."""

COMPACT_EXPECTED = 3
"""How many expected types the compact form keeps."""

ELLIPSIS = "\u2026"
"""Marks a string cut short to fit a size bound."""

SUPPRESS_REASONS = ("dedup", "rate_limit", "allowlist")
"""Values of the `reason` label of `lograven_alerts_suppressed_total`."""

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_SURROGATE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class DetectorHit:
    """One detector that fired on a line, with the evidence.

    - `unknown_type`: no learned message type matched; score and threshold are informational.
    - `sequence`: `score` is the probability the GRU gave the observed type and
      `threshold` the probability threshold (rule "p<0.02"); in top-k mode
      `score` is the observed type's rank and `threshold` is k (rule "rank>9");
      for a rare type (rule "count<5 (rare type)") `score` is the type's count in
      training and `threshold` the configured `rare_count`.
    - `autoencoder`: `score` is the reconstruction error, `threshold` the calibrated threshold.
    """

    name: str
    score: float
    threshold: float
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.name not in DETECTORS:
            raise ValueError(f"unknown detector name {self.name!r}; expected one of {', '.join(DETECTORS)}")

    def explain(self) -> str:
        """One human sentence saying why this detector fired (without the expected types)."""
        if self.name == "unknown_type":
            return "no learned message type matches"
        if self.name == "sequence":
            if self.rule and self.rule.startswith(END_RULE_PREFIX):
                return f"the stream ended after this line, which is improbable here ({self.rule[len(END_RULE_PREFIX):].strip()}: {_fmt(self.score)})"
            if self.rule and self.rule.endswith("(floor)"):
                return (
                    f"p={_fmt(self.score)} < {_fmt(self.threshold)} "
                    "(less probable than at any held-back normal step of training)"
                )
            if self.rule and self.rule.endswith(RARE_RULE_SUFFIX):
                seen = "once" if self.score == 1 else f"{_fmt(self.score)} times"
                return (
                    f"this message type was seen only {seen} in training (fewer than "
                    f"{_fmt(self.threshold)}: too few to learn where it belongs), and it was not the most expected type here"
                )
            if self.rule and self.rule.startswith("rank"):
                return f"rank {_fmt(self.score)} > {_fmt(self.threshold)} (observed type not in the top {_fmt(self.threshold)})"
            if self.rule and self.rule.startswith("p/p_train"):
                return (
                    f"p/p_train={_fmt(self.score)} < {_fmt(self.threshold)} "
                    "(this type is far less likely here than it is overall)"
                )
            return f"p={_fmt(self.score)} < {_fmt(self.threshold)}"
        if self.name == "autoencoder":
            return f"error {self.score:.2f} > threshold {self.threshold:.2f}"
        return f"score {_fmt(self.score)} vs threshold {_fmt(self.threshold)}"  # pragma: no cover


END_RULE_PREFIX = "stream end"  # a sequence hit on a stream's end (DetectorHit.rule "stream end p/p_train<0.1")
RARE_RULE_SUFFIX = "(rare type)"  # a sequence hit of the rare-type rule (DetectorHit.rule "count<5 (rare type)")


@dataclass(slots=True)
class Expected:
    """A message type the sequence model expected instead of the observed one."""

    type_id: int
    template: str
    p: float


@dataclass(slots=True)
class Alert:
    """One anomalous line and why it was flagged.

    `time` is the detection time as ISO-8601 UTC; `offset` is the byte offset
    of the line's start in `file`; `type_id` is -1 (`UNKNOWN_TYPE_ID`) when no
    message type matched, and then `template` is None.
    """

    id: str
    time: str
    host: str
    file: str
    offset: int
    stream: str
    line: str
    type_id: int
    template: str | None
    detectors: list[DetectorHit] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    model_version: str = ""
    previous_type_id: int | None = None  # the stream's previous message type (a sequence alert's transition)
    previous_template: str | None = None  # its template (an allowlist rule for the transition records it)
    read_from: str | None = None  # the file's name now, when the line was read after it was rotated (RawLine)
    pattern: str | None = None  # an unknown line's masked form, by the model's masks (line_pattern)
    line_truncated: bool = False  # the log line was longer than runtime.max_line_bytes: `line` is its start
    # "dedup" or "rate_limit": not sent (syslog, stdout), only kept in the record (alerts.jsonl); see AlertRouter
    suppressed: str | None = None
    program: str | None = None  # the line's program (its syslog tag without the pid), when its format gives one

    def dedup_key(self) -> tuple:
        """Same file + type + detectors. Unknown lines have no type: their masked line (line_pattern)
        stands in, so two different never-seen messages are two alerts, while a repeating one is
        deduplicated."""
        if self.is_stream_end:
            shape = END_RULE_PREFIX  # a stream that ended early is not the same alert as its last line's
        else:
            shape = self.line_pattern() if self.type_id == -1 else ""
        return (self.file, self.type_id, self.detector_names(), shape)

    def line_pattern(self) -> str:
        """The line's masked form: as the model masked it when the alert was made (its extra masks
        included), else by the built-in masks (alerts written before 2026-12-06)."""
        return self.pattern if self.pattern is not None else line_pattern(self.line)

    @property
    def is_stream_end(self) -> bool:
        """An alert on a stream that ended improbably early (not on its last line as such)."""
        return any((h.rule or "").startswith(END_RULE_PREFIX) for h in self.detectors)

    def detector_names(self) -> frozenset[str]:
        """The names of the detectors that fired."""
        return frozenset(h.name for h in self.detectors)

    def to_dict(self) -> dict[str, Any]:
        """Full detail, JSON-ready: every expected type, the whole line, no rounding."""
        return {
            "v": ALERT_FORMAT_VERSION,
            "id": _text(self.id),
            "time": _text(self.time),
            "host": _text(self.host),
            "program": None if self.program is None else _text(self.program),
            "file": _text(self.file),
            "offset": int(self.offset),
            "stream": _text(self.stream),
            "type_id": int(self.type_id),
            "template": None if self.template is None else _text(self.template),
            "detectors": [
                {"name": h.name, "score": _num(h.score), "threshold": _num(h.threshold), "rule": h.rule}
                for h in self.detectors
            ],
            "expected": [
                {"type_id": int(e.type_id), "template": _text(e.template), "p": _num(e.p)} for e in self.expected
            ],
            "model_version": _text(self.model_version),
            "previous_type_id": self.previous_type_id,
            "previous_template": None if self.previous_template is None else _text(self.previous_template),
            "read_from": None if self.read_from is None else _text(self.read_from),
            "pattern": None if self.pattern is None else _text(self.pattern),
            "line_truncated": bool(self.line_truncated),
            **({"suppressed": self.suppressed} if self.suppressed else {}),
            "line": _text(self.line),
        }

    def to_json(self) -> str:
        """`to_dict()` as one line of JSON (UTF-8 text, no NaN)."""
        return _dumps(self.to_dict())

    def to_compact_json(self, max_bytes: int = COMPACT_MAX_BYTES) -> str:
        """Compact JSON of at most `max_bytes` UTF-8 bytes, for syslog.

        Keeps at most three expected types and rounds numbers to six
        significant digits; if that is still too long the line is cut (ending
        in "…") and `"truncated": true` is added; an alert whose other fields
        alone are too long has them cut too. The result always parses.
        """
        if max_bytes < MIN_COMPACT_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_COMPACT_BYTES}, got {max_bytes}")
        line = _text(self.line)
        # Stages: (length limit of every other string, expected types kept, detectors kept).
        for limit, n_expected, n_detectors in (
            (None, COMPACT_EXPECTED, None),
            (256, COMPACT_EXPECTED, None),
            (64, COMPACT_EXPECTED, len(DETECTORS)),
            (64, 0, len(DETECTORS)),
            (16, 0, len(DETECTORS)),
        ):
            doc = self._compact_doc(limit, n_expected, n_detectors)
            cut = limit is not None or n_expected < min(len(self.expected), COMPACT_EXPECTED)
            if n_detectors is not None and len(self.detectors) > n_detectors:
                cut = True
            if cut:
                doc["truncated"] = True
            text = _dumps({**doc, "line": line})
            if _utf8_len(text) <= max_bytes:
                return text
            fitted = _fit_line({**doc, "truncated": True}, line, max_bytes)
            if fitted is not None:
                return fitted
        # Only pathological field contents get here; the skeleton always fits MIN_COMPACT_BYTES.
        return _dumps(
            {
                "v": ALERT_FORMAT_VERSION,
                "id": _clip(_text(self.id), 16),
                "time": _clip(_text(self.time), 32),
                "offset": int(self.offset),
                "type_id": int(self.type_id),
                "truncated": True,
            }
        )

    def _compact_doc(self, limit: int | None, n_expected: int, n_detectors: int | None) -> dict[str, Any]:
        def c(s: str) -> str:
            s = _text(s)
            return s if limit is None else _clip(s, limit)

        detectors = self.detectors if n_detectors is None else self.detectors[:n_detectors]
        doc: dict[str, Any] = {
            "v": ALERT_FORMAT_VERSION,
            "id": c(self.id),
            "time": c(self.time),
            "host": c(self.host),
            **({} if self.program is None else {"program": c(self.program)}),
            "file": c(self.file),
            "offset": int(self.offset),
            "stream": c(self.stream),
            "type_id": int(self.type_id),
            "template": None if self.template is None else c(self.template),
            "detectors": [_compact_hit(h, c) for h in detectors],
            "model_version": c(self.model_version),
        }
        if self.previous_type_id is not None:
            doc["previous_type_id"] = int(self.previous_type_id)
        if self.read_from is not None:
            doc["read_from"] = c(self.read_from)
        if self.line_truncated:
            doc["truncated"] = True  # the line is not whole (cut at runtime.max_line_bytes already)
        if n_expected and self.expected:
            doc["expected"] = [
                {"type_id": int(e.type_id), "template": c(e.template), "p": _round(e.p)}
                for e in self.expected[:n_expected]
            ]
        return doc

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        """Rebuild an alert from `to_dict()` output (for tools reading alerts.jsonl)."""
        return cls(
            id=d["id"],
            time=d["time"],
            host=d["host"],
            file=d["file"],
            offset=int(d["offset"]),
            stream=d["stream"],
            line=d["line"],
            type_id=int(d["type_id"]),
            template=d.get("template"),
            detectors=[
                DetectorHit(h["name"], _float(h["score"]), _float(h["threshold"]), h.get("rule"))
                for h in d.get("detectors", [])
            ],
            expected=[Expected(int(e["type_id"]), e["template"], _float(e["p"])) for e in d.get("expected", [])],
            model_version=d.get("model_version", ""),
            previous_type_id=d.get("previous_type_id"),
            previous_template=d.get("previous_template") if isinstance(d.get("previous_template"), str) else None,
            read_from=d.get("read_from"),
            pattern=d.get("pattern"),
            line_truncated=bool(d.get("line_truncated", False)),
            program=d.get("program"),
            suppressed=d.get("suppressed") if isinstance(d.get("suppressed"), str) else None,
        )


def new_alert_id(now: float | None = None) -> str:
    """A 16-character id that sorts by creation time: 45 bits of milliseconds, 35 random bits."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 45) - 1)
    rnd = int.from_bytes(os.urandom(5), "big") >> 5
    value = (ms << 35) | rnd
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(75, -1, -5))


def iso_utc(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z suffix, e.g. 2026-11-03T12:34:56.789Z."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def format_human(alert: Alert, max_line_chars: int = 400) -> str:
    """A readable multi-line summary: when, where, the line, and why each detector fired."""
    # a byte offset, said so: `file:N` reads as a line number (grep -n), which it is not
    if alert.file == "stdin":
        where = f"stdin message {alert.offset}"
    elif alert.read_from:
        where = f"{alert.file} (read from {alert.read_from}) byte {alert.offset}"
    else:
        where = f"{alert.file} byte {alert.offset}"
    head = f"{alert.time}  ALERT {alert.id}  {_printable(where)}"
    if alert.host:
        head += f"  host={_printable(alert.host)}"
    if alert.stream and alert.stream != alert.file:
        head += f"  stream={_printable(alert.stream)}"
    cut = "  [longer than runtime.max_line_bytes: its start]" if alert.line_truncated else ""
    lines = [head, f"  line: {_printable(_clip(alert.line, max_line_chars))}{cut}"]
    if alert.type_id == UNKNOWN_TYPE_ID or alert.template is None:
        lines.append("  type: UNKNOWN")
    else:
        lines.append(f"  type: #{alert.type_id} {_printable(_clip(alert.template, 200))}")
    for hit in alert.detectors:
        why = hit.explain()
        if hit.name == "sequence" and alert.expected:
            shown = ", ".join(
                f"#{e.type_id} {_printable(_clip(e.template, 80))} ({e.p:.2f})" for e in alert.expected[:COMPACT_EXPECTED]
            )
            more = f", {ELLIPSIS}" if len(alert.expected) > COMPACT_EXPECTED else ""
            why += f"; expected: {shown}{more}"
        lines.append(f"  {hit.name}: {why}")
    if alert.model_version:
        lines.append(f"  model: {_printable(alert.model_version)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sinks


def _write_fix(e: OSError, path: str) -> str:
    """What to do about a failed write to the alerts file (the alerts wait in memory meanwhile)."""
    where = os.path.dirname(os.path.abspath(path))
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f": free space on the file system of {where} (the alerts are kept in memory and written then)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f": let {whoami()} write it (its owner or mode), or set alerts.jsonl.path to a writable file"
    if e.errno == errno.EROFS:
        return f": {where} is on a read-only file system; remount it read-write or set alerts.jsonl.path elsewhere"
    if e.errno == errno.EISDIR:  # replaced by a directory while running (at start, check and the start say so)
        return (f": a directory is at {path}; move it away (the alerts are kept in memory and written then), "
                "or set alerts.jsonl.path to a file")
    return ""


class SinkError(Exception):
    """A sink could not deliver; `delivered` alerts at the front of the batch did get through."""

    def __init__(self, message: str, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go. `emit` delivers a whole batch or raises `SinkError`."""

    name: str
    required: bool  # the daemon checkpoints only past alerts every required sink accepted

    def emit(self, alerts: list[Alert]) -> None:
        """Deliver `alerts` in order; raise SinkError (with `delivered`) on failure."""
        ...

    def close(self) -> None:
        """Release the sink's resources; emitting afterwards may reopen them."""
        ...


SYSLOG_FACILITIES: dict[str, int] = {
    "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
"""Facility names accepted by `alerts.syslog.facility` (kern is reserved for the kernel)."""

SYSLOG_SEVERITIES: dict[str, int] = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
}  # fmt: skip
"""Severity names accepted by `alerts.syslog.severity`."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
STREAM_SEND_TIMEOUT = 1.0  # seconds a stream-type syslog socket may block one send before the sink fails
# A syslog daemon reading slowly: one emit waits at most SEND_BUDGET seconds for room in the full socket,
# and the router pauses PROGRESS_RETRY_SECONDS after such a partial delivery, so detection keeps at least
# half of its time while the backlog drains (at the reader's pace, the socket's queue filled in the pauses).
SEND_BUDGET = 0.2
PROGRESS_RETRY_SECONDS = 0.2
# The old connection is dead but a new one to the same path may work (journald restarted).
_RECONNECT_ERRNOS = {errno.ECONNREFUSED, errno.ENOTCONN, errno.EPIPE, errno.ENOENT, errno.EBADF, errno.EDESTADDRREQ}


def _dangling(path: str) -> bool:
    """A symbolic link whose target is not there (not one this user may not look through)."""
    if not os.path.islink(path):
        return False
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _parents(path: str) -> list[str]:
    """The directories above `path`, nearest first."""
    out, p = [], os.path.dirname(os.path.abspath(path))
    while p and p not in out:
        out.append(p)
        p = os.path.dirname(p)
    return out


def _not_a_socket(path: str) -> str:
    """Why connecting failed when something other than a socket is at `path` (ECONNREFUSED says little)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    return "" if stat.S_ISSOCK(mode) else " (it is not a socket: is the syslog daemon running and listening there?)"


class SyslogSink:
    """RFC 3164 datagrams to the local syslog socket, message `@cee: {compact JSON}`.

    Like glibc's syslog(3) the datagram carries no hostname (the syslog
    daemon adds it): `<PRI>Mon DD HH:MM:SS tag[pid]: @cee: {...}`. The socket
    is non-blocking: a syslog daemon that is not reading makes `emit` fail
    (and the router retry later) instead of stalling detection.
    """

    def __init__(
        self,
        socket_path: str = "/dev/log",
        facility: str = "user",
        severity: str = "warning",
        tag: str = "lograven",
        *,
        max_bytes: int = SYSLOG_MAX_BYTES,
        required: bool = False,
        name: str = "syslog",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if facility not in SYSLOG_FACILITIES:
            raise LogravenError(
                f"alerts.syslog.facility: unknown facility {facility!r}; use one of {', '.join(SYSLOG_FACILITIES)}"
            )
        if severity not in SYSLOG_SEVERITIES:
            raise LogravenError(
                f"alerts.syslog.severity: unknown severity {severity!r}; use one of {', '.join(SYSLOG_SEVERITIES)}"
            )
        if not tag or len(tag) > 32 or not set(tag) <= _TAG_CHARS:
            raise LogravenError(
                f"alerts.syslog.tag: {tag!r} is not a valid syslog tag; use 1-32 letters, digits, '_', '.' or '-'"
            )
        self.name = name
        self.required = required
        self.socket_path = socket_path
        self.tag = tag
        self.pri = SYSLOG_FACILITIES[facility] * 8 + SYSLOG_SEVERITIES[severity]
        self.max_bytes = max_bytes
        self._clock = clock
        self._sock: socket.socket | None = None

    def format(self, alert: Alert) -> bytes:
        """The datagram for one alert."""
        t = time.localtime(self._clock())
        stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        head = f"<{self.pri}>{stamp} {self.tag}[{os.getpid()}]: @cee: ".encode()
        # the whole message within max_bytes, with room for what a relay adds: a relay that cuts it
        # leaves invalid JSON (mmjsonparse fails)
        budget = max(MIN_COMPACT_BYTES, self.max_bytes - RELAY_ROOM - len(head))
        return head + alert.to_compact_json(budget).encode("utf-8")

    def emit(self, alerts: list[Alert]) -> None:
        """Send one datagram per alert; reconnect once if the socket went away.

        A syslog daemon that reads more slowly than alerts come fills the socket's small queue
        (net.unix.max_dgram_qlen, often 10 to 512 datagrams): a send then waits for room, as glibc's
        syslog(3) does, but for SEND_BUDGET seconds per call at most, so detection is never held long;
        what is left stays queued and is retried soon (the router retries at once after progress)."""
        deadline = time.monotonic() + SEND_BUDGET
        for i, alert in enumerate(alerts):
            data = self.format(alert)
            try:
                self._send(data, deadline)
            except TimeoutError as busy:
                raise SinkError(f"syslog {self.socket_path}: the syslog daemon is not reading fast enough "
                                f"(its socket is full); {len(alerts) - i} alert(s) wait", delivered=i) from busy
            except OSError as first:
                if first.errno not in _RECONNECT_ERRNOS:
                    self.close()
                    raise SinkError(f"syslog {self.socket_path}: {first.strerror or first}", delivered=i) from first
                self.close()
                try:
                    self._send(data, deadline)
                except OSError as second:
                    self.close()
                    raise SinkError(f"syslog {self.socket_path}: {second.strerror or second}{_not_a_socket(self.socket_path)}",
                                    delivered=i) from second

    def _send(self, data: bytes, deadline: float) -> None:
        if self._sock is None:
            self._sock = self._connect()
        if self._sock.type == socket.SOCK_STREAM:
            # As glibc's syslog(3) on a stream socket: each message ends with a NUL byte. A short
            # timeout instead of non-blocking sends, so a message is never cut in half silently.
            self._sock.sendall(data + b"\0")
            return
        try:
            self._sock.send(data)  # non-blocking: a free queue takes it at once
        except BlockingIOError:  # the queue is full: wait for room until the deadline
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("syslog socket full") from None
            self._sock.settimeout(left)
            try:
                self._sock.send(data)
            except (TimeoutError, BlockingIOError):
                raise TimeoutError("syslog socket full") from None
            finally:
                if self._sock is not None:
                    self._sock.setblocking(False)

    def _connect(self) -> socket.socket:
        """A datagram socket, as journald and rsyslog listen; a stream socket where the syslog daemon
        listens on one (some syslog-ng set-ups), as glibc falls back to."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setblocking(False)
            sock.connect(self.socket_path)
            return sock
        except OSError as e:
            sock.close()
            if e.errno != errno.EPROTOTYPE:
                raise
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(STREAM_SEND_TIMEOUT)
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the socket; the next emit reconnects."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class JsonlSink:
    """Appends one full JSON object per line and fsyncs after every batch: the durable sink.

    A batch that fails part-way (disk full) is cut back off the file, so the
    file stays line-aligned and the retried batch is not half-duplicated. The
    file is reopened when it was renamed or removed (logrotate without
    copytruncate).
    """

    record = True  # keeps the alerts de-duplication and the rate limit held back from the others (AlertRouter)

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, required: bool = True, name: str = "jsonl") -> None:
        self.name = name
        self.required = required
        self.path = os.fspath(path)
        self.fsync = fsync
        self._fd: int | None = None
        try:
            self._open()
        except OSError as e:
            dangling = next((p for p in _parents(self.path) if _dangling(p)), None)
            if dangling is not None:
                raise LogravenError(f"alerts.jsonl.path: cannot open {self.path} for appending: a part of its path, "
                                    f"{dangling}, is a symbolic link to nothing (an unmounted file system?); mount "
                                    "it, or choose another path") from e
            if e.errno == errno.ENXIO:
                try:
                    kind = os.stat(self.path).st_mode
                except OSError:
                    kind = 0
                if stat.S_ISFIFO(kind):
                    raise LogravenError(f"alerts.jsonl.path: {self.path} is a FIFO (named pipe) that nothing reads: "
                                        "start its reader first, or give a file path") from e
                if stat.S_ISSOCK(kind):  # /dev/stdout under systemd: the journal's stream socket
                    raise LogravenError(f"alerts.jsonl.path: {self.path} is a socket (under systemd, /dev/stdout is "
                                        "the journal's): give a file path; alerts.syslog sends alerts to syslog") from e
            if isinstance(e, (FileExistsError, NotADirectoryError)):  # a file where a directory goes
                raise LogravenError(f"alerts.jsonl.path: cannot open {self.path} for appending: a part of its path "
                                    f"is a file, not a directory ({e.filename or e}); choose another path") from e
            if isinstance(e, IsADirectoryError):  # a review: it had been told to make the directory writable
                raise LogravenError(f"alerts.jsonl.path: {self.path} is a directory, not a file; give the path of "
                                    f"a file (e.g. {os.path.join(self.path, 'alerts.jsonl')})") from e
            raise LogravenError(
                f"alerts.jsonl.path: cannot open {self.path} for appending ({e.strerror or e}); "
                f"make its directory writable by the user lograven runs as ({whoami()}) or choose another path"
            ) from e

    def _open(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, mode=0o750, exist_ok=True)
        created = not os.path.exists(self.path)
        # O_NONBLOCK: a FIFO there with no reader blocked the open for ever, SIGTERM included (ENXIO now);
        # writes block again (a FIFO's reader, /dev/stdout in a container)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o640)
        try:
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if created and self.fsync:
            # A new file's directory entry must be durable too, or a crash could lose the whole file.
            dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _reopen_if_moved(self) -> None:
        if self._fd is not None:
            try:
                on_disk = os.stat(self.path)
                mine = os.fstat(self._fd)
                if (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
                    return
            except FileNotFoundError:
                pass
            self.close()
        self._open()

    def emit(self, alerts: list[Alert]) -> None:
        """Append the batch and make it durable (fsync) before returning."""
        if not alerts:
            return
        data = "".join(a.to_json() + "\n" for a in alerts).encode("utf-8")
        start: int | None = None
        try:
            self._reopen_if_moved()
            assert self._fd is not None
            st = os.fstat(self._fd)
            start = st.st_size
            self._write_all(self._fd, data)
            if self.fsync and stat.S_ISREG(st.st_mode):  # a pipe or a terminal (/dev/stdout) cannot be synced: EINVAL
                os.fsync(self._fd)
        except OSError as e:
            self._cut_back(start)
            raise SinkError(f"jsonl {self.path}: {e.strerror or e}{_write_fix(e, self.path)}") from e

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def _cut_back(self, size: int | None) -> None:
        # Without this, a half-written line would glue onto the retried batch's first line.
        if self._fd is None or size is None:
            return
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == size:
                return  # a device or a pipe (/dev/full, a FIFO), or nothing written (an immutable file): nothing to cut
            os.ftruncate(self._fd, size)
        except OSError as e:  # pragma: no cover - shrinking a file we own should not fail
            log.warning("could not cut partial batch off %s: %s", self.path, e)

    def close(self) -> None:
        """Close the file; the next emit reopens it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


_STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def is_standard_output(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names this process's standard output: by name (/dev/stdout, or a link to it), or as
    the very pipe, socket or terminal that standard output is. By name also for `check --stdin`, whose
    own standard output is not the plugin's."""
    at = os.fspath(path)
    for _ in range(40):  # the links on the way, as far as they are names (/proc/self/fd/1 links to a pipe)
        at = "/" + os.path.normpath(os.path.abspath(at)).lstrip("/")  # `//dev/stdout` is /dev/stdout
        if at in _STDOUT_NAMES:
            return True
        try:
            target = os.readlink(at)
        except OSError:
            break
        at = os.path.join(os.path.dirname(at), target)
    try:
        mine, there = os.fstat(1), os.stat(path)
    except OSError:
        return False
    return not stat.S_ISREG(mine.st_mode) and (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


class StdoutSink:
    """Prints alerts to a text stream: a readable summary (`human=True`) or one JSON object per line."""

    def __init__(self, stream: TextIO | None = None, human: bool = True, *, required: bool = False, name: str = "stdout") -> None:
        self.name = name
        self.required = required
        self.human = human
        self._stream = stream

    def emit(self, alerts: list[Alert]) -> None:
        """Write and flush the batch."""
        stream = self._stream if self._stream is not None else sys.stdout  # looked up late: tests swap sys.stdout
        text = "".join(format_human(a) if self.human else a.to_json() + "\n" for a in alerts)
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as e:  # ValueError: stream closed
            raise SinkError(f"stdout: {e}") from e

    def close(self) -> None:
        """Nothing to release; the stream belongs to the caller."""


# --------------------------------------------------------------------------- router


@dataclass(slots=True)
class _SinkState:
    sink: AlertSink
    queue: deque[Alert] = field(default_factory=deque)
    failures: int = 0  # consecutive failed attempts
    retry_at: float = 0.0
    failed_since_log: int = 0
    dropped_since_log: int = 0
    last_error: str = ""


class _LogLimiter:
    """Allows one log record per key per interval."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True

    def reset(self, key: str) -> None:
        self._last.pop(key, None)


class AlertRouter:
    """Filters alerts (allowlist, de-duplication, rate limit) and delivers them to every sink with retry.

    A sink that fails keeps its undelivered alerts in a bounded queue
    (`retry_limit`, oldest dropped first, counted and logged) and is retried
    on the next `submit`/`flush` after a back-off (1 s doubling to
    `max_backoff_seconds`). Nothing a sink does raises out of `submit`.
    A caller that can wait stops giving it lines while `backlogged()` (a required
    sink's queue half full), so that its alerts are not dropped; once a required
    sink has dropped some, `lost_required` stays true (their lines must be read again).
    """

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        dedup_window_seconds: float = 300.0,
        max_per_minute: float | None = 60,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        suppress: Callable[[Alert], bool] | None = None,
        retry_limit: int = 10_000,
        max_backoff_seconds: float = 30.0,
        log_interval_seconds: float = 60.0,
    ) -> None:
        if dedup_window_seconds is None or dedup_window_seconds < 0:
            raise LogravenError(
                f"alerts.dedup_window_seconds: must be 0 (off) or a positive number of seconds, got {dedup_window_seconds!r}"
            )
        if max_per_minute is not None and max_per_minute < 0:
            raise LogravenError(
                f"alerts.max_per_minute: must be 0 (no limit) or a positive number, got {max_per_minute!r}"
            )
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"alert sink names must be unique, got {names}")
        self._sinks = [_SinkState(s) for s in sinks]
        self.dedup_window = float(dedup_window_seconds)
        self.max_per_minute = float(max_per_minute) if max_per_minute else None
        self._clock = clock
        self._metrics = metrics
        self._suppress = suppress
        self.retry_limit = retry_limit
        # a required sink dropped alerts (its retry queue overflowed): the lines they came from must not be
        # acknowledged by this process any more, so that a restart reads them again
        self.lost_required = False
        self.max_backoff = max_backoff_seconds
        self._logs = _LogLimiter(log_interval_seconds, clock)
        self._lock = threading.RLock()
        self._seen: dict[tuple[str, int, frozenset[str]], float] = {}  # dedup key -> time last emitted
        self._next_prune = clock() + self.dedup_window
        self._tokens = self.max_per_minute or 0.0
        self._tokens_at = clock()
        self._held_budget, self._held_at = float(self.RECORD_HELD_PER_MINUTE), clock()
        self._held_keys: dict[tuple, list] = {}  # message -> [start of its minute, held alerts recorded in it]
        if metrics is not None:
            for reason in SUPPRESS_REASONS:
                metrics.alerts_suppressed.labels(reason=reason)
            for st in self._sinks:
                metrics.alerts_emitted.labels(sink=st.sink.name)
                metrics.alerts_failed.labels(sink=st.sink.name)
                metrics.alerts_dropped.labels(sink=st.sink.name)
                metrics.alerts_pending.labels(sink=st.sink.name).set(0)

    @property
    def sinks(self) -> list[AlertSink]:
        """The sinks, in delivery order."""
        return [st.sink for st in self._sinks]

    def submit(self, alerts: Iterable[Alert], force: bool = False) -> bool:
        """Filter `alerts`, deliver the rest (and any queued retries) to every sink; never raises.
        `force`: try a failing required sink now, whatever its back-off (plugin mode: the shipper paces
        the retries); optional sinks keep theirs (a full syslog socket costs up to a second a try).

        Returns True when every required sink has accepted everything
        submitted so far, i.e. the lines behind these alerts may be checkpointed.
        """
        with self._lock:
            # What de-duplication or the rate limit holds back is not sent, but the record (alerts.jsonl)
            # keeps it, marked `suppressed`, within RECORD_HELD_PER_MINUTE: a burst of junk lines made
            # the rate limit swallow a real attack's alerts, and one decoy line of a message type
            # suppressed the real one after it for 5 minutes, both leaving no trace but a counter.
            admitted, kept = [], []
            for a in alerts:
                reason = self._admit(a)
                if reason is None:
                    admitted.append(a)
                    kept.append(a)
                elif reason != "allowlist" and self._hold(a, reason):
                    kept.append(a)
            for st in self._sinks:
                self._enqueue(st, kept if getattr(st.sink, "record", False) else admitted)
            self._deliver(force=False, required_now=force)
            return self._durable()

    def withdraw(self, alerts: Iterable[Alert]) -> None:
        """Take back the alerts of a line that was refused (plugin mode: the shipper sends it again and
        it is scored again): out of every retry queue that still holds them, so the resent line's alert
        is written once, not twice (a soak: the line that met a failing alerts file always alerted
        twice). Their de-duplication memory and rate-limit tokens are given back, so the resent line's
        alert goes to every sink again: a sink that took the first one (syslog) gets it twice, none
        misses it, however the sinks failed (a review: the memory kept for an alert syslog had taken
        held the resent line's alert back as a duplicate, and a required sink that had failed never
        got it)."""
        taken = [a for a in alerts]
        if not taken:
            return
        ids = {id(a) for a in taken}
        with self._lock:
            for st in self._sinks:
                if any(id(a) in ids for a in st.queue):
                    kept = [a for a in st.queue if id(a) not in ids]
                    st.queue.clear()
                    st.queue.extend(kept)
                if self._metrics is not None:
                    self._metrics.alerts_pending.labels(sink=st.sink.name).set(len(st.queue))
            for a in taken:
                if a.suppressed is not None:
                    continue  # held back: it took no dedup memory or token
                if self.dedup_window > 0:
                    self._seen.pop(a.dedup_key(), None)
                if self.max_per_minute is not None:
                    self._tokens = min(self.max_per_minute, self._tokens + 1.0)

    #: At most this many alerts held back from sending are written to the record per minute, and
    #: HELD_PER_MESSAGE of one message (its masked line) a minute: a storm of one message would otherwise
    #: write every repeat (600 MB a day), while with one a minute two decoy lines that mask like the real
    #: one (another source address) kept it out. Beyond that they are only counted, as before. A flood
    #: of more distinct alerts still hides what follows from the record: LogravenAlertsRateLimited says so.
    RECORD_HELD_PER_MINUTE = 600
    HELD_PER_MESSAGE = 20
    HELD_PER_KEY_SECONDS = 60.0

    def _hold(self, alert: Alert, reason: str) -> bool:
        """Whether an alert held back for `reason` still goes to the record sinks (marked suppressed)."""
        now = self._clock()
        # per message: the dedup key of a known type is its file, type and detectors, and two decoy lines
        # of the type would otherwise use its minute up before the real line came
        key = (*alert.dedup_key(), alert.line_pattern())
        minute = self._held_keys.get(key)
        if minute is not None and now - minute[0] < self.HELD_PER_KEY_SECONDS and minute[1] >= self.HELD_PER_MESSAGE:
            return False
        if len(self._held_keys) > 20_000:
            self._held_keys = {k: m for k, m in self._held_keys.items() if now - m[0] < self.HELD_PER_KEY_SECONDS}
        self._held_budget = min(self.RECORD_HELD_PER_MINUTE,
                                self._held_budget + max(0.0, now - self._held_at) * self.RECORD_HELD_PER_MINUTE / 60.0)
        self._held_at = now
        if self._held_budget < 1.0:
            return False
        self._held_budget -= 1.0
        if minute is None or now - minute[0] >= self.HELD_PER_KEY_SECONDS:
            self._held_keys[key] = [now, 1]
        else:
            minute[1] += 1
        alert.suppressed = reason
        return True

    def flush(self, force: bool = False) -> bool:
        """Retry queued alerts whose back-off has passed (all of them if `force`); returns durability."""
        with self._lock:
            self._deliver(force=force)
            return self._durable()

    def pending(self) -> int:
        """Alert deliveries waiting for retry, summed over sinks."""
        with self._lock:
            return sum(len(st.queue) for st in self._sinks)

    def durable(self) -> bool:
        """True when no required sink has undelivered alerts."""
        with self._lock:
            return self._durable()

    def backlog_limit(self, batch: int = 0) -> int:
        """How many alerts a required sink holds when `backlogged` (see there)."""
        return max(1, min(self.retry_limit // 2, self.retry_limit - 2 * batch))

    def backlogged(self, batch: int = 0) -> str | None:
        """The name of a required sink whose retry queue holds half of `retry_limit` or more (less with
        batches of `batch` lines so large that two of them would not fit: at least one), else None: the
        caller stops scoring new lines until it delivers (the room left takes what is in hand)."""
        at = self.backlog_limit(batch)
        with self._lock:
            return next((st.sink.name for st in self._sinks if st.sink.required and len(st.queue) >= at), None)

    def take_over(self, old: AlertRouter) -> int:
        """Adopt what `old` (the router this one replaces on a reload) has not delivered yet: each of its
        sinks' retry queue goes to this router's sink of the same name, ahead of anything new, and its
        de-duplication memory and rate-limit budget carry over, so a reload neither loses alerts nor
        repeats them. Alerts queued for a sink the new configuration no longer has are dropped, counted
        and logged. Returns how many alerts moved."""
        mine = {st.sink.name: st for st in self._sinks}
        moved = 0
        with old._lock, self._lock:
            for st in old._sinks:
                if not st.queue:
                    continue
                target = mine.get(st.sink.name)
                if target is None:
                    # (on purpose: a failing sink turned off; its alerts' lines stay acknowledged as the others take them)
                    log.error("alert sink %s is no longer configured: %d undelivered alert(s) for it are dropped",
                              st.sink.name, len(st.queue))
                    if self._metrics is not None:
                        self._metrics.alerts_dropped.labels(sink=st.sink.name).inc(len(st.queue))
                    st.queue.clear()
                    continue
                n = len(st.queue)
                target.queue.extendleft(reversed(st.queue))
                st.queue.clear()
                moved += n
                self._enqueue(target, [])  # apply this router's retry limit
                target.last_error = st.last_error
            self.lost_required |= old.lost_required
            self._seen.update(old._seen)
            if self.max_per_minute is not None and old.max_per_minute is not None:
                self._tokens = min(self._tokens, old._tokens)
                self._tokens_at = old._tokens_at
        if moved:
            log.info("%d undelivered alert(s) carried over to the reloaded alert sinks", moved)
        return moved

    def close(self) -> int:
        """Try once more to deliver what is queued, then close every sink. Returns how many alerts are
        left undelivered where it matters: in a required sink, or in any sink when no required sink
        took them all."""
        lost = 0
        with self._lock:
            self._deliver(force=True)
            kept = any(o.sink.required and not o.queue for o in self._sinks)  # a durable copy of every alert
            for st in self._sinks:
                if st.queue and (st.sink.required or not kept):
                    lost = max(lost, len(st.queue))
                    log.error(
                        "alert sink %s closed with %d undelivered alert(s): %s",
                        st.sink.name, len(st.queue), st.last_error,
                    )
                elif st.queue:  # optional: the required sinks (alerts.jsonl) have them
                    log.warning(
                        "alert sink %s closed with %d undelivered alert(s) (%s); they are in the required sinks. "
                        "Turn it off (alerts.%s.enabled: false) if it is not wanted here",
                        st.sink.name, len(st.queue), st.last_error, st.sink.name,
                    )
                try:
                    st.sink.close()
                except Exception:  # noqa: BLE001 - closing must not stop the others
                    log.exception("closing alert sink %s failed", st.sink.name)
        return lost

    # -- filtering

    def _admit(self, alert: Alert) -> str | None:
        """None when the alert is to be sent, else why not: allowlist, dedup or rate_limit."""
        if self._suppress is not None:
            try:
                allowed = self._suppress(alert)
            except Exception:  # noqa: BLE001 - a broken allowlist must not hide alerts
                allowed = False
                if self._logs.allow("allowlist-error"):
                    log.exception("allowlist check failed; delivering the alert anyway")
            if allowed:
                self._count_suppressed("allowlist")
                return "allowlist"
        now = self._clock()
        key = alert.dedup_key()
        if self.dedup_window > 0:
            if now >= self._next_prune:
                self._prune(now)
            last = self._seen.get(key)
            if last is not None and now - last < self.dedup_window:
                self._count_suppressed("dedup")
                return "dedup"
        if self.max_per_minute is not None:
            self._refill(now)
            if self._tokens < 1.0:
                self._count_suppressed("rate_limit")
                if self._logs.allow("rate-limit"):
                    log.warning("alert rate limit of %g per minute reached; suppressing alerts (alerts.jsonl keeps "
                                "them, marked suppressed)", self.max_per_minute)
                return "rate_limit"
            self._tokens -= 1.0
        if self.dedup_window > 0:
            self._seen[key] = now
        return None

    def _refill(self, now: float) -> None:
        assert self.max_per_minute is not None
        elapsed = max(0.0, now - self._tokens_at)
        self._tokens = min(self.max_per_minute, self._tokens + elapsed * self.max_per_minute / 60.0)
        self._tokens_at = now

    def _prune(self, now: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if now - t < self.dedup_window}
        self._next_prune = now + self.dedup_window

    def _count_suppressed(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.alerts_suppressed.labels(reason=reason).inc()

    # -- delivery

    def _enqueue(self, st: _SinkState, alerts: list[Alert]) -> None:
        st.queue.extend(alerts)
        excess = len(st.queue) - self.retry_limit
        if excess > 0:
            # the alerts held back from sending go first (oldest first), then the oldest sent ones
            held = sum(1 for a in st.queue if a.suppressed)
            if held:
                cut = min(held, excess)
                kept: deque[Alert] = deque()
                for a in st.queue:
                    if a.suppressed and cut:
                        cut -= 1
                    else:
                        kept.append(a)
                st.queue = kept
            for _ in range(len(st.queue) - self.retry_limit):
                st.queue.popleft()
            st.dropped_since_log += excess
            if self._metrics is not None:
                self._metrics.alerts_dropped.labels(sink=st.sink.name).inc(excess)
            first_loss = st.sink.required and not self.lost_required
            self.lost_required |= st.sink.required
            if self._logs.allow(f"drop:{st.sink.name}") or first_loss:
                log.error(
                    "alert sink %s has been failing (%s); its retry queue is full (%d), dropped %d alert(s) "
                    "(those held back from sending first, then the oldest)%s",
                    st.sink.name, st.last_error, self.retry_limit, st.dropped_since_log,
                    "; the sink holds back the checkpoint, which stays where it is until lograven restarts: "
                    "the restart reads those alerts' lines again" if st.sink.required else "",
                )
                st.dropped_since_log = 0

    def _deliver(self, force: bool, required_now: bool = False) -> None:
        now = self._clock()
        for st in self._sinks:
            if st.queue and (force or now >= st.retry_at or (required_now and st.sink.required)):
                self._attempt(st, now)
            if self._metrics is not None:
                self._metrics.alerts_pending.labels(sink=st.sink.name).set(len(st.queue))

    def _attempt(self, st: _SinkState, now: float) -> None:
        batch = list(st.queue)
        name = st.sink.name
        try:
            st.sink.emit(batch)
        except Exception as e:  # noqa: BLE001 - a sink must never break detection
            delivered = e.delivered if isinstance(e, SinkError) else 0
            delivered = min(max(delivered, 0), len(batch))
            for _ in range(delivered):
                st.queue.popleft()
            st.failed_since_log += 1
            now = self._clock()  # after the attempt, which may have waited (SEND_BUDGET): the pause is from its end
            if delivered:  # progress (a slow reader, not a dead one): retry soon, no longer back-off
                st.failures = 1
                st.retry_at = now + PROGRESS_RETRY_SECONDS
            else:
                st.failures += 1
                st.retry_at = now + min(self.max_backoff, 2.0 ** (st.failures - 1))
            st.last_error = str(e) or type(e).__name__
            if self._metrics is not None:
                self._metrics.alerts_failed.labels(sink=name).inc()
                if delivered:
                    self._metrics.alerts_emitted.labels(sink=name).inc(delivered)
            if self._logs.allow(f"fail:{name}"):
                log.warning(
                    "alert sink %s failed %d time(s) (%s); %d alert(s) queued for retry",
                    name, st.failed_since_log, st.last_error, len(st.queue),
                    exc_info=not isinstance(e, SinkError),
                )
                st.failed_since_log = 0
            return
        st.queue.clear()
        if self._metrics is not None:
            self._metrics.alerts_emitted.labels(sink=name).inc(len(batch))
        if st.failures:
            log.info("alert sink %s recovered after %d failed attempt(s); delivered %d alert(s)", name, st.failures, len(batch))
            self._logs.reset(f"fail:{name}")
            st.failures = 0
            st.failed_since_log = 0
            st.retry_at = 0.0

    def _durable(self) -> bool:
        return all(not st.queue for st in self._sinks if st.sink.required)


# --------------------------------------------------------------------------- helpers


def _num(x: float) -> float | None:
    """JSON has no NaN/Infinity: non-finite numbers become null."""
    x = float(x)
    return x if math.isfinite(x) else None


def _round(x: float) -> float | None:
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _compact_hit(h: DetectorHit, c: Callable[[str], str]) -> dict[str, Any]:
    d: dict[str, Any] = {"name": h.name, "score": _round(h.score), "threshold": _round(h.threshold)}
    if h.rule:
        d["rule"] = c(h.rule)
    return d


def _text(s: str) -> str:
    """`s` made encodable as UTF-8 (lone surrogates from undecodable bytes become U+FFFD)."""
    if not isinstance(s, str):
        s = str(s)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", s)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: max(n - 1, 0)] + ELLIPSIS


# Characters json.dumps leaves raw with ensure_ascii=False that a terminal or a JavaScript reader acts
# on: DEL, the C1 controls (U+009B is CSI: a logged line could clear the screen of whoever reads the
# alert with cat or journalctl), and the line and paragraph separators.
_RAW_CONTROLS = re.compile("[\u007f-\u009f\u2028\u2029]")


def _dumps(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _fit_line(doc: dict[str, Any], line: str, max_bytes: int) -> str | None:
    """Longest `line` prefix (plus "…") that keeps `doc` within max_bytes; None if not even "…" fits."""

    def render(k: int) -> str:
        return _dumps({**doc, "line": line[:k] + ELLIPSIS})

    best = render(0)
    if _utf8_len(best) > max_bytes:
        return None
    lo, hi = 0, min(len(line), max_bytes)  # every character costs at least one byte
    while lo < hi:
        mid = (lo + hi + 1) // 2
        text = render(mid)
        if _utf8_len(text) <= max_bytes:
            lo, best = mid, text
        else:
            hi = mid - 1
    return best


# C0, DEL and C1 (0x9b is a one-byte CSI on some terminals).
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), *range(0x7F, 0xA0))}
_CONTROL[ord("\t")] = "\\t"


def _printable(s: str) -> str:
    """Control characters escaped, so a log line cannot drive the terminal."""
    return s.translate(_CONTROL)
