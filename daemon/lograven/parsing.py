"""Raw log line -> LogRecord.

Three pieces, used in this order on every line:

- `decode_line` turns the bytes of one line into text (never raises; invalid
  UTF-8 and NUL bytes become U+FFFD, over-long lines are truncated).
- `Parser` splits the text into timestamp, host, program, pid and message
  according to a configured format (`syslog`, `iso`, `raw`, `regex:<pattern>`).
  It never raises on line content: a line the format does not describe
  becomes a record with ``parsed=False`` and the whole line as its message.
- `StreamKey` names the stream a record belongs to (the file, the program in
  that file, or a value captured from the line), which is the unit of
  sequence state downstream.

This runs on every line, so the hot paths use precompiled regular
expressions, integer arithmetic instead of ``strptime`` and small caches.
"""
from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from lograven.errors import LogravenError, quoted

__all__ = ["LogRecord", "Parser", "StreamKey", "decode_line", "misread_timestamps", "mostly_unparsed",
           "regex_stream_spec"]


@dataclass(slots=True)
class LogRecord:
    """One parsed log line. Models learn from `message` only."""

    timestamp: datetime | None
    host: str | None
    program: str | None
    pid: int | None
    message: str
    stream: str | None = None  # from a regex format's `stream` group
    parsed: bool = True  # False: the format did not match, the whole line became the message


def posix_seconds(ts: datetime | None) -> float:
    """A parsed timestamp as POSIX seconds; NaN without one (streams' silences are measured in these)."""
    return ts.timestamp() if ts is not None else math.nan


# --------------------------------------------------------------------------
# Bytes -> text


def decode_line(raw: bytes, max_bytes: int = 65536) -> tuple[str, bool]:
    """Decode one line's bytes to text; returns ``(text, truncated)``.

    A trailing line terminator (``\\r``, ``\\n`` or ``\\r\\n``) is dropped.
    Invalid UTF-8 and NUL bytes become U+FFFD, so this never raises on line
    content. A line longer than `max_bytes` is cut to at most `max_bytes`
    bytes, backing off to the start of a multi-byte character rather than
    splitting it.
    """
    if raw[-1:] == b"\n":
        raw = raw[:-1]
    if raw[-1:] == b"\r":
        raw = raw[:-1]
    truncated = len(raw) > max_bytes
    if truncated:
        if max_bytes < 1:
            raise LogravenError(
                f"max_line_bytes is {max_bytes}: set runtime.max_line_bytes to a positive "
                "number of bytes (default 65536)"
            )
        cut = max_bytes
        # raw[cut] is the first byte dropped; if it continues a character that
        # started before the cut, move the cut to that character's first byte.
        floor = max(0, max_bytes - 3)
        while cut > floor and (raw[cut] & 0xC0) == 0x80:
            cut -= 1
        raw = raw[:cut]
    text = raw.decode("utf-8", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text, truncated


# --------------------------------------------------------------------------
# Timestamps

_MONTHS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
    "Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}  # fmt: skip
_MONTH_ALT = "|".join(_MONTHS)

# ISO 8601 date-time: groups year, month, day, hour, minute, second, fraction, zone.
_ISO_TS = (
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?"
    r"([Zz]|[+-]\d\d(?::?\d\d)?)?"
)
# The same, as one group: what the line formats capture.
_ISO_TS_TEXT = (
    r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:[Zz]|[+-]\d\d(?::?\d\d)?)?)"
)
# RFC 3164 "Mmm dd hh:mm:ss" (day space- or zero-padded; some relays add a fraction):
# groups month, day, hour, minute, second, fraction.
_BSD_TS = rf"({_MONTH_ALT}) +(\d\d?) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?"

