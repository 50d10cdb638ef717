"""Allowlisting without retraining: rules that suppress a known-legitimate alert pattern at once.

Rules live in one JSON file (`alerts.allowlist`, default `<state_dir>/allowlist.json`),
written atomically by `lograven allow`; the daemon re-reads it when it changes. A
suppressed alert is counted (`lograven_alerts_suppressed_total{reason="allowlist"}`),
never silently lost.

Every rule is validated when the file is loaded (`parse_rules`). A rule that is not valid (a
field of the wrong type, an unknown detector or field, an `expires` that is not a time, an entry
that is not an object) is kept in the file and in `Allowlist.rules` as an `InvalidRule`: it never
matches, the daemon logs it as an error naming the file, the rule and the fix, `lograven allow
--list` shows it with the reason, and every valid rule stays in force. An `expires` without a time
zone is read as UTC. Only a file that cannot be read as a whole (not JSON, another version, no
`rules` list) is refused: by the CLI (strict) with an error; by the daemon with an error log, keeping
the rules it had.
"""
from __future__ import annotations

import errno
import fnmatch
import glob
import json
import logging
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from lograven.alerts import END_RULE_PREFIX, RARE_RULE_SUFFIX, Alert

STREAM_END = "stream_end"  # a rule's `detector` that matches stream-end alerts (and only them)
from lograven.errors import LogravenError
from lograven.masking import HOST, REST, line_pattern
from lograven.osutil import keep_access, loads_json, read_regular, rotated_generations

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_DIGITS = re.compile(r"\d+")
DETECTORS = ("unknown_type", "sequence", "autoencoder")
RULE_DETECTORS = (*DETECTORS, STREAM_END)  # what a rule's `detector` may be
MATCH_FIELDS = ("file", "type_id", "from_type", "detector", "pattern", "shape")  # a rule sets at least one


@lru_cache(maxsize=1024)
def parse_time(text: str) -> datetime:
    """An ISO 8601 time, time-zone aware: one without a time zone is read as UTC. ValueError if it is none."""
    t = datetime.fromisoformat(text)
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def line_shape(line: str) -> str:
    """A line with its digits masked: how rules of earlier versions identify an unknown message
    (the `shape` field; new rules use `pattern`, see masking.line_pattern)."""
    return _DIGITS.sub("0", line[:512])


_GLOB_PARTS = re.compile(r"\[[^\]]*\]|[*?/]")


def matches_every_file(file_glob: str | None) -> bool:
    """Whether a rule's `file` is no narrowing: none, or a glob with nothing but wildcards and slashes
    (`*`, `/*`, `/**/*`), which fnmatch matches against every path (a review: `--file '*'` got round the
    refusal of a rule for every unknown message)."""
    return file_glob is None or not _GLOB_PARTS.sub("", file_glob)


