"""`lograven evaluate`: how well message types and detectors do on labelled logs.

Three kinds of ground truth, one function each:

- `evaluate_types`: a Loghub ``*_structured.csv`` (columns ``Content`` and
  ``EventId``). Types are learned from the Content lines and compared with
  the EventIds by grouping accuracy (Loghub's GA).
- `evaluate_line_labels`: BGL-style line labels (first token ``-`` = normal,
  anything else an alert category, stripped before parsing). Chronological
  split: train on the normal lines of the first part, score the rest.
- `evaluate_sessions`: a stream key (an HDFS block id) and a
  ``BlockId,Label`` CSV. Sessions in order of first appearance; train on the
  normal sessions of the first part; a held-out session is flagged when any
  of its lines is.

Detection scores the test lines once, with every detector on, and records
each line's evidence (type, GRU probability, rank and ratio, reconstruction
error). Each detector alone, their union ("combined") and the sequence-rule
sweep are all computed from that record, so they describe the same run.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from lograven.detector import DETECTORS, Detector, DetectorSettings, StreamEnd, Verdict, rule_fires
from lograven.errors import LogravenError, quoted
from lograven.msgtypes import UNKNOWN, MessageTypes
from lograven.parsing import (LogRecord, Parser, StreamKey, _clip, misread_timestamps, mostly_unparsed, posix_seconds,
                              regex_stream_spec)
from lograven.training import Corpus, iter_file_lines, silence_ends, train, untrained_message_types

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

COMBINED = "combined"
LABEL_SCHEMES = ("bgl",)
NORMAL_LABEL = "-"  # BGL: the first token of a normal line
# Fixed before looking at any result; reported in full, never used to pick a default.
SWEEP: dict[str, tuple[float, ...]] = {
    "relative": (0.01, 0.03, 0.1, 0.3),
    "probability": (0.001, 0.005, 0.02, 0.05),
    "top_k": (2, 5, 9, 15),
}
# --feedback: "none"; "allow": a simulated operator allowlists every false alarm as it comes; "learn":
# every --feedback-every test lines, the operator runs `lograven learn` on that part's false alarms
FEEDBACK = ("none", "allow", "learn")
_ANOMALY_WORDS = frozenset(("anomaly", "abnormal", "1", "true", "yes"))
_NORMAL_WORDS = frozenset(("normal", "0", "false", "no"))


# ------------------------------------------------------------------ metrics
def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1; 0.0 where a ratio has nothing to divide by."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


@dataclass(frozen=True)
class Counts:
    """A confusion matrix for "anomalous" as the positive class."""

    tp: int
    fp: int
    fn: int
    tn: int = 0

    @classmethod
    def from_flags(cls, flagged: np.ndarray, truth: np.ndarray) -> Counts:
        flagged, truth = np.asarray(flagged, dtype=bool), np.asarray(truth, dtype=bool)
        return cls(
            int((flagged & truth).sum()), int((flagged & ~truth).sum()),
            int((~flagged & truth).sum()), int((~flagged & ~truth).sum()),
        )  # fmt: skip

    @property
    def precision(self) -> float:
        return prf(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return prf(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return prf(self.tp, self.fp, self.fn)[2]

    def to_json(self) -> dict:
        """The counts and ratios; a ratio with nothing to divide by is null (precision without a flag;
        recall and F1 without an anomaly), not a 0.0 that reads as a result."""
        p, r, f = prf(self.tp, self.fp, self.fn)
        flagged, positive = self.tp + self.fp, self.tp + self.fn
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "precision": round(p, 4) if flagged else None, "recall": round(r, 4) if positive else None,
                "f1": round(f, 4) if positive else None}  # fmt: skip

    def ratios_text(self, widths: tuple[int, int, int] = (9, 7, 7), sep: str = "  ") -> str:
        """Precision, recall and F1 for a table, `n/a` where to_json has null. Formatted from the exact
        ratios: from the JSON's (4 decimals) about one in twenty was 0.001 off (95/100 and 95/97 gave F1
        0.965 for 0.9645 instead of 0.964 for 0.96447)."""
        js = self.to_json()
        exact = dict(zip(("precision", "recall", "f1"), prf(self.tp, self.fp, self.fn)))
        return sep.join(
            f"{exact[k]:>{w}.3f}" if js[k] is not None else f"{'n/a':>{w}}"
            for k, w in zip(("precision", "recall", "f1"), widths)
        )


def roc_auc(scores: Sequence[float] | np.ndarray, truth: Sequence[bool] | np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half; NaN scores rank lowest); None without both classes."""
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    y = np.asarray(truth, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct score
    ranks = avg_rank[inv]
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def best_f1(scores: Sequence[float] | np.ndarray, truth: Sequence[bool] | np.ndarray) -> tuple[float, float]:
    """The best F1 over thresholds "score >= t", and that t (an oracle: for comparing scores, not a result)."""
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    y = np.asarray(truth, dtype=bool)
    pos = int(y.sum())
    if pos == 0 or len(s) == 0:
        return 0.0, math.inf
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]  # a threshold includes all of a tie
    tp, fp, th = tp[last], fp[last], s[last]
    f1 = 2 * tp / (tp + fp + pos)
    i = int(np.argmax(f1))
    return float(f1[i]), float(th[i])


# ------------------------------------------------------- grouping accuracy
def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Loghub's GA: a line is correct when the lines sharing its predicted group are exactly
    the lines sharing its true event; GA = correct lines / all lines."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted labels for {len(truth)} lines")
    if not truth:
        return 0.0
    correct = sum(n for _, n, ok in _groups(predicted, truth) if ok)
    return correct / len(truth)


