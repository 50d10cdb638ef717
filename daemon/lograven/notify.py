"""The systemd notification protocol (sd_notify) without libsystemd.

systemd passes `NOTIFY_SOCKET` (a filesystem path, or `@name` for the
abstract namespace) to a `Type=notify` service; the service sends datagrams
of newline-separated `KEY=value` assignments to it: `READY=1` when serving,
`STATUS=...` for `systemctl status`, `WATCHDOG=1` as keep-alive when
`WatchdogSec=` is set (systemd exports the interval as `WATCHDOG_USEC`),
`RELOADING=1` plus `MONOTONIC_USEC=` when a reload starts (followed by
`READY=1` when it is done) and `STOPPING=1` on shutdown.

Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, and a failure to
send is logged once and never raised: notification must not take the daemon down.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Talks to the service manager through `NOTIFY_SOCKET`; silent when there is none."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        unset_environment: bool = False,
    ) -> None:
        """Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `env` (default: os.environ).

        With `unset_environment` the variables are removed from os.environ so
        child processes do not talk to systemd on the service's behalf.
        """
        source = os.environ if env is None else env
        self._address = _parse_address(source.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _parse_watchdog(source)
        self._clock = clock
        self._last_watchdog: float | None = None
        self._sock: socket.socket | None = None
        self._warned = False
        self._lock = threading.Lock()
        if unset_environment and env is None:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) is complete: `READY=1`, optionally with a status line."""
        self._send("READY=1", status)

    def status(self, text: str) -> None:
        """A one-line status shown by `systemctl status`."""
        self._send(None, text)

    def reloading(self, status: str | None = None) -> None:
        """A configuration reload starts; call `ready()` when it has finished."""
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}", status)

    def stopping(self, status: str | None = None) -> None:
        """The service is shutting down."""
        self._send("STOPPING=1", status)

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before a start/stop timeout (e.g. while loading a large model)."""
        self._send(f"EXTEND_TIMEOUT_USEC={max(int(seconds * 1_000_000), 1)}", None)

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alives (half of WatchdogSec), or None when no watchdog is armed for us."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def watchdog(self, force: bool = False) -> None:
        """Send `WATCHDOG=1`, at most once per `watchdog_interval()`; call it from the main loop freely."""
        interval = self.watchdog_interval()
        if interval is None:
            return
        now = self._clock()
        if not force and self._last_watchdog is not None and now - self._last_watchdog < interval:
            return
        self._last_watchdog = now
        self._send("WATCHDOG=1", None)

    def close(self) -> None:
        """Close the socket (it is reopened on the next message)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, fields: str | None, status: str | None) -> None:
        if self._address is None:
            return
        parts = [fields] if fields else []
        if status is not None:
            # A newline would start a new assignment: systemd would misread the rest of the status.
            parts.append("STATUS=" + " ".join(status.splitlines()))
        if not parts:
            return
        data = ("\n".join(parts) + "\n").encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self._address)
            except OSError as e:
                if not self._warned:
                    self._warned = True
                    log.warning("cannot notify the service manager via %r: %s (further errors are not logged)",
                                _display(self._address), e)
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None


def _parse_address(value: str) -> str | bytes | None:
    """NOTIFY_SOCKET -> a sendto() address; None when unset or of a kind we do not speak (vsock:)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")  # abstract namespace: no filesystem entry
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: only absolute paths and @abstract names are supported", value)
    return None


def _parse_watchdog(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC, if it is set, positive and (per WATCHDOG_PID) meant for this process."""
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec


def _display(address: str | bytes) -> str:
    return "@" + address[1:].decode("utf-8", "replace") if isinstance(address, bytes) else address