@dataclass
class Rule:
    """Suppress alerts matching every field that is set."""

    id: str
    created: str
    expires: str | None = None
    comment: str = ""
    file: str | None = None  # glob on the alert's file
    type_id: int | None = None  # -1 = UNKNOWN
    from_type: int | None = None  # previous type in the stream (a transition)
    detector: str | None = None  # only when this detector fired (alone or with others); "stream_end": stream-end alerts
    shape: str | None = None  # digit-masked line (unknown messages; rules of earlier versions)
    pattern: str | None = None  # the line as message types mask it (unknown messages; masking.line_pattern)
    source_alert: str | None = None
    # the templates of type_id and from_type in the model the rule was made with: a model trained again
    # numbers its types otherwise, and the rule then applies only where the type still has that template
    # (before, a rule made for one message silently suppressed the alerts of another after a retrain)
    template: str | None = None
    from_template: str | None = None

    valid: ClassVar[bool] = True

    @property
    def too_broad(self) -> bool:
        """Every unknown message, every alert of a detector, or every alert, in every file (no `file`, or a
        glob that matches every path: `*`, `/**`): real anomalies included (`lograven allow` refuses to make
        such a rule; one may be in the file from before)."""
        if not matches_every_file(self.file) or self.shape is not None or self.pattern is not None:
            return False
        if self.type_id is None and self.from_type is None and self.detector is None:
            return self.file is not None  # `--file '*'` alone: every alert (a rule of no field is refused)
        return self.type_id == -1 or (self.type_id is None and self.from_type is None and self.detector is not None)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and parse_time(self.expires) <= now

    def renumbered(self, a: Alert) -> tuple[int, str, str] | None:
        """Where the alert's type (or previous type) has this rule's id but another template than when
        the rule was made (the model was trained again since, and that id is another message now):
        (type id, its template then, now); else None."""
        if self.template is not None and self.type_id not in (None, -1) and a.type_id == self.type_id \
                and a.template is not None and a.template != self.template:
            return self.type_id, self.template, a.template
        previous = getattr(a, "previous_template", None)
        if (self.from_template is not None and self.from_type is not None and previous is not None
                and getattr(a, "previous_type_id", None) == self.from_type and previous != self.from_template):
            return self.from_type, self.from_template, previous
        return None

    def matches(self, a: Alert) -> bool:
        return self.covers(a) and self.renumbered(a) is None

    def covers(self, a: Alert) -> bool:
        """Whether every field of the rule matches the alert, the types' templates aside."""
        if self.file is not None and not fnmatch.fnmatchcase(a.file, self.file):
            return False
        if self.type_id is not None and a.type_id != self.type_id:
            return False
        if self.from_type is not None and getattr(a, "previous_type_id", None) != self.from_type:
            return False
        if self.detector == STREAM_END:
            if not a.is_stream_end:
                return False
        elif self.detector is not None:
            if self.detector not in a.detector_names() or (self.detector == "sequence" and a.is_stream_end):
                return False
        if self.shape is not None and line_shape(a.line) != self.shape:
            return False
        if self.pattern is not None and a.line_pattern() != self.pattern and not self._legacy_pattern_matches(a):
            return False
        return True

    def _legacy_pattern_matches(self, a) -> bool:
        """A rule made before patterns masked the header's host name holds the host masked as a word
        (`web<N>`): the alert's pattern with its host put back so is compared (the rest of it is masked
        by the model's own masks, as the rule's was). Nothing to compare without <HOST> in it."""
        pattern = getattr(a, "pattern", None)
        if HOST in self.pattern or not pattern or HOST not in pattern or not getattr(a, "host", None):
            return False
        return pattern.replace(HOST, line_pattern(a.host), 1) == self.pattern

    def describe(self) -> str:
        parts = []
        if self.from_type is not None:
            parts.append(f"transition {self.from_type} -> {self.type_id}")
        elif self.type_id is not None:
            parts.append("unknown messages" if self.type_id == -1 else f"type {self.type_id}")
        if self.template is not None and self.type_id not in (None, -1):  # which message the number was
            parts[-1] += f" ({self.template[:60] + ('…' if len(self.template) > 60 else '')!r})"
        if self.pattern is not None or self.shape is not None:
            like = self.pattern or self.shape or ""
            if self.pattern and REST in self.pattern:  # a long line: its start, and the fingerprint of the rest
                like = like[:48] + " …" + like[like.rindex(REST):]
            parts.append(f"like {like[:90]!r}")
        if self.detector == STREAM_END:
            parts.append("stream ended after it")
        elif self.detector:
            parts.append(f"detector {self.detector}")
        if self.file:
            parts.append(f"file {self.file}")
        exp = f", expires {self.expires}" if self.expires else ""
        if self.expires and datetime.fromisoformat(self.expires).tzinfo is None:
            exp += " (no time zone: read as UTC)"
        note = f"  # {self.comment}" if self.comment else ""
        return f"{self.id}  {', '.join(parts) or 'everything'}{exp}{note}"