def _groups(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> Iterator[tuple[Hashable, int, bool]]:
    """(predicted group, its size, whether it equals one true group) for every predicted group."""
    true_size = Counter(truth)
    inside: dict[Hashable, Counter] = defaultdict(Counter)
    for p, t in zip(predicted, truth):
        inside[p][t] += 1
    for p, events in inside.items():
        n = sum(events.values())
        ok = len(events) == 1 and true_size[next(iter(events))] == n
        yield p, n, ok


@dataclass
class GroupingError:
    """A true event whose lines are not exactly one predicted group."""

    event: str
    template: str
    lines: int
    split: bool  # its lines went to more than one predicted group
    merged: bool  # a predicted group holding its lines also holds other events' lines
    predicted: list[dict]  # per predicted group: type, learned template, lines of this event, other events
    example: str
    types: int = 0  # learned types its lines went to (`predicted` keeps the largest MAX_LISTED)
    untyped_lines: int = 0  # its lines no learned type matched

    @property
    def kind(self) -> str:
        return "+".join(k for k, on in (("split", self.split), ("merged", self.merged)) if on)

    def to_json(self) -> dict:
        return {"event": self.event, "template": self.template, "lines": self.lines, "kind": self.kind,
                "types": self.types or len(self.predicted), "untyped_lines": self.untyped_lines,
                "predicted": self.predicted, "example": self.example}  # fmt: skip


MAX_LISTED = 20  # predicted groups of an event, and other events of a group, listed by name (the counts are whole)


def grouping_errors(
    predicted: Sequence[Hashable],
    truth: Sequence[Hashable],
    *,
    templates: dict | None = None,
    learned: dict | None = None,
    examples: Sequence[str] | None = None,
    untyped: Callable[[Hashable], bool] | None = None,
) -> list[GroupingError]:
    """The true events GA counts wrong, largest first, with the predicted groups they went to.
    `untyped(p)`: p is a line no learned type matched (a group of its own): counted as the event's
    `untyped_lines`, not listed or counted as a type."""
    by_pred: dict[Hashable, Counter] = defaultdict(Counter)
    by_true: dict[Hashable, Counter] = defaultdict(Counter)
    first: dict[Hashable, int] = {}
    for i, (p, t) in enumerate(zip(predicted, truth)):
        by_pred[p][t] += 1
        by_true[t][p] += 1
        first.setdefault(t, i)
    out = []
    for t, preds in by_true.items():
        n = sum(preds.values())
        merged = any(len(by_pred[p]) > 1 for p in preds)
        split = len(preds) > 1
        if not (split or merged):
            continue
        groups = []
        none = sum(k for p, k in preds.items() if untyped is not None and untyped(p))
        if none:
            preds = Counter({p: k for p, k in preds.items() if not untyped(p)})  # type: ignore[misc]
        for p, k in preds.most_common(MAX_LISTED):
            others = {str(o): c for o, c in by_pred[p].most_common(MAX_LISTED + 1) if o != t}
            others = dict(list(others.items())[:MAX_LISTED])
            total = len(by_pred[p]) - 1
            groups.append({"type": _jsonable(p), "template": (learned or {}).get(p), "lines_of_event": k,
                           "lines": sum(by_pred[p].values()), "other_events": others,
                           "other_event_count": total})  # fmt: skip
        out.append(GroupingError(
            str(t), str((templates or {}).get(t, "")), n, split, merged, groups,
            examples[first[t]] if examples is not None else "", len(preds), none,
        ))  # fmt: skip
    out.sort(key=lambda e: (-e.lines, e.event))
    return out


def _some(names: list[str], total: int, shown: int) -> str:
    """`names` up to `shown` of them, and how many of `total` are left out ("E1, E2 and 7 more")."""
    total = max(total, len(names))
    text = ", ".join(names[:shown])
    return text + (f" and {total - min(shown, len(names))} more" if total > min(shown, len(names)) else "")


def _jsonable(v: Hashable):
    return v if isinstance(v, (int, str)) else str(v)


# -------------------------------------------------------- types evaluation
@dataclass
class TypesEvaluation:
    """Grouping accuracy of learned message types against a structured log's EventIds."""

    file: str
    lines: int
    grouping_accuracy: float
    types: int  # learned types
    groups: int  # distinct types given to the lines (each untyped line counted alone)
    templates: int  # distinct EventIds
    unknown_lines: int
    correct_templates: int
    seconds: float
    settings: dict
    errors: list[GroupingError]
    max_errors: int = 20
    unlabelled_lines: int = 0  # rows with a blank EventId: types learned from them, not in `lines` or GA

    def to_json(self) -> dict:
        return {
            "mode": "types", "file": self.file, "lines": self.lines, "unlabelled_lines": self.unlabelled_lines,
            "grouping_accuracy": round(self.grouping_accuracy, 4),
            "types": self.types, "groups": self.groups, "templates": self.templates,
            "correct_templates": self.correct_templates, "unknown_lines": self.unknown_lines,
            "seconds": round(self.seconds, 2), "settings": self.settings,
            "errors": [e.to_json() for e in self.errors[: self.max_errors]],
        }  # fmt: skip

    def table(self, max_rows: int = 12) -> str:
        out = [
            f"lograven evaluate: message types learned from {self.file}",
            f"  lines {self.lines}: {self.templates} templates (EventId), {self.types} learned types, "
            f"{self.unknown_lines} lines without a type; {self.seconds:.1f} s",
            f"  grouping accuracy (GA)  {self.grouping_accuracy:.4f}   "
            f"({self.correct_templates} of {self.templates} templates grouped exactly)",
        ]
        if self.unlabelled_lines:
            out.insert(2, f"  input     {self.unlabelled_lines} more rows have a blank EventId: types were learned from "
                          "them too, GA leaves them out (as Loghub's evaluator does)")
        if self.errors:
            n = len(self.errors)
            shown = min(max_rows, self.max_errors)
            out.append(f"  mis-grouped templates ({n}), largest first:")
            for e in self.errors[:shown]:
                where = ", ".join(
                    f"type {g['type']} ({g['lines_of_event']}/{g['lines']}"
                    + (f", with {_some(list(g['other_events']), g.get('other_event_count', 0), 6)}"
                       if g["other_events"] else "") + ")"
                    for g in e.predicted[:3]
                )  # fmt: skip
                if (e.types or len(e.predicted)) > 3:
                    where += f" and {(e.types or len(e.predicted)) - 3} more types"
                if e.untyped_lines:
                    where += f"{', and ' if where else ''}{e.untyped_lines} line(s) of no learned type"
                out.append(f"    {e.event:<6} {e.lines:>5} lines  {e.kind:<12} {_clip(e.template, 60)}")
                out.append(f"    {'':<6} {'':>11}  -> {where}")
            if n > shown:
                kept = min(n, self.max_errors)  # what to_json keeps
                if kept == n:
                    out.append(f"    ... {n - shown} more in the JSON output")
                else:
                    out.append(f"    ... {n - shown} more; the JSON output keeps {kept or 'none'} of "
                               f"{'the ' + str(n) if kept else 'them'} (--examples {n} keeps them all)")
        return "\n".join(out)


def _open_csv(path: Path, give: str, option: str) -> io.TextIOWrapper:
    """A CSV opened as UTF-8 text (a leading BOM dropped, undecodable bytes replaced), refused with the fix
    when it is UTF-16 or compressed (it was read as garbled text, and errors quoted binary). `give`: what
    the option takes, for the messages; `option`: how to pass it (`--sessions`)."""
    from .osutil import compression_of
    from .training import _with_head

    fb = None
    if str(path) == "-":  # `-` is the log's (a review: "-: no such file" read as a bug)
        raise LogravenError(f"{option} -: standard input is for the log only; give {give} as a file (or "
                            f"{option} /dev/stdin with the log as a file)")
    try:
        fb = open(path, "rb")  # opened once: a pipe (`<(zcat x.csv.gz)`) cannot be read twice
        head = fb.read(10)  # the BOM, or a compressed file's magic (a buffered read waits for 10 bytes or the end)
        fb = _with_head(head, fb)
    except FileNotFoundError:
        raise LogravenError(f"{path}: no such file; give {give}") from None
    except IsADirectoryError:
        raise LogravenError(f"{path}: is a directory; give {give}") from None
    except OSError as e:
        if fb is not None:
            fb.close()
        raise LogravenError(f"{path}: cannot read ({e.strerror})") from None
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        fb.close()
        raise LogravenError(f"{path}: is UTF-16; convert it to UTF-8 first: iconv -f UTF-16 -t UTF-8 {path} > converted.csv")
    kind = compression_of(head)
    if kind is not None:
        fb.close()
        tool = {"gzip": "zcat", "bzip2": "bzcat", "xz": "xzcat", "zstd": "zstdcat"}[kind]
        raise LogravenError(f"{path}: is {kind}-compressed; give it decompressed: "
                            f"{option} <({tool} {path}), or `{tool} {path} > FILE.csv`")
    return io.TextIOWrapper(fb, newline="", encoding="utf-8-sig", errors="replace")  # -sig: without a leading BOM


def read_structured(path: str | Path) -> tuple[list[str], list[str], dict[str, str]]:
    """(Content lines, EventIds, EventId -> EventTemplate) of a Loghub structured CSV. Column names are
    matched without case or surrounding spaces; a blank EventId is returned as "" (not a label)."""
    path = Path(path)
    f = _open_csv(path, "a Loghub *_structured.csv", "--structured")
    try:
        with f:
            return _read_structured_rows(path, f)
    except OSError as e:
        raise LogravenError(f"{path}: cannot read ({e.strerror or e})") from None


_STRAY_QUOTE = ("a double quote (\") at the start of a field opens a quoted field that runs to the next quote, "
                "lines later; remove the stray quote, or quote the whole field (a \" inside a field is written \"\")")


def _csv_rows(path: Path, f: io.TextIOWrapper) -> tuple[Iterator[list[str]], Callable[[], int]]:
    """A CSV reader's rows, with its errors said as the file's (and the line's): a stray double quote
    makes the rest of the file one field, larger than the csv module takes (it had been a traceback).
    Also a function giving the line the last row started on."""
    reader = csv.reader(f)
    began = [0]

    def rows() -> Iterator[list[str]]:
        while True:
            start = reader.line_num + 1  # where the next row starts
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                began[0] = start
                if "field larger than field limit" in str(e):
                    raise LogravenError(
                        f"{path}, line {start}: a field longer than {csv.field_size_limit():,} characters (the row "
                        f"starting there runs to line {reader.line_num}): a double quote (\") never closed makes "
                        "the rest of the file one field; remove the stray quote, or quote the whole field (a \" "
                        "inside a field is written \"\"). Or the file is not a CSV") from None  # fmt: skip
                raise LogravenError(f"{path}, line {start}: not valid CSV ({e})") from None
            began[0] = start
            if reader.line_num > start and any("\n" in c or "\r" in c for c in row):
                # a log line, an event id, a session id or a label has no line break: a quote joined lines
                raise LogravenError(f"{path}, line {start}: a field runs over lines {start} to {reader.line_num}: "
                                    + _STRAY_QUOTE)
            yield row

    return rows(), lambda: began[0]


def _read_structured_rows(path: Path, f: io.TextIOWrapper) -> tuple[list[str], list[str], dict[str, str]]:
    reader, line_num = _csv_rows(path, f)
    header = next(reader, None) or []
    index = {}
    for i, name in enumerate(header):
        index.setdefault(name.strip().lower(), i)
    if "content" not in index or "eventid" not in index:
        found = _clip(", ".join(repr(c) for c in header), 200) or "none"
        if len(header) > 1:
            found += f"; {len(header)} columns"
        hint = ""
        if len(header) == 1 and any(d in header[0] for d in ";\t|"):
            hint = " (the header is one column: is the file separated by something other than commas?)"
        raise LogravenError(
            f"{path}: needs columns Content and EventId (found {found}){hint}; "
            "give a Loghub *_structured.csv (comma-separated, UTF-8, a header line)"
        )
    ci, ei, ti = index["content"], index["eventid"], index.get("eventtemplate")
    need = max(ci, ei) + 1
    contents, events, templates = [], [], {}
    for row in reader:
        if not row:
            continue  # a blank line
        if len(row) < need:
            raise LogravenError(
                f"{path}, line {line_num()}: {len(row)} fields, but Content and EventId are columns "
                f"{ci + 1} and {ei + 1}; repair the row (an unquoted line break or comma?) or remove it"
            )
        event = row[ei].strip()
        contents.append(row[ci])
        events.append(event)
        if ti is not None and ti < len(row) and event:
            templates.setdefault(event, row[ti])
    if not contents:
        raise LogravenError(f"{path}: no rows; give a Loghub *_structured.csv with lines")
    if not any(events):
        raise LogravenError(f"{path}: every EventId is blank; give a structured CSV whose EventId column is filled")
    return contents, events, templates


def message_types_for(config: object | None) -> MessageTypes:
    """An unfitted MessageTypes with the config's training.msgtypes settings (as `train` builds it)."""
    return untrained_message_types(getattr(config, "training", None))


def evaluate_types(path: str | Path, *, config: object | None = None, max_errors: int = 20) -> TypesEvaluation:
    """Learn types from a structured CSV's Content lines and report GA against its EventIds."""
    contents, events, templates = read_structured(path)
    t0 = time.monotonic()
    types = message_types_for(config).fit(contents)
    ids = types.predict(contents)
    seconds = time.monotonic() - t0
    # A line with no type belongs to no group: it is right only if its event has that one line.
    predicted: list[Hashable] = [int(t) if t != UNKNOWN else ("unknown", i) for i, t in enumerate(ids)]
    # Types are learned from every line; GA is over the lines with an EventId, as Loghub's evaluator
    # drops rows without a ground-truth event (blank ones would otherwise be one huge "event").
    keep = [i for i, e in enumerate(events) if e]
    examples: Sequence[str] = contents
    if len(keep) < len(events):
        predicted = [predicted[i] for i in keep]
        examples = [contents[i] for i in keep]
        events = [events[i] for i in keep]
    learned = {t.id: t.template for t in types.types_}
    ga = grouping_accuracy(predicted, events)
    errors = grouping_errors(predicted, events, templates=templates, learned=learned, examples=examples,
                             untyped=lambda p: isinstance(p, tuple))  # ("unknown", line): no learned type
    wrong = {e.event for e in errors}
    return TypesEvaluation(
        file=str(path), lines=len(events), grouping_accuracy=ga, types=len(types.types_),
        groups=len(set(predicted)), templates=len(set(events)), unknown_lines=int((ids[keep] == UNKNOWN).sum()),
        correct_templates=len(set(events)) - len(wrong), seconds=seconds,
        unlabelled_lines=len(contents) - len(keep),
        settings={"svd_variance": types.svd_variance, "max_clusters": types.max_clusters,
                  "variable_min_distinct": types.variable_min_distinct,
                  "extra_masks": [{"name": m.name, "pattern": m.pattern} for m in types.extra_masks],
                  "seed": types.seed, "clusters": types.n_clusters_},
        errors=errors, max_errors=max_errors,
    )  # fmt: skip


# ------------------------------------------------------------ detection
SESSION_SPLITS = ("pool", "normal")


@dataclass
class Setup:
    """How a detection evaluation reads, splits, trains and scores."""

    fmt: str = "syslog"
    stream: str = "file"  # file | program | regex:<pattern> (line labels only; sessions use their key)
    train_fraction: float = 0.8
    model_dir: Path | None = None  # keep the trained bundle here; None: a temporary directory
    batch_size: int = 1024
    max_examples: int = 20
    max_line_bytes: int = 65536
    stream_end: bool | None = None  # sessions: learn and judge where each session ends (None: as the config says)
    # sessions: "pool" trains on the normal sessions of the first part and tests the rest; "normal" (DeepLog's
    # protocol) trains on the first part of the *normal* sessions and tests every other session.
    session_split: str = "pool"
    feedback: str = "none"  # "allow": also report what is left when every false alarm is allowlisted as it comes
    feedback_every: int = 100  # "learn": test lines between two learn runs

    def check(self) -> None:
        if not 0.0 < self.train_fraction < 1.0:
            raise LogravenError(f"--train-fraction must be between 0 and 1 (exclusive), got {self.train_fraction}")
        if self.session_split not in SESSION_SPLITS:
            raise LogravenError(
                f"--session-split must be one of {', '.join(SESSION_SPLITS)}, got {self.session_split!r}"
            )
        if self.feedback not in FEEDBACK:
            raise LogravenError(f"--feedback must be one of {', '.join(FEEDBACK)}, got {self.feedback!r}")
        if self.feedback_every < 1:
            raise LogravenError(f"--feedback-every must be at least 1 line, got {self.feedback_every}")
        if self.batch_size < 1:
            raise LogravenError(f"--batch-size must be at least 1, got {self.batch_size}")
        Parser(self.fmt)


@dataclass
class Evidence:
    """What the detector recorded about each scored line (arrays in line order)."""

    type_id: np.ndarray  # int; 0 = UNKNOWN
    seq_p: np.ndarray  # float, NaN where the sequence model did not judge the line
    seq_rank: np.ndarray  # int, 0 where not judged
    seq_ratio: np.ndarray  # float, NaN where not judged
    ae_error: np.ndarray  # float
    fired: dict[str, np.ndarray]  # detector -> bool, as the Detector reported it
    expected: list[list[int]]  # the types the GRU expected instead (most likely first)
    seq_rare: np.ndarray | None = None  # bool: the rare-type rule fired (Detector.rare_fires); None: never
    unjudged: np.ndarray | None = None  # bool: predicted, but of a type not judged by where it comes (Detector.unjudged)


def sequence_part_flags(ev: Evidence, rule: str, value: float, floor: float = 0.0) -> dict[str, np.ndarray]:
    """Each part of the sequence detector, recomputed from the evidence: "rule" (`rule` at `value`),
    "floor" (with a probability `floor`), "rare_type" (as the detector applied it, when recorded)."""
    if rule not in SWEEP:
        raise ValueError(f"unknown sequence rule {rule!r}")
    judged = ~np.isnan(ev.seq_p)
    if ev.unjudged is not None:
        judged &= ~ev.unjudged
    with np.errstate(invalid="ignore"):
        parts = {"rule": judged & rule_fires(rule, value, ev.seq_ratio, ev.seq_p, ev.seq_rank)}
        if floor > 0:
            parts["floor"] = judged & (ev.seq_p < floor)
    if ev.seq_rare is not None:
        parts["rare_type"] = judged & ev.seq_rare
    return parts


def sequence_flags(ev: Evidence, rule: str, value: float, floor: float = 0.0) -> np.ndarray:
    """The sequence detector's decision under `rule` at `value` (and the probability `floor`, if any,
    and the rare-type rule as the detector applied it), recomputed from the evidence."""
    return np.logical_or.reduce(list(sequence_part_flags(ev, rule, value, floor).values()))


def score(detector: Detector, items: Sequence[tuple[str, LogRecord]], batch_size: int = 1024,
          progress: Progress | None = None, after_batch: Callable[[int], None] | None = None,
          cuts: Sequence[int] = (), verdicts: dict[int, Verdict] | None = None) -> Evidence:  # fmt: skip
    """Run the detector over items in batches, in order, and keep each line's evidence
    (`after_batch(n)`: called once the first n items are scored; a batch also ends at every n in
    `cuts`, so after_batch sees exactly that point; `verdicts`: filled with the verdict of every
    line that some detector flagged, by position)."""
    n = len(items)
    type_id = np.zeros(n, dtype=np.int64)
    seq_p = np.full(n, np.nan)
    seq_rank = np.zeros(n, dtype=np.int64)
    seq_ratio = np.full(n, np.nan)
    end_first = np.zeros(n, dtype=bool)
    ae_error = np.full(n, np.nan)
    fired = {d: np.zeros(n, dtype=bool) for d in DETECTORS}
    expected: list[list[int]] = [[] for _ in range(n)]
    bounds = sorted({min(n, b) for b in range(batch_size, n + batch_size, batch_size)} | {c for c in cuts if 0 < c < n})
    s = 0
    evicted = getattr(detector, "streams_evicted", 0)  # (a test's stand-in detector has none)
    for e in bounds:
        for i, v in enumerate(detector.detect(items[s:e]), s):
            type_id[i] = v.type_id
            if v.sequence_p is not None:
                seq_p[i] = v.sequence_p
                seq_rank[i] = v.sequence_rank or 0
                seq_ratio[i] = v.sequence_ratio if v.sequence_ratio is not None else np.nan
                end_first[i] = v.end_more_likely
            if v.ae_error is not None:
                ae_error[i] = v.ae_error
            for d in v.detectors:
                fired[d][i] = True
            if verdicts is not None and v.detectors:
                verdicts[i] = v
            expected[i] = [t for t, _ in v.expected]
        if after_batch is not None:
            after_batch(e)
        if progress:
            progress("scoring", e / max(n, 1))
        s = e
    if getattr(detector, "streams_evicted", 0) > evicted:
        log.warning("%d stream state(s) were forgotten while scoring: more than runtime.max_streams (%d) streams "
                    "were open at once, so the least recently seen started afresh and their next lines were judged "
                    "without history; raise runtime.max_streams in --config (at most 1,000,000)",
                    detector.streams_evicted - evicted, detector.settings.max_streams)  # fmt: skip
    unjudged = detector.unjudged(type_id)  # vouched for, from too few lines: predicted, not judged
    seq_rare = ~np.isnan(seq_p) & ~unjudged & detector.rare_fires(type_id, seq_rank, end_first)
    return Evidence(type_id, seq_p, seq_rank, seq_ratio, ae_error, fired, expected, seq_rare, unjudged)


@dataclass
class Operator:
    """A simulated operator who reads every alert as it comes. A false one (its line or session is
    labelled normal) is allowlisted as `lograven allow ALERT_ID` allowlists it (`rule_from_alert`:
    the narrowest rule for its pattern); a true one is kept. A later alert that a rule matches is
    suppressed, as the daemon's router suppresses it, whatever its label."""

    rules: list = field(default_factory=list)
    delivered: Counter = field(default_factory=Counter)  # "true" / "false" -> alerts delivered
    suppressed: Counter = field(default_factory=Counter)  # "true" / "false" -> alerts a rule suppressed

    def review(self, alert, anomalous: bool) -> bool:
        """Whether the alert is delivered; a delivered false alert becomes a rule."""
        from lograven.allowlist import rule_from_alert

        key = "true" if anomalous else "false"
        if any(r.matches(alert) for r in self.rules):
            self.suppressed[key] += 1
            return False
        self.delivered[key] += 1
        if not anomalous:
            self.rules.append(rule_from_alert(alert.to_dict()))
        return True

    def rule_kinds(self) -> dict[str, int]:
        from lograven.allowlist import STREAM_END

        kinds: Counter = Counter()
        for r in self.rules:
            if r.detector == STREAM_END:
                kinds["stream_end"] += 1
            elif r.type_id == -1:
                kinds["unknown_type"] += 1
            elif r.from_type is not None:
                kinds["transition"] += 1
            else:
                kinds[r.detector or "any"] += 1
        return dict(sorted(kinds.items()))


def with_feedback(events: Sequence[tuple[int, object]], truth: np.ndarray, flagged_before: np.ndarray) -> dict:
    """Replay the alerts `events` ((unit, Alert), in the order the daemon would send them) past a simulated
    operator who allowlists each false one (Operator); what is flagged then, and what it cost."""
    op = Operator()
    flagged = np.zeros(len(truth), dtype=bool)
    for u, alert in events:
        if op.review(alert, bool(truth[u])):
            flagged[u] = True
    return {
        "mode": "allow",
        "results": Counts.from_flags(flagged, truth).to_json(),
        "rules": len(op.rules),
        "rules_by_kind": op.rule_kinds(),
        "alerts_delivered": {"true": op.delivered["true"], "false": op.delivered["false"]},
        "alerts_suppressed": {"true": op.suppressed["true"], "false": op.suppressed["false"]},
        # anomalous units found without feedback whose every alert a rule then suppressed
        "anomalies_hidden": int((flagged_before & truth & ~flagged).sum()),
    }


@dataclass
class DetectionEvaluation:
    """Precision/recall/F1 of each detector alone and combined, with the settings and the errors."""

    mode: str  # "lines" or "sessions"
    file: str
    labels: str
    unit: str  # what is counted: "lines" or "sessions"
    setup: Setup
    stream: str
    split: dict
    settings: dict
    training: dict
    results: dict[str, Counts]  # detector (and "combined") -> counts
    categories: dict[str, dict]  # label -> {"count": n, "flagged": {detector: k}}
    sweep: list[dict]
    auc: dict[str, float | None]
    missed: list[dict]
    false_alarms: list[dict]
    seconds: dict[str, float]
    bundle: str | None
    # what each part of the sequence detector finds alone: "rule" (the rule in force), "floor",
    # "rare_type", "stream_end" (sessions, models that learned ends); only the parts in force
    sequence_parts: dict[str, Counts] = field(default_factory=dict)
    feedback: dict | None = None  # --feedback allow: see with_feedback

    def to_json(self) -> dict:
        return {
            "mode": self.mode, "file": self.file, "labels": self.labels, "unit": self.unit,
            "format": self.setup.fmt, "stream": self.stream, "split": self.split,
            "settings": self.settings,
            "results": [{"detector": d, **c.to_json()} for d, c in self.results.items()],
            "sequence_parts": [{"part": k, **c.to_json()} for k, c in self.sequence_parts.items()],
            "categories": self.categories, "sweep": self.sweep,
            "auc": {k: None if v is None else round(v, 4) for k, v in self.auc.items()},
            "missed": self.missed, "false_alarms": self.false_alarms,
            "training": self.training, "seconds": self.seconds, "bundle": self.bundle,
            "feedback": self.feedback,
        }  # fmt: skip

    def table(self) -> str:
        s, sp = self.settings, self.split
        title = "line labels (BGL style)" if self.mode == "lines" else "session labels"
        out = [f"lograven evaluate: {title}, {self.file}"]
        if self.mode == "lines":
            out.append(
                f"  split     first {_pct(sp['train_fraction'])} of lines ({sp['first_part_lines']}) -> "
                f"trained on its {sp['training_lines']} normal lines; tested on the other "
                f"{sp['test_lines']} lines ({sp['test_anomalies']} anomalous)"
            )
        elif sp.get("session_split") == "normal":
            out.append(
                f"  split     first {_pct(sp['train_fraction'])} of the normal sessions -> trained on "
                f"{sp['training_sessions']} normal sessions ({sp['training_lines']} lines); tested on every other "
                f"session: {sp['test_sessions']} ({sp['test_anomalies']} anomalous, {sp['test_lines']} lines)"
            )
        else:
            out.append(
                f"  split     first {_pct(sp['train_fraction'])} of sessions ({sp['train_pool_sessions']}) -> "
                f"trained on its {sp['training_sessions']} normal sessions ({sp['training_lines']} lines); "
                f"tested on the other {sp['test_sessions']} sessions ({sp['test_anomalies']} anomalous, "
                f"{sp['test_lines']} lines)"
            )
        out.extend(_input_notes(self))
        ends = ""
        if s.get("stream_end"):
            gap = s.get("stream_end_after") or 0
            ends = (f"; stream ends after {gap:g} s of silence (sessions cut there, in training and test)" if gap
                    else "; stream ends at each session's last line")  # fmt: skip
            used = s.get("end_threshold_in_force")
            configured = {"relative": s["relative_threshold"], "probability": s["threshold"]}.get(s["sequence_rule"])
            if used is not None and configured is not None and used < configured:
                ends += f", an end flagged below {used:.3g}"
        members = s.get("sequence_members", 1)
        gru = f"an ensemble of {members} GRUs; " if members > 1 else ""
        # the stream and the seed: what tells two runs' tables apart (a review: a --stream program run and a
        # default one printed the same header)
        streams = f"streams {self.stream}; " if self.stream and self.mode == "lines" else ""
        seed = f"; seed {s['seed']}" if "seed" in s else ""
        out.append(
            f"  model     {s['types']} message types; {streams}{gru}sequence rule {_rule_text(s)}{ends}; autoencoder "
            f"threshold {s['autoencoder_threshold']:.3f} nats/token (x{s['autoencoder_margin']:g}); "
            f"training {s['training_seconds']:.1f} s{seed}"
        )
        out.append("")
        out.append(f"  {'detector':<14}{'TP':>7}{'FP':>7}{'FN':>7}  {'precision':>9}  {'recall':>7}  {'F1':>7}")
        for d, c in self.results.items():
            out.append(f"  {d:<14}{c.tp:>7}{c.fp:>7}{c.fn:>7}  {c.ratios_text()}")
        if self.feedback:
            fb, c = self.feedback, Counts(**{k: self.feedback["results"][k] for k in ("tp", "fp", "fn")})
            name = "+ allowlist" if fb["mode"] == "allow" else "+ learn"
            out.append(f"  {name:<14}{c.tp:>7}{c.fp:>7}{c.fn:>7}  {c.ratios_text()}")
            hidden = fb["anomalies_hidden"]
            units = self.unit if hidden != 1 else self.unit[:-1]
            if fb["mode"] == "allow":
                kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in fb["rules_by_kind"].items()) or "none"
                out.append(
                    f"  + allowlist: combined, with each false alarm allowlisted as it comes (`lograven allow ALERT_ID`): "
                    f"{fb['rules']} rule{'s' if fb['rules'] != 1 else ''} ({kinds}); {hidden} anomalous {units} hidden by a rule"
                )
            else:
                out.append(
                    f"  + learn: combined, with `lograven learn` on the false alarms of every {fb['every']} lines: "
                    f"{fb['rounds']} version{'s' if fb['rounds'] != 1 else ''} from {fb['false_alarms_learned']} false "
                    f"alarms ({fb['new_types']} new types, {fb['learn_seconds']:.0f} s); {hidden} anomalous {units} "
                    "no longer flagged"
                )
        if self.sequence_parts:
            out.append("  sequence by part (each alone, TP/FP): " + ", ".join(
                f"{k.replace('_', ' ')} {c.tp}/{c.fp}" for k, c in self.sequence_parts.items()))  # fmt: skip
        if self.auc:
            out.append("  ROC-AUC of the scores: " + ", ".join(
                f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in self.auc.items())
                + (" (the sequence score ranks lines its GRU did not judge, unknown types among them, as the most "
                   "normal: where the anomalies are unknown types, its AUC is low by construction)"
                   if "sequence" in self.auc else ""))  # fmt: skip
        cats = {k: v for k, v in self.categories.items() if k not in (NORMAL_LABEL, "Normal")}
        if self.mode == "lines" and cats:
            out.append("")
            out.append(f"  recall by category ({self.unit}): " + "  ".join(
                f"{k} {v['flagged'][COMBINED]}/{v['count']}" for k, v in sorted(cats.items(), key=lambda kv: -kv[1]["count"])))  # fmt: skip
        if self.sweep:
            out.append("")
            out.append(f"  sequence rule sweep (same run): {'sequence alone':>24}   {'combined':>22}")
            out.append(f"  {'rule':<12}{'value':>9}   {'P':>6} {'R':>6} {'F1':>6} {'FP':>5}   {'P':>6} {'R':>6} {'F1':>6}")
            for row in self.sweep:
                # from the counts, not the rounded JSON values: the row in force prints as the rows above
                a, b = (Counts(**{k: row[x][k] for k in ("tp", "fp", "fn")}) for x in ("sequence", COMBINED))
                mark = "  <- used" if row.get("used") else ""
                w = (6, 6, 6)
                out.append(
                    f"  {row['rule']:<12}{_fit(row['value'], 9)}   {a.ratios_text(w, ' ')} "
                    f"{a.fp:>5}   {b.ratios_text(w, ' ')}{mark}"
                )
        return "\n".join(out)


