"""`lograven train`: log files -> message types, sequence GRU, autoencoder -> one bundle."""
from __future__ import annotations

import errno
import io
import logging
import math
import re
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lograven.autoencoder import Autoencoder, AutoencoderParams
from lograven.bundle import save_bundle
from lograven.errors import LogravenError
from lograven.masking import ExtraMask, Masker
from lograven.msgtypes import MessageTypes
from lograven.osutil import COMPRESSION_MAGIC_BYTES, DECOMPRESSION_ERRORS, compression_of, open_decompressed, stdin_binary
from lograven.parsing import LogRecord, Parser, StreamKey, decode_line, misread_timestamps, posix_seconds
from lograven.sequence import SequenceModel, SequenceParams, type_frequencies

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


@dataclass
class Corpus:
    """Parsed training lines: one entry per line, in file order."""

    files: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    programs: list[str | None] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # the line's timestamp (POSIX seconds), NaN without one
    unparsed: int = 0
    truncated: int = 0
    inputs: list[str] = field(default_factory=list)  # the files read (read_corpus), for messages about them
    # What the operator named as normal (lograven learn): every line (`vouch_all`, log files given to it),
    # or these messages (`--from-alerts`: the alerts' own lines, not the context read around them).
    # Periodic relearning and evaluate vouch for nothing.
    vouch_all: bool = False
    vouched: list[str] = field(default_factory=list)
    # Streams whose last line here is cut out of a longer log (`--from-alerts`: the lines around an alert;
    # evaluate's feedback): whether that last line is where the stream really ended. Without it, the end
    # of each stream in the data is taught as an end (training.sequence.stream_end), and a session cut
    # off by the excerpt would teach that sessions may stop anywhere.
    final_ends: dict[str, bool] = field(default_factory=dict)
    misread: str | None = None  # read_corpus: what `misread_timestamps` says of its format's timestamp group
    _last_ts: tuple = field(default=(None, math.nan), repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, file: str, record: LogRecord, stream: str) -> None:
        self.files.append(file)
        self.messages.append(record.message)
        self.programs.append(record.program)
        self.streams.append(stream)
        ts = record.timestamp
        if ts is not self._last_ts[0]:  # the parser reuses the datetime of a repeated timestamp
            self._last_ts = (ts, posix_seconds(ts))
        self.times.append(self._last_ts[1])
        if not record.parsed:
            self.unparsed += 1


def iter_file_lines(path: str, max_line_bytes: int) -> Iterator[tuple[str, bool]]:
    """Decoded lines of a file, or of standard input for `-` (never raises on content; names the file on
    I/O errors). Compressed files are read decompressed (see iter_maybe_compressed)."""
    if path == "-":
        yield from iter_maybe_compressed(stdin_binary(), "-", max_line_bytes)
        return
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise LogravenError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise LogravenError(
            f"{path}: permission denied; run as a user that can read it (Debian/Ubuntu: a member of group adm, "
            f"`sudo usermod -aG adm $USER` then log in again; RHEL: `sudo setfacl -m u:$USER:r {path}`), "
            "or run with sudo, or copy the file"
        ) from None
    except IsADirectoryError:
        raise LogravenError(f"{path}: is a directory; give log files (a shell glob like {path}/*.log works)") from None
    except OSError as e:  # a symbolic link loop (ELOOP), a name too long, a stale NFS handle: said, not a traceback
        what = "a symbolic link that loops (it points, at last, to itself)" if e.errno == errno.ELOOP else e.strerror or e
        raise LogravenError(f"{path}: cannot open it: {what}; check the path") from None
    with f:
        yield from iter_maybe_compressed(f, path, max_line_bytes)


