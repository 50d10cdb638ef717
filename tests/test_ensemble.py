"""An ensemble of GRUs (training.sequence.members): trained with consecutive seeds, served as the mean
of the members' predicted distributions, saved and loaded with the bundle, fine-tuned by `learn`."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from lograven.bundle import load_bundle, save_bundle
from lograven.detector import Detector, DetectorSettings
from lograven.errors import LogravenError
from lograven.generator import LogGenerator
from lograven.msgtypes import UNKNOWN
from lograven.sequence import BOS, SequenceModel, SequenceParams
from lograven.training import read_corpus

from conftest import TINY_SEQUENCE, parse, reference_p

pytestmark = pytest.mark.slow  # trains GRUs with TensorFlow


@pytest.fixture(scope="module")
def type_ids(bundle_dir, training_log) -> np.ndarray:
    b = load_bundle(bundle_dir)
    ids = b.types.predict(read_corpus([str(training_log)]).messages)
    return ids[ids > 0].astype(np.int64)


@pytest.fixture(scope="module")
def ensemble(bundle_dir, type_ids) -> SequenceModel:
    n = load_bundle(bundle_dir).types.n_types
    p = SequenceParams(**{**TINY_SEQUENCE, "epochs": 2, "members": 2})
    return SequenceModel(p).fit([type_ids], n, seed=7)


def single(seq: SequenceModel, m: int) -> SequenceModel:
    one = SequenceModel(replace(seq.params, members=1))
    one.n_types_ = seq.n_types_
    one.weights_ = seq.members_[m]
    return one


def windows(seq: SequenceModel, type_ids: np.ndarray) -> np.ndarray:
    W = seq.params.window
    full = np.concatenate([[BOS], type_ids])
    X = np.stack([full[s : s + W] for s in range(0, 6 * W, W // 2)])
    rng = np.random.default_rng(0)
    return np.concatenate([X, rng.integers(0, seq.n_types_ + 1, size=(4, W))])  # improbable orders too


def test_members_differ_and_serving_is_their_mean(ensemble, type_ids) -> None:
    assert len(ensemble.members_) == 2 and ensemble.width == 2 * ensemble.params.units
    a, b = single(ensemble, 0), single(ensemble, 1)
    assert not np.allclose(a.weights_["gru_rk"], b.weights_["gru_rk"])  # seeds 7 and 8
    X = windows(ensemble, type_ids)
    pa, pb, got = a.window_probs(X), b.window_probs(X), ensemble.window_probs(X)
    assert np.abs(pa - pb).max() > 1e-3
    assert np.abs(got - (pa + pb) / 2).max() <= 1e-6
    assert np.allclose(got.sum(-1), 1.0, atol=1e-5)


def test_each_member_equals_its_keras_twin(ensemble, type_ids) -> None:
    from lograven import sequence as seq_mod
    from lograven.tfsetup import keras_session

    keras_session()
    X = windows(ensemble, type_ids)
    for m in range(2):
        model = seq_mod.build_keras(ensemble.n_types_, ensemble.params)
        seq_mod.set_keras_weights(model, ensemble.members_[m])
        z = np.asarray(model.predict(X, verbose=0), dtype=np.float64)
        z = np.exp(z - z.max(-1, keepdims=True))
        assert np.abs(z / z.sum(-1, keepdims=True) - single(ensemble, m).window_probs(X)).max() <= 1e-5


def test_bundle_with_an_ensemble_saves_loads_and_detects_statefully(bundle_dir, ensemble, tmp_path) -> None:
    b = load_bundle(bundle_dir)
    out = save_bundle(tmp_path / "ens", b.types, ensemble, b.autoencoder, training={"lines": 1})
    assert (out / "sequence.keras").is_file() and (out / "sequence_m1.keras").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sequence"]["params"]["members"] == 2
    # format 3: a version without ensembles refuses it by its format, not as "metadata incomplete"
    assert manifest["format_version"] == 3
    loaded = load_bundle(out)
    for W0, W1 in zip(ensemble.members_, loaded.sequence.members_):
        assert all(np.array_equal(W0[k], W1[k]) for k in W0)
    # the streaming path (two staggered states per stream, restarts, batches) equals the stateless reference
    d = Detector(loaded, DetectorSettings())
    records = [parse(t) for t in LogGenerator(seed=5).lines(400)]
    known = [r for r in records if d.types.classify(r.message) != UNKNOWN][: 3 * d.seq.params.window + 3]
    vs = []
    for s in range(0, len(known), 7):
        vs += d.detect([("s", r) for r in known[s : s + 7]])
    types = np.array([v.type_id for v in vs], dtype=np.int64)
    for n, v in enumerate(vs[1:], 1):
        assert v.sequence_p is not None and math.isfinite(v.sequence_p)
        assert abs(v.sequence_p - reference_p(d.seq, types, n)[types[n]]) <= 1e-5, n
    # and one line at a time (plugin mode's path) gives the same
    d1 = Detector(load_bundle(out), DetectorSettings())
    ones = [v for r in known for v in d1.detect([("s", r)])]
    for n, (a, b) in enumerate(zip(vs, ones)):
        assert (a.sequence_p is None) == (b.sequence_p is None), n
        if a.sequence_p is not None:
            assert abs(a.sequence_p - b.sequence_p) <= 1e-6 and a.sequence_rank == b.sequence_rank, n
            assert [t for t, _ in a.expected] == [t for t, _ in b.expected], n
    # a checkpointed state carries every member's part; a single GRU's state does not fit
    states = d.export_states()
    assert states["s"][0].shape == (2, 2 * d.seq.params.units)
    d2 = Detector(load_bundle(out), DetectorSettings())
    assert d2.import_states(states) == 1
    h, seen, last, _at = states["s"]
    assert d2.import_states({"t": (h[:, : d.seq.params.units], seen, last)}) == 0


def test_single_gru_bundle_format_is_unchanged(bundle_dir) -> None:
    meta = json.loads((bundle_dir / "manifest.json").read_text())["sequence"]
    assert "members" not in meta["params"]  # readable by versions without ensembles
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    # and a bundle trained now says its format and stream hold for every source (trained_with_warnings)
    assert manifest["training"]["read_as_recorded"] is True
    assert load_bundle(bundle_dir).sequence.width == meta["params"]["units"]


def test_learn_fine_tunes_every_member(ensemble, type_ids) -> None:
    tuned = SequenceModel(replace(ensemble.params, epochs=1)).fit(
        [type_ids[:200]], ensemble.n_types_ + 1, seed=7, init_weights=ensemble.members_
    )
    assert len(tuned.members_) == 2
    for W0, W1 in zip(ensemble.members_, tuned.members_):
        assert W1["emb"].shape[0] == W0["emb"].shape[0] + 1  # grown for the new type
    with pytest.raises(ValueError, match="2 weight sets for 3"):
        SequenceModel(replace(ensemble.params, members=3)).fit([type_ids], ensemble.n_types_, init_weights=ensemble.members_)


def test_bad_member_metadata_or_weights_are_named(ensemble, tmp_path) -> None:
    ensemble.save(tmp_path)
    meta = ensemble.meta()
    for bad in (0, 99, "2"):
        with pytest.raises(LogravenError, match="members must be 1..8"):
            SequenceModel.load(tmp_path, {**meta, "params": {**meta["params"], "members": bad}})
    with pytest.raises(LogravenError, match=r"missing weights \['m2_emb'"):
        SequenceModel.load(tmp_path, {**meta, "params": {**meta["params"], "members": 3}})


def test_sessions_are_cross_fitted_every_one_held_back_once_by_a_member_that_never_saw_it() -> None:
    rng = np.random.default_rng(3)
    sessions = []
    for _ in range(60):  # short streams (sessions): 1, then 2 and 3 in either order, then 4 or 5
        mid = [2, 3] if rng.random() < 0.7 else [3, 2]
        sessions.append(np.array([1, *mid, 4 if rng.random() < 0.8 else 5]))
    p = SequenceParams(units=8, embedding_dim=4, window=8, epochs=2, members=2)
    seq = SequenceModel(p).fit(sessions, 5, seed=11)
    val = seq.validation_
    assert val["cross_fitted"] == 2
    a, b = seq.holdout_
    assert not a & b and a | b == set(range(60)) and abs(len(a) - len(b)) <= 1
    assert val["steps"] == sum(len(s) for s in sessions)  # every session's every step, once
    # each held-back step is predicted by the member that held its session back, alone
    p_min = min(
        float(single(seq, m).window_probs(np.concatenate([[BOS], sessions[i][:-1]])[None, :])[0][
            np.arange(len(sessions[i])), sessions[i]].min())
        for m, held in enumerate(seq.holdout_) for i in held
    )  # fmt: skip
    assert abs(val["probability_min"] - p_min) <= 1e-6
    # one GRU (or too few sessions) holds back 10% of them, as before
    one = SequenceModel(replace(p, members=1)).fit(sessions, 5, seed=11)
    assert "cross_fitted" not in one.validation_ and len(one.holdout_[0]) == 6
    assert one.validation_["steps"] == sum(len(sessions[i]) for i in one.holdout_[0])


def test_automatic_members_ensemble_for_sessions_one_gru_for_files(type_ids) -> None:
    rng = np.random.default_rng(4)
    sessions = [np.array([1, *([2, 3] if rng.random() < 0.7 else [3, 2]), 4]) for _ in range(60)]
    p = SequenceParams(units=8, embedding_dim=4, window=8, epochs=1, members=0)
    seq = SequenceModel(p).fit(sessions, 5, seed=1)
    assert seq.params.members == 3 and len(seq.members_) == 3 and seq.validation_["cross_fitted"] == 3
    assert p.members == 0  # the caller's parameters are not changed
    few = SequenceModel(p).fit(sessions[:59], 5, seed=1)  # fewer than 20 per member
    assert few.params.members == 1 and len(few.members_) == 1
    files = SequenceModel(replace(p, window=16)).fit([type_ids[:300], type_ids[300:600]], int(type_ids.max()), seed=1)
    assert files.params.members == 1 and "cross_fitted" not in files.validation_


def test_lograven_learn_fine_tunes_an_ensemble_bundle(bundle_dir, ensemble, training_log, tmp_path) -> None:
    from conftest import tiny_training_config
    from lograven.learning import learn

    b = load_bundle(bundle_dir)
    base = save_bundle(tmp_path / "ens", b.types, ensemble, b.autoencoder, training=dict(b.manifest["training"]))
    new = tmp_path / "new.log"
    new.write_text("".join(x + "\n" for x in LogGenerator(seed=9).lines(400)))
    out, _ = learn(base, read_corpus([str(new)]), out=tmp_path / "learned", training=tiny_training_config())
    got = load_bundle(out).sequence
    assert got.params.members == 2 and len(got.members_) == 2
    for W0, W1 in zip(ensemble.members_, got.members_):  # each member fine-tuned from its own weights
        assert W1["gru_rk"].shape == W0["gru_rk"].shape and not np.allclose(W1["gru_rk"], W0["gru_rk"])
    assert not np.allclose(got.members_[0]["gru_rk"], got.members_[1]["gru_rk"])
