"""The compute limit: model FLOPs per line (from the bundle's weight shapes) against the machine's
measured float32 matmul throughput (numpy sgemm, one pinned core, one BLAS thread).

FLOPs per line:
- GRU: two staggered states per stream advance per line (sequence.py), each
  a (1, U) x (U, 3U) recurrent matmul (the input projection is folded into a
  table lookup), plus one (1, U) x (U, types) output layer for the prediction;
- autoencoder: Conv1D(3) x 2 over L positions, latent and decoder Dense, the
  (F, V) output layer; paid once per *distinct* masked text (scores are
  cached per text), so per line it is scaled by the share of lines whose
  text was new, as measured by the throughput benchmark.
"""
from __future__ import annotations

from pathlib import Path

from bench.common import Context, row, run_worker

TITLE = "Compute limit: FLOPs per line vs measured sgemm"


# ------------------------------------------------------------------ worker side
def flops(bundle: str) -> dict:
    from lograven.bundle import load_bundle

    b = load_bundle(bundle)
    A, S = b.autoencoder.weights_, b.sequence.weights_
    L = b.autoencoder.length_
    ae = {
        "enc1": 2 * L * A["enc1_k"].size, "enc2": 2 * L * A["enc2_k"].size, "lat": 2 * A["lat_k"].size,
        "dec": 2 * A["dec_k"].size, "out": 2 * A["out_k"].size,
    }  # fmt: skip
    U = S["gru_rk"].shape[0]
    gru = {"recurrent (2 states)": 2 * 2 * S["gru_rk"].size, "gates (2 states)": 2 * 12 * U, "output layer": 2 * S["out_k"].size}
    weights_bytes = {"gru_rk": S["gru_rk"].nbytes, "out_k": S["out_k"].nbytes, "ae_total": sum(v.nbytes for v in A.values())}
    return {"ae": ae, "ae_total": sum(ae.values()), "gru": gru, "gru_total": sum(gru.values()), "length": L, "units": U,
            "vocab": A["out_k"].shape[1], "types": S["out_k"].shape[1] - 1, "weights_bytes": weights_bytes}  # fmt: skip


