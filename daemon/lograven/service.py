"""`lograven run`: the daemon. Wires sources -> parse -> detect -> alert sinks + metrics -> checkpoint.

Threads: one reader thread polls the tailers into a bounded queue (when the
queue is full the reader waits: backpressure, nothing dropped); the main
thread takes micro-batches from it, runs the detector, hands alerts to the
router, acknowledges lines to the tailers once the required sinks accepted
their alerts, checkpoints, pings the systemd watchdog and handles signals.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import math
import os
import queue
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any
from dataclasses import dataclass, field, replace
from pathlib import Path

from lograven import __version__
from lograven.alerts import (
    END_RULE_PREFIX, RARE_RULE_SUFFIX, Alert, AlertRouter, DetectorHit, Expected, JsonlSink, StdoutSink, SyslogSink, is_standard_output, iso_utc,
    new_alert_id,
)
from lograven.bundle import MANIFEST_MAX_BYTES, Bundle, load_bundle, read_manifest
from lograven.checkpoint import Checkpointer, decode_array, encode_array
from lograven.config import DEFAULT_SOURCE_PATHS, ROTATED_NAME_SUFFIXES, Config, load_config
from lograven.detector import Detector, DetectorSettings, StreamEnd, Verdict
from lograven.errors import LogravenError, quoted
from lograven.metrics import Metrics, PortInUse, exposure_warning, start_http_server
from lograven.modelstore import ModelStore, record_running, resolve_model_path
from lograven.masking import without_host
from lograven.notify import Notifier
from lograven.osutil import (COMPRESSION_MAGIC_BYTES, acl_user, compression_of, glob_matches, read_regular,
                             release_free_memory, stdin_binary, whoami)
from lograven.parsing import LogRecord, Parser, StreamKey, decode_line, misread_timestamps, mostly_unparsed, posix_seconds
from lograven.tailer import GlobPathProvider, RawLine, Tailer, has_magic

log = logging.getLogger(__name__)


@dataclass
class _Source:
    index: int
    parser: Parser
    key: StreamKey
    tailer: Tailer | None = None
    sampled: int = 0  # of the first FORMAT_SAMPLE_LINES non-blank lines read: how many, and how many
    unparsed: int = 0  # did not match the source's format (a wrong `format:` is said once)


@dataclass
class _Item:
    source: int
    raw: RawLine


@dataclass
class _Pending:
    """Lines processed whose acknowledgement waits for durable alerts."""

    acks: dict[tuple[int, str, str], int] = field(default_factory=dict)  # (source, path, ack_id) -> end

    def add(self, source: int, raw: RawLine) -> None:
        k = (source, raw.path, raw.ack_id)
        if raw.end > self.acks.get(k, -1):
            self.acks[k] = raw.end


_DIGITS = re.compile(r"\d+")  # status texts differ in their numbers only while a stage progresses
END_LINE_CHARS = 512  # of a stream's last line, kept for its stream-end alert (bounded memory per stream)


@dataclass(slots=True)
class _LastLine:
    """A stream's last typed line, for judging (and explaining) its end."""

    time: float  # monotonic
    path: str
    offset: int
    text: str
    host: str | None
    type_id: int


def _sequence_hit(rule: str, value: float, ratio: float, p: float, rank: int, prefix: str = "") -> DetectorHit:
    """The sequence detector's hit under `rule` at threshold `value` (k for top_k)."""
    if rule == "relative":
        return DetectorHit("sequence", ratio, value, f"{prefix}p/p_train<{value:.3g}")
    if rule == "probability":
        return DetectorHit("sequence", p, value, f"{prefix}p<{value:.3g}")
    return DetectorHit("sequence", float(rank), float(value), f"{prefix}rank>{int(value)}")


def alert_from_verdict(
    v: Verdict, *, path: str, offset: int, stream: str, line: str, record: LogRecord, detector: Detector, host: str, version: str,
    read_from: str | None = None,
) -> Alert:
    """Build the alert of an anomalous verdict: which detectors fired, why, and what was expected."""
    hits = []
    st = detector.settings
    for name in v.detectors:
        if name == "unknown_type":
            hits.append(DetectorHit("unknown_type", 1.0, 0.0, "no learned message type matches"))
        elif name == "sequence":
            value = detector.sequence_rule_value
            ratio = v.sequence_ratio if v.sequence_ratio is not None else float("nan")
            p, rank = v.sequence_p or 0.0, v.sequence_rank or 0
            floor = detector.probability_floor
            # the part that fired (the detector's order: the rule, else the floor, else the rare-type rule)
            if v.sequence_part == "floor":
                hits.append(DetectorHit("sequence", p, floor, f"p<{floor:.3g} (floor)"))
            elif v.sequence_part == "rare_type":
                n = st.sequence_rare_count
                hits.append(DetectorHit("sequence", float(detector.type_count(v.type_id)), float(n), f"count<{n} {RARE_RULE_SUFFIX}"))
            else:
                hits.append(_sequence_hit(st.sequence_rule, value, ratio if ratio == ratio else 0.0, p, rank))
        elif name == "autoencoder":
            hits.append(DetectorHit("autoencoder", v.ae_error or 0.0, v.ae_threshold or 0.0, "error>threshold"))
    expected = [Expected(t, detector.template(t) or "", p) for t, p in v.expected] if "sequence" in v.detectors else []
    return Alert(
        id=new_alert_id(),
        time=iso_utc(),
        host=record.host or host,
        file=path,
        offset=offset,
        stream=stream,
        line=line,
        type_id=v.type_id if v.type_id else -1,
        template=v.template,
        detectors=hits,
        expected=expected,
        model_version=version,
        previous_type_id=v.previous_type,
        previous_template=detector.template(v.previous_type) if v.previous_type else None,
        read_from=read_from,
        pattern=detector.line_pattern(without_host(line, record.host, record.message)) if not v.type_id else None,
        program=record.program,
    )


def alert_from_end(
    e: StreamEnd, *, detector: Detector, path: str, offset: int, line: str, type_id: int, host: str, version: str
) -> Alert:
    """Build the alert of a stream that ended improbably early; `line` is its last line."""
    st = detector.settings  # ends are judged at their own threshold (calibrated on held-back ends)
    hit = _sequence_hit(st.sequence_rule, detector.end_rule_value, e.ratio, e.p, e.rank, prefix=f"{END_RULE_PREFIX} ")
    t = type_id or e.last_type or 0
    # No previous_type_id: an end is not a transition (an allow rule for X -> X must not match it).
    return Alert(
        id=new_alert_id(), time=iso_utc(), host=host, file=path, offset=offset, stream=e.stream, line=line,
        type_id=t or -1, template=detector.template(t), detectors=[hit],
        expected=[Expected(i, detector.template(i) or "", p) for i, p in e.expected], model_version=version,
    )  # fmt: skip


PLUGIN_STDOUT_JSONL = ("alerts.jsonl.path: {path} is standard output, which carries the omprog protocol in plugin mode "
                       "(--stdin): alerts there would be taken for its replies; give a file path (alerts.syslog "
                       "sends alerts to syslog)")


def build_router(cfg: Config, metrics: Metrics | None, *, stdin_mode: bool = False, suppress=None) -> AlertRouter:
    a = cfg.alerts
    sinks = []
    if a.jsonl.enabled:
        if stdin_mode and is_standard_output(a.jsonl.path):
            raise LogravenError(PLUGIN_STDOUT_JSONL.format(path=a.jsonl.path))
        sinks.append(JsonlSink(a.jsonl.path, required=a.jsonl.required))
    if a.syslog.enabled:
        if os.path.exists(a.syslog.socket):
            sinks.append(SyslogSink(a.syslog.socket, a.syslog.facility, a.syslog.severity, a.syslog.tag,
                                    required=a.syslog.required))
        else:
            log.warning(
                "alerts.syslog: %s does not exist (no local syslog daemon?); syslog alerts are retried until it appears",
                a.syslog.socket,
            )
            sinks.append(SyslogSink(a.syslog.socket, a.syslog.facility, a.syslog.severity, a.syslog.tag,
                                    required=a.syslog.required))
    if a.stdout.enabled:
        if stdin_mode:
            log.warning("alerts.stdout is ignored with --stdin: standard output carries the omprog protocol")
        else:
            sinks.append(StdoutSink(sys.stdout, human=a.stdout.format == "human", required=a.stdout.required))
    return AlertRouter(
        sinks, dedup_window_seconds=a.dedup_window_seconds, max_per_minute=a.max_per_minute, metrics=metrics, suppress=suppress
    )


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one (systemd gives services 1024 soft, 524288 hard):
    a glob over many files must not run the tailer out of descriptors. Returns the soft limit now."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.debug("open files limit raised from %d to %d", soft, hard)
            return hard
        return soft
    except (ImportError, ValueError, OSError) as e:  # not on this platform, or refused: keep what we have
        log.debug("open files limit left as it is: %s", e)
        return -1


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """Keys a reload cannot apply, changed from `old` to `new`: the metrics listener is bound, the state
    directory locked, the line queue sized and the inference threads set once, at start."""
    pairs = (
        ("metrics.enabled", old.metrics.enabled, new.metrics.enabled),
        ("metrics.listen", old.metrics.listen, new.metrics.listen),
        ("state_dir", old.effective_state_dir(), new.effective_state_dir()),
        ("runtime.queue_size", old.runtime.queue_size, new.runtime.queue_size),
        ("runtime.threads", old.runtime.threads, new.runtime.threads),
    )
    return [key for key, a, b in pairs if a != b]


def reload_error(e: Exception) -> Exception:
    """What a reload that failed says: the error as it is when it names its cause, else its kind too (a
    RecursionError, an AttributeError from a damaged file: the running daemon stays, whatever it was)."""
    return e if isinstance(e, (LogravenError, OSError, ValueError)) else LogravenError(f"{type(e).__name__}: {e}")


def say_restart_only(pending: list[str]) -> None:
    """Name the keys a reload changed that take effect only at a restart (see keep_in_force)."""
    if pending:
        log.warning("reload: %s changed, which takes effect only at a restart (systemctl restart lograven); "
                    "until then the old value stays in force", ", ".join(pending))


def keep_in_force(old: Config, new: Config) -> tuple[Config, list[str]]:
    """A reloaded config with the restart-only keys at the values in force, and the keys whose new
    values wait for a restart. Without this the allowlist followed a new `state_dir` at once (read from
    a directory the daemon does not use, so allowlisted alerts came back), and setting a key back to
    the value in force warned again that it waits for a restart."""
    pending = restart_only_changes(old, new)
    if not pending:
        return new, []
    kept = replace(
        new,
        state_dir=old.state_dir,
        metrics=replace(new.metrics, enabled=old.metrics.enabled, listen=old.metrics.listen),
        runtime=replace(new.runtime, queue_size=old.runtime.queue_size, threads=old.runtime.threads),
    )
    return kept, pending


def trained_with_warnings(bundle: Bundle, cfg: Config, stdin_mode: bool = False) -> list[str]:
    """Sources whose `format` or `stream` differ from what the model was trained with (its manifest). A
    model trained on one stream per file and served one stream per program (or per session) sees
    sequences it never learned: an alert flood (67 sequence alerts per 1,000 normal lines against 0.7
    in an audit), which nothing else says. "mixed" (learn mode over sources that differ) is not judged.
    A model trained before lograven recorded that (no `read_as_recorded`) is judged on the first source
    only: learn mode then wrote the first source's settings, whatever the others' (an upgrade audit got
    a false "flood of alerts" warning, whose advice would have made one)."""
    trained = bundle.manifest.get("training") or {}
    out = []
    sources = cfg.sources[:1] if stdin_mode or trained.get("read_as_recorded") is not True else cfg.sources
    for i, src in enumerate(sources):
        was = trained.get("stream")
        if isinstance(was, str) and was not in ("mixed", src.stream):
            out.append(f"sources[{i}].stream is {src.stream!r}, but model {bundle.version} was trained with stream "
                       f"{quoted(was)}: its sequences look unusual to the model (a flood of alerts); set stream: {was} "
                       f"or train a model with stream: {src.stream}")
        was = trained.get("format")
        if isinstance(was, str) and was not in ("mixed", src.format):
            out.append(f"sources[{i}].format is {src.format!r}, but model {bundle.version} was trained on lines read "
                       f"as format {quoted(was)}: this source's lines are parsed otherwise than its training lines. "
                       + ("Set the format the model was trained with, or train a model on lines of this format"
                          if stdin_mode else "If the files differ in format, learn mode (`model: null`) reads "
                          "each source with its own format; else set the format the model was trained with"))
    return out


