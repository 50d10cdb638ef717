"""sd_notify: the datagrams a Type=notify service sends, against sockets the test binds."""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from lograven.notify import Notifier


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def notify_socket(tmp_path: Path):
    """A bound datagram socket standing in for systemd's /run/systemd/notify."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)  # sendto on AF_UNIX is synchronous: a message sent is already queued
    yield path, sock
    sock.close()


def recv_all(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_no_notify_socket_means_no_op() -> None:
    n = Notifier(env={})
    assert not n.enabled and n.watchdog_interval() is None
    n.ready()
    n.status("hello")
    n.watchdog()
    n.reloading()
    n.stopping()  # nothing to send to, nothing raised


def test_messages(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready()
    n.status("tailing 2 files\nmodel v3")
    n.stopping()
    n.ready(status="reloaded")
    assert recv_all(sock) == ["READY=1\n", "STATUS=tailing 2 files model v3\n", "STOPPING=1\n", "READY=1\nSTATUS=reloaded\n"]


def test_reloading_carries_monotonic_usec(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier(env={"NOTIFY_SOCKET": path})
    before = time.monotonic_ns() // 1000
    n.reloading()
    after = time.monotonic_ns() // 1000
    [msg] = recv_all(sock)
    fields = dict(line.split("=", 1) for line in msg.splitlines())
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_watchdog_is_rate_limited_to_half_the_interval(notify_socket) -> None:
    path, sock = notify_socket
    clock = FakeClock()
    n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, clock=clock)
    assert n.watchdog_interval() == 15.0
    n.watchdog()
    clock.t += 14.9
    n.watchdog()
    clock.t += 0.1
    n.watchdog()
    assert recv_all(sock) == ["WATCHDOG=1\n", "WATCHDOG=1\n"]
    n.watchdog(force=True)
    assert recv_all(sock) == ["WATCHDOG=1\n"]


@pytest.mark.parametrize(
    "env",
    [{}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "junk"}, {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}],
    ids=["unset", "zero", "junk", "other-pid"],
)
def test_no_watchdog_for_us(notify_socket, env) -> None:
    path, sock = notify_socket
    n = Notifier(env={"NOTIFY_SOCKET": path, **env})
    assert n.watchdog_interval() is None
    n.watchdog()
    assert recv_all(sock) == []


def test_abstract_socket_name() -> None:
    name = f"lograven-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        Notifier(env={"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1\n"
    finally:
        sock.close()


def test_send_failure_is_logged_once_and_never_raises(tmp_path: Path, caplog) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="lograven.notify"):
        n.ready()
        n.status("x")
        n.stopping()
    assert len([r for r in caplog.records if "cannot notify" in r.getMessage()]) == 1


def test_relative_socket_path_is_ignored(caplog) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": "relative/notify"})
    assert not n.enabled and "NOTIFY_SOCKET" in caplog.text


def test_extend_timeout(notify_socket) -> None:
    path, sock = notify_socket
    Notifier(env={"NOTIFY_SOCKET": path}).extend_timeout(90)
    assert recv_all(sock) == ["EXTEND_TIMEOUT_USEC=90000000\n"]


def test_unset_environment(monkeypatch, notify_socket) -> None:
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    n = Notifier(unset_environment=True)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    n.ready()  # the notifier kept what it read
    assert recv_all(sock) == ["READY=1\n"]
