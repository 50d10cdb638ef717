"""The serving runtime: numpy (what lograven serves with) vs batched TensorFlow vs LiteRT.

For the autoencoder forward pass (tiled ids -> logits over the vocabulary)
and one GRU step (type id + state -> new state + next-type logits), at batch
1 and 256, for the default bundle and the seed-size bundle. Each runtime runs
in its own worker, pinned to one core with one thread, so its RSS is its
own: numpy (lograven's `Autoencoder.logits` and `SequenceModel.step`),
TensorFlow (the Keras twins of those models with the bundle's weights,
called eagerly as `model(x)`), and LiteRT (`ai-edge-litert`, models
converted per DESIGN.md's export pitfalls: the concrete function frozen with
`convert_variables_to_constants_v2`, a fixed batch size per exported model,
the GRU state an explicit input and output). Outputs are checked against
numpy. Tokenisation is not included (it is the same for every runtime).

LiteRT is not a lograven dependency: `.venv/bin/pip install ai-edge-litert`;
without it its columns are skipped.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.common import Context, have_package, row, run_worker

TITLE = "Serving runtime: numpy vs TensorFlow vs LiteRT (one pinned core)"
BATCHES = (1, 256)
SEQ_T = 256  # steps of one stream per call in the sequence comparison
INSTALL = "LiteRT is not installed; for this comparison only: .venv/bin/pip install ai-edge-litert"


def _inputs(bundle: str, batch: int, texts_file: str):
    """Real inputs: tiled BPE ids of generated lines, random type ids and states."""
    import numpy as np

    from lograven.bundle import load_bundle
    from lograven.bpe import tile_batch
    from lograven.masking import Masker
    from lograven.parsing import Parser, decode_line

    b = load_bundle(bundle)
    ae, seq = b.autoencoder, b.sequence
    parser, masker = Parser("syslog"), Masker(b.types.extra_masks)
    texts = []
    with open(texts_file, "rb") as f:
        for raw in f:
            rec = parser.parse(decode_line(raw)[0])
            texts.append(masker.mask_text(f"{rec.program} {rec.message}"))
            if len(texts) >= batch:
                break
    x, _ = tile_batch([ae.tokenizer_.encode(t) for t in texts], ae.length_)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, seq.n_types_ + 1, size=batch).astype(np.int32)
    h = rng.normal(0, 0.3, size=(batch, seq.params.units)).astype(np.float32)
    return b, x.astype(np.int32), ids, h


def _time(fn, seconds: float) -> float:
    """Median-free simple rate: µs per call over `seconds` (after 3 warm-up calls)."""
    import time

    for _ in range(3):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 8 == 0 and time.perf_counter() - t0 >= seconds:
            break
    return (time.perf_counter() - t0) / n * 1e6


# ------------------------------------------------------------------ worker side
def bench_numpy(bundle: str, texts_file: str, seconds: float) -> dict:
    from bench.common import proc_status

    out = {}
    for B in BATCHES:
        b, x, ids, h = _inputs(bundle, B, texts_file)
        ae, seq = b.autoencoder, b.sequence
        W = seq.weights_

        def gru():
            h1 = seq.step(h, ids)
            return h1, h1 @ W["out_k"] + W["out_b"]

        out[f"ae_b{B}_us"] = _time(lambda: ae.logits(x), seconds)
        out[f"gru_b{B}_us"] = _time(gru, seconds)
    ids_seq, h_seq = _seq_inputs(b)
    out[f"gruseq_T{SEQ_T}_us"] = _time(lambda: _numpy_seq(seq, h_seq, ids_seq), seconds)
    out["rss_mb"] = proc_status().get("VmRSS")
    out["ae_weights"] = {k: list(v.shape) for k, v in ae.weights_.items()}
    out["gru_weights"] = {k: list(v.shape) for k, v in W.items()}
    out["blas"] = _blas()
    return out


def _seq_inputs(b):
    """One stream's next SEQ_T type ids, fed to its two staggered states (batch 2), as Detector._sequence does."""
    import numpy as np

    rng = np.random.default_rng(1)
    ids = rng.integers(1, b.sequence.n_types_ + 1, size=SEQ_T).astype(np.int32)
    h = rng.normal(0, 0.3, size=(2, b.sequence.params.units)).astype(np.float32)
    return ids, h


def _numpy_seq(seq, h, ids):
    """SEQ_T sequential GRU steps with lograven's numpy `SequenceModel.step`; returns the final state."""
    import numpy as np

    for t in ids:
        h = seq.step(h, np.array([t, t]))
    return h


def _blas():
    try:
        import threadpoolctl

        return [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for p in threadpoolctl.threadpool_info()]
    except ImportError:
        return None


