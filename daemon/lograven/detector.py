"""The detector: batches of (stream, LogRecord) in, one explained Verdict per line out.

Three detectors, each explainable on its own:
- `unknown_type`: no learned message type matches the message;
- `sequence`: the GRU of the line's stream found the observed type improbable
  (probability below the threshold, or not among the top k), or the type is
  too rare in training for its place to be learned and was not the most
  expected one here; the verdict names the types it expected instead;
- `autoencoder`: the line's reconstruction error is above the calibrated threshold.

Inference is batched: message types per line (O(tokens) each), autoencoder
errors for all distinct masked texts of the batch in one pass (and cached),
GRU steps in lockstep across the streams of the batch, and the output layer
for all lines of the batch in one matmul.
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lograven.bundle import Bundle
from lograven.masking import Masker, line_pattern

premask = Masker.premask
from lograven.msgtypes import UNKNOWN
from lograven.parsing import LogRecord
from lograven.sequence import END, MIN_END_STEPS, MIN_FLOOR_STEPS, StreamState, empirical_quantile, tail_quantile, type_frequencies

log = logging.getLogger(__name__)

DETECTORS = ("unknown_type", "sequence", "autoencoder")


@dataclass(slots=True)
class Verdict:
    """What the detector says about one line, with the evidence."""

    type_id: int
    template: str | None
    anomaly: bool
    detectors: list[str]  # the detectors that fired
    sequence_p: float | None = None  # probability of the observed type; None: not evaluated
    sequence_rank: int | None = None  # 1 = the most expected type (a stream's end is not a type)
    sequence_ratio: float | None = None  # sequence_p / the type's training frequency
    end_more_likely: bool = False  # (models that learned stream ends) the stream ending here was more likely
    previous_type: int | None = None  # the stream's previous known type (the transition's origin)
    expected: list[tuple[int, float]] = field(default_factory=list)  # (type id, p), most likely first
    ae_error: float | None = None
    ae_threshold: float | None = None
    # which part of the sequence detector fired, in this order: "rule" (the configured rule at its
    # threshold in force), "floor" (the probability floor), "rare_type"; None when `sequence` did not fire
    sequence_part: str | None = None


def rule_fires(rule: str, value: float, ratio, p, rank):
    """The sequence rule at `value` on (arrays of) relative probability, probability and rank."""
    if rule == "relative":
        return ratio < value
    if rule == "probability":
        return p < value
    return rank > value


def predicting_state(seen, window: int):
    """Which of a stream's two staggered GRU states (0/1) predicts the line after `seen` lines
    (array or int): the one with the longer history since its last restart."""
    seen = np.asarray(seen)
    half = window // 2
    hist0 = np.where(seen > window, (seen - 1) % window + 1, seen + 1)
    hist1 = np.where(seen <= half, seen, (seen - 1 - half) % window + 1)
    return (hist1 > hist0).astype(np.int64)


def predicting_state_one(seen: int, window: int) -> int:
    """predicting_state for one int, without numpy (a line alone: Detector._sequence_one)."""
    half = window // 2
    hist0 = (seen - 1) % window + 1 if seen > window else seen + 1
    hist1 = seen if seen <= half else (seen - 1 - half) % window + 1
    return int(hist1 > hist0)


@dataclass(slots=True)
class StreamEnd:
    """What the sequence detector says about a stream that ended (see Detector.end_streams)."""

    stream: str
    anomaly: bool  # the stream ending here was improbable (the `sequence` detector's rule)
    p: float  # predicted probability that the stream ends after its last line
    rank: int  # 1 = ending was the most expected outcome
    ratio: float  # p / the share of stream ends among the training targets
    last_type: int | None  # the stream's last known type
    lines: int  # lines with a known type the stream had (since its state was made)
    expected: list[tuple[int, float]] = field(default_factory=list)  # the types expected next instead


@dataclass(frozen=True)
class DetectorSettings:
    unknown_type: bool = True
    sequence: bool = True
    sequence_rule: str = "relative"  # relative | probability | top_k
    sequence_relative_threshold: float = 0.1
    sequence_threshold: float = 0.02
    sequence_top_k: int = 9
    sequence_calibrate: bool = True  # cap the thresholds at the model's held-back normal quantiles
    sequence_floor: bool = True  # also flag p below every held-back normal step's (MIN_FLOOR_STEPS needed)
    sequence_false_alarm_rate: float = 1e-4  # calibration's target share of normal lines flagged
    sequence_rare_count: int = 5  # a type seen fewer times in training is flagged unless it is the most expected (0: off)
    autoencoder: bool = True
    autoencoder_margin: float = 1.0
    expected: int = 3
    max_streams: int = 100_000

    @classmethod
    def from_config(cls, detectors: object, **kw) -> DetectorSettings:
        """From the config's `detectors` section."""
        u, s, a = detectors.unknown_type, detectors.sequence, detectors.autoencoder  # type: ignore[attr-defined]
        return cls(
            unknown_type=u.enabled,
            sequence=s.enabled,
            sequence_rule=s.rule,
            sequence_relative_threshold=s.relative_threshold,
            sequence_threshold=s.threshold,
            sequence_top_k=s.top_k,
            sequence_calibrate=s.calibrate,
            sequence_floor=s.floor,
            sequence_false_alarm_rate=s.false_alarm_rate,
            sequence_rare_count=s.rare_count,
            autoencoder=a.enabled,
            autoencoder_margin=getattr(a, "margin", 1.0),
            **kw,
        )

    @property
    def rule_value(self) -> float:
        """The sequence rule's configured threshold (k for top_k)."""
        return {"relative": self.sequence_relative_threshold, "probability": self.sequence_threshold,
                "top_k": float(self.sequence_top_k)}[self.sequence_rule]  # fmt: skip


