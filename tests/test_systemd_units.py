"""The files under systemd/: the service unit verifies and is hardened, and its companions parse.

`systemd-analyze verify` insists that every Exec*= binary exists. Rather
than editing the unit, the test builds a scratch root (`--root`) holding the
unit byte for byte, executable stubs at the unit's own Exec paths, and the
host's system units (for sysinit.target and friends): the unit is verified
as shipped. CI installs the Debian `systemd` package; without it these
tests are skipped.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "lograven.service"
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian package: systemd)"
)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat; sections are ignored)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, val = line.partition("=")
        out.setdefault(key.strip(), []).append(val.strip())
    return out


def exec_paths(path: Path) -> list[str]:
    """The binaries the unit's Exec*= lines run."""
    paths = []
    for key, values in unit_settings(path).items():
        if key.startswith("Exec"):
            for v in values:
                if v:
                    paths.append(v.lstrip("@-:+!|").split()[0])
    return paths


def make_root(tmp_path: Path, unit_text: str) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/lograven.service").write_text(unit_text, encoding="utf-8")
    for src in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        dst = root / src.lstrip("/")
        if Path(src).is_dir() and not dst.exists():
            shutil.copytree(src, dst, symlinks=True)
    for exe in exec_paths(UNIT):
        assert exe.startswith("/"), f"{exe}: Exec paths in the shipped unit should be absolute"
        stub = root / exe.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def verify(root: Path) -> tuple[int, list[str]]:
    """Run systemd-analyze verify; return its exit code and the diagnostics about our unit."""
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", "lograven.service"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if "lograven" in line]


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    code, complaints = verify(make_root(tmp_path, UNIT.read_text(encoding="utf-8")))
    assert code == 0 and complaints == [], "\n".join(complaints)


@needs_analyze
def test_verify_harness_reports_mistakes(tmp_path: Path) -> None:
    """The harness above is only worth something if it catches a broken unit."""
    broken = UNIT.read_text(encoding="utf-8").replace("ProtectSystem=strict", "ProtectSystem=strictly\nFrobnicate=yes")
    _, complaints = verify(make_root(tmp_path, broken))
    assert any("Frobnicate" in c for c in complaints)
    assert any("strictly" in c for c in complaints)


