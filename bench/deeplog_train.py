r"""DeepLog's own training sessions, as an HDFS log that `lograven evaluate` can train on.

Not a test: a measurement for docs/accuracy.md. `../shared/data/hdfs/deeplog_hdfs_train`
holds the 4,855 normal HDFS_v1 sessions DeepLog trained on, as sequences of log keys
(Loghub's HDFS_v1 template numbers E1..E29: 5 is "Receiving block", 22
"allocateBlock", ...). lograven learns from log lines, not keys, so this script
writes each session back as lines: for each key, a real line of that template
taken from Loghub's HDFS_2k.log (a different sample of HDFS_v1; lines of blocks that
also occur in the test log are not used), with the block id replaced by the
session's own. Template 16 ("Transmitted block") has no line in HDFS_2k.log; its
lines are written from its template with the addresses of other lines.

The output is one log: the 4,855 rendered sessions (each session's lines one second
apart, sessions one after the other, so they carry no silences) followed by the
test log, and one labels CSV (the rendered sessions Normal, then the test labels).
With `--session-split normal` and the printed --train-fraction, exactly the rendered
sessions train and every session of the test log is tested: DeepLog's training set
and lograven's test set.

The key -> template map was checked against the test log: with it, the key unigram
distribution of the test log's normal sessions and of DeepLog's training sessions
differ by a total-variation distance of 0.007.

Usage (then run the printed command):
  .venv/bin/python bench/deeplog_train.py --data ../shared/data --out /tmp/deeplog
"""
from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from pathlib import Path

BLOCK = re.compile(r"blk_-?\d+")
# Loghub HDFS_v1 template number -> a pattern that identifies its lines (the keys in deeplog_hdfs_train)
KEYS = {
    2: r"Verification succeeded for blk", 3: r"Served block blk_\S+ to", 4: r"Got exception while serving",
    5: r"Receiving block blk_\S+ src: \S+ dest:", 6: r"Received block blk_\S+ src: \S+ dest: \S+ of size",
    9: r"Received block blk_\S+ of size \S+ from", 11: r"PacketResponder \S+ for block \S+ terminating",
    16: r"Transmitted block", 18: r"Starting thread to transfer block", 21: r"Deleting block blk_\S+ file",
    22: r"NameSystem\.allocateBlock", 23: r"NameSystem\.delete: \S+ is added to invalidSet",
    25: r"ask \S+ to replicate", 26: r"NameSystem\.addStoredBlock: blockMap updated",
}
FORMAT = r"regex:^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\S+) (?P<program>\S+): (?P<message>.*)$"


def exemplars(path: Path, exclude: set[str]) -> dict[int, list[str]]:
    pats = [(k, re.compile(p)) for k, p in KEYS.items()]
    out: dict[int, list[str]] = {k: [] for k in KEYS}
    for line in path.read_text().splitlines():
        blocks = set(BLOCK.findall(line))
        if len(blocks) != 1 or blocks & exclude:
            continue
        keys = [k for k, p in pats if p.search(line)]
        if len(keys) == 1:
            out[keys[0]].append(line)
    # template 16 (":Transmitted block <blk> to /<ip>:<port>", DataNode$DataTransfer) from another line's addresses
    if not out[16]:
        for line in out[18] + out[5]:
            ips = re.findall(r"\d+\.\d+\.\d+\.\d+:\d+", line)
            if len(ips) >= 2:
                out[16].append(f"{line[:13]} 1 INFO dfs.DataNode$DataTransfer: {ips[0]}:Transmitted block "
                               f"blk_0 to /{ips[1]}")  # fmt: skip
                break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0, help="which exemplar line each key gets")
    a = ap.parse_args(argv)
    train = a.data / "hdfs" / "deeplog_hdfs_train"
    test_log, test_labels = a.data / "hdfs" / "hdfs_dev.log", a.data / "hdfs" / "hdfs_dev_labels.csv"
    for p in (train, test_log, test_labels, a.data / "loghub" / "HDFS" / "HDFS_2k.log"):
        if not p.is_file():
            print(f"{p}: missing; --data must be the shared data folder", file=sys.stderr)
            return 2
    test_blocks = set(BLOCK.findall(test_log.read_text()))
    ex = exemplars(a.data / "loghub" / "HDFS" / "HDFS_2k.log", test_blocks)
    sessions = [[int(k) for k in line.split()] for line in train.read_text().splitlines() if line.strip()]
    missing = sorted({k for s in sessions for k in s if not ex.get(k)})
    if missing:
        print(f"no exemplar line for keys {missing}", file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    log, labels = a.out / "deeplog_then_dev.log", a.out / "labels.csv"
    t = 0
    with log.open("w") as out, labels.open("w") as lab:
        lab.write("BlockId,Label\n")
        for i, keys in enumerate(sessions):
            blk = f"blk_{9_000_000_000_000_000_000 + i}"
            lab.write(f"{blk},Normal\n")
            for k in keys:
                line = BLOCK.sub(blk, rng.choice(ex[k]))
                day, s = divmod(t, 86400)
                out.write(f"0811{1 + day:02d} {s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}{line[13:]}\n")
                t += 1
        with test_log.open() as f:
            for line in f:
                out.write(line)
        with test_labels.open() as f:
            rows = list(csv.reader(f))[1:]
        normal_test = 0
        for row in rows:
            lab.write(",".join(row) + "\n")
            normal_test += row[1] == "Normal"
    n_normal = len(sessions) + normal_test
    frac = (len(sessions) + 0.5) / n_normal  # int(n_normal * frac) == len(sessions)
    assert int(n_normal * frac) == len(sessions)
    print(f"{len(sessions)} DeepLog sessions ({t} lines) + {len(rows)} test sessions -> {log}, {labels}")
    print("evaluate (add --stream-end, --config, --json as wanted):")
    print(f"  lograven evaluate --sessions {labels} --stream-key 'blk_-?\\d+' --format '{FORMAT}' "
          f"--session-split normal --train-fraction {frac:.6f} {log}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
