"""The seed-style baseline: per-line eager Keras calls, as the two notebooks serve.

- seed 003: Embedding(types, 256) -> GRU(1024, return_state) -> Dense(softmax),
  called once per line with the previous state,
  `model(tf.constant([[id]]), states=states, return_state=True)`, then the
  notebook's `tf.where(predictions >= 0.02)` to list the expected types;
- seed 000: BPE (HF default trainer, no pre-tokenizer) ids tiled to 32 ->
  Embedding(30000, 256) -> Conv1D 64/32/8 -> Dense(4) -> Dense(21*8) ->
  Conv1DTranspose 8/32/64 -> Flatten -> Dense(32), called per line, MAE.

Weights are untrained: the speed of a forward pass does not depend on them.
Each runs in a worker pinned to one core with one TensorFlow thread, like
lograven's throughput. The seed pipeline (both models per line) runs at
1 / (1/GRU rate + 1/AE rate).
"""
from __future__ import annotations

import os

from bench.common import Context, row, run_worker

TITLE = "Seed-style baseline (per-line eager Keras, one pinned core)"
SEED_LENGTH = 32


def _tf():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    return tf, keras


# ------------------------------------------------------------------ worker side
def seed003_gru(vocab: int, units: int, embedding_dim: int, max_seconds: float, predict_seconds: float = 0.0) -> dict:
    """Seed 003's TextSequenceAnalyzer loop: one eager call per type id, state passed along."""
    import random
    import time

    tf, keras = _tf()

    class SeedAnalyzer(keras.Model):
        def __init__(self):
            super().__init__()
            self._embedding = keras.layers.Embedding(vocab, embedding_dim)
            self._gru = keras.layers.GRU(units, return_sequences=True, return_state=True)
            self._dense = keras.layers.Dense(vocab, activation="softmax")

        def call(self, inputs, training=False, states=None, return_state=False):
            x = self._embedding(inputs, training=training)
            if states is None:
                states = self._gru.get_initial_state(tf.shape(x)[0])
            x, states = self._gru(x, initial_state=states, training=training)
            x = self._dense(x, training=training)
            if return_state:
                return x, states
            return x

    model = SeedAnalyzer()
    rng = random.Random(0)
    ids = [rng.randrange(1, vocab) for _ in range(100_000)]
    model(tf.constant([[1]]), return_state=True)  # build

    def loop(budget: float) -> tuple[int, float, float]:
        states = None
        predicted: list[int] = []
        n = 0
        w0, c0 = time.perf_counter(), time.process_time()
        for tid in ids:
            if tid not in predicted:  # the notebook's anomaly check
                pass
            predictions, states = model(tf.constant([[tid]]), states=states, return_state=True)
            predictions = predictions[:, -1][0]
            predicted = tf.where(predictions >= 0.02).numpy().ravel().tolist()
            n += 1
            if n % 16 == 0 and time.perf_counter() - w0 > budget:
                break
        return n, time.perf_counter() - w0, time.process_time() - c0

    loop(min(1.0, max_seconds / 4))  # warm-up: first calls trace and allocate
    n, wall, cpu = loop(max_seconds)
    out = {"lines": n, "wall_s": wall, "cpu_s": cpu, "lines_per_s_wall": n / wall, "lines_per_s_cpu": n / cpu,
           "params": int(model.count_params()), "units": units, "embedding_dim": embedding_dim, "vocab": vocab}  # fmt: skip
    if predict_seconds:
        x = tf.constant([[1]])
        m = keras.Sequential([keras.Input((1,), dtype="int32"), keras.layers.Embedding(vocab, embedding_dim),
                              keras.layers.GRU(units), keras.layers.Dense(vocab, activation="softmax")])  # fmt: skip
        m.predict(x, verbose=0)
        k, w0 = 0, time.perf_counter()
        while time.perf_counter() - w0 < predict_seconds:
            m.predict(x, verbose=0)
            k += 1
        out["predict_per_line_per_s"] = k / (time.perf_counter() - w0)
    return out


