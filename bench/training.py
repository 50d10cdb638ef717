"""Training time and memory: `lograven train` on 10k, 100k and (with --big) 1M generated lines.

The same recipe as models/build.sh (generator seed 1, default config), so the
100k run *is* the default model's training. TensorFlow uses its default
threading (both cores): training is a batch job, not the pinned serving path.
Reported per size: wall time, the three stages (message types, sequence GRU,
autoencoder), epochs run (early stopping), and the process's peak RSS. The
growth exponent is log(t2/t1) / log(n2/n1): 1 is linear. When ../shared/data
is present, hdfs_dev.log (56k HDFS lines, one stream per block) is trained too.
"""
from __future__ import annotations

import math

from bench.common import Context, row

TITLE = "Training time and memory (`lograven train`, TensorFlow on all cores)"
TARGET_100K_S = 120.0


def run(ctx: Context) -> dict:
    sizes = [2_000] if ctx.smoke else [10_000, 100_000] + ([1_000_000] if ctx.big else [])
    cfg = {"training": {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}}} if ctx.smoke else None
    rows, details, points = [], {}, []
    for n in sizes:
        info = ctx.train(f"train-{n}", [ctx.generated(n, seed=1)], config=cfg)
        s = info["summary"]
        sec = s["seconds"]
        details[str(n)] = info
        points.append((n, info["wall_s"]))
        is_target = n == 100_000
        rows.append(row(f"train {n:,} lines: wall time", info["wall_s"], "s",
                        target=f"≤ {TARGET_100K_S:.0f} s" if is_target else None,
                        ok=(info["wall_s"] <= TARGET_100K_S) if is_target else None,
                        note=f"types {sec['msgtypes']:.1f} s, sequence {sec['sequence']:.1f} s ({s['sequence_epochs']} epochs), "
                             f"autoencoder {sec['autoencoder']:.1f} s ({s['autoencoder_epochs']} epochs); {s['types']} types; "
                             f"CPU {info['cpu_s']:.0f} s" + (" (cached from an earlier run in --work)" if info.get("cached") else ""),
                        noisy=True))  # fmt: skip
        rows.append(row(f"train {n:,} lines: peak RSS", info["peak_rss_mb"], "MB"))
    for (n1, t1), (n2, t2) in zip(points, points[1:]):
        rows.append(row(f"growth {n1:,} → {n2:,} lines", math.log(t2 / t1) / math.log(n2 / n1), "exponent",
                        note=f"time ×{t2 / t1:.1f} for ×{n2 / n1:.0f} lines", noisy=True))  # fmt: skip
    if not ctx.big and not ctx.smoke:
        rows.append(row("train 1,000,000 lines", None, note="not run: add --big (about 15 minutes)"))
    hb = ctx.hdfs_bundle()
    if hb is not None:
        s = hb["summary"]
        details["hdfs"] = hb
        rows.append(row(f"train HDFS {s['lines']:,} lines, {s['streams']:,} block streams: wall time", hb["wall_s"], "s",
                        note=f"types {s['seconds']['msgtypes']:.1f} s, sequence {s['seconds']['sequence']:.1f} s, "
                             f"autoencoder {s['seconds']['autoencoder']:.1f} s; peak RSS {hb['peak_rss_mb']:.0f} MB", noisy=True))  # fmt: skip
    ctx.shared["train_100k"] = details.get("100000")
    return {"title": TITLE, "rows": rows, "details": details}
