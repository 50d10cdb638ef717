"""The corrective action: `lograven learn --model DIR LOGFILE...` on 10k new lines.

The new lines are generator output from another seed with 2% of lines of
message types the default model has never seen (the generator's
`unseen_type` anomalies), which is what an operator feeds back: normal data
the model flagged. The default bundle is the starting model; the result goes
to a temp dir. Skipped with a message while the command does not exist.
"""
from __future__ import annotations

import json
import subprocess

from bench.common import PY, REPO, Context, Skip, bench_env, row, run_timed

TITLE = "Corrective action: `lograven learn` on 10k new lines"
TARGET_S = 30.0


def _new_lines(ctx: Context, n: int):
    path = ctx.work / "data" / f"learn-new-{n}.log"
    if not path.exists():
        from lograven.generator import LogGenerator, write_log

        path.parent.mkdir(parents=True, exist_ok=True)
        write_log(path, LogGenerator(seed=13).generate(n, anomaly_rate=0.02, kinds=("unseen_type",)))
    return path


def run(ctx: Context) -> dict:
    h = subprocess.run([PY, "-m", "lograven", "learn", "--help"], cwd=REPO, env=bench_env(), capture_output=True, text=True, timeout=120)
    if h.returncode != 0:
        raise Skip("`lograven learn` does not exist yet (daemon/lograven/learning.py is being written); re-run with --only learn when it does")
    n = ctx.lines(10_000, 2_000)
    data = _new_lines(ctx, n)
    out = ctx.work / "models" / f"learned-{n}"
    cmd = [PY, "-m", "lograven", "-q", "learn", "--model", str(ctx.default_model())]
    if "--out" in h.stdout:
        cmd += ["--out", str(out)]
    if "--json" in h.stdout:
        cmd += ["--json"]
    cmd.append(str(data))
    stdout = ctx.work / "learn.stdout"
    with open(stdout, "wb") as so:
        r = run_timed(cmd, env=bench_env(threads=None), stdout=so)
    if r["returncode"] != 0:
        raise RuntimeError(f"lograven learn exited {r['returncode']}:\n{r['stderr'][-3000:]}")
    text = stdout.read_text(errors="replace")
    try:
        summary = json.loads(text)
    except ValueError:
        summary = {"stdout": text[-2000:]}
    rows = [
        row(f"learn {n:,} new lines: wall time", r["wall_s"], "s", target=None if ctx.smoke else f"≤ {TARGET_S:.0f} s",
            ok=None if ctx.smoke else r["wall_s"] <= TARGET_S, note=f"CPU {r['cpu_s']:.0f} s (TensorFlow on all cores)", noisy=True),
        row(f"learn {n:,} new lines: peak RSS", r["peak_rss_mb"], "MB"),
    ]  # fmt: skip
    return {"title": TITLE, "rows": rows, "details": {"command": cmd, "summary": summary, "run": {k: v for k, v in r.items() if k != "rss_samples_mb"}}}
