"""Synthetic /var/log/messages for tests, the demo and benchmarks.

A `LogGenerator` writes RFC 3164 lines (``Jun  9 06:06:20 web01 sshd[4242]:
Accepted publickey for alice from ...``) from six *sources*: ``sshd``,
``cron``, ``systemd``, ``kernel``, ``sudo`` and ``dhclient``. Like the
datasets mixed by seed notebook 003, sources take turns at random; unlike
them, each turn is a short coherent *burst* driven by the source's own state
(an ssh login opens a session that a later sshd burst closes, systemd then
starts and stops that session's scope, dhclient backs off its DHCPv6
solicits), so a sequence model has structure to learn.

One source-to-source transition never happens in normal output, as the seed's
``SKIPPED_LOG_SEQUENCE``: with the default ``("cron", "sshd")`` an sshd burst
never directly follows a cron burst. `LogGenerator.generate` can inject three
labelled kinds of anomaly: ``unseen_type`` (messages normal output never
contains, after seed notebook 000), ``forbidden_transition`` (a burst of the
skipped pair, the label on the first line of the second burst) and
``malformed`` (truncated or binary lines).

Everything is drawn from one ``random.Random(seed)``: the same seed and the
same calls give the same lines.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import string
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

__all__ = [
    "ANOMALY_KINDS",
    "DEFAULT_SKIPPED_TRANSITION",
    "DEFAULT_START",
    "GeneratedLine",
    "LogGenerator",
    "NORMAL_TEMPLATES",
    "SOURCES",
    "UNSEEN_TEMPLATES",
    "main",
    "write_log",
]

SOURCES: tuple[str, ...] = ("sshd", "cron", "systemd", "kernel", "sudo", "dhclient")
ANOMALY_KINDS: tuple[str, ...] = ("unseen_type", "forbidden_transition", "malformed")
NORMAL = "normal"
ANOMALY_SOURCE = "anomaly"  # `GeneratedLine.source` of injected unseen and malformed lines
DEFAULT_SKIPPED_TRANSITION: tuple[str, str] = ("cron", "sshd")
# Fixed rather than "now", so that a seed alone decides the output.
DEFAULT_START = datetime(2025, 6, 9, 6, 6, 20)

# How often each source takes a turn. cron and sshd are both frequent, so the
# default skipped pair would otherwise be ~4% of all burst transitions.
_SOURCE_WEIGHTS: dict[str, float] = {
    "systemd": 22, "cron": 22, "sshd": 20, "kernel": 16, "sudo": 10, "dhclient": 10,
}  # fmt: skip


@dataclass(slots=True)
class GeneratedLine:
    """One generated line with its ground truth.

    `kind` is ``"normal"``, ``"unseen_type"``, ``"forbidden_transition"`` or
    ``"malformed"``. `source` is the source whose burst the line belongs to
    (``"anomaly"`` for injected unseen and malformed lines); `template` is the
    id of the message template in `NORMAL_TEMPLATES` or `UNSEEN_TEMPLATES`
    (``"malformed.*"`` for malformed lines), for measuring message typing.
    """

    text: str
    source: str
    kind: str
    template: str = ""


# --------------------------------------------------------------------------
# Templates: str.format strings keyed "source.name". Every normal message is
# exactly one of these with its fields filled in.

NORMAL_TEMPLATES: dict[str, str] = {
    # sshd: logins, logouts, internet scanners before authentication
    "sshd.accepted_publickey": "Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:{fingerprint}",
    "sshd.accepted_password": "Accepted password for {user} from {ip} port {port} ssh2",
    "sshd.session_opened": "pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)",
    "sshd.received_disconnect": "Received disconnect from {ip} port {port}:11: disconnected by user",
    "sshd.disconnected_user": "Disconnected from user {user} {ip} port {port}",
    "sshd.session_closed": "pam_unix(sshd:session): session closed for user {user}",
    "sshd.preauth_closed": "Connection closed by {ip} port {port} [preauth]",
    "sshd.preauth_reset": "Connection reset by {ip} port {port} [preauth]",
    "sshd.invalid_user": "Invalid user {user} from {ip} port {port}",
    "sshd.preauth_bye": "Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
    "sshd.disconnected_invalid": "Disconnected from invalid user {user} {ip} port {port} [preauth]",
    # cron (program CRON)
    "cron.session_opened": "pam_unix(cron:session): session opened for user {user}(uid={uid}) by (uid=0)",
    "cron.cmd": "({user}) CMD ({command})",
    "cron.no_mta": "(CRON) INFO (No MTA installed, discarding output)",
    "cron.session_closed": "pam_unix(cron:session): session closed for user {user}",
    # systemd (pid 1) and systemd-logind
    "systemd.logind_new_session": "New session {session} of user {user}.",
    "systemd.created_slice": "Created slice User Slice of UID {uid}.",
    "systemd.starting_runtime_dir": "Starting User Runtime Directory /run/user/{uid}...",
    "systemd.finished_runtime_dir": "Finished User Runtime Directory /run/user/{uid}.",
    "systemd.starting_user_manager": "Starting User Manager for UID {uid}...",
    "systemd.started_user_manager": "Started User Manager for UID {uid}.",
    "systemd.started_session": "Started Session {session} of User {user}.",
    "systemd.logind_logged_out": "Session {session} logged out. Waiting for processes to exit.",
    "systemd.unit_deactivated": "{unit}: Deactivated successfully.",
    "systemd.logind_removed_session": "Removed session {session}.",
    "systemd.stopping_user_manager": "Stopping User Manager for UID {uid}...",
    "systemd.stopped_user_manager": "Stopped User Manager for UID {uid}.",
    "systemd.stopping_runtime_dir": "Stopping User Runtime Directory /run/user/{uid}...",
    "systemd.stopped_runtime_dir": "Stopped User Runtime Directory /run/user/{uid}.",
    "systemd.removed_slice": "Removed slice User Slice of UID {uid}.",
    "systemd.starting_unit": "Starting {unit} - {description}...",
    "systemd.finished_unit": "Finished {unit} - {description}.",
    "systemd.consumed_cpu": "{unit}: Consumed {cpu}s CPU time.",
    "systemd.reloading_unit": "Reloading {unit} - {description}...",
    "systemd.reloaded_unit": "Reloaded {unit} - {description}.",
    # kernel
    "kernel.ufw_block_tcp": (
        "[UFW BLOCK] IN=eth0 OUT= MAC={mac} SRC={src} DST={dst} LEN={length} TOS=0x00 PREC=0x00 "
        "TTL={ttl} ID={ipid} {df}PROTO=TCP SPT={spt} DPT={dpt} WINDOW={window} RES=0x00 SYN URGP=0"
    ),
    "kernel.ufw_block_udp": (
        "[UFW BLOCK] IN=eth0 OUT= MAC={mac} SRC={src} DST={dst} LEN={length} TOS=0x00 PREC=0x00 "
        "TTL={ttl} ID={ipid} {df}PROTO=UDP SPT={spt} DPT={dpt} LEN={udp_length}"
    ),
    "kernel.audit_service_start": (
        "audit: type=1130 audit({stamp}:{serial}): pid=1 uid=0 auid=4294967295 ses=4294967295 "
        "subj=unconfined msg='unit={unit} comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" "
        "hostname=? addr=? terminal=? res=success'"
    ),
    "kernel.audit_service_stop": (
        "audit: type=1131 audit({stamp}:{serial}): pid=1 uid=0 auid=4294967295 ses=4294967295 "
        "subj=unconfined msg='unit={unit} comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" "
        "hostname=? addr=? terminal=? res=success'"
    ),
    "kernel.link_down": "e1000e: eth0 NIC Link is Down",
    "kernel.link_up": "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "kernel.link_ready": "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
    "kernel.syn_flood": "TCP: request_sock_TCP: Possible SYN flooding on port {port}. Sending cookies.  Check SNMP counters.",
    "kernel.perf_rate": "perf: interrupt took too long ({took} > {limit}), lowering kernel.perf_event_max_sample_rate to {rate}",
    # sudo (no pid, as on RHEL)
    "sudo.command": "{user} : TTY=pts/{tty} ; PWD={pwd} ; USER=root ; COMMAND={command}",
    "sudo.command_notty": "{user} : PWD={pwd} ; USER=root ; COMMAND={command}",
    "sudo.session_opened": "pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})",
    "sudo.session_closed": "pam_unix(sudo:session): session closed for user root",
    # dhclient (one long-lived pid; v4 renewals and a v6 client without a server)
    "dhclient.request": "DHCPREQUEST for {ip} on eth0 to {server} port 67 (xid={xid})",
    "dhclient.ack": "DHCPACK of {ip} from {server} (xid={xid})",
    "dhclient.bound": "bound to {ip} -- renewal in {seconds} seconds.",
    "dhclient.solicit": "XMT: Solicit on eth0, interval {interval}ms.",
    "dhclient.info_request": "XMT: Info-Request on eth0, interval {interval}ms.",
    "dhclient.reply": "RCV: Reply message on eth0 from {router}.",
}  # fmt: skip

# Unseen-type anomalies: (template id, program header, message). "{pid}" in the
# program is filled in. The first six are seed notebook 000's test lines.
_UNSEEN: tuple[tuple[str, str, str], ...] = (
    ("unseen.disk_full", "kernel", "/dev/{dev} out of diskspace"),
    ("unseen.failed_logon", "sshd", "failed logon attempt by {name}."),
    ("unseen.unknown_operand", "kernel", "unknown operand from system process"),
    ("unseen.sudo_adduser", "sudo",
     "{name} : TTY=pts/{tty} ; PWD=/home/{name} ; USER=root ; COMMAND=/usr/sbin/adduser {new}"),
    ("unseen.groupadd", "groupadd[{pid}]", "group added to /etc/group: name={new}, GID={gid}"),
    ("unseen.password_changed", "passwd[{pid}]", "pam_unix(passwd:chauthtok): password changed for {new}"),
    ("unseen.useradd", "useradd[{pid}]",
     "new user: name={new}, UID={gid}, GID={gid}, home=/home/{new}, shell=/bin/bash, from=/dev/pts/{tty}"),
    ("unseen.sudo_incorrect_password", "sudo",
     "{name} : 3 incorrect password attempts ; TTY=pts/{tty} ; PWD=/home/{name} ; USER=root ; COMMAND=/bin/bash"),
    ("unseen.oom_invoked", "kernel",
     "{proc} invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0"),
    ("unseen.oom_killed", "kernel",
     "Out of memory: Killed process {pid} ({proc}) total-vm:{vm}kB, anon-rss:{rss}kB, file-rss:0kB, "
     "shmem-rss:0kB, UID:{uid} pgtables:{pgtables}kB oom_score_adj:0"),
    ("unseen.segfault", "kernel", "{proc}[{pid}]: segfault at {addr} ip {ip} sp {sp} error {err} in {lib}[{base}+{size}]"),
    ("unseen.max_auth_attempts", "sshd[{pid}]",
     "error: maximum authentication attempts exceeded for root from {src} port {port} ssh2 [preauth]"),
    ("unseen.ext4_error", "kernel",
     "EXT4-fs error (device {dev}): ext4_find_entry:1455: inode #{inode}: comm {proc}: reading directory lblock 0"),
    ("unseen.service_killed", "systemd[1]", "{unit}: Main process exited, code=killed, status=9/KILL"),
)  # fmt: skip

UNSEEN_TEMPLATES: dict[str, str] = {tid: message for tid, _, message in _UNSEEN}

# --------------------------------------------------------------------------
# Vocabularies

_USER_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl",
    "laura", "nick", "olivia", "peggy", "quentin", "rupert", "sybil", "victor", "walter",
    "deploy", "jenkins",
)  # fmt: skip
# Names only anomalies use, so they are new tokens too.
_INTRUDER_NAMES = ("margie", "mike", "boris", "tanya", "oleg", "chad", "trudy", "mallory")
_NEW_ACCOUNTS = ("jim", "helpdesk", "backup2", "sysadm", "test1", "nagios2", "dbadmin")
# Names internet scanners try.
_SCANNER_USERS = (
    "admin", "test", "oracle", "ubuntu", "guest", "postgres", "user", "ftpuser", "pi", "git",
    "hadoop", "minecraft", "steam", "support", "debian", "centos", "es", "tomcat",
)  # fmt: skip
_SUDO_COMMANDS = (
    "/usr/bin/systemctl status nginx",
    "/usr/bin/systemctl reload nginx",
    "/usr/bin/systemctl restart php8.1-fpm",
    "/usr/bin/journalctl -u nginx --since today",
    "/usr/bin/tail -n 200 /var/log/nginx/error.log",
    "/usr/bin/less /var/log/syslog",
    "/usr/bin/apt update",
    "/usr/bin/apt list --upgradable",
    "/usr/bin/docker ps",
    "/usr/bin/df -h",
    "/usr/bin/du -sh /var/www/app/storage/logs",
    "/usr/sbin/ufw status verbose",
    "/usr/bin/certbot certificates",
    "/usr/sbin/nginx -t",
)
_ANSIBLE_MODULES = ("setup", "apt", "copy", "systemd", "file", "command", "stat", "template")
# (user, uid, command, relative weight)
_CRON_JOBS = (
    ("root", 0, "cd / && run-parts --report /etc/cron.hourly", 2.0),
    ("root", 0, "command -v debian-sa1 > /dev/null && debian-sa1 1 1", 6.0),
    ("root", 0, "[ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then "
                "/usr/lib/php/sessionclean; fi", 3.0),
    ("root", 0, "test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )", 0.5),
    ("root", 0, "/usr/local/bin/backup.sh --incremental >/dev/null 2>&1", 1.0),
    ("www-data", 33, "php /var/www/app/artisan schedule:run >> /dev/null 2>&1", 8.0),
    ("backup", 34, "/usr/local/bin/db-dump.sh nightly", 0.5),
)  # fmt: skip
# (unit, description, relative weight) of timer-driven oneshot services
_TIMER_SERVICES = (
    ("sysstat-collect.service", "system activity accounting tool", 8.0),
    ("phpsessionclean.service", "Clean php session files", 4.0),
    ("logrotate.service", "Rotate log files", 1.0),
    ("apt-daily.service", "Daily apt download activities", 0.7),
    ("apt-daily-upgrade.service", "Daily apt upgrade and clean activities", 0.5),
    ("man-db.service", "Daily man-db regeneration", 0.5),
    ("systemd-tmpfiles-clean.service", "Cleanup of Temporary Directories", 0.7),
    ("fstrim.service", "Discard unused blocks on filesystems from /etc/fstab", 0.2),
    ("certbot.service", "Certbot", 1.0),
    ("motd-news.service", "Message of the Day", 0.6),
    ("fwupd-refresh.service", "Refresh fwupd metadata and update motd", 0.4),
)  # fmt: skip
_RELOADABLE = (
    ("nginx.service", "A high performance web server and a reverse proxy server"),
    ("php8.1-fpm.service", "The PHP 8.1 FastCGI Process Manager"),
)
# Ports scanners knock on: (port, is_udp)
_SCANNED_PORTS = (
    (23, False), (445, False), (3389, False), (8080, False), (2222, False), (5900, False),
    (1433, False), (3306, False), (6379, False), (8443, False), (2323, False), (81, False),
    (8888, False), (5432, False), (9200, False), (5060, True), (123, True), (161, True),
    (1900, True), (53, True),
)  # fmt: skip
_PROCESSES = ("php-fpm8.1", "node", "java", "python3", "mysqld", "nginx", "redis-server", "gunicorn")
_LIBS = ("libc.so.6", "libpthread.so.0", "libssl.so.3", "libphp8.1.so", "libcrypto.so.3")
_KILLED_UNITS = ("nginx.service", "php8.1-fpm.service", "mysql.service", "redis-server.service")
_DEVICES = ("sda1", "sda2", "sdb1", "nvme0n1p1", "nvme0n1p2", "vda1")
_B64 = string.ascii_letters + string.digits + "+/"
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Bytes str.splitlines() would split on: kept out of malformed lines so each stays one line.
_LINE_BREAKS = frozenset(b"\n\r\x0b\x0c\x1c\x1d\x1e\x85")
_JUNK_BYTES = bytes(b for b in range(256) if b not in _LINE_BREAKS)

# (program header, template id, message) of one line before it is stamped
_Raw = tuple[str, str, str]
# (text, source, kind, template id) of one finished line
_Out = tuple[str, str, str, str]


# --------------------------------------------------------------------------
# State shared by the sources


@dataclass(slots=True)
class _User:
    name: str
    uid: int
    fingerprint: str
    ips: tuple[str, ...]
    password_auth: bool
    admin: bool


@dataclass(slots=True)
class _SshSession:
    pid: int
    user: _User
    ip: str
    port: int
    session: int
    tty: int


@dataclass(slots=True)
class _World:
    """What more than one source knows about: the host, its users, pids, sessions."""

    rng: random.Random
    clock: _Clock
    users: list[_User]
    user_cum_weights: list[float]
    host_ip: str
    gateway: str
    mac: str
    router_ll: str
    scanner_pool: list[str]
    pid: int
    session: int
    ssh_sessions: list[_SshSession] = field(default_factory=list)
    # logind session starts/ends for systemd to announce: (is_start, session, user)
    session_events: deque[tuple[bool, int, _User]] = field(default_factory=lambda: deque(maxlen=64))

    def next_pid(self) -> int:
        """A fresh pid: Linux hands them out increasing, wrapping at pid_max."""
        self.pid += 1 + int(self.rng.random() * self.rng.random() * 60)
        if self.pid >= 4_194_304:
            self.pid = 300 + int(self.rng.random() * 1000)
        return self.pid

    def next_session(self) -> int:
        """The next logind session number."""
        self.session += 1
        return self.session

    def pick_user(self) -> _User:
        """A user, some logging in far more often than others."""
        return self.rng.choices(self.users, cum_weights=self.user_cum_weights)[0]

    def scanner_ip(self) -> str:
        """An internet address: mostly a recurring scanner, sometimes a new one."""
        rng = self.rng
        if rng.random() < 0.7:
            return self.scanner_pool[int(rng.random() * rng.random() * len(self.scanner_pool))]
        return _public_ip(rng)

    def ephemeral_port(self) -> int:
        """A client-side port in Linux's default ephemeral range."""
        return 32768 + int(self.rng.random() * 28232)


