"""Configuration: one YAML file -> one typed, validated, immutable `Config`.

The dataclasses below are the single source of truth: each field carries its
help text and constraints in `metadata`, and the same metadata drives the
validator, `docs/configuration.md` and `config.example.yaml`, so the three
cannot drift apart. Regenerate both files with::

    python -m lograven.config --markdown > docs/configuration.md
    python -m lograven.config --example > config.example.yaml

Field metadata keys: ``help`` (text), ``min``/``max`` (inclusive bounds),
``gt``/``lt`` (exclusive bounds), ``choices``, ``check`` (callable returning a
problem message or None), ``valid`` (how to describe valid values when
``check`` does the work) and ``example`` (a commented YAML snippet).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import ipaddress
import json
import logging
import math
import os
import re
import sys
import textwrap
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import yaml

from lograven.errors import LogravenError
from lograven.osutil import TooLarge, glob_matches, read_limited

log = logging.getLogger(__name__)

STATE_DIRECTORY_ENV = "STATE_DIRECTORY"
DEFAULT_SOURCE_PATHS = ("/var/log/messages", "/var/log/syslog")
REGEX_PREFIX = "regex:"
MAX_FALSE_ALARM_RATE = 0.001  # detectors.sequence.false_alarm_rate's maximum (bundles keep enough held-back values for it)
SYSLOG_FACILITIES = (  # the syslog sink's (alerts.py); kern is the kernel's own, not for a program
    "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", *(f"local{i}" for i in range(8)),
)
SYSLOG_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
MIN_SCHEDULE_SECONDS = 600.0


_WARNED_STATE_DIRS: set[tuple[str, str]] = set()


MAX_AE_LENGTH = 8192  # tokens per line the autoencoder may read (max_line_bytes' default is 65,536 bytes)


class ConfigError(LogravenError):
    """An unusable configuration; `problems` holds every (dotted key, message) found."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(
            f"{source}: {key}: {message}" if key else f"{source}: {message}"
            for key, message in self.problems
        ))


# --- value checks (each returns a problem message, or None when the value is fine) ---