def _keras_models(b, batch: int):
    """The Keras twins of the numpy serving code, with the bundle's weights."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    from lograven import autoencoder as aem
    from lograven import sequence as sqm

    ae, seq = b.autoencoder, b.sequence
    a = aem.build_keras(ae.tokenizer_.vocab_size, ae.length_, ae.params)
    aem.set_keras_weights(a, ae.weights_)
    U, n = seq.params.units, seq.n_types_ + 1
    ids = keras.Input((1,), dtype="int32", batch_size=batch, name="ids")
    h0 = keras.Input((U,), batch_size=batch, name="h")
    e = layers.Embedding(n, seq.params.embedding_dim, name="emb")(ids)
    _, h1 = layers.GRU(U, return_state=True, unroll=True, name="gru")(e, initial_state=h0)
    logits = layers.Dense(n, name="out")(h1)
    g = keras.Model([ids, h0], [logits, h1])
    sqm.set_keras_weights(g, seq.weights_)
    return a, g


def _keras_seq_model(b):
    """GRU over SEQ_T steps of one stream (two staggered states = batch 2), state in, final state out."""
    import keras
    from keras import layers

    from lograven import sequence as sqm

    seq = b.sequence
    U, n = seq.params.units, seq.n_types_ + 1
    ids = keras.Input((SEQ_T,), dtype="int32", batch_size=2, name="ids")
    h0 = keras.Input((U,), batch_size=2, name="h")
    e = layers.Embedding(n, seq.params.embedding_dim, name="emb")(ids)
    _, h1 = layers.GRU(U, return_state=True, name="gru")(e, initial_state=h0)
    out = layers.Dense(n, name="out")(h1)  # unused output keeps the weight names aligned with set_keras_weights
    m = keras.Model([ids, h0], [out, h1])
    sqm.set_keras_weights(m, seq.weights_)
    return keras.Model([ids, h0], h1)


def bench_tf(bundle: str, texts_file: str, seconds: float, export_dir: str | None = None) -> dict:
    """Eager `model(x)` on batches; optionally export frozen fixed-batch LiteRT models and reference outputs."""
    import numpy as np

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from bench.common import proc_status

    out: dict = {}
    for B in BATCHES:
        b, x, ids, h = _inputs(bundle, B, texts_file)
        a, g = _keras_models(b, B)
        ref_ae = b.autoencoder.logits(x)
        h1 = b.sequence.step(h, ids)
        ref_logits = h1 @ b.sequence.weights_["out_k"] + b.sequence.weights_["out_b"]
        xt, idt, ht = tf.constant(x), tf.constant(ids[:, None]), tf.constant(h)
        out[f"ae_b{B}_maxdiff"] = float(np.abs(a(xt).numpy() - ref_ae).max())
        lg, hh = g([idt, ht])
        out[f"gru_b{B}_maxdiff"] = float(max(np.abs(lg.numpy() - ref_logits).max(), np.abs(hh.numpy() - h1).max()))
        out[f"ae_b{B}_us"] = _time(lambda: a(xt), seconds)
        out[f"gru_b{B}_us"] = _time(lambda: g([idt, ht]), seconds)
        if export_dir:
            d = Path(export_dir)
            d.mkdir(parents=True, exist_ok=True)
            np.savez(d / f"ref_b{B}.npz", x=x, ids=ids, h=h, ae=ref_ae, logits=ref_logits, h1=h1)
            (d / f"ae_b{B}.tflite").write_bytes(_to_tflite(tf, a, [tf.TensorSpec(x.shape, tf.int32, name="ids")]))
            (d / f"gru_b{B}.tflite").write_bytes(_to_tflite(tf, g, [tf.TensorSpec((B, 1), tf.int32, name="ids"),
                                                                   tf.TensorSpec(h.shape, tf.float32, name="h")]))  # fmt: skip
    ids_seq, h_seq = _seq_inputs(b)
    gs = _keras_seq_model(b)
    ref_h = _numpy_seq(b.sequence, h_seq, ids_seq)
    idq, hq = tf.constant(np.stack([ids_seq, ids_seq])), tf.constant(h_seq)
    out[f"gruseq_T{SEQ_T}_maxdiff"] = float(np.abs(gs([idq, hq]).numpy() - ref_h).max())
    out[f"gruseq_T{SEQ_T}_us"] = _time(lambda: gs([idq, hq]), seconds)
    if export_dir:
        d = Path(export_dir)
        np.savez(d / "ref_seq.npz", ids=np.stack([ids_seq, ids_seq]), h=h_seq, h_final=ref_h)
        try:
            (d / "gruseq.tflite").write_bytes(_to_tflite(tf, gs, [tf.TensorSpec((2, SEQ_T), tf.int32, name="ids"),
                                                                 tf.TensorSpec(h_seq.shape, tf.float32, name="h")]))  # fmt: skip
        except Exception as e:  # the converter's own exception types
            out["gruseq_export_error"] = f"{e.__class__.__name__}: {str(e)[:300]}"
    out["rss_mb"] = proc_status().get("VmRSS")
    out["tensorflow"] = tf.__version__
    return out


def _to_tflite(tf, model, spec) -> bytes:
    """Freeze the concrete function first (Keras 3 + from_concrete_functions otherwise drops the weights)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if len(spec) == 1:
        fn = tf.function(lambda x: model(x), input_signature=spec)
    else:
        fn = tf.function(lambda i, h: model([i, h]), input_signature=spec)
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    return conv.convert()


