"""Serving runtime: the exported models evaluated with numpy alone.

Why numpy and not LiteRT or TensorFlow (measured, see docs/benchmarks.md):
the serving models are tiny (GRU-64, a ~100k-parameter Conv1D autoencoder),
so per-call overhead dominates, not FLOPs. numpy has no fixed batch sizes
(a converted LiteRT model has), adds no dependency, keeps the daemon at
tens of MB instead of TensorFlow's ~600 MB and 2.5 s import, and lets the
GRU's input projection be folded into one table lookup. Weights are stored
in `.npz` files read with `allow_pickle=False`: loading never executes code.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from lograven.errors import LogravenError


MAX_WEIGHT_BYTES = 256 * 2**20  # one array of a bundle; the default model's largest is about 1 MB
MAX_WEIGHTS_BYTES = 512 * 2**20  # all the arrays one file gives (up to 48 with an ensemble of 8 GRUs)


def load_weights(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read the `required` arrays of an .npz of float32/int arrays without pickle; name the file on any
    problem. The `optional` ones are read when present; others are not read (a review's 3 MB file held a 3 GiB
    array of zeros besides the model's: loaded, it took 4 GB), and no array may hold more than MAX_WEIGHT_BYTES."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in required if k not in z.files]
            if missing:
                raise LogravenError(f"{path}: missing weights {missing}; retrain or restore the bundle")
            wanted = [*required, *(k for k in optional if k in z.files)]
            total = 0
            for k in wanted:
                size = z.zip.getinfo(f"{k}.npy").file_size
                total += size
                if size > MAX_WEIGHT_BYTES:
                    raise LogravenError(f"{path}: weights {k!r} hold {size} bytes, more than any model has "
                                        f"({MAX_WEIGHT_BYTES}); retrain or restore the bundle")
            if total > MAX_WEIGHTS_BYTES:  # checked before reading any (a review: 12 arrays of 64 MiB took 1.5 GB)
                raise LogravenError(f"{path}: its weights hold {total} bytes, more than any model has "
                                    f"({MAX_WEIGHTS_BYTES}); retrain or restore the bundle")
            arrays = {k: z[k] for k in wanted}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise LogravenError(f"{path}: cannot read model weights ({e}); retrain or restore the bundle") from e
    for k, a in arrays.items():
        # NaN weights loaded and silently turned a detector off (every probability NaN, no alert)
        real = np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
        what = "not real numbers" if not real else None if np.isfinite(a).all() else "not finite (NaN or inf)"
        if what is not None:
            raise LogravenError(f"{path}: weights {k!r} are {what}; retrain or restore the bundle")
    return arrays


def check_shapes(path: Path, arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights whose shapes do not fit the model's parameters: loaded anyway, they failed at the
    first line scored (an IndexError in the daemon, after `check` and a reload had accepted them)."""
    for k, shape in expected.items():
        if tuple(arrays[k].shape) != tuple(shape):
            raise LogravenError(f"{path}: weights {k!r} have shape {tuple(arrays[k].shape)}, the model's parameters "
                                f"need {tuple(shape)}; retrain or restore the bundle")


def save_weights(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    path.write_bytes(buf.getvalue())


def conv1d_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv1D(padding="same", stride 1) as one matmul: x (B, L, C), kernel (k, C, F)."""
    k = kernel.shape[0]
    B, L, C = x.shape
    left = (k - 1) // 2  # the rest of the k-1 padding goes on the right
    xp = np.zeros((B, L + k - 1, C), dtype=x.dtype)
    xp[:, left : left + L] = x
    cols = np.concatenate([xp[:, i : i + L] for i in range(k)], axis=2)  # (B, L, k*C)
    out = cols.reshape(B * L, k * C) @ kernel.reshape(k * C, -1)
    out += bias
    return out.reshape(B, L, -1)
