"""The numpy serving runtime equals the Keras models it was exported from; model helpers.

Tests marked slow use the session's tiny trained bundle (TensorFlow for training
and for the Keras twins); the helper tests at the bottom are numpy only.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lograven import autoencoder as ae_mod
from lograven import sequence as seq_mod
from lograven.bpe import tile_batch
from lograven.masking import Masker
from lograven.runtime import conv1d_same
from lograven.sequence import BOS, SequenceModel, SequenceParams
from lograven.training import ae_text, read_corpus

from conftest import parse


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def texts(training_log, unseen_data) -> dict[str, list[str]]:
    """Autoencoder inputs: distinct training texts and unseen-anomaly texts."""
    corpus = read_corpus([str(training_log)])
    m = Masker()
    train = list(dict.fromkeys(ae_text(m, p, msg) for p, msg in zip(corpus.programs, corpus.messages)))
    unseen = []
    for g in unseen_data.lines:
        r = parse(g.text)
        unseen.append(ae_text(m, r.program, r.message))
    return {"train": train, "unseen": list(dict.fromkeys(unseen))}


@pytest.fixture(scope="module")
def type_sequence(training_log, bundle_dir) -> np.ndarray:
    """The type-id sequence of the training log under the bundle's message types."""
    from lograven.bundle import load_bundle

    b = load_bundle(bundle_dir)
    corpus = read_corpus([str(training_log)])
    ids = b.types.predict(corpus.messages)
    return ids[ids > 0].astype(np.int64)