def sgemm(seconds: float) -> dict:
    """GFLOP/s of float32 matmul at the shapes lograven uses, and at a large square (the peak)."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    shapes = {
        "1024x1024x1024": (1024, 1024, 1024),
        "AE conv1, batch 256: (16384x96)@(96x64)": (16384, 96, 64),
        "AE conv2, batch 256: (16384x192)@(192x32)": (16384, 192, 32),
        "AE output, batch 256: (256x64)@(64x512)": (256, 64, 512),
        "GRU-64 step, 1 stream: (2x64)@(64x192)": (2, 64, 192),
        "GRU-64 step, 256 streams: (512x64)@(64x192)": (512, 64, 192),
        "GRU-1024 step, 1 stream: (2x1024)@(1024x3072)": (2, 1024, 3072),
        "GRU-1024 step, 256 streams: (512x1024)@(1024x3072)": (512, 1024, 3072),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        for _ in range(3):
            np.matmul(a, b, out=c)
        reps, t0 = 0, time.perf_counter()
        while True:
            np.matmul(a, b, out=c)
            reps += 1
            if reps % 4 == 0 and time.perf_counter() - t0 >= seconds:
                break
        dt = (time.perf_counter() - t0) / reps
        out[name] = {"us_per_call": dt * 1e6, "gflops": 2 * m * k * n / dt / 1e9, "weight_gb_per_s": k * n * 4 / dt / 1e9}
    return out


def gru_step_floor(units: int, seconds: float) -> dict:
    """µs per step of the leanest numpy GRU loop for one stream (two states), inputs precomputed:
    the floor for a per-line Python loop over GRU steps, against which Detector._sequence compares."""
    import time

    import numpy as np

    U = units
    rng = np.random.default_rng(0)
    rk = rng.standard_normal((U, 3 * U), dtype=np.float32) * 0.1
    b1 = np.zeros(3 * U, dtype=np.float32)
    X = rng.standard_normal((4096, 2, 3 * U), dtype=np.float32)
    h = np.zeros((2, U), dtype=np.float32)
    steps, t0 = 0, time.perf_counter()
    while True:
        for t in range(len(X)):
            x = X[t]
            inner = h @ rk
            inner += b1
            zr = 0.5 * (np.tanh(0.5 * (x[:, : 2 * U] + inner[:, : 2 * U])) + 1.0)
            hh = np.tanh(x[:, 2 * U :] + zr[:, U:] * inner[:, 2 * U :])
            h = hh + zr[:, :U] * (h - hh)
        steps += len(X)
        if time.perf_counter() - t0 >= seconds:
            break
    dt = (time.perf_counter() - t0) / steps
    # one trivial numpy call, for scale
    a = np.zeros(8, dtype=np.float32)
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < seconds / 4:
        for _ in range(1000):
            np.add(a, a, out=a)
        n += 1000
    return {"us_per_step": dt * 1e6, "numpy_call_us": (time.perf_counter() - t1) / n * 1e6, "calls_per_step": 12}


# ------------------------------------------------------------------ driver side
def run(ctx: Context) -> dict:
    seconds = ctx.seconds(1.0, 0.1)
    mm = {k: v for k, v in run_worker("limits", "sgemm", {"seconds": seconds}).items() if not k.startswith("_")}
    peak = max(v["gflops"] for v in mm.values())
    rows = [row(f"sgemm {name}", v["gflops"], "GFLOP/s",
                note=f"{v['us_per_call']:.1f} µs/call" + (f"; weights read at {v['weight_gb_per_s']:.1f} GB/s" if "1 stream" in name else ""),
                noisy=True) for name, v in mm.items()]  # fmt: skip
    rows.append(row("peak sgemm used below (best of the shapes)", peak, "GFLOP/s", noisy=True))
    details = {"sgemm": mm}
    fl = run_worker("limits", "gru_step_floor", {"units": 64, "seconds": seconds * 2})
    details["gru_step_floor"] = fl
    rows.append(row("numpy floor: leanest GRU-64 step loop, one stream (2 states)", fl["us_per_step"], "µs/line",
                    note=f"~{fl['calls_per_step']} numpy calls per step; one trivial numpy call {fl['numpy_call_us']:.2f} µs", noisy=True))
    tp = ctx.shared.get("throughput_details", {})
    for mname, bundle in (("default", ctx.default_model()), ("seed size", Path(ctx.seed_size_bundle()["path"]))):
        f = run_worker("limits", "flops", {"bundle": str(bundle)})
        details[mname] = f
        t = tp.get(f"{mname}/all three detectors")
        new_share = (t["ae_texts_forwarded"] / t["lines"]) if t else None
        per_line = f["gru_total"] + (f["ae_total"] * new_share if new_share is not None else 0)
        rows.append(row(f"{mname}: GRU-{f['units']} FLOPs per line", f["gru_total"], "FLOP",
                        note=", ".join(f"{k} {v:,}" for k, v in f["gru"].items())))  # fmt: skip
        rows.append(row(f"{mname}: autoencoder FLOPs per new text", f["ae_total"], "FLOP",
                        note=f"L={f['length']}, vocab {f['vocab']}: " + ", ".join(f"{k} {v:,}" for k, v in f["ae"].items())))
        one = next((v for k, v in mm.items() if k.startswith(f"GRU-{f['units']} step, 1 stream")), None)
        if one is not None:
            rows.append(row(f"{mname}: one stream's sequential GRU-{f['units']} matmul alone", 1e6 / one["us_per_call"], "lines/s",
                            note=f"{one['us_per_call']:.1f} µs per step: each line waits for the previous one's state; "
                                 f"{f['weights_bytes']['gru_rk'] / 1e6:.2f} MB of recurrent weights read per step", noisy=True))  # fmt: skip
        if new_share is not None:
            rows.append(row(f"{mname}: share of lines with a new AE text (throughput run)", new_share * 100, "%"))
            rows.append(row(f"{mname}: model FLOPs per line, all detectors", per_line, "FLOP"))
            limit = peak * 1e9 / per_line
            rows.append(row(f"{mname}: compute limit at peak sgemm", limit, "lines/s",
                            note=f"measured {t['lines_per_s_cpu']:,.0f} lines per CPU-s = {t['lines_per_s_cpu'] / limit:.1%} of it", noisy=True))
        else:
            rows.append(row(f"{mname}: GRU-only compute limit at peak sgemm", peak * 1e9 / f["gru_total"], "lines/s",
                            note="run with `throughput` for the autoencoder's share", noisy=True))
    return {"title": TITLE, "rows": rows, "details": details}