def iter_maybe_compressed(f: BinaryIO, path: str, max_line_bytes: int) -> Iterator[tuple[str, bool]]:
    """`iter_binary_lines` of a binary stream, decompressed first when it is gzip, bzip2 or xz
    (rotated logs such as messages.1.gz are read as zcat would); zstd is refused with the fix. A read
    error (EIO, a file on a lost NFS mount) ends the lines with an error that names the file."""
    try:
        head = f.read(COMPRESSION_MAGIC_BYTES)  # a buffered read(n) waits for n bytes or the end, on pipes too
    except OSError as e:  # nothing read from it (score's check that every file is readable fails here)
        raise LogravenError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        f = _with_head(head, f)
        kind = compression_of(head)
        if kind is None:
            yield from iter_binary_lines(f, max_line_bytes)
            return
    except OSError as e:
        raise LogravenError(f"{path}: cannot read it: {e.strerror or e}; the lines before the error were read") from None
    if kind == "zstd":
        raise LogravenError(f"{path}: zstd-compressed; decompress it first (`zstd -dc {path} > FILE`, "
                            "or `zstd -dc FILE | lograven score -`)")
    try:
        with open_decompressed(kind, f, path) as z:
            yield from iter_binary_lines(z, max_line_bytes)
    except (OSError, *DECOMPRESSION_ERRORS) as e:  # damaged or truncated archives
        raise LogravenError(f"{path}: {kind}-compressed but cannot be decompressed ({e}); "
                            f"check it with `{kind} -t {path}`") from None


class _Prepended(io.RawIOBase):
    """`head` (already read from `rest`), then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(b)) if hasattr(self._rest, "read1") else self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _with_head(head: bytes, f: BinaryIO) -> BinaryIO:
    """The stream from its start again: rewound when it can seek, else with `head` put back in front."""
    try:
        if f.seekable():
            f.seek(-len(head), io.SEEK_CUR)
            return f
    except (OSError, ValueError):
        pass
    return io.BufferedReader(_Prepended(head, f), buffer_size=1 << 16)  # type: ignore[return-value]


#: Bytes read at a time while skipping the rest of an over-long line.
SKIP_CHUNK_BYTES = 1 << 16


def iter_binary_lines(f: BinaryIO, max_line_bytes: int) -> Iterator[tuple[str, bool]]:
    """Decoded lines of a binary stream (a file, standard input) as ``(text, truncated)``.

    A line longer than `max_line_bytes` yields its first `max_line_bytes` bytes with
    truncated=True; the rest of it, up to its newline, is read in small chunks and dropped,
    so one enormous line (or a file without newlines) never sits in memory whole, as the
    daemon's tailer does. Every input line yields exactly one item, in order.
    """
    limit = max(max_line_bytes, 0) + 1  # one byte more than is kept: tells a long line from one that fits
    readline = f.readline
    while True:
        raw = readline(limit)
        if not raw:
            return
        if len(raw) > max_line_bytes:
            if raw[-1:] != b"\n":  # skip the rest of the line, keeping none of it
                while True:
                    rest = readline(SKIP_CHUNK_BYTES)
                    if not rest or rest[-1:] == b"\n":
                        break
            yield decode_line(raw[:max_line_bytes], max_line_bytes)[0], True
        else:
            yield decode_line(raw.rstrip(b"\n"), max_line_bytes)


def read_corpus(
    paths: Sequence[str],
    *,
    fmt: str = "syslog",
    stream: str = "file",
    max_lines: int | None = None,
    max_line_bytes: int = 65536,
    line_filter: Callable[[str], bool] | None = None,
) -> Corpus:
    """Parse log files into a corpus: their lines in order, at most `max_lines` in all (the first ones)."""
    parser = Parser(fmt)
    key = StreamKey(stream)
    corpus = Corpus(inputs=list(paths))
    for path in paths:
        sampled = garbled = 0
        for text, truncated in iter_file_lines(path, max_line_bytes):
            if sampled < BINARY_SAMPLE_LINES and text.strip():
                sampled += 1
                garbled += _garbled(text)
                if sampled == BINARY_SAMPLE_LINES:
                    _refuse_binary(path, sampled, garbled)
            if line_filter is not None and not line_filter(text):
                continue
            if not text.strip():
                continue
            rec = parser.parse(text)
            corpus.add(path, rec, key.key(path, rec, text))
            corpus.truncated += truncated
            if max_lines is not None and len(corpus) >= max_lines:
                _refuse_binary(path, sampled, garbled)  # a file shorter than the sample is judged here
                corpus.misread = misread_timestamps(parser)
                return corpus
        _refuse_binary(path, sampled, garbled)
    corpus.misread = misread_timestamps(parser)
    return corpus


#: Lines of each input that `_refuse_binary` judges (the first ones that are not blank).
BINARY_SAMPLE_LINES = 200
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")


def _garbled(text: str) -> bool:
    """A line that is mostly not text: a tenth of its characters or more are control characters or
    U+FFFD (bytes that are not UTF-8). A log line has none, or one in a long line."""
    return len(_CONTROL.findall(text)) * 10 >= max(len(text), 1)


def _refuse_binary(path: str, sampled: int, garbled: int) -> None:
    """Learning from a binary file (wtmp, a journal file, an archive) made hundreds of types of its
    bytes, among them catch-alls such as `<*>` under which every one- or two-word message was a known
    type: a review's `evil[1]: pwned` no longer alerted. A file whose first lines are mostly garbled
    is refused with the fix."""
    if sampled and garbled * 2 > sampled:
        raise LogravenError(
            f"{path}: not a text log ({garbled} of its first {sampled} lines are mostly bytes that are not text); "
            "give text log files (the journal as text: `journalctl -o short > FILE`; wtmp: `last -f FILE > FILE.txt`)"
        )


def ae_text(masker: Masker, program: str | None, message: str) -> str:
    """The autoencoder's view of a line: program name and masked message."""
    return masker.mask_text(f"{program} {message}" if program else message)