def bench_litert(export_dir: str, seconds: float) -> dict:
    """Only numpy and LiteRT imported: the RSS of a LiteRT-serving process."""
    import numpy as np

    from bench.common import proc_status

    rss0 = proc_status().get("VmRSS")
    from ai_edge_litert.interpreter import Interpreter

    out: dict = {"rss_numpy_only_mb": rss0}
    d = Path(export_dir)
    for B in BATCHES:
        ref = np.load(d / f"ref_b{B}.npz")
        for name in ("ae", "gru"):
            it = Interpreter(model_path=str(d / f"{name}_b{B}.tflite"), num_threads=1)
            it.allocate_tensors()
            ins = {x["name"]: x for x in it.get_input_details()}
            outs = it.get_output_details()
            if name == "ae":
                feeds = [(next(iter(ins.values()))["index"], ref["x"])]
            else:
                i_ids = next(v for k, v in ins.items() if "ids" in k)
                i_h = next(v for k, v in ins.items() if k.endswith("h") or "_h" in k or k.startswith("h"))
                feeds = [(i_ids["index"], ref["ids"][:, None].astype(np.int32)), (i_h["index"], ref["h"])]

            def call():
                for idx, val in feeds:
                    it.set_tensor(idx, val)
                it.invoke()
                return [it.get_tensor(o["index"]) for o in outs]

            res = call()
            if name == "ae":
                out[f"ae_b{B}_maxdiff"] = float(np.abs(res[0] - ref["ae"]).max())
            else:
                by_shape = {r.shape: r for r in res}
                lg, h1 = by_shape[ref["logits"].shape], by_shape[ref["h1"].shape]
                out[f"gru_b{B}_maxdiff"] = float(max(np.abs(lg - ref["logits"]).max(), np.abs(h1 - ref["h1"]).max()))
            out[f"{name}_b{B}_us"] = _time(call, seconds)
            out[f"{name}_b{B}_bytes"] = (d / f"{name}_b{B}.tflite").stat().st_size
    if (d / "gruseq.tflite").exists():
        ref = np.load(d / "ref_seq.npz")
        it = Interpreter(model_path=str(d / "gruseq.tflite"), num_threads=1)
        it.allocate_tensors()
        ins = {x["name"]: x for x in it.get_input_details()}
        i_ids = next(v for k, v in ins.items() if "ids" in k)
        i_h = next(v for k, v in ins.items() if v is not i_ids)
        o = it.get_output_details()[0]

        def call_seq():
            it.set_tensor(i_ids["index"], ref["ids"])
            it.set_tensor(i_h["index"], ref["h"])
            it.invoke()
            return it.get_tensor(o["index"])

        out[f"gruseq_T{SEQ_T}_maxdiff"] = float(np.abs(call_seq() - ref["h_final"]).max())
        out[f"gruseq_T{SEQ_T}_us"] = _time(call_seq, seconds)
    out["rss_mb"] = proc_status().get("VmRSS")
    return out


def import_cost(module: str) -> dict:
    import time

    from bench.common import proc_status

    r0 = proc_status().get("VmRSS")
    t0 = time.perf_counter()
    __import__(module)
    return {"seconds": time.perf_counter() - t0, "rss_delta_mb": proc_status().get("VmRSS") - r0}