def _lock_holder(fd: int) -> tuple[str, str]:
    """(pid, "daemon" or "plugin") written in a state_dir's lock file; a pid alone is a daemon of an
    earlier version, and an empty file gives ("?", "daemon")."""
    holder = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    return (holder[0] if holder else "?"), (holder[1] if len(holder) > 1 else "daemon")


def positions_by_source(cfg: Config, positions: dict | None) -> list[dict]:
    """The checkpointed file positions each configured source resumes from.

    The checkpoint keeps them per source index, but a file belongs to whichever source's patterns
    match it now: a source inserted, removed or reordered in the configuration (by a restart or a
    reload) must not hand one file's offset to another source, or lose it. A file no source matches
    any more is dropped (logged once); a file two sources match goes to the first, as the files do."""
    entries: dict[str, Any] = {}
    for group in (positions or {}).values():
        if isinstance(group, dict):
            for path, entry in group.items():
                entries.setdefault(path, entry)
    result: list[dict] = [{} for _ in cfg.sources]
    for path, entry in entries.items():
        target = os.path.abspath(path)
        # a pattern's own entry ("followed, no file there": {}) is the source's that has that pattern
        own = [i for i, src in enumerate(cfg.sources)
               if any(target == os.path.abspath(os.path.expanduser(p)) for p in src.paths)]
        if own and entry == {} and has_magic(target):
            result[own[0]][path] = entry
            continue
        for i, src in enumerate(cfg.sources):
            if any(glob_matches(target, os.path.abspath(os.path.expanduser(p))) for p in src.paths):
                result[i][path] = entry
                break
        else:
            log.info("the checkpoint's position in %s is dropped: no configured source matches it any more", path)
    return result


#: What logrotate appends to a log's name for its old files: numbered (`.1`, `.2.gz`) and dateext.
_ROTATED_SUFFIXES = tuple(x for x in ROTATED_NAME_SUFFIXES if x)


def source_warnings(cfg: Config) -> list[str]:
    """Sources that match no file, said at start rather than found out days later (a typo, no rsyslog)."""
    out = []
    for i, src in enumerate(cfg.sources):
        earlier = [p for e in cfg.sources[:i] for p in e.paths]
        provider = GlobPathProvider(list(src.paths))
        found, denied = provider.expand()
        taken = set(GlobPathProvider(earlier).expand()[0]) if earlier else set()  # an earlier source reads these
        shared = sorted(set(found) & taken)
        if shared:
            out.append(
                f"sources[{i}].paths: {', '.join(shared[:3])}{' …' if len(shared) > 3 else ''} also match an earlier "
                "source, which reads them (a file is read by its first source only); narrow the patterns if that "
                "is not the source meant for them"
            )
        rotated_of = sorted({
            e for e in earlier if not has_magic(e) and any(
                glob_matches(os.path.abspath(os.path.expanduser(e)) + suffix, os.path.abspath(os.path.expanduser(p)))
                for p in src.paths for suffix in _ROTATED_SUFFIXES)
        })
        if rotated_of:
            out.append(
                f"sources[{i}].paths: {', '.join(src.paths)} also match{'es' if len(src.paths) == 1 else ''} the names "
                f"logrotate gives the old files of {', '.join(rotated_of[:3])}, an earlier source's log: each rotated "
                "file would be read again by this source from its start (every line scored twice); narrow the "
                "patterns (e.g. `*.log` rather than `*`)"
            )
        # a file whose very name holds glob characters (`app[prod].log`) is not what its pattern matches
        literal = [p for p in src.paths if has_magic(p) and os.path.isfile(os.path.expanduser(p))
                   and os.path.abspath(os.path.expanduser(p)) not in found]
        if literal:
            out.append(
                f"sources[{i}].paths: {', '.join(literal)} {'is' if len(literal) == 1 else 'are'} read as a glob "
                "pattern (`*`, `?` and `[...]` are wildcards), which does not match the file of that very name; "
                f"to name the file, put each `[` in brackets: {glob.escape(literal[0])}"
            )
        plain = [os.path.expanduser(p) for p in src.paths if not has_magic(p)]
        dirs = [p for p in plain if os.path.isdir(p)]
        special = [p for p in plain if os.path.exists(p) and not os.path.isdir(p) and not os.path.isfile(p)]
        if dirs:
            out.append(
                f"sources[{i}].paths: {', '.join(dirs)} {'is a directory' if len(dirs) == 1 else 'are directories'}: "
                f"lograven reads files; give the files in it, e.g. {dirs[0].rstrip('/')}/*.log"
            )
        if special:
            out.append(f"sources[{i}].paths: {', '.join(special)} is not a regular file (a device, socket or pipe): "
                       "lograven tails files; `run --stdin` reads a stream")  # fmt: skip
        if provider.unlistable:
            where = sorted({str(e.filename) for e in provider.unlistable.values()})
            out.append(
                f"sources[{i}].paths: {whoami()} cannot list {', '.join(where)} (permission denied), where "
                f"{', '.join(provider.unlistable)} look{'s' if len(provider.unlistable) == 1 else ''} for files: they "
                "are not seen until lograven's user may read and search the directory (r and x: e.g. "
                f"`setfacl -m u:{acl_user()}:rx {where[0]}`, or a group with g+rx)"
            )
        if denied and not found:
            out.append(
                f"sources[{i}].paths: cannot look at {', '.join(sorted(denied))} (permission denied on a directory); "
                "give lograven's user search (x) permission on the directories in the path"
            )
        elif loops := [p for p in src.paths if not has_magic(p) and _loops(p)]:
            one = len(loops) == 1
            out.append(f"sources[{i}].paths: {', '.join(loops)} {'is a symbolic link that loops' if one else 'are symbolic links that loop'} "
                       f"(pointing, at last, to {'itself' if one else 'themselves'}): nothing can be read there; fix the link")
        elif not found and not provider.unlistable and len(dirs) + len(special) + len(literal) < len(src.paths):
            out.append(
                f"sources[{i}].paths: no file matches {', '.join(src.paths)} yet; lograven reads it once it appears "
                "(`run --stdin` reads no files). Check the path"
                + ("; Debian 12 without rsyslog has no /var/log/syslog (`apt install rsyslog`)"
                   if any(p.startswith("/var/log/") for p in src.paths) else "")
            )
        elif tuple(src.paths) != DEFAULT_SOURCE_PATHS:  # the default pair: one of the two exists per distribution
            state = {p: _missing(p) for p in src.paths if not has_magic(p)}
            missing = [p for p, gone in state.items() if gone]
            blocked = [p for p, gone in state.items() if gone is None]
            if blocked:
                out.append(
                    f"sources[{i}].paths: cannot look at {', '.join(blocked)} (permission denied on a directory); "
                    "give lograven's user search (x) permission on the directories in the path"
                )
            if missing:
                out.append(
                    f"sources[{i}].paths: {', '.join(missing)} does not exist (yet); lograven reads it once it appears. "
                    "Check the path for a typo"
                )
        own = sorted(set(found) - taken)
        unreadable = [p for p in own if not _readable(p)]
        if unreadable:
            out.append(
                f"sources[{i}].paths: {whoami()} cannot read {', '.join(unreadable[:3])}"
                f"{' …' if len(unreadable) > 3 else ''} (permission denied); lograven retries, but reads nothing until "
                f"the user it runs as may: group adm on Debian/Ubuntu, or `setfacl -m u:{acl_user()}:r FILE` "
                "(docs/operations.md; `sudo lograven check --config FILE` checks as user lograven too)"
            )
        readable = [p for p in own if p not in unreadable]
        packed = [p for p in readable if _compressed(p)]
        if packed:
            out.append(
                f"sources[{i}].paths: {', '.join(packed[:3])}{' …' if len(packed) > 3 else ''} "
                f"{'is a compressed file' if len(packed) == 1 else 'are compressed files'} (rotated logs): lograven "
                f"does not read {'it' if len(packed) == 1 else 'them'} (nor the compressed ones the pattern will "
                "match later); narrow the pattern to the uncompressed files (e.g. /var/log/app/*.log, not "
                "/var/log/app/*)"
            )
        plain_text = [p for p in readable if p not in packed]
        if plain_text and (bad := _format_mismatch(plain_text[:3], src.format)) is not None:  # the files it reads
            out.append(f"sources[{i}].format: {bad}")
    return out


def _compressed(path: str) -> bool:
    """Whether a file starts like a compressed one (a rotated log a glob matched)."""
    try:
        with open(path, "rb") as f:
            head = f.read(COMPRESSION_MAGIC_BYTES)
    except OSError:
        return False
    return compression_of(head) is not None


def _readable(path: str) -> bool:
    """Whether this process may open the file for reading (a FIFO or a device is not opened)."""
    try:
        if not os.path.isfile(path):
            return True  # not a regular file: not this check's business
        with open(path, "rb"):
            return True
    except PermissionError:
        return False
    except OSError:
        return True  # gone meanwhile, or another error the tailer reports


FORMAT_SAMPLE_LINES = 100  # the last lines of a file, or the first lines of a source, checked against its format