def _unparsed(r: DetectionEvaluation) -> tuple[int, int, int, int]:
    """(unparsed, all) training lines, then (unparsed, all) test lines."""
    sp = r.split
    return (r.training.get("unparsed_lines", 0) or 0, sp.get("training_lines", 0),
            sp.get("unparsed_test_lines", 0), sp.get("test_lines", 0))  # fmt: skip


def _input_notes(r: DetectionEvaluation) -> list[str]:
    """Table lines about input the run could not use as intended: lines the format did not match
    (a wrong --format), lines without a session key or label, a stream key that matched no line,
    labelled sessions the log never mentions (a labels CSV of another log)."""
    sp, notes = r.split, []
    if sp.get("test_anomalies") == 0:
        notes.append(f"  input     WARNING: no anomalous {r.unit} in the test part: recall and F1 are undefined (n/a), "
                     "and every flag is a false alarm; give a --train-fraction that leaves anomalies to test")  # fmt: skip
    bad_train, n_train, bad_test, n_test = _unparsed(r)
    if bad_test or bad_train:
        text = (f"{bad_train} of {n_train} training and {bad_test} of {n_test} test lines do not match --format "
                f"{_clip(r.setup.fmt, 40)}; they were used whole, as messages")  # fmt: skip
        if mostly_unparsed(bad_test + bad_train, n_test + n_train):
            text = "WARNING: " + text + ": give the log's --format (docs/evaluation.md)"
        notes.append(f"  input     {text}")
    if sp.get("lines_without_stream_key"):
        notes.append(f"  input     {sp['lines_without_stream_key']} of {sp['lines']} lines have no --stream-key match; "
                     "they share their file's stream")  # fmt: skip
    if sp.get("lines_without_key") or sp.get("unlabelled_lines"):
        notes.append(f"  input     {sp.get('lines_without_key', 0)} lines without a session key, "
                     f"{sp.get('unlabelled_lines', 0)} lines of {sp.get('unlabelled_sessions', 0)} sessions without a label: "
                     "not used")  # fmt: skip
    missing = sp.get("labelled_sessions_not_in_log")
    if missing:
        labelled = missing + sp.get("sessions", 0)
        warn = "WARNING: " if 2 * missing > labelled else ""
        notes.append(f"  input     {warn}{missing} of {labelled} labelled sessions never appear in the log (no line has "
                     "their --stream-key); check that the labels CSV belongs to this log")  # fmt: skip
    return notes