_ISO_TS_RE = re.compile(_ISO_TS + r"\Z", re.ASCII)
_BSD_TS_RE = re.compile(_BSD_TS + r"\Z", re.ASCII)
_COMPACT_TS_RE = re.compile(r"(\d\d)(\d\d)(\d\d) (\d\d)(\d\d)(\d\d)\Z", re.ASCII)  # HDFS: 081109 203518
_BGL_TS_RE = re.compile(  # BGL: 2005-06-03-15.42.50.675872
    r"(\d{4})-(\d\d)-(\d\d)-(\d\d)\.(\d\d)\.(\d\d)(?:\.(\d+))?\Z", re.ASCII
)

_UTC_NAMES = frozenset(("Z", "z", "+00:00", "-00:00", "+0000", "-0000", "+00", "-00"))
_zones: dict[str, tzinfo | None] = {}


def _zone(text: str) -> tzinfo | None:
    """tzinfo for an ISO offset ("Z", "+01:00", "+0100", "+01"); None if impossible."""
    try:
        return _zones[text]
    except KeyError:
        pass
    zone: tzinfo | None
    if text in _UTC_NAMES:
        zone = timezone.utc
    else:
        digits = text[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        try:
            zone = timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))
        except ValueError:  # offsets of 24 h or more
            zone = None
    # Bounded: at most two signs x 10^4 digit strings, in three spellings.
    _zones[text] = zone
    return zone


def _micros(fraction: str | None) -> int:
    """Microseconds from the digits after the decimal separator (extra digits dropped)."""
    if not fraction:
        return 0
    return int(fraction[:6].ljust(6, "0"))


def _iso_datetime(
    year: str, month: str, day: str, hour: str, minute: str, second: str,
    fraction: str | None, zone_text: str | None,
) -> datetime | None:  # fmt: skip
    """Build a datetime from ISO regex groups; None when the date or offset is impossible."""
    zone = None
    if zone_text is not None:
        zone = _zone(zone_text)
        if zone is None:
            return None
    sec = int(second)
    if sec == 60:  # a leap second: datetime cannot hold it
        sec = 59
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), sec, _micros(fraction), zone
        )
    except ValueError:
        return None


def _iso_slow(text: str) -> datetime | None:
    """A datetime for an ISO 8601 timestamp (`_ISO_TS_RE`'s forms); None otherwise."""
    m = _ISO_TS_RE.match(text)
    return None if m is None else _iso_datetime(*m.groups())


if sys.version_info >= (3, 11):

    def _iso_from_text(text: str) -> datetime | None:
        """A datetime for text that matched `_ISO_TS_TEXT`; None when impossible."""
        # fromisoformat is ~7x faster and agrees with _iso_slow on what it
        # accepts; the rest (lowercase t/z, leap seconds, bad dates) goes slow.
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return _iso_slow(text)

else:  # 3.10's fromisoformat knows neither "Z" nor arbitrary fractions
    _iso_from_text = _iso_slow


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _year_by_month(hint: datetime) -> tuple[int, ...]:
    """For each month 1..12 (index 0 unused), the year a year-less timestamp falls in.

    A month up to one month ahead of the hint is taken as the near future
    (clock skew between hosts, or a Jan 1 line read at Dec 31 23:59:59);
    anything further ahead is last year's (a Dec 31 line read on Jan 1).
    """
    year, now = hint.year, hint.month
    years = [year]
    for month in range(1, 13):
        if month == 1 and now == 12:
            years.append(year + 1)
        elif month > now + 1:
            years.append(year - 1)
        else:
            years.append(year)
    return tuple(years)


def _pid(text: str | None) -> int | None:
    """The pid as int when it is a plain (and sane-length) number, else None."""
    if text and len(text) <= 10 and text.isdecimal():
        return int(text)
    return None


# --------------------------------------------------------------------------
# Line formats

# After the host: an optional "tag[pid]:" or "tag:" then the message. The tag
# is anything without blanks, brackets or colons: postfix/smtpd, rpc.statd,
# gdm-binary, sshd(pam_unix). A tag not followed by ": " (as in
# "syslogd 1.4.1: restart.") leaves the whole rest as the message.
_TAG_MSG = r"(?:([^\s\[\]:]+)(?:\[([^\]]*)\])?:(?: |\Z))?(.*)"
_HOST_TAG_MSG = r" +(\S+)(?: +" + _TAG_MSG + r")?"