class _Clock:
    """Simulated time: seconds since `start`, and the syslog timestamp text for it."""

    __slots__ = ("start", "epoch0", "seconds", "_second", "_stamp")

    def __init__(self, start: datetime) -> None:
        self.start = start
        # Naive starts are taken as UTC so audit stamps do not depend on the local zone.
        aware = start if start.tzinfo is not None else start.replace(tzinfo=timezone.utc)
        self.epoch0 = aware.timestamp()
        self.seconds = 0.0
        self._second = -1
        self._stamp = ""

    def stamp(self) -> str:
        """``"Jun  9 06:06:20"`` for the current time (cached per second)."""
        second = int(self.seconds)
        if second != self._second:
            t = self.start + timedelta(seconds=second)
            self._stamp = f"{_MONTHS[t.month]} {t.day:2d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            self._second = second
        return self._stamp

    def epoch(self) -> float:
        """The current time as a Unix timestamp."""
        return self.epoch0 + self.seconds


def _public_ip(rng: random.Random) -> str:
    """A random unicast address outside the private, loopback and multicast ranges."""
    while True:
        a = 1 + int(rng.random() * 222)
        if a not in (10, 100, 127, 169, 172, 192):
            break
    return f"{a}.{int(rng.random() * 256)}.{int(rng.random() * 256)}.{1 + int(rng.random() * 254)}"


