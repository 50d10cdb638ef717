r"""Reconstruction error: lograven's autoencoder against seed 000's, on BGL-style line labels.

Not a test: a measurement for docs/accuracy.md. Both models are trained on
exactly the lines `lograven evaluate --labels bgl` trains on (the normal
lines of the first --train-fraction of the file) and score the remaining
lines. Reported per variant: ROC-AUC and best F1 (an oracle threshold: it
compares how well a score *separates* anomalies, not a deployable result)
and F1 at a threshold calibrated without labels (the 0.999 quantile of the
scores of the training lines).

Variants:
  seed-raw     seed 000 as written: BPE (HF default trainer, vocab <= 30000,
               no pre-tokenizer) on the unmasked "program message" text, ids
               tiled to 32, Embedding(30000,256) -> Conv1D 64/32/8 -> Dense(4)
               -> Dense(21*8) -> Conv1DTranspose 8/32/64 -> Flatten ->
               Dense(32), MSE on raw ids (adamax, 50 epochs, batch 32),
               scored by MAE over the ids
  seed-masked  the same model and error on lograven's masked text
  ce           lograven's autoencoder (bag-of-tokens decoder), error = mean
               cross-entropy (nats per token) of the line's tokens under the
               decoded distribution (the score until commit dbd5241)
  kl           the same trained model, error = ce minus the entropy of the
               line's own token bag = KL(bag || decoded) (the score since
               dbd5241); the bag's entropy is the least mean cross-entropy any
               decoder can reach, so kl does not grow with the number of
               distinct tokens in a line

Usage (BGL_2k, all variants, 3 seeds: about 25 minutes on 2 cores, mostly the seed model):
  .venv/bin/python bench/ae_compare.py ../shared/data/loghub/BGL/BGL_2k.log --seeds 3 --json /tmp/ae.json
HDFS sessions, lograven's model only (ce and kl from the same trained model):
  .venv/bin/python bench/ae_compare.py --sessions ../shared/data/hdfs/hdfs_dev_labels.csv \
      --format 'regex:^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\S+) (?P<program>\S+): (?P<message>.*)$' \
      --train-fraction 0.2 --seeds 5 ../shared/data/hdfs/hdfs_dev.log
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter

import numpy as np

from lograven.autoencoder import Autoencoder, AutoencoderParams
from lograven.bpe import tile_batch
from lograven.config import Config, load_config
from lograven.evaluate import best_f1, chronological_split, prf, read_line_labels, read_sessions, roc_auc
from lograven.masking import ExtraMask, Masker
from lograven.training import ae_text, params_from

BGL_FORMAT = r"regex:^\S+ \S+ (?P<host>\S+) (?P<timestamp>\S+) \S+ \S+ (?P<program>\S+) \S+ (?P<message>.*)$"
SEED_LENGTH = 32  # seed 000's max_length; its Dense(21*8) only fits 32


# ------------------------------------------------------------------ seed 000
def seed_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(BPE(unk_token="[UNK]"))
    # The seed calls tokenizer.train([file]) with the default trainer; [UNK] is added as a
    # special token here so that characters unseen in training encode instead of vanishing.
    tok.train_from_iterator(texts, trainer=BpeTrainer(special_tokens=["[UNK]"], show_progress=False))
    return tok


def seed_preprocess(tok, texts: list[str]) -> np.ndarray:
    """Seed 000's tiling: ids repeated round(32/len + 1) times, cut to 32."""
    rows = []
    for t in texts:
        ids = tok.encode(t).ids or [0]
        rows.append((ids * round(SEED_LENGTH / len(ids) + 1))[:SEED_LENGTH])
    return np.array(rows, dtype=np.float32)


def seed_model(keras):
    from keras import layers, models

    m = models.Sequential()
    m.add(layers.Input(shape=(SEED_LENGTH,)))
    m.add(layers.Embedding(30000, 256))
    m.add(layers.Conv1D(64, 2, activation="elu"))
    m.add(layers.Conv1D(32, 4, activation="elu"))
    m.add(layers.Conv1D(8, 8, activation="elu"))
    m.add(layers.Dense(4, activation="relu"))
    m.add(layers.Dense(21 * 8, activation="relu"))
    m.add(layers.Conv1DTranspose(8, 8, activation="elu"))
    m.add(layers.Conv1DTranspose(32, 4, activation="elu"))
    m.add(layers.Conv1DTranspose(64, 2, activation="elu"))
    m.add(layers.Flatten())
    m.add(layers.Dense(SEED_LENGTH))
    m.compile(loss="mse", optimizer="adamax")
    return m