def _or_list(items: Sequence[object]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _not_one_of(value: object, choices: Sequence[str]) -> str:
    message = f"must be one of {_or_list(choices)}, got {_describe(value)}"
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def _compile(pattern: str) -> tuple[re.Pattern[str] | None, str | None]:
    try:
        return re.compile(pattern), None
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        return None, (f"the regex does not compile ({exc.msg}{where}); fix the pattern, and "
                      "single-quote it in YAML so backslashes stay as written")


def _check_format(value: str) -> str | None:
    if value in ("syslog", "iso", "raw"):
        return None
    if not value.startswith(REGEX_PREFIX):
        return _not_one_of(value, ("syslog", "iso", "raw", "regex:<pattern>"))
    regex, problem = _compile(value[len(REGEX_PREFIX):])
    if regex is None:
        return problem
    if "message" in regex.groupindex:
        return None
    found = f" (it has {', '.join(regex.groupindex)})" if regex.groupindex else ""
    return f"the regex needs a named group (?P<message>...) capturing the message{found}; add one"


def _check_stream(value: str) -> str | None:
    if value in ("file", "program"):
        return None
    if not value.startswith(REGEX_PREFIX):
        return _not_one_of(value, ("file", "program", "regex:<pattern>"))
    regex, problem = _compile(value[len(REGEX_PREFIX):])
    if regex is None:
        return problem
    if regex.groups < 1:
        return "the regex needs a capture group (...) around the stream key; add one"
    return None


def _check_paths(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must list at least one file or glob, e.g. [/var/log/messages]"
    if not all(value):
        return "must not contain empty strings"
    return None


def _check_sources(value: tuple[object, ...]) -> str | None:
    if value:
        return None
    return ("must list at least one source (`lograven run --stdin` reads no file, but takes the first "
            "source's format and stream: give it `paths: [/dev/null]`)")


def _check_non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _check_tag(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", value):  # the syslog sink's (alerts.py) and rsyslog's safe set
        return None
    return f"must be 1-32 letters, digits, '_', '.' or '-', got {value!r}"


def _check_mask_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
        return None
    return f"must be a letter followed by letters, digits or '_', got {value!r}"


def _check_mask_pattern(value: str) -> str | None:
    regex, problem = _compile(value)
    if regex is None:
        return problem
    if regex.fullmatch(""):
        return "the pattern matches the empty string, so it would mask everything; tighten it"
    from lograven.masking import mask_pattern_problem

    return mask_pattern_problem(value)


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (IPv6 host in brackets) -> (host, port); a bare port means 127.0.0.1. ValueError
    says what is wrong."""
    if re.fullmatch(r"[0-9]{1,5}", value):
        value = "127.0.0.1:" + value
    if m := re.match(r"(?i)[a-z][a-z0-9+.-]*://", value):  # pasted from a URL (metrics.md's http://HOST:PORT/metrics)
        bare = value[m.end():].split("/", 1)[0]
        raise ValueError(f"drop the {m.group()!r} scheme and any path: write host:port, e.g. {bare or '127.0.0.1:9077'}")
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise ValueError("missing ']' after the IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError("expected ':<port>' after ']'")
        port_text = rest[1:]
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon:
            raise ValueError("missing ':<port>'")
        if ":" in host:
            raise ValueError("put an IPv6 address in brackets, e.g. [::1]:9077")
        if not host:
            raise ValueError("missing host; use 127.0.0.1 (local only) or 0.0.0.0 (all interfaces)")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a valid host name")
    if not re.fullmatch(r"[0-9]{1,5}", port_text):
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return host, port


def _check_listen(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as exc:
        return f"{exc}; write host:port, e.g. 127.0.0.1:9077 or [::1]:9077"
    return None


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30m``, ``24h``, ``7d`` or ``1h30m``; ValueError if bad."""
    if not re.fullmatch(r"(?:[0-9]+(?:\.[0-9]+)?[smhdw])+", text.strip()):
        raise ValueError(f"{text!r} is not a duration; write a number with a unit "
                         "(s, m, h, d or w), e.g. 30m, 24h, 7d or 1h30m")
    parts = re.findall(r"([0-9.]+)([smhdw])", text)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _check_schedule(value: str) -> str | None:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        return str(exc)
    if seconds < MIN_SCHEDULE_SECONDS:
        return f"must be at least 10m, got {value!r}; relearn less often, or null for never"
    return None


# --- the schema ---

def _opt(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **meta: Any) -> Any:
    """A dataclass field whose metadata (help, constraints) drives validation and docs."""
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """One log source: the files to tail, how their lines are parsed and split into streams."""

    paths: tuple[str, ...] = _opt(
        check=_check_paths, valid="non-empty list of paths",
        help="Files to tail; glob patterns are allowed (`*` and `?` within a name, `**` for any number of "
             "directories, `[...]` a set of characters: a file whose name holds `[` is named with it in brackets, "
             "`app[[]prod].log`; check says so).")
    format: str = _opt(
        "syslog", check=_check_format,
        valid="`syslog`, `iso`, `raw` or `regex:<pattern>` with a `(?P<message>...)` group",
        help="How a line's header is parsed: `syslog` (RFC 3164 or RFC 5424), `iso` (ISO 8601 "
             "timestamp prefix), `raw` (the whole line is the message), or `regex:<pattern>` "
             "matched at the start of the line, with named groups `message` (required) and "
             "optionally `timestamp`, `host`, `program`, `pid`, `stream`. A `timestamp` group must "
             "hold ISO 8601, `Jun  9 06:06:20`, `081109 203518` or `2005-06-03-15.42.50.675872`; "
             "`check` and the daemon warn when it mostly holds something else (a pattern whose "
             "groups are in the wrong places).")
    stream: str = _opt(
        "file", check=_check_stream, valid="`file`, `program` or `regex:<pattern>` with a group",
        help="What one sequence history follows: `file` (each file), `program` (each program "
             "in each file), or `regex:<pattern>` searched in the line, whose group named "
             "`stream` (else its first group) is the stream key, across files (e.g. an HDFS "
             "block id); lines without a match stay in their file's stream.")
    start_position: Literal["end", "beginning"] = _opt(
        "end",
        help="Where to start in files that already exist when lograven first starts (no "
             "checkpoint yet): `end` skips their current content, `beginning` reads it.")

    @property
    def format_regex(self) -> re.Pattern[str] | None:
        """The compiled ``regex:`` format, or None for the built-in formats."""
        return _regex_of(self.format)

    @property
    def stream_regex(self) -> re.Pattern[str] | None:
        """The compiled ``regex:`` stream key, or None for ``file``/``program``."""
        return _regex_of(self.stream)


def _regex_of(value: str) -> re.Pattern[str] | None:
    return re.compile(value[len(REGEX_PREFIX):]) if value.startswith(REGEX_PREFIX) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownTypeDetectorConfig:
    """Flags lines whose message matches no learned message type."""

    enabled: bool = _opt(True, help="Run this detector.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceDetectorConfig:
    """Flags lines whose message type the GRU found improbable after the stream's history."""

    enabled: bool = _opt(True, help="Run this detector.")
    rule: Literal["relative", "probability", "top_k"] = _opt(
        "relative",
        help="How improbable is anomalous. `relative`: the observed type's predicted probability "
             "divided by its overall frequency in training is below `relative_threshold` (the "
             "type is far less likely here than usual; rare-but-normal types do not alert); "
             "`probability`: the predicted probability is below `threshold` (seed 003's rule); "
             "`top_k`: the type is not among the `top_k` most probable (DeepLog's rule).")
    relative_threshold: float = _opt(
        0.1, gt=0, lt=1,
        help="For `rule: relative`: alert when p(type | history) / p(type) is below this.")
    threshold: float = _opt(
        0.02, gt=0, lt=1,
        help="For `rule: probability`: alert when the observed type's predicted probability is "
             "below this.")
    top_k: int = _opt(
        9, min=1,
        help="For `rule: top_k`: alert when the observed type is not among the k most probable "
             "next types.")
    calibrate: bool = _opt(
        True,
        help="Lower `relative_threshold` / `threshold` to what the model's held-back normal "
             "training steps show (stored in the bundle at training; used when at least 1,000 "
             "steps were held back): to the value that about `false_alarm_rate` of normal lines "
             "fall below, extrapolated with an exponential tail fitted to the held-back steps' "
             "most improbable 5%, and never above their 0.001 quantile nor their own quantile at "
             "`false_alarm_rate` (their minimum when fewer than 1 / rate were held back). Stream "
             "ends get their own threshold the same way, from the held-back streams' ends (at "
             "least 20). A model unsure of normal "
             "orderings (concurrent events, little data) then alerts less instead of flooding; "
             "the threshold in force is in each alert. Off: the configured thresholds as they are.")
    false_alarm_rate: float = _opt(
        1e-4, gt=0, max=MAX_FALSE_ALARM_RATE,
        help="With `calibrate` and `floor`: the share of normal lines the calibrated thresholds "
             "and the floor aim to flag (1e-4: one line in 10,000; 1e-5 is quieter and misses more). An estimate from held-back "
             "training data: logs that drift from the training period alert more.")
    floor: bool = _opt(
        True,
        help="Also alert when the observed type is less probable than at every held-back normal "
             "training step and than the `false_alarm_rate` value of their fitted tail (stored in "
             "the bundle; used when at least 1,000 steps were held back). It catches a type seen "
             "only a few times in training where it never occurred, which `relative` ignores by "
             "design. Off: the rule alone.")
    rare_count: int = _opt(
        5, min=0,
        help="Also alert on a message type seen fewer than this many times in training wherever "
             "the GRU did not expect it most: a handful of examples is too few to learn where a "
             "type belongs, so its probability is no evidence either way (5 is the usual minimum "
             "expected count for a frequency estimate). `lograven learn` on such an alert vouches "
             "for the type: types whose lines were learned are never rare. 0: off.")
    stream_end_after: float = _opt(
        0.0, min=0,
        help="Seconds without a new line after which a stream is taken to have ended (0: never). "
             "Only with a model trained with `training.sequence.stream_end` (streams that are "
             "sessions): the end is judged by the same rule as a line, with the end's training "
             "frequency, and an improbable end (a session that stopped early) is alerted on the "
             "stream's last line; a stream that speaks again starts afresh. Set it before "
             "`lograven train`: training then cuts each stream where its timestamps show this much "
             "silence and learns an end there, as it will be judged (a block that rests after it "
             "is written is then a normal end, not an early stop); without it, training takes each "
             "stream as one session that ends at its last line.")


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoencoderDetectorConfig:
    """Flags lines the autoencoder reconstructs badly."""

    enabled: bool = _opt(True, help="Run this detector.")
    quantile: float = _opt(
        0.999, min=0.5, lt=1,
        help="Quantile of the reconstruction errors on held-out training lines that becomes "
             "the alert threshold when the model is calibrated.")
    margin: float = _opt(
        1.0, gt=0,
        help="Multiplier on the calibrated threshold: above 1 alerts less, below 1 more.")


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorsConfig:
    """The three detectors; each flags lines on its own and an alert names the one that fired."""

    unknown_type: UnknownTypeDetectorConfig = _opt(factory=UnknownTypeDetectorConfig)
    sequence: SequenceDetectorConfig = _opt(factory=SequenceDetectorConfig)
    autoencoder: AutoencoderDetectorConfig = _opt(factory=AutoencoderDetectorConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogAlertConfig:
    """Alerts to the local syslog daemon, one JSON object after an `@cee:` cookie."""

    enabled: bool = _opt(True, help="Send alerts to syslog.")
    socket: str = _opt("/dev/log", check=_check_non_empty, valid="path",
                       help="Unix socket of the local syslog daemon.")
    facility: str = _opt("user", choices=SYSLOG_FACILITIES, help="Syslog facility of alerts.")
    severity: str = _opt("warning", choices=SYSLOG_SEVERITIES, help="Syslog severity of alerts.")
    tag: str = _opt("lograven", check=_check_tag,
                    valid="1-32 letters, digits, `_`, `.` or `-`",
                    help="Syslog tag (program name) of alert messages.")
    required: bool = _opt(False, help=(
        "Hold the checkpoint back while syslog fails, as for the jsonl file: after a crash the lines "
        "whose alerts syslog had not taken are read again. False: best effort (a retry queue in memory)."))


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonlAlertConfig:
    """Alerts appended to a JSON-lines file, one object per line."""

    enabled: bool = _opt(True, help="Append alerts to the file.")
    path: str = _opt("/var/log/lograven/alerts.jsonl", check=_check_non_empty, valid="path",
                     help="File the alerts are appended to.")
    required: bool = _opt(True, help=(
        "Hold the checkpoint back while the file cannot be written (a full disk), so that no alert is "
        "lost across a crash. False: best effort, detection moves on."))


@dataclass(frozen=True, slots=True, kw_only=True)
class StdoutAlertConfig:
    """Alerts written to standard output (useful in the foreground and in containers)."""

    enabled: bool = _opt(False, help="Write alerts to standard output.")
    format: Literal["human", "json"] = _opt(
        "human", help="`human`: one readable line per alert; `json`: one JSON object per line.")
    required: bool = _opt(False, help="Hold the checkpoint back while standard output cannot be written.")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertsConfig:
    """Where alerts go, and how they are de-duplicated and rate-limited."""

    syslog: SyslogAlertConfig = _opt(factory=SyslogAlertConfig)
    jsonl: JsonlAlertConfig = _opt(factory=JsonlAlertConfig)
    stdout: StdoutAlertConfig = _opt(factory=StdoutAlertConfig)
    dedup_window_seconds: int = _opt(
        300, min=0,
        help="An alert identical to one sent less than this many seconds ago is suppressed "
             "and counted; 0 turns de-duplication off.")
    max_per_minute: int = _opt(
        60, min=0, help="Most alerts sent per minute; the excess is suppressed and counted. 0 turns the "
                        "rate limit off.")
    allowlist: str | None = _opt(
        None, check=_check_non_empty, valid="path or null",
        help="JSON file of allowed anomalies (managed by `lograven allow`); null means "
             "`<state_dir>/allowlist.json`.")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """Prometheus metrics over HTTP."""

    enabled: bool = _opt(True, help="Serve Prometheus metrics.")
    listen: str = _opt(
        "127.0.0.1:9077", check=_check_listen, valid="`host:port` or a port, port 1-65535",
        help="Address of the metrics endpoint; IPv6 hosts in brackets (`[::1]:9077`); "
             "`0.0.0.0:9077` listens on all IPv4 interfaces; a bare port (`\"9077\"`) means 127.0.0.1.")

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to bind; an IPv6 host comes without brackets."""
        return parse_listen(self.listen)


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnConfig:
    """Learn mode (`model: null`): learning from the host's own logs, and relearning."""

    max_lines: int = _opt(500000, min=100, help="Most lines used to learn one model.")
    schedule: str | None = _opt(
        None, check=_check_schedule, valid="duration >= 10m, or null",
        help="Relearn this often from recent lines that raised no alert, e.g. `24h` or `7d` (units s, "
             "m, h, d, w; combinable as `1h30m`), counted from the daemon's start (a restart starts "
             "again); null never relearns.")
    min_lines: int = _opt(
        1000, min=1, help="Lines needed before learning starts; at most `max_lines`.")
    keep_versions: int = _opt(
        10, min=2,
        help="Model versions kept in the model directory after periodic relearning: older ones are "
             "deleted (never `current` or the version running). `lograven models prune` does it by hand.")

    @property
    def schedule_seconds(self) -> float | None:
        """The relearn interval in seconds, or None when relearning is off."""
        return None if self.schedule is None else parse_duration(self.schedule)

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.min_lines > self.max_lines:
            yield "min_lines", (f"must be <= learn.max_lines ({self.max_lines}), got "
                                f"{self.min_lines}; lower min_lines or raise max_lines")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """Batching, threads and resource limits of the running daemon."""

    batch_size: int = _opt(256, min=1, max=65536,
                           help="Most lines scored in one model call; larger is faster per line.")
    max_wait_ms: int = _opt(
        20, min=0, max=10000,
        help="Longest a line waits for its batch to fill before it is scored anyway; "
             "bounds alert latency.")
    threads: int = _opt(1, min=1, max=64, help="Threads used for model inference.")
    max_line_bytes: int = _opt(
        65536, min=256, max=16 * 1024 * 1024,
        help="Longer lines are truncated to this many bytes and counted (max 16 MiB).")
    unterminated_line_seconds: float = _opt(
        0.0, min=0,
        help="A line still without its newline after this many seconds without a new byte in its file "
             "is scored as it is, and what the writer adds later is a line of its own; 0 (the "
             "default) waits for the newline. rsyslog writes whole lines. Set it (e.g. 5) for files "
             "that several users or programs write, where a line left open (by a writer that died "
             "mid-line, or on purpose) joins the next writer's line to it and hides that line. Not "
             "for programs whose output is block-buffered (stdout redirected to the file): they cut "
             "lines wherever their buffer fills, and finish them at the next flush.")
    queue_size: int = _opt(
        10000, min=1,
        help="Lines buffered between reading and scoring before reading pauses; at least "
             "`batch_size`.")
    checkpoint_interval_seconds: float = _opt(
        10.0, gt=0, help="Seconds between checkpoints of file offsets and stream states (longer when "
                         "one takes over 5% of that time, as with very many streams; the log says so).")
    poll_interval_seconds: float = _opt(
        1.0, gt=0,
        help="Seconds between polls of the tailed files' status (file events wake the "
             "reader sooner).")
    max_streams: int = _opt(
        100000, min=1, max=1_000_000,
        help="Most streams whose GRU state is kept (about 1 KB of memory and 1.3 KB of checkpoint "
             "each, 3 times that for a session model's three GRUs); past it the least recently seen "
             "stream is forgotten and starts afresh. Matters with a `stream:` key per session, e.g. "
             "HDFS block ids: set `detectors.sequence.stream_end_after` so that finished sessions end.")

    stream_idle_seconds: float = _opt(
        604800.0, min=0,
        help="A stream without a line for this long (default a week) has its GRU state forgotten; its "
             "next line starts it afresh. Streams per program or per session key come and go (a "
             "container's tag per container) and would otherwise stay in memory and in every "
             "checkpoint until `max_streams`. Never less than twice "
             "`detectors.sequence.stream_end_after`; 0 keeps them.")

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.queue_size < self.batch_size:
            yield "queue_size", (f"must be >= runtime.batch_size ({self.batch_size}), got "
                                 f"{self.queue_size}; raise queue_size or lower batch_size")


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskConfig:
    """An extra variable pattern masked before message types are learned."""

    name: str = _opt(check=_check_mask_name, valid="letters, digits, `_`",
                     help="Name of the mask; matches are replaced by `<name>`.")
    pattern: str = _opt(check=_check_mask_pattern, valid="regex",
                        help="Regular expression of the variable part. It runs on every word of every line, and "
                             "Python's `re` has no time limit: avoid repetition of a part that can match in more "
                             "than one way, such as `(a+)+` or `(a|aa)+`, which backtracks without end on a long "
                             "word.")


@dataclass(frozen=True, slots=True, kw_only=True)
class MsgTypesTrainingConfig:
    """Message types: bag of words -> TruncatedSVD -> KMeans; each cluster is one anchored regex."""

    svd_variance: float = _opt(0.95, gt=0, max=1,
                               help="Share of the variance TruncatedSVD keeps before clustering.")
    max_clusters: int = _opt(2000, min=1, help="Most message types learned.")
    variable_min_distinct: int = _opt(
        6, min=2,
        help="A token position with at least this many distinct values inside a cluster "
             "becomes the wildcard `<*>`.")
    extra_masks: tuple[MaskConfig, ...] = _opt(
        (), help="Extra variable patterns masked before clustering, on top of the built-in ones.",
        example="extra_masks:\n  - name: BLOCK\n    pattern: 'blk_-?[0-9]+'")

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        names = [mask.name for mask in self.extra_masks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            yield "extra_masks", f"mask names must be unique, repeated: {', '.join(duplicates)}"
        from lograven.masking import ExtraMask, Masker

        try:  # each pattern alone can be fine, and two together not (the same group name in both)
            Masker([ExtraMask(m.name, m.pattern) for m in self.extra_masks])
        except re.error as e:
            yield "extra_masks", (f"the patterns cannot be used together ({e}); give their groups different names, "
                                  "or make them non-capturing: (?:...)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceTrainingConfig:
    """The GRU that predicts the next message type of a stream."""

    embedding_dim: int = _opt(32, min=1, help="Size of the message type embedding.")
    units: int = _opt(64, min=1, help="GRU units (state size); serving cost grows with it.")
    window: int = _opt(64, min=1, max=100_000, help="Length in steps of the type sequences trained on.")
    batch_size: int = _opt(64, min=1, help="Sequences per training batch.")
    epochs: int = _opt(30, min=1, help="Most training epochs.")
    patience: int = _opt(3, min=1,
                         help="Epochs without validation improvement before training stops.")
    learning_rate: float = _opt(0.003, gt=0, max=1, help="Optimizer learning rate.")
    members: int = _opt(
        0, min=0, max=8,
        help="GRUs to train (seeds `seed`, `seed`+1, ...) and average: an ensemble. With at least "
             "20 short streams (sessions) per member, each member holds back its own share of "
             "them, so the calibration sees every training session, not 10%. 0 (automatic): 3 "
             "when the training streams include at least 60 short ones (up to 4 `window`s long, "
             "or any with `stream_end`), else 1 (streams that are files). A single GRU "
             "trained on few sessions alerts more or less depending on its seed; the cross-fitted "
             "ensemble does not. Training time and the sequence detector's serving cost grow about "
             "linearly with the members (docs/benchmarks.md).")
    stream_end: bool = _opt(
        False,
        help="The training streams are sessions (e.g. `stream: regex:` on an HDFS block id): also "
             "learn where a stream ends, so that a session that stops early is flagged (see "
             "`detectors.sequence.stream_end_after`, which also says where training cuts streams). "
             "Leave off when streams are files: a file's end in the training data is not an event.")


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoencoderTrainingConfig:
    """The Conv1D autoencoder over each line's BPE tokens."""

    vocab_size: int = _opt(512, min=100, help="BPE tokenizer vocabulary size (serving cost grows with it).")
    max_length: int = _opt(
        0, min=0,
        help="Tokens per line fed to the autoencoder; 0 derives it from the training data "
             "(at most `max_length_cap`).")
    max_length_cap: int = _opt(64, min=1, max=MAX_AE_LENGTH, help="Upper bound on `max_length`.")
    embedding_dim: int = _opt(32, min=1, help="Size of the token embedding.")
    filters: int = _opt(64, min=1, help="Filters per Conv1D layer.")
    latent_dim: int = _opt(32, min=1, help="Size of the bottleneck.")
    epochs: int = _opt(10, min=1, help="Most training epochs.")
    batch_size: int = _opt(256, min=1, help="Lines per training batch.")
    patience: int = _opt(2, min=1,
                         help="Epochs without validation improvement before training stops.")
    learning_rate: float = _opt(0.002, gt=0, max=1, help="Optimizer learning rate.")

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.max_length > self.max_length_cap:
            yield "max_length", (f"must be <= max_length_cap ({self.max_length_cap}), got "
                                 f"{self.max_length}; lower it or raise max_length_cap")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingConfig:
    """Training hyper-parameters, used by `lograven train` and by learn mode."""

    seed: int = _opt(42, min=0, max=2**32 - 1, help="Random seed, for reproducible training.")
    validation_fraction: float = _opt(
        0.1, gt=0, lt=0.5,
        help="Share of lines held out to stop training early and calibrate thresholds.")
    msgtypes: MsgTypesTrainingConfig = _opt(factory=MsgTypesTrainingConfig)
    sequence: SequenceTrainingConfig = _opt(factory=SequenceTrainingConfig)
    autoencoder: AutoencoderTrainingConfig = _opt(factory=AutoencoderTrainingConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole lograven configuration; `Config()` is all defaults."""

    sources: tuple[SourceConfig, ...] = _opt(
        (SourceConfig(paths=DEFAULT_SOURCE_PATHS),), check=_check_sources,
        valid="at least one entry",
        help="Log sources to follow. `lograven run --stdin` reads none of their files, but takes the "
             "first source's `format` and `stream`.")
    model: str | None = _opt(
        None, check=_check_non_empty, valid="path or null",
        help="Model bundle directory to detect with; null selects learn mode: learn from the "
             "sources' existing content into `<state_dir>/models`.")
    state_dir: str = _opt(
        "/var/lib/lograven", check=_check_non_empty, valid="path",
        help="Directory for checkpoints, learned models and the allowlist. Under systemd the "
             "first path in `$STATE_DIRECTORY` takes precedence.")
    detectors: DetectorsConfig = _opt(factory=DetectorsConfig)
    alerts: AlertsConfig = _opt(factory=AlertsConfig)
    metrics: MetricsConfig = _opt(factory=MetricsConfig)
    learn: LearnConfig = _opt(factory=LearnConfig)
    runtime: RuntimeConfig = _opt(factory=RuntimeConfig)
    training: TrainingConfig = _opt(factory=TrainingConfig)

    @property
    def learn_mode(self) -> bool:
        """True when no model is configured and lograven learns one from the host's logs."""
        return self.model is None

    def effective_state_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        """`state_dir`, unless systemd's ``$STATE_DIRECTORY`` (first of its paths) overrides it."""
        env = os.environ if environ is None else environ
        first = env.get(STATE_DIRECTORY_ENV, "").split(":")[0]
        if first:
            if os.path.normpath(first) != os.path.normpath(self.state_dir) and (first, self.state_dir) not in _WARNED_STATE_DIRS:
                # the daemon then keeps its models, checkpoint and allowlist where the CLI tools,
                # run without the unit's environment, do not look
                _WARNED_STATE_DIRS.add((first, self.state_dir))
                log.warning("state_dir is %s, but systemd's StateDirectory= gives %s, which wins under the unit, "
                            "while the CLI tools (allow, models), run outside it, use %s: make them the same (set "
                            "state_dir: %s, or change StateDirectory= with `systemctl edit lograven`)",
                            self.state_dir, first, self.state_dir, first)  # fmt: skip
            return Path(first)
        return Path(self.state_dir)

    def models_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        """Where learn mode writes model bundles."""
        return self.effective_state_dir(environ) / "models"

    def allowlist_path(self, environ: Mapping[str, str] | None = None) -> Path:
        """`alerts.allowlist`, or ``allowlist.json`` in the effective state directory."""
        if self.alerts.allowlist is not None:
            return Path(self.alerts.allowlist)
        return self.effective_state_dir(environ) / "allowlist.json"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars (YAML/JSON-ready); `parse_config` reads it back."""
        return _plain(self)


# --- the generic validator ---

_INVALID = object()
_Problems = list[tuple[str, str]]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(hint: Any) -> Any | None:
    """X for ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return None


def _item_dataclass(hint: Any) -> type | None:
    """The dataclass of ``tuple[SomeConfig, ...]``, else None."""
    if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return typing.get_args(hint)[0]
    return None


_NOUNS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings")}


def _expected(hint: Any, plural: bool = False) -> str:
    if (inner := _optional_inner(hint)) is not None:
        return f"{_expected(inner, plural)} or null"
    if typing.get_origin(hint) is Literal:
        return "one of " + _or_list(typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_expected(typing.get_args(hint)[0], plural=True)}"
    if dataclasses.is_dataclass(hint):
        return "mappings" if plural else "a mapping"
    return _NOUNS[hint][plural]


def _type_name(hint: Any) -> str:
    if (inner := _optional_inner(hint)) is not None:
        return f"{_type_name(inner)} | null"
    if typing.get_origin(hint) is Literal:
        return "str"
    if typing.get_origin(hint) is tuple:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    return "mapping" if dataclasses.is_dataclass(hint) else hint.__name__


def _describe(value: Any) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} ({'an integer' if isinstance(value, int) else 'a number'})"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return f"{value} (a {type(value).__name__})"  # e.g. YAML dates


def _fix_hint(value: Any, hint: Any, key: str = "") -> str:
    """How to turn a value of the wrong type into the right one, when that is guessable."""
    if value is None:  # `state_dir:` left empty, or a list whose entries are all commented out
        return "; give a value, or delete the line to use the default"
    if key.endswith(("_seconds", "_after")) and isinstance(value, str) and hint in (int, float) and (m := re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*", value)):
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return f"; write a number of seconds, without a unit: {seconds:g} for {value.strip()}"
    if isinstance(value, dict) and typing.get_origin(hint) is tuple:  # `sources:` with its `- ` forgotten
        return "; start each entry with '- ' (a list item), e.g. 'sources:' then '  - paths: [/var/log/messages]'"
    if isinstance(value, str) and hint in (int, float, bool):
        try:
            float(value)
            return "; remove the quotes"
        except ValueError:
            return "; remove the quotes" if value.lower() in ("true", "false") else ""
    if hint is str and isinstance(value, bool):
        return "; put it in quotes (YAML reads yes/no/on/off unquoted as true/false)"
    if hint is str and isinstance(value, (int, float)):
        return "; put it in quotes"
    if hint is bool and isinstance(value, (int, float)):
        return "; write true or false"
    if hint is int and isinstance(value, float) and value.is_integer():
        return "; drop the decimal point"
    if typing.get_origin(hint) is tuple and isinstance(value, str):
        return f"; write a list, e.g. [{json.dumps(value)}]"
    return ""


def _convert(value: Any, hint: Any, key: str, problems: _Problems, expected: str = "") -> Any:
    """`value` checked against and converted to the type `hint`, or _INVALID (problem recorded)."""
    if (inner := _optional_inner(hint)) is not None:
        if value is None:
            return None
        return _convert(value, inner, key, problems, expected or _expected(hint))
    origin = typing.get_origin(hint)
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
        problems.append((key, _not_one_of(value, typing.get_args(hint))))
        return _INVALID
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, problems)
    if origin is tuple and isinstance(value, list):
        items = [_convert(item, typing.get_args(hint)[0], f"{key}[{i}]", problems)
                 for i, item in enumerate(value)]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
        problems.append((key, f"must be a finite number, got {value!r}"))
        return _INVALID
    if hint is str and isinstance(value, str) and "\x00" in value:
        # no path or name holds one (the OS refuses it: `embedded null byte` tracebacks at start); say where
        problems.append((key, f"contains a NUL byte (\\x00, at character {value.index(chr(0)) + 1}): remove it"))
        return _INVALID
    if origin is None and isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value  # bool is an int subclass, but `1` is not `true` and `true` is not `1`
    problems.append((key, f"must be {expected or _expected(hint)}, got {_describe(value)}"
                          f"{_fix_hint(value, hint, key)}"))
    return _INVALID


def _bounds(meta: Mapping[str, Any]) -> str:
    """The numeric range in `meta` as text: ``in [1, 64]``, ``in (0, 1)``, ``>= 0``, or ''."""
    low = ("[", meta["min"]) if "min" in meta else ("(", meta["gt"]) if "gt" in meta else None
    high = ("]", meta["max"]) if "max" in meta else (")", meta["lt"]) if "lt" in meta else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


def _in_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    return (meta.get("min", -math.inf) <= value <= meta.get("max", math.inf)
            and value > meta.get("gt", -math.inf) and value < meta.get("lt", math.inf))


def _constraint_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    if value is None:
        return None
    if "choices" in meta and value not in meta["choices"]:
        return _not_one_of(value, meta["choices"])
    if isinstance(value, (int, float)) and not _in_bounds(value, meta):
        noun = "an integer" if isinstance(value, int) else "a number"
        return f"must be {noun} {_bounds(meta)}, got {value!r}"
    check = meta.get("check")
    return check(value) if check else None


def _join(key: str, name: object) -> str:
    return f"{key}.{name}" if key else str(name)


def _unknown_key(name: object, key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    # Perhaps a valid key in the wrong section (e.g. `threshold` at the top level).
    here = re.sub(r"\[\d+\]", "[]", key)
    elsewhere = {k.rpartition(".")[2]: [] for k in _all_keys()}
    for k in _all_keys():
        if k.rpartition(".")[0] != here:
            elsewhere[k.rpartition(".")[2]].append(k)
    close = difflib.get_close_matches(str(name), [n for n, ks in elsewhere.items() if ks], n=1)
    if close:
        keys = _or_list([repr(k) for k in elsewhere[close[0]]])
        return f"unknown key here; did you mean {keys}?"
    return f"unknown key; valid keys here: {', '.join(valid)}"


def _build(cls: type, data: Any, key: str, problems: _Problems) -> Any:
    """An instance of the dataclass `cls` from a mapping, or _INVALID (problems recorded)."""
    if data is None:
        data = {}  # a section whose options are all commented out: all defaults
    if not isinstance(data, dict):
        problems.append((key, f"must be a mapping of options (`key: value` lines), "
                              f"got {_describe(data)}"))
        return _INVALID
    fields = {f.name: f for f in dataclasses.fields(cls)}
    before, values = len(problems), {}
    for name, raw in data.items():
        sub = _join(key, name)
        if name not in fields:
            problems.append((sub, _unknown_key(name, key, list(fields))))
            continue
        f = fields[name]
        if raw is None and f.default is MISSING and f.default_factory is MISSING and _optional_inner(_hints(cls)[name]) is None:
            # a required key left empty: "delete the line to use the default" would only make it missing
            problems.append((sub, f"must be {_expected(_hints(cls)[name])}, got null (an empty value); give a value "
                                  f"({f.metadata['help'].rstrip('.')})"))
            continue
        value = _convert(raw, _hints(cls)[name], sub, problems)
        if value is not _INVALID:
            if (problem := _constraint_problem(value, fields[name].metadata)) is not None:
                problems.append((sub, problem))
            else:
                if isinstance(value, str) and value.startswith("~") and str(fields[name].metadata.get("valid", "")).startswith("path"):
                    value = os.path.expanduser(value)  # as a shell would; never a directory literally named `~`
                values[name] = value
    for f in fields.values():
        if f.name not in data and f.default is MISSING and f.default_factory is MISSING:
            help_text = f.metadata["help"].rstrip(".")
            problems.append((_join(key, f.name), f"is required; add it ({help_text})"))
    if len(problems) > before:
        return _INVALID
    obj = cls(**values)
    for name, message in getattr(obj, "_cross_check", lambda: ())():
        problems.append((_join(key, name), message))
    return obj


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-loaded YAML data into a Config; raises ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("", (
            f"the top level must be a mapping of sections such as 'sources:' and 'detectors:', "
            f"got {_describe(data)}; see config.example.yaml"))])
    problems: _Problems = []
    config = _build(Config, data, "", problems)
    if not problems:
        problems += _own_alerts_read_back(config)
    if problems:
        raise ConfigError(source, problems)
    return config


#: What logrotate appends to a file's name for its old copies (numbered, dateext), to check patterns against.
ROTATED_NAME_SUFFIXES = ("", ".1", ".2.gz", "-20261207", "-20261207.gz")


def _own_alerts_read_back(config: Config) -> _Problems:
    """A source over lograven's own alerts file (`/var/log/lograven/*`, `/var/log/*/*.jsonl`) reads each alert
    back as a log line, which alerts again: an endless storm that uses up the syslog rate limit."""
    if not config.alerts.jsonl.enabled:
        return []
    own = os.path.abspath(os.path.expanduser(config.alerts.jsonl.path))
    out: _Problems = []
    for i, src in enumerate(config.sources):
        for pattern in src.paths:
            target = os.path.abspath(os.path.expanduser(pattern))
            if any(glob_matches(own + suffix, target) for suffix in ROTATED_NAME_SUFFIXES):
                out.append((f"sources[{i}].paths", (
                    f"{pattern!r} matches lograven's own alerts file {config.alerts.jsonl.path} (alerts.jsonl.path) "
                    "or its rotated copies: each alert would be read back as a log line and alert again, without "
                    "end; leave the alerts file out of the sources (narrow the pattern, or move alerts.jsonl.path)")))
                break
    return out


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-5` as a number as YAML 1.2 does (YAML 1.1 needs `1.0e-5`), and
    refusing a key given twice in one mapping (PyYAML keeps the last silently: a second `alerts:`
    section would drop the first one's settings)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201 - PyYAML's signature
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<` merges may override; complex keys are not config keys
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"key {key!r} is given twice (first at line {first.line + 1})", key_node.start_mark,
                    )  # fmt: skip
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark and mark and context_mark.line != mark.line:
        problem += f" ({context} started at line {context_mark.line + 1})"
    if "'\\t'" in problem:
        fix = "indent with spaces; YAML does not allow tabs"
    elif "is given twice" in problem:
        fix = "keep one of them, with every setting it should have (YAML keeps only the last)"
    elif "escape character" in problem:
        fix = "single-quote the value (regexes especially) so backslashes stay as written"
    else:
        fix = "fix the YAML there: check the indentation, and quote values containing ': ' or ' #'"
    return f"{where}invalid YAML: {problem}; {fix}"


CONFIG_MAX_BYTES = 4 * 2**20  # a configuration is a few KB


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file; an empty file means all defaults."""
    path = Path(path)
    source = str(path)
    try:
        text = read_limited(path, CONFIG_MAX_BYTES)
    except FileNotFoundError:
        problem = ("no such file; create it (config.example.yaml lists every option) "
                   "or pass the right path with --config")
    except IsADirectoryError:
        problem = "is a directory; pass the path of the YAML file itself"
    except PermissionError:
        problem = "permission denied; make the file readable by the user lograven runs as"
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
    except TooLarge as exc:
        problem = f"is {exc.strerror}, not a configuration (a device, or the wrong path?); pass the YAML file itself"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror}); check the path and permissions"
    else:
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
            config = parse_config(data, source)
        except yaml.YAMLError as exc:
            raise ConfigError(source, [("", _yaml_problem(exc))]) from None
        except RecursionError:  # 5,000 nested `[`: a traceback in check, and at a reload
            raise ConfigError(source, [("", "nested too deeply to be a configuration; see config.example.yaml")]) from None
        log.debug("loaded configuration from %s", source)
        return config
    raise ConfigError(source, [("", problem)])


# --- documentation generated from the schema ---

@dataclass(frozen=True, slots=True)
class OptionDoc:
    """One documented option: dotted key (``[]`` marks list entries), type, default, help."""

    key: str
    type_name: str
    default: Any
    help: str
    valid: str = ""
    required: bool = False


def _walk(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """Every (dotted key, field, type hint) below `cls`, sections before their contents."""
    for f in dataclasses.fields(cls):
        key, hint = _join(prefix, f.name), _hints(cls)[f.name]
        yield key, f, hint
        if dataclasses.is_dataclass(hint):
            yield from _walk(hint, key)
        elif (item := _item_dataclass(hint)) is not None:
            yield from _walk(item, key + "[]")


@functools.cache
def _all_keys() -> tuple[str, ...]:
    return tuple(key for key, _, _ in _walk(Config))


def _valid_text(meta: Mapping[str, Any], hint: Any) -> str:
    hint = _optional_inner(hint) or hint
    if "valid" in meta:
        return meta["valid"]
    literal = typing.get_origin(hint) is Literal
    choices = meta.get("choices") or (typing.get_args(hint) if literal else ())
    if choices:
        return ", ".join(f"`{c}`" for c in choices)
    return _bounds(meta).removeprefix("in ")


def _option_doc(key: str, f: dataclasses.Field[Any], hint: Any) -> OptionDoc:
    required = f.default is MISSING and f.default_factory is MISSING
    default = None if required else _plain(
        f.default_factory() if f.default is MISSING else f.default)
    return OptionDoc(key, _type_name(hint), default, f.metadata.get("help", ""),
                     _valid_text(f.metadata, hint), required)


def iter_options() -> Iterator[OptionDoc]:
    """Every option (not the sections holding them), in file order, for documentation."""
    for key, f, hint in _walk(Config):
        if not dataclasses.is_dataclass(hint):
            yield _option_doc(key, f, hint)


def _doc(cls: type) -> str:
    return inspect.cleandoc(cls.__doc__ or "")


_MARKDOWN_INTRO = """\
# Configuration reference

<!-- Generated by `python -m lograven.config --markdown` from daemon/lograven/config.py:
     edit that file, not this one. -->

lograven reads one YAML file (`lograven run --config /etc/lograven/config.yaml`).
[`config.example.yaml`](../config.example.yaml) lists every option with its
default; copy only the options you change.

- An empty file, or a section with all its options commented out, means the defaults.
- Validation is strict: an unknown key (with a suggestion for the closest valid
  one), a value of the wrong type (`1` is not `true`, `"256"` is not `256`) or
  out of range is an error. All problems are reported at once, one per line, as
  `FILE: dotted.key: what is wrong and how to fix it`. A check between two keys of
  a section (`learn.min_lines` at most `learn.max_lines`, `runtime.queue_size` at
  least `runtime.batch_size`) is made once that section's keys are valid each.
- Paths are used as written; relative paths are relative to the daemon's working
  directory (`/` under systemd), so prefer absolute paths.
- Under systemd, `$STATE_DIRECTORY` (set by `StateDirectory=`; the first of
  several colon-separated paths) overrides `state_dir`.
- Regexes (`regex:` formats and streams, `extra_masks`) use Python `re` syntax;
  single-quote them in YAML so backslashes stay as written.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(docs: Sequence[OptionDoc]) -> list[str]:
    lines = ["| Key | Type | Default | Valid values | Description |", "|---|---|---|---|---|"]
    for doc in docs:
        default = "required" if doc.required else f"`{json.dumps(doc.default)}`"
        lines.append(f"| `{doc.key}` | {_cell(doc.type_name)} | {_cell(default)} | "
                     f"{_cell(doc.valid)} | {_cell(doc.help)} |")
    return lines


def _markdown_section(cls: type, prefix: str, title: str, level: int, doc: str = "") -> list[str]:
    lines = [f"{'#' * level} {title}", "", doc or _doc(cls), ""]
    hints = _hints(cls)
    leaves = [_option_doc(_join(prefix, f.name), f, hints[f.name])
              for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(hints[f.name])]
    if leaves:
        lines += [*_markdown_table(leaves), ""]
    sub_level = min(level + 1, 4) if prefix else level  # top-level sections are siblings
    for f in dataclasses.fields(cls):
        hint, key = _hints(cls)[f.name], _join(prefix, f.name)
        if dataclasses.is_dataclass(hint):
            lines += _markdown_section(hint, key, f"`{key}`", sub_level)
        elif (item := _item_dataclass(hint)) is not None:
            lines += _markdown_section(item, key + "[]", f"`{key}[]`: each entry of `{key}`",
                                       sub_level)
    return lines


def render_reference_markdown() -> str:
    """docs/configuration.md: the intro and one table per section, from the schema's metadata."""
    lines = _markdown_section(Config, "", "Top-level keys", 2,
                              "Keys at the top level of the file; the sections follow.")
    return _MARKDOWN_INTRO + "\n" + "\n".join(lines).rstrip("\n") + "\n"


_PLAIN_SCALAR = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _yaml_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        plain = _PLAIN_SCALAR.fullmatch(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    return repr(value)


def _comment(text: str, indent: int, hang: int = 0) -> list[str]:
    """`text` as wrapped ``#`` comment lines; continuation lines indented by `hang`."""
    pad = " " * indent + "# "
    return textwrap.wrap(text, width=88, initial_indent=pad, subsequent_indent=pad + " " * hang,
                         break_on_hyphens=False, break_long_words=False)


def _option_comment(doc: OptionDoc, has_entries: bool, indent: int) -> list[str]:
    if doc.required:
        facts = "Required"
    elif doc.type_name.startswith("list of mapping"):
        facts = "Default: the entries below" if has_entries else "Default: []"
    else:
        facts = f"Default: {_yaml_value(doc.default)}"
    facts += f"; valid: {doc.valid}" if doc.valid else ""
    return _comment(doc.help, indent) + _comment(facts, indent, hang=2)


def _yaml_mapping(cls: type, obj: Any, indent: int) -> list[str]:
    """`obj` (an instance of `cls`) as commented YAML lines at `indent`."""
    pad, lines = " " * indent, []
    for f in dataclasses.fields(cls):
        hint, value = _hints(cls)[f.name], getattr(obj, f.name)
        item = _item_dataclass(hint)
        if lines:
            lines.append("")
        if dataclasses.is_dataclass(hint):
            lines += [*_comment(_doc(hint), indent), f"{pad}{f.name}:",
                      *_yaml_mapping(hint, value, indent + 2)]
            continue
        lines += _option_comment(_option_doc(f.name, f, hint), bool(value), indent)
        if item is not None and value:
            lines.append(f"{pad}{f.name}:")
            for entry in value:
                body = _yaml_mapping(item, entry, indent + 4)
                lines += [f"{pad}  - {body[0].lstrip()}", *body[1:]]  # "- # comment" is valid YAML
            continue
        if item is not None:
            lines += _comment(f"Each entry of {f.name} has:", indent)
            for sub in dataclasses.fields(item):
                sub_doc = _option_doc(sub.name, sub, _hints(item)[sub.name])
                lines += _comment(f"  {sub.name}: {sub_doc.help} Valid: {sub_doc.valid}.",
                                  indent, hang=4)
        if "example" in f.metadata:
            lines += [f"{pad}# For example:"]
            lines += [f"{pad}#   {line}" for line in f.metadata["example"].splitlines()]
        lines.append(f"{pad}{f.name}: {_yaml_value(_plain(value))}")
    return lines


_EXAMPLE_HEADER = """\
# lograven configuration: every option, set to its default.
#
# Generated by `python -m lograven.config --example` from daemon/lograven/config.py;
# docs/configuration.md has the same reference as tables. Copy only the options you
# change into /etc/lograven/config.yaml. Unknown keys, wrong types and out-of-range
# values are errors, all reported at once with the file and the dotted key.
"""


def render_example_yaml() -> str:
    """config.example.yaml: every option with a comment, set to its default."""
    return _EXAMPLE_HEADER + "\n" + "\n".join(_yaml_mapping(Config, Config(), 0)) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lograven.config``: regenerate the docs, or check a config file."""
    parser = argparse.ArgumentParser(
        prog="python -m lograven.config",
        description="Render the configuration reference, or validate a configuration file.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print docs/configuration.md")
    action.add_argument("--example", action="store_true", help="print config.example.yaml")
    action.add_argument("--check", metavar="FILE",
                        help="validate FILE and print the effective configuration as JSON")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_reference_markdown())
    elif args.example:
        sys.stdout.write(render_example_yaml())
    else:
        try:
            config = load_config(args.check)
        except LogravenError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        sys.stdout.write(json.dumps(config.to_dict(), indent=2) + "\n")
    return 0


__all__ = [
    "AlertsConfig", "AutoencoderDetectorConfig", "AutoencoderTrainingConfig", "Config",
    "ConfigError", "DetectorsConfig", "JsonlAlertConfig", "LearnConfig", "MaskConfig",
    "MetricsConfig", "MsgTypesTrainingConfig", "OptionDoc", "RuntimeConfig",
    "SequenceDetectorConfig", "SequenceTrainingConfig", "SourceConfig", "StdoutAlertConfig",
    "SyslogAlertConfig", "TrainingConfig", "UnknownTypeDetectorConfig", "iter_options",
    "load_config", "parse_config", "parse_duration", "parse_listen",
    "render_example_yaml", "render_reference_markdown",
]

if __name__ == "__main__":
    raise SystemExit(main())