def _cum_weights(weights: Iterable[float]) -> list[float]:
    total = 0.0
    out = []
    for w in weights:
        total += w
        out.append(total)
    return out


def _line(prog: str, template: str, **fields: object) -> _Raw:
    """One unstamped line: `template` from `NORMAL_TEMPLATES` with `fields` filled in."""
    return (prog, template, NORMAL_TEMPLATES[template].format_map(fields))


# --------------------------------------------------------------------------
# Sources: each `burst()` returns the lines of one coherent turn.


class _Sshd:
    """Logins that stay open until a later burst logs them out, and scanner noise."""

    name = "sshd"
    MAX_OPEN = 6

    def __init__(self, world: _World) -> None:
        self.w = world

    def burst(self) -> list[_Raw]:
        """One login, one logout or one failed scanner connection."""
        x = self.w.rng.random()
        n_open = len(self.w.ssh_sessions)
        if n_open and (x < 0.35 or n_open >= self.MAX_OPEN):
            return self._logout()
        if x < 0.72:
            return self._login()
        return self._scanner()

    def _login(self) -> list[_Raw]:
        w = self.w
        user = w.pick_user()
        pid = w.next_pid()
        ip = user.ips[int(w.rng.random() * len(user.ips))]
        port = w.ephemeral_port()
        prog = f"sshd[{pid}]"
        if user.password_auth:
            accepted = _line(prog, "sshd.accepted_password", user=user.name, ip=ip, port=port)
        else:
            accepted = _line(
                prog, "sshd.accepted_publickey",
                user=user.name, ip=ip, port=port, fingerprint=user.fingerprint,
            )
        opened = _line(prog, "sshd.session_opened", user=user.name, uid=user.uid)
        used = {s.tty for s in w.ssh_sessions}
        tty = next(n for n in range(len(used) + 1) if n not in used)
        session = w.next_session()
        w.ssh_sessions.append(_SshSession(pid, user, ip, port, session, tty))
        w.session_events.append((True, session, user))
        return [accepted, opened]

    def _logout(self) -> list[_Raw]:
        w = self.w
        s = w.ssh_sessions.pop(int(w.rng.random() * len(w.ssh_sessions)))
        prog = f"sshd[{s.pid}]"
        w.session_events.append((False, s.session, s.user))
        return [
            _line(prog, "sshd.received_disconnect", ip=s.ip, port=s.port),
            _line(prog, "sshd.disconnected_user", user=s.user.name, ip=s.ip, port=s.port),
            _line(prog, "sshd.session_closed", user=s.user.name),
        ]

    def _scanner(self) -> list[_Raw]:
        w = self.w
        rng = w.rng
        prog = f"sshd[{w.next_pid()}]"
        ip = w.scanner_ip()
        port = w.ephemeral_port()
        x = rng.random()
        if x < 0.3:
            return [_line(prog, "sshd.preauth_closed", ip=ip, port=port)]
        if x < 0.4:
            return [_line(prog, "sshd.preauth_reset", ip=ip, port=port)]
        name = _SCANNER_USERS[int(rng.random() * len(_SCANNER_USERS))]
        return [
            _line(prog, "sshd.invalid_user", user=name, ip=ip, port=port),
            _line(prog, "sshd.preauth_bye", ip=ip, port=port),
            _line(prog, "sshd.disconnected_invalid", user=name, ip=ip, port=port),
        ]