RULE_FIELDS = tuple(f.name for f in fields(Rule))
_LATER_FIELDS = ("pattern", "template", "from_template")  # saved only where set (see Allowlist.save)


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _short(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False) if isinstance(v, (str, int, float, list, dict, bool, type(None))) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _rule_problems(raw: dict) -> tuple[list[str], dict]:
    """What is wrong with one rule of the file (each naming the field and what to write), and its
    fields ready for Rule(**kw) when nothing is."""
    problems: list[str] = []
    kw: dict = {}
    for k in raw:
        if k not in RULE_FIELDS:
            problems.append(f"unknown field {_short(k)} (a typo? the fields are {', '.join(RULE_FIELDS)})")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid.strip():
        problems.append(f"id: {'missing' if rid is None else _short(rid)}; give the rule an id, a string such as \"r1a2b3c4\"")
    else:
        kw["id"] = rid
    for name in ("created", "comment"):  # informational; may be left out
        v = raw.get(name)
        if v is not None and not isinstance(v, str):
            problems.append(f"{name}: {_short(v)} is {_json_kind(v)}; write a string or leave it out")
        else:
            kw[name] = v or ""
    for name in ("file", "shape", "pattern", "source_alert", "template", "from_template"):
        v = raw.get(name)
        if v is not None and not isinstance(v, str):
            problems.append(f"{name}: {_short(v)} is {_json_kind(v)}; write a string or null")
        else:
            kw[name] = v
    for name in ("type_id", "from_type"):
        v = raw.get(name)
        if v is None:
            kw[name] = None
        elif isinstance(v, bool) or not isinstance(v, (int, float, str)):
            problems.append(f"{name}: {_short(v)} is {_json_kind(v)}; write a message type id, a whole number "
                            "(-1 for unknown messages; `lograven types` lists them), or null")
        elif isinstance(v, int) and v >= -1:
            kw[name] = v
        else:
            hint = ""
            try:
                n = float(v)
                if n.is_integer() and n >= -1:
                    hint = f" (write {int(n)}{', without quotes' if isinstance(v, str) else ''})"
            except (TypeError, ValueError, OverflowError):
                pass
            problems.append(f"{name}: {_short(v)} is not a message type id{hint}; write a whole number "
                            "(-1 for unknown messages; `lograven types` lists them), or null")
    v = raw.get("detector")
    if v is not None and (not isinstance(v, str) or v not in RULE_DETECTORS):
        problems.append(f"detector: {_short(v)} is not a detector; write one of {', '.join(RULE_DETECTORS)}, or null for any")
    else:
        kw["detector"] = v
    v = raw.get("expires")
    if v is not None:
        try:
            if not isinstance(v, str):
                raise TypeError
            parse_time(v)
            kw["expires"] = v
        except (TypeError, ValueError, OverflowError):
            problems.append(f"expires: {_short(v)} is not a time; write an ISO 8601 time such as "
                            "\"2030-01-01T00:00:00+00:00\" (without a time zone it is read as UTC), or null for never")
    else:
        kw["expires"] = None
    if all(raw.get(name) is None for name in MATCH_FIELDS):
        problems.append(f"sets none of {', '.join(MATCH_FIELDS)}: it would suppress every alert; "
                        "set what to allow (as `lograven allow --type/--file/--detector` does)")
    return problems, kw


@dataclass
class InvalidRule:
    """An entry of the rules file that is not a valid rule: kept in the file as written, never matching."""

    index: int  # its position in the file's `rules` list
    raw: Any  # the entry as the file has it (saved back unchanged)
    problems: list[str]

    valid: ClassVar[bool] = False

    @property
    def id(self) -> str | None:
        rid = self.raw.get("id") if isinstance(self.raw, dict) else None
        return rid if isinstance(rid, str) and rid.strip() else None

    def label(self) -> str:
        return f"rule {self.id!r} (rules[{self.index}])" if self.id else f"rules[{self.index}] (a rule without an id)"

    def fix(self, path: Path | str) -> str:
        if self.id:
            return f"correct it in {path}, or remove it: `lograven allow --remove {self.id} --allowlist {path}`"
        return f"correct or delete it in {path}"

    def reason(self) -> str:
        return "; ".join(self.problems)

    def expired(self, now: datetime) -> bool:
        return True

    def matches(self, a: Alert) -> bool:
        return False

    def describe(self) -> str:
        return f"{self.id or f'rules[{self.index}]'}  INVALID, ignored: {self.reason()}"