def require_tensorflow() -> None:
    """Training needs TensorFlow/Keras; a serving-only install may lack them: say how to add them."""
    import importlib.util
    import sys

    for name in ("tensorflow", "keras"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            pip = f"{sys.executable} -m pip install"
            raise LogravenError(
                f"training needs TensorFlow, and `{name}` is not installed in this environment ({sys.prefix}); "
                f"install it with `{pip} tensorflow-cpu` (Linux x86_64) or `{pip} tensorflow` (other platforms). "
                "Serving (`lograven run` with a model, `lograven score`) does not need it"
            )


def params_from(cls, section: object | None, **override):
    """Dataclass `cls` filled from a config section's attributes of the same names."""
    kw = {}
    for f in fields(cls):
        if section is not None and hasattr(section, f.name):
            kw[f.name] = getattr(section, f.name)
    kw.update(override)
    return cls(**kw)


def type_frequencies_of(types: MessageTypes) -> np.ndarray:
    """The detector's training frequency of each type (from the types' line counts)."""
    counts = np.zeros(types.n_types + 1)
    for t in types.types_:
        counts[t.id] = t.count
    return type_frequencies(counts)


OPEN_TAIL_FRACTION = 0.05


def streams_ended(streams: Sequence[str]) -> list[bool]:
    """Per stream (in type_sequences' order): did it end inside the data? A stream whose last line is
    among the last OPEN_TAIL_FRACTION of the lines may still be running (the log just stops there),
    so it is not taught as an end (training.sequence.stream_end)."""
    n = len(streams)
    last: dict[str, int] = {}
    for i, s in enumerate(streams):
        last[s] = i
    cut = n - max(1, math.ceil(n * OPEN_TAIL_FRACTION))
    return [i < cut for i in last.values()]


def silence_ends(streams: Sequence[str], times: Sequence[float], gap: float,
                 log_end: float | None = None) -> tuple[list[bool], list[bool]]:  # fmt: skip
    """Where streams end by silence, as the daemon ends a stream after `detectors.sequence.stream_end_after`
    of it (and starts it afresh when it speaks again). Per line (times in POSIX seconds, NaN when unknown):
    `ends`, its stream's segment ends after it: the stream's next line came `gap` or more later, or it
    never spoke again while the data went on for `gap` (to `log_end`, default the last time here); and
    `resumes`, the stream speaks again after such an end. A line without a timestamp continues its
    segment; a segment whose last time is unknown, or that is still open when the data stops, has not
    ended."""
    if log_end is None:
        log_end = max((t for t in times if t == t), default=math.nan)
    n = len(streams)
    ends, resumes = [False] * n, [False] * n
    last: dict[str, tuple[int, float]] = {}  # stream -> (its last line, the last known time)
    for j, (s, t) in enumerate(zip(streams, times)):
        prev = last.get(s)
        if prev is not None and t - prev[1] >= gap:  # False when either time is NaN
            ends[prev[0]] = resumes[prev[0]] = True
        last[s] = (j, t if t == t or prev is None else prev[1])
    for j, t in last.values():
        ends[j] = bool(log_end - t >= gap)
    return ends, resumes


def stream_segments(streams: Sequence[str], times: Sequence[float], type_ids: np.ndarray,
                    gap: float) -> tuple[list[np.ndarray], list[bool]]:  # fmt: skip
    """Each stream's type ids cut where it was silent for `gap` seconds or more (silence_ends), as the
    daemon will judge its ends, with, per segment, whether it ended inside the data."""
    ends, resumes = silence_ends(streams, times, gap)
    open_: dict[str, list[int]] = {}  # stream -> its open segment's ids
    at: dict[str, int] = {}  # stream -> its last line
    segments: list[np.ndarray] = []
    ended: list[bool] = []
    for j, (s, ty) in enumerate(zip(streams, type_ids)):
        if s in at and resumes[at[s]]:  # the stream speaks again: its segment ended
            segments.append(np.array(open_[s], dtype=np.int32))
            ended.append(True)
            open_[s] = []
        open_.setdefault(s, []).append(int(ty))
        at[s] = j
    for s, ids in open_.items():
        segments.append(np.array(ids, dtype=np.int32))
        ended.append(ends[at[s]])
    return segments, ended


def with_final_ends(streams: Sequence[str], ended: Sequence[bool], final_ends: dict[str, bool]) -> list[bool]:
    """`ended` (from streams_ended or stream_segments, whose last len(streams' set) entries are each
    stream's final segment, in order of first appearance) with the final segments of the streams in
    `final_ends` set to its value."""
    order = list(dict.fromkeys(streams))
    out = list(ended)
    base = len(out) - len(order)
    for k, s in enumerate(order):
        if s in final_ends:
            out[base + k] = final_ends[s]
    return out


def type_sequences(streams: Sequence[str], type_ids: np.ndarray) -> list[np.ndarray]:
    by_stream: dict[str, list[int]] = {}
    for s, t in zip(streams, type_ids):
        by_stream.setdefault(s, []).append(int(t))
    return [np.array(v, dtype=np.int32) for v in by_stream.values()]


@dataclass
class TrainResult:
    path: Path
    summary: dict


# Masks every model trained from now on has, besides the built-in ones (stored with the model, like the
# config's `extra_masks`, so models trained before keep masking as they did). SSH key fingerprints are
# random base64: as text they are a new run of rare BPE pieces for every new key, and a learn-mode
# audit saw 86% of `Accepted publickey` lines alert through the autoencoder for keys it had not seen.
TRAINED_MASKS = (
    ExtraMask("FINGERPRINT", r"\bSHA256:[A-Za-z0-9+/]{43}(?![A-Za-z0-9+/])|\bMD5(?::[0-9a-f]{2}){16}\b"),
)


def training_masks(msgtypes_cfg: object | None) -> list[ExtraMask]:
    """The extra masks a model trained now gets: the config's `training.msgtypes.extra_masks`, then
    TRAINED_MASKS whose name the config does not use (in any case: `fingerprint` replaces FINGERPRINT)."""
    extra = [ExtraMask(m.name, m.pattern) for m in getattr(msgtypes_cfg, "extra_masks", ())]
    taken = {e.name.upper() for e in extra}
    return extra + [m for m in TRAINED_MASKS if m.name.upper() not in taken]


def untrained_message_types(training: object | None) -> MessageTypes:
    """An unfitted MessageTypes with the `training` section's msgtypes settings, seed and masks: what
    `train` fits, and what `evaluate` measures grouping accuracy with."""
    mt_cfg = getattr(training, "msgtypes", None)
    return MessageTypes(
        svd_variance=getattr(mt_cfg, "svd_variance", 0.95),
        max_clusters=getattr(mt_cfg, "max_clusters", 2000),
        variable_min_distinct=getattr(mt_cfg, "variable_min_distinct", 6),
        extra_masks=training_masks(mt_cfg),
        seed=int(getattr(training, "seed", 42)),
    )


def train(
    corpus: Corpus,
    out: Path,
    *,
    training: object | None = None,
    quantile: float = 0.999,
    fmt: str = "syslog",
    stream: str = "file",
    plots: bool = False,
    progress: Progress | None = None,
    streams_complete: bool = False,
    end_gap: float = 0.0,
    out_option: str = "--out",
) -> TrainResult:
    """Learn the three models from a corpus and write the bundle to `out`.

    With `training.sequence.stream_end`: `end_gap` > 0 (the config's
    `detectors.sequence.stream_end_after`) cuts streams where they were silent that long and teaches
    an end there (see stream_segments), as the daemon will judge them; it needs timestamps. Otherwise
    `streams_complete` says every stream of the corpus is a whole session (evaluate --stream-end), or
    streams still running when the corpus stops (see streams_ended) are not taught as ends.
    """
    t0 = time.monotonic()
    if len(corpus) < 2:
        where = ", ".join(corpus.inputs or sorted(set(corpus.files)))
        n = len(corpus)
        raise LogravenError(f"{where + ': ' if where else ''}only {n} usable line{'' if n == 1 else 's'} (blank lines do "
                            "not count); lograven needs at least a few hundred normal lines: give more or longer log files")
    if len(corpus) < 500:
        log.warning("only %d lines to learn from: expect many false alerts; a few thousand normal lines or more work well", len(corpus))
    require_tensorflow()  # before minutes of clustering, not after
    seed = int(getattr(training, "seed", 42))
    val_frac = float(getattr(training, "validation_fraction", 0.1))
    types = untrained_message_types(training)
    stage = progress or (lambda name, fraction: None)
    stage("message types", 0.0)
    types.fit(corpus.messages)
    type_ids = types.predict(corpus.messages)
    t_types = time.monotonic() - t0
    stage("message types", 1.0)

    seq = SequenceModel(params_from(SequenceParams, getattr(training, "sequence", None)))
    gap = float(end_gap) if seq.params.stream_end and end_gap > 0 else 0.0
    if gap and not any(t == t for t in corpus.times):
        log.warning("detectors.sequence.stream_end_after is %gs, but the training lines have no timestamps "
                    "(check the format): streams are not cut at silences; their ends are taught as without it", gap)
        gap = 0.0
    if gap:
        sequences, ended = stream_segments(corpus.streams, corpus.times, type_ids, gap)
        if not any(ended):
            log.warning("no stream of the training lines falls silent for %gs (detectors.sequence.stream_end_after) "
                        "before more lines: no stream end is learned, and the model will not judge ends; train on a "
                        "longer stretch of the logs, or lower stream_end_after", gap)
    else:
        sequences = type_sequences(corpus.streams, type_ids)
        ended = None if streams_complete else streams_ended(corpus.streams)
    seq.fit(sequences, types.n_types, seed=seed, validation_fraction=val_frac, progress=stage,
            type_freq=type_frequencies_of(types), ended=ended)  # fmt: skip
    t_seq = time.monotonic() - t0 - t_types

    masker = Masker(types.extra_masks)  # as served: the masks the model stores
    texts = [ae_text(masker, p, m) for p, m in zip(corpus.programs, corpus.messages)]
    ae = Autoencoder(params_from(AutoencoderParams, getattr(training, "autoencoder", None), quantile=quantile))
    ae.fit(texts, seed=seed, validation_fraction=val_frac, progress=stage)
    t_ae = time.monotonic() - t0 - t_types - t_seq

    summary = {
        "lines": len(corpus),
        "files": sorted(set(corpus.files)),
        "streams": len(set(corpus.streams)),
        "format": fmt,
        "stream": stream,
        "read_as_recorded": True,  # format and stream hold for every source (learn mode: "mixed" where they differ)
        "unparsed_lines": corpus.unparsed,
        "truncated_lines": corpus.truncated,
        "types": len(types.types_),
        "clusters": types.n_clusters_,
        "unknown_training_lines": int((type_ids == 0).sum()),
        "catch_all_types": [t.id for t in types.types_ if t.catch_all],
        "catch_all_lines": sum(t.count for t in types.types_ if t.catch_all),
        **({"stream_end_after": gap, "stream_segments": len(sequences), "segments_ended": int(sum(ended or ()))}
           if gap else {}),
        "sequence_validation": seq.validation_,
        **({"sequence_end_frequency": seq.end_frequency_} if seq.params.stream_end else {}),
        "sequence_epochs": len(seq.history_.get("loss", [])),
        "autoencoder_length": ae.length_,
        "autoencoder_threshold": ae.threshold_,
        "autoencoder_epochs": len(ae.history_.get("loss", [])),
        "seconds": {"msgtypes": round(t_types, 2), "sequence": round(t_seq, 2), "autoencoder": round(t_ae, 2)},
    }
    # The replay sample keeps the sequences as the model learned them, with where they ended: whole streams,
    # or with stream_end_after the segments between silences (joined, they would teach that a rest is
    # followed by more lines, never by an end, and every normal rest would alert after a learn).
    replayed_ended = None if not seq.params.stream_end else [True] * len(sequences) if ended is None else ended
    extra_files = replay_files(sequences, texts, seed, ended=replayed_ended)
    if plots:
        extra_files.update(_plots(types, seq, ae))
    stage("saving", 0.0)
    save_bundle(out, types, seq, ae, training=summary, extra_files=extra_files, option=out_option)
    summary["seconds"]["total"] = round(time.monotonic() - t0, 2)
    stage("saving", 1.0)
    return TrainResult(Path(out), summary)


REPLAY_STEPS = 50_000
REPLAY_TEXTS = 5_000


def replay_files(sequences: Sequence[np.ndarray], texts: Sequence[str], seed: int,
                 ended: Sequence[bool] | None = None) -> dict[str, bytes]:  # fmt: skip
    """A sample of the training data kept in the bundle, so `lograven learn` can mix old with new
    (fine-tuning on new data alone would forget the old). Type ids and masked texts only; with
    `ended` (a model of stream ends: whether each sequence ended inside the data), the kept tails'
    flags too, so that fine-tuning goes on seeing where streams end."""
    import io
    import json
    from collections import Counter

    rng = np.random.default_rng(seed)
    budget = REPLAY_STEPS
    kept, kept_ended = [], []
    for k in sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True):
        if budget <= 0:
            break
        part = sequences[k][-budget:]  # the tail: where the stream ended, if it did
        kept.append(np.asarray(part).astype(np.int32))
        kept_ended.append(bool(ended[k]) if ended is not None else False)
        budget -= len(part)
    buf = io.BytesIO()
    lens = np.array([len(k) for k in kept], dtype=np.int32)
    arrays = {"ids": np.concatenate(kept) if kept else np.zeros(0, np.int32), "lens": lens}
    if ended is not None:
        arrays["ended"] = np.array(kept_ended, dtype=np.uint8)
    np.savez(buf, **arrays)
    counts = Counter(texts)
    distinct = sorted(counts, key=lambda t: -counts[t])
    head, tail = distinct[: REPLAY_TEXTS // 2], distinct[REPLAY_TEXTS // 2 :]
    if len(tail) > REPLAY_TEXTS - len(head):
        tail = [tail[i] for i in rng.choice(len(tail), REPLAY_TEXTS - len(head), replace=False)]
    sample = [[t, counts[t]] for t in head + tail]
    return {"replay.npz": buf.getvalue(), "replay_texts.json": json.dumps(sample, ensure_ascii=False).encode("utf-8")}


def load_replay(path: Path, n_types: int | None = None) -> tuple[list[np.ndarray], list[str], list[bool] | None]:
    """The replay sample of a bundle (empty when the bundle predates it): sequences, texts, and per
    sequence whether it ended (None when the bundle did not record it). With `n_types`, every id must
    be one of the model's inputs (0..n_types): an id beyond was a TensorFlow traceback mid-learn."""
    from lograven.osutil import loads_json, read_regular
    from lograven.runtime import load_weights

    seqs: list[np.ndarray] = []
    texts: list[str] = []
    ended: list[bool] | None = None
    for name in ("replay.npz", "replay_texts.json"):  # a FIFO there blocked `learn` for ever
        if os.path.lexists(path / name) and not os.path.isfile(path / name):
            raise LogravenError(f"{path / name}: not a regular file (a FIFO, device or broken link); retrain or "
                                "restore the bundle")
    if (path / "replay.npz").exists():
        z = load_weights(path / "replay.npz", ("ids", "lens"), optional=("ended",))
        ids, lens = z["ids"].astype(np.int32), z["lens"].astype(np.int64)
        bad = ("lengths below 0" if len(lens) and lens.min() < 0
               else f"lengths that add up to {int(lens.sum())}, not its {len(ids)} ids" if int(lens.sum()) != len(ids)
               else f"ids outside 0..{n_types}" if n_types is not None and len(ids) and not 0 <= ids.min() <= ids.max() <= n_types
               else None)  # fmt: skip
        if bad:
            raise LogravenError(f"{path / 'replay.npz'}: corrupt (sequence {bad}); retrain or restore the bundle")
        keep = [len(a) > 0 for a in np.split(ids, np.cumsum(lens)[:-1])] if len(lens) else []
        seqs = [a for a in np.split(ids, np.cumsum(lens)[:-1]) if len(a)] if len(lens) else []
        if "ended" in z and len(z["ended"]) == len(lens):
            ended = [bool(e) for e, k in zip(z["ended"].tolist(), keep) if k]
    if (path / "replay_texts.json").exists():
        try:
            for t, c in loads_json(read_regular(path / "replay_texts.json").decode("utf-8")):
                texts.extend([str(t)] * min(int(c), 50))
        except (ValueError, TypeError, OverflowError) as e:
            raise LogravenError(f"{path / 'replay_texts.json'}: corrupt ({e}); retrain the bundle") from e
    return seqs, texts, ended


def _plots(types: MessageTypes, seq: SequenceModel, ae: Autoencoder) -> dict[str, bytes]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LogravenError("--plots needs matplotlib: pip install 'lograven[plots]' (or pip install matplotlib)") from None
    import io

    out: dict[str, bytes] = {}

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        out[f"plots/{name}"] = buf.getvalue()

    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [k for k, _ in types.cluster_curve_]
    ax.plot(ks, [v for _, v in types.cluster_curve_], "o-", label="inertia")
    ax.axvline(types.n_clusters_, color="red", ls="--", label=f"chosen k={types.n_clusters_}")
    ax.set_xscale("log")
    ax.set_xlabel("clusters (k)")
    ax.set_ylabel("KMeans inertia")
    ax.set_title(f"Cluster-count curve -> {len(types.types_)} message types")
    ax.legend()
    save(fig, "clusters.png")
    for name, model in (("sequence", seq), ("autoencoder", ae)):
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, vals in model.history_.items():
            ax.plot(range(1, len(vals) + 1), vals, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (cross-entropy)")
        ax.set_title(f"{name} training")
        ax.legend()
        save(fig, f"{name}_loss.png")
    errs = getattr(ae, "holdout_errors_", None)
    if errs is not None and len(errs):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(errs, bins=50)
        ax.axvline(ae.threshold_, color="red", ls="--", label=f"threshold {ae.threshold_:.2f}")
        ax.set_xlabel("reconstruction error (nats/token) on held-back normal texts")
        ax.set_ylabel("texts")
        ax.legend()
        save(fig, "autoencoder_errors.png")
    return out


def files_from_args(paths: Iterable[str]) -> list[str]:
    out = [str(p) for p in paths]
    if not out:
        raise LogravenError("no log files given; e.g. `lograven train --out /tmp/m /var/log/messages`")
    return out