class _Cron:
    """One job run: session opened, the command, sometimes a mail notice, session closed."""

    name = "cron"
    _cum = _cum_weights(job[3] for job in _CRON_JOBS)

    def __init__(self, world: _World) -> None:
        self.w = world

    def burst(self) -> list[_Raw]:
        """The lines of one cron job."""
        rng = self.w.rng
        user, uid, command, _ = rng.choices(_CRON_JOBS, cum_weights=self._cum)[0]
        prog = f"CRON[{self.w.next_pid()}]"
        lines = [
            _line(prog, "cron.session_opened", user=user, uid=uid),
            _line(prog, "cron.cmd", user=user, command=command),
        ]
        if rng.random() < 0.1:
            lines.append(_line(prog, "cron.no_mta"))
        lines.append(_line(prog, "cron.session_closed", user=user))
        return lines


class _Systemd:
    """Session scopes for sshd's logins and logouts, and timer-driven services."""

    name = "systemd"
    PROG = "systemd[1]"
    _cum = _cum_weights(s[2] for s in _TIMER_SERVICES)

    def __init__(self, world: _World) -> None:
        self.w = world
        self.logind = f"systemd-logind[{400 + int(world.rng.random() * 600)}]"
        self._active: dict[str, int] = {}  # user name -> open sessions
        for s in world.ssh_sessions:  # logged in before the log starts
            self._active[s.user.name] = self._active.get(s.user.name, 0) + 1

    def burst(self) -> list[_Raw]:
        """A session start or end if one is pending, else a service run or reload."""
        w = self.w
        x = w.rng.random()
        if w.session_events and x < 0.9:
            is_start, session, user = w.session_events.popleft()
            return self._session_start(session, user) if is_start else self._session_end(session, user)
        if x < 0.95:
            return self._service()
        return self._reload()

    def _session_start(self, session: int, user: _User) -> list[_Raw]:
        p = self.PROG
        uid = user.uid
        lines = [_line(self.logind, "systemd.logind_new_session", session=session, user=user.name)]
        active = self._active.get(user.name, 0)
        self._active[user.name] = active + 1
        if active == 0:
            lines += [
                _line(p, "systemd.created_slice", uid=uid),
                _line(p, "systemd.starting_runtime_dir", uid=uid),
                _line(p, "systemd.finished_runtime_dir", uid=uid),
                _line(p, "systemd.starting_user_manager", uid=uid),
                _line(p, "systemd.started_user_manager", uid=uid),
            ]
        lines.append(_line(p, "systemd.started_session", session=session, user=user.name))
        return lines

    def _session_end(self, session: int, user: _User) -> list[_Raw]:
        p = self.PROG
        uid = user.uid
        lines = [
            _line(self.logind, "systemd.logind_logged_out", session=session),
            _line(p, "systemd.unit_deactivated", unit=f"session-{session}.scope"),
            _line(self.logind, "systemd.logind_removed_session", session=session),
        ]
        active = self._active.get(user.name, 0)
        if active > 1:
            self._active[user.name] = active - 1
        elif active == 1:
            del self._active[user.name]
            lines += [
                _line(p, "systemd.stopping_user_manager", uid=uid),
                _line(p, "systemd.unit_deactivated", unit=f"user@{uid}.service"),
                _line(p, "systemd.stopped_user_manager", uid=uid),
                _line(p, "systemd.stopping_runtime_dir", uid=uid),
                _line(p, "systemd.unit_deactivated", unit=f"run-user-{uid}.mount"),
                _line(p, "systemd.unit_deactivated", unit=f"user-runtime-dir@{uid}.service"),
                _line(p, "systemd.stopped_runtime_dir", uid=uid),
                _line(p, "systemd.removed_slice", uid=uid),
            ]
        return lines

    def _service(self) -> list[_Raw]:
        rng = self.w.rng
        unit, description, _ = rng.choices(_TIMER_SERVICES, cum_weights=self._cum)[0]
        p = self.PROG
        lines = [
            _line(p, "systemd.starting_unit", unit=unit, description=description),
            _line(p, "systemd.unit_deactivated", unit=unit),
            _line(p, "systemd.finished_unit", unit=unit, description=description),
        ]
        if rng.random() < 0.4:
            cpu = f"{0.01 + rng.random() * rng.random() * 4:.3f}".rstrip("0").rstrip(".")
            lines.append(_line(p, "systemd.consumed_cpu", unit=unit, cpu=cpu))
        return lines

    def _reload(self) -> list[_Raw]:
        unit, description = _RELOADABLE[int(self.w.rng.random() * len(_RELOADABLE))]
        p = self.PROG
        return [
            _line(p, "systemd.reloading_unit", unit=unit, description=description),
            _line(p, "systemd.reloaded_unit", unit=unit, description=description),
        ]