# RFC 3164, optionally with <PRI>: groups timestamp text, its 6 parts, host, tag, pid, message.
_RFC3164_RE = re.compile(r"(?:<\d{1,3}>)?(" + _BSD_TS + ")" + _HOST_TAG_MSG, re.ASCII | re.DOTALL)
# rsyslog's high-precision file format: ISO timestamp, host, tag, message.
_ISO_SYSLOG_RE = re.compile(r"(?:<\d{1,3}>)?" + _ISO_TS_TEXT + _HOST_TAG_MSG, re.ASCII | re.DOTALL)
# A line that lacked the host: "kernel: msg" where the host should be.
_TAG_MSG_RE = re.compile(_TAG_MSG, re.ASCII | re.DOTALL)

# RFC 5424 structured data: "-" or one or more [id param="value" ...] elements,
# where values may hold escaped \" \] \\ and, leniently, unescaped "]".
_SD = r'(?:\[(?:[^\]\\"]|\\.|"(?:[^"\\]|\\.)*")*\])+'
# RFC 5424 (PRI optional: rsyslog's RFC 5424 file templates omit it):
# groups timestamp (None if "-" or malformed), host, app, procid, msgid, structured data, message.
_RFC5424_RE = re.compile(
    r"(?:<\d{1,3}>)?1 (?:" + _ISO_TS_TEXT + r"|-|\d{4}-\S+) (\S+) (\S+) (\S+) (\S+) "
    r"(?:(-|" + _SD + r")(?: (.*)|\Z)|(.*))",
    re.ASCII | re.DOTALL,
)

# `iso` format: timestamp, blanks, message.
_ISO_LINE_RE = re.compile(_ISO_TS_TEXT + r"(?:\s+(.*)|\Z)", re.ASCII | re.DOTALL)

_REGEX_PREFIX = "regex:"
_REGEX_FIELDS = ("timestamp", "host", "program", "pid", "stream")


def _local_now() -> datetime:
    return datetime.now()