def ce_reference(logits: np.ndarray, x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Mean cross-entropy (nats per token) of each row's real tokens under softmax(logits), in float64."""
    z = logits.astype(np.float64)
    logq = z - z.max(1, keepdims=True)
    logq -= np.log(np.exp(logq).sum(1, keepdims=True))
    return np.array([-logq[i, x[i, : max(int(n), 1)]].mean() for i, n in enumerate(lens)])


# ---------------------------------------------------------------- autoencoder


@pytest.mark.slow
def test_autoencoder_numpy_logits_equal_keras(bundle, texts) -> None:
    from lograven.tfsetup import keras_session

    keras_session()
    ae = bundle.autoencoder
    model = ae_mod.build_keras(ae.tokenizer_.vocab_size, ae.length_, ae.params)
    ae_mod.set_keras_weights(model, ae.weights_)
    batch = texts["train"][:200] + texts["unseen"][:56]
    x, lens = tile_batch([ae.tokenizer_.encode(t) for t in batch], ae.length_)
    want = np.asarray(model.predict(x, batch_size=64, verbose=0))
    got = ae.logits(x)
    assert got.shape == want.shape == (len(batch), ae.tokenizer_.vocab_size)
    assert np.abs(got - want).max() <= 1e-4
    # the score is the mean cross-entropy of each row's real (not repeated) tokens, computed here
    # independently from the Keras logits
    assert np.allclose(ae.errors_from_ids(x, lens), ce_reference(want, x, lens), atol=1e-4)
    # and the Keras twin hands back the same weights
    back = ae_mod.keras_weights(model)
    assert set(back) == set(ae_mod.WEIGHT_NAMES)
    assert all(np.array_equal(back[k], ae.weights_[k]) for k in back)


@pytest.mark.slow
def test_bundled_keras_autoencoder_equals_numpy(bundle, texts) -> None:
    from lograven.tfsetup import keras_session

    keras = keras_session()
    ae = bundle.autoencoder
    model = keras.saving.load_model(bundle.path / "autoencoder.keras", compile=False)
    x, _ = tile_batch([ae.tokenizer_.encode(t) for t in texts["unseen"][:64]], ae.length_)
    assert np.abs(np.asarray(model.predict(x, verbose=0)) - ae.logits(x)).max() <= 1e-4


@pytest.mark.slow
def test_autoencoder_scores_unseen_anomalies_higher(bundle, texts) -> None:
    ae = bundle.autoencoder
    normal = ae.score(texts["train"])
    unseen = ae.score(texts["unseen"])
    assert np.isfinite(normal).all() and np.isfinite(unseen).all()
    assert (normal >= 0).all()  # a cross-entropy
    assert unseen.mean() > normal.mean()
    assert np.median(unseen) > np.median(normal)
    assert math.isfinite(ae.threshold_) and ae.threshold_ > 0


@pytest.mark.slow
def test_autoencoder_score_cache_returns_identical_values(bundle, texts) -> None:
    ae = bundle.autoencoder
    batch = texts["train"][:50] + texts["unseen"][:20]
    first = ae.score(batch)
    ae._cache.clear()
    fresh = ae.score(list(reversed(batch)))[::-1]  # computed again, in other batch positions
    cached = ae.score(batch)  # every text is now in the cache, from the reversed pass
    # the cache returns exactly what was computed; a text's value may differ in the last float32
    # bits with its position in a batch (BLAS blocking), never by more
    assert np.array_equal(fresh, cached)
    assert np.allclose(first, fresh, rtol=1e-6, atol=1e-6)
    # duplicates in one call get one value
    dup = ae.score([batch[0], batch[1], batch[0]])
    assert dup[0] == dup[2]


def test_autoencoder_score_cache_is_bounded_in_bytes(bundle, texts, monkeypatch) -> None:
    """Long unique texts empty the cache at its byte budget; values are the same as computed afresh."""
    ae = bundle.autoencoder
    monkeypatch.setattr(type(ae), "CACHE_BYTES", 40_000)
    ae._cache.clear()
    ae._cache_bytes = 0
    long = [f"{t} " + "x" * 2000 + f" {i}" for i, t in enumerate(texts["train"][:40])]
    got = np.concatenate([ae.score(long[i : i + 4]) for i in range(0, 40, 4)])
    assert ae._cache_bytes <= 40_000 and len(ae._cache) < 40
    ae._cache.clear()
    ae._cache_bytes = 0
    assert np.allclose(got, ae.score(long), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- sequence model


@pytest.mark.slow
def test_sequence_numpy_window_probs_equal_keras(bundle, type_sequence) -> None:
    from lograven.tfsetup import keras_session

    keras_session()
    seq = bundle.sequence
    W = seq.params.window
    full = np.concatenate([[BOS], type_sequence])
    X = np.stack([full[s : s + W] for s in range(0, 20 * W, W // 2)])
    rng = np.random.default_rng(0)
    X = np.concatenate([X, rng.integers(0, seq.n_types_ + 1, size=(8, W))])  # improbable orders too
    model = seq_mod.build_keras(seq.n_types_, seq.params)
    seq_mod.set_keras_weights(model, seq.weights_)
    want = softmax(np.asarray(model.predict(X, verbose=0), dtype=np.float64))
    got = seq.window_probs(X)
    assert got.shape == want.shape == (len(X), W, seq.n_types_ + 1)
    assert np.abs(got - want).max() <= 1e-5
    assert np.allclose(got.sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_bundled_keras_sequence_equals_numpy(bundle, type_sequence) -> None:
    from lograven.tfsetup import keras_session

    keras = keras_session()
    seq = bundle.sequence
    model = keras.saving.load_model(bundle.path / "sequence.keras", compile=False)
    X = np.concatenate([[BOS], type_sequence[: 2 * seq.params.window - 1]])[None, :]
    assert np.abs(softmax(np.asarray(model.predict(X, verbose=0), dtype=np.float64)) - seq.window_probs(X)).max() <= 1e-5


# ---------------------------------------------------------------- numpy helpers (fast)


def test_windows_cover_sequence_with_half_overlap() -> None:
    seq = np.arange(1, 40, dtype=np.int32)
    ws = seq_mod._windows(seq, 8)
    assert all(len(w) == 9 for w in ws)
    starts = [int(w[0]) for w in ws]
    assert starts[:3] == [1, 5, 9]
    assert ws[-1][-1] == seq[-1]  # the tail is covered
    short = seq_mod._windows(np.array([0, 3, 4], dtype=np.int32), 8)
    assert len(short) == 1 and short[0].tolist() == [0, 3, 4] + [-1] * 6
    assert seq_mod._windows(np.array([5], dtype=np.int32), 8) == []


def test_grow_keeps_learned_weights() -> None:
    rng = np.random.default_rng(0)
    W = {
        "emb": rng.normal(size=(4, 3)).astype(np.float32),
        "out_k": rng.normal(size=(5, 4)).astype(np.float32),
        "out_b": rng.normal(size=4).astype(np.float32),
        "gru_k": np.zeros((3, 15), np.float32),
    }
    G = seq_mod._grow(W, 6)
    assert G["emb"].shape == (7, 3) and G["out_k"].shape == (5, 7) and G["out_b"].shape == (7,)
    assert np.array_equal(G["emb"][:4], W["emb"]) and np.array_equal(G["out_k"][:, :4], W["out_k"])
    assert (G["out_b"][4:] == W["out_b"].min()).all()
    assert seq_mod._grow(W, 3)["emb"] is W["emb"]


def test_numpy_gru_step_matches_textbook_formulation() -> None:
    """Keras GRU, reset_after=True: the reset gate multiplies the recurrent part including its bias."""
    rng = np.random.default_rng(1)
    U, E, V = 3, 2, 4
    m = SequenceModel(SequenceParams(units=U, embedding_dim=E))
    m.n_types_ = V - 1
    m.weights_ = {
        "emb": rng.normal(size=(V, E)).astype(np.float32),
        "gru_k": rng.normal(size=(E, 3 * U)).astype(np.float32),
        "gru_rk": rng.normal(size=(U, 3 * U)).astype(np.float32),
        "gru_b": rng.normal(size=(2, 3 * U)).astype(np.float32),
        "out_k": rng.normal(size=(U, V)).astype(np.float32),
        "out_b": rng.normal(size=V).astype(np.float32),
    }
    h = rng.normal(size=(2, U)).astype(np.float32)
    inp = np.array([1, 3])
    W = m.weights_
    x = W["emb"][inp]
    xz, xr, xh = np.split(x @ W["gru_k"] + W["gru_b"][0], 3, axis=1)
    hz, hr, hh = np.split(h @ W["gru_rk"] + W["gru_b"][1], 3, axis=1)
    z = 1 / (1 + np.exp(-(xz + hz)))
    r = 1 / (1 + np.exp(-(xr + hr)))
    cand = np.tanh(xh + r * hh)
    want = z * h + (1 - z) * cand
    assert np.allclose(m.step(h, inp), want, atol=1e-6)
    assert np.allclose(m.probs(want).sum(1), 1.0)


def test_conv1d_same_matches_direct_convolution() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 3)).astype(np.float32)
    k = rng.normal(size=(3, 3, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    want = np.stack([np.einsum("bkc,kcf->bf", xp[:, i : i + 3], k) for i in range(7)], axis=1) + b
    assert np.allclose(conv1d_same(x, k, b), want, atol=1e-5)


def test_choose_length_and_weighted_quantile() -> None:
    assert ae_mod._choose_length([10] * 100, 0, 64) == 12
    assert ae_mod._choose_length([100] * 10, 0, 64) == 64
    assert ae_mod._choose_length([1, 2], 0, 64) == 8  # at least 8
    assert ae_mod._choose_length([5], 17, 64) == 18  # fixed, made even
    v = np.array([1.0, 2.0, 3.0, 4.0])
    assert ae_mod._weighted_quantile(v, np.ones(4), 0.5) == 2.0
    assert ae_mod._weighted_quantile(v, np.array([1.0, 1.0, 1.0, 97.0]), 0.5) == 4.0
    assert ae_mod._weighted_quantile(np.array([]), np.array([]), 0.5) == math.inf