class _Kernel:
    """Firewall drops of scanners, audit records of services, rare link and TCP notices."""

    name = "kernel"
    PROG = "kernel"

    def __init__(self, world: _World) -> None:
        self.w = world
        self.audit_serial = 100 + int(world.rng.random() * 900)

    def burst(self) -> list[_Raw]:
        """1-4 firewall drops from one scanner, an audit start/stop pair, or a notice."""
        x = self.w.rng.random()
        if x < 0.62:
            return self._ufw()
        if x < 0.9:
            return self._audit()
        if x < 0.95:
            return self._perf()
        if x < 0.98:
            return [_line(self.PROG, "kernel.syn_flood", port=443 if x < 0.97 else 80)]
        return [
            _line(self.PROG, "kernel.link_down"),
            _line(self.PROG, "kernel.link_up"),
            _line(self.PROG, "kernel.link_ready"),
        ]

    def _ufw(self) -> list[_Raw]:
        w = self.w
        rng = w.rng
        r = rng.random
        src = w.scanner_ip()
        ttl = 40 + int(r() * 210)
        spt = 1024 + int(r() * 64511)
        n = 1 + int(r() * r() * 4)
        lines = []
        for _ in range(n):
            dpt, udp = _SCANNED_PORTS[int(r() * len(_SCANNED_PORTS))]
            df = "DF " if r() < 0.3 else ""
            ipid = int(r() * 65536)
            if udp:
                udp_length = 8 + int(r() * 120)
                lines.append(_line(
                    self.PROG, "kernel.ufw_block_udp",
                    mac=w.mac, src=src, dst=w.host_ip, length=udp_length + 20, ttl=ttl, ipid=ipid,
                    df=df, spt=spt, dpt=dpt, udp_length=udp_length,
                ))
            else:
                lines.append(_line(
                    self.PROG, "kernel.ufw_block_tcp",
                    mac=w.mac, src=src, dst=w.host_ip, length=(40, 44, 52, 60)[int(r() * 4)],
                    ttl=ttl, ipid=ipid, df=df, spt=spt, dpt=dpt,
                    window=(1024, 65535, 29200, 14600)[int(r() * 4)],
                ))
        return lines

    def _audit(self) -> list[_Raw]:
        rng = self.w.rng
        unit = rng.choices(_TIMER_SERVICES, cum_weights=_Systemd._cum)[0][0].removesuffix(".service")
        epoch = self.w.clock.epoch()
        self.audit_serial += 2
        return [
            _line(self.PROG, "kernel.audit_service_start",
                  stamp=f"{epoch:.3f}", serial=self.audit_serial - 1, unit=unit),
            _line(self.PROG, "kernel.audit_service_stop",
                  stamp=f"{epoch + 0.05 + rng.random() * 2:.3f}", serial=self.audit_serial, unit=unit),
        ]

    def _perf(self) -> list[_Raw]:
        r = self.w.rng.random
        limit = 2500 + int(r() * 4000)
        took = limit + 1 + int(r() * 200)
        rate = int(25_000_000 / took) // 250 * 250
        return [_line(self.PROG, "kernel.perf_rate", took=took, limit=limit, rate=rate)]