def seed_scores(train_texts: list[str], test_texts: list[str], seed: int, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    from lograven.tfsetup import keras_session

    keras = keras_session(seed)
    tok = seed_tokenizer(train_texts)
    x_tr, x_te = seed_preprocess(tok, train_texts), seed_preprocess(tok, test_texts)
    m = seed_model(keras)
    m.fit(x_tr, x_tr, epochs=epochs, batch_size=32, verbose=0)

    def mae(x):
        return np.abs(m.predict(x, batch_size=512, verbose=0) - x).mean(axis=1)

    return mae(x_tr), mae(x_te)


# ------------------------------------------------------------------ lograven
def ce_and_kl(ae: Autoencoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Both errors from the model's decoded distribution, computed here so that the comparison
    does not depend on which one `Autoencoder.score` currently returns."""
    assert ae.tokenizer_ is not None
    x, lens = tile_batch([ae.tokenizer_.encode(t) for t in texts], ae.length_)
    logits = ae.logits(x).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    n = np.maximum(lens, 1)
    ce, ent = np.zeros(len(texts)), np.zeros(len(texts))
    for i in range(len(texts)):
        ids = x[i, : n[i]]
        ce[i] = -logp[i, ids].mean()
        p = np.array(list(Counter(ids.tolist()).values()), dtype=float) / n[i]
        ent[i] = -(p * np.log(p)).sum()  # the least mean cross-entropy any bag decoder can reach
    return ce, ce - ent


def lograven_scores(train_texts, test_texts, cfg: Config, seed: int):
    params = params_from(AutoencoderParams, cfg.training.autoencoder, quantile=cfg.detectors.autoencoder.quantile)
    ae = Autoencoder(params).fit(train_texts, seed=seed, validation_fraction=cfg.training.validation_fraction)
    (ce_tr, kl_tr), (ce_te, kl_te) = ce_and_kl(ae, train_texts), ce_and_kl(ae, test_texts)
    current = ae.score(test_texts)
    which = "kl" if np.allclose(current, kl_te, atol=1e-4) else "ce" if np.allclose(current, ce_te, atol=1e-4) else "?"
    return (ce_tr, ce_te), (kl_tr, kl_te), ae.threshold_, which


# ------------------------------------------------------------------ report
def metrics(train_scores: np.ndarray, test_scores: np.ndarray, truth: np.ndarray, threshold: float | None = None) -> dict:
    auc = roc_auc(test_scores, truth)
    f1_best, _ = best_f1(test_scores, truth)
    thr = float(np.quantile(train_scores, 0.999)) if threshold is None else threshold
    flagged = test_scores > thr
    p, r, f = prf(int((flagged & truth).sum()), int((flagged & ~truth).sum()), int((~flagged & truth).sum()))
    return {"roc_auc": auc, "best_f1": f1_best, "threshold": thr, "precision": p, "recall": r, "f1": f}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logfile", help="BGL-style labelled log (first token '-' = normal), or a log with --sessions")
    ap.add_argument("--sessions", metavar="CSV", help="session labels (BlockId,Label) instead of line labels; "
                    "a session's score is its lines' maximum (variants ce and kl only: the seed model on "
                    "tens of thousands of lines x 50 epochs is too slow for this bench)")
    ap.add_argument("--stream-key", default=r"blk_-?\d+", help="with --sessions: the session key regex")
    ap.add_argument("--format", default=BGL_FORMAT)
    ap.add_argument("--train-fraction", type=float, default=0.8)
    ap.add_argument("--config", help="YAML config (training.autoencoder.*) for lograven's model")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per model (default 3)")
    ap.add_argument("--seed-epochs", type=int, default=50, help="seed model epochs (the seed's 50)")
    ap.add_argument("--variants", default="seed-raw,seed-masked,ce,kl",
                    help="comma-separated subset of seed-raw, seed-masked, ce, kl (ce and kl train one model)")
    ap.add_argument("--json", help="write the results as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("LOGRAVEN_TRAIN_THREADS", "2")

    cfg = load_config(args.config) if args.config else Config()
    masker = Masker([ExtraMask(m.name, m.pattern) for m in cfg.training.msgtypes.extra_masks])
    if args.sessions:
        return sessions_main(args, cfg, masker)
    rows = read_line_labels(args.logfile, args.format)
    n_first = chronological_split(len(rows), args.train_fraction)

    def raw(r):
        return f"{r.record.program} {r.record.message}" if r.record.program else r.record.message

    def masked(r):
        return ae_text(masker, r.record.program, r.record.message)

    train_rows = [r for r in rows[:n_first] if not r.anomalous]
    test_rows = rows[n_first:]
    truth = np.array([r.anomalous for r in test_rows])
    print(f"{args.logfile}: train on {len(train_rows)} normal lines of the first {n_first}; "
          f"test {len(test_rows)} lines ({int(truth.sum())} anomalous)", file=sys.stderr)  # fmt: skip

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {"seed-raw", "seed-masked", "ce", "kl"}
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in range(42, 42 + args.seeds):
        for name, view in (("seed-raw", raw), ("seed-masked", masked)):
            if name in results:
                t0 = time.monotonic()
                tr, te = seed_scores([view(r) for r in train_rows], [view(r) for r in test_rows], seed, args.seed_epochs)
                results[name].append(metrics(tr, te, truth) | {"seed": seed, "seconds": time.monotonic() - t0})
        if "ce" in results or "kl" in results:
            t0 = time.monotonic()
            (ce_tr, ce_te), (kl_tr, kl_te), thr, which = lograven_scores([masked(r) for r in train_rows],
                                                                         [masked(r) for r in test_rows], cfg, seed)  # fmt: skip
            sec = time.monotonic() - t0
            for name, (tr, te) in (("ce", (ce_tr, ce_te)), ("kl", (kl_tr, kl_te))):
                if name in results:
                    # the calibrated threshold belongs to whichever error Autoencoder.score returns
                    own = metrics(tr, te, truth, thr) if which == name else None
                    results[name].append(metrics(tr, te, truth) | {
                        "seed": seed, "seconds": sec, "detector_score": which == name, "detector_threshold": own})  # fmt: skip
        for name, runs in results.items():
            m = runs[-1]
            print(f"seed {seed} {name:<12} AUC {m['roc_auc']:.3f}  best-F1 {m['best_f1']:.3f}  "
                  f"F1@q0.999 {m['f1']:.3f} (P {m['precision']:.3f} R {m['recall']:.3f})", file=sys.stderr)  # fmt: skip

    report(args, results, {"file": args.logfile, "train_lines": len(train_rows), "test_lines": len(test_rows),
                           "test_anomalies": int(truth.sum())})  # fmt: skip
    return 0


def sessions_main(args, cfg: Config, masker: Masker) -> int:
    """Session labels: train on the normal sessions of the first part, a session's score is its maximum."""
    sl = read_sessions(args.logfile, args.sessions, args.stream_key, args.format)
    n_pool = chronological_split(len(sl.names), args.train_fraction, "sessions")
    texts = [ae_text(masker, r.program, r.message) for r in sl.records]
    train_texts = [t for t, s in zip(texts, sl.session) if s < n_pool and not sl.anomalous[s]]
    test = [(t, s - n_pool) for t, s in zip(texts, sl.session) if s >= n_pool]
    sess = np.array([s for _, s in test])
    truth = sl.anomalous[n_pool:]
    T = len(truth)
    print(f"{args.logfile}: train on {len(train_texts)} lines of normal sessions among the first {n_pool}; "
          f"test {T} sessions ({int(truth.sum())} anomalous)", file=sys.stderr)  # fmt: skip

    def per_session(line_scores: np.ndarray) -> np.ndarray:
        out = np.full(T, -np.inf)
        np.fmax.at(out, sess, line_scores)
        return out

    results: dict[str, list[dict]] = {"ce": [], "kl": []}
    for seed in range(42, 42 + args.seeds):
        t0 = time.monotonic()
        (ce_tr, ce_te), (kl_tr, kl_te), thr, which = lograven_scores(train_texts, [t for t, _ in test], cfg, seed)
        for name, (tr, te) in (("ce", (ce_tr, ce_te)), ("kl", (kl_tr, kl_te))):
            m = metrics(tr, per_session(te), truth)
            m["threshold"] = float(np.quantile(tr, 0.999))  # per line, as in the line-label mode
            flagged = per_session(te) > m["threshold"]
            m["precision"], m["recall"], m["f1"] = _prf_flags(flagged, truth)
            own = None
            if which == name:
                own = dict(zip(("precision", "recall", "f1"), _prf_flags(per_session(te) > thr, truth)))
            results[name].append(m | {"seed": seed, "seconds": time.monotonic() - t0, "detector_score": which == name,
                                      "detector_threshold": own})  # fmt: skip
            print(f"seed {seed} {name:<4} AUC {m['roc_auc']:.3f}  best-F1 {m['best_f1']:.3f}  F1@q0.999 {m['f1']:.3f}"
                  + (f"  F1@calibrated {own['f1']:.3f}" if own else ""), file=sys.stderr)  # fmt: skip
    report(args, results, {"file": args.logfile, "labels": args.sessions, "train_lines": len(train_texts),
                           "test_sessions": T, "test_anomalies": int(truth.sum())})  # fmt: skip
    return 0


def _prf_flags(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    return prf(int((flagged & truth).sum()), int((flagged & ~truth).sum()), int((~flagged & truth).sum()))


def report(args, results: dict[str, list[dict]], info: dict) -> None:
    print(f"\n{'error':<12} {'ROC-AUC':>15} {'best F1':>15} {'F1 @ q0.999':>15}   (mean [min, max] over {args.seeds} seeds)")
    summary = {}
    for name, runs in results.items():
        cols = {k: [r[k] for r in runs] for k in ("roc_auc", "best_f1", "f1")}
        summary[name] = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))} for k, v in cols.items()}
        print(f"{name:<12} " + " ".join(
            f"{np.mean(v):>5.3f} [{np.min(v):.2f},{np.max(v):.2f}]" for v in cols.values()))  # fmt: skip
    for name in ("ce", "kl"):
        det = [r["detector_threshold"]["f1"] for r in results.get(name, []) if r["detector_threshold"]]
        if det:
            print(f"{name} is Autoencoder.score's error; F1 at its calibrated threshold (held-back lines): "
                  f"{np.mean(det):.3f} [{min(det):.2f},{max(det):.2f}]")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info | {"summary": summary, "runs": results}, f, indent=1,
                      default=lambda o: None if isinstance(o, float) and math.isnan(o) else float(o))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
