"""Every Prometheus metric lograven exports, defined in one place, and the HTTP endpoint that serves them.

Each `Metrics` instance owns its own `CollectorRegistry`, so tests (and a
daemon reloading itself) can hold several without name clashes. Names are
prefixed `lograven_`, use base units (seconds, bytes) and counters are
declared without `_total` (prometheus_client appends it). Labels are
bounded: `file` (a tailed path from the config), `detector`, `sink` and
`reason` (fixed sets); nothing is ever labelled with log content.
"""
from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import logging
import math
import platform
import selectors
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Iterable

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics, generate_latest, make_wsgi_app,
)
from prometheus_client.process_collector import ProcessCollector

from lograven import __version__
from lograven.errors import LogravenError

# No `<name>_created` series beside each counter and histogram: in the text format each is a series of
# its own (11 of the 26 per file), a Unix time that no query or rule of lograven's uses.
disable_created_metrics()

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9077"
"""Loopback only; 9077 is outside the 9100-9999 range the Prometheus exporters conventionally take."""

DETECTOR_LABELS = ("unknown_type", "sequence", "autoencoder")
"""Values of the `detector` label."""

DROP_REASONS = ("own_alert", "blank", "error")
"""Values of the `reason` label of `lograven_lines_dropped_total` (see docs/metrics.md)."""


def file_label(path: str) -> str:
    """A file's name as a `file=` label value: a name that is not UTF-8 (its bytes are surrogate escapes
    in Python) is written with backslash escapes (`bad\\xffname.log`). Left as it was, it failed the whole
    exposition's encoding: any user who could create a file a glob matches turned /metrics into a 500."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _FileLabelled:
    """A metric whose first label is `file`: its values go through file_label, wherever they come from (a
    name that is not UTF-8 had failed every scrape; call sites each converting it was one to miss)."""

    def labels(self, *values, **kwargs):  # noqa: ANN002, ANN003, ANN201 - prometheus_client's signature
        if "file" in kwargs:
            kwargs["file"] = file_label(kwargs["file"])
        elif values:
            values = (file_label(values[0]), *values[1:])
        return super().labels(*values, **kwargs)  # type: ignore[misc]

    def remove(self, *values):  # noqa: ANN002, ANN201
        return super().remove(*((file_label(values[0]), *values[1:]) if values else ()))  # type: ignore[misc]

    if hasattr(Counter, "remove_by_labels"):  # prometheus_client >= 0.22 (Metrics.remove_file asks)

        def remove_by_labels(self, labels: dict):  # noqa: ANN201
            if "file" in labels:
                labels = {**labels, "file": file_label(labels["file"])}
            return super().remove_by_labels(labels)  # type: ignore[misc]


class _FileCounter(_FileLabelled, Counter):
    pass


class _FileGauge(_FileLabelled, Gauge):
    pass


INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds per inference batch: 0.1 ms (one LiteRT call) to 1 s (a large batch through a big GRU)."""

PROBABILITY_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0)
"""Sequence-model probability of the observed type; 0.02 is the default threshold."""

