"""Configuration loading, validation and the generated reference docs."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml

from lograven import config as cfg
from lograven.config import Config, ConfigError, load_config, parse_config
from lograven.errors import LogravenError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(data: object) -> list[str]:
    """The error lines parse_config reports for `data` (YAML text or an already-loaded object)."""
    if isinstance(data, str):
        data = yaml.safe_load(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems)
    return lines


# --- defaults and the example file ---

def test_defaults() -> None:
    c = Config()
    assert [s.paths for s in c.sources] == [("/var/log/messages", "/var/log/syslog")]
    source = c.sources[0]
    assert (source.format, source.stream, source.start_position) == ("syslog", "file", "end")
    assert c.model is None and c.learn_mode
    assert c.state_dir == "/var/lib/lograven"
    assert c.detectors.sequence.threshold == 0.02 and c.detectors.sequence.top_k == 9
    assert c.detectors.sequence.rule == "relative" and c.detectors.sequence.relative_threshold == 0.1
    assert c.detectors.autoencoder.quantile == 0.999 and c.detectors.autoencoder.margin == 1.0
    assert c.alerts.syslog.facility == "user" and c.alerts.syslog.severity == "warning"
    assert c.alerts.stdout.enabled is False and c.alerts.dedup_window_seconds == 300
    assert c.metrics.address == ("127.0.0.1", 9077)
    assert c.runtime.batch_size == 256 and c.runtime.queue_size == 10000
    assert c.training.msgtypes.extra_masks == ()
    assert c.training.autoencoder.vocab_size == 512


@pytest.mark.parametrize("text", ["", "# only comments\n", "---\n", "detectors:\n  # sequence: {}\n"])
def test_empty_file_or_section_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text)) == Config()


def test_config_is_immutable_and_round_trips_through_to_dict() -> None:
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.state_dir = "/tmp"  # type: ignore[misc]
    plain = c.to_dict()
    assert plain["sources"][0]["paths"] == ["/var/log/messages", "/var/log/syslog"]
    assert plain["detectors"]["sequence"]["threshold"] == 0.02
    assert parse_config(plain) == c
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain


def test_example_file_loads_and_equals_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_example_file_and_docs_are_generated_from_the_schema() -> None:
    hint = "regenerate with: python -m lograven.config --example > config.example.yaml"
    assert EXAMPLE.read_text(encoding="utf-8") == cfg.render_example_yaml(), hint
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert docs == cfg.render_reference_markdown(), (
        "regenerate with: python -m lograven.config --markdown > docs/configuration.md")


def _present(node: object, parts: list[str]) -> bool:
    """Whether the dotted key `parts` (``name[]`` = every entry of a list) exists in `node`."""
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if not isinstance(node, dict):
        return False
    if head.endswith("[]"):
        entries = node.get(head[:-2])
        return bool(entries) and all(_present(e, rest) for e in entries)
    return head in node and _present(node[head], rest)


def test_every_option_appears_in_the_example_file() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    options = list(cfg.iter_options())
    assert len({o.key for o in options}) == len(options) > 50
    for option in options:
        assert option.help, f"{option.key} has no help text"
        assert option.key in cfg.render_reference_markdown()
        if _present(loaded, option.key.split(".")):
            continue
        # Fields of list entries whose default is an empty list (extra_masks) cannot be keys
        # of the loaded file; they must then be documented in the comments above the list.
        parent, _, leaf = option.key.rpartition("[].")
        assert _present(loaded, parent.split(".")) and not _present(loaded, option.key.split(".")[:-1])
        assert re.search(rf"^\s*#\s+-?\s*{leaf}:", text, re.M), f"{option.key} missing from the example"


def test_iter_options_describes_types_defaults_and_ranges() -> None:
    options = {o.key: o for o in cfg.iter_options()}
    threshold = options["detectors.sequence.threshold"]
    assert (threshold.type_name, threshold.default, threshold.valid) == ("float", 0.02, "(0, 1)")
    assert options["detectors.sequence.top_k"].type_name == "int"
    assert options["sources[].paths"].required
    assert options["runtime.batch_size"].valid == "[1, 65536]"
    assert "local7" in options["alerts.syslog.facility"].valid
    assert "detectors" not in options  # sections are not options; their contents are


def test_markdown_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert cfg.main(["--markdown"]) == 0
    assert capsys.readouterr().out == cfg.render_reference_markdown()


def test_check_entry_point_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cfg.main(["--check", str(write(tmp_path, "runtime: {threads: 0}\n"))]) == 1
    assert "runtime.threads: must be an integer in [1, 64], got 0" in capsys.readouterr().err


# --- strict validation ---

def test_unknown_key_suggests_the_closest_valid_key() -> None:
    (line,) = problems("detectors:\n  sequence:\n    treshold: 0.1\n")
    assert line == "cfg.yaml: detectors.sequence.treshold: unknown key; did you mean 'threshold'?"


def test_key_in_the_wrong_section_points_to_where_it_belongs() -> None:
    assert problems({"threshold": 0.1}) == [
        "cfg.yaml: threshold: unknown key here; did you mean 'detectors.sequence.threshold'?"]
    (line,) = problems({"sequence": {}})
    assert "'detectors.sequence' or 'training.sequence'" in line


def test_unknown_key_without_a_close_match_lists_the_valid_keys() -> None:
    (line,) = problems({"metrics": {"zzzz": 1}})
    assert line == "cfg.yaml: metrics.zzzz: unknown key; valid keys here: enabled, listen"


@pytest.mark.parametrize(("data", "expected"), [
    ({"detectors": {"sequence": {"enabled": 1}}},
     "detectors.sequence.enabled: must be true or false, got 1 (an integer); write true or false"),
    ({"runtime": {"batch_size": True}}, "runtime.batch_size: must be an integer, got true (a boolean)"),
    ({"runtime": {"batch_size": 256.0}},
     "runtime.batch_size: must be an integer, got 256.0 (a number); drop the decimal point"),
    ({"runtime": {"batch_size": "256"}},
     "runtime.batch_size: must be an integer, got '256' (a string); remove the quotes"),
    ({"sources": [{"paths": "/var/log/messages"}]},
     'sources[0].paths: must be a list of strings, got \'/var/log/messages\' (a string); '
     'write a list, e.g. ["/var/log/messages"]'),
    ({"sources": [{"paths": ["/a", 3]}]}, "sources[0].paths[1]: must be a string, got 3 (an integer)"),
    # the fixes of the last four came with an admin review (2026-12-07): the messages gave none
    ({"sources": {"paths": ["/a"]}}, "sources: must be a list of mappings, got a mapping; start each entry with '- '"),
    ({"sources": None}, "sources: must be a list of mappings, got null (an empty value); give a value, or delete "
                        "the line to use the default"),
    ({"state_dir": None}, "state_dir: must be a string, got null (an empty value); give a value, or delete"),
    # a required key: deleting its line would only make it missing (review of the hint above)
    ({"sources": [{"paths": None}]}, "sources[0].paths: must be a list of strings, got null (an empty value); give a "
                                     "value (Files to tail"),
    ({"alerts": {"dedup_window_seconds": "5m"}}, "alerts.dedup_window_seconds: must be an integer, got '5m' (a "
                                                 "string); write a number of seconds, without a unit: 300 for 5m"),
    ({"learn": {"max_lines": "5m"}}, "learn.max_lines: must be an integer, got '5m' (a string)"),
    ({"alerts": {"syslog": {"tag": True}}}, "alerts.syslog.tag: must be a string, got true (a boolean)"),
    ({"model": 5}, "model: must be a string or null, got 5 (an integer); put it in quotes"),
    ({"detectors": {"sequence": {"top_k": 2.5}}}, "detectors.sequence.top_k: must be an integer"),
    ({"detectors": {"sequence": {"rule": "seed"}}}, "detectors.sequence.rule"),
    ({"detectors": ["sequence"]}, "detectors: must be a mapping of options"),
    ({"detectors": {"autoencoder": {"margin": float("nan")}}},
     "detectors.autoencoder.margin: must be a finite number"),
])
def test_wrong_types_are_rejected(data: dict, expected: str) -> None:
    (line,) = problems(data)
    assert line.startswith(f"cfg.yaml: {expected}")


def test_floats_accept_ints_and_optionals_accept_null() -> None:
    c = parse_config({"detectors": {"autoencoder": {"margin": 2}, "sequence": {"top_k": 3}},
                      "runtime": {"poll_interval_seconds": 3}})
    assert c.detectors.autoencoder.margin == 2.0 and isinstance(c.detectors.autoencoder.margin, float)
    assert c.runtime.poll_interval_seconds == 3.0 and c.detectors.sequence.top_k == 3


@pytest.mark.parametrize(("data", "expected"), [
    ({"detectors": {"sequence": {"threshold": 1.5}}},
     "detectors.sequence.threshold: must be a number in (0, 1), got 1.5"),
    ({"detectors": {"sequence": {"threshold": 0}}},
     "detectors.sequence.threshold: must be a number in (0, 1), got 0.0"),
    ({"detectors": {"sequence": {"top_k": 0}}}, "detectors.sequence.top_k: must be an integer >= 1, got 0"),
    ({"detectors": {"autoencoder": {"quantile": 1}}},
     "detectors.autoencoder.quantile: must be a number in [0.5, 1), got 1.0"),
    ({"detectors": {"autoencoder": {"margin": 0}}},
     "detectors.autoencoder.margin: must be a number > 0, got 0.0"),
    ({"runtime": {"batch_size": 70000}}, "runtime.batch_size: must be an integer in [1, 65536], got 70000"),
    ({"runtime": {"max_line_bytes": 100}},
     "runtime.max_line_bytes: must be an integer in [256, 16777216], got 100"),
    ({"alerts": {"dedup_window_seconds": -1}},
     "alerts.dedup_window_seconds: must be an integer >= 0, got -1"),
    ({"alerts": {"syslog": {"facility": "locl0"}}}, "alerts.syslog.facility: must be one of user, mail"),
    ({"alerts": {"syslog": {"facility": "kern"}}}, "alerts.syslog.facility: must be one of user, mail"),
    ({"alerts": {"syslog": {"severity": "warn"}}}, "alerts.syslog.severity: must be one of emerg"),
    ({"alerts": {"syslog": {"tag": "my tag"}}}, "alerts.syslog.tag: must be 1-32 letters, digits"),
    ({"alerts": {"syslog": {"tag": "lograven/x"}}}, "alerts.syslog.tag: must be 1-32 letters, digits"),
    ({"alerts": {"syslog": {"tag": "a@b"}}}, "alerts.syslog.tag: must be 1-32 letters, digits"),
    ({"alerts": {"stdout": {"format": "xml"}}}, "alerts.stdout.format: must be one of human or json"),
    ({"sources": [{"paths": ["/a"], "start_position": "begining"}]},
     "sources[0].start_position: must be one of end or beginning, got 'begining' (a string); "
     "did you mean 'beginning'?"),
    ({"sources": [{"paths": []}]}, "sources[0].paths: must list at least one file or glob"),
    ({"sources": [{"format": "raw"}]}, "sources[0].paths: is required; add it"),
    ({"sources": []}, "sources: must list at least one source"),
    ({"state_dir": ""}, "state_dir: must not be empty"),
    ({"training": {"validation_fraction": 0.5}},
     "training.validation_fraction: must be a number in (0, 0.5), got 0.5"),
    ({"training": {"msgtypes": {"svd_variance": 1.01}}},
     "training.msgtypes.svd_variance: must be a number in (0, 1]"),
    ({"training": {"msgtypes": {"variable_min_distinct": 1}}},
     "training.msgtypes.variable_min_distinct: must be an integer >= 2, got 1"),
    ({"training": {"autoencoder": {"vocab_size": 99}}},
     "training.autoencoder.vocab_size: must be an integer >= 100"),
    ({"training": {"autoencoder": {"max_length": 65}}},
     "training.autoencoder.max_length: must be <= max_length_cap (64), got 65"),
    ({"training": {"msgtypes": {"extra_masks": [{"name": "X", "pattern": "a*"}]}}},
     "training.msgtypes.extra_masks[0].pattern: the pattern matches the empty string"),
    ({"training": {"msgtypes": {"extra_masks": [{"name": "X", "pattern": "a"},
                                                {"name": "X", "pattern": "b"}]}}},
     "training.msgtypes.extra_masks: mask names must be unique, repeated: X"),
    ({"learn": {"min_lines": 1000, "max_lines": 500}}, "learn.min_lines: must be <= learn.max_lines (500)"),
])
def test_impossible_values_are_rejected(data: dict, expected: str) -> None:
    (line,) = problems(data)
    assert line.startswith(f"cfg.yaml: {expected}")


def test_all_problems_are_reported_at_once_one_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "detectors:\n"
        "  sequence: {threshold: 1.5, enabled: 1}\n"
        "alerts:\n"
        "  syslog: {facility: nope}\n"
        "runtime: {treads: 2}\n"
        "metrics: {listen: '::1:9077'}\n"))
    with pytest.raises(LogravenError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "detectors.sequence.threshold", "detectors.sequence.enabled", "alerts.syslog.facility",
        "runtime.treads", "metrics.listen"]
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "did you mean 'threads'?" in lines[3]


# --- source formats and streams ---

def test_regex_format_and_stream_are_accepted_and_compiled() -> None:
    c = parse_config({"sources": [{
        "paths": ["/var/log/hdfs/*.log"],
        "format": r"regex:^(?P<timestamp>\S+ \S+) (?P<program>\w+): (?P<message>.*)$",
        "stream": r"regex:(blk_-?\d+)"}]})
    source = c.sources[0]
    assert source.format_regex is not None and source.format_regex.match("d t prog: hi")["message"] == "hi"
    assert source.stream_regex is not None and source.stream_regex.search("x blk_-12 y")[1] == "blk_-12"
    assert Config().sources[0].format_regex is None and Config().sources[0].stream_regex is None


@pytest.mark.parametrize(("source", "expected"), [
    ({"format": "regex:(?P<message>.*"},
     "sources[0].format: the regex does not compile (missing ), unterminated subpattern"),
    ({"format": "regex:^(?P<msg>.*)$"},
     "sources[0].format: the regex needs a named group (?P<message>...) capturing the message "
     "(it has msg)"),
    ({"format": "sylog"},
     "sources[0].format: must be one of syslog, iso, raw or regex:<pattern>, got 'sylog' "
     "(a string); did you mean 'syslog'?"),
    ({"stream": "regex:blk_\\d+"}, "sources[0].stream: the regex needs a capture group"),
    ({"stream": "regex:[a-"}, "sources[0].stream: the regex does not compile"),
    ({"stream": "programme"},
     "sources[0].stream: must be one of file, program or regex:<pattern>, got 'programme' "
     "(a string); did you mean 'program'?"),
])
def test_bad_formats_and_streams_are_rejected(source: dict, expected: str) -> None:
    (line,) = problems({"sources": [{"paths": ["/var/log/messages"], **source}]})
    assert line.startswith(f"cfg.yaml: {expected}")


# --- files ---

def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "detectors:\n  sequence:\n    threshold: 0.1: 2\n")
    with pytest.raises(LogravenError, match=rf"^{re.escape(str(path))}: line 3, column 19: invalid YAML: "):
        load_config(path)


def test_yaml_tabs_and_double_quoted_regexes_get_specific_advice(tmp_path: Path) -> None:
    with pytest.raises(LogravenError, match=r"line 2, column 1: .*indent with spaces"):
        load_config(write(tmp_path, "detectors:\n\tsequence: {}\n"))
    with pytest.raises(LogravenError, match=r"line 2, column .*single-quote"):
        load_config(write(tmp_path, 'sources:\n  - {paths: [/a], stream: "regex:(\\d+)"}\n'))


def test_a_key_given_twice_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys: a second `alerts:` section would silently drop the
    first one's settings. The loader names the key and both lines instead."""
    text = "alerts:\n  jsonl: {path: /srv/a.jsonl}\nmetrics: {enabled: false}\nalerts:\n  syslog: {enabled: false}\n"
    with pytest.raises(LogravenError, match=r"line 4, column 1: invalid YAML: key 'alerts' is given twice \(first at line 1\)"
                                            r".*keep one of them"):
        load_config(write(tmp_path, text))
    with pytest.raises(LogravenError, match=r"line 3, column 3: .*key 'path' is given twice \(first at line 2\)"):
        load_config(write(tmp_path, "alerts:\n  jsonl: {path: /a,\n  path: /b}\n"))
    # the same key in different mappings, and YAML merge keys, are fine
    cfg = load_config(write(tmp_path, (
        "detectors:\n  sequence: {enabled: true}\n  autoencoder: {enabled: true}\n"
        "alerts:\n  jsonl: &j {enabled: true, path: /srv/a.jsonl}\n  syslog: {enabled: true}\n")))
    assert cfg.alerts.jsonl.path == "/srv/a.jsonl"


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(LogravenError, match=rf"^{re.escape(str(path))}: no such file; create it"):
        load_config(path)