class Parser:
    """Parses text lines of one configured format into `LogRecord`s.

    `fmt` is one of:

    - ``syslog``: RFC 3164 (``Jun  9 06:06:20 host prog[pid]: msg``, optional
      ``<PRI>``), RFC 5424 (with or without ``<PRI>``) and rsyslog's
      high-precision format (``2024-03-01T12:00:00.123456+01:00 host prog: msg``),
      recognised per line.
    - ``iso``: an ISO 8601 timestamp, then the message.
    - ``raw``: the whole line is the message.
    - ``regex:<pattern>``: a regular expression matched at the start of the
      line, with a ``message`` named group and optionally ``timestamp``,
      ``host``, ``program``, ``pid`` and ``stream``; other groups are ignored.

    RFC 3164 timestamps carry no year: it is `year_hint()`'s year (default:
    the local clock; consulted at most once a second), except that a month
    more than one month ahead of the hint is last year's (a Dec 31 line read
    on Jan 1) and a January line read in December is next year's. Feb 29 in
    a common year goes to the latest leap year before it. They are naive
    local times; ISO/RFC 5424 timestamps with an offset are
    timezone-aware. An impossible date (Feb 30, hour 25) gives
    ``timestamp=None`` and keeps the other fields.

    `parse` never raises on line content. Its caches are replaced atomically,
    so sharing a parser between threads is safe, if pointless under the GIL.
    """

    def __init__(self, fmt: str, *, year_hint: Callable[[], datetime] | None = None) -> None:
        self.fmt = fmt
        self._year_hint = year_hint if year_hint is not None else _local_now
        self._years: tuple[int, ...] = ()
        self._years_expire = float("-inf")
        # Consecutive lines often share their timestamp text: (text, datetime).
        self._last_bsd: tuple[str, datetime | None] = ("", None)
        self._last_iso: tuple[str, datetime | None] = ("", None)
        self._regex: re.Pattern[str] | None = None
        self._regex_fields: tuple[str, ...] = ()
        self._impl: Callable[[str], LogRecord]
        # A regex format's timestamp group: how many lines gave it text, how many of those texts
        # were no timestamp lograven reads, and the first such text (see `misread_timestamps`).
        self.timestamps_read = 0
        self.timestamps_misread = 0
        self.misread_example: str | None = None

        if fmt == "syslog":
            self._impl = self._parse_syslog
        elif fmt == "iso":
            self._impl = self._parse_iso
        elif fmt == "raw":
            self._impl = self._parse_raw
        elif fmt.startswith(_REGEX_PREFIX):
            self._regex = self._compile_format_regex(fmt)
            self._regex_fields = tuple(f for f in _REGEX_FIELDS if f in self._regex.groupindex)
            self._impl = self._parse_regex
        else:
            hint = ""
            if fmt.lower() in ("rfc3164", "rfc5424", "bsd", "rsyslog"):
                hint = " ('syslog' covers RFC 3164, RFC 5424 and rsyslog's high-precision format)"
            raise LogravenError(
                f"unknown log format {quoted(fmt)}: write one of 'syslog', 'iso', 'raw' or "
                f"'regex:<pattern>' with a (?P<message>...) group{hint}"
            )

    def __repr__(self) -> str:
        return f"Parser({self.fmt!r})"

    def parse(self, line: str) -> LogRecord:
        """Split one decoded line (no trailing newline) into a `LogRecord`; never raises."""
        return self._impl(line)

    # -- formats ---------------------------------------------------------

    @staticmethod
    def _compile_format_regex(fmt: str) -> re.Pattern[str]:
        pattern = fmt[len(_REGEX_PREFIX):]
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise LogravenError(
                f"log format {quoted(fmt)} is not a valid regular expression ({exc}): "
                "fix the pattern after 'regex:' (Python re syntax)"
            ) from None
        if "message" not in regex.groupindex:
            raise LogravenError(
                f"log format {quoted(fmt)} has no group named 'message': wrap the part of the "
                "line the models should learn from in (?P<message>...), e.g. "
                "'regex:(?P<timestamp>\\S+ \\S+) (?P<message>.*)'"
            )
        return regex

    @staticmethod
    def _parse_raw(line: str) -> LogRecord:
        return LogRecord(None, None, None, None, line)

    def _parse_iso(self, line: str) -> LogRecord:
        m = _ISO_LINE_RE.match(line)
        if m is None:
            return LogRecord(None, None, None, None, line, None, False)
        text, msg = m.groups()
        return LogRecord(self._iso_text(text), None, None, None, msg or "")

    def _parse_syslog(self, line: str) -> LogRecord:
        m = _RFC3164_RE.match(line)
        if m is not None:
            text, mon, day, hh, mm, ss, frac, host, tag, pid, msg = m.groups()
            last = self._last_bsd
            if text == last[0]:
                ts = last[1]
            else:
                ts = self._bsd_datetime(mon, day, hh, mm, ss, frac)
                self._last_bsd = (text, ts)
            if host[-1] == ":":
                return self._hostless(ts, line, m.start(8))
            return LogRecord(ts, host, tag, _pid(pid), msg or "")

        m = _RFC5424_RE.match(line)
        if m is not None:
            ts_text, host, app, procid, _msgid, sd, msg, unstructured = m.groups()
            if sd is None:  # malformed structured data: keep it in the message
                msg = unstructured
            elif not msg and sd != "-":  # nothing but structured data: learn from that
                msg = sd
            elif msg and msg[0] == "\ufeff":  # RFC 5424 marks UTF-8 messages with a BOM
                msg = msg[1:]
            return LogRecord(
                None if ts_text is None else self._iso_text(ts_text),
                None if host == "-" else host,
                None if app == "-" else app,
                _pid(procid),
                msg or "",
            )

        m = _ISO_SYSLOG_RE.match(line)
        if m is not None:
            text, host, tag, pid, msg = m.groups()
            ts = self._iso_text(text)
            if host[-1] == ":":
                return self._hostless(ts, line, m.start(2))
            return LogRecord(ts, host, tag, _pid(pid), msg or "")

        return LogRecord(None, None, None, None, line, None, False)

    @staticmethod
    def _hostless(ts: datetime | None, line: str, pos: int) -> LogRecord:
        """A syslog line whose host field is really the tag ("... 06:06:20 kernel: msg")."""
        m = _TAG_MSG_RE.match(line, pos)
        assert m is not None  # _TAG_MSG matches any string
        tag, pid, msg = m.groups()
        return LogRecord(ts, None, tag, _pid(pid), msg)

    def _parse_regex(self, line: str) -> LogRecord:
        assert self._regex is not None
        m = self._regex.match(line)
        if m is None:
            return LogRecord(None, None, None, None, line, None, False)
        ts: datetime | None = None
        host: str | None = None
        program: str | None = None
        pid: int | None = None
        stream: str | None = None
        for field in self._regex_fields:
            value = m.group(field)
            if not value:
                continue
            if field == "timestamp":
                ts = self.parse_timestamp(value)
                self.timestamps_read += 1
                if ts is None:
                    self.timestamps_misread += 1
                    if self.misread_example is None:
                        self.misread_example = value[:40]
            elif field == "host":
                host = value
            elif field == "program":
                program = value
            elif field == "pid":
                pid = _pid(value)
            else:
                stream = value
        return LogRecord(ts, host, program, pid, m.group("message") or "", stream)

    # -- timestamps ------------------------------------------------------

    def parse_timestamp(self, text: str) -> datetime | None:
        """Read a timestamp in any format lograven knows; None if none fits.

        Tries ISO 8601, RFC 3164 (``Jun  9 06:06:20``, year from the hint),
        HDFS's ``081109 203518`` (``%y%m%d %H%M%S``) and BGL's
        ``2005-06-03-15.42.50.675872``.
        """
        text = text.strip()
        if _ISO_TS_RE.match(text) is not None:
            return _iso_from_text(text)
        m = _BSD_TS_RE.match(text)
        if m is not None:
            return self._bsd_datetime(*m.groups())
        m = _COMPACT_TS_RE.match(text)
        if m is not None:
            yy = int(m.group(1))
            # POSIX %y: 69-99 are 1969-1999, 00-68 are 2000-2068.
            year = str(yy + (1900 if yy >= 69 else 2000))
            return _iso_datetime(year, *m.groups()[1:], None, None)
        m = _BGL_TS_RE.match(text)
        if m is not None:
            return _iso_datetime(*m.groups(), None)
        return None

    def _iso_text(self, text: str) -> datetime | None:
        """The datetime for text that matched `_ISO_TS_TEXT`, cached for repeats."""
        last = self._last_iso
        if text == last[0]:
            return last[1]
        ts = _iso_from_text(text)
        self._last_iso = (text, ts)
        return ts

    def _bsd_datetime(
        self, mon: str, day: str, hh: str, mm: str, ss: str, frac: str | None
    ) -> datetime | None:
        """A naive datetime for RFC 3164 parts, the year chosen from the hint."""
        now = time.monotonic()
        if now >= self._years_expire:
            self._years = _year_by_month(self._year_hint())
            self._years_expire = now + 1.0
            self._last_bsd = ("", None)
        month = _MONTHS[mon]
        year = self._years[month]
        d = int(day)
        if month == 2 and d == 29:
            while not _is_leap(year):  # Feb 29 in a common year: the latest leap year before
                year -= 1
        sec = int(ss)
        if sec == 60:
            sec = 59
        try:
            return datetime(year, month, d, int(hh), int(mm), sec, _micros(frac))
        except ValueError:
            return None


