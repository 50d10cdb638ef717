"""RSS growth of the serving caches on lines that each carry a unique long token.

    python bench/cache_memory.py [LINES] [--model models/default]

Each line is an nginx request with a unique ~800-character session token in its URL: every
line misses every cache (masking, BPE words, autoencoder texts). With caches bounded only by
entries, RSS grows by about 13 KB per line; bounded in bytes it levels off (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from lograven.bundle import load_bundle  # noqa: E402
from lograven.detector import Detector, DetectorSettings  # noqa: E402
from lograven.parsing import Parser  # noqa: E402


def rss_mb() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lines", type=int, nargs="?", default=60_000)
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "models" / "default"))
    args = ap.parse_args()
    det = Detector(load_bundle(args.model), DetectorSettings())
    parser = Parser("syslog")
    r0, t0 = rss_mb(), time.monotonic()
    for start in range(0, args.lines, 256):
        batch = []
        for _ in range(start, min(args.lines, start + 256)):
            token = base64.urlsafe_b64encode(os.urandom(600)).decode()
            text = f"Jan  1 00:00:00 host nginx[1]: GET /api/v1/items?session={token} HTTP/1.1 200"
            batch.append(("f", parser.parse(text)))
        det.detect(batch)
    print(f"{args.lines} lines in {time.monotonic() - t0:.1f} s; RSS grew by {rss_mb() - r0} MB")


if __name__ == "__main__":
    main()