@needs_analyze
def test_security_exposure_is_low(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    m = re.search(r"Overall exposure level for lograven\.service:\s*([0-9.]+)", output)
    assert m, output
    assert float(m.group(1)) <= MAX_EXPOSURE, output


def test_unit_has_the_agreed_settings() -> None:
    s = unit_settings(UNIT)
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/bin/lograven run --config /etc/lograven/config.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "User": "lograven",
        "Group": "lograven",
        "SupplementaryGroups": "adm",
        "StateDirectory": "lograven",
        "ConfigurationDirectory": "lograven",
        "LogsDirectory": "lograven",
        "ProtectSystem": "strict",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "InaccessiblePaths": "-/var/log/journal -/run/log/journal",  # group adm reads the journal on Debian
    }
    for key, val in expect.items():
        assert s.get(key) == [val], f"{key}={s.get(key)}"
    families = set(s["RestrictAddressFamilies"][0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}  # /dev/log + sd_notify, metrics
    assert "@system-service" in s["SystemCallFilter"]


def test_sysusers_file(tmp_path: Path) -> None:
    text = (SYSTEMD / "lograven.sysusers.conf").read_text(encoding="utf-8")
    entries = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert entries[0][:2] == ["u", "lograven"] and entries[0][-1] == "/var/lib/lograven"
    assert ["m", "lograven", "adm"] in entries
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nadm:x:4:\n")
    result = subprocess.run(
        [tool, f"--root={tmp_path}", "--dry-run", str(SYSTEMD / "lograven.sysusers.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Creating user 'lograven'" in out and "lograven.sysusers.conf:" not in out


def test_tmpfiles_file(tmp_path: Path) -> None:
    tool = shutil.which("systemd-tmpfiles")
    if tool is None:
        pytest.skip("systemd-tmpfiles is not installed")
    # Map lograven to the current user so creating with that owner needs no privileges.
    uid, gid = os.getuid(), os.getgid()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(f"root:x:0:0::/root:/bin/sh\nlograven:x:{uid}:{gid}::/var/lib/lograven:/bin/false\n")
    (tmp_path / "etc/group").write_text(f"root:x:0:\nlograven:x:{gid}:\n")
    result = subprocess.run(
        [tool, f"--root={tmp_path}", "--create", str(SYSTEMD / "lograven.tmpfiles.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for d in ("var/lib/lograven", "var/lib/lograven/models", "var/log/lograven"):
        st = (tmp_path / d).stat()
        assert st.st_mode & 0o777 == 0o750 and st.st_uid == uid, d


def test_rsyslog_dropin_keeps_alerts_out_of_tailed_files() -> None:
    path = SYSTEMD / "rsyslog-lograven.conf"
    text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#"))
    block = re.search(r'if \$programname == "lograven" then \{(.*)\n\}', text, re.S)
    assert block, "the lograven rule block is missing"
    body = block.group(1)
    assert 'file="/var/log/lograven-alerts.log"' in body
    # never into the lograven user's own directory: rsyslog (root) would follow a symlink planted there
    assert "/var/log/lograven/" not in body
    assert re.search(r"^\s*stop\s*$", body, re.M), "without stop, alerts also land in /var/log/messages"


def test_rsyslog_accepts_the_dropin() -> None:
    rsyslogd = shutil.which("rsyslogd")
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed")
    path = SYSTEMD / "rsyslog-lograven.conf"
    result = subprocess.run([rsyslogd, "-N1", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_rsyslog_routes_alerts_out_of_the_general_log(tmp_path: Path) -> None:
    """End to end: SyslogSink -> rsyslogd with the drop-in -> alerts.log, never the catch-all file."""
    rsyslogd = shutil.which("rsyslogd")
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed")
    from lograven.alerts import Alert, DetectorHit, SyslogSink

    dropin = (SYSTEMD / "rsyslog-lograven.conf").read_text(encoding="utf-8")
    (tmp_path / "dropin.conf").write_text(dropin.replace("/var/log/lograven-", f"{tmp_path}/"), encoding="utf-8")
    sock = tmp_path / "dev-log"
    (tmp_path / "main.conf").write_text(
        f'global(workDirectory="{tmp_path}")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imuxsock" Socket="{sock}")\n'
        f'include(file="{tmp_path}/dropin.conf")\n'
        f'*.* action(type="omfile" file="{tmp_path}/messages")\n',  # stands in for /var/log/messages
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(tmp_path / "main.conf"), "-i", str(tmp_path / "pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert _wait_for(sock.is_socket), "rsyslogd did not create its socket"
        alert = Alert("a1", "2026-11-03T12:00:00.000Z", "web1", "/var/log/messages", 10, "/var/log/messages",
                      "ü" * 100_000, -1, None, [DetectorHit("unknown_type", 1.0, 0.0)], [], "m1")  # fmt: skip
        SyslogSink(str(sock)).emit([alert])
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        raw.connect(str(sock))
        raw.send(b"<14>Jun  9 06:06:20 lograven[5]: model loaded")  # the daemon's own diagnostics
        raw.send(b"<13>Jun  9 06:06:20 sshd[1]: Accepted publickey for alice")
        raw.close()
        messages = tmp_path / "messages"
        assert _wait_for(lambda: messages.exists() and b"sshd" in messages.read_bytes())
    finally:
        proc.terminate()  # flushes and closes every file
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    general = (tmp_path / "messages").read_text(encoding="utf-8")
    assert "lograven" not in general and "Accepted publickey" in general, out
    [line] = (tmp_path / "alerts.log").read_text(encoding="utf-8").splitlines()
    doc = json.loads(line.split("@cee: ", 1)[1])
    assert doc["id"] == "a1" and doc["truncated"] is True
    assert "model loaded" in (tmp_path / "daemon.log").read_text(encoding="utf-8")


def test_logrotate_file_rotates_what_it_names(tmp_path: Path) -> None:
    """The shipped logrotate file parses and rotates alerts.jsonl (as the file's own user, `su`) and the
    rsyslog copies; paths and users are moved into tmp_path and onto the user running the test."""
    import grp
    import pwd

    logrotate = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if logrotate is None:
        pytest.skip("logrotate is not installed")
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    conf = (SYSTEMD / "lograven.logrotate").read_text(encoding="utf-8")
    assert "su lograven lograven" in conf and "/var/log/lograven-alerts.log" in conf
    (tmp_path / "lograven").mkdir(mode=0o750)
    conf = (conf.replace("/var/log/lograven/", f"{tmp_path}/lograven/").replace("/var/log/lograven-", f"{tmp_path}/lograven-")
            .replace("lograven lograven", f"{user} {group}").replace("/usr/lib/rsyslog/rsyslog-rotate", "/bin/true")
            .replace("systemctl kill -s HUP rsyslog.service", "true"))  # fmt: skip
    (tmp_path / "lograven.conf").write_text(conf, encoding="utf-8")
    for p in ("lograven/alerts.jsonl", "lograven-alerts.log", "lograven-daemon.log"):
        (tmp_path / p).write_text("x\n")
    r = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"), str(tmp_path / "lograven.conf")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    for p in ("lograven/alerts.jsonl", "lograven-alerts.log", "lograven-daemon.log"):
        assert (tmp_path / f"{p}.1").exists(), p  # delaycompress: the newest rotation stays plain
    assert (tmp_path / "lograven/alerts.jsonl").stat().st_mode & 0o777 == 0o640  # `create`
