"""The synthetic syslog generator: determinism, format, structure, anomalies, CLI."""

from __future__ import annotations

import csv
import itertools
import random
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from lograven.generator import (
    ANOMALY_KINDS,
    NORMAL_TEMPLATES,
    SOURCES,
    UNSEEN_TEMPLATES,
    GeneratedLine,
    LogGenerator,
    _CRON_JOBS,
    _SUDO_COMMANDS,
    main,
    write_log,
)

RFC3164 = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [\w./-]+(\[\d+\])?: .+$")
# Header split: timestamp, host, program, pid, message.
HEADER = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([\w./-]+)(?:\[(\d+)\])?: (.*)$")
MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}

# Fields are single tokens unless listed here; commands are the known normal ones,
# so a template regex does not accept an anomaly merely by a free-text field.
_ANSIBLE = r"/bin/sh -c echo BECOME-SUCCESS-[a-z]{32} ; /usr/bin/python3 \S+"
_COMMANDS = "|".join([re.escape(c) for c in (*_SUDO_COMMANDS, *(j[2] for j in _CRON_JOBS))] + [_ANSIBLE])
FIELD_PATTERNS = {"command": f"(?:{_COMMANDS})", "description": ".+?", "df": "(?:DF )?"}


def template_regex(template: str) -> re.Pattern[str]:
    """An anchored regex for a str.format template."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        FIELD_PATTERNS.get(part, r"\S+") if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(pattern + r"\Z")


NORMAL_REGEXES = {tid: template_regex(t) for tid, t in NORMAL_TEMPLATES.items()}


def message(text: str) -> str:
    m = HEADER.match(text)
    assert m is not None, text
    return m.group(5)


def burst_sources(lines: list[GeneratedLine]) -> list[str]:
    """Sources of consecutive bursts (repeats of one source merged: they are not transitions)."""
    return [source for source, _ in itertools.groupby(line.source for line in lines)]


def transitions(lines: list[GeneratedLine]) -> Counter[tuple[str, str]]:
    runs = burst_sources(lines)
    return Counter(zip(runs, runs[1:]))


@pytest.fixture(scope="module")
def normal_50k() -> list[GeneratedLine]:
    return LogGenerator(seed=11).generate(50_000)


# -- determinism ------------------------------------------------------------


def test_same_seed_gives_same_lines() -> None:
    assert LogGenerator(seed=5).lines(5000) == LogGenerator(seed=5).lines(5000)
    a = LogGenerator(seed=5).generate(5000, anomaly_rate=0.05)
    assert a == LogGenerator(seed=5).generate(5000, anomaly_rate=0.05)
    assert LogGenerator(seed=5).lines(500) != LogGenerator(seed=6).lines(500)


def test_global_random_state_is_neither_used_nor_touched() -> None:
    random.seed(1)
    state = random.getstate()
    first = LogGenerator(seed=3).generate(3000, anomaly_rate=0.1)
    assert random.getstate() == state
    random.seed(2)
    assert LogGenerator(seed=3).generate(3000, anomaly_rate=0.1) == first


def test_successive_calls_continue_one_stream() -> None:
    whole = LogGenerator(seed=9).generate(3001, anomaly_rate=0.05)
    gen = LogGenerator(seed=9)
    parts = gen.generate(1000, 0.05) + gen.generate(1, 0.05) + gen.generate(2000, 0.05)
    assert parts == whole
    assert LogGenerator(seed=9).lines(100) == [g.text for g in itertools.islice(LogGenerator(seed=9), 100)]


# -- format -------------------------------------------------------------------


def test_normal_lines_are_rfc3164(normal_50k: list[GeneratedLine]) -> None:
    bad = [g.text for g in normal_50k if not RFC3164.match(g.text)]
    assert bad == []
    assert {g.kind for g in normal_50k} == {"normal"}
    assert {HEADER.match(g.text).group(2) for g in normal_50k} == {"web01"}  # type: ignore[union-attr]
    assert all(RFC3164.match(t) for t in LogGenerator(seed=1, host="db-2.example").lines(2000))


def test_timestamps_start_at_start_and_never_go_back() -> None:
    start = datetime(2024, 12, 31, 23, 50, 0)
    lines = LogGenerator(seed=4, start=start).lines(5000)
    assert lines[0].startswith("Dec 31 23:50:")
    times = []
    for text in lines:
        mon, day, hms = text[:15].split(None, 2)
        year = 2024 if mon == "Dec" else 2025
        h, m, s = map(int, hms.split(":"))
        times.append(datetime(year, MONTHS[mon], int(day), h, m, s))
    assert times == sorted(times)
    assert times[-1] > datetime(2025, 1, 1)  # crossed the new year, with a space-padded day
    assert any(t.startswith("Jan  1 ") for t in lines)


def test_every_normal_message_is_its_template(normal_50k: list[GeneratedLine]) -> None:
    seen: Counter[str] = Counter()
    for g in normal_50k:
        assert g.template.split(".")[0] == g.source
        assert NORMAL_REGEXES[g.template].match(message(g.text)), (g.template, g.text)
        seen[g.template] += 1
    assert set(seen) == set(NORMAL_TEMPLATES), set(NORMAL_TEMPLATES) - set(seen)
    assert {g.source for g in normal_50k} == set(SOURCES)


def test_template_inventory() -> None:
    assert 40 <= len(NORMAL_TEMPLATES) <= 60
    assert {tid.split(".")[0] for tid in NORMAL_TEMPLATES} == set(SOURCES)
    assert len(set(NORMAL_TEMPLATES.values())) == len(NORMAL_TEMPLATES)


# -- structure ---------------------------------------------------------------


def test_skipped_transition_never_occurs_in_normal_output(normal_50k: list[GeneratedLine]) -> None:
    counts = transitions(normal_50k)
    assert counts[("cron", "sshd")] == 0
    # The check has teeth: the reverse and the other transitions into sshd are common.
    assert counts[("sshd", "cron")] > 200
    assert counts[("systemd", "sshd")] > 200


def test_without_skipping_the_default_pair_is_common() -> None:
    counts = transitions(LogGenerator(seed=11, skipped_transition=None).generate(50_000))
    assert counts[("cron", "sshd")] > 0.02 * sum(counts.values())


def test_other_skipped_transition() -> None:
    counts = transitions(LogGenerator(seed=2, skipped_transition=("sudo", "kernel")).generate(30_000))
    assert counts[("sudo", "kernel")] == 0
    assert counts[("cron", "sshd")] > 0


def test_sources_have_sequential_structure(normal_50k: list[GeneratedLine]) -> None:
    """Logins precede their session lines and logouts; logind announces sessions before systemd."""
    last_template_by_pid: dict[str, str] = {}
    new_sessions: set[str] = set()
    for g in normal_50k:
        m = HEADER.match(g.text)
        assert m is not None
        prog, pid, msg = m.group(3), m.group(4), m.group(5)
        if prog == "sshd":
            before = last_template_by_pid.get(pid)
            if g.template == "sshd.session_opened":
                assert before in ("sshd.accepted_publickey", "sshd.accepted_password")
            elif g.template == "sshd.disconnected_user":
                assert before == "sshd.received_disconnect"
            elif g.template == "sshd.session_closed":
                assert before == "sshd.disconnected_user"
            last_template_by_pid[pid] = g.template
        elif g.template == "systemd.logind_new_session":
            new_sessions.add(msg.split()[2])
        elif g.template == "systemd.started_session":
            assert msg.split()[2] in new_sessions
    # Sessions opened by one sshd burst get closed by a later one.
    closed_after_open = [
        pid for pid, t in last_template_by_pid.items() if t == "sshd.session_closed"
    ]
    assert len(closed_after_open) > 100


def test_variable_fields_have_realistic_cardinality(normal_50k: list[GeneratedLine]) -> None:
    users, scanner_ips, login_pids, sessions = set(), set(), [], []
    for g in normal_50k:
        msg = message(g.text)
        if g.template == "sshd.accepted_publickey" or g.template == "sshd.accepted_password":
            users.add(msg.split()[3])
            login_pids.append(int(HEADER.match(g.text).group(4)))  # type: ignore[union-attr]
        elif g.template == "kernel.ufw_block_tcp":
            scanner_ips.add(re.search(r"SRC=(\S+)", msg).group(1))  # type: ignore[union-attr]
        elif g.template == "systemd.logind_new_session":
            sessions.append(int(msg.split()[2]))
    assert 15 <= len(users) <= 25
    assert len(scanner_ips) > 300
    assert login_pids == sorted(login_pids) and len(set(login_pids)) == len(login_pids)
    assert sessions == sorted(sessions) and len(set(sessions)) == len(sessions)


# -- anomalies ---------------------------------------------------------------


def test_forbidden_transitions_are_injected_and_labelled() -> None:
    lines = LogGenerator(seed=21).generate(20_000, anomaly_rate=0.01, kinds=("forbidden_transition",))
    labelled = [i for i, g in enumerate(lines) if g.kind == "forbidden_transition"]
    assert 100 <= len(labelled) <= 300
    for i in labelled:
        assert lines[i].source == "sshd" and lines[i].template.startswith("sshd.")
        assert lines[i - 1].source == "cron"  # the first line of an sshd burst right after cron
    # Every cron -> sshd adjacency in the output is a labelled one.
    adjacent = [
        i for i in range(1, len(lines)) if lines[i - 1].source == "cron" and lines[i].source == "sshd"
    ]
    assert adjacent == labelled
    assert {g.kind for g in lines} == {"normal", "forbidden_transition"}


def test_unseen_type_messages_never_appear_in_normal_output(normal_50k: list[GeneratedLine]) -> None:
    lines = LogGenerator(seed=8).generate(20_000, anomaly_rate=0.05, kinds=("unseen_type",))
    unseen = [g for g in lines if g.kind == "unseen_type"]
    assert 800 <= len(unseen) <= 1200
    assert {g.template for g in unseen} == set(UNSEEN_TEMPLATES)
    for g in unseen:
        assert g.source == "anomaly"
        assert RFC3164.match(g.text), g.text
        msg = message(g.text)
        matching = [tid for tid, rx in NORMAL_REGEXES.items() if rx.match(msg)]
        assert matching == [], (g.text, matching)
    # And so, as every normal message is an instance of a normal template:
    normal_messages = {message(g.text) for g in normal_50k}
    assert not normal_messages & {message(g.text) for g in unseen}
    for seed_example in ("/dev/sda1 out of diskspace", "unknown operand from system process"):
        assert seed_example not in normal_messages


def test_unseen_examples_follow_seed_000() -> None:
    lines = LogGenerator(seed=8).generate(20_000, 0.05, ("unseen_type",))
    texts = [g.text for g in lines if g.kind != "normal"]
    assert any(re.search(r" kernel: /dev/\w+ out of diskspace$", t) for t in texts)
    assert any(re.search(r" sshd: failed logon attempt by \w+\.$", t) for t in texts)
    groupadd = r" groupadd\[\d+\]: group added to /etc/group: name=\w+, GID=\d+$"
    assert any(re.search(groupadd, t) for t in texts)
    assert any(
        re.search(r" sudo: \w+ : TTY=pts/\d ; PWD=/home/\w+ ; USER=root ; COMMAND=/usr/sbin/adduser \w+$", t)
        for t in texts
    )


def test_malformed_lines(tmp_path: Path) -> None:
    lines = LogGenerator(seed=13).generate(10_000, anomaly_rate=0.05, kinds=("malformed",))
    bad = [g for g in lines if g.kind == "malformed"]
    by_template = {g.template: g.text for g in bad}
    assert set(by_template) == {
        "malformed.binary_message", "malformed.random_bytes", "malformed.empty_message",
        "malformed.long_line", "malformed.truncated",
    }
    for g in bad:
        assert len(g.text.splitlines()) <= 1, repr(g.text)  # never splits into two lines
    assert not RFC3164.match(by_template["malformed.empty_message"])
    assert not RFC3164.match(by_template["malformed.truncated"])
    assert len(by_template["malformed.long_line"]) > 10_000
    assert any(ord(c) < 32 or ord(c) > 126 for c in by_template["malformed.binary_message"][16:])

    path = tmp_path / "messages"
    write_log(path, [g.text for g in lines])
    back = path.read_text(encoding="utf-8").split("\n")
    assert back[:-1] == [g.text for g in lines] and back[-1] == ""


def test_anomaly_rate_and_kinds() -> None:
    lines = LogGenerator(seed=17).generate(50_000, anomaly_rate=0.01)
    kinds = Counter(g.kind for g in lines)
    assert set(kinds) == {"normal", *ANOMALY_KINDS}
    assert 400 <= sum(kinds.values()) - kinds["normal"] <= 600
    assert LogGenerator(seed=17).generate(5000, anomaly_rate=0.0) == LogGenerator(seed=17).generate(5000)


def test_iteration_follows_the_anomaly_rate_attribute() -> None:
    gen = LogGenerator(seed=23)
    it = iter(gen)
    first = list(itertools.islice(it, 2000))
    assert {g.kind for g in first} == {"normal"}
    gen.anomaly_rate = 0.2
    gen.anomaly_kinds = ("unseen_type",)
    later = Counter(g.kind for g in itertools.islice(it, 2000))
    assert 250 <= later["unseen_type"] <= 550


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="skipped_transition"):
        LogGenerator(skipped_transition=("cron", "nginx"))
    with pytest.raises(ValueError, match="host"):
        LogGenerator(host="web 01")
    gen = LogGenerator(skipped_transition=None)
    with pytest.raises(ValueError, match="anomaly_rate"):
        gen.generate(10, anomaly_rate=1.5)
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        gen.generate(10, anomaly_rate=0.1, kinds=("typo",))
    with pytest.raises(ValueError, match="forbidden_transition"):
        gen.generate(10, anomaly_rate=0.1, kinds=("forbidden_transition",))
    # Without a skipped pair, the default kinds quietly leave forbidden transitions out.
    assert "forbidden_transition" not in {g.kind for g in gen.generate(5000, anomaly_rate=0.1)}


# -- command line ------------------------------------------------------------


def test_main_writes_lines_and_labels(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    labels = tmp_path / "labels.csv"
    argv = ["--lines", "3000", "--seed", "3", "--anomaly-rate", "0.05", "--labels", str(labels)]
    assert main(argv) == 0
    out = capsysbinary.readouterr().out.decode("utf-8").split("\n")
    expected = LogGenerator(seed=3).generate(3000, anomaly_rate=0.05)
    assert out[:-1] == [g.text for g in expected] and out[-1] == ""
    with labels.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line_no", "kind"]
    assert rows[1:] == [[str(i), g.kind] for i, g in enumerate(expected, 1)]


def test_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lograven.generator", "--lines", "50", "--seed", "1"],
        capture_output=True, check=True, timeout=60,
    )
    lines = result.stdout.decode("utf-8").splitlines()
    assert lines == LogGenerator(seed=1).lines(50)