def parse_rule(raw: Any, index: int) -> Rule | InvalidRule:
    """One entry of the file's `rules` list, validated: a Rule that matching cannot fail on, or an InvalidRule."""
    if not isinstance(raw, dict):
        return InvalidRule(index, raw, [f"is {_json_kind(raw)} ({_short(raw)}), not a rule: an object such as "
                                        '{"id": "r1", "type_id": 33, "detector": "sequence"}'])
    try:
        problems, kw = _rule_problems(raw)
        if not problems:
            rule = Rule(**kw)
            rule.describe()  # what `allow --list` shows must not fail either
            return rule
    except Exception as e:  # noqa: BLE001 - whatever a hand-edited entry holds, it is one bad rule, not a bad file
        problems = [f"cannot be read ({type(e).__name__}: {e})"]
    return InvalidRule(index, raw, problems)


def parse_rules(text: str) -> list[Rule | InvalidRule]:
    """The rules of an allowlist file, each validated. ValueError for a file that is not an allowlist at all."""
    try:
        doc = loads_json(text)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f'the file is {_json_kind(doc)}, not an object {{"version": {FORMAT_VERSION}, "rules": [...]}}')
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"version {doc.get('version')!r}; this lograven reads version {FORMAT_VERSION}")
    rules = doc.get("rules")
    if not isinstance(rules, list):
        what = "missing" if "rules" not in doc else f"{_json_kind(rules)}, not a list"
        raise ValueError(f'"rules" is {what}; it must be a list of rules ([] for none)')
    return [parse_rule(r, i) for i, r in enumerate(rules)]


def _file_error(path: Path, e: BaseException) -> str:
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    if isinstance(e, PermissionError):
        return (f"{path}: unreadable allowlist ({why}); give the user lograven runs as read access to it and "
                "search (x) access to its directories, or choose another alerts.allowlist")
    return f"{path}: unreadable allowlist ({why}); correct the file, or delete it to allow nothing"


def _invalid_error(path: Path, r: InvalidRule, n_valid: int) -> str:
    return (f"{path}: allowlist {r.label()} is invalid and ignored: {r.reason()}. Fix: {r.fix(path)}. "
            f"The other {n_valid} valid rule(s) are in force")


ALLOWLIST_MAX_BYTES = 64 * 2**20  # about 200,000 rules
_UNSEEN = (-2,)  # Allowlist._seen of a file that could not be looked at: any later look differs


def _file_version(st: os.stat_result) -> tuple:
    """What tells one version of the rules file from another: a copy with the old time stamp (`cp -p`,
    `rsync -t`, an untarred backup) has another size or inode (a review: compared by mtime alone, it was
    never read)."""
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path) -> str:
    """The allowlist's text: a regular file (a FIFO blocked the daemon; /dev/zero filled its memory)."""
    return read_regular(path, ALLOWLIST_MAX_BYTES).decode("utf-8")


def allowlist_problems(path: Path | str) -> list[str]:
    """What is wrong with an allowlist file, one message each (none when it is fine or missing): for
    `lograven check`. The daemon runs anyway: it ignores invalid rules, or an unreadable file."""
    path = Path(path)
    try:
        rules = parse_rules(_read(path))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        return [_file_error(path, e)]
    n_valid = sum(r.valid for r in rules)
    return [_invalid_error(path, r, n_valid) for r in rules if isinstance(r, InvalidRule)]