def warn_unparsed(r: DetectionEvaluation) -> None:
    """Log a warning when most lines did not match the format (a wrong --format)."""
    bad_train, n_train, bad_test, n_test = _unparsed(r)
    bad, total = bad_train + bad_test, n_train + n_test
    if mostly_unparsed(bad, total):
        log.warning("%s: %d of %d lines do not match --format %s; give the log's --format", r.file, bad, total,
                    _clip(r.setup.fmt, 60))  # fmt: skip


def _rule_text(s: dict) -> str:
    rule = s["sequence_rule"]
    used = s.get("sequence_threshold_in_force")
    floor = s.get("probability_floor") or 0.0
    fl = f"; or p < floor {floor:.3g}" if floor > 0 else ""
    if s.get("rare_types"):
        n = s["rare_types"]
        fl += f"; or a type seen < {s['rare_count']} times, not expected most ({n} such type{'s' if n != 1 else ''})"
    if rule == "relative":
        cal = f", calibrated to {used:.3g}" if used is not None and used < s["relative_threshold"] else ""
        return f"relative (p/p_train < {s['relative_threshold']:g}{cal}{fl})"
    if rule == "probability":
        cal = f", calibrated to {used:.3g}" if used is not None and used < s["threshold"] else ""
        return f"probability (p < {s['threshold']:g}{cal}{fl})"
    return f"top_k (not in top {s['top_k']}{fl})"


def _pct(fraction: float) -> str:
    """A fraction as given, in percent: 0.8 is 80%, 0.999 is 99.9% (not a rounded 100%)."""
    return f"{fraction * 100:.6g}%"


def _f(x: float) -> float | None:
    """A float for the JSON: 6 significant digits (a tiny probability stays itself); None for NaN."""
    return None if x is None or x != x else _sig(x)


def _sig(x: float, digits: int = 6) -> float:
    """`x` rounded to `digits` significant digits (infinities stay)."""
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def _fit(x: float, width: int) -> str:
    """`x` in at most `width` characters (if it can be): 3 significant digits, fewer when too wide."""
    for digits in (3, 2, 1):
        text = f"{x:.{digits}g}"
        if len(text) <= width:
            break
    return f"{text:>{width}}"


class _Trained:
    """Train into model_dir (or a temporary directory) and load the bundle; cleans up on exit."""

    def __init__(self, corpus: Corpus, config: object | None, setup: Setup, stream: str, progress: Progress | None,
                 stream_end: bool | None = None, complete: bool = False, end_gap: float = 0.0):  # fmt: skip
        self.corpus, self.config, self.setup, self.stream, self.progress = corpus, config, setup, stream, progress
        self.stream_end, self.complete, self.end_gap = stream_end, complete, end_gap
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self):
        from lograven.bundle import load_bundle

        if mostly_unparsed(self.corpus.unparsed, len(self.corpus)):  # said now, not after minutes of training
            log.warning("%d of %d training lines do not match --format %s: a wrong --format? (Ctrl-C, and give the "
                        "log's --format; training goes on)", self.corpus.unparsed, len(self.corpus),
                        _clip(self.setup.fmt, 60))  # fmt: skip
        if self.setup.model_dir is not None:
            out = Path(self.setup.model_dir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="lograven-evaluate-")
            out = Path(self._tmp.name) / "bundle"
        detectors = getattr(self.config, "detectors", None)
        quantile = getattr(getattr(detectors, "autoencoder", None), "quantile", 0.999)
        training = getattr(self.config, "training", None)
        if self.stream_end is not None:
            from lograven.config import TrainingConfig

            training = training or TrainingConfig()
            training = replace(training, sequence=replace(training.sequence, stream_end=self.stream_end))
        t0 = time.monotonic()
        res = train(
            self.corpus, out, training=training, quantile=quantile,
            fmt=self.setup.fmt, stream=self.stream, progress=self.progress, streams_complete=self.complete,
            end_gap=self.end_gap,
        )  # fmt: skip
        self.seconds = time.monotonic() - t0
        self.summary = res.summary
        self.bundle = load_bundle(out)
        self.path = None if self._tmp else str(out)
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _settings_json(det: Detector, settings: DetectorSettings, training_seconds: float, summary: dict,
                   config: object | None = None) -> dict:
    from lograven import __version__

    return {
        "seed": int(getattr(getattr(config, "training", None), "seed", 42)),  # what tells runs apart
        "lograven_version": __version__,
        "sequence_rule": settings.sequence_rule,
        "relative_threshold": settings.sequence_relative_threshold,
        "threshold": settings.sequence_threshold,
        "calibrate": settings.sequence_calibrate,
        "stream_end": det.judges_stream_ends,
        "stream_end_after": summary.get("stream_end_after", 0.0) if det.judges_stream_ends else 0.0,
        "probability_floor": _sig(det.probability_floor),
        "rare_count": settings.sequence_rare_count,
        "rare_types": int(det.rare_type.sum()),
        "sequence_threshold_in_force": _sig(det.sequence_rule_value),
        "end_threshold_in_force": _sig(det.end_rule_value) if det.judges_stream_ends else None,
        "top_k": settings.sequence_top_k,
        "autoencoder_threshold": _sig(det.ae.threshold_),
        "autoencoder_margin": settings.autoencoder_margin,
        "autoencoder_effective_threshold": _sig(det.ae_threshold),
        "autoencoder_type_thresholds": len(getattr(det.ae, "type_thresholds_", {})),  # learned types with their own
        "types": len(det.types.types_),
        "sequence_units": det.seq.params.units,
        "sequence_members": len(det.seq.members_),
        "sequence_window": det.seq.params.window,
        "training_seconds": round(training_seconds, 2),
        "training_lines": summary.get("lines"),
    }