def _tail_value(validation: dict, key: str, rate: float) -> float:
    """The probability (or relative probability) below which a share `rate` of normal steps falls,
    from the bundle's fitted tail; inf when there is none."""
    q = tail_quantile(validation.get(key), rate)
    return math.exp(-q) if np.isfinite(q) else np.inf


def _stat(validation: dict, key: str) -> float:
    """A stored validation statistic, or inf when it is missing or not a positive finite number."""
    x = validation.get(key)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return np.inf
    return x if np.isfinite(x) and x > 0 else np.inf


MIN_STREAM_STARTS = 100  # training streams (starts) needed before a stream's first line is judged
LEARNED_FEW = 20  # a learned type with fewer lines is not judged by where it appears (Detector.unjudged_type)


class Detector:
    """Scores lines with a bundle's three models, keeping one GRU state per stream."""

    def __init__(self, bundle: Bundle, settings: DetectorSettings | None = None):
        self.bundle = bundle
        self.settings = settings or DetectorSettings()
        self.types = bundle.types
        self.seq = bundle.sequence
        self.ae = bundle.autoencoder
        extra = self.types.extra_masks
        self._masker = Masker(extra)
        self.ae_threshold = self.ae.threshold_ * self.settings.autoencoder_margin
        # per message type: the global threshold, or the higher one `learn` gave a type the operator named
        # as normal (UNKNOWN and types the table does not reach keep the global one)
        self._ae_type_threshold = np.full(self.seq.n_types_ + 1, self.ae_threshold)
        for t, v in self.ae.type_thresholds_.items():
            if 0 < t < len(self._ae_type_threshold):
                self._ae_type_threshold[t] = max(self.ae_threshold, v * self.settings.autoencoder_margin)
        self._ae_typed = bool((self._ae_type_threshold != self.ae_threshold).any())  # else one threshold for all
        self.states: OrderedDict[str, StreamState] = OrderedDict()
        self.clock = time.time  # when a stream's last line came (StreamState.at)
        self.streams_evicted = 0  # states forgotten past settings.max_streams (least recently seen first)
        self._templates = {t.id: t.template for t in self.types.types_}
        counts = np.zeros(self.seq.n_types_ + 1)
        learned = np.zeros(len(counts), dtype=bool)
        vouched = np.zeros(len(counts), dtype=bool)  # made by `learn` (not by training) from lines the operator named
        for t in self.types.types_:
            if t.id <= self.seq.n_types_:
                counts[t.id] = t.count
                learned[t.id] = t.learned
                vouched[t.id] = t.vouched and t.generation > 0
        # training frequency of each type (add-one smoothed), for the relative rule
        self._freq = type_frequencies(counts)
        self._count = counts.astype(np.int64)
        # Rare types: seen in training, but fewer than `sequence_rare_count` times. The GRU has too few
        # examples to learn where such a type belongs, so its probability says little either way
        # (and the relative rule ignores types that are rare everywhere by design). Types whose lines
        # were given to `lograven learn` are vouched for by the operator and never rare.
        self.rare_type = (self._count > 0) & (self._count < self.settings.sequence_rare_count) & ~learned
        # Types `learn` made from fewer than LEARNED_FEW lines that the operator named as normal (an
        # alert's own line, or a log given to `learn`): the GRU has seen the message in too few places to
        # say where it belongs. A message learned from one alert's context (a nightly job's line) was
        # flagged as improbable wherever it came next (50 of 50 later lines, by the rule or the floor).
        # Their own lines are predicted but not judged by `sequence` until the model has learned from
        # LEARNED_FEW of them; the line after one is judged as usual. Not exempt: the types of the lines
        # read around an alert (anyone's line near a false alarm), and rare types of the training data
        # that a relearn marked learned; they keep the rule and the floor.
        self.unjudged_type = (self._count > 0) & (self._count < LEARNED_FEW) & vouched
        # A stream's first line is predicted from "begin of stream" alone, which the GRU learned from one
        # example per training stream. A model trained on a few log files has seen one or two starts, so
        # its first-line predictions are not evidence: the daemon joining a file in the middle would flag
        # the most ordinary line. Such lines are predicted (the state advances) but not judged.
        training = bundle.manifest.get("training", {}) if isinstance(bundle.manifest, dict) else {}
        starts = training.get("stream_segments", training.get("streams"))
        self.judges_first_lines = not isinstance(starts, int) or starts >= MIN_STREAM_STARTS
        st = self.settings
        if st.sequence_rule not in ("relative", "probability", "top_k"):
            raise ValueError(f"unknown sequence rule {st.sequence_rule!r}")
        # The thresholds in force: the configured ones, lowered (with calibrate) to what the model's
        # held-back normal steps show, so a model that is unsure of normal orderings alerts less.
        # Both need enough held-back lines (below MIN_FLOOR_STEPS the 0.001 quantile is just the minimum).
        # Calibrated, each is the lowest of: the configured value, the 0.001 quantile of the held-back
        # steps, and the value exceeded by `sequence_false_alarm_rate` of normal steps according to an
        # exponential tail fitted to the held-back steps' most improbable 5% (bundles from before the
        # tail fit: the quantile alone).
        v = self.seq.validation_
        enough = v.get("steps", 0) >= MIN_FLOOR_STEPS
        cal = st.sequence_calibrate and enough
        rate = st.sequence_false_alarm_rate
        # The empirical quantile at the rate (with fewer than 1 / rate held-back lines: their minimum)
        # guards against a tail that the held-back lines themselves contradict.
        def cut(q_key, tail_key, low_key):
            emp = empirical_quantile(v.get(low_key), v.get("low_steps", 0), rate)
            return min(_stat(v, q_key), _tail_value(v, tail_key, rate), emp) if cal else np.inf

        self.relative_threshold = min(st.sequence_relative_threshold, cut("relative_q", "tail_relative", "relative_low"))
        self.probability_threshold = min(st.sequence_threshold, cut("probability_q", "tail_p", "probability_low"))
        # Stream ends (models that learned them) are calibrated on their own: on the ends of the
        # held-back streams, which are fewer than their lines (MIN_END_STEPS needed).
        end_p = np.inf
        if st.sequence_calibrate and v.get("end_steps", 0) >= MIN_END_STEPS:
            end_p = empirical_quantile(v.get("end_probability_low"), v.get("end_steps", 0), rate)
        f_end = self.seq.end_frequency_
        self.end_probability_threshold = min(st.sequence_threshold, end_p)
        self.end_relative_threshold = min(st.sequence_relative_threshold, end_p / f_end if f_end > 0 else np.inf)
        # The floor: a line whose type is less probable than at any held-back normal step (and than
        # the tail's `rate` value) is flagged whatever the rule says (a type seen a few times in
        # training, where it never was).
        floor = min(_stat(v, "probability_min"), _tail_value(v, "tail_p", rate)) if st.sequence_floor and enough else np.inf
        self.probability_floor = float(floor) if np.isfinite(floor) else 0.0

    @property
    def sequence_rule_value(self) -> float:
        """The sequence rule's threshold in force (k for top_k)."""
        return {"relative": self.relative_threshold, "probability": self.probability_threshold,
                "top_k": float(self.settings.sequence_top_k)}[self.settings.sequence_rule]  # fmt: skip

    @property
    def end_rule_value(self) -> float:
        """The threshold in force for stream ends (k for top_k)."""
        return {"relative": self.end_relative_threshold, "probability": self.end_probability_threshold,
                "top_k": float(self.settings.sequence_top_k)}[self.settings.sequence_rule]  # fmt: skip

    # ------------------------------------------------------------- states
    def export_states(self) -> dict[str, tuple[np.ndarray, int, int, float]]:
        """GRU state per stream (for checkpoints): {stream: (h (2, members * units) float32, lines seen, last type,
        the wall-clock time of its last line)}. import_states takes them back as they were, time included, so
        that forget_idle still forgets a restored idle stream."""
        return {k: (s.h.copy(), s.seen, s.last, s.at) for k, s in self.states.items()}

    def import_states(self, states: dict[str, tuple]) -> int:
        """Restore states saved by export_states ((h, seen) without the last type is accepted too, and a
        fourth item, the wall-clock time of the stream's last line, when known: else now); states of the
        wrong shape are skipped. Returns how many."""
        shape = (2, self.seq.width)
        n = 0
        now = self.clock()
        for k, st in states.items():
            h, seen = st[0], st[1]
            last = int(st[2]) if len(st) > 2 and st[2] is not None else 0
            at = now
            if len(st) > 3 and isinstance(st[3], (int, float)) and not isinstance(st[3], bool):
                try:
                    at = float(st[3]) if math.isfinite(float(st[3])) else now
                except OverflowError:  # a 400-digit integer in a damaged checkpoint
                    pass
            h = np.asarray(h, dtype=np.float32)
            if isinstance(seen, bool) or not isinstance(seen, int) or not 0 <= seen < 2**62:
                continue  # a damaged checkpoint's (a review: 10**19 overflowed int64 at every batch, a crash loop)
            if h.shape == shape and np.all(np.isfinite(h)):
                self.states[k] = StreamState(h.copy(), int(seen), last if 0 < last <= self.seq.n_types_ else 0, min(at, now))
                n += 1
        return n

    def forget_idle(self, before: float) -> list[str]:
        """Forget the streams whose last line came before wall-clock time `before`; returns their names.
        A stream per program or per session key that never comes back (a container's tag) would otherwise
        keep its state, in memory and in every checkpoint, until runtime.max_streams pushed it out."""
        gone = [k for k, s in self.states.items() if s.at < before]
        for k in gone:
            del self.states[k]
        return gone

    def template(self, type_id: int) -> str | None:
        return self._templates.get(type_id)

    def line_pattern(self, line: str) -> str:
        """An unknown line's identity for de-duplication and allowlisting, masked as this model masks
        (its `extra_masks` too): two lines that differ only in a value a mask covers are one pattern."""
        return line_pattern(line, self._masker)

    def type_count(self, type_id: int) -> int:
        """How many training lines had this type (0: unknown to the sequence model)."""
        return int(self._count[type_id]) if 0 < type_id < len(self._count) else 0

    def unjudged(self, type_ids):
        """Which of `type_ids` are learned types too few to be judged by where they appear (unjudged_type)."""
        t = np.asarray(type_ids, dtype=np.int64)  # [] (a batch of blank lines) is an int array too
        inside = (t > 0) & (t < len(self.unjudged_type))
        return inside & self.unjudged_type[np.where(inside, t, 0)]

    def rare_fires(self, type_ids, rank, end_more_likely=False):
        """The rare-type rule on (arrays of) type id and rank: the type was seen in training, fewer
        than `sequence_rare_count` times, and it was not what the GRU expected most here (another
        type, or, for a model that learned stream ends, the stream ending here)."""
        t = np.asarray(type_ids, dtype=np.int64)
        inside = (t > 0) & (t < len(self.rare_type))
        return inside & self.rare_type[np.where(inside, t, 0)] & ((np.asarray(rank) > 1) | np.asarray(end_more_likely))

    # ------------------------------------------------------------- detect
    def detect(self, items: Sequence[tuple[str, LogRecord]]) -> list[Verdict]:
        """One verdict per (stream, record), in order. A blank line (whitespace only) is not judged: training
        skips such lines, so every detector would fire on them. Its verdict is type 0 with no detector,
        and it does not advance its stream's sequence state."""
        blank = [i for i, (_, rec) in enumerate(items)
                 if not rec.message.strip() and rec.timestamp is None and rec.host is None and rec.program is None]  # fmt: skip
        if not blank:
            return self._detect(items)
        skip = set(blank)
        judged = iter(self._detect([it for i, it in enumerate(items) if i not in skip]))
        return [Verdict(type_id=UNKNOWN, template=None, anomaly=False, detectors=[]) if i in skip else next(judged)
                for i in range(len(items))]  # fmt: skip

    def _detect(self, items: Sequence[tuple[str, LogRecord]]) -> list[Verdict]:
        n = len(items)
        st = self.settings
        classify = self.types.classify_tokens
        tokens = [premask(rec.message).split() for _, rec in items]
        type_ids = [classify(tok) for tok in tokens]

        ae_err: np.ndarray | None = None
        if st.autoencoder:
            # the autoencoder's input (training.ae_text), from the tokens already split for typing; its
            # first `length_` words only: each gives one BPE id at least, and the autoencoder reads the
            # first `length_` ids (a 64 KiB line of words cost 60 ms in masking alone)
            mask = self._masker.mask_token
            L = self.ae.length_ or None
            texts = [
                " ".join([mask(r.program), *map(mask, tok[:L])]) if r.program else " ".join(map(mask, tok[:L]))
                for (_, r), tok in zip(items, tokens)
            ]
            ae_err = self.ae.score(texts)

        prev = [0] * n
        seq_p = np.full(n, np.nan)
        seq_rank = np.zeros(n, dtype=np.int64)
        end_first = np.zeros(n, dtype=bool)
        expected: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        if st.sequence:
            self._sequence(items, type_ids, seq_p, seq_rank, expected, prev, end_first)

        out: list[Verdict] = []
        # The calibrated threshold is one held-back line's own float32 score; the same line scored in
        # a batch of another shape can differ by a few ulps. A relative tolerance keeps the verdict
        # independent of what else is in the batch.
        if self._ae_typed:
            ae_thr = self._ae_type_threshold[np.asarray(type_ids, dtype=np.int64)].tolist()  # ids <= n_types (load)
        else:  # the common case, without a lookup per line
            ae_thr = [self.ae_threshold] * n
        tolerance = 1.0 + 1e-5
        templates = self._templates
        ratio = np.full(n, np.nan)
        ok = ~np.isnan(seq_p)
        if ok.any():
            ratio[ok] = seq_p[ok] / self._freq[np.asarray(type_ids)[ok]]
        with np.errstate(invalid="ignore"):
            by_rule = ok & rule_fires(st.sequence_rule, self.sequence_rule_value, ratio, seq_p, seq_rank)
            by_floor = ok & (seq_p < self.probability_floor) if self.probability_floor > 0 else np.zeros(n, dtype=bool)
        by_rare = np.zeros(n, dtype=bool)
        if ok.any() and self.rare_type.any():
            by_rare = self.rare_fires(np.asarray(type_ids), seq_rank, end_first) & ok
        seq_fire = by_rule | by_floor | by_rare
        if self.unjudged_type.any():
            seq_fire &= ~self.unjudged(np.asarray(type_ids))
        for i in range(n):
            t = type_ids[i]
            fired = []
            if t == UNKNOWN:
                if st.unknown_type:
                    fired.append("unknown_type")
            p = seq_p[i]
            part = None
            if seq_fire[i]:
                fired.append("sequence")
                part = "rule" if by_rule[i] else "floor" if by_floor[i] else "rare_type"
            e = None
            if ae_err is not None:
                e = float(ae_err[i])
                if e != e:  # NaN: weights that overflow float32 on this line (a damaged bundle): not reconstructed
                    e = math.inf  # (a review: NaN > threshold is false, and the detector was off for such lines)
                if e > ae_thr[i] * tolerance:
                    fired.append("autoencoder")
            out.append(
                Verdict(
                    type_id=t,
                    template=templates.get(t),
                    anomaly=bool(fired),
                    detectors=fired,
                    sequence_p=None if p != p else float(p),
                    sequence_rank=int(seq_rank[i]) if p == p else None,
                    sequence_ratio=None if p != p else float(ratio[i]),
                    end_more_likely=bool(end_first[i]),
                    previous_type=prev[i] or None,
                    expected=expected[i],
                    ae_error=e,
                    ae_threshold=ae_thr[i] if ae_err is not None else None,
                    sequence_part=part,
                )
            )
        return out

    single_line_path = True  # a batch of one line takes _sequence_one (False: the general path, for tests)

    def _sequence(self, items, type_ids, seq_p, seq_rank, expected, prev, end_first) -> None:
        seq = self.seq
        U = seq.width
        W = seq.params.window
        half = W // 2
        # per stream, the lines with a known type, in order
        by_stream: dict[str, list[int]] = {}
        for i, (stream, _) in enumerate(items):
            if type_ids[i] != UNKNOWN and type_ids[i] <= seq.n_types_:
                by_stream.setdefault(stream, []).append(i)
        if not by_stream:
            return
        if len(by_stream) == 1:
            (k, rows), = by_stream.items()
            if len(rows) == 1 and self.single_line_path:  # plugin mode: omprog sends a line, waits for its OK
                self._sequence_one(k, rows[0], type_ids, seq_p, seq_rank, expected, prev, end_first)
                return
        names = list(by_stream)
        fresh = [k for k in names if k not in self.states]
        if fresh:
            new = [seq.new_state() for _ in fresh]
            seq.init_states(new)
            for k, s in zip(fresh, new):
                self.states[k] = s
        states = [self.states[k] for k in names]
        now = self.clock()
        # most recent last, by each stream's last line in the batch (by its first, a batch a, b, c, a had kept
        # b and c at max_streams 2, where line by line keeps c and a: a review)
        for k in sorted(names, key=lambda k: by_stream[k][-1]):
            self.states.move_to_end(k)
        for k, s in zip(names, states):
            last = s.last
            for i in by_stream[k]:
                prev[i] = last
                last = type_ids[i]
            s.last = last
            s.at = now
        self._evict_streams()
        H = np.stack([s.h for s in states])  # (S, 2, U)
        seen = np.array([s.seen for s in states], dtype=np.int64)
        lines = [by_stream[k] for k in names]
        T = max(len(v) for v in lines)
        order = sorted(range(len(names)), key=lambda j: -len(lines[j]))  # active streams form a prefix
        H, seen = H[order], seen[order]
        lines = [lines[j] for j in order]
        S = len(lines)
        lens = np.array([len(v) for v in lines])
        idx_mat = np.zeros((S, T), dtype=np.int64)
        for j, v in enumerate(lines):
            idx_mat[j, : len(v)] = v
        tid = np.asarray(type_ids, dtype=np.int64)
        # Everything that does not depend on the hidden state is computed for all steps at once:
        # which of the two staggered states predicts, when each restarts, and the input rows.
        N = seen[:, None] + np.arange(T)[None, :]  # lines seen before step t
        pick = predicting_state(N, W)
        reset0 = (N % W == 0) & (N > 0)
        reset1 = (N % W == half) & (N >= half)
        any0, any1 = reset0.any(axis=0).tolist(), reset1.any(axis=0).tolist()
        X = seq.input_rows(tid[idx_mat])  # (S, T, 3U)
        active = [int((lens > t).sum()) for t in range(T)]
        rows_line = np.empty(int(lens.sum()), dtype=np.int64)
        rows_h = np.empty((len(rows_line), U), dtype=np.float32)
        # predicted from "begin of stream" alone: the step-0 rows (the first S, in this order) of fresh streams
        first0 = seen == 0
        ar = np.arange(S)
        r = 0
        for t in range(T):
            act = active[t]
            Ha = H[:act]
            rows_h[r : r + act] = Ha[ar[:act], pick[:act, t]]
            rows_line[r : r + act] = idx_mat[:act, t]
            r += act
            if any0[t]:
                Ha[reset0[:act, t], 0] = 0.0
            if any1[t]:
                Ha[reset1[:act, t], 1] = 0.0
            H[:act] = seq.step_pair(Ha, X[:act, t])
        inv = np.argsort(order)
        H = H[inv]
        seen = seen[inv] + lens[inv]
        for j, s in enumerate(states):
            s.h = H[j].copy()
            s.seen = int(seen[j])
        if not self.judges_first_lines and first0.any():
            keep = np.ones(len(rows_line), dtype=bool)  # first lines: the state advanced above, but they are not judged
            keep[:S][first0] = False
            rows_line, rows_h = rows_line[keep], rows_h[keep]
            if not len(rows_line):
                return
        probs = seq.probs(rows_h)
        obs = tid[rows_line]
        p_obs = probs[np.arange(len(obs)), obs]
        seq_p[rows_line] = p_obs
        # rank among the types (class 0, a stream's end, is not a type), as in `expected`
        seq_rank[rows_line] = (probs[:, 1:] > p_obs[:, None]).sum(axis=1) + 1
        if seq.params.stream_end:
            end_first[rows_line] = probs[:, END] > p_obs
        if self.settings.expected > 0:
            for row, ex in zip(rows_line.tolist(), self._top_types(probs)):
                expected[row] = ex

    def _sequence_one(self, k, i, type_ids, seq_p, seq_rank, expected, prev, end_first) -> None:
        """_sequence for one line of one stream, with the same results: scalars instead of (S, T) arrays,
        which cost more than the GRU step itself when a batch is a single line (about 3x)."""
        seq = self.seq
        W = seq.params.window
        s = self.states.get(k)
        if s is None:
            s = seq.new_state()
            seq.init_states([s])
            self.states[k] = s
        else:
            self.states.move_to_end(k)
        self._evict_streams()
        t = type_ids[i]
        prev[i] = s.last
        s.last = t
        s.at = self.clock()
        n = s.seen
        pick = predicting_state_one(n, W)
        h = s.h.copy()
        row_h = h[pick].copy()
        if n > 0 and n % W == 0:
            h[0] = 0.0
        if n >= W // 2 and n % W == W // 2:
            h[1] = 0.0
        s.h = seq.step_pair(h[None], seq.input_rows(np.array([t]))).reshape(h.shape)
        s.seen = n + 1
        if n == 0 and not self.judges_first_lines:
            return
        probs = seq.probs(row_h[None])
        p = probs[0, t]
        seq_p[i] = p
        seq_rank[i] = int((probs[0, 1:] > p).sum()) + 1
        if seq.params.stream_end:
            end_first[i] = bool(probs[0, END] > p)
        if self.settings.expected > 0:
            expected[i] = self._top_types(probs)[0]

    def _evict_streams(self) -> None:
        """Past settings.max_streams, forget the least recently seen streams."""
        while len(self.states) > self.settings.max_streams:
            self.states.popitem(last=False)
            self.streams_evicted += 1

    def _top_types(self, probs: np.ndarray) -> list[list[tuple[int, float]]]:
        """The most probable next types (class 0, a stream's end, is not a type), most likely first."""
        types = probs[:, 1:]
        k = min(self.settings.expected, types.shape[1])
        if k <= 0:
            return [[] for _ in range(len(probs))]
        if len(probs) == 1:  # a line alone (plugin mode): the row functions below cost more than the selection
            top1 = np.argpartition(-types[0], k - 1)[:k].tolist()
            return [sorted(((j + 1, float(types[0, j])) for j in top1), key=lambda x: (-x[1], x[0]))]
        top = np.argpartition(-types, k - 1, axis=1)[:, :k]
        topp = np.take_along_axis(types, top, axis=1)
        o = np.lexsort((top, -topp), axis=1)  # most probable first; equal ones by type id (as one row above)
        top = np.take_along_axis(top, o, axis=1) + 1
        topp = np.take_along_axis(topp, o, axis=1)
        return [list(zip(t, p)) for t, p in zip(top.tolist(), topp.tolist())]

    # ------------------------------------------------------- stream ends
    @property
    def judges_stream_ends(self) -> bool:
        """Whether the model learned where streams end (bundles trained with `stream_end`)."""
        return self.settings.sequence and self.seq.params.stream_end and self.seq.end_frequency_ > 0

    def end_streams(self, names: Sequence[str]) -> list[StreamEnd]:
        """Streams that have ended (a session is over, or idle past a timeout): judge whether
        ending after what they saw was expected, and forget their state.

        A stream that stops early (HDFS: a block allocated and received, then nothing) has no
        improbable line; only its end is improbable. Returns one StreamEnd per named stream
        that has a state, in order; none when the model did not learn stream ends.
        """
        found = [(k, self.states.pop(k)) for k in names if k in self.states]
        if not found or not self.judges_stream_ends:
            return []
        seq = self.seq
        pick = predicting_state([s.seen for _, s in found], seq.params.window)
        probs = seq.probs(np.stack([s.h[i] for (_, s), i in zip(found, pick.tolist())]))
        rank = (probs > probs[:, END][:, None]).sum(axis=1) + 1
        # float64, as lines' ratios are: the calibrated threshold is one held-back end's own ratio, and
        # a float32 comparison against it can flip an equal end (evaluate's sweep computes in float64)
        p_end = probs[:, END].astype(np.float64)
        ratio = p_end / seq.end_frequency_
        st = self.settings
        # ends: at their own threshold in force (calibrated on the held-back streams' ends)
        fire = rule_fires(st.sequence_rule, self.end_rule_value, ratio, p_end, rank)
        tops = self._top_types(probs) if st.expected > 0 else [[] for _ in found]
        return [
            StreamEnd(k, bool(fire[i]), float(p_end[i]), int(rank[i]), float(ratio[i]), s.last or None, s.seen, tops[i])
            for i, (k, s) in enumerate(found)
        ]