def _format_mismatch(paths: list[str], fmt: str) -> str | None:
    """What to say when most of the last lines of these files do not match `fmt` (a wrong `format:`
    makes every line an unknown type, timestamp included; a regex whose groups fall in the wrong places
    holds no timestamp in its timestamp group), or None."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                start = max(0, os.fstat(f.fileno()).st_size - 64 * 1024)
                f.seek(start)
                lines = f.read().split(b"\n")[1 if start else 0 :]  # after a seek, the first line is a piece
            lines = [ln for ln in lines if ln.strip()][-FORMAT_SAMPLE_LINES:]
        except OSError:
            continue  # unreadable: said elsewhere
        parser = Parser(fmt)  # its timestamp counts are this file's
        unparsed = sum(not parser.parse(decode_line(ln, 65536)[0]).parsed for ln in lines)
        if len(lines) >= 3 and mostly_unparsed(unparsed, len(lines)):
            return (f"{unparsed} of the last {len(lines)} lines of {path} do not match format {quoted(fmt)}; every such line "
                    "is learned and scored with its header as text (a flood of unknown_type alerts). Set the format "
                    "the file has (syslog, iso, raw or regex:...; docs/configuration.md), unless these are the "
                    "continuation lines of multi-line entries (a stack trace)")
        said = misread_timestamps(parser)
        if said:
            return f"the last {len(lines)} lines of {path}: {said}"
    return None


def _loops(path: str) -> bool:
    """Whether `path` is a symbolic link that loops (ELOOP): said as such, not as a file not there yet."""
    try:
        os.stat(os.path.expanduser(path))
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def _missing(path: str) -> bool | None:
    """True when nothing is at `path`, None when a directory on the way cannot be searched."""
    try:
        os.stat(os.path.expanduser(path))
        return False
    except PermissionError:
        return None
    except OSError:
        return True


def own_alert_predicate(tag: str, fmt: str = "syslog") -> Callable[[bytes], bool]:
    """Lines that are lograven's own syslog alerts (never ingest them): a message of program `tag` that
    starts with `@cee:`, whatever the header: RFC 3164 with or without a host name, RFC 5424 (`tag PROCID
    MSGID SD`), ISO time stamps, extra spaces. The message must start with the cookie: a line of another
    program, or one that only quotes an alert, is scored. Only in a source of `format: syslog`, the
    files syslog writes alerts to: in an application's own log, whose lines an attacker may start,
    such a line is scored."""
    if fmt != "syslog":
        return lambda data: False
    parse = Parser("syslog").parse

    def skip(data: bytes) -> bool:
        if b"@cee:" not in data:
            return False
        rec = parse(data[:4096].decode("utf-8", "replace"))
        return rec.parsed and rec.program == tag and rec.message.lstrip().startswith("@cee:")

    return skip


class Service:
    """The daemon. `run()` returns the process exit code."""

    def __init__(
        self,
        cfg: Config,
        config_path: str | None = None,
        *,
        stdin_mode: bool = False,
        notifier: Notifier | None = None,
        stdin=None,
        stdout=None,
        reload: threading.Event | None = None,
    ):
        self.cfg = cfg
        self.config_path = config_path
        self.stdin_mode = stdin_mode
        # Plugin mode runs as the log shipper's child: the NOTIFY_SOCKET it inherits is the shipper's
        # service's, which refuses (and logs) every notification from a process that is not its main one.
        self.notifier = notifier or (Notifier(env={}) if stdin_mode else Notifier())
        self.metrics = Metrics()
        self.stdin = stdin or (stdin_binary() if stdin_mode else None)
        self.stdout = stdout or sys.stdout
        self.state_dir = cfg.effective_state_dir()
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._reload = reload or threading.Event()  # given: set by a SIGHUP while starting (kept, not fatal)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=cfg.runtime.queue_size)
        self._reader: threading.Thread | None = None
        self._reader_stop = threading.Event()
        self._sources: list[_Source] = []
        self._pending = _Pending()
        self._http = None
        self.detector: Detector | None = None
        self.bundle: Bundle | None = None
        self.router: AlertRouter | None = None
        self._allowlist_in_force = None  # the Allowlist the router's suppress hook reads (_allowlist)
        self._error_said_at = -math.inf  # when a line that could not be scored was last logged
        self._failed_in_a_row = 0  # lines that could not be scored since the last one that could
        self._staged = None  # (meta, verdicts, cut) of the batch being processed once scored, until submitted
        # the bundle running, resolved when it was loaded: `model: /var/lib/lograven/models/current` resolves
        # elsewhere after a switch, and resolved later it said "running" for ever (a review: never followed)
        self._model_path: Path | None = None
        self._last_ckpt = time.monotonic()
        self._ckpt_gap = 0.0  # the least time between checkpoints, from how long the last one took
        self._ckpt_failures, self._ckpt_error_at = 0, 0.0  # checkpoints not written in a row; when to say it again
        self._last_stats = 0.0
        self._last_idle_check = time.monotonic()  # streams idle past runtime.stream_idle_seconds: looked for a minute in
        self._metrics_retry_at = float("inf")  # when to try metrics.listen again (its port was held at start)
        self._last_model_check = time.monotonic()
        self._rejected_model: tuple | None = None  # (path, manifest state) of a version the last switch refused
        self._exported_files: set[str] = set()  # files with per-file series on /metrics
        self._exported_stats: dict[str, Any] = {}  # the FileStats last exported per file: unchanged ones are skipped
        self._own_alerts_said: set[str] = set()  # files found holding lograven's own alerts, said once each
        self._evictions_logged, self._evictions_log_at = 0, 0.0  # forgotten stream states: warned hourly
        self._evictions_det: Detector | None = None
        self._status = ""
        self._logged_stage, self._logged_at = "", 0.0  # the last status written to the log, and when
        self._processed_ends: dict[str, int] = {}  # RawLine.ack_id -> end of the last line processed (for a reload)
        self._stop_problems: list[str] = []  # what the stop could not save: `run` then exits 1
        self._dirty = False  # lines processed since the last checkpoint (an idle daemon writes nothing)
        self._relearn_started = 0.0
        self._relearn_buffer: QuietLines | None = None  # (parser, path, line, stream) of lines that raised no alert
        # stream -> its last typed line (monotonic time, path, offset, text, host, type), oldest first;
        # kept only while stream ends are judged (detectors.sequence.stream_end_after)
        self._stream_last: OrderedDict[str, _LastLine] = OrderedDict()
        self._cut_by_timestamps = False  # set per model (_activate)
        # per stream, the timestamp of its last line that had one (any line: typed or not), as training
        # measured silences (stream_segments); only for models that cut streams at silences
        self._stream_log_time: OrderedDict[str, float] = OrderedDict()
        self._relearn_thread: threading.Thread | None = None
        self._next_relearn = float("inf")
        self._lock_fd: int | None = None
        self._checkpoint_off = False  # a plugin on the daemon's state_dir: the checkpoint is the daemon's
        self._last_holder = "?"  # "daemon" or "plugin": who held the state_dir's lock before this process
        self._rare_warned = False  # the mostly-rare-types warning said once per process (then at info)

    # ------------------------------------------------------------ set-up
    def _prepare_state_dir(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # a new file of our own (never a planted symlink's target), removed at once
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.state_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise LogravenError(
                f"state_dir {self.state_dir}: not writable ({e.strerror}); set state_dir in the config to a directory "
                "lograven's user can write (under systemd, StateDirectory=lograven provides /var/lib/lograven)"
            ) from e
        self.checkpointer = Checkpointer(self.state_dir / "checkpoint.json")
        self.store = ModelStore(self.state_dir / "models")
        self._lock_state_dir()

    def _lock_state_dir(self) -> None:
        """One daemon per state_dir: a second one would overwrite the first's checkpoint and send every
        alert twice. The lock (flock on `<state_dir>/lock`) goes with the process, however it ends.

        A plugin (--stdin) is not refused: a shipper that starts a second instance would restart a
        refused one for ever, holding its messages. It is told, once, why two share the directory."""
        import fcntl

        path = self.state_dir / "lock"
        try:
            # O_NOFOLLOW: a symlink planted at `lock` must not make lograven truncate another file
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, "not a regular file")
        except OSError as e:
            hint = "; remove it (it is recreated)" if e.errno in (errno.ELOOP, errno.EINVAL, errno.EISDIR) else ""
            if e.errno in (errno.EACCES, errno.EPERM):
                hint = f"; remove it, or give it to the user lograven runs as ({whoami()})"
            if self.stdin_mode:  # a plugin ran without the lock before: a shipper must not restart it for ever
                log.warning("%s: cannot open the state directory's lock (%s)%s; running without it", path, e.strerror, hint)
                return
            raise LogravenError(f"{path}: cannot open the state directory's lock ({e.strerror}){hint}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other, kind = _lock_holder(fd)
            finally:
                os.close(fd)
            if self.stdin_mode and kind == "plugin":
                log.warning(
                    "state_dir %s is in use by another lograven plugin (pid %s): the shipper runs the plugin more "
                    "than once (rsyslog: one per worker of the action's queue, and one more for a backlog saved "
                    "on disk), so each instance sees part of the stream and they overwrite each other's "
                    "checkpoint. Give the action forceSingleInstance=\"on\" and its own queue with one worker "
                    "(queue.type=\"LinkedList\" queue.workerThreads=\"1\"); see docs/operations.md, Plugin mode",
                    self.state_dir, other)
                return
            if self.stdin_mode:
                # not refused: a shipper would restart the plugin for ever. But its checkpoint would replace the
                # daemon's, whose file positions would be gone at its next start (lines skipped)
                log.warning("state_dir %s is in use by the lograven daemon (pid %s): the plugin runs without writing "
                            "a checkpoint, which would replace the daemon's (its file positions); give the plugin its "
                            "own state_dir", self.state_dir, other)
                self._checkpoint_off = True
                return
            if kind == "plugin":
                raise LogravenError(
                    f"state_dir {self.state_dir} is in use by a lograven plugin (pid {other}) that a log shipper runs "
                    "(`run --stdin`); give the daemon or the plugin its own state_dir"
                ) from None
            raise LogravenError(
                f"state_dir {self.state_dir} is in use by another lograven (pid {other}); stop it "
                "(`systemctl stop lograven`), or give this one its own state_dir"
            ) from None
        with contextlib.suppress(OSError):  # who held it last: a daemon does not take a plugin's streams
            self._last_holder = _lock_holder(fd)[1]
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {'plugin' if self.stdin_mode else 'daemon'}\n".encode(), 0)
        except OSError as e:  # creating the lock file takes no data block; writing the pid does
            if self.stdin_mode:  # the lock is held all the same; a full disk is said by the checkpoints
                self._lock_fd = fd
                return
            os.close(fd)
            raise LogravenError(
                f"state_dir {self.state_dir}: cannot write the lock file ({e.strerror}); free space on its file "
                "system (`df -h` it) or choose another state_dir"
            ) from None
        self._lock_fd = fd

    def _model_location(self, cfg: Config) -> Path | None:
        """The bundle to run, as it is now: a model directory's `current` (or `model: .../current`) is
        resolved here, once, so that what is loaded is what is compared and noted (a review: resolved again
        after loading, a switch meanwhile was taken for the running version)."""
        if cfg.model:
            return resolve_model_path(cfg.model).resolve()
        if self.store.current_path() is None and not self.store.versions():
            return None  # nothing learned yet: learn mode
        # says what is wrong with a dangling `current`, or with versions but none current (a start adopts the
        # newest first: _adopt_newest_version; a running daemon says it lost `current`, as a broken one)
        return resolve_model_path(self.store.root).resolve()

    def _adopt_newest_version(self) -> None:
        """At a start with `model: null`: versions in the models directory but none current (learn mode
        stopped between saving and switching, or a restore lost the link) make the newest valid one current,
        said, instead of learning afresh beside them (a review)."""
        if self.cfg.model or os.path.lexists(self.store.root / "current"):
            return
        for name in reversed(self.store.versions()):
            try:
                with self.store.switching():
                    if os.path.lexists(self.store.root / "current"):  # a rollback came first
                        return
                    self.store.set_current(name)
            except LogravenError as e:
                log.warning("model directory %s: %s is not usable (%s)", self.store.root, name, e)
                continue
            log.warning("model directory %s had versions but none current: %s, the newest that loads, is made "
                        "current (`lograven models rollback --dir %s --to vNNNN` picks another)", self.store.root,
                        name, self.store.root)
            return

    def _running_status(self, event: str) -> str:
        """`systemctl status`'s line after a reload or a model switch: what the daemon does, as at its start,
        and the event with its time (an admin's review: "reloaded; model ..." had stayed there for good)."""
        doing = "reading standard input" if self.stdin_mode else f"watching {self._file_count()} file(s)"
        self._status = f"{doing}, model {self.bundle.version if self.bundle else '-'}"
        return f"{self._status} ({event} at {time.strftime('%H:%M:%S')})"

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.status(text)
            # the journal gets each new stage, and progress within one at most once a minute
            stage, now = _DIGITS.sub("", text), time.monotonic()
            if stage != self._logged_stage or now - self._logged_at >= 60.0:
                self._logged_stage, self._logged_at = stage, now
                log.info("%s", text)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def stop(self) -> None:
        self._stop.set()

    # --------------------------------------------------------------- run
    def run(self) -> int:
        """Run until stopped. Exit status 0, or 1 when the stop could not save everything: the last
        checkpoint was not written (the next start re-reads from the one before) or alerts were left
        undelivered with no durable copy. systemd then shows the unit as failed, and the journal says why."""
        code = self._run()
        if self._stop_problems:
            log.error("stopped with errors: %s", "; ".join(self._stop_problems))
            return 1
        return code

    def _run(self) -> int:
        from lograven.cli import limit_threads

        limit_threads(self.cfg.runtime.threads)
        raise_open_files_limit()
        self._install_signals()
        self._prepare_state_dir()
        if not self.stdin_mode:
            for warning in source_warnings(self.cfg):
                log.warning("%s", warning)
        self.metrics.build_info.info({"version": __version__, "python": sys.version.split()[0]})
        if self.cfg.metrics.enabled and not self.stdin_mode:
            try:
                self._http = start_http_server(self.cfg.metrics.listen, self.metrics)
            except PortInUse as e:
                # Detection goes on without /metrics, and the port is tried again: any local user may
                # take a port before lograven starts, and refusing to start made that a way to stop
                # all detection (after every reboot or upgrade) while serving Prometheus fake figures.
                self._metrics_retry_at = time.monotonic() + self.METRICS_RETRY_SECONDS
                log.error("%s. Detecting and alerting without /metrics; trying the port again every %g s. If "
                          "another user's process holds it, it may be answering Prometheus in lograven's name",
                          e, self.METRICS_RETRY_SECONDS)
            except BaseException:
                self._release_lock()
                raise
            if (warning := exposure_warning(self.cfg.metrics.listen)) is not None:
                log.warning("%s", warning)
        try:
            # a plugin on a daemon's state_dir does not touch its checkpoint: not even load() (which removes
            # unfinished temp files, the daemon's being written, and sets an unusable file aside), nor
            # take the daemon's streams' states
            state = None if self._checkpoint_off else self.checkpointer.load()
            if self.checkpointer.corrupt_count:
                self.metrics.checkpoint_corrupt.inc(self.checkpointer.corrupt_count)
            state = state or {}
            if not self.stdin_mode:
                self._adopt_newest_version()
            path = self._model_location(self.cfg)
            positions = state.get("positions", {})
            if not self.stdin_mode and self._last_holder == "plugin" and state.get("streams"):
                # a plugin's (stopped now): its streams are not the daemon's files; restored, their ends were
                # judged as alerts of no file or line
                log.warning("state_dir %s was a lograven plugin's (`run --stdin`): its checkpoint's stream states "
                            "are not taken; give the plugin and the daemon a state_dir each", self.state_dir)
                state = {**state, "streams": {}}
            if self.stdin_mode and any(isinstance(g, dict) and g for g in positions.values()):
                # A stopped daemon's checkpoint (a plugin writes no file positions): the plugin neither takes
                # its streams' states nor writes its own checkpoint over it, as beside a running daemon. It
                # had replaced the positions by none (the daemon then re-read or skipped its files), and its
                # sessions' states reached the daemon, which judged their ends as alerts of no file or line.
                log.warning("state_dir %s holds the lograven daemon's checkpoint (its file positions): the plugin "
                            "runs without writing a checkpoint, which would replace the daemon's; give the plugin "
                            "its own state_dir", self.state_dir)
                self._checkpoint_off = True
                state = {}
            learned = False
            if path is None:
                if self.stdin_mode:
                    raise LogravenError(
                        "no model: --stdin needs a trained bundle; set `model:` in the config or run "
                        "`lograven train --out DIR LOGFILE...` first"
                    )
                # Ready now, not after learning: learning can take longer than systemd's start timeout
                # (TimeoutStartSec, 90 s by default), and on a quiet host it waits for lines. The
                # daemon is up; STATUS (`systemctl status`) and the journal show the progress.
                self.notifier.ready("learn mode: no model yet, learning this host's normal messages first")
                positions = self._learn_mode()
                if self._stop.is_set():
                    # (a version saved but not made current yet counts: the next start adopts it)
                    if positions and (self.store.current_name(strict=False) is not None or self.store.versions()):
                        # stopped just after the model was saved: where learning stopped must survive,
                        # or the next start skips to the files' ends (start_position: end)
                        try:
                            self.checkpointer.save({"model": None, "positions": positions, "streams": {}})
                        except LogravenError as e:
                            log.error("checkpoint not written: %s", e)
                            self._stop_problems.append(f"the checkpoint after learn mode was not written ({e})")
                    return 0
                path = self._model_location(self.cfg)
                state = {"positions": positions}
                learned = True
            assert path is not None
            try:
                bundle = load_bundle(path)
            except LogravenError as e:
                # no hint to move `current` for a `model:` that names a version itself (a link to one included)
                pinned = bool(self.cfg.model) and Path(self.cfg.model).name != "current" and not ModelStore.is_store(Path(self.cfg.model))
                raise (e if pinned else self._with_rollback(e, path)) from e
            self._activate(bundle, path, self.cfg)
            self._restore_streams(state)
            # the checkpoint's streams as parsed JSON (100,000 streams: ~150 MB) would otherwise live as
            # long as this frame, the daemon's life; and glibc keeps the freed blocks unless asked
            state.pop("streams", None)
            release_free_memory()
            self.router = build_router(self.cfg, self.metrics, stdin_mode=self.stdin_mode, suppress=self._allowlist())
            if self.stdin_mode:
                return self._run_stdin()
            unsaved = self._open_sources(self.cfg, positions, None if learned else self.checkpointer.saved_at)
            self._note_restored_files()
            # On disk at once where learning stopped, or where a first start (or a new source or file)
            # began (the files' ends): a crash before the first periodic checkpoint must not start again
            # at the files' new ends, skipping what came meanwhile.
            if learned or not state or unsaved:
                self._checkpoint()
            self._start_reader()
            self.notifier.ready(f"watching {self._file_count()} file(s) with model {self.bundle.version}")
            self._set_status(f"watching {self._file_count()} file(s), model {self.bundle.version}")
            self.metrics.reload_succeeded()
            self._setup_relearning()
            self._loop()
            return 0
        finally:
            self._shutdown()

    @staticmethod
    def _with_rollback(e: LogravenError, path: Path) -> LogravenError:
        """A version of a model directory that does not load, at start: the error, and the earlier versions
        that `models rollback` can make current (a review: a running daemon said so, a starting one did not)."""
        root = Path(path).parent
        if Path(path).name == "current" or not ModelStore.is_store(root):
            return e
        others = [v for v in ModelStore(root).versions() if v != Path(path).name]
        if not others:
            return e
        return LogravenError(f"{e}; or roll back to an earlier version: `lograven models rollback --dir {root} "
                             f"--to {others[-1]}` (`lograven models list --dir {root}` shows them all)")

    def _file_count(self) -> int:
        return sum(len(s.tailer.stats()) for s in self._sources if s.tailer)

    def _activate(self, bundle: Bundle, path: Path, cfg: Config) -> None:
        if not self._checkpoint_off:  # (a plugin beside a daemon leaves the state_dir's files to it)
            record_running(self.state_dir, path)
        old = self.detector
        det = Detector(bundle, DetectorSettings.from_config(cfg.detectors, max_streams=cfg.runtime.max_streams))
        if old is not None and _same_vocabulary(old.bundle, bundle):
            n = det.import_states({k: (s.h, s.seen, s.last, s.at) for k, s in old.states.items()})
            if bundle is not old.bundle:  # a reload of the same model switches nothing
                log.info("kept GRU state of %d stream(s) across the model switch", n)
        elif old is not None and old.states:
            log.info("model %s has other message types than %s (a rollback, or another training): the GRU state "
                     "of %d stream(s) starts afresh, so their next lines are judged without history",
                     bundle.version, old.bundle.version, len(old.states))  # fmt: skip
        self.detector, self.bundle, self._model_path = det, bundle, Path(path).resolve()
        trained_gap = bundle.stream_end_after
        if cfg.detectors.sequence.enabled and cfg.detectors.sequence.stream_end_after > 0 and not det.judges_stream_ends:
            if trained_gap:  # trained for ends, but no stream of its lines ever went silent that long
                log.warning("detectors.sequence.stream_end_after is set, and model %s was trained for stream ends at "
                            "%gs of silence, but no stream of its training lines was silent that long, so it learned "
                            "no end: stream ends are not judged. Train on a longer stretch of the logs, or lower "
                            "stream_end_after", bundle.version, trained_gap)
            else:
                log.warning("detectors.sequence.stream_end_after is set but model %s did not learn stream ends "
                            "(train it with training.sequence.stream_end: true): stream ends are not judged",
                            bundle.version)
        # a model that learned ends at silences by the lines' timestamps is served the same way; one trained
        # on whole sessions only sees a stream end after stream_end_after of idleness
        self._cut_by_timestamps = bool(trained_gap)
        if det.judges_stream_ends and trained_gap and trained_gap != cfg.detectors.sequence.stream_end_after:
            log.warning("model %s learned stream ends after %gs of silence, but detectors.sequence.stream_end_after is "
                        "%gs: ends are judged at another silence than they were learned at; set it to %g or retrain",
                        bundle.version, trained_gap, cfg.detectors.sequence.stream_end_after, trained_gap)
        self.metrics.set_model(bundle.version, bundle.sha256)
        if bundle is not (old.bundle if old is not None else None) or cfg is not self.cfg:
            for warning in trained_with_warnings(bundle, cfg, self.stdin_mode):
                log.warning("%s", warning)
        if bundle is not (old.bundle if old is not None else None):
            log.info("model %s loaded from %s (%d message types)", bundle.version, path, len(bundle.types.types_))
            self._rare_warned = _warn_rare_types(det, bundle, again=self._rare_warned) or self._rare_warned

    def _restore_streams(self, state: dict) -> None:
        streams = state.get("streams")
        if not streams:
            return
        if state.get("model") != self.bundle.version:
            log.info("the checkpoint's GRU states (%d stream(s)) belong to model %s, not %s: those streams start "
                     "afresh (file positions are kept)", len(streams) if isinstance(streams, dict) else 0,
                     state.get("model"), self.bundle.version)  # fmt: skip
            return
        if not isinstance(streams, dict):
            log.warning("checkpoint: GRU states unreadable (not an object but %s); streams start fresh",
                        type(streams).__name__)
            self.metrics.checkpoint_corrupt.inc()
            return
        # each stream on its own: one damaged entry had dropped every stream's state (a robustness review)
        decoded, bad, why = {}, 0, ""
        for k, v in streams.items():
            try:
                decoded[k] = (decode_array(v["h"]), int(v["seen"]), int(v.get("last", 0)), self._restored_at(v.get("at")))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
                bad, why = bad + 1, why or f"{str(k)[:80]!r}: {e}"
        if bad:
            log.warning("checkpoint: the GRU states of %d of %d stream(s) are unreadable (the first, %s); those "
                        "streams start fresh", bad, len(streams), why)
            self.metrics.checkpoint_corrupt.inc()
        n = self.detector.import_states(decoded)
        log.info("restored GRU state of %d stream(s) from the checkpoint", n)
        if self._judge_ends():
            # restored streams are judged as ended after stream_end_after too, counted from now
            now = time.monotonic()
            for k, v in streams.items():
                if k not in self.detector.states:
                    continue
                line = v.get("line")
                try:
                    path, offset, text, host = (str(line[0]), int(line[1]), str(line[2]), line[3]) if line else ("", -1, "", None)
                    log_time = float(line[4]) if line and len(line) > 4 and line[4] is not None else math.nan
                except (TypeError, ValueError, IndexError):
                    path, offset, text, host, log_time = "", -1, "", None, math.nan
                self._stream_last[k] = _LastLine(now, path, offset, text, host if isinstance(host, str) else None,
                                                 self.detector.states[k].last)  # fmt: skip
                if log_time == log_time:
                    self._stream_log_time[k] = log_time

    def _restored_at(self, at: object) -> float | None:
        """A stream's last-line time from the checkpoint, moved on by the time lograven was stopped: the
        stop is not idleness (runtime.stream_idle_seconds), as stream ends count from the restart."""
        saved = self.checkpointer.saved_at
        if saved is None or not isinstance(at, (int, float)) or isinstance(at, bool):
            return None  # now
        try:
            idle_before = max(0.0, saved - float(at))
        except OverflowError:
            return None
        return self.detector.clock() - idle_before if math.isfinite(idle_before) else None

    def _note_restored_files(self) -> None:
        """Streams restored for files that are not followed now (deleted while lograven was stopped, or
        within the hour before it stopped) go at the next metrics export, as those of files that go
        while it runs (_forget_streams_of). Only absolute paths, and only where a source keys streams
        by file or program: a session key (`regex:`) is not a file."""
        if self.detector is None or not any(src.stream in ("file", "program") for src in self.cfg.sources):
            return
        followed = {p for s in self._sources for p in s.tailer.stats()}
        for k in self.detector.states:
            parts = (k, k.rpartition(":")[0])
            if any(p in followed for p in parts):
                continue  # a followed file's stream
            self._exported_files.update(p for p in parts if p.startswith("/"))

    def _allowlist(self, cfg: Config | None = None):
        """The allowlist of `cfg` (a reload's new configuration), else the running one's. A reload keeps the
        allowlist it had when the file is the same (it re-reads the file when it changes, and keeps its rules
        while the file does not parse: a review, a SIGHUP during a hand edit with a syntax error had dropped
        every rule, and the alerts they suppressed came)."""
        from lograven.allowlist import Allowlist

        path = (cfg or self.cfg).allowlist_path()
        kept = self._allowlist_in_force
        if kept is None or kept.path != Path(path):
            kept = self._allowlist_in_force = Allowlist(path)
        return kept.matches

    def _open_sources(self, cfg: Config, positions: dict, saved_at: float | None = None) -> bool:
        """Open a tailer per source, resuming at `positions` (the checkpoint's). Returns whether a
        followed file has no position there (a source or file new since: started by `start_position`),
        which the caller then checkpoints at once: a crash before the periodic checkpoint would start
        it at its end again, skipping the lines written meanwhile (a review: lost to a kill -9)."""
        per_source = positions_by_source(cfg, positions)
        self._sources = []
        for i, src in enumerate(cfg.sources):
            skip = own_alert_predicate(cfg.alerts.syslog.tag, src.format)
            s = _Source(i, Parser(src.format), StreamKey(src.stream))
            s.tailer = Tailer(
                list(src.paths),
                start_position=src.start_position,
                max_line_bytes=cfg.runtime.max_line_bytes,
                poll_interval=cfg.runtime.poll_interval_seconds,
                rescan_interval=cfg.runtime.poll_interval_seconds,  # not on every poll while lines keep coming
                unterminated_after=cfg.runtime.unterminated_line_seconds,
                positions=per_source[i],
                skip_predicate=skip,
                exclude_paths=[p for earlier in cfg.sources[:i] for p in earlier.paths],  # a file is its first source's
                saved_at=saved_at,
            )
            self._sources.append(s)
        unsaved = any(set(s.tailer.positions()) - set(per_source[s.index]) for s in self._sources)
        self._exported_stats.clear()  # the new tailers' counts are all exported, file_readable set below too
        for s in self._sources:
            for p in s.tailer.stats():
                self.metrics.file_readable.labels(file=p).set(1)
                self._exported_files.add(p)
        return unsaved

    # ------------------------------------------------------------ reader
    READER_JOIN_SECONDS = 10.0

    def _start_reader(self) -> None:
        # each reader has its own stop flag: one that did not stop in time (a read hung on a dead NFS
        # mount) stops as soon as it wakes, and never reads alongside its successor
        self._reader_stop = stop = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, args=(stop,), name="lograven-reader", daemon=True)
        self._reader.start()

    def _stop_reader(self) -> None:
        self._reader_stop.set()
        for s in self._sources:
            if s.tailer:
                s.tailer.wake()
        if self._reader is not None:
            self._reader.join(timeout=self.READER_JOIN_SECONDS)
            if self._reader.is_alive():
                log.warning("the reader thread did not stop within %.0f s (a read blocked, e.g. on a hung network "
                            "file system); it stops when the read returns, and what it read is read again",
                            self.READER_JOIN_SECONDS)
            self._reader = None

    def _read_loop(self, stop: threading.Event) -> None:
        chunk = max(1, self.cfg.runtime.batch_size)
        while not stop.is_set():
            got = 0
            for s in self._sources:
                room = self._queue.maxsize - self._queue.qsize()
                if room <= 0:
                    break
                try:
                    lines = s.tailer.poll(min(room, chunk * 4))
                except Exception:  # never let one bad file kill the reader
                    if stop.is_set():  # a stale reader waking after a reload: its tailer was closed
                        return
                    log.exception("reading %s failed; retrying", s.index)
                    lines = []
                for raw in lines:
                    while not stop.is_set():
                        try:
                            self._queue.put(_Item(s.index, raw), timeout=0.5)  # backpressure: wait, never drop
                            break
                        except queue.Full:
                            continue
                got += len(lines)
            if got == 0 and self._sources:
                self._sources[0].tailer.wait(self.cfg.runtime.poll_interval_seconds if len(self._sources) == 1 else min(0.2, self.cfg.runtime.poll_interval_seconds))

    # -------------------------------------------------------------- loop
    def _loop(self) -> None:
        rt = self.cfg.runtime
        paused: str | None = None
        while not self._stop.is_set():
            # a required sink's retry queue half full: no new lines are scored until it delivers (they wait in
            # the files, read later; the reader waits on the full queue), so none of its alerts is dropped
            backlogged = self.router.backlogged(rt.batch_size)
            if backlogged != paused:
                if backlogged:
                    log.warning("alert sink %s holds %d or more undelivered alerts: reading is paused until it "
                                "delivers (the lines wait in the files; nothing is lost)", backlogged,
                                self.router.backlog_limit(rt.batch_size))
                else:
                    log.info("alert sink %s delivers again: reading resumes", paused)
                paused = backlogged
            if paused:
                self._stop.wait(0.5)
            else:
                batch = self._take_batch(rt.batch_size, rt.max_wait_ms / 1000.0, timeout=0.5)
                if batch:
                    self._process_guarded(batch)
            self._housekeeping()
        # SIGTERM: stop reading, finish what was read, deliver, checkpoint
        self._stop_reader()
        self._drain_queue_into_detector()

    def _process_guarded(self, batch: list[_Item]) -> None:
        """_process, with a line it cannot score skipped, not fatal: a line that raised (a bug, or a model
        that passed its checks and fails on it) had stopped the daemon, and systemd's restart met it again, a
        crash loop without monitoring (a review). The batch is finished line by line with its verdicts when it
        was scored whole, else scored again line by line; each line that raises is skipped (_skip_failed)."""
        try:
            self._process(batch)
            self._failed_in_a_row = 0
            return
        except Exception:  # noqa: BLE001 - found line by line below, each said
            staged, self._staged = self._staged, None
            if len(batch) == 1:
                self._skip_failed(batch[0])
                return
        if staged is not None:  # scored whole: finished line by line, not scored again (the GRU states advanced once)
            meta, verdicts, cut = staged
            for m, v in zip(meta, verdicts):
                try:
                    self._finish([m], [v], cut)
                    self._failed_in_a_row = 0
                except Exception:  # noqa: BLE001
                    self._skip_failed(m[0])
            return
        for it in batch:
            try:
                self._process([it])
                self._failed_in_a_row = 0
            except Exception:  # noqa: BLE001
                self._skip_failed(it)

    def _skip_failed(self, it: _Item, what: str | None = None) -> None:
        """A line _process raised on (call in its `except`): said (once a minute, with the traceback and how
        many lines in a row failed: every line failing is said as such), counted, and acknowledged. Not a stop:
        a burst of crafted lines that fail would then stop the daemon at every start (a review); the counter
        (lograven_lines_dropped_total{reason="error"}) is what an alert rule watches (LogravenLinesFailing)."""
        what = what or f"the line at byte {it.raw.offset} of {it.raw.read_from or it.raw.path}"
        self._failed_in_a_row += 1
        self.metrics.lines_dropped.labels(file=it.raw.path, reason="error").inc()
        now = time.monotonic()
        if now - self._error_said_at >= 60.0:
            self._error_said_at = now
            row = (f" ({self._failed_in_a_row} lines in a row have failed: if every line fails, lograven detects "
                   "nothing; stop it and report this)" if self._failed_in_a_row > 1 else "")
            log.error("cannot score %s; it is skipped (counted in lograven_lines_dropped_total{reason=\"error\"})%s. "
                      "Please report this with the traceback", what, row, exc_info=True)
        self._pending.add(it.source, it.raw)
        self._dirty = True

    def _take_batch(self, size: int, max_wait: float, timeout: float) -> list[_Item]:
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + max_wait
        while len(batch) < size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _sample_format(self, src: _Source, parsed: bool, path: str) -> None:
        """The first lines of a source (files that appear later, plugin mode's input): a wrong `format:`
        is said once, instead of being found out from a flood of unknown_type alerts."""
        src.sampled += 1
        src.unparsed += not parsed
        if src.sampled == FORMAT_SAMPLE_LINES and mostly_unparsed(src.unparsed, src.sampled):
            fmt = self.cfg.sources[src.index].format if src.index < len(self.cfg.sources) else src.parser.fmt
            log.warning("sources[%d].format: %d of the first %d lines read (%s) do not match format %r; every such "
                        "line is scored with its header as text (unknown_type alerts). Set the format the input has "
                        "(syslog, iso, raw or regex:...) and reload", src.index, src.unparsed, src.sampled, path, fmt)  # fmt: skip
        if src.sampled == FORMAT_SAMPLE_LINES:
            said = misread_timestamps(src.parser)
            if said:
                log.warning("sources[%d].format (%s): %s; set the format the input has and reload", src.index, path,
                            said)  # fmt: skip

    def _process(self, batch: list[_Item]) -> None:
        assert self.detector is not None and self.router is not None
        self._staged = None
        max_bytes = self.cfg.runtime.max_line_bytes
        items, meta = [], []
        cut: set[tuple[str, int]] = set()  # lines longer than max_line_bytes: their alerts say so
        done = self._processed_ends
        if len(done) > 10_000:  # one entry per file generation: bounded (a reload then reads some lines again)
            done.clear()
        for it in batch:
            src = self._sources[it.source]
            if it.raw.end > done.get(it.raw.ack_id, -1):
                done[it.raw.ack_id] = it.raw.end
            text, truncated = decode_line(it.raw.data, max_bytes)
            if truncated or it.raw.truncated:  # the tailer keeps max_line_bytes of a longer line
                cut.add((it.raw.path, it.raw.offset))
            rec = src.parser.parse(text)
            if src.sampled < FORMAT_SAMPLE_LINES and text.strip():
                self._sample_format(src, rec.parsed, it.raw.path)
            stream = src.key.key(it.raw.path, rec, text)
            items.append((stream, rec))
            meta.append((it, text, rec, stream))
        judge = self._judge_ends()
        parts = self._silences(items) if judge and self._cut_by_timestamps else [(0, len(items), [])]
        verdicts: list = []
        for a, b, resumed in parts:
            if resumed:
                # these streams were silent for stream_end_after by their own timestamps (a backlog read
                # faster than it was written): their ends are judged before they speak again
                self._end_streams(resumed, "silent by their timestamps")
            t0 = time.perf_counter()
            part = self.detector.detect(items[a:b])
            self.metrics.inference_duration.labels(detector="all").observe(time.perf_counter() - t0)
            verdicts.extend(part)
            if judge:
                last = self._stream_last
                now = time.monotonic()
                n_seq = self.detector.seq.n_types_
                for j, v in enumerate(part, a):
                    if 0 < v.type_id <= n_seq:  # the line advanced the stream's GRU state (judged or not)
                        it, text, rec, stream = meta[j]
                        last[stream] = _LastLine(now, it.raw.path, it.raw.offset, text[:END_LINE_CHARS], rec.host, v.type_id)
                        last.move_to_end(stream)
                while len(last) > self.detector.settings.max_streams:
                    last.popitem(last=False)
        self._staged = (meta, verdicts, cut)  # scored: the GRU states advanced (see _process_guarded)
        self._finish(meta, verdicts, cut)

    def _finish(self, meta: list, verdicts: list, cut: set[tuple[str, int]]) -> None:
        """The scored lines' metrics and alerts, submitted; their acknowledgement when durable."""
        alerts = self._account(verdicts, [(m[0].raw.path, m[0].raw.offset, m[3], m[1], m[2], m[0].raw.read_from)
                                          for m in meta])  # fmt: skip
        if cut:
            for a in alerts:
                a.line_truncated = (a.file, a.offset) in cut
        if self._relearn_buffer is not None:
            for (it, text, _, stream), v in zip(meta, verdicts):
                # with its source's parser and its stream (sources differ in format and key); a blank line
                # teaches nothing (relearning learned a type with an empty template from them)
                if not v.anomaly and text.strip():
                    self._relearn_buffer.append((self._sources[it.source].parser, it.raw.path, text, stream))
        for it, *_ in meta:
            self._pending.add(it.source, it.raw)
        self._dirty = True
        self._staged = None  # submitted: not to be finished again
        durable = self.router.submit(alerts)
        if durable:
            self._ack_pending()
        self.metrics.queue_lines.set(self._queue.qsize())
        if sum(len(m[0].raw.data) for m in meta) > self.BIG_BATCH_BYTES:
            # a batch of very long lines (256 of 64 KiB: their tokens took 250 MB) leaves the heap
            # grown; give what is free back to the system rather than keep it for good
            release_free_memory()

    BIG_BATCH_BYTES = 4 * 2**20

    def _account(self, verdicts: list[Verdict], meta: list[tuple[str, int, str, str, LogRecord, str | None]]) -> list[Alert]:
        """Metrics per line and alerts for the anomalous ones."""
        m = self.metrics
        unknown: Counter[str] = Counter()
        blank: Counter[str] = Counter()
        anomalies: Counter[tuple[str, str]] = Counter()
        # the alerts first, then the metrics: a line whose alert cannot be built raises before any line of
        # the batch is counted (_process_guarded then finishes them one by one: counted once, a review)
        alerts = [
            alert_from_verdict(
                v, path=path, offset=offset, stream=stream, line=text, record=rec,
                detector=self.detector, host=self.host, version=self.bundle.version, read_from=read_from,
            )
            for v, (path, offset, stream, text, rec, read_from) in zip(verdicts, meta) if v.anomaly
        ]  # fmt: skip
        for v, (path, offset, stream, text, rec, read_from) in zip(verdicts, meta):
            if v.type_id == 0:
                if text.strip():
                    unknown[path] += 1
                else:  # a blank line is not judged (the detector skips it, as training does)
                    blank[path] += 1
            if v.sequence_p is not None:
                m.sequence_probability.observe(v.sequence_p)
            if v.ae_error is not None and v.ae_threshold and math.isfinite(v.ae_error):  # inf would stay in _sum
                m.autoencoder_error_ratio.observe(v.ae_error / v.ae_threshold)
            if v.anomaly:
                for d in v.detectors:
                    anomalies[(path, d)] += 1
        for path, n in unknown.items():
            m.unknown_type_lines.labels(file=path).inc(n)
        for path, n in blank.items():
            m.lines_dropped.labels(file=path, reason="blank").inc(n)
        for (path, d), n in anomalies.items():
            m.anomalies.labels(file=path, detector=d).inc(n)
        return alerts

    def _judge_ends(self) -> bool:
        return self.cfg.detectors.sequence.stream_end_after > 0 and self.detector is not None and self.detector.judges_stream_ends

    def _end_idle_streams(self, now: float) -> None:
        """Streams idle for stream_end_after seconds have ended: alert on those that ended improbably early.

        Nothing is ended while read lines wait in the queue: a stream's next line may be among them.
        """
        if not self._stream_last:
            return
        if not self._judge_ends():
            self._stream_last.clear()
            return
        if self._queue.qsize() > 0:
            return
        cutoff = now - self.cfg.detectors.sequence.stream_end_after
        idle = []
        for k, rec in self._stream_last.items():  # oldest first
            if rec.time > cutoff:
                break
            idle.append(k)
        if idle:
            self._end_streams(idle, "idle")

    def _silences(self, items: list) -> list[tuple[int, int, list[str]]]:
        """The batch cut where a stream speaks again after stream_end_after or more of silence by its
        lines' own timestamps: [(start, end, streams to end before start)]. Training cuts streams at
        the same silences (a backlog read at once would otherwise never show them)."""
        gap = self.cfg.detectors.sequence.stream_end_after
        known = self._stream_log_time
        seen: dict[str, float] = {}
        parts: list[tuple[int, int, list[str]]] = []
        start, resumed = 0, []
        cut_here: list[str] = []
        for j, (stream, rec) in enumerate(items):
            t = posix_seconds(rec.timestamp)
            prev = seen.get(stream)
            if prev is None:
                prev = known.get(stream)
            if prev is not None and t - prev >= gap:  # False when either is NaN
                cut_here.append(stream)
            if cut_here:
                if j > start:
                    parts.append((start, j, resumed))
                    start, resumed = j, []
                resumed, cut_here = resumed + cut_here, []
            if t == t:
                seen[stream] = t
        parts.append((start, len(items), resumed))
        for stream, t in seen.items():
            known[stream] = t
            known.move_to_end(stream)
        while len(known) > self.detector.settings.max_streams:
            known.popitem(last=False)
        return parts

    def _end_streams(self, keys: list[str], why: str) -> None:
        """Judge the ends of these streams (they have ended) and alert on those that ended improbably early."""
        info = {k: self._stream_last.pop(k) for k in keys if k in self._stream_last}
        ends = self.detector.end_streams(keys)
        alerts = []
        for e in ends:
            last = info.get(e.stream)
            if e.anomaly and last is not None:
                alerts.append(self._end_alert(e, last))
                self.metrics.anomalies.labels(file=last.path, detector="sequence").inc()
                # its series goes with its file like the others (a stream of a file no longer followed,
                # e.g. restored from the checkpoint, would otherwise keep it for good)
                self._exported_files.add(last.path)
        if ends:
            log.debug("%d stream(s) ended (%s), %d improbably", len(ends), why, len(alerts))
            self._dirty = True
        if alerts:
            self.router.submit(alerts)

    def _end_alert(self, e: StreamEnd, last: _LastLine) -> Alert:
        return alert_from_end(e, detector=self.detector, path=last.path, offset=last.offset, line=last.text,
                              type_id=last.type_id, host=last.host or self.host, version=self.bundle.version)  # fmt: skip

    def _ack_pending(self) -> None:
        if self.router.lost_required:  # see AlertRouter.lost_required: read again at the next start
            self._pending.acks.clear()
            return
        self._dirty = True
        for (src, path, ack_id), end in self._pending.acks.items():
            t = self._sources[src].tailer if src < len(self._sources) else None
            if t is not None:
                t.acknowledge(path, ack_id, end)
        self._pending.acks.clear()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self.notifier.watchdog()
        # retries are due by the clock, not only when new alerts come: a quiet host would keep a failed
        # (not required) sink's alerts queued until the next anomaly
        if (self._pending.acks or self.router.pending()) and self.router.flush() and self._pending.acks:
            self._ack_pending()
        if now - self._last_stats >= 1.0:
            self._last_stats = now
            self._export_file_stats()
            self._end_idle_streams(now)
        self._forget_idle_streams(now)
        if now >= self._metrics_retry_at:
            self._retry_metrics(now)
        if self._checkpoint_due(now):
            self._checkpoint()
        if now >= self._next_relearn:
            self._start_relearning()
        if self._reload.is_set():
            self._reload.clear()
            self._do_reload()
        elif now - self._last_model_check >= 2.0:
            self._follow_current_version(now)

    IDLE_CHECK_SECONDS = 60.0  # how often streams idle past runtime.stream_idle_seconds are looked for
    METRICS_RETRY_SECONDS = 10.0  # how often a metrics port held by another process is tried again

    def _retry_metrics(self, now: float) -> None:
        """Try again to serve /metrics on a port another process held at start."""
        self._metrics_retry_at = now + self.METRICS_RETRY_SECONDS
        try:
            self._http = start_http_server(self.cfg.metrics.listen, self.metrics)
        except PortInUse:
            return  # said at start; the port is tried again
        except LogravenError as e:
            log.error("%s; not trying again", e)
        else:
            log.warning("metrics.listen %s was free again: serving /metrics now", self.cfg.metrics.listen)
        self._metrics_retry_at = float("inf")

    def _forget_idle_streams(self, now: float) -> None:
        """Every IDLE_CHECK_SECONDS: forget the GRU states of streams without a line for
        runtime.stream_idle_seconds (never before twice detectors.sequence.stream_end_after, so that a
        session's end is judged first)."""
        if now - self._last_idle_check < self.IDLE_CHECK_SECONDS:
            return
        self._last_idle_check = now
        idle = self.cfg.runtime.stream_idle_seconds
        if not idle or self.detector is None:
            return
        idle = max(idle, 2 * self.cfg.detectors.sequence.stream_end_after)
        gone = self.detector.forget_idle(self.detector.clock() - idle)  # the clock its streams were stamped with
        self._forgot_streams(gone)
        if gone:
            log.info("forgot the GRU state of %d stream(s) without a line for %g s (runtime.stream_idle_seconds); "
                     "%d kept", len(gone), idle, len(self.detector.states))

    def _follow_current_version(self, now: float) -> None:
        """Every 2 s: switch models when the model directory's `current` points elsewhere (`lograven learn`,
        `models rollback`, periodic relearning)."""
        self._last_model_check = now
        try:
            cur = self._model_location(self.cfg)
        except (LogravenError, OSError, RuntimeError) as e:  # `current` broken (dangling, a loop, not a link): said once
            cur = None
            seen = ("broken", str(e))
            if seen != self._rejected_model:
                self._rejected_model = seen
                self.metrics.reload_failed()
                log.error("the model directory's current version cannot be used: %s; the running model stays", e)
        if cur is not None and self._rejected_model is not None:
            running = self._model_path is not None and cur.resolve() == self._model_path
            if running or self._rejected_model[0] == "broken":
                self._rejected_model = None  # `current` was repaired, or points back at the running model
                if running:
                    self.metrics.reload_succeeded()
                    log.info("the model directory's current version is %s again, the running model", cur.name)
        if cur is not None and self._model_path is not None and cur.resolve() != self._model_path:
            seen = _version_key(cur)
            if seen != self._rejected_model:  # a version refused once is tried again only once it changes
                log.info("the model directory's current version is now %s: reloading the model", cur)
                if self._do_reload(reread_config=False):  # the model only: a config half-edited waits for SIGHUP
                    self._rejected_model = None
                else:
                    self._rejected_model = seen
                    log.error("model %s was refused (above); the running model stays. lograven tries it again "
                              "when `current` or that version changes: fix it (`lograven models list`) or roll "
                              "back (`lograven models rollback`)", cur)

    def _export_file_stats(self) -> None:
        m = self.metrics
        now: set[str] = set()
        for s in self._sources:
            for path, st in s.tailer.stats().items():
                now.add(path)
                if self._exported_stats.get(path) == st:
                    continue  # nothing changed: with hundreds of idle files this was most of the idle CPU
                self._exported_stats[path] = replace(st)
                m.export_file_stats(path, st)
                if st.skipped_lines and path not in self._own_alerts_said:
                    # an admin's review: only lines_dropped_total{reason="own_alert"} had shown it
                    self._own_alerts_said.add(path)
                    if os.path.basename(path).startswith(("lograven-alerts", "lograven-daemon")):  # the drop-in's files
                        log.warning("%s is where rsyslog writes lograven's own alerts and log (%d lines so far, not "
                                    "scored): narrow sources[].paths so that they do not match it (e.g. "
                                    "/var/log/syslog rather than /var/log/*.log)", path, st.skipped_lines)
                    else:
                        log.warning("%s holds lograven's own alerts (tag %s; %d so far): they are not scored. Keep "
                                    "them out of the files lograven reads: install systemd/rsyslog-lograven.conf as "
                                    "/etc/rsyslog.d/10-lograven.conf and restart rsyslog (it writes them to "
                                    "/var/log/lograven-alerts.log only)", path, self.cfg.alerts.syslog.tag,
                                    st.skipped_lines)  # fmt: skip
        # A file no source follows any more (an hour after it went, or dropped by a reload) loses its
        # series: label cardinality stays bounded, and a stale `file_readable 0` fires no alert.
        gone = self._exported_files - now
        for path in gone:
            m.remove_file(path)
            self._exported_stats.pop(path, None)
        if gone and self.detector is not None:
            self._forget_streams_of(gone, now)
        self._exported_files = now
        m.queue_lines.set(self._queue.qsize())
        det = self.detector
        if det is not None:
            m.streams.set(len(det.states))
            m.advance_to_total(m.streams_evicted, det.streams_evicted)
            if self._evictions_det is not det:  # a reload: a new detector counts from 0
                self._evictions_det, self._evictions_logged = det, 0
            if det.streams_evicted > self._evictions_logged and time.monotonic() >= self._evictions_log_at:
                log.warning(
                    "%d stream state(s) forgotten since the model loaded: more than runtime.max_streams (%d) streams "
                    "are open, so the least recently seen start afresh (their next lines may alert). Raise "
                    "runtime.max_streams, or set detectors.sequence.stream_end_after so that finished sessions end",
                    det.streams_evicted, det.settings.max_streams,
                )  # fmt: skip
                self._evictions_logged, self._evictions_log_at = det.streams_evicted, time.monotonic() + 3600

    def _forget_streams_of(self, paths: set[str], followed: set[str]) -> None:
        """The GRU states of files no longer followed (`stream: file`, and `program`'s `FILE:PROGRAM`;
        a syslog program name has no colon): a glob over dated or per-container files left one state
        per file that ever existed, until runtime.max_streams pushed them out (an audit: 169 of 540
        states were of deleted files; at 100,000 the checkpoint is 77 MB and takes 1.6 s). A followed
        file's own key is kept (`/x/app:8080.log` when `/x/app` went). Session keys are not files'."""
        states = self.detector.states
        drop = [k for k in states if k in paths or (k not in followed and k.rpartition(":")[0] in paths)]
        for k in drop:
            del states[k]
        self._forgot_streams(drop)
        if drop:
            log.debug("forgot the sequence state of %d stream(s) of %d file(s) no longer followed", len(drop), len(paths))

    def _forgot_streams(self, keys: list[str]) -> None:
        """What the service keeps per stream beside its GRU state goes with it; the checkpoint is due."""
        for k in keys:
            self._stream_last.pop(k, None)
            self._stream_log_time.pop(k, None)
        if keys:
            self._dirty = True

    # -------------------------------------------------------- checkpoint
    def _stream_entry(self, k: str, h, seen: int, last: int, at: float = 0.0) -> dict:
        entry = {"h": encode_array(h), "seen": seen, "last": last}
        if at > 0:
            entry["at"] = round(at, 1)  # when its last line came (runtime.stream_idle_seconds)
        ll = self._stream_last.get(k)
        if ll is not None:  # its last line, so an end judged after a restart can still be explained
            entry["line"] = [ll.path, ll.offset, ll.text, ll.host, self._stream_log_time.get(k)]
        return entry

    #: A checkpoint may take at most this share of the daemon's time: with many streams (a `regex:` or
    #: `program` key over 100k values, tens of MB of GRU states) it is written less often than
    #: `runtime.checkpoint_interval_seconds` rather than stalling detection.
    CHECKPOINT_TIME_SHARE = 0.05

    def _checkpoint_due(self, now: float) -> bool:
        return self._dirty and now - self._last_ckpt >= max(self.cfg.runtime.checkpoint_interval_seconds, self._ckpt_gap)

    def _checkpoint(self) -> bool:
        """Write the checkpoint; returns whether it was written (a failure is logged and counted)."""
        t0 = self._last_ckpt = time.monotonic()
        self._dirty = False
        if self._checkpoint_off:
            return True
        states = self.detector.states if self.detector else {}
        n_streams = len(states)

        def entries():  # built while written, in chunks: a checkpoint of many streams is never one block
            for k, s in list(states.items()):
                yield k, self._stream_entry(k, s.h, s.seen, s.last, s.at)

        state = {
            "model": self.bundle.version if self.bundle else None,
            "positions": {str(s.index): s.tailer.positions() for s in self._sources if s.tailer},
            "streams": entries(),
        }
        written = True
        try:
            # the watchdog as due (every WatchdogSec/2) between chunks of about 1 MB
            self.checkpointer.save(state, tick=self.notifier.watchdog)
        except LogravenError as e:
            written = False
            self.metrics.checkpoint_write_failures.inc()
            self._ckpt_failures += 1
            self._dirty = True  # tried again at the next interval, not only once a new line comes (a quiet host)
            # said at once, then at most every 10 minutes while it goes on (a full disk: every 10 s)
            if self._ckpt_failures == 1 or t0 >= self._ckpt_error_at:
                more = f" ({self._ckpt_failures} failures in a row; said again in 10 min if it goes on)" if self._ckpt_failures > 1 else ""
                log.error("checkpoint not written: %s%s", e, more)
                self._ckpt_error_at = t0 + 600
        if written and self._ckpt_failures:
            log.info("checkpoint written again, after %d failure(s)", self._ckpt_failures)
            self._ckpt_failures = 0
        took = time.monotonic() - t0
        gap = took / self.CHECKPOINT_TIME_SHARE
        if gap > self.cfg.runtime.checkpoint_interval_seconds and self._ckpt_gap <= self.cfg.runtime.checkpoint_interval_seconds:
            log.warning("a checkpoint (%d streams) took %.2f s: writing one every %g s instead of every %g s "
                        "(runtime.checkpoint_interval_seconds), so that it takes at most %.0f%% of the time",
                        n_streams, took, round(gap, 1), self.cfg.runtime.checkpoint_interval_seconds,
                        100 * self.CHECKPOINT_TIME_SHARE)
        self._ckpt_gap = gap
        return written

    # ------------------------------------------------------------ reload
    def _do_reload(self, *, reread_config: bool = True) -> bool:
        """SIGHUP: re-read config and model; a bad one is rejected and the old one keeps running.
        With reread_config=False (the model directory's `current` moved), the model only: the config
        file is the admin's, and a half-edited one must wait for their SIGHUP. Returns whether the
        reload took effect."""
        self.notifier.reloading("reloading configuration and model" if reread_config else "switching the model")
        try:
            cfg = load_config(self.config_path) if self.config_path and reread_config else self.cfg
            cfg, pending = keep_in_force(self.cfg, cfg)
            path = self._model_location(cfg) or self._model_path
            bundle = self.bundle
            if path is not None and (path.resolve() != self._model_path or _manifest_changed(path, self.bundle)):
                bundle = load_bundle(path)
            elif path is not None and reread_config:
                # the same bundle: the copy in memory runs on, but a file damaged on disk since it was
                # loaded would only show at the next restart, which would then fail
                try:
                    read_manifest(path)
                except LogravenError as e:
                    raise LogravenError(f"the model on disk is damaged since it was loaded ({e}); the loaded copy "
                                        "keeps running, but a restart would fail: restore or retrain it") from None
            router = build_router(cfg, self.metrics, stdin_mode=self.stdin_mode, suppress=self._allowlist(cfg)) if reread_config else None
        except Exception as e:  # noqa: BLE001 - whatever the new config or model holds, the running daemon stays
            e = reload_error(e)  # (OSError: a version deleted or changed while loading)
            self.metrics.reload_failed()
            what = "configuration and model" if reread_config else "model"
            log.error("reload rejected, keeping the running %s: %s", what, e)
            self.notifier.ready(f"reload failed: {str(e)[:200]}")
            return False
        if router is None:
            self._activate(bundle, path, cfg)
            self.metrics.reload_succeeded()
            self.notifier.ready(self._running_status(f"switched to model {self.bundle.version}"))
            log.info("switched to model %s", self.bundle.version)
            return True
        sources_changed = cfg.sources != self.cfg.sources or cfg.runtime != self.cfg.runtime
        learn_changed = cfg.learn != self.cfg.learn or cfg.model != self.cfg.model
        self.router.flush(force=True)
        router.take_over(self.router)  # what a failing sink still holds is not lost by the reload
        old_router, self.router = self.router, router
        old_router.close()
        self._activate(bundle, path, cfg)
        if sources_changed and not self.stdin_mode:
            self._stop_reader()
            self._drain_queue_into_detector()
            # reopened where they were read, not where acknowledged: lines whose alerts a failing sink
            # holds are acknowledged later (self._pending), never read and scored twice
            positions = {str(s.index): s.tailer.positions(read=self._processed_ends) for s in self._sources}
            self._export_file_stats()  # the old tailers' last counts, before the new ones count from 0
            for s in self._sources:
                s.tailer.close()
            self.metrics.restart_file_totals()
            self.cfg = cfg
            if self._open_sources(cfg, positions):
                self._checkpoint()  # a new source's files, placed at their ends: on disk before a crash can come
            self._start_reader()
        say_restart_only(pending)
        self.cfg = cfg
        if learn_changed and not self.stdin_mode:
            self._setup_relearning()
        self.metrics.reload_succeeded()
        self.notifier.ready(self._running_status("reloaded"))
        log.info("reloaded: model %s", self.bundle.version)
        return True

    def _drain_queue_into_detector(self) -> None:
        """Process whatever the reader queued (after the reader stopped)."""
        rest = []
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for i in range(0, len(rest), self.cfg.runtime.batch_size):
            if sink := self.router.backlogged(self.cfg.runtime.batch_size):
                # a required sink's queue is full enough: the rest is not scored now (its alerts would be
                # dropped, a review); not acknowledged, it is read again (a reload reopens where scored)
                log.info("%d line(s) read are left unscored while alert sink %s delivers; they are read again",
                         len(rest) - i, sink)
                break
            self._process_guarded(rest[i : i + self.cfg.runtime.batch_size])

    # ------------------------------------------------------------- stdin
    STDIN_IDLE_SECONDS = 1.0  # how often a quiet plugin still checks stop, reload, `current` and the checkpoint

    def _run_stdin(self) -> int:
        """rsyslog omprog protocol with confirmMessages: OK when ready and after each message.

        Lines are read by a thread, so a quiet input does not hold back a stop (SIGTERM), a reload, a
        switch of `current` or the periodic checkpoint of the streams' GRU states."""
        src = self.cfg.sources[0]
        parser, key = Parser(src.format), StreamKey(src.stream)
        sample = _Source(0, parser, key)
        # at 0 from the start: an increase() from a series that appears at its first failure is 0, and the
        # LogravenLinesFailing rule would not fire (a review)
        self.metrics.lines_dropped.labels(file="stdin", reason="error")
        if self.cfg.learn.schedule_seconds:
            log.warning("learn.schedule is not applied in plugin mode (--stdin): run `lograven learn` on new normal "
                        "data instead, and the plugin follows the model directory's `current` version")
        tag = self.cfg.alerts.syslog.tag
        own_alert = own_alert_predicate(tag, src.format)
        own_alerts = 0
        out = self.stdout
        lines: queue.Queue = queue.Queue()
        taken = threading.Semaphore(0)  # in lockstep, as omprog sends a message only after the last one's OK
        end = object()

        def read() -> None:
            try:
                for raw in _input_lines(self.stdin, self.cfg.runtime.max_line_bytes):
                    lines.put(raw)
                    taken.acquire()
            except (OSError, ValueError) as e:  # a closed or broken pipe: the end of input
                log.warning("standard input: %s; stopping", e)
            finally:
                lines.put(end)

        threading.Thread(target=read, name="lograven-stdin", daemon=True).start()
        self.notifier.ready("reading standard input")
        out.write("OK\n")
        out.flush()
        max_bytes = self.cfg.runtime.max_line_bytes
        n = 0
        while not self._stop.is_set():
            try:
                raw = lines.get(timeout=self.STDIN_IDLE_SECONDS)
            except queue.Empty:
                raw = None
            if raw is end:
                break
            if raw is not None:
                # While a required alert sink (the jsonl file) fails, a message is refused rather than taken:
                # rsyslog keeps it in its queue and sends it again after action.resumeInterval, so alerts
                # are not held only in this process's memory. A refused message is not scored.
                if not self.router.flush():
                    out.write(self._refusal())
                elif own_alert(raw):
                    # lograven's own alert, fed back by the shipper (its guard does not match the tag):
                    # taken, never scored, or each alert would alert again
                    own_alerts += 1
                    n += 1
                    self.metrics.lines_dropped.labels(file="stdin", reason="own_alert").inc()
                    if own_alerts == 1:
                        log.warning("standard input carries lograven's own alerts (tag %s): they are skipped. Stop "
                                    "them before the plugin, e.g. rsyslog's `if $programname != \"%s\" then { "
                                    "action(type=\"omprog\" ...) }`", tag, tag)
                    out.write("OK\n")
                else:
                    stream, kept = None, None
                    try:
                        text, truncated = decode_line(raw, max_bytes)
                        rec = parser.parse(text)
                        if sample.sampled < FORMAT_SAMPLE_LINES and text.strip():
                            self._sample_format(sample, rec.parsed, "standard input")
                        stream = key.key("stdin", rec, text)
                        before = self.detector.states.get(stream)
                        kept = (before.h.copy(), before.seen, before.last) if before is not None else None
                        v = self.detector.detect([(stream, rec)])[0]
                        alerts = self._account([v], [("stdin", n, stream, text, rec, None)])
                        for a in alerts:
                            a.line_truncated = truncated
                        self._failed_in_a_row = 0
                    except Exception:  # noqa: BLE001 - see _process_guarded: taken (OK), said and counted
                        alerts = []
                        self._put_stream_back(stream, kept)  # as if the message had not come
                        self._skip_failed(_Item(0, RawLine("stdin", "", n, n, b"", False)), f"message {n + 1} of standard input")
                    n += 1
                    # its alert not delivered: refused too, so rsyslog sends it again (at-least-once)
                    # (a resent message is the shipper's retry: the sinks are tried now, whatever their back-off)
                    delivered = self.router.submit(alerts, force=True)
                    if not delivered:  # and its stream as before it: the message comes again
                        self.router.withdraw(alerts)  # its alert comes again with it: written once
                        self._put_stream_back(stream, kept)
                    out.write("OK\n" if delivered else self._refusal())
                    self._dirty = self._dirty or delivered
                out.flush()
                taken.release()
            else:
                self.router.flush()  # retries of a failed optional sink are due by the clock too
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            elif now - self._last_model_check >= 2.0:
                self._follow_current_version(now)
            self._forget_idle_streams(now)
            if self._checkpoint_due(now):
                self._checkpoint()  # the streams' GRU states: rsyslog may kill a plugin that is slow to stop
            src = self.cfg.sources[0]  # a reload may have changed its format or stream, or the tag
            if (src.format, src.stream) != (parser.fmt, key.spec) or self.cfg.alerts.syslog.tag != tag:
                parser, key = Parser(src.format), StreamKey(src.stream)
                tag = self.cfg.alerts.syslog.tag
                own_alert = own_alert_predicate(tag, src.format)
            self.notifier.watchdog()
        self.router.flush(force=True)
        return 0

    def _put_stream_back(self, stream: str | None, kept: tuple | None) -> None:
        """A stream's GRU state as it was before a message (`kept`: its state then, None: it had none)."""
        if stream is None:
            return
        if kept is None:
            self.detector.states.pop(stream, None)
        else:
            self.detector.import_states({stream: kept})

    def _refusal(self) -> str:
        """omprog's answer for a message not taken: any line but OK (rsyslog retries it later)."""
        return "Error: an alert sink that holds back the checkpoint is failing; retry later\n"

    # ---------------------------------------------------------- shutdown
    def _shutdown(self) -> None:
        self.notifier.stopping("stopping")
        try:
            if self._reader is not None:
                self._stop_reader()
            if self.router is not None:
                if self.router.flush(force=True):
                    self._ack_pending()
            if self.detector is not None and hasattr(self, "checkpointer"):
                if self._checkpoint_off:
                    log.info("stopping: no checkpoint written (the state_dir is the daemon's)")
                elif self._checkpoint():
                    log.info("stopping: checkpoint written (%d stream(s))", len(self.detector.states))
                elif self.stdin_mode:
                    self._stop_problems.append(
                        f"the last checkpoint was not written ({self.checkpointer.path}): the next start "
                        "takes the streams' GRU states of the one before (nothing is read again in plugin mode)")
                else:
                    self._stop_problems.append(
                        f"the last checkpoint was not written ({self.checkpointer.path}): the next start "
                        "re-reads the lines since the one before, and may alert on them again")
        finally:
            for s in self._sources:
                if s.tailer:
                    s.tailer.close()
            if self.router is not None:
                if lost := self.router.close():  # says what a failing sink did not take
                    self._stop_problems.append(f"{lost} alert(s) undelivered")
            if self._http is not None:
                self._http.stop()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the state_dir lock
            self._lock_fd = None

    # ------------------------------------------------------- relearning
    RELEARN_BUFFER_MAX = 100_000
    RELEARN_BUFFER_BYTES = 256 * 2**20  # 100k lines of 64 KiB would be 6.5 GB

    def _setup_relearning(self) -> None:
        """Periodic relearning as `learn.schedule` says (at start, and again when a reload changes it)."""
        self._relearn_buffer, self._next_relearn = None, float("inf")
        every = self.cfg.learn.schedule_seconds
        if every is None:
            return
        if self.cfg.model and not (Path(self.cfg.model) / "current").is_symlink():
            log.warning("learn.schedule needs `model: null` or a model directory with versions; periodic relearning is off")
            return
        self._relearn_buffer = QuietLines(min(self.cfg.learn.max_lines, self.RELEARN_BUFFER_MAX), self.RELEARN_BUFFER_BYTES)
        self._next_relearn = time.monotonic() + every
        log.info("periodic relearning every %.0f s from lines that raised no alert", every)

    def _start_relearning(self) -> None:
        every = self.cfg.learn.schedule_seconds or float("inf")
        self._next_relearn = time.monotonic() + every
        buf = self._relearn_buffer
        if buf is None:
            return
        if self._relearn_thread is not None and self._relearn_thread.is_alive():
            log.warning("periodic relearning: the run started %.0f min ago is still going; this one is skipped (a run "
                        "that never ends: see the journal for its child, or restart lograven)",
                        (time.monotonic() - self._relearn_started) / 60)  # fmt: skip
            return
        if len(buf) < self.cfg.learn.min_lines:
            log.info("periodic relearning skipped: %d quiet lines, learn.min_lines is %d", len(buf), self.cfg.learn.min_lines)
            return
        held = [buf.take()]  # handed over, so that the lines can be let go when the run ends
        target = Path(self.cfg.model) if self.cfg.model else self.store.root

        def work() -> None:
            from lograven.childproc import run_training_child
            from lograven.training import Corpus

            lines = held.pop()
            corpus = Corpus()
            for parser, path, text, stream in lines:
                corpus.add(path, parser.parse(text), stream)
            try:
                # in a child process: TensorFlow never enters the serving process
                summary = run_training_child(
                    "learn", corpus, cfg=self.cfg.to_dict(), model=str(target),
                    out=f"periodic relearning ({len(lines)} quiet lines)", should_stop=self._stop.is_set,
                )  # fmt: skip
                if summary:
                    if summary.get("made_current", True):
                        log.info("periodic relearning: new model version %s (%d new types)", summary["path"], len(summary["new_types"]))
                    else:
                        log.warning("periodic relearning: new model version %s saved but not made current: `current` "
                                    "was moved (lograven learn or rollback) while it learned", summary["path"])
                    self._prune_versions(target)
            except Exception:  # relearning must never take the daemon down
                log.exception("periodic relearning failed; the current model keeps running")
            finally:
                # up to 100,000 lines and their parsed corpus: given back to the system, not kept by malloc
                del lines, corpus
                release_free_memory()

        self._relearn_thread = threading.Thread(target=work, name="lograven-relearn", daemon=True)
        self._relearn_started = time.monotonic()
        self._relearn_thread.start()

    def _prune_versions(self, root: Path) -> None:
        """Keep `learn.keep_versions` versions after relearning: a schedule of hours would fill the disk."""
        store = ModelStore(root)
        running = self.bundle.path.resolve().name if self.bundle is not None else None
        try:
            store.prune(self.cfg.learn.keep_versions, protect=(running,) if running else ())
        except OSError as e:
            log.warning("model store %s: old versions not deleted (%s)", root, e.strerror or e)

    # ------------------------------------------------------------- learn
    def _learn_mode(self) -> dict:
        """No model yet: learn from the configured files' existing content, then detect from there."""
        from lograven.learnmode import Reloaded, learn_initial_model

        while True:
            try:
                return learn_initial_model(self)
            except Reloaded:
                if self._model_location(self.cfg) is not None:
                    if self.cfg.model:
                        log.info("reload: the configuration names a model (%s): learn mode ends", self.cfg.model)
                    return {}  # its files are followed as at any start with a model (start_position)
                log.info("reload: learn mode starts again with the new configuration")