@dataclass
class Allowlist:
    """The rules file; `matches(alert)` is the AlertRouter's `suppress` hook.

    `rules` is the file's entries in order: `Rule`s, and `InvalidRule`s (`.valid` False) that never
    match and are saved back as written, so `allow --list` shows them and `allow --remove ID` removes them."""

    path: Path
    rules: list[Rule | InvalidRule] = field(default_factory=list)
    _seen: tuple | None = None  # the version of the file last looked at (_file_version), None: no file
    _checked: float = 0.0
    _reported: tuple | None = None  # the file version whose invalid rules were logged
    _failing: set = field(default_factory=set)  # ids of rules whose matching failed (logged once)
    _renumbered: set = field(default_factory=set)  # ids of rules found naming a type renumbered since (logged once)
    _stat_error: str | None = None  # the file could not be looked at (its directory unsearchable): said once
    load: bool = True  # read the file now, as the daemon does (False: the CLI's strict reload() says what is wrong, once)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.load:
            self.reload(strict=False)

    @property
    def valid_rules(self) -> list[Rule]:
        return [r for r in self.rules if isinstance(r, Rule)]

    @property
    def invalid_rules(self) -> list[InvalidRule]:
        return [r for r in self.rules if isinstance(r, InvalidRule)]

    def reload(self, strict: bool = True) -> bool:
        """Read the file. Invalid rules never make it fail: they are kept as InvalidRule and logged
        (once per version of the file). A file that cannot be read as a whole raises LogravenError
        when `strict` (the CLI); otherwise (the daemon) it is logged and the previous rules stay.
        Whether the rules were (re)read: False for a file that could not be."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.rules, self._seen, self._stat_error = [], None, None
            return True
        except OSError as e:  # a directory on the way that may not be searched (a review: a traceback at start)
            msg = _file_error(self.path, e)
            if strict:
                raise LogravenError(msg) from e
            if msg != self._stat_error:
                self._stat_error = msg
                log.error("%s; keeping the previous rules (%d valid)", msg, len(self.valid_rules))
            self._seen = _UNSEEN
            return False
        self._stat_error = None
        try:
            rules = parse_rules(_read(self.path))
        except (OSError, ValueError) as e:
            msg = _file_error(self.path, e)
            if strict:
                raise LogravenError(msg) from e
            log.error("%s; keeping the previous rules (%d valid)", msg, len(self.valid_rules))
            self._seen = _file_version(st)
            return False
        else:
            self.rules = rules
            self._failing = set()
            self._renumbered = set()
            version = _file_version(st)
            if version != self._reported:
                self._reported = version
                n_valid = len(self.valid_rules)
                for r in self.invalid_rules:
                    log.error("%s", _invalid_error(self.path, r, n_valid))
        self._seen = _file_version(st)
        return True

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            seen: tuple | None = _file_version(self.path.stat())
        except FileNotFoundError:
            seen = None
        except OSError:  # cannot be looked at: reload() says so once, and is tried again each second
            seen = (-1,)
        if seen != self._seen and self.reload(strict=False):
            bad = len(self.invalid_rules)
            log.info("allowlist %s reloaded: %d rule(s)%s", self.path, len(self.rules) - bad,
                     f", {bad} invalid rule(s) ignored" if bad else "")

    def matches(self, alert: Alert) -> bool:
        """Whether a rule in force suppresses the alert. Never raises for a rule of the file: loaded
        rules are validated, and one that fails anyway is skipped (logged once), the others still apply."""
        self._refresh()
        if not self.rules:
            return False
        now = datetime.now(timezone.utc)
        for r in self.rules:
            if not r.valid:
                continue
            try:
                if r.expired(now):
                    continue
                if r.matches(alert):
                    return True
                # said for an alert the rule would have suppressed but for its types' templates
                changed = r.renumbered(alert) if isinstance(r, Rule) and r.id not in self._renumbered and r.covers(alert) else None
                if changed is not None:
                    self._renumbered.add(r.id)
                    tid, then, now_ = changed
                    log.warning("%s: allowlist rule %s was made for type %d as %r, but the model's type %d is %r now "
                                "(it was trained again): the rule no longer applies. If this alert (%s) is a false "
                                "alarm, allow it again (lograven allow ALERT_ID), and remove the rule (lograven "
                                "allow --remove %s)", self.path, r.id, tid, then[:120], tid, now_[:120], alert.file, r.id)
            except Exception:  # noqa: BLE001 - one rule must not disable the others
                if r.id not in self._failing:
                    self._failing.add(r.id)
                    log.exception("%s: allowlist rule %r cannot be checked; ignoring it (correct it, or "
                                  "`lograven allow --remove %s`)", self.path, r.id, r.id)
        return False

    def save(self) -> None:
        if not self.path.parent.is_dir():  # a typo'd path: rules the daemon would never read
            raise LogravenError(
                f"{self.path}: its directory {self.path.parent} does not exist; give the allowlist the daemon reads "
                "(alerts.allowlist in the config, by default <state_dir>/allowlist.json) or create the directory"
            )
        # fields added by later versions only where set: a file without such rules stays readable by the
        # versions before them (0.3.0 refuses a rule with a field it does not know, `template` included)
        # invalid rules are written back as they were: fixing them is the operator's (or `--remove`'s)
        doc = {"version": FORMAT_VERSION,
               "rules": [{k: v for k, v in asdict(r).items() if k not in _LATER_FIELDS or v is not None}
                         if isinstance(r, Rule) else r.raw for r in self.rules]}  # fmt: skip
        try:
            fd, tmp = tempfile.mkstemp(prefix=".allowlist.", dir=self.path.parent)
        except OSError as e:  # a read-only or immutable directory, or another user's
            if isinstance(e, PermissionError) and os.geteuid() != 0:
                fix = "run as the daemon's user (`sudo -u lograven lograven allow ...`) or as root"
            else:  # read-only, or immutable (root gets EPERM from `chattr +i`)
                fix = "make it writable (a read-only mount? `lsattr -d` shows an immutable directory)"
            raise LogravenError(f"{self.path}: cannot write the allowlist: cannot create a file in "
                                f"{self.path.parent} ({e.strerror or e}); {fix}") from e
        try:
            keep_access(fd, self.path, first_mode=0o644, group_of_directory=True)  # the daemon's user reads it
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            fix = ("free space on its file system" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                   else "check the file system (`dmesg` shows I/O errors)")
            raise LogravenError(f"{self.path}: cannot write the allowlist ({e.strerror}); it is unchanged: {fix}, "
                                "then run the command again") from e

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        self.save()
        return rule

    def remove(self, rule_id: str) -> None:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        if len(self.rules) == before:
            raise LogravenError(f"{self.path}: no rule {rule_id!r}; `lograven allow --list` shows the rules")
        self.save()


def new_rule(expires_in: float | None = None, comment: str = "", **match) -> Rule:
    now = datetime.now(timezone.utc)
    exp = (now + timedelta(seconds=expires_in)).isoformat(timespec="seconds") if expires_in else None
    return Rule(id="r" + secrets.token_hex(4), created=now.isoformat(timespec="seconds"), expires=exp, comment=comment, **match)


def rule_from_alert(alert: dict, *, any_file: bool = False, **kw) -> Rule:
    """The narrowest rule that suppresses this alert's pattern (not just this one line)."""
    dets = [d["name"] for d in alert.get("detectors", [])]
    type_id = int(alert.get("type_id", -1))
    file = alert.get("file")
    # the alert's file name as a glob that matches that name only: `app[1].log` is no bracket expression
    # (a review: a rule for /var/log/app[1].log did not match its own alert, one for a?.log matched ab.log)
    match: dict = {"file": None if any_file or not isinstance(file, str) else glob.escape(file),
                   "source_alert": alert.get("id")}
    if any((d.get("rule") or "").startswith(END_RULE_PREFIX) for d in alert.get("detectors", [])):
        match.update(type_id=type_id, detector=STREAM_END)
    elif "unknown_type" in dets or type_id == -1:
        pattern = alert.get("pattern")  # the model's masks made it; older alerts have none
        match.update(type_id=-1, pattern=pattern if isinstance(pattern, str) else line_pattern(alert.get("line", "")))
    elif any((d.get("rule") or "").endswith(RARE_RULE_SUFFIX) for d in alert.get("detectors", [])):
        match.update(type_id=type_id, detector="sequence")  # the type itself is the finding, wherever it comes
    elif "sequence" in dets and alert.get("previous_type_id") is not None:
        match.update(type_id=type_id, from_type=int(alert["previous_type_id"]), detector="sequence")
        previous = alert.get("previous_template")
        match["from_template"] = previous if isinstance(previous, str) else None
    elif "sequence" in dets:
        match.update(type_id=type_id, detector="sequence")
    else:
        match.update(type_id=type_id, detector=dets[0] if dets else None)
    template = alert.get("template")
    if match.get("type_id") not in (None, -1) and isinstance(template, str):
        match["template"] = template
    return new_rule(**match, **kw)


