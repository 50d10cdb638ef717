"""Seed 000's autoencoder made to score lines: BPE ids -> Conv1D encoder -> bottleneck -> decoder.

What changed from the seed, and why:
- The seed regresses raw token ids with MSE and scores by MAE, so a line's
  error depends on how large its ids happen to be. Here the decoder outputs a
  distribution over the vocabulary and the score is the mean cross-entropy
  (nats per token) of the line's real tokens: an unfamiliar word costs the
  same whatever its id. Compared on ../shared/data in docs/accuracy.md
  (against seed 000's MAE and against a KL variant).
- The bottleneck is a real one (a `latent_dim` vector for the whole line,
  after global max pooling), not the seed's per-position Dense(4).
- The decoder reconstructs the line's tokens as a bag, not position by
  position: a position-wise decoder behind a bottleneck fails on every
  token after a user name that BPE splits into one piece more than usual
  (measured: errors of 40+ nats/token on ordinary sudo lines), while the
  bag is shift-invariant; order is the message types' and the GRU's job.
  It is also ~30x cheaper to serve (one softmax per line, not one per token).
- Training uses label smoothing (0.1), which keeps the decoder from being
  absurdly confident and bounds the error of one odd token.
- Inputs are masked text (numbers, IPs, hex -> placeholders): digits are
  noise the model cannot predict, and the message-type detector already
  covers structure. The program name is prepended so `kernel: ...` and
  `sshd: ...` are different things.
- Training uses each distinct masked text once (weighted by log frequency),
  which makes training time depend on the variety of a log, not its volume.
- The threshold is a quantile of the errors of held-back *lines* (10% by
  default, drawn at random): frequent messages are in training anyway, and
  the held-back lines whose text was never trained on appear as often as
  new-but-normal lines will in production.
- Serving evaluates the same network in numpy and caches scores per masked
  text (identical input, identical score).
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lograven.bpe import BpeTokenizer, tile_batch
from lograven.errors import LogravenError
from lograven.runtime import conv1d_same, load_weights, save_weights

log = logging.getLogger(__name__)

WEIGHT_NAMES = ("emb", "enc1_k", "enc1_b", "enc2_k", "enc2_b", "lat_k", "lat_b", "dec_k", "dec_b", "out_k", "out_b")
LABEL_SMOOTHING = 0.1


@dataclass
class AutoencoderParams:
    vocab_size: int = 512
    max_length: int = 0  # 0: derived from the data
    max_length_cap: int = 64
    embedding_dim: int = 32
    filters: int = 64
    latent_dim: int = 32
    epochs: int = 10
    batch_size: int = 256
    patience: int = 2
    learning_rate: float = 0.002
    quantile: float = 0.999
    max_texts: int = 50_000  # distinct texts used for training at most


MIN_STEPS_PER_EPOCH = 40
FORWARD_TOKENS = 32_768  # tokens (lines x length) per forward pass when scoring


class Autoencoder:
    """Fit with TensorFlow, serve with numpy."""

    def __init__(self, params: AutoencoderParams | None = None):
        self.params = params or AutoencoderParams()
        self.tokenizer_: BpeTokenizer | None = None
        self.length_: int = 0
        self.weights_: dict[str, np.ndarray] = {}
        self.threshold_: float = math.inf
        self.history_: dict[str, list[float]] = {}
        self.calibration_: dict[str, float] = {}
        # Per message type, a threshold above the global one: set by `lograven learn` for a type whose lines
        # the operator named as normal and whose errors stay above the global threshold (see learning.py)
        self.type_thresholds_: dict[int, float] = {}
        self._cache: dict[str, float] = {}  # per masked text; bounded by entries and by bytes
        self._cache_bytes = 0

    CACHE_ENTRIES = 200_000
    CACHE_BYTES = 16 * 2**20  # about: the texts (keys) with dict and float overhead

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        texts: Sequence[str],
        *,
        seed: int = 42,
        validation_fraction: float = 0.1,
        progress: Callable[[str, float], None] | None = None,
        tokenizer: BpeTokenizer | None = None,
        init_weights: dict[str, np.ndarray] | None = None,
    ) -> Autoencoder:
        """Train on masked texts. With `tokenizer`/`init_weights`, fine-tune instead of starting over."""
        p = self.params
        rng = np.random.default_rng(seed)
        # Hold back *lines*, not texts: a frequent message is then (almost surely) also
        # trained on, and the held-back lines that are unseen texts occur as often as
        # unseen-but-normal lines will in production. That makes the calibration honest.
        order = rng.permutation(len(texts))
        n_hold = int(len(texts) * validation_fraction) if len(texts) >= 50 else 0
        hold_counts = Counter(texts[i] for i in order[:n_hold])
        counts = Counter(texts[i] for i in order[n_hold:])
        distinct = list(counts)
        rng.shuffle(distinct)
        if len(distinct) > p.max_texts:
            # keep the most frequent texts and a random sample of the rest
            distinct.sort(key=lambda t: -counts[t])
            head = distinct[: p.max_texts // 2]
            tail = distinct[p.max_texts // 2 :]
            pick = rng.choice(len(tail), p.max_texts - len(head), replace=False)
            distinct = head + [tail[i] for i in pick]
        train = distinct
        hold = list(hold_counts)
        self.tokenizer_ = tokenizer or BpeTokenizer.train(train, p.vocab_size)
        ids = [self.tokenizer_.encode(t) for t in train]
        if tokenizer is None or not self.length_:
            self.length_ = _choose_length([len(i) for i in ids], p.max_length, p.max_length_cap)
        x, lens = tile_batch(ids, self.length_)
        w = np.array([1.0 + math.log(counts[t]) for t in train], dtype=np.float32)
        if progress:
            progress("autoencoder", 0.0)
        if init_weights is not None:
            init_weights = grow_weights(init_weights, self.tokenizer_.vocab_size, seed)
        self.weights_, self.history_ = _keras_fit(
            x, lens, w, self.tokenizer_.vocab_size, self.length_, p, seed, init_weights, progress
        )
        self._cache.clear()
        self._cache_bytes = 0
        # Calibrate on texts the model never saw; fall back to the training texts.
        calib = hold if hold else train
        errs = self.score(calib)
        cw = np.array([(hold_counts if hold else counts)[t] for t in calib], dtype=float)
        self.threshold_ = float(_weighted_quantile(errs, cw, p.quantile))
        self.calibration_ = {
            "texts": len(calib),
            "lines": int(cw.sum()),
            "unseen_texts": sum(1 for t in hold if t not in counts),
            "held_back": bool(hold),
            "median": float(_weighted_quantile(errs, cw, 0.5)),
            "quantile": p.quantile,
            "threshold": self.threshold_,
        }
        self.holdout_errors_ = errs
        self.holdout_weights_ = cw  # lines per held-back text
        log.info("autoencoder: length %d, vocab %d, threshold %.3f", self.length_, self.tokenizer_.vocab_size, self.threshold_)
        return self

    # ---------------------------------------------------------------- serve
    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Mean cross-entropy (nats per token) of each masked text; cached per text."""
        out = np.empty(len(texts), dtype=np.float64)
        cache = self._cache
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            v = cache.get(t)
            if v is None:
                todo.setdefault(t, []).append(i)
            else:
                out[i] = v
        if todo:
            keys = list(todo)
            errs = self._forward_errors(keys)
            cost = sum(len(k) for k in keys) + 150 * len(keys)
            if len(cache) + len(keys) > self.CACHE_ENTRIES or self._cache_bytes + cost > self.CACHE_BYTES:
                cache.clear()
                self._cache_bytes = 0
            for k, e in zip(keys, errs):
                cache[k] = float(e)
                for i in todo[k]:
                    out[i] = e
            self._cache_bytes += cost
        return out

    def _forward_errors(self, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
        assert self.tokenizer_ is not None
        # lines per forward pass: 512 at the default length (64 tokens), fewer for longer ones, so that a pass's
        # activations stay about 8 MB whatever max_length_cap the model was trained with
        chunk = max(1, min(chunk, FORWARD_TOKENS // max(1, self.length_)))
        res = []
        for s in range(0, len(texts), chunk):
            ids = [self.tokenizer_.encode(t, self.length_ or None) for t in texts[s : s + chunk]]
            x, lens = tile_batch(ids, self.length_)
            res.append(self.errors_from_ids(x, lens))
        return np.concatenate(res) if res else np.zeros(0)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Decoder logits (B, V) over the vocabulary for tiled id rows x (B, L)."""
        W = self.weights_
        h = W["emb"][x]  # (B, L, E)
        h = np.maximum(conv1d_same(h, W["enc1_k"], W["enc1_b"]), 0)
        h = np.maximum(conv1d_same(h, W["enc2_k"], W["enc2_b"]), 0)
        h = h.max(axis=1)  # GlobalMaxPooling1D: repeats from tiling change nothing
        h = np.maximum(h @ W["lat_k"] + W["lat_b"], 0)
        h = np.maximum(h @ W["dec_k"] + W["dec_b"], 0)
        return h @ W["out_k"] + W["out_b"]

    def errors_from_ids(self, x: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Mean cross-entropy (nats per token) of each row's real tokens under its reconstruction.

        (A KL variant, which subtracts the entropy of the line's own tokens so that
        long lines are not penalised, ranked BGL_2k's anomalies worse on every one
        of 8 seeds: ROC-AUC 0.82 vs 0.89 — long, unusual lines *are* the anomalies
        there. docs/accuracy.md has the comparison.)
        """
        logits = self.logits(x)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        B, L = x.shape
        n = np.maximum(lens, 1)
        mask = np.arange(L)[None, :] < n[:, None]
        nll = -np.take_along_axis(logp, x, axis=1)
        return (nll * mask).sum(axis=1) / n

    # ---------------------------------------------------------- persistence
    def save(self, d: Path) -> list[str]:
        assert self.tokenizer_ is not None
        (d / "tokenizer.json").write_text(self.tokenizer_.to_str(), encoding="utf-8")
        save_weights(d / "autoencoder.npz", self.weights_)
        return ["tokenizer.json", "autoencoder.npz"]

    def meta(self) -> dict:
        out = {"params": asdict(self.params), "length": self.length_, "threshold": self.threshold_, "calibration": self.calibration_}
        if self.type_thresholds_:
            out["type_thresholds"] = {str(t): float(v) for t, v in sorted(self.type_thresholds_.items())}
        return out

    @classmethod
    def load(cls, d: Path, meta: dict) -> Autoencoder:
        obj = cls(AutoencoderParams(**meta["params"]))
        obj.tokenizer_ = BpeTokenizer.from_str((d / "tokenizer.json").read_text(encoding="utf-8"), str(d / "tokenizer.json"))
        obj.length_ = int(meta["length"])
        obj.threshold_ = float(meta["threshold"])
        obj.calibration_ = dict(meta.get("calibration", {}))
        obj.type_thresholds_ = _type_thresholds(meta.get("type_thresholds", {}))
        W = obj.weights_ = {k: v.astype(np.float32) for k, v in load_weights(d / "autoencoder.npz", WEIGHT_NAMES).items()}
        _check_chain(d / "autoencoder.npz", W, obj.tokenizer_.vocab_size)
        return obj


def _check_chain(path: Path, W: dict[str, np.ndarray], vocab: int) -> None:
    """The layers' weights fit one another and the tokenizer (every token id has an embedding row and an
    output column): else scoring failed at the first line, after the bundle had loaded."""
    try:
        V, E = W["emb"].shape
        k1, c1, f1 = W["enc1_k"].shape
        k2, c2, f2 = W["enc2_k"].shape
        lat_in, lat = W["lat_k"].shape
        dec_in, dec = W["dec_k"].shape
        out_in, out_v = W["out_k"].shape
    except ValueError:
        raise LogravenError(f"{path}: weights of the wrong rank; retrain or restore the bundle") from None
    chain = [(c1, E), (W["enc1_b"].shape, (f1,)), (c2, f1), (W["enc2_b"].shape, (f2,)), (lat_in, f2),
             (W["lat_b"].shape, (lat,)), (dec_in, lat), (W["dec_b"].shape, (dec,)), (out_in, dec), (out_v, V),
             (W["out_b"].shape, (V,))]  # fmt: skip
    if any(a != b for a, b in chain) or vocab > V:
        raise LogravenError(f"{path}: the layers' weights do not fit one another or the tokenizer's {vocab} tokens "
                            f"(embedding {W['emb'].shape}, output {W['out_k'].shape}); retrain or restore the bundle")


def grow_weights(W: dict[str, np.ndarray], vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Embedding rows and output columns for tokens added to the vocabulary; learned weights kept."""
    W = dict(W)
    old = W["emb"].shape[0]
    if vocab <= old:
        return W
    extra = vocab - old
    rng = np.random.default_rng(seed)
    W["emb"] = np.concatenate([W["emb"], rng.normal(0, W["emb"].std() or 0.05, (extra, W["emb"].shape[1])).astype(np.float32)])
    W["out_k"] = np.concatenate([W["out_k"], rng.normal(0, W["out_k"].std() or 0.05, (W["out_k"].shape[0], extra)).astype(np.float32)], axis=1)
    W["out_b"] = np.concatenate([W["out_b"], np.full(extra, W["out_b"].min(), dtype=np.float32)])
    return W


def _choose_length(lengths: list[int], fixed: int, cap: int) -> int:
    """Seed 000: 20% longer than the longest line; here the 99th percentile, even, capped."""
    if fixed:
        n = fixed
    else:
        p99 = float(np.percentile(lengths, 99)) if lengths else 8.0
        n = int(math.ceil(p99 * 1.2))
    n = max(8, min(n, cap))
    return n + (n % 2)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0:
        return math.inf
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cw = np.cumsum(w) / w.sum()
    return float(v[min(int(np.searchsorted(cw, q)), len(v) - 1)])


def build_keras(vocab: int, length: int, p: AutoencoderParams):
    """The Keras twin of the numpy forward pass (layer names map to WEIGHT_NAMES)."""
    import keras
    from keras import layers

    inp = keras.Input((length,), dtype="int32", name="ids")
    h = layers.Embedding(vocab, p.embedding_dim, name="emb")(inp)
    h = layers.Conv1D(p.filters, 3, padding="same", activation="relu", name="enc1")(h)
    h = layers.Conv1D(p.filters // 2, 3, padding="same", activation="relu", name="enc2")(h)
    h = layers.GlobalMaxPooling1D(name="pool")(h)
    h = layers.Dense(p.latent_dim, activation="relu", name="lat")(h)
    h = layers.Dense(p.filters, activation="relu", name="dec")(h)
    out = layers.Dense(vocab, name="out")(h)
    return keras.Model(inp, out, name="lograven_autoencoder")


def bag_loss(y_true, y_pred):
    """Mean over a line's real tokens (y_true: ids, -1 = padding) of the smoothed cross-entropy."""
    from keras import ops

    logp = ops.log_softmax(y_pred, axis=-1)  # (B, V)
    ids = ops.cast(y_true, "int32")
    valid = ops.cast(ids >= 0, logp.dtype)
    picked = ops.take_along_axis(logp, ops.maximum(ids, 0), axis=1)  # (B, L)
    nll = -ops.sum(picked * valid, axis=1) / ops.maximum(ops.sum(valid, axis=1), 1.0)
    uniform = -ops.mean(logp, axis=1)
    return (1.0 - LABEL_SMOOTHING) * nll + LABEL_SMOOTHING * uniform


def keras_weights(model) -> dict[str, np.ndarray]:
    W: dict[str, np.ndarray] = {"emb": model.get_layer("emb").get_weights()[0]}
    for name in ("enc1", "enc2", "lat", "dec", "out"):
        k, b = model.get_layer(name).get_weights()
        W[f"{name}_k"], W[f"{name}_b"] = k, b
    return {k: v.astype(np.float32) for k, v in W.items()}


def set_keras_weights(model, W: dict[str, np.ndarray]) -> None:
    model.get_layer("emb").set_weights([W["emb"]])
    for name in ("enc1", "enc2", "lat", "dec", "out"):
        model.get_layer(name).set_weights([W[f"{name}_k"], W[f"{name}_b"]])


def _keras_fit(x, lens, w, vocab, length, p: AutoencoderParams, seed, init_weights, progress):
    from lograven.tfsetup import keras_session

    keras = keras_session(seed)
    model = build_keras(vocab, length, p)
    if init_weights is not None:
        set_keras_weights(model, init_weights)
    model.compile(
        optimizer=keras.optimizers.Adam(p.learning_rate),
        loss=bag_loss,
    )
    n = len(x)
    n_val = max(1, n // 10) if n >= 50 else 0
    idx = np.random.default_rng(seed).permutation(n)
    val, tr = idx[:n_val], idx[n_val:]
    bs = max(1, min(p.batch_size, len(tr)))
    # Distinct texts can be few: repeat them so every epoch makes enough optimizer steps.
    reps = max(1, math.ceil(MIN_STEPS_PER_EPOCH * bs / max(len(tr), 1)))
    tr = np.tile(tr, reps)
    cbs = [_ProgressCallback(progress, "autoencoder", p.epochs)] if progress else []
    if n_val:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=p.patience, restore_best_weights=True))
    # targets: the real (not repeated) token ids, -1 after them
    y = np.where(np.arange(length)[None, :] < lens[:, None], x, -1).astype(np.int32)
    hist = model.fit(
        x[tr], y[tr], sample_weight=w[tr], batch_size=bs, epochs=p.epochs, verbose=0, shuffle=True,
        validation_data=(x[val], y[val], w[val]) if n_val else None, callbacks=cbs,
    )  # fmt: skip
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return keras_weights(model), history


class _ProgressCallback:
    """Builds a Keras callback lazily (keras is imported only when training)."""

    def __new__(cls, progress, stage: str, epochs: int):
        import keras

        class CB(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                progress(stage, (epoch + 1) / epochs)

        return CB()


def _type_thresholds(raw: object) -> dict[int, float]:
    """The manifest's per-type thresholds: type id (a positive integer, as a string) -> a finite number >= 0."""
    if not isinstance(raw, dict):
        raise ValueError("autoencoder type_thresholds is not an object")
    out = {}
    for k, v in raw.items():
        if not (isinstance(k, str) and k.isdigit() and int(k) > 0):
            raise ValueError(f"autoencoder type_thresholds: key {k!r} is not a message type id")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"autoencoder type_thresholds[{k}] = {v!r} is not a finite number >= 0")
        out[int(k)] = float(v)
    return out