class QuietLines:
    """The newest lines that raised no alert, for periodic relearning: at most `max_lines` of them and
    about `max_bytes` of text (the oldest go first)."""

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self._items: deque[tuple[tuple[Parser, str, str, str], int]] = deque()
        self.bytes = 0

    def append(self, entry: tuple[Parser, str, str, str]) -> None:
        cost = 120 + len(entry[1]) + len(entry[2]) + len(entry[3])  # the strings and the tuple, about
        self._items.append((entry, cost))
        self.bytes += cost
        while len(self._items) > self.max_lines or (self.bytes > self.max_bytes and len(self._items) > 1):
            self.bytes -= self._items.popleft()[1]

    def __len__(self) -> int:
        return len(self._items)

    def take(self) -> list[tuple[Parser, str, str, str]]:
        """Every line, oldest first; the buffer is empty afterwards."""
        out = [e for e, _ in self._items]
        self._items.clear()
        self.bytes = 0
        return out


def _same_vocabulary(a: Bundle, b: Bundle) -> bool:
    """GRU states carry over when the new model keeps the old types' ids (e.g. after `lograven learn`)."""
    if a.sequence.width != b.sequence.width or b.sequence.n_types_ < a.sequence.n_types_:
        return False
    new = {t.id: t.tokens for t in b.types.types_}
    return all(new.get(t.id) == t.tokens for t in a.types.types_)