def _alert_in(path: Path, alert_id: str) -> dict | None:
    # errors="replace": a line damaged by a crash must not hide the others
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if alert_id in line:
                try:
                    a = json.loads(line)
                except ValueError:
                    continue
                if isinstance(a, dict) and a.get("id") == alert_id:
                    return a
    return None


def _rotated_alert_files(alerts_path: Path) -> tuple[list[Path], list[Path]]:
    """The alerts file's rotated copies beside it (`alerts.jsonl.1`, `alerts.jsonl-20261207`), newest first:
    the plain ones, and the compressed ones (not read)."""
    plain, compressed = rotated_generations(alerts_path)
    return ([alerts_path.parent / os.path.basename(f) for f, _ in plain],
            [alerts_path.parent / os.path.basename(f) for f, _ in compressed])


def find_alert(alerts_path: Path, alert_id: str) -> dict:
    """The alert `alert_id` in the alerts file, else in its rotated copies beside it (logrotate's weekly
    `alerts.jsonl.1`: an alert of last week is still in reach)."""
    try:
        found = _alert_in(alerts_path, alert_id)
    except FileNotFoundError:
        raise LogravenError(f"{alerts_path}: no alerts file; give --alerts FILE (alerts.jsonl.path in the config)") from None
    except IsADirectoryError:
        raise LogravenError(f"{alerts_path}: is a directory; give --alerts the alerts file (alerts.jsonl.path)") from None
    except OSError as e:
        raise LogravenError(f"{alerts_path}: cannot read the alerts ({e.strerror}); run as root or as the lograven "
                            "user, or give --alerts FILE") from None  # fmt: skip
    if found is not None:
        return found
    plain, compressed = _rotated_alert_files(alerts_path)
    searched, unreadable = [], []
    for older in plain:
        try:
            found = _alert_in(older, alert_id)
        except OSError as e:
            unreadable.append(f"{older.name} ({e.strerror or e})")
            continue
        searched.append(older.name)
        if found is not None:
            log.info("alert %s found in %s, a rotated copy of %s", alert_id, older, alerts_path)
            return found
    looked = f" (nor in {', '.join(searched[:3])}{' …' if len(searched) > 3 else ''})" if searched else ""
    hint = (f"; older alerts are in {compressed[0].name}{' …' if len(compressed) > 1 else ''}: decompress it and give "
            "--alerts FILE") if compressed else ""
    if unreadable:
        hint += f"; cannot read {', '.join(unreadable[:3])}: run as root or as the lograven user"
    raise LogravenError(f"{alerts_path}: no alert with id {alert_id!r}{looked}{hint}")