def _counts_by_detector(flags: dict[str, np.ndarray], truth: np.ndarray) -> dict[str, Counts]:
    return {d: Counts.from_flags(f, truth) for d, f in flags.items()}


def _with_combined(flags: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(flags)
    out[COMBINED] = np.logical_or.reduce([flags[d] for d in DETECTORS])
    return out


def _sweep(ev: Evidence, settings: DetectorSettings, used: float, agg: Callable[[np.ndarray], np.ndarray],
           truth: np.ndarray, extra: Callable[[str, float], np.ndarray] | None = None, floor: float = 0.0) -> list[dict]:  # fmt: skip
    """Sequence alone and combined for each rule and value of SWEEP, from one scoring pass
    (`extra`: more sequence flags per unit under a rule and value, e.g. the sessions' ends;
    `floor`: the probability floor in force, applied to every row as the detector applies it)."""
    base = agg(ev.fired["unknown_type"]) | agg(ev.fired["autoencoder"])
    used_rule, used_value = settings.sequence_rule, used
    rows = []
    for rule, values in SWEEP.items():
        vals = sorted(set(values) | ({used_value} if rule == used_rule else set()))
        for v in vals:
            seq = agg(sequence_flags(ev, rule, v, floor))
            if extra is not None:
                seq = seq | extra(rule, v)
            rows.append({
                "rule": rule, "value": v if isinstance(v, int) else _sig(v),  # the grid's ints stay ints
                "used": rule == used_rule and v == used_value,
                "sequence": Counts.from_flags(seq, truth).to_json(),
                COMBINED: Counts.from_flags(seq | base, truth).to_json(),
            })  # fmt: skip
    return rows


def _sequence_parts(det: Detector, ev: Evidence, agg: Callable[[np.ndarray], np.ndarray], truth: np.ndarray,
                    ends: np.ndarray | None = None) -> dict[str, Counts]:
    """What each part of the sequence detector finds on its own (a unit can be found by several)."""
    if not det.settings.sequence:
        return {}
    parts = sequence_part_flags(ev, det.settings.sequence_rule, det.sequence_rule_value, det.probability_floor)
    if not det.rare_type.any():
        parts.pop("rare_type", None)
    out = {k: Counts.from_flags(agg(v), truth) for k, v in parts.items()}
    if ends is not None and det.judges_stream_ends:
        out["stream_end"] = Counts.from_flags(ends, truth)
    return out


def _line_example(det: Detector, ev: Evidence, i: int, text: str, label: str, line_no: int) -> dict:
    t = int(ev.type_id[i])
    return {
        "line": line_no, "label": label, "text": _clip(text, 300),
        "type": t, "template": det.template(t),
        "detectors": [d for d in DETECTORS if ev.fired[d][i]],
        "sequence_p": _f(ev.seq_p[i]), "sequence_ratio": _f(ev.seq_ratio[i]),
        "sequence_rank": int(ev.seq_rank[i]) or None,
        "type_count": det.type_count(t),
        "expected": [det.template(x) for x in ev.expected[i][:3]],
        "ae_error": _f(ev.ae_error[i]),
    }  # fmt: skip


@dataclass
class LabelledLine:
    """One line of a BGL-style labelled log: its label, the text after it, and that text parsed."""

    line_no: int  # 1-based, in the file
    label: str  # "-" for normal, else the alert category
    text: str
    record: LogRecord

    @property
    def anomalous(self) -> bool:
        return self.label != NORMAL_LABEL


def read_line_labels(path: str | Path, fmt: str, max_line_bytes: int = 65536) -> list[LabelledLine]:
    """The lines of a BGL-style labelled log (first token '-' = normal, else a category), in file order;
    the label is stripped before parsing, and blank lines and lines of a label alone are skipped."""
    parser = Parser(fmt)
    out = []
    bare: list[int] = []  # a label and no line: nothing to judge (a detector could never flag it)
    for no, text in _labelled_log_lines(path, max_line_bytes):
        if not text.strip():
            continue
        label, *rest = text.split(None, 1)  # a tab after the label is a separator too
        body = rest[0] if rest else ""
        if not body.strip():
            bare.append(no)
            continue
        out.append(LabelledLine(no, label, body, parser.parse(body)))
    if bare:
        log.warning("%s: %d line(s) hold a label and no log line (line %s%s): left out, as blank lines are",
                    path, len(bare), bare[0], f" and {len(bare) - 1} more" if len(bare) > 1 else "")  # fmt: skip
    _warn_misread(path, parser)
    return out


def _warn_misread(path: str | Path, parser: Parser) -> None:
    """Said before training: a regex --format whose groups fall in the wrong places still matches."""
    said = misread_timestamps(parser)
    if said:
        log.warning("%s: %s; give the log's --format (docs/evaluation.md)", path, said)


def _labelled_log_lines(path: str | Path, max_line_bytes: int) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of a labelled log, without the UTF-8 byte-order mark an editor may have
    put before its first line (it would be part of the first label or line)."""
    for no, (text, _) in enumerate(iter_file_lines(str(path), max_line_bytes), 1):
        yield no, text[1:] if no == 1 and text.startswith("\ufeff") else text


_DATA_LIKE_LABEL = re.compile(r"[\d.:/T+-]*\d[\d.:/T+-]*")  # a number, a date or a time: not a category


def _check_line_labels(path: str, rows: Sequence[LabelledLine], counts: Counter) -> None:
    """Warn when labels look like the line's own data: lines that lost their '-' label are read as
    anomalies labelled with their first field (a timestamp), and the fields after it shift by one."""
    data_like = [lab for lab in counts if lab != NORMAL_LABEL and _DATA_LIKE_LABEL.fullmatch(lab)]
    n = sum(counts[lab] for lab in data_like)
    if n == 0:
        return
    first = next(r for r in rows if r.label in set(data_like))
    log.warning(
        "%s: %d line(s) have a number or a time as their label (first: line %d, label %r), in %d distinct labels; "
        "a line without its label is read as an anomaly labelled with its first field: give every normal line "
        "its '-' first", path, n, first.line_no, first.label, len(data_like),
    )  # fmt: skip


def chronological_split(n: int, train_fraction: float, what: str = "lines") -> int:
    """How many of n items (in order) form the first part; raises when either part would be empty."""
    # exactly, in decimal: 100 x 0.29 is 28.999999999999996 in floating point
    n_first = math.floor(Fraction(str(train_fraction)) * n)
    if n_first < 1 or n_first >= n:
        raise LogravenError(f"--train-fraction {train_fraction} of {n} {what} leaves nothing to train on or to test")
    return n_first


def evaluate_line_labels(
    path: str | Path,
    *,
    labels: str = "bgl",
    config: object | None = None,
    settings: DetectorSettings | None = None,
    setup: Setup | None = None,
    progress: Progress | None = None,
) -> DetectionEvaluation:
    """BGL-style line labels: train on the normal lines of the first part, score the rest line by line."""
    setup = setup or Setup()
    setup.check()
    if labels not in LABEL_SCHEMES:
        raise LogravenError(f"unknown label scheme {labels!r}: lograven knows {', '.join(LABEL_SCHEMES)}")
    path = str(path)
    t_start = time.monotonic()
    key = StreamKey(setup.stream)
    rows = read_line_labels(path, setup.fmt, setup.max_line_bytes)
    if len(rows) < 2:
        raise LogravenError(f"{path}: {len(rows)} labelled lines; need a labelled log (first token '-' or a category)")
    label_counts = Counter(r.label for r in rows)
    _check_line_labels(path, rows, label_counts)
    n_first = chronological_split(len(rows), setup.train_fraction)
    streams = [key.key(path, r.record, r.text) for r in rows]
    # a regex key falls back to the file's stream where it does not match: say so, and refuse a key
    # that never matches (the run would silently be one stream)
    no_key = sum(1 for s in streams if s == path) if setup.stream.startswith("regex:") else 0
    if no_key == len(rows):
        raise LogravenError(
            f"{path}: --stream-key {quoted(setup.stream[len('regex:'):])} matches none of its {len(rows)} lines; "
            "fix the pattern (its group names each line's stream)"
        )
    corpus = Corpus()
    for r, st in zip(rows[:n_first], streams):
        if not r.anomalous:
            corpus.add(path, r.record, st)
    if len(corpus) == 0:
        if label_counts.get("-"):  # normal lines there are, only none in the first part
            raise LogravenError(
                f"{path}: no normal ('-') lines in the first {_pct(setup.train_fraction)} ({n_first} lines), nothing "
                f"to train on; the file's {label_counts['-']} normal lines all come later: raise --train-fraction"
            )
        common = ", ".join(f"{lab!r} ({n})" for lab, n in label_counts.most_common(5))
        raise LogravenError(
            f"{path}: no normal ('-') lines in the first {_pct(setup.train_fraction)}; nothing to train on. The most "
            f"common labels (first tokens) are {common}: --labels bgl needs '-' as the first token of each normal line"
        )
    if len(corpus) < 2:  # train's own message would say "give more or longer log files"
        raise LogravenError(
            f"{path}: only {len(corpus)} normal ('-') line in the first {_pct(setup.train_fraction)} ({n_first} lines), "
            f"too few to train on; raise --train-fraction (the file has {label_counts.get('-', 0)} normal lines)"
        )
    if not any(r.anomalous for r in rows[n_first:]):  # said now, not after minutes of training
        log.warning("%s: no anomalous line in the test part: recall and F1 will be undefined (n/a); give a "
                    "--train-fraction that leaves anomalies to test (Ctrl-C; training goes on)", path)
    settings = settings or DetectorSettings()
    with _Trained(corpus, config, setup, setup.stream, progress) as tr:
        det = Detector(tr.bundle, settings)
        test = range(n_first, len(rows))
        t0 = time.monotonic()
        verdicts: dict[int, Verdict] | None = {} if setup.feedback == "allow" else None
        ev = score(det, [(streams[i], rows[i].record) for i in test], setup.batch_size, progress, verdicts=verdicts)
        t_score = time.monotonic() - t0
        test_labels = [rows[i].label for i in test]
        truth = np.array([rows[i].anomalous for i in test])
        flags = _with_combined(ev.fired)
        results = _counts_by_detector(flags, truth)
        cats: dict[str, dict] = {}
        for lab in sorted(set(test_labels)):
            m = np.array([x == lab for x in test_labels])
            cats[lab] = {"count": int(m.sum()), "flagged": {d: int(f[m].sum()) for d, f in flags.items()}}
        ex = setup.max_examples
        missed = [_line_example(det, ev, j, rows[i].text, rows[i].label, rows[i].line_no)
                  for j, i in enumerate(test) if truth[j] and not flags[COMBINED][j]][:ex]  # fmt: skip
        false_alarms = [_line_example(det, ev, j, rows[i].text, rows[i].label, rows[i].line_no)
                        for j, i in enumerate(test) if not truth[j] and flags[COMBINED][j]][:ex]  # fmt: skip
        feedback = None
        if verdicts is not None:
            from lograven.service import alert_from_verdict

            events = [(j, alert_from_verdict(v, path=path, offset=0, stream=streams[n_first + j], line=rows[n_first + j].text,
                                             record=rows[n_first + j].record, detector=det, host="", version=""))
                      for j, v in sorted(verdicts.items())]  # fmt: skip
            feedback = with_feedback(events, truth, flags[COMBINED])
        elif setup.feedback == "learn":
            feedback = _learn_as_you_go(tr, settings, config, setup, path, rows, streams, list(test), truth,
                                        flags[COMBINED], progress)  # fmt: skip
        return DetectionEvaluation(
            mode="lines", file=path, labels=labels, unit="lines", setup=setup, stream=setup.stream,
            split={"train_fraction": setup.train_fraction, "lines": len(rows), "first_part_lines": n_first,
                   "first_part_anomalies": sum(r.anomalous for r in rows[:n_first]),
                   "training_lines": len(corpus), "test_lines": len(test), "test_anomalies": int(truth.sum()),
                   "unparsed_test_lines": sum(1 for i in test if not rows[i].record.parsed),
                   "lines_without_stream_key": no_key},
            settings=_settings_json(det, settings, tr.seconds, tr.summary, config),
            training=tr.summary, results=results, categories=cats,
            sweep=_sweep(ev, settings, det.sequence_rule_value, _per_line, truth, floor=det.probability_floor),
            sequence_parts=_sequence_parts(det, ev, _per_line, truth), feedback=feedback,
            auc={"autoencoder": roc_auc(ev.ae_error, truth),
                 "sequence": roc_auc(_surprise(ev), truth)},
            missed=missed, false_alarms=false_alarms,
            seconds={"training": round(tr.seconds, 2), "scoring": round(t_score, 2),
                     "total": round(time.monotonic() - t_start, 2)},
            bundle=tr.path,
        )  # fmt: skip


class _FeedbackLearner:
    """The simulated operator's `lograven learn` runs of --feedback learn: each makes a new version from a
    part's false alarms, and scoring goes on with it (`det`) and the same GRU states (type ids are stable
    across `learn`: the streams go on). Counts what it took."""

    def __init__(self, tr: _Trained, settings: DetectorSettings, config: object | None, work: str) -> None:
        self.det = Detector(tr.bundle, settings)
        self.settings, self.training, self.work = settings, getattr(config, "training", None), Path(work)
        self.model = Path(tr.bundle.path)
        self.rounds, self.learned, self.new_types, self.seconds = 0, 0, 0, 0.0

    def learn(self, corpus: Corpus, alarms: int) -> None:
        from lograven.bundle import load_bundle
        from lograven.learning import learn

        t0 = time.monotonic()
        out = self.work / f"v{self.rounds + 1}"
        _, summary = learn(self.model, corpus, out=out, training=self.training)
        self.seconds += time.monotonic() - t0
        states = self.det.export_states()
        self.det = Detector(load_bundle(out), self.settings)
        self.det.import_states(states)
        self.model = out
        self.rounds += 1
        self.learned += alarms
        self.new_types += len(summary.get("new_types", []))

    def result(self, flags: np.ndarray, truth: np.ndarray, every: int, parts: list[dict],
               flagged_before: np.ndarray) -> dict:  # fmt: skip
        return {
            "mode": "learn",
            "results": Counts.from_flags(flags, truth).to_json(),
            "every": every,
            "rounds": self.rounds,
            "false_alarms_learned": self.learned,
            "new_types": self.new_types,
            "learn_seconds": round(self.seconds, 2),
            "parts": parts,  # per part of `every` lines, in order (see _learn_as_you_go, _learn_sessions_as_you_go)
            # anomalous units found without feedback that the learned versions no longer flag
            "anomalies_hidden": int((flagged_before & truth & ~flags).sum()),
        }


def _learn_as_you_go(tr: _Trained, settings: DetectorSettings, config: object | None, setup: Setup, path: str,
                     rows: list[LabelledLine], streams: list[str], test: list[int], truth: np.ndarray,
                     flagged_before: np.ndarray, progress: Progress | None) -> dict:  # fmt: skip
    """--feedback learn: score the test lines again in parts of `feedback_every` lines; after each part, an
    operator runs `lograven learn` on its false alarms (each with the normal lines of its stream before it,
    as `learn --from-alerts` reads them back), and scoring goes on with the new version and the same GRU
    states. What is flagged then, and what it took."""
    from lograven.learning import CONTEXT_BEFORE

    flags = np.zeros(len(test), dtype=bool)
    parts: list[dict] = []  # lines, false alarms, anomalies (flagged), false alarms' line numbers
    items = [(streams[i], rows[i].record) for i in test]
    every = setup.feedback_every
    with tempfile.TemporaryDirectory(prefix="lograven-feedback-") as work:
        op = _FeedbackLearner(tr, settings, config, work)
        for start in range(0, len(test), every):
            end = min(start + every, len(test))
            ev = score(op.det, items[start:end], setup.batch_size)
            flags[start:end] = np.logical_or.reduce([ev.fired[d] for d in DETECTORS])
            false = [j for j in range(start, end) if flags[j] and not truth[j]]
            parts.append({"lines": end - start, "false_alarms": len(false),
                          "anomalies_flagged": int((flags[start:end] & truth[start:end]).sum()),
                          "anomalies": int(truth[start:end].sum()),
                          "false_alarm_lines": [rows[test[j]].line_no for j in false][: setup.max_examples]})  # fmt: skip
            if not false or end == len(test):
                continue
            corpus = Corpus()
            for n, j in enumerate(false):
                i = test[j]
                context = [k for k in range(max(0, i - 4 * CONTEXT_BEFORE), i) if streams[k] == streams[i]]
                for k in [*context[-CONTEXT_BEFORE:], i]:
                    if not rows[k].anomalous:  # the operator knows those lines are not normal
                        corpus.add(path, rows[k].record, f"feedback{op.rounds}.{n}:{streams[k]}")
            corpus.final_ends = dict.fromkeys(corpus.streams, False)  # excerpts: cut, not ended, at their last line
            op.learn(corpus, len(false))
            if progress:
                progress("feedback", end / len(test))
    return op.result(flags, truth, every, parts, flagged_before)


def _per_line(flags: np.ndarray) -> np.ndarray:
    """Line labels are scored per line: no aggregation."""
    return flags


def _surprise(ev: Evidence) -> np.ndarray:
    """-log(p / p_train) per line; NaN where the sequence model did not judge it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.log(ev.seq_ratio)
    if ev.unjudged is not None and ev.unjudged.any():
        out = np.where(ev.unjudged, np.nan, out)
    return out