def _version_key(path: Path) -> tuple:
    """What identifies the state of a model version on disk: where it is and its files' times."""
    try:
        resolved = path.resolve()
        stamps = tuple(sorted((p.name, (st := p.stat()).st_mtime_ns, st.st_size) for p in resolved.iterdir()))
    except OSError:
        return (str(path), None)
    return (str(resolved), stamps)


def _input_lines(stdin, max_bytes: int) -> Iterator[bytes]:
    """The lines of the plugin's input. A real file descriptor is read with os.read, not through the
    buffered reader: a reader thread blocked inside it holds the buffer's lock, and the interpreter
    aborts at exit ("could not acquire lock for <stdin>") when the plugin stops on a signal. A line
    longer than `max_bytes` keeps its first `max_bytes` + 1 bytes (decode_line cuts and counts it)."""
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):  # an iterable of lines (tests, a wrapped stream)
        yield from stdin
        return
    buf = b""
    skipping = False  # the rest of an enormous line, after its kept part was handed over
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf and not skipping:
                yield buf
            return
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[: nl + 1], buf[nl + 1 :]
            if not skipping:
                yield line
            skipping = False
        if len(buf) > max_bytes and not skipping:
            yield buf[: max_bytes + 1]
            buf, skipping = b"", True
        elif skipping:
            buf = b""


