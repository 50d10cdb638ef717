"""The corrective action (seed 003): learn new normal data into an existing bundle.

A flagged-but-legitimate pattern is learned without starting over:
- message types: existing ids and templates never change; messages no type
  matches become new types with new ids;
- the GRU and the autoencoder keep their weights and are fine-tuned on the
  new data mixed with a replay sample of the old (kept in the bundle), so
  they learn the new without forgetting the old; the GRU's embedding and
  output grow for the new types;
- the autoencoder threshold is recalibrated;
- the result is a new bundle version (in a model directory: a new numbered
  version, made `current` atomically, which a running daemon picks up).
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from lograven.alerts import END_RULE_PREFIX
from lograven.autoencoder import Autoencoder
from lograven.bundle import load_bundle, save_bundle
from lograven.detector import DetectorSettings
from lograven.errors import LogravenError
from lograven.masking import Masker
from lograven.modelstore import ModelStore, resolve_model_path
from lograven.msgtypes import MessageTypes
from lograven.osutil import (
    COMPRESSION_MAGIC_BYTES,
    DECOMPRESSION_ERRORS,
    DECOMPRESSED_KINDS,
    compression_of,
    open_decompressed,
    glob_matches,
    read_limited,
    rotated_generations,
)
from lograven.parsing import Parser, StreamKey, decode_line
from lograven.sequence import SequenceModel, kept_count, tail_quantile
from lograven.training import (
    Corpus,
    ae_text,
    load_replay,
    replay_files,
    require_tensorflow,
    stream_segments,
    streams_ended,
    with_final_ends,
    type_frequencies_of,
    type_sequences,
)

log = logging.getLogger(__name__)

CONTEXT_BEFORE = 64  # lines of context read before an alerted line (the GRU needs the history)
CONTEXT_AFTER = 8


def corpus_from_alerts(alerts_path: str | Path, *, fmt: str, stream: str, ids: set[str] | None = None, max_line_bytes: int = 65536,
                       sources: Sequence[tuple[Sequence[str], str, str]] = (),
                       context_from: Sequence[str] | None = None) -> Corpus:  # fmt: skip
    """The alerted lines with their context, read back from the original files at the alerts' offsets.

    Each alert's lines are parsed as the daemon parsed them: with the format and stream of the first of
    `sources` ((path patterns, format, stream), the config's) whose patterns match the alert's file,
    else with `fmt` and `stream`.

    `context_from`: path patterns (the config's sources) of the files whose lines may be read for
    context, and their rotated names beside them (`messages.1`, `messages-20261206`); None reads any.
    An alerts file is partly attacker-written data (the daemon's user writes it, a logged line
    becomes an alert), and `learn` may run as root: a forged alert must not make it read, and put
    into a model, a file the forger cannot read. Links are not followed to the file either."""
    path = Path(alerts_path)
    try:
        text = read_limited(path, ALERTS_MAX_BYTES, errors="replace")
    except FileNotFoundError:
        raise LogravenError(f"{path}: no such alerts file; give the JSON-lines alert file (alerts.jsonl.path in the config)") from None
    except OSError as e:
        raise LogravenError(f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    rows, bad = [], []
    # records end with "\n" only: a logged line may hold U+2028 or U+0085, which str.splitlines splits on
    for i, x in enumerate(text.split("\n"), 1):
        if not x.strip():
            continue
        try:
            row = json.loads(x)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("line"), str):  # an alert has its line (docs/alerts.md)
            rows.append(row)
        else:  # (a review: {"id": 5} had been learned as an alert of a file named "")
            bad.append(i)
    if bad and not rows:
        raise LogravenError(f"{path}: not a JSON-lines alert file (line {bad[0]} is not a JSON object); "
                            "give the file of alerts.jsonl.path")
    if bad:
        log.warning("%s: %d line(s) are not alerts and were skipped (first: line %d)", path, len(bad), bad[0])
    everything = rows
    if ids:
        rows = [r for r in rows if r.get("id") in ids]
        missing = ids - {r.get("id") for r in rows}
        if missing:
            raise LogravenError(f"{path}: no alert with id {', '.join(sorted(missing))}")
    default = (Parser(fmt), StreamKey(stream))
    by_source = [(patterns, (Parser(f), StreamKey(k))) for patterns, f, k in sources]

    def reader(file: str) -> tuple[Parser, StreamKey]:
        target = os.path.abspath(file)
        for patterns, pk in by_source:
            if any(glob_matches(target, os.path.abspath(os.path.expanduser(p))) for p in patterns):
                return pk
        return default

    def where_of(r: dict) -> str:
        # a line read after its file was rotated: its offset is in the rotated file (the alert's read_from)
        return str(r.get("read_from") if r.get("read_from") not in (None, "(deleted)") else r.get("file", ""))

    def offset_of(r: dict) -> int:
        try:
            return int(r.get("offset", -1))
        except (TypeError, ValueError):
            return -1

    def is_end(r: dict) -> bool:
        hits = r.get("detectors")
        return isinstance(hits, list) and any(
            isinstance(h, dict) and str(h.get("rule", "")).startswith(END_RULE_PREFIX) for h in hits
        )

    # With named alerts (--alert ID), the other alerts' lines are not learned as context: the operator
    # vouched for the named ones only, and a line learned as normal no longer alerts (nor, as a learned
    # type, is it a rare type). A stretch of context stops before them.
    # By offset and line: an alert read before its file was rotated names the file's old name, one read
    # after it the rotated name, and an older generation of the file has other lines at those offsets.
    def at_line(r: dict) -> tuple[int, str]:
        return offset_of(r), str(r.get("line", ""))[:ALERT_LINE_CHARS]

    named = {at_line(r) for r in rows}
    others = {at_line(r) for r in everything if r.get("id") not in (ids or ())} - named if ids else set()
    corpus = Corpus()
    # Where stream-end alerts' lines are: there their streams did end. By the alert's file, offset and
    # line, since such a line may come in the stretch of an earlier alert (its context after, or a line
    # alert on it), read from a rotated name; the text tells it from another line at that offset.
    end_at: dict[tuple[str, int], set[str]] = {}
    for r in rows:
        if is_end(r):
            end_at.setdefault((str(r.get("file", "")), offset_of(r)), set()).add(str(r.get("line", ""))[:ALERT_LINE_CHARS])
    end_lines: set[int] = set()
    taught: set[tuple[str, int, str]] = set()  # the end alerts' lines found in a stretch
    # Alerts close together in one file (a burst) have overlapping contexts: that stretch of the file is
    # learned once, as one stream, not once per alert (an audit's 961 alerts made 70,153 lines of a
    # 45,461-line file). By file and offset, so that overlaps meet.
    last: dict[str, tuple[int, int]] = {}  # file -> (its stream's number, start of the last line learned)
    packed = _Packed()  # compressed generations, each decompressed once (closed at the end, or when collected)
    for n in sorted(range(len(rows)), key=lambda i: (where_of(rows[i]), offset_of(rows[i]))):
        r = rows[n]
        line = r.get("line", "")
        parser, key = reader(str(r.get("file", "")))
        where = where_of(r)
        try:
            if r.get("file") == "stdin" and not r.get("read_from"):
                lines = []  # plugin mode (`run --stdin`): no file to read the lines around it from
            elif context_from is not None and not _may_read_for_context(str(r.get("file", "")), where, context_from):
                log.warning("%s: alert %s names a file outside the sources of the configuration (--config); learning its own line without "
                            "the lines around it", where, r.get("id"))  # fmt: skip
                lines = []
            else:
                lines = _context(where, offset_of(r), max_line_bytes, line, packed)
        except OSError as e:
            unread = e  # gone (ENOENT): maybe rotated and compressed beside it, looked for below
            lines = None
        else:
            unread = None
        if unread is not None and unread.errno != errno.ENOENT:
            lines = _unreadable(where, r, unread)
        if lines is None:
            # rotated since the alert: the line is at the same offset of a generation of the file beside it
            # (a soak: 9 of 15 alerts learned without context), plain or compressed since; each candidate is
            # checked against the alert's line. Generations of the alert's file, found in the folder it was
            # read from (the tailer names a rotated file by its resolved path), which hold its rotated name
            # (read_from) once that is rotated on or compressed too.
            base = os.path.join(os.path.dirname(os.path.abspath(where)), os.path.basename(str(r.get("file", ""))))
            plain, compressed = rotated_generations(base)
            tried = sorted(plain + compressed, key=lambda g: g[1].st_mtime, reverse=True)
            for cand, _ in [g for g in tried if g[0] != os.path.abspath(where)][:MAX_GENERATIONS_TRIED]:
                if context_from is not None and not _may_read_for_context(str(r.get("file", "")), cand, context_from):
                    continue
                try:
                    got = _context(cand, offset_of(r), max_line_bytes, line, packed)
                except OSError:
                    continue
                if got is not None:
                    log.info("alert %s: its line is now in %s (rotated since): learning it with the lines around it "
                             "there", r.get("id"), cand)  # fmt: skip
                    lines, where = got, cand
                    break
        if lines is None and unread is not None:
            lines = _unreadable(where, r, unread)
        if lines is None:
            log.warning(
                "%s: byte %s no longer holds the line of alert %s (the file was rotated or rewritten since, and no "
                "generation beside it holds it there: the newest %d are tried, those compressed with gzip, bzip2 "
                "or xz decompressed); learning the alert's own line without its context",
                r.get("file"), r.get("offset"), r.get("id"), MAX_GENERATIONS_TRIED,
            )  # fmt: skip
        elif lines and others:
            at = offset_of(r)
            alerted = [i for i, (o, t) in enumerate(lines) if (o, t[:ALERT_LINE_CHARS]) in others]
            if alerted:
                first = max((i for i in alerted if lines[i][0] < at), default=-1) + 1
                stop = min((i for i in alerted if lines[i][0] > at), default=len(lines))
                log.info("the lines around alert %s hold %d other alert(s) not named with --alert: the context "
                         "learned stops before them", r.get("id"), len(alerted))
                lines = lines[first:stop]
        own = parser.parse(line) if isinstance(line, str) and line.strip() else None
        if own is not None:
            corpus.vouched.append(own.message)
        group = n
        if lines:
            if where in last and lines[0][0] <= last[where][1]:  # overlaps the stretch before: continue it
                group, seen = last[where]
                lines = [(o, t) for o, t in lines if o > seen]
            if lines:
                last[where] = (group, lines[-1][0])
            texts, alone = lines, False
        else:
            texts, alone = [(offset_of(r), line)], True  # the file is gone or changed: the line alone still teaches types and the autoencoder
        for at, text in texts:
            if text.strip():
                rec = parser.parse(text)
                here = (str(r.get("file", "")), at)
                if not alone and text[:ALERT_LINE_CHARS] in end_at.get(here, ()):
                    end_lines.add(len(corpus))  # (a line alone would teach that a session of one line ends)
                    taught.add((*here, text[:ALERT_LINE_CHARS]))
                # each stretch of context is its own little stream
                corpus.add(r.get("file", "alerts"), rec, f"alert{group}:{key.key(r.get('file', ''), rec, text)}")
    packed.close()
    # A stretch of context stops where it was cut, not where its streams stopped: no stream ends there,
    # but a stream-end alert's stream, whose last line the operator says is a normal end.
    final: dict[str, int] = {}
    for i, s in enumerate(corpus.streams):
        final[s] = i
    corpus.final_ends = {s: i in end_lines for s, i in final.items()}
    for r in rows:
        if is_end(r) and (str(r.get("file", "")), offset_of(r), str(r.get("line", ""))[:ALERT_LINE_CHARS]) not in taught:
            log.warning("alert %s is a stream end whose line cannot be read back from %s: its line alone does not teach "
                        "that the stream may end there; allowlist it instead (lograven allow %s, with --alerts %s "
                        "unless that is the configured alerts file)", r.get("id"), r.get("file"), r.get("id"), path)  # fmt: skip
    return corpus


ALERT_LINE_CHARS = 512  # an alert's line is compared with the file's on its first 512 characters (a stream end keeps 512)


ALERTS_MAX_BYTES = 2**30  # an alerts file larger than 1 GiB is not read whole (a link to /dev/zero is not read forever)


MAX_GENERATIONS_TRIED = 5  # rotated copies of a file searched for an alert's line, newest first

PACKED_BUDGET = 4 * 2**30  # bytes decompressed for alerts' context in one learn run, all files together
_CHUNK = 2**20


class _Packed:
    """The compressed generations one `learn --from-alerts` run reads for context. Each is decompressed
    once, forward: alerts come in offset order, and the last stretch read is kept for the next alert's
    lines before it (a review: each alert had decompressed its generation from the start again, 961
    alerts in 1 GB generations an hour). Its size is known once its end was read; the run decompresses
    PACKED_BUDGET bytes at most (a small archive of zeros, or alerts forged with huge offsets, cost
    nothing then), after which compressed generations are not read and the log says so."""

    def __init__(self, budget: int | None = None, keep: int = 2**20) -> None:
        self.budget, self.keep = PACKED_BUDGET if budget is None else budget, keep
        self.spent_said = False
        self._files: dict[tuple[int, int], dict] = {}  # (device, inode) -> its open stream and window

    def read(self, path: str, fd: int, kind: str, start: int, end: int) -> bytes | None:
        """Bytes [start, end) of the decompressed file open as `fd` (taken: kept open or closed), fewer
        at its end; None when `start` is beyond its end or the budget is spent. OSError when damaged."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        f = self._files.get(key)
        if f is not None and start < f["base"]:  # behind the window: read again from the start
            self._close(key)
            f = None
        if f is None:
            raw = os.fdopen(fd, "rb")
            f = self._files[key] = {"raw": raw, "z": open_decompressed(kind, raw, path), "base": 0, "buf": b"", "eof": False}
        else:
            os.close(fd)
        try:
            while f["base"] + len(f["buf"]) < end and not f["eof"]:
                if self.budget <= 0:
                    if not self.spent_said:
                        self.spent_said = True
                        log.warning("%s: %.3g GiB decompressed for alerts' context in this run: compressed "
                                    "generations are not read any further (their alerts' lines are learned "
                                    "alone); decompress the generation that holds them and learn from it",
                                    path, PACKED_BUDGET / 2**30)  # fmt: skip
                    return None
                chunk = f["z"].read(min(_CHUNK, self.budget))
                self.budget -= len(chunk)
                if not chunk:
                    f["eof"] = True
                buf = f["buf"] + chunk
                cut = max(0, len(buf) - max(self.keep, end - start))  # the window: never less than asked
                cut = min(cut, max(0, start - f["base"]))  # ... nor past what is asked
                f["buf"], f["base"] = buf[cut:], f["base"] + cut
        except DECOMPRESSION_ERRORS as e:  # damaged or truncated
            self._close(key)
            raise OSError(errno.EIO, f"{kind}-compressed but cannot be decompressed ({e})", path) from None
        except OSError:
            self._close(key)
            raise
        if start >= f["base"] + len(f["buf"]):
            return None  # beyond its end
        return f["buf"][start - f["base"] : end - f["base"]]

    def _close(self, key: tuple[int, int]) -> None:
        f = self._files.pop(key)
        try:
            f["z"].close()
        finally:
            f["raw"].close()

    def close(self) -> None:
        for key in list(self._files):
            self._close(key)


def _unreadable(where: str, alert: dict, e: OSError) -> list:
    """Says that an alert's file cannot be read for its context; the alert's own line is learned alone."""
    log.warning(
        "%s: cannot read it for the lines around alert %s (%s); learning the alert's own line without its "
        "context, which teaches its message type but not the order (a sequence alert may come back): run "
        "as a user who can read it, or while the file is still there", where, alert.get("id"), e.strerror or e,
    )  # fmt: skip
    return []


def _may_read_for_context(file: str, where: str, patterns: Sequence[str]) -> bool:
    """Whether `where` (the alert's file, or where it was read from after a rotation) is a file of the
    configured sources, or a rotated name of one in the same directory, with no link on the way (a
    link in a directory another user owns could lead anywhere)."""
    target = os.path.abspath(file)
    if not any(glob_matches(target, os.path.abspath(os.path.expanduser(p))) for p in patterns):
        return False
    real = os.path.abspath(where)
    folder = os.path.dirname(real)
    if os.path.realpath(folder) != folder:  # a link on the way: a source under a linked directory gets no context
        return False
    # beside the source's file; the tailer names a rotated file by its resolved path
    if folder not in (os.path.dirname(target), os.path.realpath(os.path.dirname(target))):
        return False
    return real == target or os.path.basename(real).startswith(os.path.basename(target))


def _context(file: str, offset: int, max_line_bytes: int, line: str | None = None,
             packed: _Packed | None = None) -> list[tuple[int, str]] | None:
    """The lines around `offset` in `file`, each with the byte offset where it starts; None when the line
    starting at `offset` is not `line` (the file was rotated, truncated or rewritten since the alert).
    OSError when it cannot be read. A file compressed with gzip, bzip2 or xz (a rotated generation) is
    read decompressed, through `packed` (its budget, and each file read once forward for all alerts)."""
    if offset < 0 or (line is not None and not line.strip()):
        return []  # nothing to check the file against: never read a file on an alert's word alone
    fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # no link, no FIFO that blocks
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", file)
    start = max(0, offset - CONTEXT_BEFORE * 400)
    after_bytes = CONTEXT_AFTER * 400 + max_line_bytes
    kind = compression_of(os.pread(fd, COMPRESSION_MAGIC_BYTES, 0))
    if kind is not None:
        if kind not in DECOMPRESSED_KINDS or packed is None:
            os.close(fd)
            return None  # zstd: not in the standard library; the line is not looked for there
        got = packed.read(file, fd, kind, start, offset + after_bytes)  # takes the descriptor
        if got is None:
            return None  # beyond its end, or the run's budget spent
        before, after = got[: offset - start], got[offset - start :]
    else:
        with os.fdopen(fd, "rb") as raw:
            raw.seek(start)
            before = raw.read(offset - start)
            after = raw.read(after_bytes)
    pieces, at = [], start
    for p in before.split(b"\n"):
        pieces.append((at, p))
        at += len(p) + 1
    pre = pieces[1:] if start > 0 else pieces  # the first piece may be cut
    pre = [(o, p) for o, p in pre if p and o < offset][-CONTEXT_BEFORE:]
    post, at = [], offset
    # the last piece has no newline: cut by the read, or still being written (the daemon would not have
    # read it yet); not a line to learn. The alert's own line, the first, is checked below either way.
    ahead = after.split(b"\n")
    ahead = ahead[:-1] if len(ahead) > 1 else ahead
    for p in ahead[: CONTEXT_AFTER + 1]:
        post.append((at, p))
        at += len(p) + 1
    if line is not None:
        here = decode_line(post[0][1], max_line_bytes)[0] if post else ""
        if not here.strip() or here[:ALERT_LINE_CHARS] != line[:ALERT_LINE_CHARS]:
            return None
    return [(o, decode_line(b, max_line_bytes)[0]) for o, b in pre + post if b]


def learn(
    model: str | Path,
    corpus: Corpus,
    *,
    out: str | Path | None = None,
    training: object | None = None,
    progress: Callable[[str, float], None] | None = None,
    source: str = "",
    keep_newer_current: bool = False,
    out_option: str = "--out",
    read_as: dict[str, str] | None = None,
) -> tuple[Path, dict]:
    """Fine-tune `model` (a bundle, or a model directory's current version) on `corpus`; returns (new path, summary).

    keep_newer_current (periodic relearning): when `current` moved away from the base while learning
    (an admin's `lograven learn` or rollback), the new version is saved but not made current, so an
    admin's correction is never undone by a background job. `summary["made_current"]` says which.
    read_as: the format and stream the corpus was read with, when not the parent's (`learn --format`)."""
    t0 = time.monotonic()
    require_tensorflow()
    model = Path(model)
    store = ModelStore(model) if (model / "current").is_symlink() else None
    if store is not None:
        resolve_model_path(model)  # a `current` pointing at no version: says to roll back, not to train
    base_path = store.current_path() if store else model
    if base_path is None:
        raise LogravenError(f"{model}: no current model version")
    if store is None and out is None:
        raise LogravenError(
            f"{model} is a single bundle: give --out DIR for the new version, "
            "or use a model directory with numbered versions (the daemon's <state_dir>/models)"
        )
    if len(corpus) == 0:
        raise LogravenError("no lines to learn from")
    base = load_bundle(base_path)
    seed = int(getattr(training, "seed", 42))

    # 1. message types: stable ids, new types for what nothing matches
    types = MessageTypes.from_json(base.types.to_json())
    old_tokens = {t.id: list(t.tokens) for t in types.types_}
    new_ids = types.update(corpus.messages, named=corpus.messages if corpus.vouch_all else corpus.vouched)
    assert all(types.get(i).tokens == tok for i, tok in old_tokens.items())  # ids never move
    type_ids = types.predict(corpus.messages)
    # The operator vouched for these lines: their types are never rare types for the sequence
    # detector (detectors.sequence.rare_count), however few lines of them there are.
    for t in set(type_ids.tolist()) - {0}:
        types.get(int(t)).learned = True
    # and the types of the lines the operator named as normal are vouched for: while a type `learn`
    # made has few lines, where it appears is not judged (Detector.unjudged_type). Not the types of
    # an alert's context: an unknown line near a false alarm (anyone's `logger` line) is learned as a
    # type, but stays judged by where it comes.
    named = type_ids.tolist() if corpus.vouch_all else types.predict(corpus.vouched).tolist() if corpus.vouched else []
    for t in set(named) - {0}:
        types.get(int(t)).vouched = True
    if progress:
        progress("message types", 1.0)

    # 2. sequence GRU: fine-tune on new + replay of old
    replay_seqs, replay_texts, replay_ended = load_replay(base.path, base.sequence.n_types_)
    if not replay_seqs:
        log.warning("%s has no replay sample (older bundle): fine-tuning on the new data alone may forget old patterns", base.path)
    # a model that learned stream ends at silences (detectors.sequence.stream_end_after at training)
    # learns the new lines' ends the same way
    gap = base.stream_end_after if base.sequence.params.stream_end else 0.0
    if gap and any(t == t for t in corpus.times):
        new_seqs, ended = stream_segments(corpus.streams, corpus.times, type_ids, gap)
    else:
        new_seqs, ended = type_sequences(corpus.streams, type_ids), streams_ended(corpus.streams)
    if corpus.final_ends:
        ended = with_final_ends(corpus.streams, ended, corpus.final_ends)
    n_new = sum(len(s) for s in new_seqs)
    replay_seqs = _budget(replay_seqs, max(2 * n_new, 10_000))
    if base.sequence.params.stream_end and replay_ended is not None:
        # Where the replayed streams ended, so that fine-tuning keeps seeing ends: new lines cut out of a
        # longer log (`--from-alerts`) hold none, and a model fine-tuned without any would forget them and
        # stop judging ends.
        replay_ended = replay_ended[: len(replay_seqs)]
    elif base.sequence.params.stream_end and not gap:
        # A bundle trained before the flags were kept: its replay is the tails of its longest training
        # streams, taken as ended (most sessions end inside the data).
        replay_ended = [True] * len(replay_seqs)
    else:
        replay_ended = None
        if base.sequence.params.stream_end and replay_seqs:
            # ... but with stream_end_after its replay joined each stream's segments: ended there, they
            # would teach that a rest is followed by more lines, never by an end, and every rest would alert
            log.warning("%s was trained before lograven kept where its replayed streams end: the new version may "
                        "judge normal stream ends as improbable, or stop judging ends; retrain it (lograven train) "
                        "to keep them", base.path)  # fmt: skip
            replay_ended = [False] * len(replay_seqs)  # as fit replays them: kept in the new version's replay
    sp = replace(base.sequence.params, epochs=min(base.sequence.params.epochs, 10))
    seq = SequenceModel(sp).fit(
        new_seqs, types.n_types, seed=seed, init_weights=base.sequence.members_, replay=replay_seqs, progress=progress,
        type_freq=type_frequencies_of(types), ended=ended, replay_ended=replay_ended,
    )
    seq.validation_ = keep_lowest_cuts(base.sequence.validation_, seq.validation_)

    # 3. autoencoder: same tokenizer, fine-tuned, threshold recalibrated
    masker = Masker(types.extra_masks)
    new_texts = [ae_text(masker, p, m) for p, m in zip(corpus.programs, corpus.messages)]
    rng = np.random.default_rng(seed)
    if len(replay_texts) > 2 * len(new_texts) + 5000:
        replay_texts = [replay_texts[i] for i in rng.choice(len(replay_texts), 2 * len(new_texts) + 5000, replace=False)]
    ap = replace(base.autoencoder.params, epochs=min(base.autoencoder.params.epochs, 5))
    ae = Autoencoder(ap)
    ae.length_ = base.autoencoder.length_
    tokenizer = base.autoencoder.tokenizer_
    assert tokenizer is not None
    new_words = grow_vocabulary(tokenizer, new_texts, replay_texts, base.autoencoder.params.vocab_size)
    ae.fit(new_texts + replay_texts, seed=seed, tokenizer=tokenizer, init_weights=base.autoencoder.weights_, progress=progress)
    keep_parent_threshold(ae, base.autoencoder)
    named_msgs = set(corpus.vouched)
    named_lines = [i for i, m in enumerate(corpus.messages) if corpus.vouch_all or m in named_msgs]
    raised = type_thresholds(ae, base.autoencoder, type_ids[named_lines], ae.score([new_texts[i] for i in named_lines]))

    summary = dict(base.manifest.get("training", {}))
    summary.update(read_as or {})
    if read_as and {"format", "stream"} <= set(read_as):
        summary["read_as_recorded"] = True  # both known now, whatever the (older) parent recorded
    summary.update(
        {
            "parent": base.version,
            "learned_from": source or f"{len(corpus)} lines",
            "learned_lines": len(corpus),
            "learned_unparsed_lines": corpus.unparsed,
            "new_types": new_ids,
            "new_tokens": new_words,
            "types": len(types.types_),
            "sequence_validation": seq.validation_,
            "autoencoder_threshold": ae.threshold_,
            "autoencoder_type_thresholds": len(ae.type_thresholds_),
        }
    )
    target = Path(out) if out is not None else store.new_version_path()  # type: ignore[union-attr]
    all_seqs = list(replay_seqs) + new_seqs
    all_ended = list(replay_ended) + list(ended) if replay_ended is not None else None
    try:
        save_bundle(target, types, seq, ae, training=summary,
                    extra_files=replay_files(all_seqs, replay_texts + new_texts, seed, ended=all_ended), option=out_option)
    except BaseException:
        if store is not None and out is None:
            store.release(target)  # the reserved version name, left empty
        raise
    summary["seconds"] = round(time.monotonic() - t0, 2)
    # for the one who runs it (not in the manifest): what now counts as normal, and what it replaces
    summary["new_type_templates"] = [{"id": i, "template": types.get(i).template} for i in new_ids]
    summary["parent_autoencoder_threshold"] = float(base.autoencoder.threshold_)
    summary["raised_type_thresholds"] = [{"id": t, "template": types.get(t).template, "threshold": round(v, 4)}
                                         for t, v in sorted(raised.items())]  # fmt: skip
    summary["parent_version"] = base_path.name if store is not None else None
    if store is not None and out is None:
        with store.switching():  # another learn (or the daemon's relearning) finishing now waits for this one
            now = store.current_name()
            if keep_newer_current and now != base_path.name:
                summary["made_current"] = False
                log.warning("%s: current moved from %s to %s while learning; %s is saved but not made current "
                            "(`lograven models rollback --to %s` switches to it)", store.root, base_path.name, now,
                            target.name, target.name)  # fmt: skip
            else:
                store.set_current(target.name)
                summary["made_current"] = True
    return target, summary


VOCABULARY_GROWTH = 4  # the autoencoder's vocabulary grows to at most this many times its trained size


def grow_vocabulary(tokenizer, new_texts: list[str], known: list[str], trained_size: int) -> list[str]:
    """The autoencoder's vocabulary grows by frequent new words, up to VOCABULARY_GROWTH times the
    configured `vocab_size` it was trained with: every relearn could add 256 words (masked pod names,
    say), and the output layer, the cost of every line not in the cache, grows with the vocabulary.
    Past the cap new words are encoded in BPE pieces, as in training."""
    room = VOCABULARY_GROWTH * max(trained_size, 1) - tokenizer.vocab_size
    if room <= 0:
        log.info("the autoencoder's vocabulary is at its cap (%d tokens): no new words added", tokenizer.vocab_size)
        return []
    return tokenizer.grow(new_texts, known=known, max_new=min(256, room))


TAIL_REFERENCE_RATE = DetectorSettings.sequence_false_alarm_rate  # the default rate: where two fitted tails are compared


#: Held-back lines at least above a raised learned threshold (see keep_parent_threshold).
RAISE_MIN_LINES = 2


def keep_parent_threshold(ae: Autoencoder, parent: Autoencoder) -> None:
    """The fine-tuned autoencoder's threshold, no lower than its parent's. Its recalibration holds back
    a tenth of the new lines and the replayed texts: few lines (560 for 200 new ones, against the
    parent's 10,000), and mostly texts the parent's weights were trained on, which score low. Measured
    with the default model and 200 ordinary lines: 5.37 -> 4.87, and a soak saw 43 autoencoder false
    alarms in 20,000 normal lines where the parent had none. Learning normal lines must not make the
    model stricter, as keep_lowest_cuts holds for the sequence detector."""
    if parent.threshold_ > ae.threshold_:
        log.info("autoencoder: recalibrated threshold %.3f is below the parent's %.3f (few held-back lines, "
                 "mostly texts the parent was trained on); keeping the parent's", ae.threshold_, parent.threshold_)
        ae.calibration_["recalibrated_threshold"] = ae.threshold_
        ae.calibration_["threshold"] = ae.threshold_ = float(parent.threshold_)
        ae.calibration_["kept_parent_threshold"] = True
        return
    # Upwards, the same few lines: the 0.999 quantile of 560 held-back lines is their largest error, so one
    # odd line (a 3,000-character line among 300 learned ones: 5.37 -> 6.93, and the autoencoder flagged
    # none of 200 anomalies it had flagged) would set the threshold. Where the quantile's tail holds fewer
    # than RAISE_MIN_LINES lines, it may rise only to the RAISE_MIN_LINES-th largest held-back error: a
    # message learned on two held-back lines or more still raises it, a single outlier does not. (5 lines
    # was too strict: learning false alarms part by part, `evaluate --feedback learn`, then removed fewer.)
    errs = getattr(ae, "holdout_errors_", None)
    weights = getattr(ae, "holdout_weights_", None)
    q = float(ae.calibration_.get("quantile", ae.params.quantile))
    if errs is None or weights is None or float(np.sum(weights)) * (1.0 - q) >= RAISE_MIN_LINES:
        return
    errs, weights = np.asarray(errs, dtype=float), np.asarray(weights, dtype=float)
    order = np.argsort(-errs, kind="stable")
    reached = np.cumsum(weights[order]) >= RAISE_MIN_LINES  # down to the RAISE_MIN_LINES-th largest line
    cap = max(float(errs[order][reached.argmax()]) if reached.any() else 0.0, float(parent.threshold_))
    if ae.threshold_ > cap:
        log.info("autoencoder: recalibrated threshold %.3f rests on fewer than %d held-back lines; raised only to "
                 "%.3f (the parent's is %.3f)", ae.threshold_, RAISE_MIN_LINES, cap, parent.threshold_)
        ae.calibration_["recalibrated_threshold"] = ae.threshold_
        ae.calibration_["threshold"] = ae.threshold_ = cap
        ae.calibration_["capped_raise"] = True


def type_thresholds(ae: Autoencoder, parent: Autoencoder, named_types: np.ndarray, named_errors: np.ndarray) -> dict[int, float]:
    """Per-type thresholds for the lines the operator named as normal (`ae.type_thresholds_`); returns the
    ones this learn raised. keep_parent_threshold keeps the global threshold where a few held-back lines
    put it, so a learned message whose lines the fine-tuned autoencoder still cannot reconstruct went on
    alerting: HDFS replication lines learned from their first false alarms alerted in every later part
    (`evaluate --feedback learn`, 50% of the normal sessions: 0.964 -> 0.946 with the global cap). Such a
    type gets its own threshold: the RAISE_MIN_LINES-th largest error of its named lines, so one odd line
    raises nothing, and it blinds the autoencoder for that type only, never for the others. The parent's
    per-type thresholds are kept (type ids are stable) where still above the global one."""
    out = {t: v for t, v in parent.type_thresholds_.items() if v > ae.threshold_}
    raised: dict[int, float] = {}
    by_type: dict[int, list[float]] = defaultdict(list)
    for t, e in zip(np.asarray(named_types).tolist(), np.asarray(named_errors, dtype=float).tolist()):
        if t > 0 and math.isfinite(e):
            by_type[int(t)].append(e)
    for t, errs in by_type.items():
        if len(errs) < RAISE_MIN_LINES:
            continue
        cover = sorted(errs, reverse=True)[RAISE_MIN_LINES - 1]
        if cover > max(ae.threshold_, out.get(t, 0.0)):
            out[t] = raised[t] = float(cover)
    for t, v in raised.items():
        log.info("autoencoder: message type %d's named lines score up to %.3f, above the threshold %.3f: that type's "
                 "threshold is now %.3f", t, max(by_type[t]), ae.threshold_, v)  # fmt: skip
    ae.type_thresholds_ = out
    return raised


def keep_lowest_cuts(old: dict, new: dict) -> dict:
    """The fine-tuned model's validation figures, with the calibration cuts and the floor no higher than
    the base model's: a small `learn` holds back few lines, and a noisier, higher floor or quantile would
    alert on lines the base model found normal. Their evidence is the two hold-outs together."""
    out = dict(new)
    kept = False
    for k in ("relative_q", "probability_q", "probability_min"):
        a, b = old.get(k), new.get(k)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and 0 < a < b:
            out[k] = float(a)
            kept = True
        elif k not in new and isinstance(a, (int, float)):
            out[k] = float(a)
            kept = True
    for k in ("tail_p", "tail_relative"):
        # the tail that extrapolates to the lower cut (the larger surprise) at the default rate
        a, b = old.get(k), new.get(k)
        qa, qb = tail_quantile(a, TAIL_REFERENCE_RATE), tail_quantile(b, TAIL_REFERENCE_RATE)
        if np.isfinite(qa) and (qa > qb or not np.isfinite(qb)):
            out[k] = list(a)
            kept = True
    # the lowest held-back values (empirical quantiles): the lowest of both hold-outs, with both counts,
    # when both have them; otherwise the one that has them, with its own count
    for lows, count in ((("relative_low", "probability_low"), "low_steps"), (("end_probability_low",), "end_steps")):
        in_old, in_new = (all(_values(d.get(k)) for k in lows) for d in (old, new))
        if in_old and in_new:
            n = int(old.get(count, 0)) + int(new.get(count, 0))
            for k in lows:
                out[k] = sorted([*old[k], *new[k]])[: kept_count(n)]
            out[count] = n
        elif in_old:
            for k in (*lows, count):
                out[k] = old.get(k)
    if kept:
        out["steps"] = int(new.get("steps", 0)) + int(old.get("steps", 0))
    return out


def _values(x) -> bool:
    return isinstance(x, list) and len(x) > 0


def _budget(seqs: Sequence[np.ndarray], steps: int) -> list[np.ndarray]:
    out, left = [], steps
    for s in seqs:
        if left <= 0:
            break
        out.append(s[-left:])
        left -= len(out[-1])
    return out