def seed000_ae(train_file: str, score_file: str, max_seconds: float, train_lines: int = 20_000) -> dict:
    """Seed 000's scoring of one line: BPE encode, tile to 32, eager model call, MAE."""
    import time

    import numpy as np
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tf, keras = _tf()
    from keras import layers

    def strip(line: str) -> str:
        return line[16:].rstrip("\n")  # the seed strips the timestamp: "host prog[pid]: message"

    with open(train_file, encoding="utf-8", errors="replace") as f:
        train = [strip(x) for _, x in zip(range(train_lines), f)]
    with open(score_file, encoding="utf-8", errors="replace") as f:
        lines = [strip(x) for _, x in zip(range(200_000), f)]
    tok = Tokenizer(BPE(unk_token="[UNK]"))
    tok.train_from_iterator(train, trainer=BpeTrainer(special_tokens=["[UNK]"], show_progress=False))

    m = keras.Sequential([
        layers.Input(shape=(SEED_LENGTH,)), layers.Embedding(30000, 256),
        layers.Conv1D(64, 2, activation="elu"), layers.Conv1D(32, 4, activation="elu"), layers.Conv1D(8, 8, activation="elu"),
        layers.Dense(4, activation="relu"), layers.Dense(21 * 8, activation="relu"),
        layers.Conv1DTranspose(8, 8, activation="elu"), layers.Conv1DTranspose(32, 4, activation="elu"),
        layers.Conv1DTranspose(64, 2, activation="elu"), layers.Flatten(), layers.Dense(SEED_LENGTH),
    ])  # fmt: skip

    def preprocess(text: str) -> np.ndarray:
        ids = tok.encode(text).ids or [0]
        return np.array([(ids * round(SEED_LENGTH / len(ids) + 1))[:SEED_LENGTH]])

    def loop(budget: float) -> tuple[int, float, float]:
        n = 0
        w0, c0 = time.perf_counter(), time.process_time()
        for text in lines:
            x = preprocess(text)
            float(keras.ops.mean(keras.ops.abs(x - m(x)), axis=1)[0])
            n += 1
            if n % 16 == 0 and time.perf_counter() - w0 > budget:
                break
        return n, time.perf_counter() - w0, time.process_time() - c0

    loop(min(1.0, max_seconds / 4))
    n, wall, cpu = loop(max_seconds)
    t0 = time.perf_counter()
    for text in lines[:2000]:
        tok.encode(text)
    enc_us = (time.perf_counter() - t0) / 2000 * 1e6
    return {"lines": n, "wall_s": wall, "cpu_s": cpu, "lines_per_s_wall": n / wall, "lines_per_s_cpu": n / cpu,
            "params": int(m.count_params()), "bpe_vocab": tok.get_vocab_size(), "bpe_encode_us": enc_us}  # fmt: skip


# ------------------------------------------------------------------ driver side
def run(ctx: Context) -> dict:
    import json

    n_types = json.loads((ctx.default_model() / "manifest.json").read_text())["sequence"]["n_types"]
    budget = ctx.seconds(15.0, 1.0)
    rows, details = [], {}
    g = run_worker("baseline", "seed003_gru", {"vocab": n_types + 1, "units": 1024, "embedding_dim": 256, "max_seconds": budget,
                                               "predict_seconds": ctx.seconds(5.0, 0.5)})  # fmt: skip
    details["seed003_gru1024"] = g
    rows.append(row("seed 003: GRU-1024 per line, eager `model(tf.constant([[id]]), states=...)`", g["lines_per_s_wall"],
                    "lines/s", note=f"{g['lines_per_s_cpu']:.0f} per CPU-s; {g['params']:,} parameters; DESIGN.md measured 147",
                    noisy=True))  # fmt: skip
    if "predict_per_line_per_s" in g:
        rows.append(row("seed 003 GRU-1024 with `model.predict` per line", g["predict_per_line_per_s"], "lines/s",
                        note="DESIGN.md measured 20", noisy=True))
    g64 = run_worker("baseline", "seed003_gru", {"vocab": n_types + 1, "units": 64, "embedding_dim": 32, "max_seconds": budget})
    details["seed003_gru64"] = g64
    rows.append(row("same loop at lograven's size (GRU-64, embedding 32)", g64["lines_per_s_wall"], "lines/s",
                    note="per-call overhead, not FLOPs, sets the eager rate", noisy=True))
    train = ctx.generated(ctx.lines(20_000, 2_000), seed=1)
    score = ctx.generated(ctx.lines(200_000, 20_000), seed=7)
    a = run_worker("baseline", "seed000_ae", {"train_file": str(train), "score_file": str(score), "max_seconds": budget,
                                              "train_lines": ctx.lines(20_000, 2_000)})  # fmt: skip
    details["seed000_ae"] = a
    rows.append(row("seed 000: autoencoder per line (BPE encode + eager call + MAE)", a["lines_per_s_wall"], "lines/s",
                    note=f"{a['lines_per_s_cpu']:.0f} per CPU-s; {a['params']:,} parameters; BPE encode {a['bpe_encode_us']:.0f} µs/line; "
                         "DESIGN.md measured 131", noisy=True))  # fmt: skip
    pipeline = 1.0 / (1.0 / g["lines_per_s_wall"] + 1.0 / a["lines_per_s_wall"])
    rows.append(row("seed pipeline: both per line", pipeline, "lines/s", note="1 / (1/GRU + 1/AE)", noisy=True))
    ctx.shared["baseline"] = {"seed 003 GRU": g["lines_per_s_wall"], "seed 000 AE": a["lines_per_s_wall"], "seed pipeline": pipeline}
    return {"title": TITLE, "rows": rows, "details": details}
