"""Grouping accuracy on all 16 Loghub 2k sets: lograven's message types beside Drain3, on the same lines.

`../shared/data` holds four of Loghub's 2k sets (Linux, OpenSSH, BGL, HDFS). The other twelve are in
logpai/loghub on GitHub. This script fetches them (`--fetch`, needs network), keeps the *first 48,000
characters* of each structured CSV (cut at the last complete row; the way they were first obtained for
docs/accuracy.md, from a reader that served 16,000 characters at a time) and reports GA on each: lograven
(`lograven evaluate --structured`, the default settings) and, when it is installed, Drain3 with the
generic IP/HEX/NUM masks of its example drain3.ini (`bench/drain.py`), similarity 0.4, depth 4, the
same settings for every set, as lograven has. Published Drain figures (Zhu et al., ICSE-SEIP 2019)
used per-set regexes and the full 2,000 lines, so they are not the comparison here.

    .venv/bin/pip install drain3                                   # optional: the Drain3 column
    .venv/bin/python bench/loghub_ga.py --fetch /tmp/loghub12       # download and cut the 12 prefixes
    .venv/bin/python bench/loghub_ga.py --dir /tmp/loghub12         # the table (markdown) on stdout

Each prefix's row count is checked against the one docs/accuracy.md was measured on.
"""
from __future__ import annotations

import argparse
import csv
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]  # lograven, and bench.drain's masks

COMMIT = "374038faa4ca122dd7ca0730372c0b78f76f8597"  # logpai/loghub, the version measured
PREFIX_CHARS = 48_000
#: rows of each prefix (the prefixes docs/accuracy.md reports on)
PREFIX_ROWS = {"Android": 221, "Apache": 373, "HPC": 344, "Hadoop": 193, "HealthApp": 354, "Mac": 196,
               "OpenStack": 134, "Proxifier": 274, "Spark": 312, "Thunderbird": 231, "Windows": 281,
               "Zookeeper": 279}  # fmt: skip
SHARED = ("Linux", "OpenSSH", "BGL", "HDFS")  # whole 2k files in ../shared/data/loghub


def prefix(raw: bytes) -> str:
    """The first PREFIX_CHARS characters (line ends counted as in the file, CRLF as two), cut after the
    last complete row, with LF line ends."""
    text = raw.decode("utf-8", errors="replace")[:PREFIX_CHARS].replace("\r\n", "\n")
    return text[: text.rfind("\n") + 1]


def fetch(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in PREFIX_ROWS.items():
        url = f"https://raw.githubusercontent.com/logpai/loghub/{COMMIT}/{name}/{name}_2k.log_structured.csv"
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - a fixed https URL
            text = prefix(r.read())
        path = out / f"{name}_2k.log_structured.csv"
        path.write_text(text, encoding="utf-8")
        got = len(list(csv.DictReader(text.splitlines())))
        note = "" if got == rows else f"  (expected {rows}: not the prefix docs/accuracy.md measured)"
        print(f"{path}: {got} rows{note}", file=sys.stderr)


def drain3_ga(contents: list[str], events: list[str]) -> float | None:
    try:
        from drain3 import TemplateMiner
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:
        return None
    import logging

    from bench.drain import DRAIN_MASKING
    from lograven.evaluate import grouping_accuracy

    logging.getLogger("drain3").setLevel(logging.WARNING)
    cfg = TemplateMinerConfig()
    cfg.masking_instructions = [MaskingInstruction(p, n) for p, n in DRAIN_MASKING]
    cfg.profiling_enabled = False
    miner = TemplateMiner(persistence_handler=None, config=cfg)
    # Drain3 never merges clusters: the cluster a line joins is its final group
    clusters = [miner.add_log_message(m)["cluster_id"] for m in contents]
    keep = [i for i, e in enumerate(events) if e]
    return grouping_accuracy([clusters[i] for i in keep], [events[i] for i in keep])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fetch", metavar="DIR", help="download the 12 prefixes into DIR (network)")
    ap.add_argument("--dir", metavar="DIR", help="the 12 prefixes fetched before")
    ap.add_argument("--data", metavar="DIR", default=str(ROOT.parent / "shared" / "data"),
                    help="the shared data with loghub/<Name>/<Name>_2k.log_structured.csv (default ../shared/data)")
    a = ap.parse_args(argv)
    if a.fetch:
        fetch(Path(a.fetch))
        if not a.dir:
            a.dir = a.fetch
    if not a.dir:
        ap.error("give --dir DIR (the prefixes) or --fetch DIR")
    from lograven.evaluate import evaluate_types, read_structured

    files = [(n, Path(a.dir) / f"{n}_2k.log_structured.csv", "first 48,000 characters") for n in sorted(PREFIX_ROWS)]
    files += [(n, Path(a.data) / "loghub" / n / f"{n}_2k.log_structured.csv", "whole file") for n in SHARED]
    print("| set | lines | templates | lograven GA | exact templates | Drain3 GA | part |")
    print("|---|---:|---:|---:|---:|---:|---|")
    gas, drains, twelve = [], [], 0
    for name, path, part in files:
        if not path.exists():
            print(f"| {name} | | | | | | missing: {path} |")
            continue
        ev = evaluate_types(path)
        contents, events, _ = read_structured(path)
        d = drain3_ga(contents, events)
        gas.append(ev.grouping_accuracy)
        twelve += name in PREFIX_ROWS
        if d is not None:
            drains.append(d)
        d_text = "n/a" if d is None else f"{d:.3f}"
        print(f"| {name} | {ev.lines} | {ev.templates} | {ev.grouping_accuracy:.3f} | {ev.correct_templates} of "
              f"{ev.templates} | {d_text} | {part} |")
    def mean(xs: list[float], n: int) -> str:
        return f"{sum(xs[:n]) / n:.3f}" if len(xs) >= n > 0 else "n/a"

    if twelve:
        print(f"| mean of the {twelve} prefixes | | | {mean(gas, twelve)} | | {mean(drains, twelve)} | |")
    if gas:
        print(f"| **mean of {len(gas)}** | | | **{mean(gas, len(gas))}** | | **{mean(drains, len(gas))}** | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
