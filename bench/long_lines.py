"""Long lines: `Detector.detect` on lines near `runtime.max_line_bytes` (64 KiB), one pinned core.

Lines of random five-letter words (no message type matches them, so every
detector runs and every text is new to the autoencoder's cache), in batches of
256 as the daemon reads them, against ordinary generator lines. An attacker who
can write to a log controls how long its lines are: what one costs bounds how
long a batch can hold the daemon (its watchdog is fed between batches).
"""
from __future__ import annotations

from bench.common import Context, row, run_worker

TITLE = "Long lines (64 KiB of words): Detector.detect per line"


# ------------------------------------------------------------------ worker side
def detect_long(bundle: str, n: int, chars: int, seed: int = 1) -> dict:
    """Milliseconds per line of Detector.detect on `n` lines of `chars` characters of random words."""
    import random
    import string
    import time

    from lograven.bundle import load_bundle
    from lograven.detector import Detector
    from lograven.parsing import Parser

    rng = random.Random(seed)
    parser = Parser("syslog")

    def line() -> str:
        words = " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(5)) for _ in range(chars // 6 + 1))
        return ("Dec  6 10:00:00 web1 app[1]: " + words)[:chars]

    recs = [parser.parse(line()) for _ in range(n)]
    det = Detector(load_bundle(bundle))
    det.detect([("s", r) for r in recs[:8]])  # warm-up (imports, first calls)
    t0 = time.perf_counter()
    for i in range(8, n, 256):
        det.detect([("s", r) for r in recs[i : i + 256]])
    per_line = (time.perf_counter() - t0) / max(n - 8, 1)
    return {"ms_per_line": per_line * 1e3}


def pattern_long(n: int, chars: int) -> dict:
    """Milliseconds per line of the alert's pattern (masking.line_pattern, computed for each alert of an
    unknown line) on `n` lines whose message is one run of hex letters without a digit (`abab…`): the
    worst case of the fingerprint of a long line's rest."""
    import time

    from lograven.masking import Masker, line_pattern

    masker = Masker()
    lines = [("Dec  6 10:00:00 web1 app[1]: " + "ab" * chars)[:chars] for _ in range(n)]
    line_pattern(lines[0], masker)
    t0 = time.perf_counter()
    for text in lines:
        line_pattern(text, masker)
    return {"ms_per_line": (time.perf_counter() - t0) / n * 1e3}


# ------------------------------------------------------------------ driver side
def run(ctx: Context) -> dict:
    model = str(ctx.default_model())
    n = ctx.lines(520, 40)
    out = {}
    for chars in (65_000, 4_000):
        out[chars] = run_worker("long_lines", "detect_long", {"bundle": model, "n": n, "chars": chars})["ms_per_line"]
    hex_run = run_worker("long_lines", "pattern_long", {"n": ctx.lines(50, 5), "chars": 65_000})["ms_per_line"]
    per_batch = out[65_000] * 256 / 1e3
    rows = [
        row("64 KiB line of words, per line", out[65_000], "ms", noisy=True,
            note=f"{n - 8} lines in batches of 256, after 8 warm-up lines; default model"),
        row("  a batch of 256 such lines", per_batch, "s", noisy=True, note="the daemon's watchdog (WatchdogSec=30) is fed between batches"),
        row("4 KB line of words, per line", out[4_000], "ms", noisy=True),
        row("an unknown 64 KiB line's alert pattern, `abab…`", hex_run, "ms", noisy=True,
            note="masking.line_pattern, for each alert of an unknown line"),
    ]  # fmt: skip
    return {"title": TITLE, "rows": rows, "details": {"ms_per_line": out, "lines": n, "hex_run_pattern_ms": hex_run}}