# --------------------------------------------------------------------------
# Streams


def mostly_unparsed(unparsed: int, total: int) -> bool:
    """Whether so many lines did not match the format that the format is likely the wrong one."""
    return total > 0 and unparsed > total / 2


def misread_timestamps(parser: Parser) -> str | None:
    """What to say when a regex format's timestamp group held, on most lines it matched, text that is no
    timestamp lograven reads, or None. Matching alone misses a pattern whose groups fall in the wrong
    places (a BGL pattern matches HDFS lines, its timestamp group holding 'INFO' and its message group
    the wrong words); a timestamp in a form lograven does not read says the same. The caller adds the fix."""
    n, bad = parser.timestamps_read, parser.timestamps_misread
    if n < 3 or not mostly_unparsed(bad, n):
        return None
    return (f"the timestamp group of format {_clip(parser.fmt, 60)!r} held no timestamp lograven reads in "
            f"{bad} of {n} lines (e.g. {parser.misread_example!r}): either the pattern's groups are in the wrong "
            "places (check it against a line: the message group then holds the wrong words), or the timestamps "
            "are in a form lograven does not read (it reads ISO 8601, 'Jun  9 06:06:20', '081109 203518' and "
            "'2005-06-03-15.42.50.675872'; otherwise leave the timestamp group out)")  # fmt: skip


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def regex_stream_spec(key: str) -> str:
    """The `regex:` stream spec of a --stream-key (with or without the `regex:` prefix); a pattern
    without a group streams by its whole match."""
    pattern = key[len(_REGEX_PREFIX) :] if key.startswith(_REGEX_PREFIX) else key
    try:
        groups = re.compile(pattern).groups
    except re.error as e:
        raise LogravenError(f"--stream-key {quoted(pattern)} is not a valid regular expression ({e}): fix the pattern") from None
    return f"{_REGEX_PREFIX}{pattern}" if groups else f"{_REGEX_PREFIX}({pattern})"