RARE_TYPES_WARN_SHARE = 0.5  # of a model's message types: warn that their lines will alert as rare types


def _warn_rare_types(det: Detector, bundle: Bundle, again: bool = False) -> bool:
    """A model learned from few lines has seen most of its types only a few times; each of their lines
    alerts (`rare_type`) where it is not the most expected. Say so once per model, with the fix: a warning
    the first time in this process, then (each learned version, a rollback: `again`) at info, so that
    `journalctl -p warning` does not repeat it at every relearning. Returns whether it was said."""
    n_types = len(bundle.types.types_)
    n_rare = int(det.rare_type.sum())
    if det.settings.sequence and n_rare >= 10 and n_rare >= RARE_TYPES_WARN_SHARE * n_types:
        (log.info if again else log.warning)("model %s saw %d of its %d message types fewer than %d times in training: their lines alert as "
                    "rare types (sequence, rare_type) unless expected most. Learn from more lines (learn.max_lines, "
                    "or `lograven train` on more history), or teach the normal ones as they come (`lograven learn`); "
                    "detectors.sequence.rare_count: 0 turns the rule off", bundle.version, n_rare, n_types,
                    det.settings.sequence_rare_count)  # fmt: skip
        return True
    return False


def _manifest_changed(path: Path, bundle: Bundle | None) -> bool:
    if bundle is None:
        return True
    try:  # regular files only: a FIFO there hung the reload for ever (load_bundle then says what is wrong)
        # against the manifest loaded, not the file at the bundle's path: a bundle retrained in place (the
        # same directory) is a new model, and one damaged in place must be refused, not "reloaded"
        on_disk = hashlib.sha256(read_regular(path / "manifest.json", MANIFEST_MAX_BYTES)).hexdigest()
        return on_disk != bundle.manifest.get("_sha256") or path.resolve() != bundle.path.resolve()
    except (OSError, RuntimeError):
        return True


def run_service(config_path: str | None, *, stdin_mode: bool = False) -> int:
    # SIGHUP kills a process by default: a reload asked for while the service starts (the config and the
    # model loading, before run() installs its handlers; omprog's hup.signal, a logrotate postrotate) is
    # kept for it instead
    reload = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    cfg = load_config(config_path) if config_path else Config()
    return Service(cfg, config_path, stdin_mode=stdin_mode, reload=reload).run()