# ------------------------------------------------------------------ driver side
def run(ctx: Context) -> dict:
    seconds = ctx.seconds(3.0, 0.3)
    texts = ctx.generated(ctx.lines(20_000, 2_000), seed=7)
    models = [("default", ctx.default_model())]
    if not ctx.smoke:  # smoke checks the code path once; the throughput section trains and serves the seed size
        models.append(("seed size", Path(ctx.seed_size_bundle()["path"])))
    have_litert = have_package("ai_edge_litert")
    rows, details = [], {}
    table = ["µs per line (per call ÷ batch) and, in brackets, the largest absolute difference from numpy's output:", "",
             "| model | runtime | " + " | ".join([f"AE batch {B}" for B in BATCHES] + [f"GRU step batch {B}" for B in BATCHES])
             + " | process RSS (MB) |",
             "|---|---|" + "---:|" * (2 * len(BATCHES) + 1)]  # fmt: skip
    for mname, bundle in models:
        exp = ctx.work / "litert" / mname.replace(" ", "-")
        npy = run_worker("runtime_compare", "bench_numpy", {"bundle": str(bundle), "texts_file": str(texts), "seconds": seconds})
        tfr = run_worker("runtime_compare", "bench_tf", {"bundle": str(bundle), "texts_file": str(texts), "seconds": seconds,
                                                         "export_dir": str(exp) if have_litert else None})  # fmt: skip
        lit = run_worker("runtime_compare", "bench_litert", {"export_dir": str(exp), "seconds": seconds}) if have_litert else None
        details[mname] = {"numpy": npy, "tensorflow": tfr, "litert": lit}
        units = npy["gru_weights"]["gru_rk"][0]
        first = f"{mname} (GRU-{units})"
        for rname, r in (("numpy", npy), ("TensorFlow `model(x)`", tfr), ("LiteRT", lit)):
            if r is None:
                continue
            cells = [f"{r[f'{w}_b{B}_us'] / B:.1f}" + (f" (Δ {r[f'{w}_b{B}_maxdiff']:.0e})" if f"{w}_b{B}_maxdiff" in r else "")
                     for w in ("ae", "gru") for B in BATCHES]  # fmt: skip
            table.append(f"| {first} | {rname} | " + " | ".join(cells) + f" | {r['rss_mb']:.0f} |")
            first = ""
        for w, label in (("ae", "autoencoder forward"), ("gru", f"GRU-{units} step + output layer")):
            for B in BATCHES:
                k = f"{w}_b{B}_us"
                cand = [(npy[k], "numpy"), (tfr[k], "TensorFlow")] + ([(lit[k], "LiteRT")] if lit else [])
                best = min(cand)
                rows.append(row(f"{mname}: {label}, batch {B}, numpy", npy[k] / B, "µs/line",
                                note=f"fastest: {best[1]} ({best[0] / B:.1f} µs/line); LiteRT/numpy "
                                     + (f"{lit[k] / npy[k]:.2f}×" if lit else "n/a"), noisy=True))  # fmt: skip
        k = f"gruseq_T{SEQ_T}_us"
        seq_cells = [f"numpy {npy[k] / SEQ_T:.2f}", f"TF {tfr[k] / SEQ_T:.2f}"] + ([f"LiteRT {lit[k] / SEQ_T:.2f}"] if lit and k in lit else [])
        if tfr.get("gruseq_export_error"):
            seq_cells.append(f"LiteRT export failed: {tfr['gruseq_export_error'][:120]}")
        diffs = ", ".join(f"{n} {r[k.replace('_us', '_maxdiff')]:.0e}" for n, r in (("TF", tfr), ("LiteRT", lit)) if r and k.replace("_us", "_maxdiff") in r)
        rows.append(row(f"{mname}: one stream, {SEQ_T} GRU-{units} steps in one call (2 states), numpy step loop", npy[k] / SEQ_T, "µs/line",
                        note=f"µs per step: {', '.join(seq_cells)}; max |Δ| {diffs}", noisy=True))  # fmt: skip
        rows.append(row(f"{mname}: process RSS — numpy (lograven bundle loaded)", npy["rss_mb"], "MB"))
        rows.append(row(f"{mname}: process RSS — TensorFlow", tfr["rss_mb"], "MB"))
        if lit:
            rows.append(row(f"{mname}: process RSS — LiteRT (numpy + interpreter + converted models)", lit["rss_mb"], "MB",
                            note=f"numpy alone {lit['rss_numpy_only_mb']:.0f} MB"))  # fmt: skip
    for mod in ("numpy", "tensorflow", "ai_edge_litert.interpreter"):
        if mod.startswith("ai_edge") and not have_litert:
            continue
        r = run_worker("runtime_compare", "import_cost", {"module": mod})
        details[f"import {mod}"] = r
        rows.append(row(f"import {mod}", r["seconds"], "s", note=f"+{r['rss_delta_mb']:.0f} MB RSS", noisy=True))
    msg = "" if have_litert else INSTALL + " (LiteRT columns skipped)"
    return {"title": TITLE, "rows": rows, "details": details, "message": msg, "markdown_extra": ["\n".join(table)]}