# ------------------------------------------------------------ sessions
def session_key(pattern: str) -> Callable[[str], str | None]:
    """The session of a line: group 'stream', else group 1, else the whole match of `pattern`; None if none."""
    if pattern.startswith("regex:"):
        pattern = pattern[len("regex:") :]
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise LogravenError(f"--stream-key {quoted(pattern)} is not a valid regular expression ({e})") from None
    group: int | str = "stream" if "stream" in rx.groupindex else (1 if rx.groups else 0)

    def key(text: str) -> str | None:
        m = rx.search(text)
        return (m.group(group) or None) if m else None

    return key


def read_session_labels(path: str | Path) -> dict[str, bool]:
    """session id -> anomalous, from a CSV `BlockId,Label` (Label Normal/Anomaly; 0/1 also accepted)."""
    path = Path(path)
    f = _open_csv(path, "a CSV of BlockId,Label", "--sessions")
    out: dict[str, bool] = {}
    first_at: dict[str, int] = {}  # session id -> the line that labelled it
    with f:
        reader, line_of = _csv_rows(path, f)
        header = next(reader, None)
        if header is None:
            raise LogravenError(f"{path}: empty; give a CSV of BlockId,Label")
        low = [h.strip().lower() for h in header]
        if "label" in low:
            lab_col = low.index("label")
            if "blockid" not in low and len(low) > 2:
                raise LogravenError(
                    f"{path}:1: no BlockId column among {_clip(', '.join(repr(h) for h in header), 200)}; name the session id "
                    "column BlockId (with two columns, the one that is not Label is taken)"
                )
            id_col = low.index("blockid") if "blockid" in low else 1 - lab_col
            rows = reader
        elif len(low) == 2 and low[1] in _ANOMALY_WORDS | _NORMAL_WORDS:  # no header: the first row is data
            id_col, lab_col = 0, 1
            rows = itertools.chain([header], reader)
        else:
            one = len(header) == 1 and any(sep in header[0] for sep in ";\t|")
            hint = " (the header is one column: is the file separated by something other than commas?)" if one else ""
            raise LogravenError(
                f"{path}:1: no Label column in the header ({_clip(', '.join(h.strip() for h in header), 200)}){hint}; "
                "give a CSV of BlockId,Label (Normal/Anomaly), or two such columns without a header"
            )
        for row in rows:
            if not row:
                continue
            no = line_of()  # the line the row starts on (a quoted field may span lines)
            try:
                sid, lab = row[id_col].strip(), row[lab_col].strip().lower()
            except IndexError:
                raise LogravenError(f"{path}:{no}: expected two columns BlockId,Label, got {_clip(repr(row), 200)}") from None
            if lab in _ANOMALY_WORDS:
                anomalous = True
            elif lab in _NORMAL_WORDS:
                anomalous = False
            else:
                raise LogravenError(f"{path}:{no}: label {_clip(repr(row[lab_col]), 80)} is neither Normal nor Anomaly")
            if sid in out and out[sid] != anomalous:
                said = ("Anomaly", "Normal") if anomalous else ("Normal", "Anomaly")
                raise LogravenError(
                    f"{path}:{no}: BlockId {_clip(repr(sid), 80)} is labelled {said[0]} here and {said[1]} on line {first_at[sid]}; "
                    "keep one label per BlockId (delete or correct one of the two lines)"
                )
            first_at.setdefault(sid, no)
            out[sid] = anomalous
    if not out:
        raise LogravenError(f"{path}: no labelled sessions")
    return out


@dataclass
class SessionLines:
    """The labelled sessions of a log: its keyed lines in file order, sessions by first appearance."""

    names: list[str]  # session keys, in order of first appearance
    anomalous: np.ndarray  # bool per session
    session: list[int]  # per line: index into names
    records: list[LogRecord]
    texts: list[str]
    line_nos: list[int]  # 1-based line numbers in the file
    lines_without_key: int = 0
    unlabelled_sessions: int = 0
    unlabelled_lines: int = 0
    labelled_not_in_log: int = 0


def read_sessions(path: str | Path, labels_csv: str | Path, stream_key: str, fmt: str,
                  max_line_bytes: int = 65536) -> SessionLines:  # fmt: skip
    """Lines with a session key that the labels CSV knows, parsed; the rest counted, not kept."""
    labels = read_session_labels(labels_csv)
    key = session_key(stream_key)
    parser = Parser(fmt)
    order: dict[str, int] = {}
    out = SessionLines([], np.zeros(0, dtype=bool), [], [], [], [])
    unlabelled: set[str] = set()
    first_unlabelled: str | None = None
    for no, text in _labelled_log_lines(path, max_line_bytes):
        if not text.strip():
            continue
        k = key(text)
        if k is None:
            out.lines_without_key += 1
            continue
        if k not in labels:
            if first_unlabelled is None:
                first_unlabelled = k
            unlabelled.add(k)
            out.unlabelled_lines += 1
            continue
        out.session.append(order.setdefault(k, len(order)))
        out.records.append(parser.parse(text))
        out.texts.append(text)
        out.line_nos.append(no)
    out.names = list(order)
    out.anomalous = np.array([labels[s] for s in out.names], dtype=bool)
    out.unlabelled_sessions = len(unlabelled)
    out.labelled_not_in_log = len(set(labels) - set(order))
    if len(out.names) < 2 and out.lines_without_key == 0 and not order and first_unlabelled is None:
        raise LogravenError(f"{path}: no lines: give the log the labels CSV ({labels_csv}) describes")
    if len(out.names) < 2:
        seen = (f"the key matched no line ({out.lines_without_key} lines)" if first_unlabelled is None and not order
                else f"the log's first key is {first_unlabelled or next(iter(order))!r}")  # fmt: skip
        raise LogravenError(
            f"{path}: {len(out.names)} labelled sessions found with --stream-key {quoted(stream_key)}: {seen}, the labels "
            f"CSV's first id is {next(iter(labels))!r} ({labels_csv}); make the key take what the CSV names"
        )
    _warn_misread(path, parser)
    return out