def test_directory_unreadable_and_binary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LogravenError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LogravenError, match="is not UTF-8 text"):
        load_config(binary)

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(cfg, "read_limited", denied)
    with pytest.raises(LogravenError, match=r"permission denied; make the file readable"):
        load_config(tmp_path / "config.yaml")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(LogravenError, match=rf"^{re.escape(str(path))}: the top level must be a mapping"):
        load_config(path)


# --- state directory ---

def test_state_directory_env_overrides_state_dir(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    c = parse_config({"state_dir": "/srv/lograven"})
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert c.effective_state_dir() == Path("/srv/lograven")
    assert c.allowlist_path() == Path("/srv/lograven/allowlist.json")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/lograven-a:/var/lib/lograven-b")
    with caplog.at_level("WARNING", logger="lograven.config"):
        assert c.effective_state_dir() == Path("/var/lib/lograven-a")
        assert c.models_dir() == Path("/var/lib/lograven-a/models")
        assert c.allowlist_path() == Path("/var/lib/lograven-a/allowlist.json")
    # the CLI tools (no unit environment) would use /srv/lograven: said once, with the fix
    [warned] = [r.getMessage() for r in caplog.records if "StateDirectory=" in r.getMessage()]
    assert "state_dir is /srv/lograven, but systemd's StateDirectory= gives /var/lib/lograven-a" in warned
    assert c.effective_state_dir({"STATE_DIRECTORY": ""}) == Path("/srv/lograven")
    explicit = parse_config({"alerts": {"allowlist": "/etc/lograven/allow.json"}})
    assert explicit.allowlist_path() == Path("/etc/lograven/allow.json")


def test_paths_expand_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/x` is the home directory's x, as in a shell, never a directory named `~` under the current one."""
    monkeypatch.setenv("HOME", "/home/ops")
    c = parse_config({"state_dir": "~/lograven", "alerts": {"jsonl": {"path": "~/a.jsonl"}, "allowlist": "~/allow.json"}})
    assert c.state_dir == "/home/ops/lograven" and c.alerts.jsonl.path == "/home/ops/a.jsonl"
    assert c.alerts.allowlist == "/home/ops/allow.json"


# --- metrics listen address ---

@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:9077", ("127.0.0.1", 9077)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("[::1]:9077", ("::1", 9077)),
    ("[::]:65535", ("::", 65535)),
    ("[fe80::1]:80", ("fe80::1", 80)),
    ("localhost:9077", ("localhost", 9077)),
    ("metrics.example.com:9077", ("metrics.example.com", 9077)),
    ("9123", ("127.0.0.1", 9123)),  # a bare port: loopback, as docs/metrics.md says (the config refused it)
])
def test_metrics_listen_valid(listen: str, address: tuple[str, int]) -> None:
    assert cfg.parse_listen(listen) == address
    assert parse_config({"metrics": {"listen": listen}}).metrics.address == address


@pytest.mark.parametrize(("listen", "reason"), [
    ("::1:9077", "put an IPv6 address in brackets"),
    ("[::1]9077", "expected ':<port>' after ']'"),
    ("[::1:9077", "missing ']'"),
    ("[nope]:9077", "'nope' is not an IPv6 address"),
    ("127.0.0.1", "missing ':<port>'"),
    (":9077", "missing host"),
    ("127.0.0.1:0", "port 0 is outside 1-65535"),
    ("127.0.0.1:65536", "port 65536 is outside 1-65535"),
    ("127.0.0.1:http", "port 'http' is not a number"),
    ("300.1.1.1:9077", "'300.1.1.1' is not an IPv4 address"),
    ("bad_host:9077", "'bad_host' is not a valid host name"),
    # pasted from metrics.md's http://<metrics.listen>/metrics (was "put an IPv6 address in brackets")
    ("http://127.0.0.1:9077", "drop the 'http://' scheme and any path: write host:port, e.g. 127.0.0.1:9077"),
    ("HTTPS://10.0.0.5:9077/metrics", "drop the 'HTTPS://' scheme and any path: write host:port, e.g. 10.0.0.5:9077"),
])
def test_metrics_listen_invalid(listen: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        cfg.parse_listen(listen)
    (line,) = problems({"metrics": {"listen": listen}})
    assert line.startswith(f"cfg.yaml: metrics.listen: {reason}") and "e.g. 127.0.0.1:9077" in line


def test_metrics_listen_must_be_a_string() -> None:
    (line,) = problems("metrics:\n  listen: 9077\n")
    assert line == "cfg.yaml: metrics.listen: must be a string, got 9077 (an integer); put it in quotes"


# --- cross-field checks ---

def test_queue_size_must_hold_a_batch() -> None:
    assert parse_config({"runtime": {"batch_size": 512, "queue_size": 512}}).runtime.queue_size == 512
    assert problems({"runtime": {"batch_size": 512, "queue_size": 100}}) == [
        "cfg.yaml: runtime.queue_size: must be >= runtime.batch_size (512), got 100; "
        "raise queue_size or lower batch_size"]
    # The default queue_size counts too.
    (line,) = problems({"runtime": {"batch_size": 20000}})
    assert "runtime.queue_size: must be >= runtime.batch_size (20000), got 10000" in line


# --- learn schedule ---

@pytest.mark.parametrize(("text", "seconds"), [
    ("10m", 600), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400),
    ("1.5h", 5400), ("2w", 1209600),
])
def test_schedule_durations(text: str, seconds: float) -> None:
    assert cfg.parse_duration(text) == seconds
    assert parse_config({"learn": {"schedule": text}}).learn.schedule_seconds == seconds


@pytest.mark.parametrize(("value", "expected"), [
    ("5m", "learn.schedule: must be at least 10m, got '5m'"),
    ("599s", "learn.schedule: must be at least 10m"),
    ("tomorrow", "learn.schedule: 'tomorrow' is not a duration; write a number with a unit"),
    ("24", "learn.schedule: '24' is not a duration"),
    (86400, "learn.schedule: must be a string or null, got 86400 (an integer); put it in quotes"),
])
def test_bad_schedules_are_rejected(value: object, expected: str) -> None:
    (line,) = problems({"learn": {"schedule": value}})
    assert line.startswith(f"cfg.yaml: {expected}")


def test_schedule_defaults_to_never() -> None:
    assert Config().learn.schedule is None and Config().learn.schedule_seconds is None


def test_extra_masks_parse_into_dataclasses() -> None:
    c = parse_config(yaml.safe_load(
        "training:\n  msgtypes:\n    extra_masks:\n      - {name: BLOCK, pattern: 'blk_-?\\d+'}\n"))
    (mask,) = c.training.msgtypes.extra_masks
    assert mask == cfg.MaskConfig(name="BLOCK", pattern=r"blk_-?\d+")


def test_scientific_notation_without_a_dot_is_a_number(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads `1e-5` as a string; the config loader reads it as YAML 1.2 does
    f = tmp_path / "c.yaml"
    f.write_text("detectors:\n  sequence:\n    false_alarm_rate: 2e-5\n    relative_threshold: 5E-2\n")
    c = load_config(f)
    assert c.detectors.sequence.false_alarm_rate == 2e-5 and c.detectors.sequence.relative_threshold == 0.05
    f.write_text("detectors:\n  sequence:\n    false_alarm_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"false_alarm_rate.*0\.001"):
        load_config(f)
    f.write_text("sources:\n  - paths: [/var/log/1e5, 1e5x]\n")  # strings that merely look numeric stay strings
    assert load_config(f).sources[0].paths == ("/var/log/1e5", "1e5x")


def test_check_accepts_exactly_the_syslog_settings_run_accepts() -> None:
    """`lograven check` must not pass a facility or tag that the syslog sink then refuses at start."""
    from lograven import alerts, config

    assert set(config.SYSLOG_FACILITIES) == set(alerts.SYSLOG_FACILITIES)
    assert set(config.SYSLOG_SEVERITIES) == set(alerts.SYSLOG_SEVERITIES)
    for tag in ("lograven", "log_raven.2-x", "x" * 32, "x" * 33, "a+b", "a/b", "a:b", "", "täg"):
        try:
            alerts.SyslogSink("/nonexistent", tag=tag)
            sink_ok = True
        except LogravenError:
            sink_ok = False
        assert (config._check_tag(tag) is None) == sink_ok, tag


def test_a_device_or_huge_file_as_config_is_refused_without_reading_it_all(tmp_path, monkeypatch) -> None:
    """`--config /dev/zero` was a MemoryError traceback (it reads forever)."""
    if os.path.exists("/dev/zero"):
        with pytest.raises(cfg.ConfigError, match=r"/dev/zero: is larger than 4 MiB, not a configuration"):
            cfg.load_config("/dev/zero")
    monkeypatch.setattr(cfg, "CONFIG_MAX_BYTES", 100)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 200 + "\n")
    with pytest.raises(cfg.ConfigError, match=r"big.yaml: is larger than 0 MiB"):
        cfg.load_config(big)


@pytest.mark.parametrize(("pattern", "refused"), [
    ("/srv/lr/*", True), ("/srv/lr/alerts.jsonl", True), ("/srv/*/*.jsonl*", True), ("/srv/lr/*.1", True),
    ("/srv/lr/*.log", False), ("/srv/*", False),  # `*` does not span directories, as glob's
    ("/srv/**", True), ("/srv/**/alerts.jsonl", True), ("/**/lr/*", True),  # but `**` does (recursive globs)
    ("/srv/**/*.log", False),
])  # fmt: skip
def test_a_source_over_lograven_s_own_alerts_file_is_refused(pattern: str, refused: bool) -> None:
    """Tailing alerts.jsonl (or a glob over its directory) read every alert back as a line that alerted
    again: 173 alerts in 8 s from one line, the syslog rate limit used up, and `check` said OK (review,
    2026-12-07). Its rotated copies (alerts.jsonl.1) count too; with the file disabled, nothing is refused."""
    data = {"sources": [{"paths": ["/var/log/messages"]}, {"paths": [pattern]}],
            "alerts": {"jsonl": {"path": "/srv/lr/alerts.jsonl"}}}
    if refused:
        with pytest.raises(ConfigError, match=r"sources\[1\]\.paths: .*matches lograven's own alerts file /srv/lr/alerts.jsonl"):
            parse_config(data)
    else:
        parse_config(data)
    parse_config({**data, "alerts": {"jsonl": {"path": "/srv/lr/alerts.jsonl", "enabled": False}}})


def test_a_config_nested_too_deeply_is_one_error(tmp_path) -> None:
    """5,000 nested `[`: a RecursionError traceback in check and run (re-verification, 2026-12-07)."""
    path = tmp_path / "deep.yaml"
    path.write_text("sources: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(cfg.ConfigError, match="nested too deeply to be a configuration"):
        cfg.load_config(path)


@pytest.mark.parametrize("data", [{"sources": [{"paths": ["/tmp/a\x00b"]}]}, {"state_dir": "/tmp/s\x00x"},
                                  {"alerts": {"jsonl": {"path": "/a\x00"}}}, {"model": "/m\x00"}])
def test_a_nul_byte_in_a_path_is_a_config_error_at_its_key(data) -> None:
    """Hostile-input review (2026-12-07): a NUL byte in `paths`, `state_dir` or `alerts.jsonl.path` passed
    validation and `check` and `run` died with `ValueError: embedded null byte`."""
    with pytest.raises(ConfigError, match=r"contains a NUL byte \(\\x00, at character \d+\): remove it") as e:
        parse_config(data)
    assert "\x00" not in str(e.value)