class _Sudo:
    """An admin's sudo from an open ssh session, or an ansible run without a tty."""

    name = "sudo"
    PROG = "sudo"

    def __init__(self, world: _World) -> None:
        self.w = world
        self.deploy = next(u for u in world.users if u.name == "deploy")

    def burst(self) -> list[_Raw]:
        """The command line, then its pam session opened and closed."""
        w = self.w
        rng = w.rng
        r = rng.random
        admins = [s for s in w.ssh_sessions if s.user.admin]
        if admins and r() < 0.85:
            s = admins[int(r() * len(admins))]
            user = s.user
            x = r()
            pwd = f"/home/{user.name}" if x < 0.6 else ("/var/www/app" if x < 0.85 else "/etc/nginx")
            command = _SUDO_COMMANDS[int(r() * len(_SUDO_COMMANDS))]
            first = _line(self.PROG, "sudo.command", user=user.name, tty=s.tty, pwd=pwd, command=command)
        else:
            user = self.deploy
            token = "".join(rng.choices(string.ascii_lowercase, k=32))
            module = _ANSIBLE_MODULES[int(r() * len(_ANSIBLE_MODULES))]
            command = (
                f"/bin/sh -c echo BECOME-SUCCESS-{token} ; /usr/bin/python3 "
                f"/home/deploy/.ansible/tmp/ansible-tmp-{w.clock.epoch():.2f}-{w.next_pid()}-"
                f"{int(r() * 2**47)}/AnsiballZ_{module}.py"
            )
            first = _line(
                self.PROG, "sudo.command_notty", user=user.name, pwd=f"/home/{user.name}", command=command
            )
        return [
            first,
            _line(self.PROG, "sudo.session_opened", user=user.name, uid=user.uid),
            _line(self.PROG, "sudo.session_closed"),
        ]


class _Dhclient:
    """DHCPv4 lease renewals, and a DHCPv6 client backing off its solicits."""

    name = "dhclient"

    def __init__(self, world: _World) -> None:
        self.w = world
        self.prog = f"dhclient[{600 + int(world.rng.random() * 2900)}]"
        self.solicit_interval = 1000.0

    def burst(self) -> list[_Raw]:
        """A request/ack/bound renewal, one solicit, or an info-request and its reply."""
        w = self.w
        r = w.rng.random
        x = r()
        if x < 0.4:
            xid = f"0x{w.rng.getrandbits(32):08x}"
            ip, server = w.host_ip, w.gateway
            return [
                _line(self.prog, "dhclient.request", ip=ip, server=server, xid=xid),
                _line(self.prog, "dhclient.ack", ip=ip, server=server, xid=xid),
                _line(self.prog, "dhclient.bound", ip=ip, seconds=700 + int(r() * 1200)),
            ]
        if x < 0.9:
            # RFC 8415 back-off: double with +-10% jitter up to about two minutes.
            if r() < 0.03:
                self.solicit_interval = 1000.0
            else:
                self.solicit_interval = min(self.solicit_interval * 2, 120_000.0)
            interval = int(self.solicit_interval * (0.9 + 0.2 * r()))
            return [_line(self.prog, "dhclient.solicit", interval=interval)]
        return [
            _line(self.prog, "dhclient.info_request", interval=900 + int(r() * 200)),
            _line(self.prog, "dhclient.reply", router=w.router_ll),
        ]


# --------------------------------------------------------------------------
# The generator