def split_sessions(anomalous: np.ndarray, train_fraction: float, mode: str = "pool") -> tuple[np.ndarray, np.ndarray, int]:
    """Which sessions (in order of first appearance) train and which are tested.

    "pool": the first `train_fraction` of all sessions is the pool, its normal sessions train, the
    sessions after it are tested (the pool's anomalies are not used). "normal" (DeepLog's protocol):
    the first `train_fraction` of the normal sessions train, every other session is tested, including
    the anomalous ones among the training sessions. Returns (train mask, test session indices in
    order, number of sessions up to the last training one).
    """
    anomalous = np.asarray(anomalous, dtype=bool)
    S = len(anomalous)
    train_mask = np.zeros(S, dtype=bool)
    if mode == "pool":
        n_pool = chronological_split(S, train_fraction, "sessions")
        train_mask[:n_pool] = ~anomalous[:n_pool]
        return train_mask, np.arange(n_pool, S), n_pool
    if mode != "normal":
        raise ValueError(f"unknown session split {mode!r}")
    normal = np.flatnonzero(~anomalous)
    if len(normal) == 0:
        raise LogravenError("no normal sessions; nothing to train on")
    n_train = chronological_split(len(normal), train_fraction, "normal sessions")
    train_mask[normal[:n_train]] = True
    return train_mask, np.flatnonzero(~train_mask), int(normal[n_train - 1]) + 1


def evaluate_sessions(
    path: str | Path,
    labels_csv: str | Path,
    stream_key: str,
    *,
    config: object | None = None,
    settings: DetectorSettings | None = None,
    setup: Setup | None = None,
    progress: Progress | None = None,
) -> DetectionEvaluation:
    """Session labels: sessions by first appearance; train on the normal ones of the first part; a test
    session is flagged when any of its lines is."""
    setup = setup or Setup()
    setup.check()
    path = str(path)
    t_start = time.monotonic()
    sl = read_sessions(path, labels_csv, stream_key, setup.fmt, setup.max_line_bytes)
    if 2 * sl.labelled_not_in_log > sl.labelled_not_in_log + len(sl.names):
        log.warning("%s: %d of %d labelled sessions of %s never appear in the log; check that the labels CSV belongs "
                    "to this log", path, sl.labelled_not_in_log, sl.labelled_not_in_log + len(sl.names), labels_csv)
    names, line_sess, recs, texts, line_nos = sl.names, sl.session, sl.records, sl.texts, sl.line_nos
    S = len(names)
    anomalous = sl.anomalous
    train_mask, test_sessions, n_pool = split_sessions(anomalous, setup.train_fraction, setup.session_split)
    test_of = np.full(S, -1, dtype=np.int64)  # session -> its index among the test sessions
    test_of[test_sessions] = np.arange(len(test_sessions))
    corpus = Corpus()
    train_sessions: set[int] = set()
    test_idx: list[int] = []
    for i, s in enumerate(line_sess):
        if train_mask[s]:
            corpus.add(path, recs[i], names[s])
            train_sessions.add(s)
        elif test_of[s] >= 0:
            test_idx.append(i)
    if len(corpus) == 0:
        raise LogravenError(f"{path}: no normal sessions in the first {_pct(setup.train_fraction)}; nothing to train on")
    if not anomalous[test_sessions].any():  # said now, not after minutes of training
        log.warning("%s: no anomalous session in the test part: recall and F1 will be undefined (n/a); give a "
                    "--train-fraction that leaves anomalies to test (Ctrl-C; training goes on)", path)
    settings = settings or DetectorSettings()
    stream_spec = regex_stream_spec(stream_key)
    gap = float(getattr(getattr(getattr(config, "detectors", None), "sequence", None), "stream_end_after", 0.0) or 0.0)
    if gap and not setup.stream_end:  # a review: an easy silent mistake (the JSON said stream_end_after 0)
        log.warning("%s: --config sets detectors.sequence.stream_end_after: %g, but without --stream-end (or "
                    "training.sequence.stream_end: true) no stream end is learned or judged in this run", path, gap)
    # With --stream-end and no stream_end_after, the sessions are taken to be complete: the sequence
    # model learns where they end, and each test session is judged as ended after its last line. With
    # detectors.sequence.stream_end_after, sessions are cut where they were silent that long, in
    # training and in the test, as the daemon does (see _segment_ends).
    with _Trained(corpus, config, setup, stream_spec, progress, stream_end=setup.stream_end, complete=True,
                  end_gap=gap) as tr:  # fmt: skip
        det = Detector(tr.bundle, settings)
        t0 = time.monotonic()
        T = len(test_sessions)
        test_names = [names[s] for s in test_sessions]
        # Each session's (or segment's) end is judged right after its last line is scored, as the
        # daemon does once a stream is idle, which also keeps the number of live GRU states bounded.
        cuts: list[int] = []
        if gap and det.judges_stream_ends and tr.summary.get("stream_end_after"):
            # the log's end is its last line's time, whichever session that line belongs to
            t_all = [posix_seconds(r.timestamp) for r in recs]
            log_end = max((t for t in t_all if t == t), default=math.nan)
            finishing, cuts = _segment_ends([names[line_sess[i]] for i in test_idx], [t_all[i] for i in test_idx], gap,
                                            log_end)  # fmt: skip
        else:
            finishing = defaultdict(list)  # scored lines -> sessions complete by then
            last_pos = {line_sess[i]: j for j, i in enumerate(test_idx)}
            for s, j in last_pos.items():
                finishing[j + 1].append(names[s])
        ends: list[StreamEnd] = []
        end_after: list[int] = []  # per end: the position of its stream's last line among the scored lines
        done = [0]

        def judge_ends(n_scored: int) -> None:
            for j in range(done[0] + 1, n_scored + 1):
                if j in finishing:
                    judged = det.end_streams(finishing[j])
                    ends.extend(judged)
                    end_after.extend([j - 1] * len(judged))
            done[0] = n_scored

        verdicts: dict[int, Verdict] | None = {} if setup.feedback == "allow" else None
        ev = score(det, [(names[line_sess[i]], recs[i]) for i in test_idx], setup.batch_size, progress,
                   after_batch=judge_ends if det.judges_stream_ends else None, cuts=cuts, verdicts=verdicts)  # fmt: skip
        end_ev = _end_evidence(ends, {n: s for s, n in enumerate(test_names)}, T)
        t_score = time.monotonic() - t0
        sess_of = np.array([test_of[line_sess[i]] for i in test_idx], dtype=np.int64)
        truth = anomalous[test_sessions]

        def agg(line_flags: np.ndarray) -> np.ndarray:
            out = np.zeros(T, dtype=bool)
            np.logical_or.at(out, sess_of, line_flags)
            return out

        def end_flags(rule: str, v: float) -> np.ndarray:
            """Ends under a sweep row; the row in force judges ends as the detector does (at their own threshold)."""
            if rule == settings.sequence_rule and v == det.sequence_rule_value:
                v = det.end_rule_value
            return sequence_flags(end_ev, rule, v)

        def agg_max(values: np.ndarray) -> np.ndarray:
            out = np.full(T, -np.inf)
            np.fmax.at(out, sess_of, np.nan_to_num(values, nan=-np.inf))
            return out

        flags = {d: agg(f) for d, f in ev.fired.items()}
        flags["sequence"] = flags["sequence"] | end_ev.fired["sequence"]
        flags = _with_combined(flags)
        results = _counts_by_detector(flags, truth)
        cats = {}
        for name, m in (("Anomaly", truth), ("Normal", ~truth)):
            cats[name] = {"count": int(m.sum()), "flagged": {d: int(f[m].sum()) for d, f in flags.items()}}
        lines_of: dict[int, list[int]] = defaultdict(list)
        for j, s in enumerate(sess_of.tolist()):
            lines_of[s].append(j)
        ex = setup.max_examples
        missed = [_session_example(det, ev, test_names[s], lines_of[s], texts, line_nos, test_idx, end_ev, s)
                  for s in range(T) if truth[s] and not flags[COMBINED][s]][:ex]  # fmt: skip
        false_alarms = [_session_example(det, ev, test_names[s], lines_of[s], texts, line_nos, test_idx, end_ev, s)
                        for s in range(T) if not truth[s] and flags[COMBINED][s]][:ex]  # fmt: skip
        feedback = None
        if verdicts is not None:
            from lograven.service import alert_from_end, alert_from_verdict

            timeline = [((j, 0), int(sess_of[j]), alert_from_verdict(
                v, path=path, offset=0, stream=names[line_sess[test_idx[j]]], line=texts[test_idx[j]],
                record=recs[test_idx[j]], detector=det, host="", version="")) for j, v in verdicts.items()]  # fmt: skip
            # an end is judged after its stream's last line (and before any later line)
            timeline += [((j, 1), int(sess_of[j]), alert_from_end(
                e, detector=det, path=path, offset=0, line=texts[test_idx[j]], type_id=int(ev.type_id[j]), host="",
                version="")) for e, j in zip(ends, end_after) if e.anomaly]  # fmt: skip
            timeline.sort(key=lambda t: t[0])
            feedback = with_feedback([(u, a) for _, u, a in timeline], truth, flags[COMBINED])
        elif setup.feedback == "learn":
            feedback = _learn_sessions_as_you_go(
                tr, settings, config, setup, path, recs, line_nos, [names[line_sess[i]] for i in test_idx], test_idx, sess_of,
                truth, finishing, cuts, flags[COMBINED], progress,
            )  # fmt: skip
        return DetectionEvaluation(
            mode="sessions", file=path, labels=str(labels_csv), unit="sessions", setup=setup, stream=stream_spec,
            split={"train_fraction": setup.train_fraction, "session_split": setup.session_split, "sessions": S,
                   "train_pool_sessions": n_pool,
                   "training_sessions": len(train_sessions), "training_lines": len(corpus),
                   "test_sessions": T, "test_anomalies": int(truth.sum()), "test_lines": len(test_idx),
                   "lines_without_key": sl.lines_without_key, "unlabelled_sessions": sl.unlabelled_sessions,
                   "unlabelled_lines": sl.unlabelled_lines, "labelled_sessions_not_in_log": sl.labelled_not_in_log,
                   "unparsed_test_lines": sum(1 for i in test_idx if not recs[i].parsed)},
            settings=_settings_json(det, settings, tr.seconds, tr.summary, config),
            training=tr.summary, results=results, categories=cats,
            sweep=_sweep(ev, settings, det.sequence_rule_value, agg, truth, extra=end_flags, floor=det.probability_floor),
            sequence_parts=_sequence_parts(det, ev, agg, truth, end_ev.fired["sequence"]), feedback=feedback,
            auc={"autoencoder": roc_auc(agg_max(ev.ae_error), truth),
                 "sequence": roc_auc(np.fmax(agg_max(_surprise(ev)), np.nan_to_num(_surprise(end_ev), nan=-np.inf)), truth)},
            missed=missed, false_alarms=false_alarms,
            seconds={"training": round(tr.seconds, 2), "scoring": round(t_score, 2),
                     "total": round(time.monotonic() - t_start, 2)},
            bundle=tr.path,
        )  # fmt: skip


