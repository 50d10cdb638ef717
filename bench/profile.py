"""Where the time of `lograven score` goes: cProfile on one pinned core, summarised.

cProfile around `lograven score --model <default> <100k generated lines>`
(its `cli.main`, output to /dev/null) in a pinned worker, after a warm-up
run so that imports and start-up are not in the profile; the top functions
by own time, own time per module, and the cumulative time of the stages. cProfile adds a roughly constant
cost per Python call, so it overstates many-small-calls code (parsing,
classification) against numpy kernels; read shares, not absolute times.
"""
from __future__ import annotations

import io
import pstats

from bench.common import Context, row, run_worker

TITLE = "Profile of `lograven score` (cProfile, one pinned core)"

# (stage, file suffix, function names): the stage's time is the largest cumulative time among those functions
# (alternatives because the hot path is being optimised and functions get renamed)
STAGES = [
    ("read + decode lines", "cli.py", ("iter_input_lines",)),
    ("parse header (Parser.parse)", "parsing.py", ("parse",)),
    ("stream key (StreamKey.key)", "parsing.py", ("key",)),
    ("Detector.detect: all detectors", "detector.py", ("detect",)),
    ("  message types", "msgtypes.py", ("classify", "_classify_in", "classify_tokens", "predict")),
    ("  autoencoder input text (masking)", "masking.py", ("mask_text",)),
    ("  autoencoder (score, cached per text)", "autoencoder.py", ("score",)),
    ("    BPE encode", "bpe.py", ("encode",)),
    ("    AE forward", "autoencoder.py", ("errors_from_ids", "logits")),
    ("  sequence (Detector._sequence)", "detector.py", ("_sequence",)),
    ("    GRU step", "sequence.py", ("step", "step_pair")),
    ("    next-type softmax", "sequence.py", ("probs",)),
    ("verdicts → JSON lines", "cli.py", ("verdict_json", "line")),
]


def _module(file: str) -> str:
    """A readable owner for a profiled function's file."""
    if file == "~":
        return "~"
    if "/lograven/" in file:
        return "lograven/" + file.rsplit("/", 1)[1]
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in file:
        rest = file.split("/lib/python3", 1)[1].split("/", 2)
        return "stdlib " + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
    return file.rsplit("/", 1)[-1]


def summarise(prof_path: str, top: int = 25) -> dict:
    st = pstats.Stats(prof_path)
    total = st.total_tt
    raw = st.stats  # type: ignore[attr-defined]
    entries = []
    for (file, line, func), (cc, nc, tt, ct, callers) in raw.items():
        entries.append({"function": func, "file": _short(file), "line": line, "calls": nc, "own_s": tt, "cum_s": ct})
    by_own = sorted(entries, key=lambda e: -e["own_s"])[:top]
    # the scoring itself: `lograven score`'s handler, without interpreter start-up and imports
    scoring = max((e["cum_s"] for e in entries if e["function"] == "cmd_score" and e["file"].endswith("cli.py")), default=total)
    stages = []
    for label, suffix, funcs in STAGES:
        hits = [e for e in entries if e["function"] in funcs and e["file"].endswith(suffix)]
        if hits:
            e = max(hits, key=lambda h: h["cum_s"])
            stages.append({"stage": label, "cum_s": e["cum_s"], "share": e["cum_s"] / scoring, "calls": e["calls"],
                           "where": f"{e['file']}:{e['line']} {e['function']}"})  # fmt: skip
        else:
            stages.append({"stage": label, "cum_s": None, "share": None, "calls": None, "where": f"no {'/'.join(funcs)} in {suffix}"})
    # own time by module; time inside C functions (numpy, re, dict methods) goes to the Python code calling them
    modules: dict[str, float] = {}
    for (file, line, func), (cc, nc, tt, ct, callers) in raw.items():
        if _module(file) != "~":
            modules[_module(file)] = modules.get(_module(file), 0.0) + tt
            continue
        spread = sum(v[2] for v in callers.values()) or 1.0
        for (cfile, _, _), v in callers.items():
            owner = _module(cfile) if _module(cfile) != "~" else "C code called from C"
            modules[owner] = modules.get(owner, 0.0) + tt * v[2] / spread
    by_module = sorted(({"module": k, "own_s": v, "share": v / scoring} for k, v in modules.items()), key=lambda d: -d["own_s"])
    buf = io.StringIO()
    pstats.Stats(prof_path, stream=buf).sort_stats("tottime").print_stats(top)
    return {"total_s": total, "scoring_s": scoring, "top_own": by_own, "stages": stages, "by_module": by_module[:15],
            "pstats_text": buf.getvalue()}  # fmt: skip