class LogGenerator:
    """Deterministic synthetic /var/log/messages with optional labelled anomalies.

    The generator is one endless stream: successive `lines`, `generate` and
    iteration calls continue where the previous one stopped (a burst cut at
    the end of one call finishes at the start of the next), so
    ``generate(a) + generate(b)`` equals ``generate(a + b)``.

    `start` is the time of the first line (default `DEFAULT_START`, fixed so
    that the seed alone decides the output; the live demo passes
    ``datetime.now()``). Time advances by simulated gaps, not the wall clock.
    `skipped_transition` ``(a, b)``: in normal output a burst of source `b`
    never directly follows one of source `a`; None allows every transition.
    """

    def __init__(
        self,
        seed: int = 0,
        host: str = "web01",
        start: datetime | None = None,
        skipped_transition: tuple[str, str] | None = DEFAULT_SKIPPED_TRANSITION,
    ) -> None:
        if not host or any(c.isspace() for c in host):
            raise ValueError(f"host must be one non-empty word, got {host!r}")
        if skipped_transition is not None:
            skipped_transition = tuple(skipped_transition)  # type: ignore[assignment]
            if len(skipped_transition) != 2 or not all(s in SOURCES for s in skipped_transition):
                raise ValueError(
                    f"skipped_transition must be a pair of sources from {SOURCES}, "
                    f"got {skipped_transition!r}"
                )
        self.seed = seed
        self.host = host
        self.skipped_transition = skipped_transition
        #: Anomaly rate and kinds `__iter__` uses; the live demo may change them between lines.
        self.anomaly_rate = 0.0
        self.anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS

        self._rng = rng = random.Random(seed)
        self._clock = _Clock(start if start is not None else DEFAULT_START)
        self._host_prefix = f" {host} "
        self._world = self._make_world(rng, self._clock)
        sources = (_Sshd, _Cron, _Systemd, _Kernel, _Sudo, _Dhclient)
        self._sources = {cls.name: cls(self._world) for cls in sources}
        # Next-source choice after each source, with the skipped successor left out.
        self._next_choice: dict[str | None, tuple[list[str], list[float]]] = {}
        for prev in (None, *SOURCES):
            names = [
                s for s in SOURCES
                if prev is None or skipped_transition is None or (prev, s) != skipped_transition
            ]
            self._next_choice[prev] = (names, _cum_weights(_SOURCE_WEIGHTS[s] for s in names))
        self._last_source: str | None = None
        self._pending: list[_Out] = []
        self._debt = 0.0  # anomaly lines owed to reach the requested rate

    @staticmethod
    def _make_world(rng: random.Random, clock: _Clock) -> _World:
        names = list(_USER_NAMES)
        rng.shuffle(names)
        users = []
        for rank, name in enumerate(names):
            office = f"203.0.113.{10 + int(rng.random() * 40)}"
            vpn = f"10.8.0.{2 + int(rng.random() * 250)}"
            home = _public_ip(rng)
            ips = (office, vpn, home)[: 1 + int(rng.random() * 3)]
            users.append(_User(
                name=name,
                uid=1000 + rank,
                fingerprint="".join(rng.choices(_B64, k=43)),
                ips=ips,
                password_auth=name not in ("deploy", "jenkins") and rng.random() < 0.15,
                admin=name == "deploy" or rank < 6,
            ))
        # Zipf-like: the first users in the shuffled list log in most.
        user_cum = _cum_weights(1.0 / (rank + 1) for rank in range(len(users)))
        subnet = f"10.0.{int(rng.random() * 8)}"
        host_ip = f"{subnet}.{10 + int(rng.random() * 200)}"
        mac_bytes = [rng.getrandbits(8) for _ in range(12)]
        mac_bytes[0] &= 0xFE  # unicast
        mac_bytes[6] &= 0xFE
        mac = ":".join(f"{b:02x}" for b in mac_bytes) + ":08:00"
        router_ll = "fe80::" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(4))
        world = _World(
            rng=rng,
            clock=clock,
            users=users,
            user_cum_weights=user_cum,
            host_ip=host_ip,
            gateway=f"{subnet}.1",
            mac=mac,
            router_ll=router_ll,
            scanner_pool=[_public_ip(rng) for _ in range(400)],
            pid=1000 + int(rng.random() * 20000),
            session=1 + int(rng.random() * 3000),
        )
        # A couple of admins are already logged in when the log starts, so their
        # logouts (and their sudo commands) appear without a login.
        for tty, user in enumerate([u for u in users if u.admin and u.name != "deploy"][:2]):
            world.ssh_sessions.append(_SshSession(
                world.next_pid(), user, user.ips[0], world.ephemeral_port(), world.next_session(), tty))
        return world

    # -- public API ---------------------------------------------------------

    def lines(self, n: int) -> list[str]:
        """The next `n` normal lines as text (fast path for training data and benchmarks).

        Lines of a burst left over from an earlier `generate` call with anomalies
        come first, labels dropped.
        """
        return [item[0] for item in self._take(n, 0.0, ())]

    def generate(
        self,
        n: int,
        anomaly_rate: float = 0.0,
        kinds: Sequence[str] = ANOMALY_KINDS,
    ) -> list[GeneratedLine]:
        """The next `n` lines, about `anomaly_rate` of them anomalies of the given kinds, labelled.

        Anomalies are injected between bursts. ``forbidden_transition`` is
        ignored when `skipped_transition` is None (an error if it is the only kind).
        """
        chosen = self._check_anomalies(anomaly_rate, kinds)
        return [GeneratedLine(*item) for item in self._take(n, anomaly_rate, chosen)]

    def __iter__(self) -> Iterator[GeneratedLine]:
        """Endless lines for the live demo, with anomalies per `anomaly_rate` and `anomaly_kinds`."""
        while True:
            if not self._pending:
                rate = self.anomaly_rate
                kinds = self._check_anomalies(rate, self.anomaly_kinds)
                self._pending = self._step(rate, kinds)
            yield GeneratedLine(*self._pending.pop(0))

    # -- internals ----------------------------------------------------------

    def _check_anomalies(self, rate: float, kinds: Sequence[str]) -> tuple[str, ...]:
        """Validate an anomaly request; the kinds that can actually be produced."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"anomaly_rate must be between 0 and 1, got {rate!r}")
        if isinstance(kinds, str):
            kinds = (kinds,)
        unknown = [k for k in kinds if k not in ANOMALY_KINDS]
        if unknown:
            raise ValueError(f"unknown anomaly kinds {unknown}: choose from {ANOMALY_KINDS}")
        chosen = tuple(
            k for k in kinds if k != "forbidden_transition" or self.skipped_transition is not None
        )
        if rate > 0 and not chosen:
            raise ValueError(
                "no anomaly kind to inject: 'forbidden_transition' needs a skipped_transition"
                if kinds else "anomaly_rate > 0 needs at least one anomaly kind"
            )
        return chosen

    def _take(self, n: int, rate: float, kinds: tuple[str, ...]) -> list[_Out]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        out = self._pending
        self._pending = []
        step = self._step
        while len(out) < n:
            out.extend(step(rate, kinds))
        if len(out) > n:
            self._pending = out[n:]
            del out[n:]
        return out

    def _step(self, rate: float, kinds: tuple[str, ...]) -> list[_Out]:
        """One turn: a normal burst, or an injected anomaly."""
        rng = self._rng
        debt = self._debt
        # Owed anomaly lines accrue per emitted line; paying them off at random
        # times keeps the long-run rate exact without fixed spacing.
        if rate > 0.0 and debt > 0.0 and (debt >= 1.0 or rng.random() < debt):
            kind = kinds[int(rng.random() * len(kinds))]
            out = self._anomaly(kind)
            self._debt = debt - 1.0 + rate * len(out)
            return out
        out = self._normal_burst()
        if rate > 0.0:
            self._debt = debt + rate * len(out)
        return out

    def _choose_source(self) -> str:
        names, cum = self._next_choice[self._last_source]
        return self._rng.choices(names, cum_weights=cum)[0]

    def _normal_burst(self, source: str | None = None, first_kind: str = NORMAL) -> list[_Out]:
        """A burst of `source` (default: chosen at random), stamped; `first_kind` labels line 1."""
        if source is None:
            source = self._choose_source()
        self._last_source = source
        raw = self._sources[source].burst()
        clock = self._clock
        r = self._rng.random
        # Bursts are seconds apart; lines within one are milliseconds apart.
        clock.seconds += r() * r() * 6.0
        prefix = self._host_prefix
        out: list[_Out] = []
        kind = first_kind
        for prog, template, message in raw:
            clock.seconds += r() * 0.05
            out.append((clock.stamp() + prefix + prog + ": " + message, source, kind, template))
            kind = NORMAL
        return out

    def _anomaly(self, kind: str) -> list[_Out]:
        if kind == "forbidden_transition":
            assert self.skipped_transition is not None
            first, second = self.skipped_transition
            out = [] if self._last_source == first else self._normal_burst(first)
            out += self._normal_burst(second, first_kind="forbidden_transition")
            return out
        self._clock.seconds += self._rng.random() * 3.0
        if kind == "unseen_type":
            return [self._unseen()]
        return [self._malformed()]

    def _header(self, prog: str) -> str:
        return self._clock.stamp() + self._host_prefix + prog + ": "

    def _unseen(self) -> _Out:
        rng = self._rng
        r = rng.random
        w = self._world
        template, prog, message = _UNSEEN[int(r() * len(_UNSEEN))]
        proc = _PROCESSES[int(r() * len(_PROCESSES))]
        fields = {
            "dev": _DEVICES[int(r() * len(_DEVICES))],
            "name": _INTRUDER_NAMES[int(r() * len(_INTRUDER_NAMES))],
            "new": _NEW_ACCOUNTS[int(r() * len(_NEW_ACCOUNTS))],
            "tty": int(r() * 4),
            "gid": 1001 + int(r() * 30),
            "pid": w.next_pid(),
            "proc": proc,
            "vm": 2_000_000 + int(r() * 6_000_000),
            "rss": 1_500_000 + int(r() * 4_000_000),
            "uid": (33, 0, 1000, 999)[int(r() * 4)],
            "pgtables": 4000 + int(r() * 9000),
            "addr": f"{rng.getrandbits(24) << 4:x}",
            "ip": f"7f{rng.getrandbits(36):09x}",
            "sp": f"7ff{rng.getrandbits(36):09x}",
            "err": (4, 6, 14, 15)[int(r() * 4)],
            "lib": _LIBS[int(r() * len(_LIBS))],
            "base": f"7f{rng.getrandbits(24):06x}000",
            "size": f"{rng.getrandbits(20):x}000",
            "src": w.scanner_ip(),
            "port": w.ephemeral_port(),
            "inode": int(r() * 2_000_000),
            "unit": _KILLED_UNITS[int(r() * len(_KILLED_UNITS))],
        }
        text = self._header(prog.format_map(fields)) + message.format_map(fields)
        return (text, ANOMALY_SOURCE, "unseen_type", template)

    def _malformed(self) -> _Out:
        rng = self._rng
        r = rng.random
        x = r()
        prog = ("sshd", "CRON", "systemd", "kernel")[int(r() * 4)]
        if prog != "kernel":
            prog = f"{prog}[{self._world.next_pid()}]"
        if x < 0.2:
            # A header, then binary junk (e.g. a crashed writer's buffer), invalid UTF-8 replaced.
            junk = bytes(rng.choices(_JUNK_BYTES, k=8 + int(r() * 120)))
            text = self._header(prog) + junk.decode("utf-8", "replace")
            template = "malformed.binary_message"
        elif x < 0.4:
            # No header at all: random bytes as latin-1 (NULs from a torn write included).
            text = bytes(rng.choices(_JUNK_BYTES, k=16 + int(r() * 200))).decode("latin-1")
            template = "malformed.random_bytes"
        elif x < 0.6:
            text = self._header(prog)
            template = "malformed.empty_message"
        elif x < 0.8:
            char = "A=#x.-0"[int(r() * 7)]
            text = self._header(prog) + char * (10_240 + int(r() * 256))
            template = "malformed.long_line"
        else:
            # A line cut short inside the header or early message (a torn write).
            text = (self._header(prog) + "pam_unix(sshd:session): session opened for user")[: 5 + int(r() * 30)]
            template = "malformed.truncated"
        return (text, ANOMALY_SOURCE, "malformed", template)


# --------------------------------------------------------------------------
# Files and command line


def write_log(path: str | os.PathLike[str], lines: Iterable[str | GeneratedLine]) -> None:
    """Write lines to `path`, one per line, UTF-8 (surrogate escapes written back as bytes)."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        for line in lines:
            f.write(line.text if isinstance(line, GeneratedLine) else line)
            f.write("\n")


