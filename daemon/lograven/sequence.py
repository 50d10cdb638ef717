"""Seed 003's next-message-type GRU: Embedding -> GRU -> softmax over types.

Input index 0 is "begin of stream" (BOS); index t (1..n_types) is type t.
Output class t is type t. An unknown line is flagged by its own detector and
does not advance the GRU, so output class 0 never predicts a line: when the
model learns stream ends (`stream_end`, for streams that are sessions such as
one HDFS block), class 0 is "the stream ends here", trained on the end of
every training stream; otherwise it is never a target.

Training windows are `window` steps from a zero state. A daemon runs for
months, so serving must stay inside what training saw: every stream keeps
two GRU states, restarted half a window apart, and predicts with the one
with the longer history (between window/2 and window steps). Two GRU steps
per line, and predictions never drift into untrained state space.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from scipy.special import expit

from lograven.config import MAX_FALSE_ALARM_RATE
from lograven.errors import LogravenError
from lograven.runtime import check_shapes, load_weights, save_weights

log = logging.getLogger(__name__)

BOS = 0
END = 0  # output class "the stream ends here" (stream_end models)
_END_MARK = -2  # in training windows: the end of a stream (target class END); -1 is padding
CALIBRATION_QUANTILE = 0.001  # detectors.sequence.calibrate: alert on at most ~0.1% of held-back normal steps
MIN_FLOOR_STEPS = 1000  # held-back steps needed before their minimum is a floor (<= their 0.1% quantile)
# Below this many held-back steps the calibrated rule rests on fewer than 5 of them, and a model of so few
# lines gives never-seen transitions probabilities as high as its rarest normal steps (a soak: a model of
# 20,000 lines held back 2,000 steps and caught 0 of 100 forbidden transitions; the default model, 100,000
# lines and 10,000 steps: 103 of 103)
FEW_CALIBRATION_STEPS = 5_000
TAIL_FRACTION = 0.05  # the exponential tail is fitted to the most surprising 5% of held-back steps
MIN_TAIL = 20  # ... and to at least this many of them
MIN_STREAMS_FOR_HOLDOUT = 20  # fewer short streams than this: all train, none held back
MIN_END_STEPS = 20  # held-back stream ends needed before the ends get their own calibrated threshold
LOWEST_KEPT = 64  # at least this many lowest held-back values are kept, for the empirical quantile at a rate
MAX_MEMBERS = 8  # ensemble members a bundle may have (serving cost grows with each)
MAX_WINDOW = 100_000  # steps of a training window (training.sequence.window has the same limit)
AUTO_MEMBERS = 3  # members: 0 (automatic) trains this many when the streams are sessions, else one
WEIGHT_NAMES = ("emb", "gru_k", "gru_rk", "gru_b", "out_k", "out_b")


@dataclass
class SequenceParams:
    embedding_dim: int = 32
    units: int = 64
    window: int = 64
    batch_size: int = 64
    epochs: int = 30
    patience: int = 3
    learning_rate: float = 0.003
    stream_end: bool = False  # the training streams are complete sessions: learn where they end
    members: int = 1  # GRUs trained with seeds seed, seed+1, ...; their distributions are averaged (0: automatic)


@dataclass
class StreamState:
    """Serving state of one stream: two staggered GRU states and how many lines it has seen."""

    h: np.ndarray  # (2, members * units) float32
    seen: int = 0
    last: int = 0  # the last type fed (0: none yet)
    at: float = 0.0  # wall-clock time of its last line (Detector.forget_idle)


class SequenceModel:
    """Fit with TensorFlow, serve with numpy."""

    def __init__(self, params: SequenceParams | None = None):
        self.params = params or SequenceParams()
        self.n_types_: int = 0
        self.members_: list[dict[str, np.ndarray]] = []  # one weight set per ensemble member
        self.history_: dict[str, list[float]] = {}
        self.validation_: dict[str, float] = {}
        self.end_frequency_: float = 0.0  # share of training targets that were stream ends
        self._table: np.ndarray | None = None
        self._stacked: dict[str, np.ndarray] | None = None

    @property
    def weights_(self) -> dict[str, np.ndarray]:
        """The first member's weights (the only ones of a single GRU)."""
        return self.members_[0] if self.members_ else {}

    @weights_.setter
    def weights_(self, W: dict[str, np.ndarray]) -> None:
        self.members_ = [W]
        self._table = self._stacked = None

    @property
    def width(self) -> int:
        """Size of one serving state: every member's GRU state side by side."""
        return self.params.units * max(1, len(self.members_) or self.params.members)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        sequences: Sequence[np.ndarray],
        n_types: int,
        *,
        seed: int = 42,
        validation_fraction: float = 0.1,
        progress: Callable[[str, float], None] | None = None,
        init_weights: dict[str, np.ndarray] | Sequence[dict[str, np.ndarray]] | None = None,
        replay: Sequence[np.ndarray] = (),
        type_freq: np.ndarray | None = None,
        ended: Sequence[bool] | None = None,
        replay_ended: Sequence[bool] | None = None,
    ) -> SequenceModel:
        """Train on per-stream type-id sequences (UNKNOWN ids removed), holding back validation steps.

        `type_freq`: each type's training frequency as the detector computes it (type_frequencies of
        the message types' line counts), for the relative rule's figures on the held-back steps.
        `ended` (with `stream_end`): which of `sequences` really ended in the training data; a stream
        still open when the data stops gets no end (default: all ended). `replay_ended`: the same for
        the replay streams (default: none ended).
        With `stream_end`, validation holds back whole streams only, so every trained stream keeps
        its end.
        """
        p = self.params
        self.n_types_ = n_types
        fulls = []
        sequences = list(sequences)
        if ended is None:
            ended = [True] * len(sequences)
        if len(ended) != len(sequences):
            raise ValueError("ended: one flag per sequence")
        replay = list(replay)
        if replay_ended is None:
            replay_ended = [False] * len(replay)
        if len(replay_ended) != len(replay):
            raise ValueError("replay_ended: one flag per replay sequence")
        for seq, has_end in zip(sequences + replay, list(ended) + list(replay_ended)):
            seq = np.asarray(seq, dtype=np.int32)
            seq = seq[seq > 0]
            if len(seq) == 0:
                continue
            tail = [_END_MARK] if p.stream_end and has_end else []
            fulls.append(np.concatenate([[BOS], seq, tail]).astype(np.int32))
        # Validation: the tail of each long stream (a log file), and whole streams held back
        # among the short ones (sessions, e.g. one per HDFS block) when there are enough of them.
        # Streams that end are never cut: their end would only ever be a validation target.
        # An ensemble with enough short streams is cross-fitted: member m holds back fold m of
        # them, so every short stream is held back once, by a member that never trained on it.
        long_limit = 4 * p.window if not p.stream_end else np.inf
        short = [i for i, f in enumerate(fulls) if len(f) <= long_limit]
        if p.members <= 0:  # automatic: an ensemble where its calibration can be cross-fitted (sessions)
            enough = validation_fraction > 0 and len(short) >= AUTO_MEMBERS * MIN_STREAMS_FOR_HOLDOUT
            p = self.params = replace(p, members=AUTO_MEMBERS if enough else 1)
        K = int(p.members)
        rng = np.random.default_rng(seed)
        cross = K > 1 and validation_fraction > 0 and len(short) >= K * MIN_STREAMS_FOR_HOLDOUT
        if cross:
            order = rng.permutation(short).tolist()
            holds = [set(order[m::K]) for m in range(K)]
        else:
            n_hold = int(len(short) * validation_fraction) if len(short) >= MIN_STREAMS_FOR_HOLDOUT else 0
            holds = [set(rng.choice(short, n_hold, replace=False).tolist()) if n_hold else set()] * K
        self.holdout_ = holds  # per member, the indices (among the non-empty streams) it held back whole
        if cross:
            splits = [_split(fulls, h, long_limit, validation_fraction, p.window) for h in holds]
        else:
            splits = [_split(fulls, holds[0], long_limit, validation_fraction, p.window)] * K  # one, shared
        n_targets = sum(len(f) - 1 for f in fulls)
        n_ends = sum(int(f[-1] == _END_MARK) for f in fulls)
        self.end_frequency_ = n_ends / n_targets if p.stream_end and n_targets else 0.0
        if isinstance(init_weights, dict):
            init_weights = [init_weights]
        if init_weights is not None and len(init_weights) != K:
            raise ValueError(f"init_weights: {len(init_weights)} weight sets for {K} ensemble members")
        self.members_ = []
        for m in range(K):
            X, V = splits[m][0], splits[m][1]
            init = _grow(init_weights[m], n_types) if init_weights is not None else None
            prog = None
            if progress is not None:
                prog = (lambda stage, f, m=m: progress(stage, (m + f) / K)) if K > 1 else progress
            W, hist = _keras_fit(X, V, n_types, p, seed + m, init, prog)
            self.members_.append(W)
            if m == 0:
                self.history_ = hist
        self._table = self._stacked = None
        if type_freq is None:
            X0 = splits[0][0]
            type_freq = type_frequencies(np.bincount(X0[:, 1:][X0[:, 1:] > 0], minlength=n_types + 1))
        # the held-back steps, each predicted by a model that did not train on it: a short stream of
        # fold m by member m alone (cross-fitted), everything else by the whole model
        freq = np.asarray(type_freq, dtype=float)
        if not cross:
            if splits[0][1] is not None:
                self.validation_ = self._validation_stats(splits[0][1], freq, splits[0][2])
            return self
        parts = []
        for m, (_, V, once, is_tail) in enumerate(splits):
            if V is None:
                continue
            fold = ~is_tail
            if fold.any():
                parts.append((V[fold], once[fold], self._member(m).window_probs(V[fold][:, :-1])))
            if m == 0 and not fold.all():  # the long streams' tails: the same for every member
                parts.append((V[~fold], once[~fold], self.window_probs(V[~fold][:, :-1])))
        if parts:
            V, once, probs = (np.concatenate([x[i] for x in parts]) for i in range(3))
            self.validation_ = {**self._validation_stats(V, freq, once, probs), "cross_fitted": K}
        return self

    def _member(self, m: int) -> SequenceModel:
        """Member m alone, as a one-GRU model."""
        one = SequenceModel(replace(self.params, members=1))
        one.n_types_ = self.n_types_
        one.weights_ = self.members_[m]
        return one

    def _validation_stats(self, V: np.ndarray, freq: np.ndarray, once: np.ndarray | None = None,
                          probs: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
        """How often the observed next type is improbable on held-back normal data (the false-positive
        rate of each rule at its default), and the thresholds that calibration caps the rules at: the
        CALIBRATION_QUANTILE quantiles of the held-back steps' probability and relative probability.

        Windows overlap by half; `once` marks each held-back line in the first window that has it
        (the longer history, as serving uses), so every line counts once.
        """
        if probs is None:
            probs = self.window_probs(V[:, :-1])
        tgt = V[:, 1:]
        mask = tgt > 0
        if once is not None:
            mask &= once
        p_obs = np.take_along_axis(probs, tgt[..., None], axis=2)[..., 0][mask]
        rank = (probs > np.take_along_axis(probs, tgt[..., None], axis=2)).sum(axis=2)[mask] + 1
        if not len(p_obs):
            return {"steps": 0}
        ratio = p_obs / freq[tgt[mask]]
        tail_p, tail_r = tail_fit(-np.log(np.maximum(p_obs, 1e-30))), tail_fit(-np.log(np.maximum(ratio, 1e-30)))
        ends = {}
        at_end = V[:, 1:] == _END_MARK
        if once is not None:
            at_end &= once
        if self.params.stream_end and at_end.any() and self.end_frequency_ > 0:
            # held-back streams' ends: how probable ending was where normal streams did end
            # (probabilities, not ratios: `learn` changes the end frequency, the probabilities keep their scale)
            ends = {"end_steps": int(at_end.sum()), "end_probability_low": lowest(probs[..., END][at_end])}
        return {
            "steps": int(mask.sum()),
            "low_steps": int(mask.sum()),  # how many held-back values the two lists below are the lowest of
            "relative_low": lowest(ratio),
            "probability_low": lowest(p_obs),
            **ends,
            "relative_q": float(np.quantile(ratio, CALIBRATION_QUANTILE, method="lower")),
            "probability_q": float(np.quantile(p_obs, CALIBRATION_QUANTILE, method="lower")),
            "probability_min": float(p_obs.min()),
            "fp_rate_relative<0.1": float((ratio < 0.1).mean()),
            "fp_rate_p<0.02": float((p_obs < 0.02).mean()) if len(p_obs) else 0.0,
            "fp_rate_top9": float((rank > 9).mean()) if len(rank) else 0.0,
            "top1_accuracy": float((rank == 1).mean()) if len(rank) else 0.0,
            **({"tail_p": tail_p} if tail_p else {}),
            **({"tail_relative": tail_r} if tail_r else {}),
        }

    # ---------------------------------------------------------------- serve
    def _input_table(self) -> np.ndarray:
        """Per input index, every member's input projection (embedding @ kernel + bias), side by side."""
        if self._table is None:
            self._table = np.concatenate(
                [W["emb"] @ W["gru_k"] + W["gru_b"][0] for W in self.members_], axis=1
            ).astype(np.float32)
        return self._table

    def _stack(self) -> dict[str, np.ndarray]:
        """The members' recurrent and output weights stacked on a leading member axis."""
        if self._stacked is None:
            M = self.members_
            self._stacked = {
                "rk": np.stack([W["gru_rk"] for W in M]), "rb": np.stack([W["gru_b"][1] for W in M]),
                "ok": np.stack([W["out_k"] for W in M]), "ob": np.stack([W["out_b"] for W in M]),
            }  # fmt: skip
        return self._stacked

    def new_state(self) -> StreamState:
        return StreamState(np.zeros((2, self.width), dtype=np.float32), 0)

    def step(self, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """One GRU step for a batch: h (B, units), inputs (B,) input indices -> new h."""
        return self.step_pair(h[:, None, :], self.input_rows(inputs))[:, 0]

    def input_rows(self, inputs: np.ndarray) -> np.ndarray:
        """Input projections (embedding @ kernel + bias) of input indices, any shape -> shape + (3U,)."""
        return self._input_table()[inputs]

    def step_pair(self, h: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One step for both staggered states of B streams: h (B, 2, K*U), x (B, K*3U) input rows -> new h
        (K ensemble members, each with its own U-sized part of the state)."""
        if len(self.members_) > 1:
            return self._step_members(h, x)
        U = h.shape[-1]
        inner = h @ self.weights_["gru_rk"]
        inner += self.weights_["gru_b"][1]
        x = x[:, None, :]
        zr = expit(x[..., : 2 * U] + inner[..., : 2 * U])
        hh = x[..., 2 * U :] + zr[..., U:] * inner[..., 2 * U :]
        np.tanh(hh, out=hh)
        h = h - hh
        h *= zr[..., :U]
        h += hh
        return h

    def _step_members(self, h: np.ndarray, x: np.ndarray) -> np.ndarray:
        lead, K, U = h.shape[:-1], len(self.members_), self.params.units  # lead: (B, 2) or (B, 1)
        n = int(np.prod(lead))
        st = self._stack()
        inner = np.matmul(h.reshape(n, K, U).transpose(1, 0, 2), st["rk"])  # (K, n, 3U): one matmul per member
        inner += st["rb"][:, None, :]
        inner = inner.transpose(1, 0, 2).reshape(*lead, K, 3 * U)
        xk = x.reshape(x.shape[0], *([1] * (len(lead) - 1)), K, 3 * U)
        zr = expit(xk[..., : 2 * U] + inner[..., : 2 * U])
        hh = xk[..., 2 * U :] + zr[..., U:] * inner[..., 2 * U :]
        np.tanh(hh, out=hh)
        out = h.reshape(*lead, K, U) - hh
        out *= zr[..., :U]
        out += hh
        return out.reshape(*lead, K * U)

    def probs(self, h: np.ndarray) -> np.ndarray:
        """Next-type distribution (B, n_types+1) from hidden states (B, K*units): the members' mean."""
        if len(self.members_) > 1:
            st = self._stack()
            K, U = len(self.members_), self.params.units
            logits = np.matmul(h.reshape(len(h), K, U).transpose(1, 0, 2), st["ok"])  # (K, B, n+1)
            logits += st["ob"][:, None, :]
            logits -= logits.max(axis=2, keepdims=True)
            e = np.exp(logits)
            e /= e.sum(axis=2, keepdims=True)
            return e.mean(axis=0)
        W = self.weights_
        logits = h @ W["out_k"] + W["out_b"]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def init_states(self, states: Sequence[StreamState]) -> None:
        """Feed BOS into fresh states so the first line is predicted too."""
        H = np.zeros((len(states), self.width), dtype=np.float32)
        H = self.step(H, np.zeros(len(states), dtype=np.int64))
        for i, s in enumerate(states):
            s.h = np.stack([H[i], np.zeros_like(H[i])])

    def window_probs(self, X: np.ndarray) -> np.ndarray:
        """Stateless evaluation of windows (N, T) from a zero state -> (N, T, n_types+1)."""
        N, T = X.shape
        h = np.zeros((N, self.width), dtype=np.float32)
        out = np.empty((N, T, self.n_types_ + 1), dtype=np.float32)
        for t in range(T):
            h = self.step(h, X[:, t])
            out[:, t] = self.probs(h)
        return out

    # ---------------------------------------------------------- persistence
    def save(self, d: Path) -> list[str]:
        """One file; members after the first under prefixed names (m1_emb, ...)."""
        arrays = dict(self.weights_)
        for m, W in enumerate(self.members_[1:], 1):
            arrays.update({f"m{m}_{k}": v for k, v in W.items()})
        save_weights(d / "sequence.npz", arrays)
        return ["sequence.npz"]

    def meta(self) -> dict:
        params = asdict(self.params)
        if params["members"] == 1:
            del params["members"]  # a single GRU's bundle stays readable by versions without ensembles
        return {"params": params, "n_types": self.n_types_, "validation": self.validation_,
                "end_frequency": self.end_frequency_}

    @classmethod
    def load(cls, d: Path, meta: dict) -> SequenceModel:
        obj = cls(SequenceParams(**meta["params"]))
        if not isinstance(obj.params.members, int) or not 1 <= obj.params.members <= MAX_MEMBERS:
            raise LogravenError(f"{d / 'manifest.json'}: sequence members must be 1..{MAX_MEMBERS}; retrain")
        obj.n_types_ = int(meta["n_types"])
        obj.validation_ = dict(meta.get("validation", {}))
        obj.end_frequency_ = float(meta.get("end_frequency", 0.0))
        K = obj.params.members
        names = WEIGHT_NAMES + tuple(f"m{m}_{k}" for m in range(1, K) for k in WEIGHT_NAMES)
        arrays = load_weights(d / "sequence.npz", names)
        obj.members_ = [{k: arrays[k].astype(np.float32) for k in WEIGHT_NAMES}]
        for m in range(1, K):
            obj.members_.append({k: arrays[f"m{m}_{k}"].astype(np.float32) for k in WEIGHT_NAMES})
        n, e, u = obj.n_types_ + 1, obj.params.embedding_dim, obj.params.units
        shapes = {"emb": (n, e), "gru_k": (e, 3 * u), "gru_rk": (u, 3 * u), "gru_b": (2, 3 * u), "out_k": (u, n), "out_b": (n,)}
        for W in obj.members_:
            check_shapes(d / "sequence.npz", W, shapes)
        ref = {k: v.shape for k, v in obj.members_[0].items()}
        for W in obj.members_:
            if W["out_k"].shape[1] != obj.n_types_ + 1:
                raise LogravenError(f"{d / 'sequence.npz'}: output size does not match {obj.n_types_} types; retrain")
            if {k: v.shape for k, v in W.items()} != ref or W["gru_rk"].shape != (obj.params.units, 3 * obj.params.units):
                raise LogravenError(f"{d / 'sequence.npz'}: ensemble members' weights do not match; retrain")
        return obj


def tail_fit(surprise: np.ndarray) -> list[float] | None:
    """An exponential tail for the largest surprises (-ln p) of held-back normal steps (peaks over
    threshold, as in Siffer et al., KDD 2017, with the generalized Pareto shape fixed at 0, which
    extrapolates conservatively): [u, beta, frac] such that P(surprise > u + y) ~ frac * exp(-y / beta).
    None with fewer than MIN_TAIL excesses."""
    s = np.sort(np.asarray(surprise, dtype=float))
    s = s[np.isfinite(s)]
    k = max(int(len(s) * TAIL_FRACTION), MIN_TAIL)
    if len(s) <= k:
        return None
    u = float(s[-k - 1])
    beta = float((s[-k:] - u).mean())
    return [u, beta, k / len(s)]


def tail_quantile(tail: Sequence[float] | None, rate: float) -> float:
    """The surprise exceeded by a share `rate` of normal steps under a fitted tail (inf: no usable tail;
    rates above the tail's share are outside what it describes)."""
    try:
        u, beta, frac = (float(x) for x in tail)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return np.inf
    if not (np.isfinite(u) and np.isfinite(beta) and beta >= 0 and 0 < frac <= 1) or not 0 < rate < frac:
        return np.inf
    return u + beta * math.log(frac / rate)


def kept_count(n: int) -> int:
    """How many of n values' lowest ones to keep so that every quantile up to MAX_FALSE_ALARM_RATE is exact."""
    return max(LOWEST_KEPT, math.ceil(MAX_FALSE_ALARM_RATE * n) + 1)


def lowest(values: np.ndarray) -> list[float]:
    """The lowest values (kept_count of them), ascending (for empirical_quantile)."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    return [float(x) for x in v[: kept_count(len(v))]]


def empirical_quantile(low, n, rate: float) -> float:
    """The `rate` quantile ("lower": no interpolation) of n held-back values, from their lowest ones
    as `lowest` keeps them; inf without them. Below 1 / n this is the minimum. A rate beyond the kept
    values (above MAX_FALSE_ALARM_RATE) gives the highest kept one (lower than the quantile: fewer
    alerts, never more)."""
    try:
        n = int(n)
        low = [float(x) for x in low]
    except (TypeError, ValueError):
        return np.inf
    if n <= 0 or not low or not all(np.isfinite(low)):
        return np.inf
    k = int(math.floor(max(rate, 0.0) * (n - 1)))
    return low[min(k, len(low) - 1)]


def type_frequencies(counts: np.ndarray) -> np.ndarray:
    """Add-one smoothed frequency of each class from per-type line counts (index = type id, 0 = none)."""
    counts = np.asarray(counts, dtype=float)
    return (counts + 1.0) / (counts.sum() + len(counts))


def _split(fulls: list[np.ndarray], held: set[int], long_limit: float, validation_fraction: float,
           window: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """Training windows and held-back windows: the streams in `held` whole, the tail of each long
    stream. Returns (train windows, held-back windows, their first-cover masks, per held-back window
    whether it is a long stream's tail), stacked; the last three None when nothing is held back.
    Raises ValueError when nothing is left to train on."""
    train_w, val_w, once, is_tail = [], [], [], []
    for i, full in enumerate(fulls):
        if i in held:
            w = _windows(full, window)
            val_w.extend(w)
            once.extend(_first_cover(len(full), window))
            is_tail.extend([False] * len(w))
            continue
        n_val = int(len(full) * validation_fraction) if len(full) > long_limit else 0
        split = len(full) - n_val
        train_w.extend(_windows(full[:split], window))
        if n_val:
            w = _windows(full[split - 1 :], window)
            val_w.extend(w)
            once.extend(_first_cover(len(full) - split + 1, window))
            is_tail.extend([True] * len(w))
    if not train_w:
        raise ValueError("no type sequences to train the sequence model on")
    if not val_w:
        return np.stack(train_w), None, None, None
    return np.stack(train_w), np.stack(val_w), np.stack(once), np.asarray(is_tail)


def _window_starts(n: int, window: int) -> list[int]:
    """Where the windows over n ids start: stride window/2, the last one ending at the sequence's end."""
    if n < 2:
        return []
    starts = list(range(0, max(n - window - 1, 0) + 1, max(1, window // 2)))
    if starts[-1] + window + 1 < n:
        starts.append(n - window - 1)
    return starts


def _windows(seq: np.ndarray, window: int) -> list[np.ndarray]:
    """Windows of window+1 ids (input = [:-1], target = [1:]) with stride window/2; short tails padded."""
    out = []
    for s in _window_starts(len(seq), window):
        w = seq[s : s + window + 1]
        if len(w) < window + 1:
            w = np.concatenate([w, np.full(window + 1 - len(w), -1, dtype=np.int32)])
        out.append(w)
    return out


def _first_cover(n: int, window: int) -> list[np.ndarray]:
    """For _windows over a sequence of n ids: per window, which of its `window` targets no earlier
    window covers (each target counted once, in the window where its history is longest)."""
    out = []
    covered = 0  # targets are ids 1..n-1; ids up to `covered` belong to an earlier window
    for s in _window_starts(n, window):
        idx = s + 1 + np.arange(window)
        out.append(idx > covered)
        covered = max(covered, s + window)
    return out


def _grow(W: dict[str, np.ndarray], n_types: int) -> dict[str, np.ndarray]:
    """Extend embedding rows and output columns for new types, keeping the learned weights."""
    W = dict(W)
    old = W["out_k"].shape[1] - 1
    if n_types > old:
        extra = n_types - old
        rng = np.random.default_rng(0)
        W["emb"] = np.concatenate([W["emb"], rng.normal(0, 0.05, (extra, W["emb"].shape[1])).astype(np.float32)])
        W["out_k"] = np.concatenate([W["out_k"], rng.normal(0, 0.05, (W["out_k"].shape[0], extra)).astype(np.float32)], axis=1)
        # new classes start improbable, not uniform
        W["out_b"] = np.concatenate([W["out_b"], np.full(extra, W["out_b"].min(), dtype=np.float32)])
    return W


def build_keras(n_types: int, p: SequenceParams):
    import keras
    from keras import layers

    inp = keras.Input((None,), dtype="int32", name="types")
    h = layers.Embedding(n_types + 1, p.embedding_dim, name="emb")(inp)
    h = layers.GRU(p.units, return_sequences=True, name="gru")(h)
    out = layers.Dense(n_types + 1, name="out")(h)
    return keras.Model(inp, out, name="lograven_sequence")


def keras_weights(model) -> dict[str, np.ndarray]:
    k, rk, b = model.get_layer("gru").get_weights()
    ok, ob = model.get_layer("out").get_weights()
    W = {"emb": model.get_layer("emb").get_weights()[0], "gru_k": k, "gru_rk": rk, "gru_b": b, "out_k": ok, "out_b": ob}
    return {n: v.astype(np.float32) for n, v in W.items()}


def set_keras_weights(model, W: dict[str, np.ndarray]) -> None:
    model.get_layer("emb").set_weights([W["emb"]])
    model.get_layer("gru").set_weights([W["gru_k"], W["gru_rk"], W["gru_b"]])
    model.get_layer("out").set_weights([W["out_k"], W["out_b"]])


def _keras_fit(X, V, n_types, p: SequenceParams, seed, init_weights, progress):
    from lograven.autoencoder import MIN_STEPS_PER_EPOCH, _ProgressCallback
    from lograven.tfsetup import keras_session

    keras = keras_session(seed)
    model = build_keras(n_types, p)
    if init_weights is not None:
        set_keras_weights(model, init_weights)
    model.compile(optimizer=keras.optimizers.Adam(p.learning_rate), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def xyw(A):
        x = np.where(A[:, :-1] < 0, 0, A[:, :-1])
        y = np.where(A[:, 1:] < 0, 0, A[:, 1:])  # a stream's end is class END (0)
        w = ((A[:, 1:] > 0) | (A[:, 1:] == _END_MARK)).astype(np.float32)  # padding and BOS are never targets
        return x, y, w

    x, y, w = xyw(X)
    bs = max(1, min(p.batch_size, len(x)))
    reps = max(1, math.ceil(MIN_STEPS_PER_EPOCH * bs / len(x)))
    if reps > 1:
        x, y, w = np.tile(x, (reps, 1)), np.tile(y, (reps, 1)), np.tile(w, (reps, 1))
    n = (len(x) // bs) * bs  # drop the last partial batch: no retracing (DESIGN.md)
    perm = np.random.default_rng(seed).permutation(len(x))[:n]
    x, y, w = x[perm], y[perm], w[perm]
    cbs = [_ProgressCallback(progress, "sequence", p.epochs)] if progress else []
    val = None
    if V is not None and len(V):
        val = xyw(V)
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=p.patience, restore_best_weights=True))
    hist = model.fit(x, y, sample_weight=w, batch_size=bs, epochs=p.epochs, verbose=0, shuffle=True, validation_data=val, callbacks=cbs)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return keras_weights(model), history
