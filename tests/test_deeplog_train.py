"""bench/deeplog_train.py: DeepLog's key sequences written back as HDFS lines, before the test log, so that
`evaluate --session-split normal` with the printed fraction trains on exactly those sessions.

Runs on a small made-up data folder (the real one is optional): no TensorFlow."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from lograven.evaluate import read_sessions, split_sessions

REPO = Path(__file__).resolve().parents[1]
HDFS_2K = """\
081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010
081109 203518 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /mnt/hadoop/mapred/system/job_200811092030_0001/job.jar. blk_-1608999687919862906
081109 203519 143 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_-1608999687919862906 terminating
081109 203519 145 INFO dfs.DataNode$PacketResponder: Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6
081109 203519 29 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.250.10.6:50010 is added to blk_-1608999687919862906 size 91178
081109 204132 26 INFO dfs.FSNamesystem: BLOCK* ask 10.250.14.224:50010 to replicate blk_-1608999687919862906 to datanode(s) 10.251.215.16:50010
081109 204133 19 INFO dfs.DataNode: 10.250.14.224:50010 Starting thread to transfer block blk_-1608999687919862906 to 10.251.215.16:50010
081109 203521 1 INFO dfs.DataNode$DataXceiver: Receiving block blk_7777 src: /10.250.1.1:1 dest: /10.250.1.1:50010
"""
TEST_LOG = """\
081110 100000 1 INFO dfs.DataNode$DataXceiver: Receiving block blk_7777 src: /10.250.1.1:1 dest: /10.250.1.1:50010
081110 100001 2 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/x/part-1. blk_7777
081110 100002 3 INFO dfs.DataNode$DataXceiver: Receiving block blk_8888 src: /10.250.1.2:1 dest: /10.250.1.2:50010
081110 100003 4 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/x/part-2. blk_8888
"""


def test_rendered_sessions_train_and_every_test_session_is_tested(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "hdfs").mkdir(parents=True)
    (data / "loghub" / "HDFS").mkdir(parents=True)
    (data / "hdfs" / "deeplog_hdfs_train").write_text("5 22 11 9 26\n22 5 11 9 26 25 18 16\n5 5 22 11 9 11 9 26 26\n")
    (data / "loghub" / "HDFS" / "HDFS_2k.log").write_text(HDFS_2K)
    (data / "hdfs" / "hdfs_dev.log").write_text(TEST_LOG)
    (data / "hdfs" / "hdfs_dev_labels.csv").write_text("BlockId,Label\nblk_7777,Normal\nblk_8888,Anomaly\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "deeplog_train.py"), "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    frac = float(re.search(r"--train-fraction (\S+)", r.stdout).group(1))
    fmt = re.search(r"--format '([^']+)'", r.stdout).group(1)
    lines = (out / "deeplog_then_dev.log").read_text().splitlines()
    # 5 + 8 + 9 rendered lines, then the test log unchanged
    assert len(lines) == 22 + 4 and lines[22:] == TEST_LOG.splitlines()
    rendered = lines[:22]
    assert "blk_7777" not in "\n".join(rendered)  # a block of the test log lends no line
    assert [re.search(r"blk_-?\d+", x).group(0) for x in rendered[:5]] == ["blk_9000000000000000000"] * 5
    assert "Receiving block" in rendered[0] and "allocateBlock" in rendered[1] and "replicate" in rendered[10]
    assert ":Transmitted block blk_9000000000000000001 to /10.251.215.16:50010" in rendered[12]  # template 16, made up
    times = [x[:13] for x in rendered]
    assert times == sorted(times)  # one second apart, before the test log
    sl = read_sessions(out / "deeplog_then_dev.log", out / "labels.csv", r"blk_-?\d+", fmt)
    assert all(rec.parsed for rec in sl.records)
    train, test, _ = split_sessions(sl.anomalous, frac, "normal")
    assert [sl.names[i] for i in np.flatnonzero(train)] == [f"blk_{9_000_000_000_000_000_000 + i}" for i in range(3)]
    assert [sl.names[i] for i in test] == ["blk_7777", "blk_8888"]


def test_missing_data_is_named(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "bench" / "deeplog_train.py"), "--data", str(tmp_path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "deeplog_hdfs_train: missing" in r.stderr