def _parse_pair(text: str) -> tuple[str, str] | None:
    if text.lower() == "none":
        return None
    parts = tuple(p.strip() for p in text.split(","))
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two sources like 'cron,sshd' or 'none', got {text!r}")
    return parts  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lograven.generator``: synthetic syslog lines to stdout, labels to a CSV."""
    parser = argparse.ArgumentParser(
        prog="python -m lograven.generator",
        description="Write synthetic RFC 3164 syslog lines to stdout.",
    )
    parser.add_argument("--lines", type=int, default=1000, help="number of lines (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--anomaly-rate", type=float, default=0.0, help="fraction of anomalous lines, 0..1")
    parser.add_argument(
        "--kinds", default=",".join(ANOMALY_KINDS),
        help=f"comma-separated anomaly kinds (default: all of {','.join(ANOMALY_KINDS)})",
    )
    parser.add_argument("--labels", metavar="FILE", help="write 'line_no,kind' CSV (1-based, every line)")
    parser.add_argument("--host", default="web01", help="host name in the header (default web01)")
    parser.add_argument(
        "--start", type=datetime.fromisoformat,
        help=f"ISO time of the first line (default {DEFAULT_START.isoformat()})",
    )
    parser.add_argument(
        "--skipped-transition", type=_parse_pair, default=DEFAULT_SKIPPED_TRANSITION,
        metavar="A,B", help="source pair that never follows directly, or 'none' (default cron,sshd)",
    )
    args = parser.parse_args(argv)
    if args.lines < 0:
        parser.error("--lines must be >= 0")
    kinds = tuple(k for k in args.kinds.split(",") if k)
    try:
        gen = LogGenerator(args.seed, args.host, args.start, args.skipped_transition)
        gen._check_anomalies(args.anomaly_rate, kinds)
    except ValueError as exc:
        parser.error(str(exc))

    out = sys.stdout.buffer
    labels_file = open(args.labels, "w", newline="", encoding="utf-8") if args.labels else None
    try:
        writer = csv.writer(labels_file) if labels_file is not None else None
        if writer is not None:
            writer.writerow(("line_no", "kind"))
        done = 0
        while done < args.lines:
            chunk = gen.generate(min(8192, args.lines - done), args.anomaly_rate, kinds)
            out.write("".join([g.text + "\n" for g in chunk]).encode("utf-8", "surrogateescape"))
            if writer is not None:
                writer.writerows((done + i, g.kind) for i, g in enumerate(chunk, 1))
            done += len(chunk)
        out.flush()
    except BrokenPipeError:
        # `| head`: the reader is gone; silence the flush at interpreter exit too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if labels_file is not None:
            labels_file.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
