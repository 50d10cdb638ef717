"""Streams that are sessions: the sequence model learns where they end, and a session that stops
early is flagged by its end (HDFS: a block allocated and being received, then nothing).

The log is a small HDFS-like grammar written here: each block is one session of 9 lines
(allocate, 2 x receiving, 2 x (received, responder) in either order, 2 x stored), sessions
interleaved in one file, the stream key is the block id.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lograven.bundle import load_bundle
from lograven.detector import Detector, DetectorSettings
from lograven.parsing import Parser
from lograven.sequence import END, SequenceModel, SequenceParams

from conftest import tiny_training_config

STREAM = r"regex:(blk_-?\d+)"


def _session(rng: random.Random, blk: str, stop_after: int | None = None) -> list[str]:
    a, b = rng.sample(range(2, 250), 2)
    size = rng.randint(1000, 67108864)
    lines = [
        f"NameSystem.allocateBlock: /user/job{rng.randint(1, 400)}/part-{rng.randint(0, 99)} {blk}",
        f"Receiving block {blk} src: /10.0.0.{a}:50010 dest: /10.0.0.{b}:50010",
        f"Receiving block {blk} src: /10.0.0.{b}:50010 dest: /10.0.0.{a}:50010",
    ]
    for k in (0, 1):
        pair = [f"Received block {blk} of size {size} from /10.0.0.{a}", f"PacketResponder {k} for block {blk} terminating"]
        rng.shuffle(pair)
        lines += pair
    lines += [f"addStoredBlock: blockMap updated: 10.0.0.{x}:50010 is added to {blk} size {size}" for x in (a, b)]
    return lines[:stop_after] if stop_after else lines


def session_log(n: int, seed: int, stop: dict[int, int] | None = None) -> tuple[list[str], list[str]]:
    """n sessions interleaved (three open at a time) as syslog lines; returns (lines, block ids)."""
    rng = random.Random(seed)
    blocks = [f"blk_{'-' if rng.random() < 0.5 else ''}{rng.randint(10**15, 10**18)}" for _ in range(n)]
    pending = [list(reversed(_session(rng, b, (stop or {}).get(i)))) for i, b in enumerate(blocks)]
    out, open_, nxt = [], [], 0
    while nxt < n or open_:
        while len(open_) < 3 and nxt < n:
            open_.append(nxt)
            nxt += 1
        j = rng.choice(open_)
        out.append(f"Jun  9 06:{len(out) // 60 % 60:02d}:{len(out) % 60:02d} dn1 hdfs[7]: {pending[j].pop()}")
        if not pending[j]:
            open_.remove(j)
    return out, blocks


@pytest.fixture(scope="module")
def session_bundle(tmp_path_factory) -> Path:
    from lograven.training import read_corpus, train

    d = tmp_path_factory.mktemp("sessions")
    lines, _ = session_log(400, seed=1)
    (d / "train.log").write_text("\n".join(lines) + "\n")
    corpus = read_corpus([str(d / "train.log")], stream=STREAM)
    training = tiny_training_config()
    training = replace(training, sequence=replace(training.sequence, stream_end=True, epochs=40, patience=5, window=16))
    return train(corpus, d / "bundle", training=training, stream=STREAM).path


def _detector(path: Path, **kw) -> Detector:
    return Detector(load_bundle(path), DetectorSettings(autoencoder=False, **kw))


def _feed(det: Detector, lines: list[str]) -> None:
    parser = Parser("syslog")
    import re

    items = [(re.search(r"blk_-?\d+", ln).group(0), parser.parse(ln)) for ln in lines]
    vs = det.detect(items)
    assert not any("unknown_type" in v.detectors for v in vs)  # same grammar: every line has a type
    # a stream's end is not a message type: it is never offered as an expected next type
    assert all(t != END for v in vs for t, _ in v.expected)


def test_model_learns_end_frequency_and_holds_back_whole_sessions(session_bundle) -> None:
    b = load_bundle(session_bundle)
    seq = b.sequence
    assert seq.params.stream_end
    # 400 sessions of 9 lines; the sessions still running in the last 5% of the lines may not have
    # ended (the log just stops), so they are not taught as ends
    from lograven.training import read_corpus, streams_ended

    ended = streams_ended(read_corpus([str(session_bundle.parent / "train.log")], stream=STREAM).streams)
    assert len(ended) == 400 and 10 <= ended.count(False) <= 30 and not any(ended[-5:])
    n_end = ended.count(True)
    assert seq.end_frequency_ == pytest.approx(n_end / (3600 + n_end), rel=1e-6)
    # short streams: 10% of the sessions held back whole, so training stops early and validates
    assert "val_loss" in seq.history_ or seq.validation_["steps"] > 0
    assert seq.validation_["steps"] >= 30 * 9
    # the held-back sessions' ends are measured on their own, and the lowest values are kept
    v = seq.validation_
    assert 30 <= v["end_steps"] <= 40 and v["end_steps"] <= v["steps"] / 8
    for key in ("relative_low", "probability_low", "end_probability_low"):
        assert 0 < len(v[key]) <= 64 and v[key] == sorted(v[key]) and all(x >= 0 for x in v[key])
    assert v["low_steps"] == v["steps"] and len(v["end_probability_low"]) == min(64, v["end_steps"])
    assert v["relative_low"][0] == v["relative_q"] and v["probability_low"][0] == v["probability_min"]  # < 1,001 steps


@pytest.mark.parametrize("rule", ["relative", "probability"])
def test_complete_sessions_end_quietly_and_truncated_ones_are_flagged(session_bundle, rule) -> None:
    stop = {3: 3, 7: 2, 11: 5, 15: 1}  # sessions that stop early, and after how many lines
    lines, blocks = session_log(30, seed=99, stop=stop)
    det = _detector(session_bundle, sequence_rule=rule)
    _feed(det, lines)
    ends = det.end_streams(blocks)
    assert [e.stream for e in ends] == blocks
    flagged = {blocks.index(e.stream) for e in ends if e.anomaly}
    assert flagged == set(stop), [(blocks.index(e.stream), e.p, e.ratio) for e in ends]
    for e in ends:
        i = blocks.index(e.stream)
        if i in stop:
            assert e.p < 0.05 and e.rank > 1 and e.expected  # it expected more lines
            assert e.lines == stop[i]
        else:
            assert e.p > 0.5 and e.rank == 1 and e.lines == 9
    # ended streams are forgotten: their state is gone, a second call judges nothing
    assert not any(b in det.states for b in blocks)
    assert det.end_streams(blocks) == []


def test_stream_ends_have_their_own_calibrated_threshold(session_bundle) -> None:
    """Ends are judged at the lowest of the configured threshold and the held-back sessions' ends at
    false_alarm_rate (with MIN_END_STEPS of them); calibrate off, or too few ends: as configured."""
    stop = {3: 3, 7: 2, 11: 5, 15: 1}
    lines, blocks = session_log(30, seed=99, stop=stop)
    b = load_bundle(session_bundle)
    v = b.sequence.validation_

    def flagged(**kw) -> set[int]:
        det = Detector(b, DetectorSettings(autoencoder=False, **kw))
        _feed(det, lines)
        return {blocks.index(e.stream) for e in det.end_streams(blocks) if e.anomaly}

    det = Detector(b, DetectorSettings(autoencoder=False))
    f = b.sequence.end_frequency_
    assert det.end_rule_value == min(0.1, v["end_probability_low"][0] / f)  # 35 ends < 1 / 1e-4: their lowest
    ratios = {}
    _feed(det, lines)
    for e in det.end_streams(blocks):
        ratios[blocks.index(e.stream)] = e.ratio
    low = sorted(ratios[i] for i in stop)
    cut = float(np.sqrt(low[0] * low[1]))  # between the two most improbable early stops
    b.sequence.validation_ = {**v, "end_steps": 100, "end_probability_low": [cut * f, 0.5]}
    assert flagged() == {i for i in stop if ratios[i] < cut} and len(flagged()) == 1
    assert flagged(sequence_calibrate=False) == set(stop)
    assert flagged(sequence_rule="probability") == {i for i in stop if ratios[i] < cut}  # p = ratio * end share
    b.sequence.validation_ = {**v, "end_steps": 19, "end_probability_low": [cut * f]}  # too few held-back ends
    assert flagged() == set(stop)


def test_model_without_stream_ends_judges_none_but_forgets(bundle_dir, normal_data) -> None:
    det = Detector(load_bundle(bundle_dir), DetectorSettings(autoencoder=False))
    assert not det.judges_stream_ends
    parser = Parser("syslog")
    det.detect([("s1", parser.parse(g.text)) for g in normal_data.lines[:20]])
    assert "s1" in det.states
    assert det.end_streams(["s1", "never-seen"]) == []
    assert "s1" not in det.states


def test_sequence_fit_holds_back_whole_short_streams_only_when_there_are_enough() -> None:
    rng = np.random.default_rng(0)
    p = SequenceParams(units=8, embedding_dim=4, window=8, epochs=2, batch_size=16)
    many = [rng.integers(1, 4, size=6) for _ in range(60)]
    m = SequenceModel(p).fit(many, 3, seed=1)
    assert "val_loss" in m.history_ and m.validation_["steps"] == 6 * 6  # 6 of 60 sessions held back
    # i.i.d. uniform types: every type is about as likely at every step as overall, so the
    # default relative rule would flag none of the held-back steps
    assert m.validation_["fp_rate_relative<0.1"] == 0.0
    few = [rng.integers(1, 4, size=6) for _ in range(10)]
    m2 = SequenceModel(p).fit(few, 3, seed=1)
    assert "val_loss" not in m2.history_ and m2.validation_ == {}


def _session_daemon(tmp_path: Path, bundle: Path, end_after: float):
    """A started daemon on an empty log, streams keyed by block id, stream ends judged after `end_after` s."""
    from test_daemon_e2e import Daemon

    d = Daemon(tmp_path, bundle)
    text = d.cfg.read_text().replace(
        "start_position: end", f"start_position: end\n    stream: '{STREAM}'"
    ) + f"detectors:\n  autoencoder: {{enabled: false}}\n  sequence: {{stream_end_after: {end_after}}}\n"
    d.cfg.write_text(text)
    (d.logs / "messages").write_text("")
    d.start()
    return d


@pytest.mark.slow
def test_daemon_alerts_on_a_session_that_stopped_early(tmp_path, session_bundle) -> None:
    from test_daemon_e2e import _append

    d = _session_daemon(tmp_path, session_bundle, 2.0)
    stop = {2: 3}
    lines, blocks = session_log(8, seed=5, stop=stop)
    _append(d.logs / "messages", lines)

    def end_alerts(n: int) -> list[dict]:
        deadline = time.monotonic() + 30
        while True:
            ends = [a for a in d.alert_lines() if (a["detectors"][0].get("rule") or "").startswith("stream end")]
            if len(ends) >= n or time.monotonic() > deadline:
                return ends
            time.sleep(0.1)

    end_alerts(1)
    time.sleep(3.5)  # every other stream has been idle past stream_end_after by now: none may alert
    ends = end_alerts(1)
    assert [a["stream"] for a in ends] == [blocks[2]], ends
    a = ends[0]
    assert blocks[2] in a["line"] and a["expected"], a  # the session's last line, and what should have followed
    assert a["type_id"] > 0 and a["previous_type_id"] is None  # its last line's type; an end is no transition
    assert not [x for x in d.alert_lines() if x not in ends], "a complete session alerted"

    # a session that stops just before a restart is still judged after it, from the checkpoint
    more, blocks2 = session_log(1, seed=6, stop={0: 2})
    _append(d.logs / "messages", more)
    needle = 'lograven_lines_read_total{file="%s"} %d.0' % (d.logs / "messages", len(lines) + len(more))
    assert needle in d.wait_metric(needle)
    time.sleep(0.5)  # scored (well before stream_end_after)
    assert d.stop() == 0
    assert len(end_alerts(1)) == 1
    d.start()
    ends = end_alerts(2)
    assert d.stop() == 0
    assert [a["stream"] for a in ends] == [blocks[2], blocks2[0]], ends
    assert blocks2[0] in ends[1]["line"] and ends[1]["offset"] > 0 and ends[1]["type_id"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("stream_end", [True, False])
def test_evaluate_sessions_finds_sessions_that_stop_early_only_with_stream_end(tmp_path, stream_end) -> None:
    import json

    from lograven import cli

    n = 500
    rng = random.Random(3)
    stop = {i: rng.randint(1, 6) for i in range(260, n) if rng.random() < 0.05}  # anomalies: test part only
    lines, blocks = session_log(n, seed=3, stop=stop)
    log = tmp_path / "s.log"
    log.write_text("\n".join(lines) + "\n")
    lab = tmp_path / "labels.csv"
    lab.write_text("BlockId,Label\n" + "".join(f"{b},{'Anomaly' if i in stop else 'Normal'}\n" for i, b in enumerate(blocks)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "training:\n  sequence: {units: 16, embedding_dim: 8, window: 16, epochs: 40, patience: 5, members: 1}\n"
        "  autoencoder: {vocab_size: 128, epochs: 2, filters: 16, latent_dim: 8, embedding_dim: 8}\n"
        "detectors:\n  autoencoder: {enabled: false}\n"
    )
    out = tmp_path / "r.json"
    args = ["-q", "evaluate", "--sessions", str(lab), "--stream-key", r"blk_-?\d+", "--config", str(cfg),
            "--train-fraction", "0.5", "--json", str(out), str(log)]  # fmt: skip
    assert cli.main(args + (["--stream-end"] if stream_end else [])) == 0
    js = json.loads(out.read_text())
    assert js["split"]["test_anomalies"] == len(stop) >= 5
    seq = next(r for r in js["results"] if r["detector"] == "sequence")
    if stream_end:
        # every early stop is found by its end, and complete sessions end quietly
        assert seq["recall"] == 1.0 and seq["fp"] == 0, js["missed"][:3] + js["false_alarms"][:3]
        assert js["missed"] == [] and all(x["end"] is not None for x in js["false_alarms"])
    else:
        # without ends, a session that stops early has no improbable line
        assert seq["recall"] < 0.5


def test_long_sessions_keep_their_end_in_training(monkeypatch) -> None:
    """Streams that end are never cut into a training head and a validation tail: the end of a long
    session would otherwise only ever be a validation target."""
    import lograven.sequence as sq

    seen = {}

    def fake_fit(X, V, n_types, p, seed, init_weights, progress):
        seen["X"], seen["V"] = X, V
        return {}, {}

    monkeypatch.setattr(sq, "_keras_fit", fake_fit)
    monkeypatch.setattr(SequenceModel, "_validation_stats", lambda self, V, freq, once=None: {"steps": 1})
    rng = np.random.default_rng(0)
    p = SequenceParams(units=4, embedding_dim=2, window=8, stream_end=True)
    seqs = [rng.integers(1, 4, size=40) for _ in range(30)]  # 40 lines > 4 windows
    SequenceModel(p).fit(seqs, 3, seed=1)
    ends_train = int((seen["X"] == sq._END_MARK).sum())
    ends_val = int((seen["V"] == sq._END_MARK).sum())
    assert ends_val == 3 and ends_train >= 27  # 3 whole sessions held back; every other end is trained
    # files (no stream_end): the tail of each long stream is held back as before
    SequenceModel(replace(p, stream_end=False)).fit(seqs, 3, seed=1)
    assert not (seen["X"] == sq._END_MARK).any() and seen["V"] is not None


def test_streams_still_running_when_the_data_stops_are_not_ends() -> None:
    from lograven.training import streams_ended

    streams = ["a", "b", "a", "c"] + ["x"] * 36 + ["b", "d"]  # 42 lines: the last 3 (5%) may be open
    assert streams_ended(streams) == [True, False, True, False, False]  # a, b, c, x, d in first-seen order
    assert streams_ended(["only"]) == [False]


def test_expected_types_when_asking_for_more_than_there_are(session_bundle) -> None:
    b = load_bundle(session_bundle)
    lines, _ = session_log(3, seed=4)
    det = Detector(b, DetectorSettings(autoencoder=False, expected=100))
    parser = Parser("syslog")
    import re

    vs = det.detect([(re.search(r"blk_-?\d+", ln).group(0), parser.parse(ln)) for ln in lines])
    n = b.sequence.n_types_
    assert all(sorted(t for t, _ in v.expected) == list(range(1, n + 1)) for v in vs if v.sequence_p is not None)


def test_allow_rule_from_a_stream_end_alert_matches_only_stream_ends() -> None:
    from lograven.alerts import END_RULE_PREFIX, Alert, DetectorHit
    from lograven.allowlist import STREAM_END, rule_from_alert

    def alert(rule: str, prev: int | None) -> Alert:
        return Alert(id="a", time="t", host="h", file="/f", offset=0, stream="blk_1", line="x", type_id=3,
                     template="T", detectors=[DetectorHit("sequence", 0.01, 0.1, rule)], previous_type_id=prev)  # fmt: skip

    end = alert(f"{END_RULE_PREFIX} p/p_train<0.1", None)
    line = alert("p/p_train<0.1", 3)  # a real 3 -> 3 transition on a line
    assert end.is_stream_end and not line.is_stream_end
    assert end.dedup_key() != line.dedup_key()
    r = rule_from_alert(end.to_dict())
    assert r.detector == STREAM_END and r.from_type is None and r.type_id == 3
    assert r.matches(end) and not r.matches(line)
    r2 = rule_from_alert(line.to_dict())
    assert r2.matches(line) and not r2.matches(end)
    assert "stream ended" in r.describe()


def test_evaluate_judges_each_end_when_its_session_is_over(tmp_path) -> None:
    """With far fewer live GRU states than test sessions, every end is still judged: ends are judged
    as sessions finish (after each batch), not all at the end."""
    from lograven.evaluate import Setup, evaluate_sessions

    n = 300
    stop = {i: 2 for i in range(200, n, 10)}
    lines, blocks = session_log(n, seed=8, stop=stop)
    log = tmp_path / "s.log"
    log.write_text("\n".join(lines) + "\n")
    lab = tmp_path / "labels.csv"
    lab.write_text("BlockId,Label\n" + "".join(f"{b},{'Anomaly' if i in stop else 'Normal'}\n" for i, b in enumerate(blocks)))
    from lograven.config import parse_config

    cfg = parse_config({"training": {"sequence": {"units": 16, "embedding_dim": 8, "window": 16, "epochs": 40, "patience": 5, "members": 1},
                                     "autoencoder": {"vocab_size": 128, "epochs": 1, "filters": 8, "latent_dim": 4,
                                                     "embedding_dim": 4}}})  # fmt: skip
    res = evaluate_sessions(log, lab, r"blk_-?\d+", config=cfg, settings=DetectorSettings(autoencoder=False, max_streams=8),
                            setup=Setup(train_fraction=0.5, stream_end=True, batch_size=16))  # fmt: skip
    seq = res.results["sequence"]
    assert res.split["test_anomalies"] == len(stop) and seq.tp == len(stop) and seq.fp == 0
    assert res.settings["stream_end"] is True


def test_each_held_back_line_counts_once_in_the_validation_figures() -> None:
    """Validation windows overlap by half; every held-back target is counted in exactly one window,
    the first that has it (the longer history)."""
    from lograven.sequence import _first_cover, _windows

    for n in (2, 5, 9, 10, 17, 40, 101):
        ws, cover = _windows(np.arange(n), 8), _first_cover(n, 8)
        assert len(ws) == len(cover)
        counted = [int(w[1:][c][k]) for w, c in zip(ws, cover) for k in range(int(c.sum())) if w[1:][c][k] >= 0]
        assert sorted(counted) == list(range(1, n)), n  # ids 1..n-1 are the targets, each once
    # a fitted model's step count is the number of held-back lines, not of window positions
    rng = np.random.default_rng(0)
    p = SequenceParams(units=4, embedding_dim=2, window=8, epochs=1, batch_size=16)
    m = SequenceModel(p).fit([rng.integers(1, 4, size=400)], 3, seed=1)
    assert m.validation_["steps"] == 40  # 10% of 400 lines


def test_learn_keeps_the_base_models_lower_cuts() -> None:
    from lograven.learning import keep_lowest_cuts

    base = {"steps": 20000, "relative_q": 0.3, "probability_q": 0.001, "probability_min": 0.0002}
    small = {"steps": 1200, "relative_q": 0.2, "probability_q": 0.004, "probability_min": 0.0007, "top1_accuracy": 0.6}
    got = keep_lowest_cuts(base, small)
    assert got == {"steps": 21200, "relative_q": 0.2, "probability_q": 0.001, "probability_min": 0.0002, "top1_accuracy": 0.6}
    assert keep_lowest_cuts({}, small) == small  # a base without figures changes nothing
    # fitted tails: the one extrapolating to the larger surprise (the lower cut) at 1e-4 is kept
    wide, thin = [5.0, 1.0, 0.05], [6.0, 0.3, 0.05]  # at 1e-4: 5 + 6.2 = 11.2 against 6 + 1.9 = 7.9
    got = keep_lowest_cuts({"steps": 9000, "tail_p": wide, "tail_relative": thin}, {**small, "tail_p": thin, "tail_relative": wide})
    assert got["tail_p"] == wide and got["tail_relative"] == wide and got["steps"] == 10200
    assert keep_lowest_cuts({"tail_p": wide}, small)["tail_p"] == wide  # a new hold-out too small for a tail
    # the lowest held-back values: the lowest of both hold-outs, out of both counts
    lows = {"relative_low": [0.01, 0.3], "probability_low": [1e-4], "low_steps": 9000, "end_steps": 50, "end_probability_low": [0.02]}
    new = {**small, "relative_low": [0.02, 0.05], "probability_low": [1e-3], "low_steps": 1200, "end_steps": 5,
           "end_probability_low": [0.01]}  # fmt: skip
    got = keep_lowest_cuts({"steps": 9000, **lows}, new)
    assert got["relative_low"] == [0.01, 0.02, 0.05, 0.3] and got["probability_low"] == [1e-4, 1e-3]
    assert got["low_steps"] == 10200 and got["end_probability_low"] == [0.01, 0.02] and got["end_steps"] == 55
    # a base from before the lists: the new hold-out's lists, with their own count (not the sum)
    got = keep_lowest_cuts({"steps": 9000, "relative_q": 0.01}, new)
    assert got["steps"] == 10200 and got["low_steps"] == 1200 and got["relative_low"] == [0.02, 0.05]
    # a new hold-out too small for figures keeps the base's lists and counts
    got = keep_lowest_cuts({"steps": 9000, **lows}, {"steps": 0})
    assert got["relative_low"] == [0.01, 0.3] and got["low_steps"] == 9000 and got["end_steps"] == 50


@pytest.mark.slow
def test_learn_keeps_stream_ends(tmp_path, session_bundle) -> None:
    """`lograven learn` on a model that learned stream ends fine-tunes it as one (ends taught only
    for streams that ended inside the new data) and the result still flags sessions that stop early."""
    from lograven.learning import learn
    from lograven.training import read_corpus

    lines, _ = session_log(150, seed=21)
    (tmp_path / "new.log").write_text("\n".join(lines) + "\n")
    corpus = read_corpus([str(tmp_path / "new.log")], stream=STREAM)
    out, _ = learn(session_bundle, corpus, out=tmp_path / "learned", training=tiny_training_config())
    b = load_bundle(out)
    assert b.sequence.params.stream_end and b.sequence.end_frequency_ > 0
    stop = {4: 2, 9: 3}
    test_lines, blocks = session_log(20, seed=77, stop=stop)
    det = Detector(b, DetectorSettings(autoencoder=False))
    _feed(det, test_lines)
    flagged = {blocks.index(e.stream) for e in det.end_streams(blocks) if e.anomaly}
    assert flagged == set(stop)


def _without_replay_ends(bundle: Path, dest: Path) -> Path:
    """A copy of `bundle` as lograven before 2026-12-07 wrote it: replay.npz without its `ended` flags
    (the manifest's checksums updated)."""
    import shutil

    import numpy as np

    from lograven.bundle import _manifest_digest, sha256_file

    shutil.copytree(bundle, dest)
    with np.load(dest / "replay.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "ended"}
    np.savez(dest / "replay.npz", **arrays)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["replay.npz"] = sha256_file(dest / "replay.npz")
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_learning_an_excerpt_keeps_judging_stream_ends(tmp_path, session_bundle) -> None:
    """`learn --from-alerts` gives lines cut out of the log: no stream ends in them. Fine-tuning on them
    must go on seeing ends (the replay sample keeps where its streams ended), or the new version would
    forget ends and stop judging them. A bundle that predates the replay's end flags takes its replay
    streams as ended."""
    from lograven.learning import learn
    from lograven.training import load_replay, read_corpus

    seqs, _, ended = load_replay(session_bundle)
    assert ended is not None and len(ended) == len(seqs) and sum(ended) >= 0.9 * len(ended)
    lines, _ = session_log(12, seed=31)
    (tmp_path / "excerpt.log").write_text("\n".join(lines[5:40]) + "\n")
    corpus = read_corpus([str(tmp_path / "excerpt.log")], stream=STREAM)
    corpus.final_ends = dict.fromkeys(corpus.streams, False)  # as corpus_from_alerts marks a stretch
    old = _without_replay_ends(session_bundle, tmp_path / "old")
    assert load_replay(old)[2] is None
    stop = {4: 2, 9: 3}
    test_lines, blocks = session_log(20, seed=77, stop=stop)
    for base in (session_bundle, old):
        out, _ = learn(base, corpus, out=tmp_path / f"learned-{base.name}", training=tiny_training_config())
        b = load_bundle(out)
        assert b.sequence.end_frequency_ > 0.5 * load_bundle(base).sequence.end_frequency_
        assert load_replay(out)[2] is not None
        det = Detector(b, DetectorSettings(autoencoder=False))
        assert det.judges_stream_ends
        _feed(det, test_lines)
        flagged = {blocks.index(e.stream) for e in det.end_streams(blocks) if e.anomaly}
        assert flagged == set(stop)


# ---------------------------------------------------------- streams cut at silences (stream_end_after)


def test_stream_segments_cut_where_a_stream_was_silent() -> None:
    """Training with stream_end_after cuts each stream where it was silent that long, as the daemon
    ends it, and teaches an end only where the data shows one."""
    from lograven.training import stream_segments

    nan = float("nan")
    streams = ["a", "b", "a", "a", "b", "a", "c", "c"]
    times = [0.0, 1.0, 2.0, 700.0, 705.0, nan, 1300.0, 1400.0]
    types = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    segs, ended = stream_segments(streams, times, types, 600.0)
    got = sorted(zip(([int(x) for x in s] for s in segs), ended))
    # a: silent 698 s after its 2nd line -> [1, 3] ended; [4, 6] (a line without a time continues) is
    # still running: its last known time (700) is 700 s before the data ends (1400) -> ended.
    # b: 704 s between its lines -> [2] ended, [5] last at 705 -> ended (695 s before the end).
    # c: [7, 8], last line is the data's last -> open.
    assert got == [([1, 3], True), ([2], True), ([4, 6], True), ([5], True), ([7, 8], False)]
    # no timestamps at all: nothing is cut and nothing is known to have ended
    segs, ended = stream_segments(["a", "a"], [nan, nan], np.array([1, 2]), 600.0)
    assert [list(s) for s in segs] == [[1, 2]] and ended == [False]


def test_segment_ends_are_judged_where_the_daemon_would() -> None:
    from lograven.evaluate import _segment_ends

    nan = float("nan")
    streams = ["a", "b", "a", "b", "c", "a"]
    times = [0.0, 10.0, 20.0, 900.0, 950.0, nan]
    finishing, cuts = _segment_ends(streams, times, 600.0, log_end=1000.0)
    # b is silent 890 s after its first line: its segment ends after line 2, and scoring must pause there
    # so the end is judged before b speaks again; a's last timed line is at 20 s (the line without a time
    # continues it) -> ends after its last line (6); b's second segment (900) and c (950) are open at 1000.
    assert dict(finishing) == {2: ["b"], 6: ["a"]}
    assert cuts == [2]


def test_score_pauses_at_the_cuts() -> None:
    from lograven.evaluate import score

    class Stub:
        def detect(self, items):
            return [type("V", (), {"type_id": 1, "sequence_p": None, "ae_error": None, "detectors": [], "expected": []})()
                    for _ in items]  # fmt: skip

        def rare_fires(self, type_ids, rank, end_more_likely=False):
            return np.zeros(len(type_ids), dtype=bool)

        def unjudged(self, type_ids):
            return np.zeros(len(type_ids), dtype=bool)

    seen: list[int] = []
    score(Stub(), [("s", None)] * 10, batch_size=4, after_batch=seen.append, cuts=[3, 4, 9, 12])  # type: ignore[arg-type]
    assert seen == [3, 4, 8, 9, 10]


def timed_session_log(n: int, seed: int, stop: dict[int, int], deleted: set[int],
                      delete_stopped: bool = False) -> tuple[list[str], list[str]]:  # fmt: skip
    """Blocks written every 20 s (9 lines in 9 s, interleaved by time), which then rest; the blocks in
    `deleted` are deleted an hour later (2 lines). Early stops (`stop`) are deleted only with
    `delete_stopped`."""
    from datetime import datetime, timedelta

    rng = random.Random(seed)
    t0 = datetime(2026, 6, 9)
    blocks = [f"blk_{rng.randint(10**15, 10**18)}" for _ in range(n)]
    events = []
    for i, blk in enumerate(blocks):
        start = 20 * i
        for k, text in enumerate(_session(rng, blk, stop.get(i))):
            events.append((start + k, i, text))
        if i in deleted and (delete_stopped or i not in stop):
            d = start + 3600 + rng.randint(0, 600)
            events += [(d, i, f"BLOCK* NameSystem.delete: {blk} is added to invalidSet of 10.0.0.{rng.randint(2, 250)}:50010"),
                       (d + 1, i, f"Deleting block {blk} file /data/dfs/current/subdir{rng.randint(0, 60)}/{blk}")]  # fmt: skip
    events.sort(key=lambda e: (e[0], e[1]))
    return [f"{(t0 + timedelta(seconds=t)):%b %e %H:%M:%S} dn1 hdfs[7]: {text}" for t, _, text in events], blocks


@pytest.mark.parametrize("gap", [600, 0])
def test_evaluate_with_stream_end_after_learns_blocks_at_rest(tmp_path, gap) -> None:
    """HDFS-like blocks rest after they are written and are deleted much later, if at all before the log
    stops. Trained on whole sessions (every training block was deleted), a block at rest looks like a
    session that stopped early. With stream_end_after, training and test cut streams at silences, as the
    daemon does: the write phase ends there, so resting blocks are fine and early stops still stand out."""
    from lograven.config import parse_config
    from lograven.evaluate import Setup, evaluate_sessions

    n = 300
    rng = random.Random(5)
    stop = {i: rng.randint(1, 4) for i in range(150, n) if rng.random() < 0.08}  # early stops, in the test part
    lines, blocks = timed_session_log(n, seed=5, stop=stop, deleted=set(range(150)))  # only training blocks are deleted
    log = tmp_path / "s.log"
    log.write_text("\n".join(lines) + "\n")
    lab = tmp_path / "labels.csv"
    lab.write_text("BlockId,Label\n" + "".join(f"{b},{'Anomaly' if i in stop else 'Normal'}\n" for i, b in enumerate(blocks)))
    cfg = parse_config({"training": {"sequence": {"units": 16, "embedding_dim": 8, "window": 16, "epochs": 40, "patience": 5, "members": 1},
                                     "autoencoder": {"vocab_size": 128, "epochs": 1, "filters": 8, "latent_dim": 4,
                                                     "embedding_dim": 4}},
                        "detectors": {"sequence": {"stream_end_after": gap}}})  # fmt: skip
    res = evaluate_sessions(log, lab, r"blk_-?\d+", config=cfg, settings=DetectorSettings(autoencoder=False),
                            setup=Setup(train_fraction=0.5, session_split="normal", stream_end=True))  # fmt: skip
    seq = res.results["sequence"]
    assert res.split["test_anomalies"] == len(stop) >= 5
    if gap:
        # the log goes on for the training blocks' deletions, over 600 s after the last block is written,
        # so every test block is judged once it has rested 600 s
        assert res.settings["stream_end_after"] == gap and res.training["segments_ended"] >= 150
        # ends are judged at their own threshold, from the held-back segments' ends
        v = res.training["sequence_validation"]
        f = res.training["sequence_end_frequency"]
        assert v["end_steps"] >= 20 and res.settings["end_threshold_in_force"] == pytest.approx(min(0.1, v["end_probability_low"][0] / f), rel=1e-5)
        if res.settings["end_threshold_in_force"] < 0.1:
            assert f"an end flagged below {res.settings['end_threshold_in_force']:.3g}" in res.table()
        assert seq.tp == len(stop) and seq.fp <= 2, (seq, res.missed[:3], res.false_alarms[:3])
    else:
        # whole sessions: every resting test block "stopped early"
        assert res.settings["stream_end_after"] == 0 and seq.fp >= 100


@pytest.fixture(scope="module")
def timed_bundle(tmp_path_factory) -> Path:
    """A session model trained with stream_end_after 600: blocks cut where they rest."""
    from lograven.training import read_corpus, train

    d = tmp_path_factory.mktemp("timed")
    lines, _ = timed_session_log(300, seed=11, stop={}, deleted=set(range(300)))
    (d / "train.log").write_text("\n".join(lines) + "\n")
    corpus = read_corpus([str(d / "train.log")], stream=STREAM)
    training = tiny_training_config()
    training = replace(training, sequence=replace(training.sequence, stream_end=True, epochs=40, patience=5, window=16))
    r = train(corpus, d / "bundle", training=training, stream=STREAM, end_gap=600.0)
    assert r.summary["stream_end_after"] == 600.0 and r.summary["segments_ended"] >= 550  # write + delete phases
    return r.path


@pytest.mark.slow
def test_daemon_judges_ends_by_timestamps_in_a_backlog(tmp_path, timed_bundle) -> None:
    """A backlog read at once: the daemon cuts streams where their own timestamps show stream_end_after of
    silence, as training did. A block that stopped early and is deleted an hour later (by its timestamps)
    gets its end alert before the delete lines; resting blocks and their deletions do not alert."""
    from test_daemon_e2e import _append

    d = _session_daemon(tmp_path, timed_bundle, 600)
    lines, blocks = timed_session_log(12, seed=12, stop={4: 3}, deleted=set(range(12)), delete_stopped=True)
    _append(d.logs / "messages", lines)
    needle = 'lograven_lines_read_total{file="%s"} %d.0' % (d.logs / "messages", len(lines))
    assert needle in d.wait_metric(needle)
    deadline = time.monotonic() + 20
    while not d.alert_lines() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    assert d.stop() == 0
    alerts = d.alert_lines()
    assert [(a["stream"], a["detectors"][0]["rule"].startswith("stream end")) for a in alerts] == [(blocks[4], True)], alerts
    assert "Receiving block" in alerts[0]["line"] or "allocateBlock" in alerts[0]["line"]


def test_rare_type_where_the_stream_usually_ends_is_not_expected_most(session_bundle) -> None:
    """For a model that learned stream ends, a rare type is flagged where the GRU expected the stream to end
    rather than this line, even when no other type was more likely (rank 1 among the types)."""
    import re

    lines, blocks = session_log(1, seed=21)
    parser = Parser("syslog")
    items = [(blocks[0], parser.parse(ln)) for ln in lines]
    quiet = dict(sequence_rule="probability", sequence_threshold=1e-12, sequence_floor=False)
    det = _detector(session_bundle, **quiet, sequence_rare_count=10**9)  # every type is rare
    vs = det.detect(items)
    saved = det.export_states()
    # after the complete session, one more line of each of its types: the most likely of them is rank 1
    tries = []
    for _, r in items:
        d = _detector(session_bundle, **quiet, sequence_rare_count=10**9)
        d.import_states(saved)
        tries.append((d.detect([(blocks[0], r)])[0], r, d))
    v, again, det = next((v, r, d) for v, r, d in tries if v.sequence_rank == 1)
    assert v.end_more_likely and v.detectors == ["sequence"], v
    from lograven.service import alert_from_verdict

    a = alert_from_verdict(v, path="f", offset=0, stream=blocks[0], line="x", record=again, detector=det, host="h", version="v")
    assert re.match(r"count<\d+ \(rare type\)", a.detectors[0].rule)
    # inside the session the rule is the rank alone: a line the GRU expected most, with the session
    # not expected to end there, is not flagged, however rare; the others are
    for v2 in vs[:-1]:
        assert not v2.end_more_likely
        assert v2.detectors == ([] if v2.sequence_rank == 1 else ["sequence"]), v2
    assert sum(v2.sequence_rank == 1 for v2 in vs[:-1]) >= 5


def test_daemon_measures_silences_across_batches_as_training_does(tmp_path) -> None:
    """The daemon's cut points (Service._silences) by the lines' timestamps: a line without a timestamp
    and lines of an unknown type keep the stream's last known time, within a batch and across batches,
    as stream_segments does in training."""
    from types import SimpleNamespace

    from lograven.config import parse_config
    from lograven.service import Service

    cfg = parse_config({"state_dir": str(tmp_path), "detectors": {"sequence": {"stream_end_after": 60}}})
    svc = Service(cfg)
    svc.detector = SimpleNamespace(settings=SimpleNamespace(max_streams=100))  # type: ignore[assignment]
    from datetime import datetime, timezone

    from lograven.parsing import LogRecord

    def batch(*lines: tuple[str, float | None]) -> list:
        """(stream, seconds after the epoch, or None for a line without a timestamp) -> detector items"""
        return [(s, LogRecord(None if t is None else datetime.fromtimestamp(t, timezone.utc), None, None, None, "m"))
                for s, t in lines]  # fmt: skip

    # batch 1: a at 0, b at 10, a without a time (ends the batch)
    assert svc._silences(batch(("a", 0.0), ("b", 10.0), ("a", None))) == [(0, 3, [])]
    # batch 2: a at 100 (100 s after its last time: cut before it), b at 50 (40 s: no cut)
    assert svc._silences(batch(("b", 50.0), ("a", 100.0))) == [(0, 1, []), (1, 2, ["a"])]
    # b at 130 (80 s after 50): cut; at 150 (20 s after 130): none
    assert svc._silences(batch(("b", 130.0))) == [(0, 1, ["b"])]
    assert svc._silences(batch(("b", 150.0))) == [(0, 1, [])]
    # both in one batch, resuming back to back
    assert svc._silences(batch(("a", 500.0), ("b", 501.0))) == [(0, 1, ["a"]), (1, 2, ["b"])]


def test_check_says_where_ends_are_judged(timed_bundle) -> None:
    """`lograven check` names the silence the model learned ends at, and a config that differs."""
    from lograven.cli import _detectors_in_force
    from lograven.config import parse_config

    b = load_bundle(timed_bundle)
    same = _detectors_in_force(b, parse_config({"detectors": {"sequence": {"stream_end_after": 600}}}))
    assert "stream ends judged after 600 s idle or silent by the lines' timestamps" in same
    other = _detectors_in_force(b, parse_config({"detectors": {"sequence": {"stream_end_after": 300}}}))
    assert "the model learned ends at 600 s of silence: set stream_end_after to 600" in other
    # the ends' own threshold, when calibration on held-back ends lowered it
    b.sequence.validation_ = {**b.sequence.validation_, "end_steps": 50, "end_probability_low": [0.02 * b.sequence.end_frequency_]}
    low = _detectors_in_force(b, parse_config({"detectors": {"sequence": {"stream_end_after": 600}}}))
    assert ", an end flagged below 0.02 (calibrated on held-back ends)" in low


def test_an_end_exactly_at_the_threshold_is_judged_as_evaluate_judges_it(session_bundle) -> None:
    """The calibrated ends' threshold is one held-back end's own ratio, so a test end can sit on it.
    Ends are compared in float64, as lines and evaluate's sweep are: a threshold one float64 step above
    an end's ratio flags it, one at its ratio does not (float32 rounding flipped such ends)."""
    lines, blocks = session_log(12, seed=5, stop={2: 3, 5: 2})
    first = _detector(session_bundle)
    _feed(first, lines)
    ratios = {e.stream: e.ratio for e in first.end_streams(blocks)}
    for at, fires in ((0.0, False), (np.inf, True)):
        for b in (blocks[2], blocks[5], blocks[0]):
            det = _detector(session_bundle)
            det.end_relative_threshold = float(np.nextafter(ratios[b], at)) if at else ratios[b]
            _feed(det, lines)
            (end,) = [e for e in det.end_streams(blocks) if e.stream == b]
            assert end.ratio == ratios[b] and end.anomaly is fires, (b, end.ratio, det.end_relative_threshold)


def test_a_model_trained_for_ends_that_saw_no_silence_says_why_ends_are_not_judged(tmp_path, caplog) -> None:
    """Trained with stream_end: true on 52 minutes of lines with stream_end_after 120 s, no stream fell silent
    that long, so no end was taught: training said nothing, and the daemon said the model was not trained
    with stream_end (it was). Training now says no end was learned, and the daemon names that cause."""
    from lograven.config import parse_config
    from lograven.generator import LogGenerator, write_log
    from lograven.service import Service
    from lograven.training import read_corpus, train

    log = tmp_path / "train.log"
    write_log(log, LogGenerator(seed=3).lines(600))  # a few lines a second: never silent for a day
    training = tiny_training_config()
    training = replace(training, sequence=replace(training.sequence, stream_end=True))
    with caplog.at_level("WARNING"):
        r = train(read_corpus([str(log)]), tmp_path / "m", training=training, end_gap=86400.0)
    assert r.summary["segments_ended"] == 0
    assert "no stream of the training lines falls silent for 86400s" in caplog.text
    cfg = parse_config({"model": str(r.path), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "sources": [{"paths": [str(log)]}], "detectors": {"sequence": {"stream_end_after": 86400}},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING", logger="lograven.service"):
        Service(cfg)._activate(load_bundle(r.path), r.path, cfg)
    assert "was trained for stream ends at 86400s of silence, but no stream of its training lines was silent" in caplog.text
    assert "did not learn stream ends (train it with" not in caplog.text


def test_no_stream_end_warning_while_the_sequence_detector_is_off(tmp_path, caplog) -> None:
    from lograven.config import parse_config
    from lograven.service import Service

    model = Path(__file__).resolve().parents[1] / "models" / "default"
    cfg = parse_config({"model": str(model), "state_dir": str(tmp_path / "state"), "metrics": {"enabled": False},
                        "sources": [{"paths": [str(tmp_path / "x.log")]}],
                        "detectors": {"sequence": {"enabled": False, "stream_end_after": 60}},
                        "alerts": {"syslog": {"enabled": False}, "jsonl": {"path": str(tmp_path / "a.jsonl")}}})  # fmt: skip
    with caplog.at_level("WARNING", logger="lograven.service"):
        Service(cfg)._activate(load_bundle(model), model, cfg)
    assert "stream ends" not in caplog.text


def test_learning_an_excerpt_keeps_ends_at_rests(tmp_path, timed_bundle) -> None:
    """With stream_end_after, training teaches an end after each segment between silences (an HDFS block
    at rest). The replay sample keeps those segments and their ends: replayed as whole streams, they would
    teach that a rest is followed by more lines, never by an end, and after learning an excerpt without
    ends every normal resting block would alert."""
    import random

    from lograven.learning import learn
    from lograven.training import load_replay, read_corpus

    seqs, _, ended = load_replay(timed_bundle)
    assert ended is not None and sum(ended) >= 0.8 * len(seqs)
    rng = random.Random(3)
    stop = {i: rng.randint(1, 4) for i in range(60) if rng.random() < 0.15}
    test_lines, blocks = timed_session_log(60, seed=77, stop=stop, deleted=set())
    new = timed_session_log(30, seed=31, stop={}, deleted=set())[0][40:80]
    (tmp_path / "new.log").write_text("\n".join(new) + "\n")
    corpus = read_corpus([str(tmp_path / "new.log")], stream=STREAM)
    corpus.final_ends = dict.fromkeys(corpus.streams, False)  # a stretch around alerts: cut, not ended
    out, _ = learn(timed_bundle, corpus, out=tmp_path / "learned", training=tiny_training_config())
    # a bundle from before the flags: its replay joined the segments, so it is replayed without ends, with
    # a warning (once: the new version keeps flags for what it replays)
    import logging

    old = _without_replay_ends(timed_bundle, tmp_path / "old")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lograven.learning").addHandler(handler)
    try:
        out_old, _ = learn(old, corpus, out=tmp_path / "learned-old", training=tiny_training_config())
    finally:
        logging.getLogger("lograven.learning").removeHandler(handler)
    assert any("trained before lograven kept where its replayed streams end" in m for m in records)
    flags = load_replay(out_old)[2]
    assert flags is not None and len(flags) == len(load_replay(out_old)[0])
    for path in (timed_bundle, out):
        det = Detector(load_bundle(path), DetectorSettings(autoencoder=False))
        assert det.judges_stream_ends
        _feed(det, test_lines)
        flagged = {blocks.index(e.stream) for e in det.end_streams(blocks) if e.anomaly}
        assert flagged >= set(stop) and len(flagged - set(stop)) <= 3, (path.name, sorted(flagged), sorted(stop))