class StreamKey:
    """Names the stream a record belongs to; each stream has its own sequence state.

    `spec` is one of:

    - ``file``: the file name (a `stream` set by a ``regex:`` format's
      ``stream`` group takes precedence);
    - ``program``: ``"{file}:{program}"``, so one program's lines in two
      files are two streams; the file name alone when the record has no
      program;
    - ``regex:<pattern>``: ``re.search`` on the raw line; the group named
      ``stream``, else the first group, is the stream, *without* the file
      name, because such sessions (an HDFS block id) span files. Lines
      without a match (or with an empty capture) stay in the file's stream.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._regex: re.Pattern[str] | None = None
        self._group: int | str = 1
        if spec == "file" or spec == "program":
            return
        if not spec.startswith(_REGEX_PREFIX):
            raise LogravenError(
                f"unknown stream key {spec!r}: write 'file', 'program' or "
                "'regex:<pattern>' with one capture group, e.g. 'regex:(blk_-?\\d+)'"
            )
        pattern = spec[len(_REGEX_PREFIX):]
        try:
            self._regex = re.compile(pattern)
        except re.error as exc:
            raise LogravenError(
                f"stream key {spec!r} is not a valid regular expression ({exc}): "
                "fix the pattern after 'regex:' (Python re syntax)"
            ) from None
        if "stream" in self._regex.groupindex:
            self._group = "stream"
        elif self._regex.groups == 0:
            raise LogravenError(
                f"stream key {spec!r} has no capture group: put the part of the line that "
                "names the stream in parentheses, e.g. 'regex:(blk_-?\\d+)'"
            )

    def __repr__(self) -> str:
        return f"StreamKey({self.spec!r})"

    def key(self, file: str, record: LogRecord, raw_line: str) -> str:
        """The stream name for `record`, read from `file` as `raw_line`."""
        if self._regex is not None:
            m = self._regex.search(raw_line)
            if m is not None:
                value = m.group(self._group)
                if value:
                    return value
            return file
        if self.spec == "program":
            return f"{file}:{record.program}" if record.program else file
        return record.stream or file
