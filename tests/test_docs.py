"""The documentation agrees with the code: links resolve, commands exist, configs validate.

Fast and in-process: `cli.main` for the help texts, `parse_config` for the YAML
snippets, one `lograven score` run for the documented verdict keys.
"""
from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from lograven import cli
from lograven.config import Config, parse_config
from lograven.generator import LogGenerator, write_log

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# pages written together with this test; other docs are checked for links from README only
OWN_DOCS = [ROOT / "docs" / n for n in ("operations.md", "training.md", "faq.md", "score.md")] + [ROOT / "models" / "README.md"]
CONFIG_KEYS = {f.name for f in dataclasses.fields(Config)}

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)  # also inside list items


def _subcommands() -> list[str]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def _local_links(md: Path) -> list[tuple[str, str]]:
    """(path, anchor) of each relative link in a Markdown file."""
    out = []
    for target in _LINK.findall(md.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        out.append((path, anchor))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = _FENCE.sub("", md.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _blocks(md: Path, *langs: str) -> list[str]:
    return [textwrap.dedent(body) for lang, body in _FENCE.findall(md.read_text(encoding="utf-8")) if lang in langs]


# ------------------------------------------------------------------- links
@pytest.mark.parametrize("md", [README, *OWN_DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_linked_files_exist(md: Path) -> None:
    links = _local_links(md)
    assert links, f"{md.name} links nothing?"
    missing = [p for p, _ in links if p and not (md.parent / p).exists()]
    assert not missing, f"{md.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("md", OWN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_anchors_exist(md: Path) -> None:
    bad = []
    for path, anchor in _local_links(md):
        target = (md.parent / path) if path else md
        if anchor and target.suffix == ".md" and target.exists() and anchor not in _anchors(target):
            bad.append(f"{path}#{anchor}")
    assert not bad, f"{md.relative_to(ROOT)}: no such heading for {bad}"


def test_files_named_in_operations_exist() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![/\w])(systemd/[\w.-]+|config\.example\.yaml|models/build\.sh)", text))
    assert "systemd/lograven.service" in named
    assert all((ROOT / n).exists() for n in named), sorted(n for n in named if not (ROOT / n).exists())


# ---------------------------------------------------------------- commands
def test_readme_commands_are_in_help(capsys) -> None:
    section = README.read_text(encoding="utf-8").split("## Command line", 1)[1]
    block = _FENCE.search(section).group(2)
    listed = sorted({m for m in re.findall(r"^lograven (\w+)", block, re.M)})
    assert len(listed) >= 6, listed
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for cmd in listed:
        assert re.search(rf"^\s+{cmd}\s", help_text, re.M), f"README lists `lograven {cmd}`, --help does not"


@pytest.mark.parametrize("cmd", _subcommands())
def test_subcommand_help_has_examples(cmd: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"lograven {cmd}" in out.split("examples:", 1)[1]


def test_commands_in_docs_exist() -> None:
    known = set(_subcommands())
    used: dict[str, set[str]] = {}
    for md in [README, *OWN_DOCS]:
        for body in _blocks(md, "sh", ""):
            # `lograven X` at the start of a command: line start, after sudo [-u user], a path, a pipe
            for cmd in re.findall(r"(?:^|sudo |-u lograven |/bin/|\| |&& |; )lograven ([a-z][\w-]*)", body, re.M):
                used.setdefault(cmd, set()).add(md.name)
    unknown = {c: sorted(f) for c, f in used.items() if c not in known}
    assert not unknown, f"documented commands that do not exist: {unknown}"
    assert {"run", "check", "score", "learn", "allow", "models"} <= set(used)


# ------------------------------------------------------------------ config
# top-level keys of the other programs' YAML the docs show (Vector, Prometheus)
FOREIGN_KEYS = {"sinks", "transforms", "scrape_configs", "rule_files", "groups", "global"}


def _lograven_configs(md: Path) -> list[tuple[int, object]]:
    """The YAML blocks that are lograven configs: every block without another program's keys."""
    out = []
    for n, body in enumerate(_blocks(md, "yaml")):
        data = yaml.safe_load(body)
        if not (isinstance(data, dict) and set(data) & FOREIGN_KEYS):
            out.append((n, data))
    return out


@pytest.mark.parametrize("md", OWN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_snippets_are_valid_configs(md: Path) -> None:
    for n, data in _lograven_configs(md):
        # a misspelt section (`metric:`) fails here too, naming the key
        parse_config(data, f"{md.name} yaml block {n}")


def test_operations_has_the_configs_it_promises() -> None:
    configs = [d for _, d in _lograven_configs(ROOT / "docs" / "operations.md")]
    assert len(configs) >= 4  # Debian, RHEL, omprog, shipper file
    assert all(set(d) <= CONFIG_KEYS for d in configs)
    assert any(str(d.get("model", "")).startswith("/var/lib/lograven-omprog") for d in configs), "no omprog config"


# ------------------------------------------------------------------ score
@pytest.mark.parametrize("md", OWN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_json_examples_parse(md: Path) -> None:
    for body in _blocks(md, "json"):
        json.loads(body)


def test_score_md_documents_every_output_key(tmp_path, capsys) -> None:
    log = tmp_path / "messages"
    write_log(log, LogGenerator(seed=5).lines(50))
    rc = cli.main(["score", "--model", str(ROOT / "models" / "default"), str(log)])
    out = capsys.readouterr().out
    assert rc == 0
    keys: set[str] = set()
    for line in out.splitlines():
        v = json.loads(line)
        keys |= set(v)
        for e in v["expected"]:
            keys |= {f"expected.{k}" for k in e}
    doc = (ROOT / "docs" / "score.md").read_text(encoding="utf-8")
    table_keys = set(re.findall(r"^\| `(\w+)` \|", doc, re.M))
    top = {k for k in keys if "." not in k}
    assert top <= table_keys, f"score.md does not document {sorted(top - table_keys)}"
    assert "`{type, p, template}`" in doc and {"expected.type", "expected.p", "expected.template"} == {k for k in keys if "." in k}


def test_alerts_md_example_has_exactly_the_keys_of_a_real_alert() -> None:
    """The example alert in docs/alerts.md and its key table follow `Alert.to_dict()`: no key missing,
    none invented (the example once lacked read_from and pattern)."""
    from lograven.alerts import Alert, DetectorHit

    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    example = json.loads(next(body for lang, body in _FENCE.findall(text) if lang == "json"))
    real = Alert("x1", "t", "h", "/f", 0, "s", "line", 3, "tpl", [DetectorHit("sequence", 0.1, 0.2, "p/p_train<0.1")],
                 [], "m1").to_dict()  # fmt: skip
    assert set(example) == set(real)
    assert set(example["detectors"][0]) == set(real["detectors"][0])
    table = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", text, re.M))
    documented = {k for pair in table for k in pair if k}
    assert set(real) <= documented, set(real) - documented


def test_the_documented_omprog_action_is_the_one_the_end_to_end_test_runs() -> None:
    """operations.md's rsyslog action (a queue with one worker, retries for ever, stderr captured) is what
    tests/test_omprog_e2e.py gives a real rsyslogd: each of its parameters is there, with its value
    (the binary, the output path and the timeout aside, which the test points at its own files)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = next(b for _, b in _FENCE.findall(text) if 'action(type="omprog"' in b)
    params = dict(re.findall(r'([\w.]+)="([^"]*)"', block.split('action(type="omprog"', 1)[1]))
    assert {"queue.workerThreads", "action.resumeRetryCount", "output", "confirmMessages"} <= set(params)
    e2e = (ROOT / "tests" / "test_omprog_e2e.py").read_text(encoding="utf-8")
    from test_omprog_e2e import FILTER, TEMPLATE

    assert TEMPLATE in block and FILTER in block  # one line per message; what the model was trained on
    for key, value in params.items():
        if key in ("binary", "output", "confirmTimeout"):
            assert f"{key}=" in e2e, key
        else:
            assert f'{key}="{value}"' in e2e, f'{key}="{value}" is documented but not tested'


def _alerts_for_recipes() -> list:
    from lograven.alerts import Alert, DetectorHit, Expected, iso_utc, new_alert_id

    def alert(line, type_id, template, program, detectors, expected=(), prev=None, file="/var/log/syslog"):
        return Alert(id=new_alert_id(), time=iso_utc(), host="web1", file=file, offset=120,
                     stream="/var/log/syslog", line=line, type_id=type_id, template=template, detectors=detectors,
                     expected=list(expected), model_version="v1", previous_type_id=prev, program=program)  # fmt: skip

    unknown = [DetectorHit("unknown_type", 1.0, 0.0, "no learned message type matches")]
    return [
        alert("Dec  6 10:00:00 web1 myapp[9]: @cee: {\"event\":\"login\",\"user\":\"bob\"}", -1, None, "myapp", unknown),
        alert("Dec  6 10:00:01 web1 ev\x1bcil\u009b2J[3]: \x1b[31mred\x1b[0m del\x7f cr\rend \u009b2J \u2028", -1, None,
              "ev\x1bcil\u009b2J", unknown, file="/var/log/\u009b2J\x1bc.log"),
        alert("2026-12-06T10:00:02+00:00 web1 sshd[12]: strange", -1, None, "sshd", unknown),
        alert("Dec  6 10:00:03 web1 cron[5]: \x1b]0;title\x07 ran", 4, "ran <*>", "cron",
              [DetectorHit("sequence", 0.001, 0.1, "p/p_train<0.1")], [Expected(3, "x", 0.5)], prev=3),
    ]


def test_operations_alert_recipes_run_on_real_alerts(tmp_path) -> None:
    """The shell recipes of "Reading alerts" give what they say on real alerts: a line that quotes an
    `@cee:` payload does not break the syslog one, control characters never reach the terminal, and
    unknown messages are counted per program whatever the line's header."""
    import shutil
    import subprocess

    from lograven.alerts import SyslogSink

    if not shutil.which("jq"):
        pytest.skip("jq is not installed (the recipes need it)")
    alerts = _alerts_for_recipes()
    a = tmp_path / "alerts.jsonl"
    a.write_text("".join(x.to_json() + "\n" for x in alerts), encoding="utf-8")
    sink = SyslogSink(str(tmp_path / "none"))
    syslog = tmp_path / "lograven-alerts.log"  # as rsyslog's RSYSLOG_FileFormat writes the datagrams
    syslog.write_bytes(b"".join(b"2026-12-06T10:00:05.000000+00:00 web1 " + sink.format(x).split(b"> ", 1)[-1]
                                .split(b" ", 3)[-1] + b"\n" for x in alerts))  # fmt: skip
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## Reading alerts"):text.index("## Metrics and Prometheus")]
    commands = [c for block in _FENCE.findall(section) if block[0] == "sh" for c in block[1].splitlines()
                if c.strip() and not c.startswith("#") and not c.startswith("A=")]  # fmt: skip
    joined, pending = [], ""
    for c in commands:  # a command continued on the next line (an open quote)
        pending = f"{pending}\n{c}" if pending else c
        if pending.count("'") % 2 == 0:
            joined.append(pending)
            pending = ""
    assert len(joined) >= 8, joined
    outputs = {}
    for cmd in joined:
        if cmd.startswith("journalctl"):
            continue
        run = cmd.replace("tail -F $A", "cat $A").replace("/var/log/lograven-alerts.log", str(syslog))
        p = subprocess.run(["bash", "-c", run], env={"A": str(a), "PATH": "/usr/bin:/bin"}, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
        assert p.returncode == 0 and not p.stderr, (cmd, p.stderr)
        outputs[cmd] = p.stdout
    follow = next(o for c, o in outputs.items() if c.startswith("tail -F"))
    assert len(follow.rstrip("\n").split("\n")) == 4 and "byte 120" in follow  # (U+2028 is no line end to a terminal)
    assert not any(ord(ch) < 32 and ch not in "\n\t" or 127 <= ord(ch) <= 159 for o in outputs.values() for ch in o)
    from_syslog = next(o for c, o in outputs.items() if c.startswith("sed"))
    assert len(from_syslog.splitlines()) == 4  # all four, the one quoting `@cee:` too
    per_program = next(o for c, o in outputs.items() if ".program" in c)
    assert sorted(per_program.split()) == sorted(["1", "myapp", "1", "ev?cil?2J", "1", "sshd"])
    # and the alerts themselves carry DEL, C1 controls and line separators escaped, not raw
    raw = a.read_text(encoding="utf-8") + syslog.read_text(encoding="utf-8", errors="replace")
    assert not any(127 <= ord(ch) <= 159 or ch in "\u2028\u2029" for ch in raw) and "\\u009b2J" in raw


def test_the_changelog_has_the_version_the_package_says() -> None:
    """An upgrade starts from CHANGELOG.md (operations.md): the running version must have its entry, and
    the package metadata and `lograven --version` must agree (every build said 0.1.0 for two weeks)."""
    import tomllib

    from lograven import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == __version__
    assert re.search(rf"^## {re.escape(__version__)} — \d{{4}}-\d\d-\d\d$", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
