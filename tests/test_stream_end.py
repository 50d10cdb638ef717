"""Streams that are sessions: the sequence model learns where they end, and a session that stops
early is flagged by its end (HDFS: a block allocated and being received, then nothing).

The log is a small HDFS-like grammar written here: each block is one session of 9 lines
(allocate, 2 x receiving, 2 x (received, responder) in either order, 2 x stored), sessions
interleaved in one file, the stream key is the block id.
"""
from __future__ import annotations

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


@pytest.mark.slow
def test_daemon_alerts_on_a_session_that_stopped_early(tmp_path, session_bundle) -> None:
    from test_daemon_e2e import Daemon, _append

    d = Daemon(tmp_path, session_bundle)
    text = d.cfg.read_text().replace(
        'start_position: end', f"start_position: end\n    stream: '{STREAM}'"
    ) + "detectors:\n  autoencoder: {enabled: false}\n  sequence: {stream_end_after: 2.0}\n"
    d.cfg.write_text(text)
    (d.logs / "messages").write_text("")
    d.start()
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
        "training:\n  sequence: {units: 16, embedding_dim: 8, window: 16, epochs: 40, patience: 5}\n"
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

    cfg = parse_config({"training": {"sequence": {"units": 16, "embedding_dim": 8, "window": 16, "epochs": 40, "patience": 5},
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