def _learn_sessions_as_you_go(tr: _Trained, settings: DetectorSettings, config: object | None, setup: Setup, path: str,
                              recs: list[LogRecord], line_nos: list[int], streams: list[str], test_idx: list[int],
                              sess_of: np.ndarray,
                              truth: np.ndarray, finishing: dict[int, list[str]], cuts: Sequence[int],
                              flagged_before: np.ndarray, progress: Progress | None) -> dict:  # fmt: skip
    """--feedback learn with sessions: score the test lines again in parts of `feedback_every` lines, judging
    each session's end where the first scoring did. After each part, the operator runs `lograven learn
    --from-alerts` on the part's false alarms (alerts in sessions labelled normal): each alerted line with
    the lines of its session before it (at most CONTEXT_BEFORE), vouched for as `--from-alerts` vouches
    for an alert's line. A session cut there has not ended, but one whose end alerted did, and that end is
    learned as normal. Scoring goes on with the new version and the same GRU states."""
    from lograven.learning import CONTEXT_BEFORE

    T = len(truth)
    index = {n: int(sess_of[j]) for j, n in enumerate(streams)}  # session name -> its row among the test sessions
    lines_flagged = np.zeros(len(test_idx), dtype=bool)
    end_flagged = np.zeros(T, dtype=bool)
    parts: list[dict] = []  # lines, false alarms and sessions, anomalous sessions flagged, false alarms' line numbers
    items = [(streams[j], recs[i]) for j, i in enumerate(test_idx)]
    before: dict[str, list[int]] = defaultdict(list)  # session -> its positions scored so far
    every = setup.feedback_every
    with tempfile.TemporaryDirectory(prefix="lograven-feedback-") as work:
        op = _FeedbackLearner(tr, settings, config, work)
        for start in range(0, len(items), every):
            end = min(start + every, len(items))
            ended_here: list[tuple[str, int]] = []  # (session, position of its last line) for ends that alerted
            done = [start]

            def judge(n_local: int, start: int = start, done: list[int] = done,
                      ended_here: list[tuple[str, int]] = ended_here) -> None:  # fmt: skip
                for n in range(done[0] + 1, start + n_local + 1):
                    for e in op.det.end_streams(finishing[n]) if n in finishing else ():
                        if e.anomaly:
                            end_flagged[index[e.stream]] = True
                            ended_here.append((e.stream, n - 1))
                done[0] = start + n_local

            ev = score(op.det, items[start:end], setup.batch_size, after_batch=judge if op.det.judges_stream_ends else None,
                       cuts=[c - start for c in cuts if start < c < end])  # fmt: skip
            fired = np.logical_or.reduce([ev.fired[d] for d in DETECTORS])
            lines_flagged[start:end] = fired
            for j in range(start, end):
                before[streams[j]].append(j)
            false_lines = [j for j in range(start, end) if fired[j - start] and not truth[sess_of[j]]]
            false_ends = [(n, j) for n, j in ended_here if not truth[index[n]]]
            parts.append({"lines": end - start, "false_alarms": len(false_lines) + len(false_ends),
                          "false_sessions": len({int(sess_of[j]) for j in false_lines} | {index[n] for n, _ in false_ends}),
                          "anomalous_sessions_flagged": len({int(sess_of[j]) for j in range(start, end) if fired[j - start]
                                                             and truth[sess_of[j]]}
                                                            | {index[n] for n, _ in ended_here if truth[index[n]]}),
                          "false_alarm_lines": [line_nos[test_idx[j]] for j in false_lines][: setup.max_examples]})  # fmt: skip
            if (not false_lines and not false_ends) or end == len(items):
                continue
            corpus = Corpus()
            alerts = [(j, False) for j in false_lines] + [(j, True) for _, j in false_ends]
            latest: dict[str, tuple[int, bool]] = {}  # session -> its last alerted position here, an end?
            for j, is_end in alerts:
                corpus.vouched.append(recs[test_idx[j]].message)
                s = streams[j]
                latest[s] = max(latest.get(s, (j, is_end)), (j, is_end))
            for s, (j, is_end) in latest.items():  # one stretch per session, as `--from-alerts` joins overlaps
                for k in [k for k in before[s] if k <= j][-(CONTEXT_BEFORE + 1) :]:
                    corpus.add(path, recs[test_idx[k]], f"feedback{op.rounds}:{s}")
                corpus.final_ends[f"feedback{op.rounds}:{s}"] = is_end
            op.learn(corpus, len(alerts))
            if progress:
                progress("feedback", end / len(items))
    flags = np.zeros(T, dtype=bool)
    np.logical_or.at(flags, sess_of, lines_flagged)
    flags |= end_flagged
    return op.result(flags, truth, every, parts, flagged_before)


def _segment_ends(streams: Sequence[str], times: Sequence[float], gap: float,
                  log_end: float | None = None) -> tuple[dict[int, list[str]], list[int]]:  # fmt: skip
    """Where the daemon, with `stream_end_after` = gap, would end streams in these lines (silence_ends, as
    training cut them): {number of lines scored: streams ending there}, and the points where scoring must
    pause so that an end is judged before its stream resumes."""
    ends, resumes = silence_ends(streams, times, gap, log_end)
    finishing: dict[int, list[str]] = defaultdict(list)
    for j, s in enumerate(streams):
        if ends[j]:
            finishing[j + 1].append(s)
    return finishing, [j + 1 for j, r in enumerate(resumes) if r]


def _end_evidence(ends: Sequence[StreamEnd], index: dict[str, int], n: int) -> Evidence:
    """The sequence detector's judgement of each session's end, as evidence with one row per session
    (with stream_end_after a session can end more than once: its most surprising end, flagged if any is)."""
    ev = Evidence(
        type_id=np.zeros(n, dtype=np.int64), seq_p=np.full(n, np.nan), seq_rank=np.zeros(n, dtype=np.int64),
        seq_ratio=np.full(n, np.nan), ae_error=np.full(n, np.nan),
        fired={d: np.zeros(n, dtype=bool) for d in DETECTORS}, expected=[[] for _ in range(n)],
    )  # fmt: skip
    for e in ends:
        i = index[e.stream]
        if not ev.seq_ratio[i] <= e.ratio:  # NaN (first end) or a more surprising end
            ev.seq_p[i], ev.seq_rank[i], ev.seq_ratio[i] = e.p, e.rank, e.ratio
            ev.expected[i] = [t for t, _ in e.expected]
        ev.fired["sequence"][i] |= e.anomaly
    return ev


def _session_example(
    det: Detector, ev: Evidence, name: str, lines: list[int], texts: list[str], line_nos: list[int], test_idx: list[int],
    end_ev: Evidence | None = None, s: int = 0,
) -> dict:
    """A session's type sequence and the lines that fired (or, if none did, its least expected lines)."""
    fired = [j for j in lines if any(ev.fired[d][j] for d in DETECTORS)]
    if fired:
        show = fired[:5]
    else:
        ratio = np.nan_to_num(ev.seq_ratio[lines], nan=np.inf)
        show = [lines[k] for k in np.argsort(ratio, kind="stable")[:3]]
    return {
        "session": name,
        "lines": len(lines),
        "types": [int(ev.type_id[j]) for j in lines],
        "max_ae_error": _f(np.nanmax(ev.ae_error[lines])) if np.any(~np.isnan(ev.ae_error[lines])) else None,
        "min_sequence_ratio": _f(np.nanmin(ev.seq_ratio[lines])) if np.any(~np.isnan(ev.seq_ratio[lines])) else None,
        "shown": [_line_example(det, ev, j, texts[test_idx[j]], "", line_nos[test_idx[j]]) for j in show],
        "end": None if end_ev is None or np.isnan(end_ev.seq_p[s]) else {
            "flagged": bool(end_ev.fired["sequence"][s]), "p": _f(end_ev.seq_p[s]), "ratio": _f(end_ev.seq_ratio[s]),
            "rank": int(end_ev.seq_rank[s]),
            "expected": [{"type": t, "template": det.template(t)} for t in end_ev.expected[s]],
        },
    }


# detector_settings' overrides: DetectorSettings field -> (command-line option, the config option it overrides)
OVERRIDES: dict[str, tuple[str, str]] = {
    "sequence_rule": ("--sequence-rule", "detectors.sequence.rule"),
    "sequence_relative_threshold": ("--relative-threshold", "detectors.sequence.relative_threshold"),
    "sequence_threshold": ("--threshold", "detectors.sequence.threshold"),
    "sequence_top_k": ("--top-k", "detectors.sequence.top_k"),
    "autoencoder_margin": ("--ae-margin", "detectors.autoencoder.margin"),
}


def check_overrides(base: DetectorSettings, override: dict[str, object]) -> None:
    """Refuse command-line overrides (OVERRIDES) that the config would refuse for the options they override:
    the same checks (config.parse_config, from the options' metadata) and words, naming the command-line option."""
    from lograven.config import ConfigError, parse_config

    data: dict[str, dict[str, object]] = {}
    for name, value in override.items():
        if name not in OVERRIDES:
            continue  # other DetectorSettings fields: not command-line options
        _, section, key = OVERRIDES[name][1].split(".")
        data.setdefault(section, {})[key] = value
    try:
        parse_config({"detectors": data}, source="command line")
    except ConfigError as e:
        by_key = {key: (name, option) for name, (option, key) in OVERRIDES.items()}
        lines = []
        for key, problem in e.problems:
            if key not in by_key:  # not one option's (none so far)
                lines.append(f"{key}: {problem}")
                continue
            name, option = by_key[key]
            lines.append(f"{option}: {problem}; fix the value, or drop {option} to use {key} as configured "
                         f"({getattr(base, name)!r})")  # fmt: skip
        raise LogravenError("\n".join(lines)) from None


def detector_settings(config: object | None, **override) -> DetectorSettings:
    """DetectorSettings from a config's detectors section, with command-line overrides (None = keep),
    checked as the config checks the options they override (OVERRIDES)."""
    base = DetectorSettings()
    if config is not None:
        runtime = getattr(config, "runtime", None)
        kw = {"max_streams": runtime.max_streams} if runtime is not None else {}
        base = DetectorSettings.from_config(config.detectors, **kw)  # type: ignore[attr-defined]
    kw = {k: v for k, v in override.items() if v is not None}
    check_overrides(base, kw)
    s = replace(base, **kw)
    if s.sequence_rule not in SWEEP:
        raise LogravenError(f"unknown sequence rule {s.sequence_rule!r}: use relative, probability or top_k")
    return s


def dumps(result: TypesEvaluation | DetectionEvaluation) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if o != o else float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = [
    "COMBINED", "OVERRIDES", "Counts", "DetectionEvaluation", "Evidence", "FEEDBACK", "GroupingError", "Operator", "LabelledLine", "SWEEP",
    "SessionLines", "Setup", "TypesEvaluation", "best_f1", "check_overrides", "chronological_split", "detector_settings", "dumps",
    "evaluate_line_labels", "evaluate_sessions", "evaluate_types", "grouping_accuracy", "grouping_errors",
    "message_types_for", "prf", "read_line_labels", "read_session_labels", "read_sessions", "read_structured",
    "regex_stream_spec", "roc_auc", "score", "sequence_flags", "session_key", "warn_unparsed", "with_feedback",
]
