"""A/B of Detector.detect throughput between two checkouts, on the same machine, back to back.

    git worktree add /tmp/old <commit>
    for r in 1 2; do for w in /tmp/old .; do taskset -c 1 .venv/bin/python bench/ab_detect.py $w; done; done

Prints the lines per CPU-second of three passes over 60,000 generated lines (batches of 1,024) with
this checkout's default model. For when the machine is too noisy for absolute figures
(docs/benchmarks.md): both checkouts see the same noise, so only their difference means something.
"""
from __future__ import annotations

import os
import sys
import time

LINES = 60_000
BATCH = 1024


def main(root: str) -> None:
    sys.path.insert(0, os.path.join(root, "daemon"))  # the checkout under test, not the installed package
    from lograven.bundle import load_bundle
    from lograven.detector import Detector
    from lograven.generator import LogGenerator
    from lograven.parsing import Parser

    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "default")
    bundle = load_bundle(model)
    parser = Parser("syslog")
    items = [("f", parser.parse(x)) for x in LogGenerator(seed=7).lines(LINES)]
    rates = []
    for _ in range(3):
        det = Detector(bundle)  # a fresh autoencoder cache and fresh stream states each pass
        t = time.process_time()
        for i in range(0, len(items), BATCH):
            det.detect(items[i : i + BATCH])
        rates.append(len(items) / (time.process_time() - t))
    print(root, "lines per CPU-s:", ", ".join(f"{r:.0f}" for r in rates))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "."))
