"""Allowlisting without retraining: rules that suppress a known-legitimate alert pattern at once.

Rules live in one JSON file (`alerts.allowlist`, default `<state_dir>/allowlist.json`),
written atomically by `lograven allow`; the daemon re-reads it when it changes. A
suppressed alert is counted (`lograven_alerts_suppressed_total{reason="allowlist"}`),
never silently lost.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lograven.alerts import END_RULE_PREFIX, RARE_RULE_SUFFIX, Alert

STREAM_END = "stream_end"  # a rule's `detector` that matches stream-end alerts (and only them)
from lograven.errors import LogravenError
from lograven.masking import line_pattern

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_DIGITS = re.compile(r"\d+")
DETECTORS = ("unknown_type", "sequence", "autoencoder")


def line_shape(line: str) -> str:
    """A line with its digits masked: how rules of earlier versions identify an unknown message
    (the `shape` field; new rules use `pattern`, see masking.line_pattern)."""
    return _DIGITS.sub("0", line[:512])


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

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and datetime.fromisoformat(self.expires) <= now

    def matches(self, a: Alert) -> bool:
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
        if self.pattern is not None and a.line_pattern() != self.pattern:
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.from_type is not None:
            parts.append(f"transition {self.from_type} -> {self.type_id}")
        elif self.type_id is not None:
            parts.append("unknown messages" if self.type_id == -1 else f"type {self.type_id}")
        if self.pattern is not None or self.shape is not None:
            parts.append(f"like {(self.pattern or self.shape or '')[:60]!r}")
        if self.detector == STREAM_END:
            parts.append("stream ended after it")
        elif self.detector:
            parts.append(f"detector {self.detector}")
        if self.file:
            parts.append(f"file {self.file}")
        exp = f", expires {self.expires}" if self.expires else ""
        note = f"  # {self.comment}" if self.comment else ""
        return f"{self.id}  {', '.join(parts) or 'everything'}{exp}{note}"


@dataclass
class Allowlist:
    """The rules file; `matches(alert)` is the AlertRouter's `suppress` hook."""

    path: Path
    rules: list[Rule] = field(default_factory=list)
    _mtime: float | None = None
    _checked: float = 0.0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.reload(strict=False)

    def reload(self, strict: bool = True) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.rules, self._mtime = [], None
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            self.rules = [Rule(**r) for r in doc["rules"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            msg = f"{self.path}: unreadable allowlist ({e}); fix or delete it (`lograven allow --list` shows the rules)"
            if strict:
                raise LogravenError(msg) from e
            log.error("%s; keeping the previous rules", msg)
        self._mtime = st.st_mtime

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self.reload(strict=False)
            log.info("allowlist %s reloaded: %d rule(s)", self.path, len(self.rules))

    def matches(self, alert: Alert) -> bool:
        self._refresh()
        if not self.rules:
            return False
        now = datetime.now(timezone.utc)
        return any(not r.expired(now) and r.matches(alert) for r in self.rules)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # `pattern` only where set: a file without pattern rules stays readable by earlier versions
        doc = {"version": FORMAT_VERSION,
               "rules": [{k: v for k, v in asdict(r).items() if k != "pattern" or v is not None} for r in self.rules]}  # fmt: skip
        fd, tmp = tempfile.mkstemp(prefix=".allowlist.", dir=self.path.parent)
        try:
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
            raise LogravenError(f"{self.path}: cannot write the allowlist ({e.strerror})") from e

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
    match: dict = {"file": None if any_file else alert.get("file"), "source_alert": alert.get("id")}
    if any((d.get("rule") or "").startswith(END_RULE_PREFIX) for d in alert.get("detectors", [])):
        match.update(type_id=type_id, detector=STREAM_END)
    elif "unknown_type" in dets or type_id == -1:
        pattern = alert.get("pattern")  # the model's masks made it; older alerts have none
        match.update(type_id=-1, pattern=pattern if isinstance(pattern, str) else line_pattern(alert.get("line", "")))
    elif any((d.get("rule") or "").endswith(RARE_RULE_SUFFIX) for d in alert.get("detectors", [])):
        match.update(type_id=type_id, detector="sequence")  # the type itself is the finding, wherever it comes
    elif "sequence" in dets and alert.get("previous_type_id") is not None:
        match.update(type_id=type_id, from_type=int(alert["previous_type_id"]), detector="sequence")
    elif "sequence" in dets:
        match.update(type_id=type_id, detector="sequence")
    else:
        match.update(type_id=type_id, detector=dets[0] if dets else None)
    return new_rule(**match, **kw)


def find_alert(alerts_path: Path, alert_id: str) -> dict:
    try:
        with open(alerts_path, encoding="utf-8") as f:
            for line in f:
                if alert_id in line:
                    try:
                        a = json.loads(line)
                    except ValueError:
                        continue
                    if a.get("id") == alert_id:
                        return a
    except FileNotFoundError:
        raise LogravenError(f"{alerts_path}: no alerts file; give --alerts FILE (alerts.jsonl.path in the config)") from None
    raise LogravenError(f"{alerts_path}: no alert with id {alert_id!r}")