def _short(path: str) -> str:
    for marker in ("/lograven/", "/site-packages/", "/lib/python3"):
        if marker in path:
            return path[path.index(marker) + 1 :]
    return path


def profile_score(bundle: str, data: str, prof: str) -> dict:
    """cProfile around `lograven score`'s main() in this (pinned) worker, after a warm-up run on a few lines,
    so the profile holds the scoring and not interpreter start-up and imports."""
    import contextlib
    import cProfile
    import os
    import time

    from lograven import cli

    tiny = prof + ".warm.log"
    with open(data, "rb") as src, open(tiny, "wb") as dst:
        dst.write(b"".join(src.readline() for _ in range(50)))
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        cli.main(["score", "--model", bundle, tiny])
        pr = cProfile.Profile()
        t0 = time.perf_counter()
        pr.enable()
        rc = cli.main(["score", "--model", bundle, data])
        pr.disable()
        wall = time.perf_counter() - t0
    pr.dump_stats(prof)
    return {"returncode": rc, "wall_s": wall}


def run(ctx: Context) -> dict:
    n = ctx.lines(100_000, 5_000)
    data = ctx.generated(n, seed=11)
    prof = ctx.work / "score.prof"
    r = run_worker("profile", "profile_score", {"bundle": str(ctx.default_model()), "data": str(data), "prof": str(prof)})
    if r["returncode"] != 0:
        raise RuntimeError(f"profiled lograven score returned {r['returncode']}")
    s = summarise(str(prof))
    rows = [row("profiled `lograven score` (after a warm-up: no start-up or imports)", s["scoring_s"], "s",
                note=f"{n:,} lines, {s['scoring_s'] / n * 1e6:.0f} µs/line under cProfile (total profiled {s['total_s']:.2f} s)")]
    for st in s["stages"]:
        if st["share"] is None:
            rows.append(row(f"stage: {st['stage']}", None, note=st["where"]))
        else:
            rows.append(row(f"stage: {st['stage']}", st["share"] * 100, "% of scoring",
                            note=f"{st['cum_s']:.2f} s cumulative, {st['calls']:,} calls ({st['where']})"))  # fmt: skip
    table = ["Top functions by own time:", "", "| function | where | calls | own s | % of scoring | cumulative s |", "|---|---|---:|---:|---:|---:|"]
    for e in s["top_own"][:20]:
        table.append(f"| `{e['function']}` | {e['file']}:{e['line']} | {e['calls']:,} | {e['own_s']:.2f} | "
                     f"{e['own_s'] / s['scoring_s'] * 100:.1f} | {e['cum_s']:.2f} |")  # fmt: skip
    mods = ["Own time by module (time in C functions — numpy, re, dict methods — charged to the Python module calling them):", "",
            "| module | own s | % of scoring |", "|---|---:|---:|"]  # fmt: skip
    for m in s["by_module"]:
        mods.append(f"| {m['module']} | {m['own_s']:.2f} | {m['share'] * 100:.1f} |")
    ctx.shared["profile"] = s
    return {"title": TITLE, "rows": rows, "details": {"lines": n, "run": r, **s},
            "markdown_extra": ["\n".join(table), "\n".join(mods)]}  # fmt: skip