ERROR_RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Autoencoder error divided by its threshold: above 1.0 is anomalous."""


class Metrics:
    """All of lograven's metrics on a private registry. Attributes are the prometheus_client objects."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        file_ = ("file",)

        # Sources
        self.lines_read = _FileCounter("lograven_lines_read", "Complete lines read from a source.", file_, registry=r)
        self.bytes_read = _FileCounter("lograven_read_bytes", "Bytes read from a source.", file_, registry=r)
        self.lines_dropped = _FileCounter(
            "lograven_lines_dropped", "Lines read but not scored, by reason.", ("file", "reason"), registry=r
        )
        self.lines_truncated = _FileCounter(
            "lograven_lines_truncated", "Lines longer than runtime.max_line_bytes, cut to that length.", file_, registry=r
        )
        self.lines_unterminated = _FileCounter(
            "lograven_lines_unterminated", "Lines scored without their newline: no byte came for "
            "runtime.unterminated_line_seconds, or the last line of a rotated file.", file_, registry=r
        )
        self.rotations = _FileCounter("lograven_file_rotations", "Rotations by rename detected on a file.", file_, registry=r)
        self.truncations = _FileCounter(
            "lograven_file_truncations", "Truncations in place (copytruncate) detected on a file.", file_, registry=r
        )
        self.file_offset = _FileGauge(
            "lograven_file_offset_bytes", "Byte offset up to which the file has been read.", file_, registry=r
        )
        self.file_size = _FileGauge("lograven_file_size_bytes", "Size of the file at the last check.", file_, registry=r)
        self.file_lag = _FileGauge(
            "lograven_file_lag_bytes", "Bytes written to the file but not yet read (size - offset).", file_, registry=r
        )
        self.unread_bytes = _FileCounter(
            "lograven_unread_bytes", "Bytes of a file lost unread: truncated in place (copytruncate) before "
            "they were read, with no copy of them beside it.", file_, registry=r)
        self.read_errors = _FileCounter(
            "lograven_file_read_errors", "Failures to open or read a file (permission denied, I/O errors).", file_,
            registry=r,
        )
        self.file_readable = _FileGauge(
            "lograven_file_readable", "1 while the file can be opened and read, 0 while it cannot.", file_, registry=r
        )
        self.queue_lines = Gauge("lograven_queue_lines", "Lines read and waiting for inference.", registry=r)
        self.streams = Gauge(
            "lograven_streams", "Streams whose sequence-model state is kept (at most runtime.max_streams).", registry=r
        )
        self.streams_evicted = Counter(
            "lograven_streams_evicted",
            "Stream states forgotten because more than runtime.max_streams streams were open.",
            registry=r,
        )

        # Detection
        self.unknown_type_lines = _FileCounter(
            "lograven_unknown_type_lines", "Lines no learned message type matched.", file_, registry=r
        )
        self.anomalies = _FileCounter(
            "lograven_anomalies", "Lines a detector flagged (before alert filtering).", ("file", "detector"), registry=r
        )
        self.inference_duration = Histogram(
            "lograven_inference_duration_seconds",
            "Wall time of one inference batch (all three detectors together: detector=\"all\").",
            ("detector",),
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.sequence_probability = Histogram(
            "lograven_sequence_probability",
            "Probability the sequence model gave each observed message type.",
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.autoencoder_error_ratio = Histogram(
            "lograven_autoencoder_error_ratio",
            "Autoencoder reconstruction error divided by its threshold, per scored line.",
            buckets=ERROR_RATIO_BUCKETS,
            registry=r,
        )

        # Alerts
        self.alerts_emitted = Counter("lograven_alerts_emitted", "Alerts a sink accepted.", ("sink",), registry=r)
        self.alerts_suppressed = Counter(
            "lograven_alerts_suppressed", "Alerts not sent: dedup, rate_limit or allowlist.", ("reason",), registry=r
        )
        self.alerts_failed = Counter(
            "lograven_alerts_failed",
            "Failed deliveries to a sink (one per failed attempt; the alerts stay queued for retry).",
            ("sink",),
            registry=r,
        )
        self.alerts_dropped = Counter(
            "lograven_alerts_dropped", "Alerts dropped because a sink's retry queue was full.", ("sink",), registry=r
        )
        self.alerts_pending = Gauge(
            "lograven_alerts_pending", "Alerts queued for retry because the sink failed.", ("sink",), registry=r
        )

        # State, model and configuration
        self.checkpoint_corrupt = Counter(
            "lograven_checkpoint_corrupt", "Checkpoint files found unreadable and set aside.", registry=r
        )
        self.checkpoint_write_failures = Counter(
            "lograven_checkpoint_write_failures", "Checkpoint writes that failed.", registry=r
        )
        self.model_info = Info("lograven_model", "The model bundle in use (version and manifest sha256).", registry=r)
        self.config_reload_success = Gauge(
            "lograven_config_last_reload_successful", "1 if the last configuration (re)load succeeded, else 0.", registry=r
        )
        self.config_reload_timestamp = Gauge(
            "lograven_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            registry=r,
        )
        self.config_reload_failures = Counter(
            "lograven_config_reload_failures", "Configuration reloads that failed (the old one stays).", registry=r
        )
        self.build_info = Info("lograven_build", "lograven and Python versions.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.model_info.info({"version": "none", "sha256": ""})
        # The configuration was loaded before metrics exist: that first load counts as a success.
        self.reload_succeeded()

        if process_metrics:
            # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ...
            ProcessCollector(registry=r)

        self._totals: dict[tuple[int, tuple[str, ...]], float] = {}

    # -- helpers for the callers

    def advance_to_total(self, counter: Counter, total: float, **labels: str) -> None:
        """Move a counter up to a cumulative `total` counted elsewhere (e.g. the tailer's FileStats).

        A total lower than last time means the source restarted counting; the
        counter then advances by the new total (counters never go down).
        """
        key = (id(counter), tuple(str(labels[n]) for n in counter._labelnames))  # noqa: SLF001
        last = self._totals.get(key, 0.0)
        delta = total - last if total >= last else total
        self._totals[key] = total
        child = counter.labels(**labels) if labels else counter
        if delta > 0:
            child.inc(delta)

    def restart_file_totals(self) -> None:
        """The per-file totals start counting from 0 again (a reload's new tailers): their next totals
        are all new, even when not lower than the last ones."""
        ids = {id(c) for c in self._file_metrics()}
        for key in [k for k in self._totals if k[0] in ids]:
            del self._totals[key]

    def export_file_stats(self, path: str, st) -> None:
        """A tailer's counts of one file (tailer.FileStats) as its series: the totals, readable, position."""
        self.advance_to_total(self.lines_read, st.lines + st.skipped_lines, file=path)  # read = scored + dropped
        self.advance_to_total(self.bytes_read, st.bytes, file=path)
        self.advance_to_total(self.lines_truncated, st.truncated_lines, file=path)
        self.advance_to_total(self.lines_unterminated, st.unterminated_lines, file=path)
        self.advance_to_total(self.lines_dropped, st.skipped_lines, file=path, reason="own_alert")
        self.advance_to_total(self.rotations, st.rotations, file=path)
        self.advance_to_total(self.truncations, st.truncations, file=path)
        self.advance_to_total(self.unread_bytes, st.unread_bytes, file=path)
        self.advance_to_total(self.read_errors, st.read_errors, file=path)
        self.file_readable.labels(file=path).set(1 if st.readable else 0)
        self.set_file_position(path, st.offset, st.size, st.behind)
        # every detector's series from the file's first export, at 0: a rate() or ratio over them is 0, not
        # "no data", before the first anomaly (an admin's review: metrics.md's sequence share was empty)
        for detector in DETECTOR_LABELS:
            self.anomalies.labels(file=path, detector=detector)
        self.unknown_type_lines.labels(file=path)
        for reason in DROP_REASONS:
            self.lines_dropped.labels(file=path, reason=reason)

    def set_file_position(self, file: str, offset: int, size: int, behind: int = 0) -> None:
        """Record how far `file` has been read; sets offset, size and lag together. `behind`: bytes not yet
        read of its old (rotated) files, still being read: part of the lag."""
        self.file_offset.labels(file=file).set(offset)
        self.file_size.labels(file=file).set(size)
        self.file_lag.labels(file=file).set(max(size - offset, 0) + behind)

    def set_model(self, version: str, sha256: str) -> None:
        """Publish the model bundle in use (`lograven_model_info`)."""
        self.model_info.info({"version": version, "sha256": sha256})

    def reload_succeeded(self, now: float | None = None) -> None:
        """Mark a configuration (re)load as successful."""
        self.config_reload_success.set(1)
        self.config_reload_timestamp.set(time.time() if now is None else now)

    def reload_failed(self) -> None:
        """Mark a configuration reload as failed."""
        self.config_reload_success.set(0)
        self.config_reload_failures.inc()

    def remove_file(self, file: str) -> None:
        """Forget every series labelled with `file` (it is no longer tailed)."""
        self._totals = {k: v for k, v in self._totals.items() if file not in k[1]}
        for metric in self._file_metrics():
            if len(metric._labelnames) == 1:  # noqa: SLF001 - label names are public in spirit
                try:
                    metric.remove(file)
                except KeyError:  # pragma: no cover - older prometheus_client raised on a missing child
                    pass
            elif hasattr(metric, "remove_by_labels"):  # prometheus_client >= 0.22
                metric.remove_by_labels({"file": file})
            else:  # pragma: no cover - older prometheus_client: walk the known second-label values
                other = DROP_REASONS if metric is self.lines_dropped else DETECTOR_LABELS
                for value in other:
                    try:
                        metric.remove(file, value)
                    except KeyError:
                        pass

    def _file_metrics(self) -> Iterable[Counter | Gauge]:
        return (
            self.lines_read, self.bytes_read, self.lines_dropped, self.lines_truncated, self.lines_unterminated,
            self.rotations,
            self.truncations, self.unread_bytes, self.file_offset, self.file_size, self.file_lag, self.read_errors,
            self.file_readable, self.unknown_type_lines, self.anomalies,
        )  # fmt: skip

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what a scrape returns)."""
        return generate_latest(self.registry)

    def metric_names(self) -> set[str]:
        """Every sample name this registry can expose (with _total, _bucket, _info, ...), series or not."""
        names: set[str] = set()
        for family in self.registry.collect():
            n = family.name
            if family.type == "counter":
                names.add(n + "_total")
            elif family.type == "histogram":
                names |= {n + "_bucket", n + "_count", n + "_sum"}
            elif family.type == "info":
                names.add(n + "_info")
            else:
                names.add(n)
            names |= {s.name for s in family.samples}
        return names


# --------------------------------------------------------------------------- HTTP endpoint


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A parsed `metrics.listen` value."""

    host: str
    port: int


def parse_listen(listen: str) -> ListenAddress:
    """Parse "host:port", "[v6]:port" or a bare port (loopback) from `metrics.listen`."""
    text = str(listen).strip()
    hint = 'use "host:port", e.g. "127.0.0.1:9077" or "[::1]:9077"'
    if text.isdigit():
        host, port_s = "127.0.0.1", text
    elif text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise LogravenError(f"metrics.listen: cannot parse {listen!r}; {hint}")
        host, port_s = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise LogravenError(f"metrics.listen: {host!r} in {listen!r} is not an IPv6 address; {hint}") from None
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise LogravenError(f"metrics.listen: cannot parse {listen!r}; {hint} (IPv6 addresses go in brackets)")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise LogravenError(f"metrics.listen: port {port_s!r} in {listen!r} is not a number 0-65535; {hint}")
    return ListenAddress(host, int(port_s))


#: Seconds a whole exchange (connection accepted, request in, answer out) may take; a scrape takes
#: milliseconds. A client that connects and sends nothing, or trickles a byte at a time, is cut then.
REQUEST_DEADLINE_SECONDS = 5.0
#: Connections held at once. One more closes the oldest: a local user who opens many and never finishes
#: a request holds neither threads nor more descriptors than this, and cannot keep Prometheus out (with a
#: thread per connection, 8 slots and a 5 s cut-off, 24 idle connections made every scrape take 10 s).
MAX_CONNECTIONS = 64
#: Bytes of request head accepted (a scrape's is a few hundred).
MAX_REQUEST_BYTES = 16384


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "deadline", "answered")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.deadline = deadline
        self.answered = False  # the whole answer is sent: what the client still sends is read and dropped


class _Server:
    """One thread and one `selectors` loop for every connection: an idle or slow client costs a descriptor,
    not a thread, and each gets REQUEST_DEADLINE_SECONDS from its connection to the last byte of the answer.
    The answer comes from prometheus_client's WSGI app (content negotiation, gzip, `name[]` filters), so it
    is the one its own server gives; HEAD is answered too (health checks), without the body."""

    def __init__(self, sock: socket.socket, app) -> None:  # noqa: ANN001 - a WSGI application
        self.socket = sock
        self._app = app
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stop = False
        self._failure_said_at = 0.0  # when a failed scrape may be said again (monotonic)
        self._accept_paused_until = 0.0
        # set up here, not in the thread: a stop() right after the start (a daemon that fails at once) closed
        # the socket before the thread had begun (EBADF in the thread)
        sock.setblocking(False)
        self._sel.register(sock, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._listening = True

    def serve_forever(self) -> None:
        said_at = -math.inf
        while not self._stop:
            try:
                self._round()
            except Exception:  # never a dead endpoint beside a running daemon: said, and served on
                if time.monotonic() - said_at > 600:
                    said_at = time.monotonic()
                    log.warning("metrics: serving /metrics failed; going on", exc_info=True)
                time.sleep(0.1)
        for conn in list(self._conns.values()):
            self._close(conn)
        self._sel.close()

    def _round(self) -> None:
        """One wait for events, and what they call for."""
        now = time.monotonic()
        if not self._listening and now >= self._accept_paused_until:
            self._sel.register(self.socket, selectors.EVENT_READ, None)
            self._listening = True
        timeout = min((c.deadline for c in self._conns.values()), default=now + 1.0) - now
        if not self._listening:
            timeout = min(timeout, self._accept_paused_until - now)
        pending = False
        for key, _ in self._sel.select(max(0.0, min(timeout, 1.0))):
            if key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(64)
            elif key.fileobj is self.socket:
                pending = True  # after the connections' own events: a new one may close the oldest
            else:
                conn = self._conns.get(key.fileobj.fileno())
                if conn is not None:
                    self._step(conn)
        if pending and not self._accept():
            self._sel.unregister(self.socket)  # out of descriptors: try again shortly
            self._listening = False
            self._accept_paused_until = time.monotonic() + 0.5
        now = time.monotonic()
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._close(conn)

    def _accept(self) -> bool:
        """Take pending connections (half the limit at most per round); False when out of descriptors.

        Each is read at once: a scraper's request is there with its connection, so it is answered (and
        is no longer a candidate for closing) before more connections come in."""
        for _ in range(MAX_CONNECTIONS // 2):
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return False
                return True  # ECONNABORTED and the like: that client is gone
            if len(self._conns) >= MAX_CONNECTIONS:  # close the oldest still sending its request
                self._close(min(self._conns.values(), key=lambda c: (bool(c.outbuf), c.deadline)))
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + REQUEST_DEADLINE_SECONDS)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, None)
            self._step(conn)
        return True

    def _step(self, conn: _Conn) -> None:
        try:
            if conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[sent:]
                if not conn.outbuf:
                    # Closed with bytes unread (a request body, a second request), the socket would send a
                    # reset, and the client lose the end of the answer: end ours, read theirs to its end.
                    conn.answered = True
                    conn.sock.shutdown(socket.SHUT_WR)
                    self._sel.modify(conn.sock, selectors.EVENT_READ, None)
                return
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.answered:
            return
        conn.inbuf += data
        end = conn.inbuf.find(b"\r\n\r\n")
        if end < 0:
            end = conn.inbuf.find(b"\n\n")
        if end < 0:
            if len(conn.inbuf) > MAX_REQUEST_BYTES:
                self._answer(conn, "431 Request Header Fields Too Large", [], b"")
            return
        self._answer(conn, *self._respond(bytes(conn.inbuf[:end])))

    def _respond(self, head: bytes) -> tuple[str, list[tuple[str, str]], bytes, bool]:
        lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", [], b"", False
        method, target, version = parts
        path, _, query = target.partition("?")
        environ = {
            "REQUEST_METHOD": "GET" if method == "HEAD" else method,
            "PATH_INFO": urllib.parse.unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(self.socket.getsockname()[0]),
            "SERVER_PORT": str(self.socket.getsockname()[1]),
            "SERVER_PROTOCOL": version,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep and name.strip():
                environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
        answer: list = []

        def start_response(status: str, headers: list, exc_info=None):  # noqa: ANN001, ANN202 - WSGI's signature
            answer[:] = [status, list(headers)]

        try:
            body = b"".join(self._app(environ, start_response))
        except Exception as e:  # a collector that fails: the scrape fails, the daemon does not
            # said (at most every 10 minutes): every lograven rule in Prometheus goes blind while it lasts
            now = time.monotonic()
            if now >= self._failure_said_at:
                self._failure_said_at = now + 600
                log.warning("metrics: a scrape failed (HTTP 500): %s: %s", type(e).__name__, e, exc_info=True)
            return "500 Internal Server Error", [], b"", False
        return answer[0], answer[1], body, method == "HEAD"

    def _answer(self, conn: _Conn, status: str, headers: list[tuple[str, str]], body: bytes, head_only: bool = False) -> None:
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "connection")]
        headers += [("Content-Length", str(len(body))), ("Connection", "close")]
        out = f"HTTP/1.0 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        conn.outbuf = out.encode("latin-1") + (b"" if head_only else body)
        conn.inbuf.clear()
        self._sel.modify(conn.sock, selectors.EVENT_WRITE, None)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)
        conn.sock.close()

    def shutdown(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()


class MetricsServer:
    """A running /metrics endpoint; `stop()` shuts it down and frees the port."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        addr = server.socket.getsockname()
        self.host: str = addr[0]
        self.port: int = addr[1]

    @property
    def url(self) -> str:
        """The scrape URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._thread.join(timeout=5)  # then closed: the thread may still be in a round
        self._server.server_close()


def exposure_warning(listen: str) -> str | None:
    """A warning when `metrics.listen` is reachable from other hosts (the endpoint has no authentication)."""
    try:
        host = parse_listen(listen).host
    except LogravenError:
        return None  # the config check says what is wrong with it
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: whatever it resolves to may be reachable
    return (f"metrics.listen {listen}: /metrics is served beyond this host, without authentication (file names, "
            "model version, alert counts); allow only the Prometheus server (firewall, or IPAddressAllow= in the unit)")


def listen_problem(listen: str) -> str | None:
    """What `run` would say about the metrics address's host (it does not resolve, or is not an address
    of this host), found without taking the port: `check` runs beside the daemon that holds it."""
    try:
        addr = parse_listen(listen)
    except LogravenError:
        return None  # the config check says what is wrong with it
    try:
        family, sockaddr = _resolve(addr, listen, 0)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind(sockaddr)
    except LogravenError as e:
        return f"{e}; `run` would refuse to start"
    except OSError as e:  # port 0 is never taken: any error here is the address's
        if e.errno == errno.EADDRNOTAVAIL:
            return f"{_not_local(addr.host)}; `run` would refuse to start"
        return f"metrics.listen: cannot listen on {addr.host} ({e.strerror or e}); `run` would refuse to start"
    return None


def _resolve(addr: ListenAddress, listen: str, port: int) -> tuple[int, tuple]:
    """(address family, socket address) to bind `addr`'s host at `port`; LogravenError when it does not resolve."""
    try:
        infos = socket.getaddrinfo(addr.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LogravenError(f"metrics.listen: cannot resolve host {addr.host!r} in {listen!r} ({e.strerror})") from e
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _not_local(host: str) -> str:
    return f"metrics.listen: {host} is not an address of this host; use 127.0.0.1 or one of its addresses"


class PortInUse(LogravenError):
    """metrics.listen's port is held by another process (start_http_server)."""


def start_http_server(listen: str, metrics: Metrics) -> MetricsServer:
    """Serve `metrics` at http://<listen>/metrics from a daemon thread, bound to that address only."""
    addr = parse_listen(listen)
    family, sockaddr = _resolve(addr, listen, addr.port)

    app = make_wsgi_app(metrics.registry)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            alt = addr.port + 1 if 0 < addr.port < 65535 else 9078
            raise PortInUse(
                f"metrics.listen: {listen} is already in use by another process; "
                f"set metrics.listen to a free port, e.g. \"{_join(addr.host, alt)}\""
            ) from e
        if e.errno == errno.EACCES:
            raise LogravenError(
                f"metrics.listen: not allowed to bind {listen} (ports below 1024 need privileges); use a port above 1024"
            ) from e
        if e.errno == errno.EADDRNOTAVAIL:
            raise LogravenError(_not_local(addr.host)) from e
        raise LogravenError(f"metrics.listen: cannot listen on {listen}: {e.strerror or e}") from e
    server = _Server(sock, app)
    thread = threading.Thread(target=server.serve_forever, name="lograven-metrics", daemon=True)
    thread.start()
    handle = MetricsServer(server, thread)
    log.info("serving metrics at %s", handle.url)
    return handle


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
