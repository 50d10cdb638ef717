"""Tailer: unit tests for each rotation/truncation case, and a model-based test.

The model-based test (TailerModel) runs random sequences of writes, partial writes,
rotations, copytruncates, restarts and polls against the real Tailer and a simple
model of the files, like Vector's file-source model tests.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from lograven import tailer as tailer_module
from lograven.errors import LogravenError
from lograven.tailer import CHUNK_BYTES, RawLine, Tailer


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def texts(lines: list[RawLine]) -> list[bytes]:
    return [line.data for line in lines]


def make(patterns: list[Path | str], **kwargs: object) -> Tailer:
    kwargs.setdefault("use_watchdog", False)
    kwargs.setdefault("rotate_wait", 0.0)
    return Tailer([str(p) for p in patterns], **kwargs)  # type: ignore[arg-type]


def ack_all(tailer: Tailer, lines: list[RawLine]) -> None:
    for line in lines:
        tailer.acknowledge(line.path, line.ack_id, line.end)


@contextlib.contextmanager
def clocked(log: Path, **kwargs: object) -> Iterator[tuple[Tailer, list[float]]]:
    """A tailer of a new empty `log` whose clock is the returned list's number (advance it by hand)."""
    log.write_bytes(b"")
    clock = [100.0]
    with make([log], **kwargs) as tailer:
        tailer._clock = lambda: clock[0]
        yield tailer, clock


@contextlib.contextmanager
def two_logs(tmp_path: Path, first: str, **kwargs: object) -> Iterator[tuple[Tailer, list[float], Path, Path, Any, Any]]:
    """clocked() over a.log and b.log (`first` of them opened first), and a writer of each, kept open."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    other = b if first == "a" else a
    other.write_bytes(b"")
    with clocked(tmp_path / f"{first}.log", **kwargs) as (tailer, clock):
        tailer._paths.patterns = [str(a), str(b)]
        tailer.poll()
        with open(a, "ab", buffering=0) as wa, open(b, "ab", buffering=0) as wb:
            yield tailer, clock, a, b, wa, wb


def checkpoint_after(log: Path, data: bytes) -> dict:
    """The positions a checkpoint saves after `data`, written to a new file `log`, was read and processed."""
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, data)
        ack_all(tailer, tailer.poll())
        return json.loads(json.dumps(tailer.positions()))


def test_a_file_a_doublestar_matches_without_a_directory_keeps_its_place(tmp_path: Path) -> None:
    """glob's `logs/**/*.log` gives `logs/top.log` (`**` may stand for no directory), and the tailer now
    reads its patterns so everywhere (a review: fnmatch's `**/` needs a `/`). Lines handed out but not
    acknowledged when top.log was rotated are read again after a restart (they had been dropped as "no
    longer under the configured paths"), and a rotation while stopped is found (its rest had been lost)."""
    (tmp_path / "sub").mkdir()
    top, pattern = tmp_path / "top.log", str(tmp_path / "**" / "*.log")
    top.write_bytes(b"")
    with make([pattern]) as tailer:
        append(top, b"a1\na2\n")
        assert texts(tailer.poll()) == [b"a1", b"a2"]  # handed out, never acknowledged
        os.rename(top, f"{top}.1")
        top.write_bytes(b"")
        tailer.poll()
        saved = json.loads(json.dumps(tailer.positions()))
    with make([pattern], positions=saved) as tailer:
        got = tailer.poll()
        assert texts(got) == [b"a1", b"a2"] and {x.path for x in got} == {str(top)}
        ack_all(tailer, got)
        append(top, b"b1\n")
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    append(top, b"b2 written while stopped\n")
    os.rename(top, f"{top}.2")
    top.write_bytes(b"b3 in the new file\n")
    with make([pattern], positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"b2 written while stopped", b"b3 in the new file"]


def test_a_named_file_replaced_by_a_directory_or_a_fifo_is_said_once_each_time(tmp_path: Path,
                                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A followed path that becomes a directory or a FIFO had been said by lograven_file_readable 0 alone (a
    robustness review). It is now said once while it lasts, and the file is read again once it is back. At
    the start, `check` and the daemon's source warnings say it, and the tailer does not repeat them."""
    log = tmp_path / "app.log"
    log.mkdir()
    caplog.set_level("WARNING", logger="lograven.tailer")
    with make([log]) as tailer:
        tailer.poll()
        assert "not a file" not in caplog.text  # the start's own warning says it
        log.rmdir()
        log.write_bytes(b"")
        tailer.poll()
        append(log, b"one\n")
        assert texts(tailer.poll()) == [b"one"]
        log.unlink()
        log.mkdir()
        for _ in range(3):
            tailer.poll()
        assert caplog.text.count(f"{log} is a directory now, not a file") == 1
        log.rmdir()
        os.mkfifo(log)
        tailer.poll()
        assert caplog.text.count(f"{log} is a FIFO (named pipe) now, not a file") == 1
        log.unlink()
        log.write_bytes(b"two\n")
        assert texts(tailer.poll()) == [b"two"]


# ----------------------------------------------------------------- lines and offsets


def test_partial_line_is_held_back_until_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"one\ntw")
    with make([log], start_position="beginning") as tailer:
        first = tailer.poll()
        assert texts(first) == [b"one"]
        assert (first[0].offset, first[0].end, first[0].truncated) == (0, 4, False)
        assert tailer.poll() == []
        append(log, b"o")
        assert tailer.poll() == []
        append(log, b"\nthree\n")
        second = tailer.poll()
        assert texts(second) == [b"two", b"three"]
        assert [(line.offset, line.end) for line in second] == [(4, 8), (8, 14)]
        assert tailer.stats()[str(log)].offset == 14


def test_an_idle_unterminated_line_is_handed_out_and_does_not_swallow_the_next_writers_line(tmp_path: Path) -> None:
    """A line left without its newline (a writer that died mid-line, or one with write access leaving it open
    on purpose) was joined to the next writer's line, hiding that line inside a garbled one. After
    `unterminated_after` seconds without a new byte it is handed out as it is."""
    log = tmp_path / "messages"
    log.write_bytes(b"")
    clock = [100.0]
    with make([log], unterminated_after=5.0) as tailer:
        tailer._clock = lambda: clock[0]
        append(log, b"one\nlure")
        assert texts(tailer.poll()) == [b"one"]
        clock[0] += 4.9
        assert tailer.poll() == []  # not idle long enough
        append(log, b"-more")  # it grows: the wait starts again
        assert tailer.poll() == []
        clock[0] += 4.9
        assert tailer.poll() == []
        clock[0] += 0.1
        (held,) = tailer.poll()
        assert (held.data, held.offset, held.end, held.truncated) == (b"lure-more", 4, 13, False)
        assert tailer.poll() == []  # once
        append(log, b"Jun  9 07:00:00 web01 sshd[1]: Accepted password for root\n")
        (real,) = tailer.poll()
        assert real.data.startswith(b"Jun  9") and real.offset == 13  # a line of its own
        stats = tailer.stats()[str(log)]
        assert (stats.lines, stats.unterminated_lines, stats.offset) == (3, 1, log.stat().st_size)
        ack_all(tailer, [held, real])
        assert tailer.positions()[str(log)]["offset"] == log.stat().st_size


def test_an_unterminated_line_is_not_handed_out_without_the_option_or_past_max_lines(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_bytes(b"")
    clock = [100.0]
    with make([log]) as waits, make([log], unterminated_after=1.0) as flushes:
        waits._clock = flushes._clock = lambda: clock[0]
        append(log, b"a\nb\npart")
        assert texts(waits.poll()) == [b"a", b"b"]
        assert texts(flushes.poll(max_lines=1)) == [b"a"]
        clock[0] += 1000
        assert waits.poll() == []  # 0: waits for the newline however long it takes
        assert texts(flushes.poll(max_lines=1)) == [b"b"]  # the budget goes to complete lines first
        assert texts(flushes.poll(max_lines=0)) == []
        assert flushes.poll(max_lines=1) == []  # "part" is read only now: idle from now on
        clock[0] += 1
        assert texts(flushes.poll(max_lines=1)) == [b"part"]
        append(log, b"ial\n")
        assert texts(waits.poll()) == [b"partial"]
        assert texts(flushes.poll()) == [b"ial"]  # what came after the cut is a line of its own


def test_a_rotated_files_short_unterminated_last_line_is_not_dropped(tmp_path: Path) -> None:
    """Under 10 bytes a file cannot be told from a compressed one yet, so it was not read; let go, its only
    (unterminated) line was dropped."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"panic")
        assert tailer.poll() == []
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"next\n")
        assert texts(tailer.poll()) == [b"panic", b"next"]
        assert tailer._draining == []


def test_an_unterminated_line_past_max_line_bytes_is_cut_and_skipped_lines_stay_skipped(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_bytes(b"")
    clock = [100.0]
    with make([log], unterminated_after=1.0, max_line_bytes=300,
              skip_predicate=lambda data: data.startswith(b"own")) as tailer:
        tailer._clock = lambda: clock[0]
        append(log, b"x" * 1000)
        assert tailer.poll() == []
        clock[0] += 1
        (cut,) = tailer.poll()
        assert (len(cut.data), cut.truncated, cut.end) == (300, True, 1000)
        append(log, b"own alert, unterminated")
        assert tailer.poll() == []
        clock[0] += 1
        assert tailer.poll() == []
        stats = tailer.stats()[str(log)]
        assert (stats.lines, stats.skipped_lines, stats.unterminated_lines, stats.truncated_lines) == (1, 1, 1, 1)
        assert stats.offset == log.stat().st_size


def test_long_line_is_truncated_streamed_and_the_next_lines_are_intact(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    long_length = 3 * CHUNK_BYTES + 123
    with make([log], max_line_bytes=100) as tailer:
        append(log, b"x" * long_length)  # no newline yet: spans several reads
        assert tailer.poll() == []
        (watcher,) = tailer._live
        assert len(watcher.pending) <= 100  # memory stays bounded while the line is open
        append(log, b"y" * 50 + b"\nexactly-100:" + b"z" * 88 + b"\nshort\n")
        lines = tailer.poll()
        assert [(line.data, line.truncated) for line in lines] == [
            (b"x" * 100, True),
            (b"exactly-100:" + b"z" * 88, False),
            (b"short", False),
        ]
        assert lines[0].end == long_length + 51
        assert lines[1].offset == lines[0].end
        stats = tailer.stats()[str(log)]
        assert stats.truncated_lines == 1 and stats.lines == 3
        assert stats.bytes == log.stat().st_size


def test_lines_longer_than_a_chunk_in_one_write(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], max_line_bytes=CHUNK_BYTES + 10) as tailer:
        # > 2 chunks, binary content (NUL bytes within the line; at a line's start they are skipped)
        line = (bytes(range(1, 256)) + b"\0").replace(b"\n", b"") * 600
        append(log, line + b"\n" + line[: CHUNK_BYTES + 10] + b"\n")
        lines = tailer.poll()
        assert [(x.data, x.truncated) for x in lines] == [
            (line[: CHUNK_BYTES + 10], True),
            (line[: CHUNK_BYTES + 10], False),
        ]


def test_max_lines_bounds_a_poll_and_every_file_gets_its_turn(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"".join(b"a%d\n" % i for i in range(10)))
    b.write_bytes(b"".join(b"b%d\n" % i for i in range(10)))
    with make([tmp_path / "*.log"], start_position="beginning") as tailer:
        batches = [tailer.poll(max_lines=3) for _ in range(8)]
    assert all(len(batch) <= 3 for batch in batches)
    assert {line.path for line in batches[0] + batches[1]} == {str(a), str(b)}
    got = [line.data for batch in batches for line in batch]
    assert sorted(got) == sorted([b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)])
    assert [x for x in got if x.startswith(b"a")] == [b"a%d" % i for i in range(10)]


# ----------------------------------------------------------------- start positions


def test_start_position_end_skips_existing_content(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"old1\nold2\npart")
    with make([log], start_position="end") as tailer:
        assert tailer.poll() == []
        append(log, b"ial\nnew\n")
        # A line being written at start is delivered whole, never as a fragment.
        assert texts(tailer.poll()) == [b"partial", b"new"]


def test_start_position_end_inside_a_huge_unfinished_line_drops_its_rest(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"old\n" + b"y" * (CHUNK_BYTES + 10))
    with make([log], start_position="end") as tailer:
        append(log, b"rest of it\nnext\n")
        assert texts(tailer.poll()) == [b"next"]  # never a fragment starting mid-line
        assert tailer.stats()[str(log)].skipped_lines == 0


def test_start_position_beginning_reads_existing_content(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"old1\nold2\n")
    with make([log], start_position="beginning") as tailer:
        assert texts(tailer.poll()) == [b"old1", b"old2"]


def test_file_created_after_start_is_read_from_the_beginning(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_bytes(b"skipped\n")
    with make([tmp_path / "*.log"], start_position="end") as tailer:
        assert tailer.poll() == []
        (tmp_path / "new.log").write_bytes(b"first\nsecond\n")
        lines = tailer.poll()
        assert texts(lines) == [b"first", b"second"]
        assert {line.path for line in lines} == {str(tmp_path / "new.log")}


def test_compressed_files_a_pattern_matches_are_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`messages*` also matches the rotated, compressed generations: read as text, each new .gz made a
    thousand garbage lines (and alerts). A compressed file is let go, said once, and not opened again
    while unchanged; one created empty and written later (logrotate's compress) is caught at its first
    bytes; a text file that merely starts like bzip2's "BZh" is read."""
    import bz2
    import gzip

    log = tmp_path / "messages"
    log.write_bytes(b"")
    (tmp_path / "messages.4.gz").write_bytes(gzip.compress(b"oldest\n" * 50))  # there at start: read from its end
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([tmp_path / "messages*"], start_position="end") as tailer:
        assert tailer.poll() == []
        assert str(tmp_path / "messages.4.gz") not in json.dumps(tailer.positions())  # not followed, no descriptor
        append(log, b"one\n")
        (tmp_path / "messages.2.gz").write_bytes(gzip.compress(b"old line\n" * 500))
        gz = tmp_path / "messages.1.gz"
        gz.write_bytes(b"")  # created empty, compressed into later
        assert texts(tailer.poll()) == [b"one"]
        gz.write_bytes(gzip.compress(b"older line\n" * 500))
        (tmp_path / "messages.3.bz2").write_bytes(bz2.compress(b"x\n" * 100)[:6])  # bzip2 needs 10 bytes to tell
        assert tailer.poll() == []
        append(tmp_path / "messages.3.bz2", bz2.compress(b"x\n" * 100)[6:])
        (tmp_path / "messages.txt").write_bytes(b"BZh9 is how this text starts\n")
        append(log, b"two\n")
        assert sorted(texts(tailer.poll())) == [b"BZh9 is how this text starts", b"two"]
        for _ in range(3):
            assert tailer.poll() == []
        said = [r.getMessage() for r in caplog.records if "compressed file" in r.getMessage()]
        assert len(said) == 4 and {m.split(" is a ")[0] for m in said} == {
            str(tmp_path / n) for n in ("messages.1.gz", "messages.2.gz", "messages.3.bz2", "messages.4.gz")}
        assert "gzip-compressed" in said[0] and any("bzip2-compressed" in m for m in said)
        opened = [r for r in caplog.records if r.getMessage().startswith("new file")]
        # followed once each: messages.1.gz (empty at first), messages.3.bz2 (too short to tell), messages.txt;
        # messages.2.gz was compressed when opened and never followed
        assert len(opened) == 3, [r.getMessage() for r in opened]
        assert str(tmp_path / "messages.2.gz") not in json.dumps(tailer.positions())
        assert not any(p.endswith((".gz", ".bz2")) for p in tailer.stats())  # no series for them on /metrics
        # a text file later at the path of one compressed at start is read whole (not from its end)
        (tmp_path / "messages.4.gz").unlink()
        (tmp_path / "messages.4.gz").write_bytes(b"fresh line\n")
        assert texts(tailer.poll()) == [b"fresh line"]
        assert all(st.readable for st in tailer.stats().values())
    # a watcher is closed once (a draining one let go in the poll that finds it compressed was closed twice,
    # and the number could be another file's by then)
    from lograven.tailer import FileWatcher

    fd = os.open(log, os.O_RDONLY)
    w = FileWatcher(str(log), fd, os.fstat(fd), ("", 0), 0, 1024)
    w.close()
    other = os.open(log, os.O_RDONLY)  # likely the same number again
    try:
        w.close()
        os.fstat(other)  # still open
    finally:
        os.close(other)


def test_directories_and_missing_paths_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "dir.log").mkdir()
    (tmp_path / "dir.log" / "inner").write_bytes(b"not me\n")
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    (tmp_path / "real.log").write_bytes(b"me\n")
    with make([tmp_path / "*.log", tmp_path / "absent.log"], start_position="beginning") as tailer:
        assert texts(tailer.poll()) == [b"me"]
        assert set(tailer.stats()) == {str(tmp_path / "real.log")}


def test_invalid_arguments_raise_user_errors(tmp_path: Path) -> None:
    with pytest.raises(LogravenError, match="start_position"):
        make([tmp_path / "a.log"], start_position="middle")
    with pytest.raises(LogravenError, match="paths"):
        make([])
    with pytest.raises(LogravenError, match="max_line_bytes"):
        make([tmp_path / "a.log"], max_line_bytes=0)


# ----------------------------------------------------------------- rotation and truncation


def test_rename_rotation_drains_the_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        writer = open(log, "ab", buffering=0)  # a logger keeping its descriptor across the rename
        writer.write(b"1\n")
        assert texts(tailer.poll()) == [b"1"]
        writer.write(b"2\n")
        os.rename(log, tmp_path / "app.log.1")
        writer.write(b"3\n")  # after the rename, before the tailer notices
        writer.write(b"4-partial")  # never completed: the rotated file's last line, handed out when let go
        writer.close()
        log.write_bytes(b"5\n")
        lines = tailer.poll()
        assert texts(lines) == [b"2", b"3", b"4-partial", b"5"]
        assert {line.path for line in lines} == {str(log)}
        assert lines[0].file_id != lines[3].file_id
        # the rotated file's lines say where they are now, so that file:offset can be followed
        assert [line.read_from for line in lines] == [str(tmp_path / "app.log.1")] * 3 + [None]
        assert (tmp_path / "app.log.1").read_bytes()[lines[1].offset : lines[1].end] == b"3\n"
        assert (lines[2].offset, lines[2].end) == (6, 15)  # to the end of the file: no newline
        stats = tailer.stats()[str(log)]
        assert stats.rotations == 1 and stats.lines == 5 and stats.unterminated_lines == 1
        assert tailer._draining == []  # rotate_wait=0: closed once drained
        # but checkpointed until its lines are acknowledged, so that a restart reads them again
        (rotated,) = tailer.positions()[str(log)]["rotated"]
        assert (rotated["file_id"], rotated["offset"]) == (lines[0].file_id, 0)
        assert rotated["read_from"] == str(tmp_path / "app.log.1")
        ack_all(tailer, lines)
        assert tailer.positions() == {
            str(log): {"file_id": lines[3].file_id, "offset": 2, "fingerprint_len": 2}
        }


def test_rotated_file_stays_open_for_rotate_wait(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    clock = [100.0]
    with make([log], rotate_wait=5.0) as tailer:
        tailer._clock = lambda: clock[0]
        writer = open(log, "ab", buffering=0)
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"new\n")
        writer.write(b"a\n")
        assert texts(tailer.poll()) == [b"a", b"new"]
        clock[0] += 1
        writer.write(b"b\n")  # the logger has not reopened its file yet
        assert texts(tailer.poll()) == [b"b"]
        clock[0] += 5
        writer.write(b"c\n")
        assert texts(tailer.poll()) == [b"c"]  # drained once more, then closed
        writer.write(b"d\n")
        assert tailer.poll() == []
        writer.close()


def test_a_rotated_files_unfinished_last_line_comes_before_the_new_files_lines(tmp_path: Path) -> None:
    """The rest of a rotated file is read before the new file, but its unterminated last line came only
    when the file was let go, after the new file's lines. While it may still be finished (rotate_wait),
    the new file's lines wait for it; other files' lines do not."""
    for finished in (True, False):
        log, other = tmp_path / f"app{finished}.log", tmp_path / f"other{finished}.log"
        log.write_bytes(b"")
        other.write_bytes(b"")
        clock = [100.0]
        with make([log, other], rotate_wait=5.0) as tailer:
            tailer._clock = lambda: clock[0]
            writer = open(log, "ab", buffering=0)
            writer.write(b"a\npart")
            assert texts(tailer.poll()) == [b"a"]
            os.rename(log, f"{log}.1")
            log.write_bytes(b"new\n")
            append(other, b"other\n")
            assert texts(tailer.poll()) == [b"other"]  # the old file's last line may still be finished
            clock[0] += 2
            if finished:
                writer.write(b"ial\n")
                assert texts(tailer.poll()) == [b"partial", b"new"]
            else:
                assert tailer.poll() == []
                clock[0] += 3
                assert texts(tailer.poll()) == [b"part", b"new"]  # let go: its last line as it is
            writer.close()


def test_a_rotated_file_resumed_at_a_restart_keeps_its_writers_unfinished_line_whole(tmp_path: Path) -> None:
    """Its writer may not have reopened its log yet (a restart or a reload within rotate_wait): the rest of its
    line comes later, and must not be cut off as an unterminated line of its own (a review found that)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    clock = [100.0]
    writer = open(log, "ab", buffering=0)
    with make([log], rotate_wait=5.0) as tailer:
        tailer._clock = lambda: clock[0]
        writer.write(b"a\n")
        ack_all(tailer, tailer.poll())
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"")
        writer.write(b"b\npar")
        assert texts(tailer.poll()) == [b"b"]  # not acknowledged: the old file is in the checkpoint
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved[str(log)]["rotated"]
    with make([log], rotate_wait=5.0, positions=saved) as tailer:
        tailer._clock = lambda: clock[0]
        assert texts(tailer.poll()) == [b"b"]
        writer.write(b"tial\n")
        assert texts(tailer.poll()) == [b"partial"]
    writer.close()


def test_a_rotated_files_last_line_comes_first_also_when_short_or_between_rescans(tmp_path: Path) -> None:
    """From a review: a rotated file of under 10 bytes (not read until let go) did not hold back its path's
    new file; and between rotate_wait and the next rescan (which lets the file go) the new file's lines
    went first. The path waits until the file is let go (rotate_wait and one rescan interval at most)."""
    log = tmp_path / "app.log"
    with clocked(log, rotate_wait=5.0, rescan_interval=1.0) as (tailer, clock):
        append(log, b"panic")
        assert tailer.poll() == []
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"new 1\n")
        clock[0] += 1
        assert tailer.poll() == []  # the rotation is seen; the short old file holds its path back
        clock[0] += 4.5
        append(log, b"new 2\n")
        assert tailer.poll() == []  # rescanned at 101: rotate_wait is over at 106
        clock[0] += 0.6
        assert tailer.poll() == []  # rotate_wait is over, but the file is let go at the next rescan: wait
        clock[0] += 1
        assert texts(tailer.poll()) == [b"panic", b"new 1", b"new 2"]
        assert tailer._draining == []


def test_a_let_go_put_off_by_the_poll_budget_keeps_the_paths_order(tmp_path: Path) -> None:
    """From a review: the pass that lets a rotated file go found the budget spent on another rotated file's
    late lines; the next pass was a rescan interval later, past the path's wait, and the new file's line
    came before the old file's unfinished last line."""
    with two_logs(tmp_path, "a", rotate_wait=5.0, rescan_interval=1.0) as (tailer, clock, a, b, wa, wb):
        wb.write(b"b old\nb part")
        got = tailer.poll()
        os.rename(a, f"{a}.1")
        a.write_bytes(b"")
        os.rename(b, f"{b}.1")
        b.write_bytes(b"b new 1\n")
        clock[0] = 100.5
        tailer._structure.set()
        for now in (100.5, 101.6, 102.7, 103.8, 104.9):
            clock[0] = now
            got += tailer.poll(max_lines=3)
        wa.write(b"a late 1\na late 2\na late 3\na late 4\n")
        for now in (105.95, 106.0, 106.6, 106.96, 107.0):
            clock[0] = now
            got += tailer.poll(max_lines=3)
    assert [x.data for x in got if x.data.startswith(b"b ")] == [b"b old", b"b part", b"b new 1"]
    assert len(got) == 7


def test_idle_unterminated_line_shorter_than_a_compressed_files_magic_is_handed_out(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    with clocked(log, unterminated_after=5.0) as (tailer, clock):
        append(log, b"x: ok ")  # 6 bytes: too few to tell from a compressed file's head
        assert tailer.poll() == []
        clock[0] += 5
        assert texts(tailer.poll()) == [b"x: ok "]
        append(log, b"Jun  9 07:00:00 web01 sshd[1]: Accepted password for root\n")
        assert texts(tailer.poll()) == [b"Jun  9 07:00:00 web01 sshd[1]: Accepted password for root"]


def test_a_rotated_file_kept_open_while_the_patterns_cannot_be_listed_keeps_its_line_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Renamed within the patterns while they cannot be listed (EMFILE), a file is kept open: it may come back.
    Its unfinished line was cut once rotate_wait was over (a review); it is cut only when the file is let go."""
    log = tmp_path / "app.log"
    with clocked(tmp_path / "app.log", rotate_wait=5.0) as (tailer, clock):
        tailer._paths.patterns = [f"{log}*"]
        writer = open(log, "ab", buffering=0)
        writer.write(b"one\npart")
        got = tailer.poll()

        def emfile(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(os, "scandir", emfile)
        os.rename(log, tmp_path / "app.log.1")
        for _ in range(5):
            got += tailer.poll()
            clock[0] += 2
        writer.write(b"ial\n")
        got += tailer.poll()
        monkeypatch.undo()
        for _ in range(2):
            clock[0] += 1
            got += tailer.poll()
        writer.close()
    assert texts(got) == [b"one", b"partial"]


def test_an_idle_short_head_cut_once_does_not_cut_the_files_later_lines(tmp_path: Path) -> None:
    """poll(max_lines=1): one rotated file's last line fills the budget, and the next rotated file, its short
    head idle, is reached with no room left. The mark that its head may be cut stayed set, and that file's
    later lines were cut into the pieces their writer wrote (a review)."""
    with two_logs(tmp_path, "b", rotate_wait=10.0, unterminated_after=2.0) as (tailer, clock, a, b, wa, wb):
        wa.write(b"a1\napart")
        got = tailer.poll()
        os.rename(a, f"{a}.1")
        a.write_bytes(b"")
        got += tailer.poll(max_lines=1)
        clock[0] = 101
        os.rename(b, f"{b}.1")
        b.write_bytes(b"")
        wb.write(b"y: ok")
        got += tailer.poll(max_lines=1)
        clock[0] = 110
        got += tailer.poll(max_lines=1)  # a's last line fills the budget
        wb.write(b" done\n")
        got += tailer.poll(max_lines=1)
        clock[0] += 0.1
        wb.write(b"Jun  9 07:00:00 web01 sshd[1]: Accepted ")
        got += tailer.poll(max_lines=5)
        clock[0] += 0.1
        wb.write(b"password for root\n")
        got += tailer.poll(max_lines=5)
    assert texts(got) == [b"a1", b"apart", b"y: ok done", b"Jun  9 07:00:00 web01 sshd[1]: Accepted password for root"]


def test_an_idle_head_that_may_still_become_a_compressed_files_is_not_cut(tmp_path: Path) -> None:
    import gzip

    from lograven.osutil import may_become_compressed

    assert may_become_compressed(b"\x1f") and may_become_compressed(b"BZh9") and not may_become_compressed(b"x: ok")
    assert not may_become_compressed(b"BZhello")  # a bzip2 head has a block size digit there
    log = tmp_path / "app.log"
    with clocked(log, unterminated_after=5.0) as (tailer, clock):
        tailer._paths.patterns = [f"{log}*"]
        gz = tmp_path / "app.log.1.gz"
        data = gzip.compress(b"".join(b"line %d\n" % i for i in range(20)))
        gz.write_bytes(data[:1])  # a compressor that stalls after one byte
        got = tailer.poll()
        clock[0] += 5
        got += tailer.poll()
        append(gz, data[1:])
        clock[0] += 1
        got += tailer.poll()
    assert got == []


def test_a_copy_read_from_inside_a_line_begun_before_the_start_drops_that_lines_rest(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"old\n" + b"L" * 70000)  # start_position end inside a long unfinished line
    with make([log]) as tailer:
        append(log, b"-more-of-that-line")
        assert tailer.poll() == []
        shutil.copyfile(log, tmp_path / "app.log.1")  # copytruncate
        os.truncate(log, 0)
        append(log, b"fresh\n")
        assert texts(tailer.poll() + tailer.poll()) == [b"fresh"]


def test_rotation_inside_the_glob_follows_the_renamed_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([f"{log}*"]) as tailer:
        writer = open(log, "ab", buffering=0)
        writer.write(b"1\n")
        first = tailer.poll()
        os.rename(log, tmp_path / "app.log.1")
        writer.write(b"2\n")
        log.write_bytes(b"3\n")
        lines = tailer.poll()
        assert sorted(texts(lines)) == [b"2", b"3"]
        by_data = {line.data: line for line in lines}
        assert by_data[b"2"].path == str(tmp_path / "app.log.1")
        assert by_data[b"2"].file_id.split(":")[:2] == first[0].file_id.split(":")[:2]  # same inode
        assert by_data[b"3"].path == str(log)
        writer.write(b"4\n")  # still followed under its new name
        assert texts(tailer.poll()) == [b"4"]
        assert set(tailer.positions()) == {str(log), str(tmp_path / "app.log.1")}
        assert tailer.stats()[str(log)].rotations == 1


def test_deleted_file_is_drained_and_closed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n")
    with make([log], start_position="beginning") as tailer:
        writer = open(log, "ab", buffering=0)
        assert texts(tailer.poll()) == [b"a"]
        writer.write(b"b\n")
        log.unlink()
        writer.write(b"c\n")
        lines = tailer.poll()
        assert texts(lines) == [b"b", b"c"]
        assert tailer._draining == []
        (entry,) = tailer.positions()[str(log)]["rotated"]  # until acknowledged
        assert (entry["read_from"], entry["offset"], entry["size"]) == ("(deleted)", 0, 6)
        assert sorted(tailer.positions()[str(log)]) == ["deleted", "rotated"]  # no file at the path now
        ack_all(tailer, lines)
        assert tailer.positions() == {str(log): {"deleted": True}}  # followed, deleted, no file there since
        assert tailer.stats()[str(log)].rotations == 0  # a deletion is not a rotation
        writer.close()


@pytest.mark.parametrize("glob", [False, True])
def test_a_file_created_while_stopped_where_the_checkpoint_had_none_is_read_from_its_start(
        tmp_path: Path, glob: bool, caplog) -> None:
    """logrotate `nocreate`, or a program that creates its log at its next write: the followed path has
    no file when lograven stops, so the checkpoint had no entry for it, and a file created there while
    lograven was stopped was read from its end (start_position `end`, as at a first start): its lines
    were lost (review, 2026-12-07). The checkpoint now lists the path (or pattern) with an empty entry."""
    log = tmp_path / "app.log"
    log.write_bytes(b"old 1\n")
    pattern = tmp_path / "*.log" if glob else log
    with make([pattern], start_position="end") as tailer:
        append(log, b"old 2\n")
        lines = tailer.poll()
        assert texts(lines) == [b"old 2"]
        ack_all(tailer, lines)
        log.rename(tmp_path / "app.log.1")  # nocreate: no app.log until the program writes again
        assert tailer.poll() == []
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved == {str(pattern): {}}
    append(log, b"written while stopped 1\nwritten while stopped 2\n")
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([pattern], start_position="end", positions=saved) as tailer:
        append(log, b"after the restart\n")
        assert texts(tailer.poll()) == [b"written while stopped 1", b"written while stopped 2", b"after the restart"]
    assert "appeared while lograven was stopped; reading it from the start" in caplog.text
    assert "malformed" not in caplog.text


@pytest.mark.parametrize("rewrite", [b"", b"c\n", b"a much longer first line than before\n"])
def test_copytruncate_restarts_at_zero(tmp_path: Path, rewrite: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """A routine copytruncate, with every line read before it, is said at INFO: a day-one review saw a
    WARNING in `journalctl -p warning` at every rotation, for nothing lost."""
    caplog.set_level("INFO", logger="lograven.tailer")
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"a\nb\n")
        assert texts(tailer.poll()) == [b"a", b"b"]
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, rewrite)  # may already be longer than the old offset when we look
        assert texts(tailer.poll()) == texts_of(rewrite)
        append(log, b"d\n")
        assert texts(tailer.poll()) == [b"d"]
        stats = tailer.stats()[str(log)]
        assert stats.truncations == 1 and stats.rotations == 0
        assert "truncated" in caplog.text and str(log) in caplog.text
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_link_pointed_to_a_new_file_while_stopped_has_the_old_files_rest_read_first(tmp_path: Path) -> None:
    """`app.log -> app-20240101.log`, pointed to `app-20240102.log` while lograven is stopped (Apache's
    rotatelogs -L, a daily link): the checkpoint names the file the link pointed to, and a restart reads
    its rest there before the new file (a review: it was taken for gone, its last lines never read). A
    position saved without that name (an older checkpoint) still resumes a file at its path."""
    day1, day2, link = tmp_path / "app-20240101.log", tmp_path / "app-20240102.log", tmp_path / "app.log"
    day1.write_bytes(b"")
    link.symlink_to(day1.name)
    with make([link]) as tailer:
        append(day1, b"day1 line 1\n")
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved[str(link)]["read_from"] == str(day1)
    append(day1, b"day1 line 2 (written while stopped)\n")
    day2.write_bytes(b"day2 line 1\n")
    link.unlink()
    link.symlink_to(day2.name)
    with make([link], positions=saved) as tailer:
        got = tailer.poll()
        assert texts(got) == [b"day1 line 2 (written while stopped)", b"day2 line 1"]
        ack_all(tailer, got)
        append(day2, b"day2 line 2\n")
        got = tailer.poll()
        assert texts(got) == [b"day2 line 2"]
        ack_all(tailer, got)
        saved = json.loads(json.dumps(tailer.positions()))
    del saved[str(link)]["read_from"]
    append(day2, b"day2 line 3\n")
    with make([link], positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"day2 line 3"]


def test_a_file_empty_at_the_stop_and_copytruncated_while_stopped_names_its_copy(tmp_path: Path,
                                                                                caplog: pytest.LogCaptureFixture) -> None:
    """An empty file has no first bytes to be told by: written to, copied and truncated while lograven
    was stopped, it looked unchanged and the lines in its copy were lost without a word (an admin's
    review). The newest plain generation written since the checkpoint is named, not read: reading it (as
    first done) read a whole generation again when it was an old file its writer had written to late (a
    review). Not for a generation older than the stop, one the checkpoint resumes, or a file unchanged."""
    log, copy = tmp_path / "syslog", tmp_path / "syslog.1"
    copy.write_bytes(b"an older generation, read before the stop\n")
    old = time.time() - 3600
    os.utime(copy, (old, old))
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        saved = json.loads(json.dumps(tailer.positions()))
    saved_at = time.time() + 0.01
    assert saved[str(log)]["fingerprint_len"] == 0
    time.sleep(0.05)
    caplog.set_level("WARNING", logger="lograven.tailer")
    # only written to while stopped: nothing is said of the old generation
    append(log, b"w1\n")
    with make([log], positions=saved, saved_at=saved_at) as tailer:
        assert texts(tailer.poll()) == [b"w1"]
    assert "was empty when lograven stopped" not in caplog.text
    log.write_bytes(b"")
    # written to, then copytruncate (delaycompress: the copy stays plain), then written to again
    append(log, b"".join(b"while stopped %d\n" % i for i in range(20)))
    shutil.copyfile(log, copy)
    os.truncate(log, 0)
    append(log, b"after 1\nafter 2\n")
    with make([log], positions=saved, saved_at=saved_at) as tailer:
        assert texts(tailer.poll()) == [b"after 1", b"after 2"]  # the copy is not read
    assert (f"{log} was empty when lograven stopped and was changed since; {copy} beside it was written since too: "
            f"if logrotate's copytruncate ran meanwhile") in caplog.text and f"`lograven score {copy}`" in caplog.text
    caplog.clear()
    # without the checkpoint's time (positions of a reload), nothing is guessed
    with make([log], positions=saved) as tailer:
        tailer.poll()
    # nor for a generation the patterns follow (or an earlier source's)
    with make([log, copy], positions={str(log): saved[str(log)]}, saved_at=saved_at) as tailer:
        tailer.poll()
    with make([log], positions=saved, saved_at=saved_at, exclude_paths=[str(copy)]) as tailer:
        tailer.poll()
    assert "was empty when lograven stopped" not in caplog.text
    # nor for an old file the checkpoint resumes: renamed just before the stop, written to late (a review)
    for p in (log, copy):
        p.unlink()
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"old 1\n")
        held = tailer.poll()  # handed out, not acknowledged at the stop
        os.rename(log, copy)
        log.write_bytes(b"")
        tailer.poll()
        saved = json.loads(json.dumps(tailer.positions()))
    saved_at = time.time() + 0.01
    time.sleep(0.05)
    append(copy, b"late\n")
    append(log, b"new\n")
    with make([log], positions=saved, saved_at=saved_at) as tailer:
        assert texts(tailer.poll()) == [b"old 1", b"late", b"new"] and texts(held) == [b"old 1"]
    assert "was empty when lograven stopped" not in caplog.text


def test_a_reload_keeps_the_acknowledgements_of_a_copys_lines_in_flight(tmp_path: Path) -> None:
    """A reload reopens the files at the positions the running tailer gives (positions(read=...)). A
    copytruncate's copy kept for lines in flight got none of their acknowledgements afterwards (they
    carry the truncated file's ids), so it stayed in every checkpoint and a restart read them again (a
    review). The reopened copy now takes them, and goes."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"".join(b"line %d %s\n" % (i, b"x" * 40) for i in range(10)))
        lines = tailer.poll()
        ack_all(tailer, lines[:5])
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, b"new 1\n")
        new = tailer.poll()
        ack_all(tailer, new)
        saved = json.loads(json.dumps(tailer.positions(read={x.ack_id: x.end for x in lines + new})))
    with make([log], positions=saved) as tailer:
        assert tailer.poll() == []  # processed already: not read again
        assert "rotated" in tailer.positions()[str(log)]
        tailer.acknowledge_lines(lines[5:])  # their alerts delivered now
        for _ in range(2):
            tailer.poll()
        assert "rotated" not in tailer.positions()[str(log)]


@pytest.mark.parametrize("variant", ["dateext-extension", "olddir"])
def test_a_file_renamed_before_the_tailer_noticed_is_found_after_a_restart(tmp_path: Path, variant: str) -> None:
    """logrotate renames the file (dateext with `extension .log`: app-20261207.log, or into an olddir), the
    writer adds a line before it reopens, and the checkpoint (the one at the stop) comes before the
    tailer's next pass noticed: the checkpoint names the file's new name, where a restart reads its rest
    (names that do not start with the path's are not looked for otherwise)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    (tmp_path / "old").mkdir()
    rotated = tmp_path / ("app-20261207.log" if variant == "dateext-extension" else "old/app.log.1")
    with make([log], rescan_interval=3600) as tailer:
        tailer.poll()
        append(log, b"line 1 " + b"x" * 300 + b"\n")
        ack_all(tailer, tailer.poll())
        os.rename(log, rotated)
        log.write_bytes(b"")
        append(rotated, b"line 2, written before the writer reopened\n")
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved[str(log)]["read_from"] == str(rotated)
    with make([log], positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"line 2, written before the writer reopened"]


def test_lines_in_flight_at_a_copytruncate_are_read_again_from_the_copy_after_a_crash(tmp_path: Path) -> None:
    """Lines handed out but not yet acknowledged (in the daemon's queue, or held by a failing alert sink)
    when logrotate copies and truncates the file: the copy's position is checkpointed under "rotated"
    until they are acknowledged, so a restart after a crash reads them again from it, as it does for a
    renamed file (a review: with the file read to its end, they had been forgotten at once)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"line 1\nline 2\n")
        in_flight = tailer.poll()
        assert texts(in_flight) == [b"line 1", b"line 2"]
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, b"line 3\n")
        new = tailer.poll()
        assert texts(new) == [b"line 3"]
        ack_all(tailer, new)
        saved = json.loads(json.dumps(tailer.positions()))  # the periodic checkpoint; then kill -9
        assert [r["read_from"] for r in saved[str(log)]["rotated"]] == [str(tmp_path / "app.log.1")]
        ack_all(tailer, in_flight)  # once processed, the copy is no longer the checkpoint's
        for _ in range(2):
            tailer.poll()
        assert "rotated" not in tailer.positions()[str(log)]
    with make([log], positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"line 1", b"line 2"]  # line 3 was acknowledged: not again
    # lines written between logrotate's copy and its truncation are in neither file: with those alone in
    # flight, the copy (shorter than the acknowledged offset) is not kept, and a restart does not take it
    # for a file truncated while stopped and read it all again (a review)
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"".join(b"A line %d\n" % i for i in range(50)))
        ack_all(tailer, tailer.poll())
        shutil.copyfile(log, tmp_path / "app.log.1")
        append(log, b"B1 between copy and truncate\nB2 between copy and truncate\n")
        got = tailer.poll()
        ack_all(tailer, got[:1])  # B2 in flight
        os.truncate(log, 0)
        append(log, b"C1\n")
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    assert "rotated" not in saved[str(log)]
    with make([log], positions=saved) as tailer:
        assert texts(tailer.poll()) == []
    # in flight: lines in the copy and one beyond it, acknowledged as the daemon does (the furthest end per
    # file): that end, beyond the copy, releases the copy (a review: it had been kept in every checkpoint)
    for p in (log, tmp_path / "app.log.1"):
        p.unlink()
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"".join(b"A line %03d %s\n" % (i, b"x" * 60) for i in range(10)))
        first = tailer.poll()
        tailer.acknowledge_lines(first[:5])
        shutil.copyfile(log, tmp_path / "app.log.1")
        append(log, b"B1 between copy and truncate\n")
        more = tailer.poll()
        os.truncate(log, 0)
        append(log, b"C1\n")
        tailer.acknowledge_lines(tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
        assert [r["offset"] for r in saved[str(log)]["rotated"]] == [first[4].end]  # A5..A9 are in the copy
        tailer.acknowledge_lines(first[5:] + more)
        for _ in range(2):
            tailer.poll()
        assert "rotated" not in tailer.positions()[str(log)] and not tailer._retired
    with make([log], positions=saved) as tailer:  # a crash before: A5..A9 again, from the copy
        assert texts(tailer.poll()) == texts(first[5:])


@pytest.mark.parametrize("copy", ["app.log.1", "app.log-20261206", None])
def test_copytruncate_while_behind_reads_the_rest_from_the_copy(tmp_path: Path, copy: str | None,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """logrotate copied and truncated the file while lograven was behind: the unread part was lost
    silently (a soak lost 89,000 of 100,000 lines), with only a warning about the truncation. It is now
    read from the copy beside the file, before the file's new content; with no copy (compressed at
    once) the loss is said in bytes and counted."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    lines = [f"line {i}".encode() for i in range(10)]
    with make([log]) as tailer:
        append(log, b"".join(x + b"\n" for x in lines))
        got = texts(tailer.poll(max_lines=3))  # behind: 7 lines not read yet
        (tmp_path / "app.log.2").write_bytes(b"an older generation\n")  # another name, other content
        if copy is not None:
            shutil.copyfile(log, tmp_path / copy)
        os.truncate(log, 0)
        append(log, b"new 1\n")
        with caplog.at_level("WARNING"):
            for _ in range(4):
                got += texts(tailer.poll(max_lines=3))
            append(log, b"new 2\n")
            got += texts(tailer.poll())
        stats = tailer.stats()[str(log)]
        assert stats.truncations == 1
        if copy is not None:
            assert got == lines + [b"new 1", b"new 2"]  # every line once, in order
            assert f"reading the rest of its copy {tmp_path / copy} from byte 21" in caplog.text
            assert stats.unread_bytes == 0
        else:
            assert got == lines[:3] + [b"new 1", b"new 2"]
            size = sum(len(x) + 1 for x in lines)
            assert f"bytes 21 to {size} (at least {size - 21} bytes) were not read" in caplog.text
            assert stats.unread_bytes == size - 21


def test_copytruncate_copy_is_found_for_lines_after_the_last_look_and_only_a_safe_one(tmp_path: Path,
                                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Lines written after the tailer's last look, then copied and truncated, are read from the copy
    (the size known then said nothing was unread). A link beside the file, however named, is never
    read (it could point at any file lograven may read); lines in flight at the truncation are
    acknowledged to the copy, so a checkpoint does not skip them; a copy the patterns match is read
    as its own file, with no loss counted."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"a1\na2\n")
        in_flight = tailer.poll()
        assert texts(in_flight) == [b"a1", b"a2"]
        append(log, b"b1\nb2\n")  # not looked at yet
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, b"c1\n")
        got = texts(tailer.poll()) + texts(tailer.poll())
        assert got == [b"b1", b"b2", b"c1"] and tailer.stats()[str(log)].unread_bytes == 0
        (entry,) = tailer.positions()[str(log)]["rotated"]
        assert entry["offset"] == 0  # a1, a2 not acknowledged yet: a restart reads them again
        ack_all(tailer, in_flight)
        (entry,) = tailer.positions()[str(log)]["rotated"]
        assert entry["offset"] == 6
    other = tmp_path / "other"
    other.mkdir()
    log2 = other / "app.log"
    log2.write_bytes(b"")
    secret = tmp_path / "secret"
    secret.write_bytes(b"s\nroot:secret line\n")  # starts with the log's first bytes
    with make([log2]) as tailer:
        append(log2, b"s\n")
        assert texts(tailer.poll()) == [b"s"]
        append(log2, b"t\n")
        tailer.poll(max_lines=0)  # looks (size 4), reads nothing
        (other / "app.log.1").symlink_to(secret)
        os.truncate(log2, 0)
        assert texts(tailer.poll()) == []
        assert tailer.stats()[str(log2)].unread_bytes == 2  # said and counted, never read through the link
    glob_dir = tmp_path / "glob"
    glob_dir.mkdir()
    log3 = glob_dir / "app.log"
    log3.write_bytes(b"")
    with make([f"{log3}*"]) as tailer, caplog.at_level("WARNING"):
        append(log3, b"x1\nx2\n")
        assert texts(tailer.poll(max_lines=1)) == [b"x1"]
        shutil.copyfile(log3, glob_dir / "app.log.1")
        os.truncate(log3, 0)
        got = texts(tailer.poll()) + texts(tailer.poll())
        assert sorted(got) == [b"x1", b"x2"]  # the copy, read as a new file of the pattern
        assert tailer.stats()[str(log3)].unread_bytes == 0 and "is followed as a file of its own" in caplog.text


def test_truncation_is_seen_when_the_first_bytes_come_back_the_same(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], fingerprint_bytes=8) as tailer:
        append(log, b"HEADER v1\nline\n")
        assert texts(tailer.poll()) == [b"HEADER v1", b"line"]
        os.truncate(log, 0)
        append(log, b"HEADER v1\n")  # same fingerprint, but shorter than what we read
        assert texts(tailer.poll()) == [b"HEADER v1"]
        assert tailer.stats()[str(log)].truncations == 1


def texts_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def test_short_file_grows_its_fingerprint_and_old_ids_stay_acknowledgeable(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], fingerprint_bytes=32) as tailer:
        append(log, b"a\n")
        (first,) = tailer.poll()
        append(log, b"b" * 40 + b"\n")
        (second,) = tailer.poll()
        assert first.file_id != second.file_id  # the fingerprint now covers 32 bytes
        assert first.file_id.split(":")[:2] == second.file_id.split(":")[:2]
        tailer.acknowledge(first.path, first.ack_id, first.end)
        assert tailer.positions()[str(log)]["offset"] == first.end
        tailer.acknowledge(second.path, second.ack_id, second.end)
        assert tailer.positions()[str(log)] == {
            "file_id": second.file_id,
            "offset": second.end,
            "fingerprint_len": 32,
        }


def test_short_new_file_after_rotation_is_not_taken_for_the_old_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"line one of the old file\n")
        assert len(tailer.poll()) == 1
        os.unlink(log)
        log.write_bytes(b"x\n")  # shorter than the offset we reached in the old file
        assert texts(tailer.poll()) == [b"x"]


def test_copytruncate_then_rename_before_the_tailer_looks(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        writer = open(log, "ab", buffering=0)
        writer.write(b"first line\n")
        assert texts(tailer.poll()) == [b"first line"]
        os.truncate(log, 0)
        os.rename(log, tmp_path / "app.log.1")
        writer.write(b"x\ny\n")  # new content of the rotated file, shorter than our old offset+1
        log.write_bytes(b"new\n")
        assert texts(tailer.poll()) == [b"x", b"y", b"new"]
        writer.close()


def test_rotated_file_is_drained_before_the_new_one_even_with_max_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"o1\no2\no3\n")
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"n1\nn2\n")
        assert texts(tailer.poll(max_lines=2)) == [b"o1", b"o2"]
        assert texts(tailer.poll(max_lines=2)) == [b"o3", b"n1"]
        assert texts(tailer.poll(max_lines=2)) == [b"n2"]


def test_file_moved_out_of_the_patterns_and_back_is_followed_again(tmp_path: Path) -> None:
    with make([tmp_path / "*.log"], rotate_wait=60.0) as tailer:
        (tmp_path / "a.log").write_bytes(b"1\n")
        assert texts(tailer.poll()) == [b"1"]
        os.rename(tmp_path / "a.log", tmp_path / "a.tmp")
        append(tmp_path / "a.tmp", b"2\n")
        assert texts(tailer.poll()) == [b"2"]  # drained; kept open for rotate_wait
        os.rename(tmp_path / "a.tmp", tmp_path / "b.log")
        append(tmp_path / "b.log", b"3\n")
        lines = tailer.poll()
        assert texts(lines) == [b"3"]  # not read again from the start
        assert lines[0].path == str(tmp_path / "b.log")
        assert list(tailer.positions()) == [str(tmp_path / "b.log")]


def test_a_file_matched_under_two_names_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"once\n")
    os.link(tmp_path / "a.log", tmp_path / "b.log")
    os.symlink(tmp_path / "a.log", tmp_path / "c.log")
    with make([tmp_path / "*.log", tmp_path / "a.log"], start_position="beginning") as tailer:
        assert texts(tailer.poll()) == [b"once"]


def test_read_error_is_logged_once_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"a\n")
        real_pread = os.pread

        def broken(fd: int, length: int, offset: int) -> bytes:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(tailer_module.os, "pread", broken)
        assert tailer.poll() == [] and tailer.poll() == []
        assert caplog.text.count("Input/output error") == 1
        assert tailer.stats()[str(log)].read_errors == 1
        monkeypatch.setattr(tailer_module.os, "pread", real_pread)
        assert texts(tailer.poll()) == [b"a"]


def test_stats_of_vanished_paths_are_forgotten_after_an_hour(tmp_path: Path) -> None:
    clock = [0.0]
    with make([tmp_path / "*.log"]) as tailer:
        tailer._clock = lambda: clock[0]
        (tmp_path / "a.log").write_bytes(b"x\n")
        tailer.poll()
        (tmp_path / "a.log").unlink()
        tailer.poll()
        clock[0] += 60
        tailer.poll()
        assert str(tmp_path / "a.log") in tailer.stats()  # counters survive a short absence
        clock[0] += tailer_module.STATS_RETENTION_SECONDS
        tailer.poll()
        assert tailer.stats() == {}


def test_glob_provider_roots_and_matching(tmp_path: Path) -> None:
    provider = tailer_module.GlobPathProvider(
        [str(tmp_path / "log" / "messages*"), str(tmp_path / "apps" / "*" / "app.log"), str(tmp_path / "x.log")]
    )
    assert provider.watch_roots() == sorted(
        [(str(tmp_path / "log"), False), (str(tmp_path / "apps"), True), (str(tmp_path), False)]
    )
    assert provider.matches(str(tmp_path / "log" / "messages.1"))
    assert not provider.matches(str(tmp_path / "log" / "secure"))
    (tmp_path / "apps" / "one").mkdir(parents=True)
    (tmp_path / "apps" / "one" / "app.log").write_bytes(b"")
    found, denied = provider.expand()
    assert list(found) == [str(tmp_path / "apps" / "one" / "app.log")] and denied == {}


# ----------------------------------------------------------------- skip predicate


def test_skip_predicate_drops_lines_but_advances(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    own = lambda data: b" lograven[" in data  # noqa: E731
    with make([log], skip_predicate=own) as tailer:
        append(log, b"host sshd[1]: hi\nhost lograven[2]: alert\nhost cron[3]: ok\nhost lograven[2]: again\n")
        lines = tailer.poll()
        assert texts(lines) == [b"host sshd[1]: hi", b"host cron[3]: ok"]
        assert tailer.stats()[str(log)].skipped_lines == 2
        ack_all(tailer, lines)
        # Trailing skipped lines are covered by the acknowledgement of the line before them.
        assert tailer.positions()[str(log)]["offset"] == log.stat().st_size


def test_skipped_lines_at_the_start_need_no_acknowledgement(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], skip_predicate=lambda data: data == b"skip") as tailer:
        append(log, b"skip\nskip\n")
        assert tailer.poll() == []
        assert tailer.positions()[str(log)]["offset"] == 10


# ----------------------------------------------------------------- unreadable files


def test_unreadable_file_is_logged_once_counted_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "secure.log"
    log.write_bytes(b"a\n")
    real_open = os.open

    def deny(path: str, flags: int, *args: int) -> int:
        if os.fspath(path) == str(log):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(tailer_module.os, "open", deny)
    caplog.set_level(logging.WARNING, logger="lograven.tailer")
    with make([log], start_position="beginning") as tailer:
        for _ in range(3):
            assert tailer.poll() == []
        warnings = [r for r in caplog.records if str(log) in r.getMessage()]
        assert len(warnings) == 1
        assert "setfacl -m u:lograven:r" in warnings[0].getMessage()  # root's 0644 file: no group to join
        stats = tailer.stats()[str(log)]
        assert stats.read_errors == 1 and stats.readable is False
        monkeypatch.setattr(tailer_module.os, "open", real_open)
        append(log, b"b\n")
        # It was there when we started: start_position applies once it can be read.
        assert texts(tailer.poll()) == [b"a", b"b"]
        assert tailer.stats()[str(log)].readable is True


def test_a_configured_file_that_is_deleted_is_not_readable_until_it_is_back(tmp_path: Path) -> None:
    """lograven_file_readable must not stay 1 for a named file that was deleted (a deleted /var/log/secure);
    a rotated one's successor may come later, and files matched by a glob come and go with retention:
    they keep their last state."""
    named, globbed = tmp_path / "secure", tmp_path / "app-1.log"
    named.write_bytes(b"a\n")
    globbed.write_bytes(b"x\n")
    with make([named, tmp_path / "app-*.log"], start_position="beginning") as tailer:
        assert sorted(texts(tailer.poll())) == [b"a", b"x"]
        named.unlink()
        globbed.unlink()
        tailer.poll()
        tailer.poll()
        stats = tailer.stats()
        assert stats[str(named)].readable is False
        assert stats[str(globbed)].readable is True
        named.write_bytes(b"b\n")
        assert texts(tailer.poll()) == [b"b"]
        assert tailer.stats()[str(named)].readable is True
        # rotated (renamed away) rather than deleted: its successor may come later; not unreadable
        named.rename(tmp_path / "secure.1")
        tailer.poll()
        tailer.poll()
        assert tailer.stats()[str(named)].readable is True


def test_a_deleted_named_file_stays_unreadable_after_a_reload_or_restart(tmp_path: Path) -> None:
    """Review of metrics (2026-12-07 (night)): the deleted file's 0 lived only in the Tailer, so a reload (new
    Tailers, given the old one's positions) or a restart (the checkpoint) lost it: the series went, and
    LogravenFileUnreadable resolved for a /var/log/secure still missing. The positions carry it now."""
    import json

    named = tmp_path / "secure"
    named.write_bytes(b"a\n")
    with make([named], start_position="beginning") as tailer:
        assert texts(tailer.poll()) == [b"a"]
        named.unlink()
        tailer.poll()
        tailer.poll()
        assert tailer.stats()[str(named)].readable is False
        saved = json.loads(json.dumps(tailer.positions()))  # as the checkpoint holds it
    assert saved[str(named)].get("deleted") is True
    with make([named], start_position="beginning", positions=saved) as again:
        again.poll()
        assert again.stats()[str(named)].readable is False
        assert again.positions()[str(named)].get("deleted") is True
        named.write_bytes(b"b\n")  # a file is there again: read from its start, readable
        assert texts(again.poll()) == [b"b"]
        assert again.stats()[str(named)].readable is True
        assert "deleted" not in again.positions()[str(named)]
    with make([tmp_path / "*.log"], positions={str(tmp_path / "x.log"): {"deleted": True}}) as globbed:
        globbed.poll()  # a glob's files come and go: never "deleted"
        assert str(tmp_path / "x.log") not in globbed.stats()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_chmod_000_file_is_retried(tmp_path: Path) -> None:
    log = tmp_path / "secure.log"
    log.write_bytes(b"a\n")
    log.chmod(0)
    with make([log], start_position="beginning") as tailer:
        assert tailer.poll() == []
        log.chmod(0o644)
        assert texts(tailer.poll()) == [b"a"]


# ----------------------------------------------------------------- out of file descriptors


def _emfile(*args: object, **kwargs: object) -> object:
    raise OSError(errno.EMFILE, "Too many open files")


def _fd_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "too many open files" in r.getMessage()]


@pytest.mark.parametrize("how", ["listing fails", "glob finds nothing"])
def test_out_of_file_descriptors_followed_files_are_neither_dropped_nor_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """EMFILE: glob.glob() returns [] without a word. The files followed must not be taken for rotated,
    closed and read again from the start once descriptors are free again (duplicate alerts)."""
    logs = [tmp_path / f"f{i}.log" for i in range(5)]
    for i, log in enumerate(logs):
        log.write_bytes(b"old %d\n" % i)
    clock = [0.0]
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([tmp_path / "*.log"], start_position="beginning") as tailer:
        tailer._clock = lambda: clock[0]
        first = tailer.poll()
        assert sorted(texts(first)) == [b"old %d" % i for i in range(5)]
        ack_all(tailer, first)
        if how == "listing fails":  # as glob.glob and the tailer list directories, and open files
            monkeypatch.setattr(tailer_module.os, "scandir", _emfile)
        else:  # glob's own error, not seen by the tailer: only the followed files' paths can tell
            monkeypatch.setattr(tailer_module.glob, "glob", lambda *args, **kwargs: [])
        monkeypatch.setattr(tailer_module.os, "open", _emfile)
        (tmp_path / "new.log").write_bytes(b"new 1\n")  # appears meanwhile: cannot be seen or opened
        got: list[RawLine] = []
        for step in range(4):
            for i, log in enumerate(logs):
                append(log, b"during %d.%d\n" % (i, step))
            lines = tailer.poll()
            ack_all(tailer, lines)
            got += lines
            clock[0] += 10.0  # well past rotate_wait
        # the followed files are still read, from the descriptors they are open on
        assert sorted(texts(got)) == sorted(b"during %d.%d" % (i, step) for i in range(5) for step in range(4))
        assert len(tailer._live) == 5 and tailer._draining == []
        if how == "listing fails":
            (warning,) = _fd_warnings(caplog)  # once per minute at most, naming the error and the fix
            assert "EMFILE" in warning and "LimitNOFILE" in warning and "ulimit -n" in warning
        monkeypatch.undo()
        for i, log in enumerate(logs):
            append(log, b"after %d\n" % i)
        after = tailer.poll()
        assert sorted(texts(after)) == sorted([b"after %d" % i for i in range(5)] + [b"new 1"])
        ack_all(tailer, after)
        assert tailer.poll() == []
        stats = tailer.stats()
        assert all(stats[str(log)].rotations == 0 and stats[str(log)].truncations == 0 for log in logs)
        assert all(stats[str(log)].lines == 6 for log in logs)  # old, 4 during, after: each once
        positions = tailer.positions()
        assert all(positions[str(log)]["offset"] == log.stat().st_size for log in logs)
        assert "was rotated" not in caplog.text and "reading it from the start" in caplog.text  # new.log only
        assert caplog.text.count("reading it from the start") == 1
        if how == "listing fails":
            assert "can open files again" in caplog.text


def test_out_of_file_descriptors_new_files_wait_and_the_warning_is_rate_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    followed = tmp_path / "a.log"
    followed.write_bytes(b"")
    clock = [0.0]
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([tmp_path / "*.log"]) as tailer:
        tailer._clock = lambda: clock[0]
        opened: list[str] = []
        real_open = os.open

        def limited(path: str, flags: int, *args: int) -> int:  # the directory can be listed, no file opened
            opened.append(os.fspath(path))
            raise OSError(errno.EMFILE, "Too many open files", path)

        monkeypatch.setattr(tailer_module.os, "open", limited)
        for name in ("b.log", "c.log", "d.log"):
            (tmp_path / name).write_bytes(b"first line of %s\n" % name.encode())
        for _ in range(5):
            append(followed, b"x\n")
            assert texts(tailer.poll()) == [b"x"]
            clock[0] += 5.0
        assert len(opened) == 5  # one attempt per poll, not one per waiting file
        (warning,) = _fd_warnings(caplog)
        assert "3 more match the patterns but are not opened" in warning
        stats = tailer.stats()
        for name in ("b.log", "c.log", "d.log"):
            assert stats[str(tmp_path / name)].readable is False
            assert stats[str(tmp_path / name)].read_errors == 1
        assert "cannot open" not in caplog.text  # no warning per file
        clock[0] += tailer_module.WARN_INTERVAL_SECONDS
        tailer.poll()
        assert len(_fd_warnings(caplog)) == 2  # a minute later: said again
        monkeypatch.setattr(tailer_module.os, "open", real_open)
        lines = tailer.poll()
        # appeared after the start: read from their beginning, once
        assert sorted(texts(lines)) == [b"first line of b.log", b"first line of c.log", b"first line of d.log"]
        assert tailer.poll() == []
        assert all(s.readable for s in tailer.stats().values())
        assert "can open files again" in caplog.text and "readable now" not in caplog.text


def test_out_of_file_descriptors_files_present_at_start_keep_the_start_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that could not be opened at start (EMFILE) gets start_position "end" once it can be,
    even when the expansions in between failed: its old lines are not read."""
    (tmp_path / "a.log").write_bytes(b"old\n")
    monkeypatch.setattr(tailer_module.os, "open", _emfile)
    with make([tmp_path / "*.log"], start_position="end") as tailer:
        assert tailer.poll() == []
        monkeypatch.setattr(tailer_module.os, "scandir", _emfile)
        assert tailer.poll() == []
        monkeypatch.undo()
        assert tailer.poll() == []
        append(tmp_path / "a.log", b"new\n")
        assert texts(tailer.poll()) == [b"new"]


def test_out_of_file_descriptors_at_start_the_checkpoint_is_kept_until_the_files_can_be_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointed, other = tmp_path / "a.log", tmp_path / "b.log"
    checkpointed.write_bytes(b"")
    other.write_bytes(b"")
    with make([tmp_path / "*.log"]) as tailer:
        append(checkpointed, b"read\n")
        ack_all(tailer, tailer.poll())
        saved = tailer.positions()
    append(checkpointed, b"unread\n")
    append(other, b"unread too\n")
    monkeypatch.setattr(tailer_module.os, "scandir", _emfile)
    with make([tmp_path / "*.log"], positions=saved) as tailer:
        got = tailer.poll()
        monkeypatch.undo()
        got += tailer.poll() + tailer.poll()
        assert sorted(texts(got)) == [b"unread", b"unread too"]  # resumed at the checkpoint, once
        assert tailer.stats()[str(checkpointed)].rotations == 0
    assert "is gone" not in caplog.text and "was rotated" not in caplog.text


def test_out_of_file_descriptors_rotation_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the patterns cannot be listed, a file renamed within them stays open (it is followed again,
    not read again, afterwards) and a deleted one is closed (its descriptor is freed)."""
    rotated, deleted = tmp_path / "app.log", tmp_path / "gone.log"
    rotated.write_bytes(b"")
    deleted.write_bytes(b"")
    clock = [0.0]
    with make([tmp_path / "*.log*"], rotate_wait=5.0) as tailer:
        tailer._clock = lambda: clock[0]
        append(rotated, b"1\n")
        append(deleted, b"a\n")
        ack_all(tailer, tailer.poll())
        monkeypatch.setattr(tailer_module.os, "scandir", _emfile)
        monkeypatch.setattr(tailer_module.os, "open", _emfile)
        os.rename(rotated, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", b"2\n")
        deleted.unlink()
        got = []
        for _ in range(3):
            got += tailer.poll()
            clock[0] += 10.0
        assert texts(got) == [b"2"]
        assert [w.read_from for w in tailer._draining] == [str(tmp_path / "app.log.1")]  # kept open
        monkeypatch.undo()
        append(tmp_path / "app.log.1", b"3\n")
        lines = tailer.poll()
        assert texts(lines) == [b"3"]  # followed again under its new name, not read again from its start
        assert lines[0].path == str(tmp_path / "app.log.1")


def test_out_of_file_descriptors_for_real(tmp_path: Path) -> None:
    """A real RLIMIT_NOFILE (in a child process): 100 files under a glob, 64 descriptors at most."""
    script = textwrap.dedent(
        """
        import collections, logging, os, resource, sys
        from lograven.tailer import Tailer

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        directory = sys.argv[1]
        for i in range(100):
            with open(os.path.join(directory, "f%03d.log" % i), "wb") as f:
                f.write(b"line %d\\n" % i)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        seen = collections.Counter()
        tailer = Tailer([os.path.join(directory, "*.log")], start_position="beginning",
                        use_watchdog=False, rotate_wait=0.0)
        for _ in range(5):
            lines = tailer.poll()
            tailer.acknowledge_lines(lines)
            seen.update(line.data for line in lines)
        opened = len(seen)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for _ in range(2):
            seen.update(line.data for line in tailer.poll())
        rotations = sum(s.rotations for s in tailer.stats().values())
        tailer.close()
        print(opened, len(seen), max(seen.values()), rotations)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    opened, total, most, rotations = map(int, result.stdout.split())
    assert 30 < opened < 64  # as many as the limit allowed, the others waited
    assert (total, most, rotations) == (100, 1, 0)  # then every file was read, each line once
    assert "too many open files" in result.stderr and "LimitNOFILE" in result.stderr
    assert result.stderr.count("too many open files") == 1


# ----------------------------------------------------------------- positions and restarts


def test_restart_resumes_at_the_acknowledged_offset(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"1\n2\n3\n")
        lines = tailer.poll()
        assert tailer.positions()[str(log)]["offset"] == 0  # nothing acknowledged yet
        ack_all(tailer, lines[:2])
        saved = json.loads(json.dumps(tailer.positions()))
    append(log, b"4\n")
    with make([log], positions=saved) as tailer:
        # at-least-once: the unacknowledged line comes again
        assert texts(tailer.poll()) == [b"3", b"4"]


@pytest.mark.parametrize("case", ["copy", "dateext copy", "no copy", "copy read to its end", "patterns match the copy",
                                  "generation beside"])
def test_copytruncate_while_stopped_reads_the_rest_from_the_copy(tmp_path: Path, case: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """logrotate's copytruncate ran while lograven was stopped (a nightly rotation during an upgrade).
    The checkpointed file is still at its path, with its inode, but holds new content: lograven read
    it from the start and said it was "rotated or replaced", and what was written after the checkpoint
    was lost without a word of it. The rest is now read from the copy beside it first; with no copy,
    the loss is said."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    old = [f"old line {i}".encode() for i in range(6)]
    with make([log] if case != "patterns match the copy" else [f"{log}*"]) as tailer:
        append(log, b"".join(x + b"\n" for x in old[:4]))
        lines = tailer.poll()
        # processed 2 lines, 2 more in flight when it stopped (or all 4 processed)
        ack_all(tailer, lines if case == "copy read to its end" else lines[:2])
        saved = json.loads(json.dumps(tailer.positions()))
    offset = saved[str(log)]["offset"]
    if case != "copy read to its end":
        append(log, b"".join(x + b"\n" for x in old[4:]))  # written while lograven was stopped
    (tmp_path / "app.log.2").write_bytes(b"an older generation\n")  # another copy, other first bytes
    copy = tmp_path / ("app.log-20261206" if case == "dateext copy" else "app.log.1")
    if case == "generation beside":
        # rotated twice while stopped, and the new file got the old file's inode number (freed when that one
        # was compressed to app.log.2.gz): the generation between (app.log.1) is beside it, not a copy
        (tmp_path / "app.log.2").rename(tmp_path / "app.log.2.gz")
        copy.write_bytes(b"middle generation\n")
        os.utime(copy, (time.time() + 5, time.time() + 5))
    elif case != "no copy":
        shutil.copyfile(log, copy)
    os.truncate(log, 0)
    append(log, b"new 1\n")
    patterns = [log] if case != "patterns match the copy" else [tmp_path / "app.log", copy]
    with caplog.at_level("INFO", logger="lograven.tailer"), make(patterns, positions=saved) as tailer:
        got = texts(tailer.poll()) + texts(tailer.poll())
        append(log, b"new 2\n")
        got += texts(tailer.poll())
        stats = tailer.stats()[str(log)]
        assert (stats.truncations, stats.rotations) == (1, 0)
        if case in ("copy", "dateext copy", "patterns match the copy"):
            assert sorted(got) == sorted(old[2:] + [b"new 1", b"new 2"])  # every line not acknowledged, once
            if case == "patterns match the copy":
                assert f"its copy {copy} is followed as a file of its own" in caplog.text
                assert f"resuming it at byte {offset}" in caplog.text
            else:
                assert got == old[2:] + [b"new 1", b"new 2"]  # and the copy first
                assert f"reading the rest of its copy {copy} from byte {offset}" in caplog.text
                positions = tailer.positions()
                (entry,) = positions[str(log)]["rotated"]  # a restart before the acknowledgement reads it again
                assert (entry["read_from"], entry["offset"]) == (str(copy), offset)
        elif case == "copy read to its end":
            assert got == [b"new 1", b"new 2"]
            assert "after lograven had read all of it" in caplog.text
        else:
            assert got == [b"new 1", b"new 2"]
            assert f"the lines written to it after byte {offset} were not read, and no copy" in caplog.text
            if case == "generation beside":  # a day-one review: only "use delaycompress" was said, wrongly
                assert f"its newest uncompressed generation {copy} may hold lines" in caplog.text
                assert "delaycompress" not in caplog.text
        assert "not the file recorded in the checkpoint" not in caplog.text


def test_copytruncate_while_stopped_edge_cases(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """From a review of the recovery: a copy the patterns reach through a link crashed every start with a
    KeyError; a reload's reopening read the copy from the acknowledged offset, scoring processed lines
    twice; another name that got the checkpointed file's inode (reused after a deletion) was taken for
    a truncation of it."""
    from lograven.tailer import make_file_id

    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"a1\na2\na3\n")
        lines = tailer.poll()
        ack_all(tailer, lines[:1])
        saved = json.loads(json.dumps(tailer.positions()))
        reopened = json.loads(json.dumps(tailer.positions(read={lines[0].ack_id: lines[1].end})))
    append(log, b"a4\n")
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    append(log, b"n1\n")
    links = tmp_path / "links"
    links.mkdir()
    (links / "copy.log").symlink_to(tmp_path / "app.log.1")  # the sources reach the copy by a link
    with make([log, links / "*.log"], positions=saved) as tailer:
        got = texts(tailer.poll()) + texts(tailer.poll())
    assert sorted(got) == [b"a2", b"a3", b"a4", b"n1"]
    with make([log], positions=reopened) as tailer:  # a reload: a2 was processed, its alert held back
        got = texts(tailer.poll()) + texts(tailer.poll())
        assert got == [b"a3", b"a4", b"n1"]
        (entry,) = tailer.positions()[str(log)]["rotated"]
        assert entry["offset"] == lines[0].end  # a2 still to be acknowledged
    other = tmp_path / "other"
    other.mkdir()
    b = other / "b.log"
    b.write_bytes(b"b's own first line\n")
    st = os.stat(b)
    gone = {str(other / "a.log"): {"file_id": make_file_id(st.st_dev, st.st_ino, "0" * 16), "offset": 5,
                                   "fingerprint_len": 10}}  # a.log's inode, now b.log's
    caplog.clear()
    with caplog.at_level("INFO", logger="lograven.tailer"), make([other / "*.log"], positions=gone) as tailer:
        tailer.poll()
        assert tailer.stats()[str(b)].truncations == 0
    assert "truncated" not in caplog.text
    assert f"{b} has the inode of the checkpointed file {other / 'a.log'} but not its content" in caplog.text


@pytest.mark.parametrize("how", ["copytruncate", "rename"])
def test_two_rotations_while_stopped_say_the_generation_between(tmp_path: Path, how: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Rotated twice while lograven was stopped: the first generation is read from the checkpoint on and the
    live file from its start, but the generation between them, beside the file, is not: that is now said."""
    log = tmp_path / "app.log"
    saved = checkpoint_after(log, b"g0 a\n")
    append(log, b"g0 b\n")

    def rotate() -> None:
        if (tmp_path / "app.log.1").exists():
            os.rename(tmp_path / "app.log.1", tmp_path / "app.log.2")
        if how == "copytruncate":
            shutil.copyfile(log, tmp_path / "app.log.1")
            os.truncate(log, 0)
        else:
            os.rename(log, tmp_path / "app.log.1")
            log.write_bytes(b"")

    rotate()
    os.utime(tmp_path / "app.log.1", (time.time() - 60, time.time() - 60))
    append(log, b"g1 a\n")
    rotate()
    append(log, b"g2 a\n")
    with caplog.at_level("INFO", logger="lograven.tailer"), make([log], positions=saved) as tailer:
        got = texts(tailer.poll()) + texts(tailer.poll())
    assert got == [b"g0 b", b"g2 a"]
    assert f"{tmp_path / 'app.log.1'} beside {log} changed after {tmp_path / 'app.log.2'}" in caplog.text
    # a compressed generation is older than the plain one resumed, whatever its time (a compressor that does
    # not keep the file's time gave a false warning in a soak)
    caplog.clear()
    import gzip

    (tmp_path / "app.log.3.gz").write_bytes(gzip.compress(b"g-1\n"))
    with caplog.at_level("INFO", logger="lograven.tailer"), make([log], positions=saved) as tailer:
        tailer.poll()
    assert "app.log.3.gz" not in caplog.text


def test_the_first_rotation_after_a_restart_is_one_ordinary_rotation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file resumed from the checkpoint stayed among the files found at start: its first rotation
    after the restart warned that the new file "is not the file recorded in the checkpoint ... while
    lograven was stopped", and counted two rotations (found by a week-one soak)."""
    log = tmp_path / "app.log"
    saved = checkpoint_after(log, b"1\n")
    with make([log], positions=saved) as tailer:
        append(log, b"2\n")
        got = texts(tailer.poll())
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"3\n")
        with caplog.at_level("INFO", logger="lograven.tailer"):
            for _ in range(3):
                got += texts(tailer.poll())
        assert got == [b"2", b"3"]
        assert sum(s.rotations for s in tailer.stats().values()) == 1
    assert "not the file recorded in the checkpoint" not in caplog.text


def test_reopening_resumes_after_the_processed_lines_and_rereads_the_rest(tmp_path: Path) -> None:
    """A reload reopens the files: at the acknowledged offsets, lines held back by a failing alert sink
    were read and scored twice; at the read offsets, lines a stopping reader had in hand but never
    queued were lost. positions(read=...) resumes after the lines the caller processed, and keeps the
    acknowledged offset, to which the old lines are acknowledged later."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"1\n2\n3\n4\n5\n")
        lines = tailer.poll()
        processed = lines[:3]  # 4 and 5 were handed out, and dropped by a stopping reader
        done = {processed[-1].ack_id: processed[-1].end}
        reopen = json.loads(json.dumps(tailer.positions(read=done)))
        assert reopen[str(log)]["offset"] == 0 and reopen[str(log)]["read"] == processed[-1].end
        assert "read" not in tailer.positions(read={})[str(log)]  # nothing processed: from the acknowledged offset
    with make([log], positions=reopen) as tailer:
        assert texts(tailer.poll()) == [b"4", b"5"]  # 1-3 are not read again, 4-5 are
        assert tailer.positions()[str(log)]["offset"] == 0  # 1-3 still wait for their acknowledgement
        ack_all(tailer, processed)
        assert tailer.positions()[str(log)]["offset"] == processed[-1].end
    del reopen[str(log)]["read"]  # a checkpoint never has "read": no line is skipped
    with make([log], positions=reopen) as tailer:
        assert texts(tailer.poll()) == [b"1", b"2", b"3", b"4", b"5"]


def test_acknowledge_lines_takes_the_furthest_line_of_each_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"")
    b.write_bytes(b"")
    with make([tmp_path / "*.log"]) as tailer:
        append(a, b"a1\na2\na3\n")
        append(b, b"b1\nb2\n")
        lines = tailer.poll()
        tailer.acknowledge_lines([x for x in lines if x.data in (b"a2", b"a1", b"b1")])
        assert {p: e["offset"] for p, e in tailer.positions().items()} == {str(a): 6, str(b): 3}


def test_restart_after_rotation_while_stopped_resumes_the_rotated_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([f"{log}*"]) as tailer:
        append(log, b"1\n")
        ack_all(tailer, tailer.poll())
        saved = tailer.positions()
    append(log, b"2\n")
    os.rename(log, tmp_path / "app.log.1")
    log.write_bytes(b"3\n")
    with make([f"{log}*"], positions=saved, start_position="end") as tailer:
        lines = tailer.poll()
        assert sorted(texts(lines)) == [b"2", b"3"]
        assert {line.data: line.path for line in lines}[b"2"] == str(tmp_path / "app.log.1")


def test_restart_after_rotation_out_of_the_patterns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rotated while lograven was stopped (a nightly logrotate during an upgrade): the old file is found
    next to its path by identity, its rest read first, then the new file from its start. Deleted
    instead (or compressed), what was not read is said."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"1\n")
        ack_all(tailer, tailer.poll())
        saved = tailer.positions()
    append(log, b"late\n")
    os.rename(log, tmp_path / "app.log.1")
    log.write_bytes(b"3\n")
    with caplog.at_level(logging.INFO), make([log], positions=saved, start_position="end") as tailer:
        lines = tailer.poll()
        assert texts(lines) == [b"late", b"3"]  # the old file's rest, then the new file from its start
        assert [ln.read_from for ln in lines] == [str(tmp_path / "app.log.1"), None]
        assert {ln.path for ln in lines} == {str(log)}
        ack_all(tailer, lines)
        saved = tailer.positions()
    assert "was rotated to" in caplog.text and "not read" not in caplog.text
    # said as it happened, and with no warning: the old file was found (an audit read "before lograven
    # stopped", then "not the file recorded in the checkpoint")
    assert f"{log} was rotated to {tmp_path / 'app.log.1'} while lograven was stopped" in caplog.text
    assert f"{log} is a new file since that rotation" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    append(log, b"lost\n")
    os.rename(log, tmp_path / "app.log.1")
    os.unlink(tmp_path / "app.log.1")
    log.write_bytes(b"5\n")
    with make([log], positions=saved, start_position="end") as tailer:
        assert texts(tailer.poll()) == [b"5"]
    assert "while lograven was stopped" in caplog.text and "after byte 2 were not read" in caplog.text


def _rotate_while_draining(tmp_path: Path) -> tuple[Path, Path, dict, list[RawLine]]:
    """The reviewer's case: 5000 lines, 1000 read, renamed to messages.1 (a new messages created),
    1000 more read and acknowledged, then stopped: returns (log, rotated, checkpoint, lines read)."""
    log, rotated = tmp_path / "messages", tmp_path / "messages.1"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"".join(b"old %04d\n" % i for i in range(5000)))
        read = tailer.poll(max_lines=1000)
        ack_all(tailer, read)
        os.rename(log, rotated)
        log.write_bytes(b"new 0\nnew 1\n")
        more = tailer.poll(max_lines=1000)  # a backlog: the rotated file is still being read
        assert {line.read_from for line in more} == {str(rotated)}
        ack_all(tailer, more)
        saved = json.loads(json.dumps(tailer.positions()))
    return log, rotated, saved, read + more


@pytest.mark.parametrize("moved", [None, "messages.2", "messages-20261206"])
def test_restart_while_draining_a_rotated_file_reads_the_rest_of_it(tmp_path: Path, moved: str | None) -> None:
    log, rotated, saved, before = _rotate_while_draining(tmp_path)
    entry = saved[str(log)]
    if moved is not None:  # rotated once more while stopped: found by identity, not by name
        os.rename(rotated, tmp_path / moved)
        rotated = tmp_path / moved
    (tmp_path / "other.1").write_bytes(rotated.read_bytes())  # a copy elsewhere is not it
    with make([log], positions=saved) as tailer:
        after = tailer.poll()
    old = [line for line in before + after if line.data.startswith(b"old")]
    assert texts(old) == [b"old %04d" % i for i in range(5000)]  # none lost, none twice, in order
    assert texts(after[-2:]) == [b"new 0", b"new 1"]  # the new file after the rest of the old one
    resumed = after[:-2]
    assert {line.path for line in resumed} == {str(log)}
    assert {line.read_from for line in resumed} == {str(rotated)}
    assert all(rotated.read_bytes()[x.offset : x.end] == x.data + b"\n" for x in resumed[:3] + resumed[-3:])
    assert after[-1].read_from is None
    assert entry["offset"] == 0  # the new file at the path: nothing of it read yet
    rotated_entries = [(x["read_from"], x["offset"]) for x in entry.get("rotated", [])]
    assert rotated_entries == [(str(tmp_path / "messages.1"), before[-1].end)]


def test_rotated_files_awaiting_acknowledgement_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tailer_module, "MAX_RETIRED", 1)
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        for generation in (1, 2):
            append(log, b"line\n")
            os.rename(log, tmp_path / f"app.log.{generation}")
            log.write_bytes(b"")
            tailer.poll()  # never acknowledged
        rotated = tailer.positions()[str(log)]["rotated"]
        assert [x["read_from"] for x in rotated] == [str(tmp_path / "app.log.2")]
    assert "forgetting the position" in caplog.text and str(tmp_path / "app.log.1") in caplog.text


def test_rotated_file_of_a_path_no_longer_configured_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, rotated, saved, _ = _rotate_while_draining(tmp_path)
    (tmp_path / "other.log").write_bytes(b"")
    with make([tmp_path / "other.log"], positions=saved) as tailer:
        assert tailer.poll() == [] and tailer._draining == []
    assert "no longer under the configured paths" in caplog.text and str(rotated) in caplog.text


def test_restart_rereads_unacknowledged_lines_of_a_closed_rotated_file(tmp_path: Path) -> None:
    log, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"a\nb\nc\n")
        os.rename(log, rotated)
        log.write_bytes(b"d\n")
        lines = tailer.poll()
        assert texts(lines) == [b"a", b"b", b"c", b"d"]
        assert tailer._draining == []  # drained and closed (rotate_wait=0)...
        ack_all(tailer, [lines[0], lines[3]])  # ...but b and c are still being processed
        saved = json.loads(json.dumps(tailer.positions()))
    with make([log], positions=saved) as tailer:
        again = tailer.poll()
        assert texts(again) == [b"b", b"c"]  # at-least-once: they come again, from the rotated file
        assert {line.read_from for line in again} == {str(rotated)}
        ack_all(tailer, again)
        assert "rotated" not in tailer.positions()[str(log)]


def test_rotated_file_deleted_while_stopped_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log, rotated, saved, before = _rotate_while_draining(tmp_path)
    size = rotated.stat().st_size
    rotated.unlink()  # logrotate compressed it (messages.1.gz) or deleted it
    (tmp_path / "messages.1.gz").write_bytes(b"\x1f\x8b not the file")  # may well get the same inode
    with caplog.at_level(logging.WARNING, logger="lograven.tailer"), make([log], positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"new 0", b"new 1"]
        assert tailer._draining == []
    unread = size - before[-1].end
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    warning = [text for text in warning if str(rotated) in text]
    assert len(warning) == 1
    assert f"{unread} bytes" in warning[0] and str(log) in warning[0]


def test_old_format_positions_still_restore(tmp_path: Path) -> None:
    """Checkpoints written before rotated files were saved (and before fingerprint_len) still load."""
    long = tmp_path / "long.log"
    long.write_bytes(b"x" * 300 + b"\n")
    with make([long]) as tailer:
        saved = tailer.positions()
    append(long, b"after\n")
    oldest = {str(long): {"file_id": saved[str(long)]["file_id"], "offset": 301}}  # no fingerprint_len
    with make([long], positions=oldest) as tailer:
        assert texts(tailer.poll()) == [b"after"]
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"one\ntwo\n")
        ack_all(tailer, tailer.poll())
        entry = tailer.positions()[str(log)]
    append(log, b"three\n")
    assert set(entry) == {"file_id", "offset", "fingerprint_len"}  # a live file's entry is unchanged
    with make([log], positions={str(log): entry}) as tailer:
        lines = tailer.poll()
        assert texts(lines) == [b"three"]
        ack_all(tailer, lines)
        assert list(tailer.positions()) == [str(log)] and tailer.positions()[str(log)]["offset"] == 14


def test_new_file_under_a_checkpointed_glob_is_read_from_the_start(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"")
    with make([tmp_path / "*.log"]) as tailer:
        saved = tailer.positions()
    (tmp_path / "b.log").write_bytes(b"written while stopped\n")
    with make([tmp_path / "*.log"], positions=saved, start_position="end") as tailer:
        assert texts(tailer.poll()) == [b"written while stopped"]


def test_new_pattern_after_restart_uses_start_position(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"")
    with make([tmp_path / "a.log"]) as tailer:
        saved = tailer.positions()
    (tmp_path / "b.txt").write_bytes(b"history\n")
    with make([tmp_path / "a.log", tmp_path / "*.txt"], positions=saved, start_position="end") as tailer:
        assert tailer.poll() == []


@pytest.mark.parametrize("how", ["fingerprint", "inode", "shorter"])
def test_identity_mismatch_reads_the_file_from_the_start(tmp_path: Path, how: str) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"first line\nsecond line\n")
        ack_all(tailer, tailer.poll())
        saved = tailer.positions()
    entry = saved[str(log)]
    if how == "fingerprint":  # same device and inode, other content (inode reuse)
        entry["file_id"] = entry["file_id"].rsplit(":", 1)[0] + ":" + "0" * 16
    elif how == "inode":
        dev, ino, fp = entry["file_id"].split(":")
        entry["file_id"] = f"{dev}:{int(ino) + 12345}:{fp}"
    else:  # the same file, but shorter than the saved offset
        entry["offset"] = 10**6
    with make([log], positions=saved, start_position="end") as tailer:
        assert texts(tailer.poll()) == [b"first line", b"second line"]


def test_replaced_file_with_a_reused_inode_is_read_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"old content line\n")
        ack_all(tailer, tailer.poll())
        saved = tailer.positions()
    log.unlink()
    log.write_bytes(b"brand new content, longer than the old one\n")  # often gets the same inode
    with make([log], positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"brand new content, longer than the old one"]


def test_malformed_positions_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x\n")
    bad = {
        str(log): {"file_id": "garbage", "offset": 3},
        "/other": {"offset": 1},
        "/third": {"file_id": "a:b:c", "offset": 1},
        "/fourth": {"file_id": "1:2:00ff", "offset": -5},
        "/fifth": {"rotated": "x"},
        "/sixth": {"rotated": [{"offset": 1}, "y"]},
    }
    with make([log], positions=bad, start_position="beginning") as tailer:
        assert texts(tailer.poll()) == [b"x"]
    assert "malformed" in caplog.text
    # what follows is said for the file's own start_position (it had always explained `end`)
    assert "it is read again from its start (sources[].start_position: beginning)" in caplog.text
    assert "`end` does not read" not in caplog.text
    caplog.clear()
    with make([log], positions=bad, start_position="end"):
        pass
    assert "`end` does not read the lines written while lograven was stopped" in caplog.text


@pytest.mark.parametrize("hole", [129, 3 * 64 * 1024 + 5])  # within one read, and across reads of 64 KiB
def test_nul_bytes_of_a_copytruncate_under_a_writer_without_append_are_skipped(
        tmp_path: Path, hole: int, caplog: pytest.LogCaptureFixture) -> None:
    """copytruncate under `app > app.log` (no O_APPEND): the writer goes on at its old offset, so the file
    starts with a hole of NULs. They were glued to the first line after it (a line that does not parse),
    or with a hole past max_line_bytes, handed out instead of it: the line was lost (review, 2026-12-07)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], start_position="beginning", max_line_bytes=100) as tailer, open(log, "r+b", buffering=0) as w:
        w.write(b"x" * (hole - 2) + b"\n")  # the writer's offset is now hole - 1
        w.write(b"\n")
        lines = tailer.poll()
        assert [len(x.data) for x in lines] == [100, 0]
        ack_all(tailer, lines)
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        w.write(b"first after the rotation\n")
        w.write(b"in\0 a line\n\0\0\n")  # NULs within a line stay; a line of NULs is empty
        lines = tailer.poll()
        assert texts(lines) == [b"first after the rotation", b"in\0 a line", b""]
        assert [x.offset for x in lines] == [hole, hole + 25, hole + 38]  # where they are in the file
        assert f"{hole} NUL bytes before the line at byte {hole} were skipped" in caplog.text
        ack_all(tailer, lines)
        assert tailer.positions()[str(log)]["offset"] == log.stat().st_size
        assert tailer.stats()[str(log)].bytes == 2 * hole + 25 + 11 + 3
        assert caplog.text.count("NUL bytes before") == 1


def test_a_checkpointed_file_that_cannot_be_looked_at_keeps_its_position(tmp_path: Path, monkeypatch) -> None:
    """The log's directory cannot be searched at a start (reset to 0700 by a package upgrade; simulated:
    the tests run as root): its saved position was forgotten, so once the directory was fixed the file
    was read again from its start (line 1 twice), or after another restart from its end (line 2 lost)
    (review, 2026-12-07). The position now waits, in the checkpoint too, until the file can be opened."""
    from lograven.tailer import GlobPathProvider

    log = tmp_path / "app.log"
    log.write_bytes(b"line 1\n")
    with make([log], start_position="end") as tailer:
        append(log, b"line 1b\n")
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    append(log, b"line 2\n")
    denied = {"on": True}
    real = GlobPathProvider.expand_checked

    def expand_checked(self):
        found, no, failed = real(self)
        if denied["on"] and str(log) in found:
            del found[str(log)]
            no[str(log)] = PermissionError(errno.EACCES, "Permission denied")
        return found, no, failed

    monkeypatch.setattr(GlobPathProvider, "expand_checked", expand_checked)
    with make([log], start_position="end", positions=saved) as tailer:
        assert tailer.poll() == []
        assert tailer.positions() == saved  # kept for the next start
        denied["on"] = False  # fixed while running
        assert texts(tailer.poll()) == [b"line 2"]
    denied["on"] = True
    with make([log], start_position="end", positions=saved) as tailer:
        assert tailer.poll() == []
        again = json.loads(json.dumps(tailer.positions()))
    assert again == saved
    denied["on"] = False  # fixed after another restart
    with make([log], start_position="end", positions=again) as tailer:
        assert texts(tailer.poll()) == [b"line 2"]


@pytest.mark.parametrize("limit", [None, 1])
def test_a_glob_reads_the_rest_of_a_file_rotated_while_stopped_before_the_new_file(
        tmp_path: Path, limit: int | None, caplog: pytest.LogCaptureFixture) -> None:
    """Patterns matching the rotated names too (`app.log*`): app.log rotated to app.log.1 while lograven
    was stopped. The new app.log's lines came before the rest of the old file (files were opened in name
    order), with a warning that app.log was "not the file recorded in the checkpoint" (review, 2026-12-07)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([f"{log}*"]) as tailer:
        append(log, b"old 1\n")
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    append(log, b"old 2\nold 3\n")
    log.rename(tmp_path / "app.log.1")
    append(log, b"new 1\nnew 2\n")
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([f"{log}*"], positions=saved) as tailer:
        got = [line for _ in range(6) for line in tailer.poll(max_lines=limit)]
        append(tmp_path / "app.log.1", b"old 4\n")  # its writer, late: read, after the new file's lines now
        got += tailer.poll()
    assert texts(got) == [b"old 2", b"old 3", b"new 1", b"new 2", b"old 4"]
    assert "not the file recorded in the checkpoint" not in caplog.text
    assert "is a new file since that rotation" in caplog.text


def test_a_device_renumbered_at_a_reboot_keeps_the_checkpointed_positions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """st_dev can change across a reboot (LVM device-mapper minors, btrfs subvolumes, a re-attached
    volume); simulated by the checkpoint carrying another number. Every file was taken for a new one
    and read again from its start, and an old file still being read was not found (review, 2026-12-07)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], start_position="beginning", rotate_wait=60.0) as tailer:
        append(log, b"old 1\nold 2\n")
        lines = tailer.poll()
        tailer.acknowledge_lines(lines[:1])  # old 2 handed out, not processed
        log.rename(tmp_path / "app.log.1")
        append(log, b"line 1\n")
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    entry = saved[str(log)]
    assert len(entry["rotated"]) == 1

    def renumber(file_id: str) -> str:
        dev, ino, fp = file_id.split(":")
        return f"{int(dev) + 7}:{ino}:{fp}"

    entry["file_id"] = renumber(entry["file_id"])
    entry["rotated"][0]["file_id"] = renumber(entry["rotated"][0]["file_id"])
    append(log, b"line 2\n")
    with make([log], start_position="beginning", positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"old 2", b"line 2"]
    assert "has another device number than at the checkpoint" in caplog.text


def test_old_files_of_a_symlinked_log_are_found_beside_its_target(tmp_path: Path) -> None:
    """sources name /var/log/app.log, a link to /opt/app/logs/application.log, which logrotate rotates
    there: the copy of a copytruncate and a file rotated while lograven was stopped were looked for beside
    the link only, and their unread lines lost (review, 2026-12-07)."""
    real_dir = tmp_path / "opt"
    real_dir.mkdir()
    real = real_dir / "application.log"
    real.write_bytes(b"")
    link = tmp_path / "app.log"
    link.symlink_to(real)
    with make([link], start_position="beginning") as tailer:
        append(real, b"line 1\n")
        ack_all(tailer, tailer.poll())
        append(real, b"line 2\n")
        shutil.copyfile(real, real_dir / "application.log.1")  # copytruncate, beside the target
        os.truncate(real, 0)
        append(real, b"line 3\n")
        lines = tailer.poll()
        assert texts(lines) == [b"line 2", b"line 3"]
        ack_all(tailer, lines)
        append(real, b"line 4\n")
        saved = json.loads(json.dumps(tailer.positions()))
    real.rename(real_dir / "application.log.2")  # rotated while lograven was stopped
    append(real, b"line 5\n")
    with make([link], start_position="beginning", positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"line 4", b"line 5"]


def test_an_unreadable_file_is_not_taken_for_one_created_while_stopped(tmp_path: Path, monkeypatch) -> None:
    """The checkpoint's empty entry (a path with no file) was also written for a file there that could not
    be opened (lograven not yet in group adm): after `usermod -aG adm lograven` and a restart, the whole
    file was read from its start, with start_position `end` (review of the change, 2026-12-07)."""
    log = tmp_path / "secure"
    log.write_bytes(b"".join(b"history %d\n" % i for i in range(5)))
    real_open = os.open
    deny = {"on": True}

    def fake_open(path, flags, *a, **k):  # EACCES on the file (the tests run as root)
        if deny["on"] and str(path) == str(log):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)
    with make([log], start_position="end") as tailer:
        assert tailer.poll() == []
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved == {}
    deny["on"] = False
    with make([log], start_position="end", positions=saved) as tailer:
        append(log, b"new after the restart\n")
        assert texts(tailer.poll()) == [b"new after the restart"]


def _numbered_rotation(directory: Path, keep: int = 3) -> None:
    """logrotate `rotate N`, create, no compression: the oldest goes, the others shift, a new empty log."""
    (directory / f"app.log.{keep}").unlink(missing_ok=True)
    for k in range(keep - 1, 0, -1):
        if (directory / f"app.log.{k}").exists():
            os.rename(directory / f"app.log.{k}", directory / f"app.log.{k + 1}")
    os.rename(directory / "app.log", directory / "app.log.1")
    (directory / "app.log").write_bytes(b"")


def test_a_glob_over_numbered_generations_is_read_at_once_after_a_rotation_while_stopped(tmp_path: Path) -> None:
    """app.log* over app.log and app.log.1-3, rotated while stopped: each generation waited for the next
    older one, released one per poll, so the new file's lines came polls later (review of the change,
    2026-12-07)."""
    for k in (3, 2, 1):
        (tmp_path / f"app.log.{k}").write_bytes(b"old %d\n" % k)
    (tmp_path / "app.log").write_bytes(b"live 1\n")
    with make([f"{tmp_path}/app.log*"], start_position="beginning") as tailer:
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    _numbered_rotation(tmp_path, keep=4)
    append(tmp_path / "app.log.1", b"live 2\n")
    append(tmp_path / "app.log", b"new 1\n")
    with make([f"{tmp_path}/app.log*"], start_position="beginning", positions=saved) as tailer:
        assert texts(tailer.poll()) == [b"live 2", b"new 1"]


def test_generations_of_empty_files_whose_inodes_come_round_are_still_read(tmp_path: Path) -> None:
    """A quiet log (empty files) under app.log*, rotated while stopped, the new app.log taking the freed
    inode of the deleted app.log.3 (ext4 reuses them; made certain here with a hard link): the checkpoint's
    empty app.log.3 "was" the new app.log, the generations waited for one another in a circle, and no
    line of the log was read again until a restart (review of the change, 2026-12-07)."""
    for name in ("app.log.3", "app.log.2", "app.log.1", "app.log"):
        (tmp_path / name).write_bytes(b"")
    with make([f"{tmp_path}/app.log*"], start_position="beginning") as tailer:
        tailer.poll()
        saved = json.loads(json.dumps(tailer.positions()))
    os.link(tmp_path / "app.log.3", tmp_path / "reused")
    _numbered_rotation(tmp_path)
    (tmp_path / "app.log").unlink()
    os.rename(tmp_path / "reused", tmp_path / "app.log")
    with make([f"{tmp_path}/app.log*"], start_position="beginning", positions=saved) as tailer:
        append(tmp_path / "app.log", b"line 1\n")
        append(tmp_path / "app.log.1", b"late line\n")
        assert sorted(texts(tailer.poll())) == [b"late line", b"line 1"]
        _numbered_rotation(tmp_path)
        append(tmp_path / "app.log", b"after the next rotation\n")
        assert texts(tailer.poll()) == [b"after the next rotation"]


def test_the_unread_rest_of_a_rotated_file_counts_in_its_path_s_backlog(tmp_path: Path) -> None:
    """lograven_file_lag_bytes is size - offset of the file at the path: right after a rotation that was the
    new file's few bytes, while 60 MB of the old one were still to read, so LogravenFallingBehind went quiet
    at every rotation (review, 2026-12-07). Stats now carry the old files' unread bytes (`behind`)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], start_position="beginning", rotate_wait=60.0) as tailer:
        append(log, b"".join(b"old line %04d\n" % i for i in range(100)))  # 14 bytes a line
        assert len(tailer.poll(max_lines=10)) == 10
        log.rename(tmp_path / "app.log.1")
        append(log, b"new 1\n")
        tailer.poll(max_lines=10)  # the rotation seen; ten more lines of the old file read
        st = tailer.stats()[str(log)]
        assert (st.offset, st.size, st.behind) == (0, 6, 80 * 14)
        from lograven.metrics import Metrics

        m = Metrics()
        m.set_file_position(str(log), st.offset, st.size, st.behind)
        assert m.file_lag.labels(file=str(log))._value.get() == 6 + 80 * 14
        while tailer.poll():
            pass
        st = tailer.stats()[str(log)]
        assert (st.offset, st.size, st.behind) == (6, 6, 0)


def test_a_nul_byte_in_a_checkpointed_path_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A NUL in a path key or a rotated file's `read_from` (a damaged checkpoint that is still JSON) made
    the Tailer raise ValueError at every start (review, 2026-12-07)."""
    log = tmp_path / "app.log"
    old = tmp_path / "app.log.1"
    log.write_bytes(b"new\n")
    old.write_bytes(b"read\nnot read\n")
    st = old.stat()
    with make([old], start_position="beginning") as tailer:  # the id of old with 5 bytes read
        fid = tailer.poll()[0].file_id
    rotated = {"file_id": fid, "offset": 5, "fingerprint_len": 14, "read_from": str(old) + "\0", "size": st.st_size}
    saved = {str(log): {"rotated": [rotated]}, str(tmp_path / "x\0y"): {"file_id": fid, "offset": 1}}
    with make([log], positions=saved, start_position="beginning") as tailer:
        got = texts(tailer.poll())
    assert "NUL byte in the path" in caplog.text
    assert got == [b"not read", b"new"]  # the old file found beside its path, as without read_from


@pytest.mark.parametrize("value", [float("inf"), float("nan"), json.loads("1e999"), json.loads("-1e999"), 1e300,
                                   1.5, "2", True])
@pytest.mark.parametrize("field", ["offset", "fingerprint_len", "rotated offset", "rotated fingerprint_len",
                                   "rotated size"])
def test_non_finite_or_absurd_checkpoint_numbers_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, field: str, value: float
) -> None:
    """{"offset": 1e999} is inf for json: int() raised OverflowError, and the daemon crashed at every start.
    A byte count that is no whole number ("2", true, 1.5) was taken as one: 1.5 read a file again from byte 1
    (a hostile-input review's 1,467 duplicate alerts). Each is ignored, and the warning says what follows."""
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n")
    with make([log], start_position="beginning") as tailer:
        ack_all(tailer, tailer.poll())
        entry = tailer.positions()[str(log)]
    rotated = {**entry, "file_id": "1:2:00ff", "read_from": str(tmp_path / "app.log.1"), "size": 2}
    saved = {str(log): {**entry, "rotated": [rotated]}}
    target = rotated if field.startswith("rotated ") else saved[str(log)]
    target[field.removeprefix("rotated ")] = value
    append(log, b"b\n")
    with make([log], positions=saved, start_position="beginning") as tailer:
        got = texts(tailer.poll())
    said = "the rest of that old file is not read" if field.startswith("rotated ") else "it is read again from its start"
    assert "malformed checkpoint position" in caplog.text and said in caplog.text
    assert got == ([b"b"] if field.startswith("rotated ") else [b"a", b"b"])


def test_acknowledgements_for_stale_generations_are_ignored(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"a\nb\n")
        old = tailer.poll()
        os.truncate(log, 0)
        append(log, b"cccccc\ndddddd\n")
        new = tailer.poll()
        ack_all(tailer, old)  # arrives late, after the truncation: offsets 2 and 4 mean nothing now
        assert tailer.positions()[str(log)]["offset"] == 0
        ack_all(tailer, new)
        assert tailer.positions()[str(log)]["offset"] == 14


# ----------------------------------------------------------------- watchdog


def _wait_in_thread(tailer: Tailer, timeout: float) -> tuple[threading.Event, list[float]]:
    done = threading.Event()
    elapsed: list[float] = []

    def run() -> None:
        start = time.monotonic()
        tailer.wait(timeout)
        elapsed.append(time.monotonic() - start)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, elapsed


def test_watchdog_event_wakes_wait_early(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], use_watchdog=True) as tailer:
        assert tailer.watchdog_alive
        tailer.wait(0)  # clear anything pending
        done, elapsed = _wait_in_thread(tailer, timeout=60)
        append(log, b"hello\n")
        assert done.wait(10), "wait() did not wake up on a write"
        assert elapsed[0] < 10
        assert texts(tailer.poll()) == [b"hello"]


def test_watchdog_wakes_on_a_new_file_matching_the_glob(tmp_path: Path) -> None:
    with make([tmp_path / "*.log"], use_watchdog=True) as tailer:
        tailer.wait(0)
        done, _ = _wait_in_thread(tailer, timeout=60)
        (tmp_path / "new.log").write_bytes(b"x\n")
        assert done.wait(10)
        assert texts(tailer.poll()) == [b"x"]


def test_dead_watchdog_observer_is_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], use_watchdog=True) as tailer:
        observer = tailer._waker._observer  # type: ignore[union-attr]
        observer.stop()
        observer.join()
        assert not tailer.watchdog_alive
        tailer.wait(0)  # notices and restarts it
        assert tailer.watchdog_alive and tailer._waker.restarts == 1  # type: ignore[union-attr]
        assert "restarting" in caplog.text
        tailer.wait(0)
        done, _ = _wait_in_thread(tailer, timeout=60)
        append(log, b"after restart\n")
        assert done.wait(10)
        assert texts(tailer.poll()) == [b"after restart"]


def test_watch_directory_created_later(tmp_path: Path) -> None:
    sub = tmp_path / "later"
    with make([sub / "*.log"], use_watchdog=True) as tailer:
        assert tailer.poll() == []
        sub.mkdir()
        tailer.wait(0)  # watches the new directory now
        done, _ = _wait_in_thread(tailer, timeout=60)
        (sub / "x.log").write_bytes(b"x\n")
        assert done.wait(10)
        assert texts(tailer.poll()) == [b"x"]


def test_without_watchdog_wait_times_out_and_wake_ends_it(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log], use_watchdog=False, poll_interval=0.01) as tailer:
        assert not tailer.watchdog_alive
        start = time.monotonic()
        tailer.wait()  # poll_interval
        assert time.monotonic() - start < 5
        done, _ = _wait_in_thread(tailer, timeout=60)
        tailer.wake()
        assert done.wait(10)
        append(log, b"polled\n")
        assert texts(tailer.poll()) == [b"polled"]


# ----------------------------------------------------------------- model-based test

EXAMPLES = int(os.environ.get("LOGRAVEN_TAILER_EXAMPLES", "1000"))
MAX_LINE = 48  # some generated lines are longer: truncation is part of the model
FINGERPRINT = 16  # short, so files are often shorter than their fingerprint
KEEP_ROTATED = 2  # numbered rotation: main.log.1, main.log.2, older ones are deleted


@dataclass(eq=False)
class ModelLine:
    seq: int
    data: bytes  # the whole line, without its newline
    file: ModelFile
    complete: bool = False  # its newline was written
    required: bool = True  # must be read (exactly once); False: may be lost, never duplicated
    forbidden: bool = False  # must never be read (existed before a first start at "end")
    received: bool = False


@dataclass(eq=False)
class ModelFile:
    name: str
    devino: tuple[int, int]
    names: set[str] = field(default_factory=set)  # every name it had: RawLine.path is one of them
    lines: list[ModelLine] = field(default_factory=list)
    partial: ModelLine | None = None  # the line being written
    partial_written: int = 0
    deleted: bool = False
    seen: bool = False  # the running tailer has opened it
    open_in_tailer: bool = False  # left the patterns while open; drained by the next poll
    known_rotated: bool = False  # a poll saw it leave the patterns while open: checkpointed until read
    last_seq: int = -1  # the last line read from it, for the order check


class TailerModel(RuleBasedStateMachine):
    """Random writes, rotations, truncations and restarts against a model of the files.

    Every line carries a unique sequence number, so the model can tell a line read
    twice, out of order, invented, or cut from a partial write. A line must be read
    exactly once unless an event legitimately loses it: a copytruncate before it was
    read, or its file leaving the patterns before the tailer ever opened it (or while
    the tailer was stopped, or before a poll noticed it), or being deleted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lograven-model-"))
        self.main = self.dir / "main.log"
        self.tailer: Tailer | None = None
        self.saved: dict | None = None
        self.seq = 0
        self.counter = 0
        self.files: list[ModelFile] = []
        self.by_seq: dict[int, ModelLine] = {}
        self.unacked: list[RawLine] = []
        self.old: ModelFile | None = None  # the most recently rotated file; its writer may go on

    # ---- the model

    def _in_patterns(self, mfile: ModelFile) -> bool:
        if mfile.deleted:
            return False
        return mfile.name == str(self.main) or (self.glob_mode and mfile.name.startswith(f"{self.main}."))

    def _accepts_lines(self, mfile: ModelFile) -> bool:
        """Whether a line completed in this file now is guaranteed to be read."""
        return self._in_patterns(mfile) or mfile.open_in_tailer

    def _leave_patterns(self, mfile: ModelFile) -> None:
        """A file renamed out of the patterns or deleted: only an open one can still be read."""
        if mfile.open_in_tailer:
            return
        mfile.open_in_tailer = self.tailer is not None and mfile.seen
        if not mfile.open_in_tailer:
            self._may_lose(mfile)

    def _may_lose(self, mfile: ModelFile) -> None:
        for line in mfile.lines:
            line.required = False

    def _mark_seen(self) -> None:
        for mfile in self.files:
            if self._in_patterns(mfile):
                mfile.seen = True

    def _new_main(self) -> ModelFile:
        self.main.write_bytes(b"")
        st = self.main.stat()
        mfile = ModelFile(str(self.main), (st.st_dev, st.st_ino), names={str(self.main)})
        self.files.append(mfile)
        return mfile

    def _line(self, mfile: ModelFile, pad: int) -> ModelLine:
        self.seq += 1
        data = b"L%06d-" % self.seq + b"abcdefghij" * (pad // 10) + b"x" * (pad % 10)
        line = ModelLine(self.seq, data, mfile)
        self.by_seq[line.seq] = line
        return line

    def _write(self, mfile: ModelFile, data: bytes) -> None:
        append(Path(mfile.name), data)

    def _target(self, old: bool) -> ModelFile:
        if old and self.old is not None and not self.old.deleted:
            return self.old
        return self.current

    def _rename(self, mfile: ModelFile, name: str) -> None:
        os.rename(mfile.name, name)
        mfile.name = name
        mfile.names.add(name)
        if not self._in_patterns(mfile):
            self._leave_patterns(mfile)

    def _start(self) -> None:
        self.tailer = Tailer(
            [f"{self.main}*" if self.glob_mode else str(self.main)],
            start_position=self.start_position,
            max_line_bytes=MAX_LINE,
            fingerprint_bytes=FINGERPRINT,
            positions=self.saved,
            use_watchdog=False,
            rotate_wait=0.0,
        )
        self._mark_seen()

    def _complete(self, mfile: ModelFile, line: ModelLine) -> None:
        line.complete = True
        line.required = self._accepts_lines(mfile)
        mfile.lines.append(line)

    # ---- rules

    @initialize(
        glob_mode=st.booleans(),
        numbered=st.booleans(),
        start_end=st.booleans(),
        initial=st.lists(st.integers(0, 60), max_size=3),
        initial_partial=st.one_of(st.none(), st.integers(0, 60)),
    )
    def setup(
        self, glob_mode: bool, numbered: bool, start_end: bool, initial: list[int], initial_partial: int | None
    ) -> None:
        self.glob_mode = glob_mode  # patterns: "main.log*" (rotated files too) or "main.log"
        self.numbered = numbered  # logrotate's main.log.1, .2 scheme, or unique names (dateext)
        self.start_position = "end" if start_end else "beginning"
        self.current = self._new_main()
        for pad in initial:
            line = self._line(self.current, pad)
            self._complete(self.current, line)
            line.forbidden, line.required = start_end, not start_end
            self._write(self.current, line.data + b"\n")
        if initial_partial is not None:
            self._start_partial(self.current, initial_partial, 3)
        self._start()

    @rule(old=st.booleans(), pads=st.lists(st.integers(0, 70), min_size=1, max_size=4))
    def write_lines(self, old: bool, pads: list[int]) -> None:
        mfile = self._target(old)
        if mfile.partial is not None:
            self._finish_partial(mfile)
        data = b""
        for pad in pads:
            line = self._line(mfile, pad)
            self._complete(mfile, line)
            data += line.data + b"\n"
        self._write(mfile, data)

    @rule(old=st.booleans(), pad=st.integers(0, 70), more=st.integers(1, 80))
    def write_partial(self, old: bool, pad: int, more: int) -> None:
        """Start a line without its newline, or write more of one (maybe finishing it)."""
        mfile = self._target(old)
        partial = mfile.partial
        if partial is None:
            self._start_partial(mfile, pad, more)
        elif mfile.partial_written + more < len(partial.data):
            self._write(mfile, partial.data[mfile.partial_written : mfile.partial_written + more])
            mfile.partial_written += more
        else:
            self._finish_partial(mfile)

    def _start_partial(self, mfile: ModelFile, pad: int, length: int) -> None:
        line = self._line(mfile, pad)
        mfile.partial, mfile.partial_written = line, min(length, len(line.data))
        self._write(mfile, line.data[: mfile.partial_written])

    def _finish_partial(self, mfile: ModelFile) -> None:
        partial = mfile.partial
        assert partial is not None
        self._write(mfile, partial.data[mfile.partial_written :] + b"\n")
        self._complete(mfile, partial)
        mfile.partial = None

    @rule()
    def rotate(self) -> None:
        """logrotate `create`: rename the file away (shifting numbered ones), create a new one."""
        if self.numbered:
            rotated = {m.name: m for m in self.files if not m.deleted and m is not self.current}
            for k in range(KEEP_ROTATED, 0, -1):
                mfile = rotated.get(f"{self.main}.{k}")
                if mfile is None:
                    continue
                if k == KEEP_ROTATED:
                    os.unlink(mfile.name)
                    mfile.deleted = True
                    self._leave_patterns(mfile)
                else:
                    self._rename(mfile, f"{self.main}.{k + 1}")
            name = f"{self.main}.1"
        else:
            self.counter += 1
            name = f"{self.main}.{self.counter}"
        self.old = self.current
        self._rename(self.current, name)
        self.current = self._new_main()

    @rule()
    def copytruncate(self) -> None:
        """logrotate `copytruncate`: copy the content outside the patterns, truncate in place."""
        self.counter += 1
        shutil.copyfile(self.main, self.dir / f"copy-{self.counter}.bak")
        os.truncate(self.main, 0)
        self._may_lose(self.current)  # unless it was read before the truncation
        self.current.partial = None  # its start is gone: never a complete line

    @precondition(lambda self: self.tailer is not None)
    @rule(limit=st.sampled_from([None, None, 1, 2, 5]))
    def poll(self, limit: int | None) -> None:
        assert self.tailer is not None
        lines = self.tailer.poll(max_lines=limit)
        if limit is not None:
            assert len(lines) <= limit
        for raw in lines:
            self._check_line(raw)
        self.unacked.extend(lines)
        for mfile in self.files:
            mfile.known_rotated = mfile.known_rotated or mfile.open_in_tailer
            mfile.open_in_tailer = False  # drained, or at least no longer guaranteed open
        self._mark_seen()
        if limit is None:
            missing = [n for n, line in self.by_seq.items() if line.complete and line.required and not line.received]
            assert not missing, f"lines never read: {missing}"

    def _unterminated(self, raw: RawLine) -> bool:
        """Whether `raw` is the line being written in a file the tailer let go (rotated out of the patterns
        or deleted), handed out as far as it was written: a file it lets go has no later bytes read."""
        dev, ino, _ = raw.file_id.split(":")
        for mfile in reversed(self.files):  # the newest file of that inode (a deleted one's inode is reused)
            if mfile.devino != (int(dev), int(ino)):
                continue
            if mfile.partial is None:
                return False
            written = mfile.partial.data[: mfile.partial_written]
            if raw.end - raw.offset != len(written) or raw.data != written[:MAX_LINE]:
                return False
            assert not self._in_patterns(mfile), f"unterminated line of a followed file handed out: {raw!r}"
            assert raw.path in mfile.names and raw.truncated == (len(written) > MAX_LINE)
            assert mfile.partial.seq > mfile.last_seq, f"out of order in {mfile.name}: {raw!r}"
            mfile.partial.required = False  # its rest, if ever written, is in a file no longer read
            return True
        return False

    def _check_line(self, raw: RawLine) -> None:
        if self._unterminated(raw):
            return
        assert raw.data[:1] == b"L" and raw.data[7:8] == b"-", f"not a line start: {raw!r}"
        line = self.by_seq.get(int(raw.data[1:7]))
        assert line is not None, f"invented line: {raw!r}"
        assert line.complete, f"partial line handed out: {raw!r}"
        assert not line.forbidden, f"line from before the start with start_position=end: {raw!r}"
        assert not line.received, f"line read twice: {raw!r}"
        assert raw.data == line.data[:MAX_LINE]
        assert raw.truncated == (len(line.data) > MAX_LINE)
        assert raw.end - raw.offset == len(line.data) + 1
        mfile = line.file
        dev, ino, _ = raw.file_id.split(":")
        assert (int(dev), int(ino)) == mfile.devino, f"wrong file id for {raw!r}"
        assert raw.path in mfile.names, f"{raw.path} was never a name of the file of {raw!r}"
        assert line.seq > mfile.last_seq, f"out of order in {mfile.name}: {raw!r}"
        mfile.last_seq = line.seq
        line.received = True

    @precondition(lambda self: self.tailer is not None)
    @rule(ack_fraction=st.sampled_from([1.0, 1.0, 0.5, 0.0]))
    def stop(self, ack_fraction: float) -> None:
        """Acknowledge what was processed, checkpoint, stop. Unacknowledged lines come again."""
        assert self.tailer is not None
        count = int(len(self.unacked) * ack_fraction)
        self.tailer.acknowledge_lines(self.unacked[:count])
        for raw in self.unacked[count:]:
            if raw.end - raw.offset == len(raw.data) + 1 or raw.truncated:  # not an unterminated line
                self.by_seq[int(raw.data[1:7])].received = False
        self.unacked.clear()
        self.saved = json.loads(json.dumps(self.tailer.positions()))
        self.tailer.close()
        self.tailer = None
        for mfile in self.files:
            mfile.last_seq = max((line.seq for line in mfile.lines if line.received), default=-1)
            mfile.seen = False
            if not self._in_patterns(mfile):
                mfile.open_in_tailer = False
                if mfile.deleted or not mfile.known_rotated:  # unreachable after a restart
                    self._may_lose(mfile)
                else:  # checkpointed as rotated: the restarted tailer finds it and reads what it owes
                    for line in mfile.lines:
                        line.required = line.required and not line.received

    @precondition(lambda self: self.tailer is None)
    @rule()
    def start(self) -> None:
        self._start()

    def teardown(self) -> None:
        if self.tailer is not None:
            self.tailer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TailerModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # the same examples on every run (CI must not fail by the draw); LOGRAVEN_TAILER_RANDOM=1 explores
    # new ones, as a soak does (with LOGRAVEN_TAILER_EXAMPLES=20000): its finds become tests below
    derandomize=not os.environ.get("LOGRAVEN_TAILER_RANDOM"),
)
test_tailer_model = TailerModel.TestCase


def _model_case_two_watchers_on_one_copy(s: TailerModel) -> None:
    s.setup(glob_mode=False, numbered=True, start_end=False, initial=[], initial_partial=None)
    s.write_partial(more=1, old=False, pad=0)
    s.rotate()
    s.rotate()
    s.poll(limit=None)
    s.stop(ack_fraction=0.5)
    s.write_partial(more=1, old=False, pad=0)
    s.rotate()
    s.start()
    s.poll(limit=None)


def _model_case_four_rotations_while_stopped(s: TailerModel) -> None:
    s.setup(glob_mode=False, numbered=True, start_end=False, initial=[], initial_partial=None)
    s.stop(ack_fraction=1.0)
    s.write_partial(more=1, old=False, pad=0)
    s.rotate()
    s.start()
    s.rotate()
    s.stop(ack_fraction=1.0)
    s.rotate()
    s.rotate()
    s.write_lines(old=False, pads=[0, 0, 0])
    s.rotate()
    s.rotate()
    s.start()
    s.poll(limit=5)


def _model_case_generations_released_one_per_poll(s: TailerModel) -> None:
    s.setup(glob_mode=True, numbered=True, start_end=False, initial=[], initial_partial=None)
    s.rotate()
    s.poll(limit=None)
    s.stop(ack_fraction=1.0)
    s.write_lines(old=False, pads=[0])
    s.rotate()
    s.start()
    s.poll(limit=None)


@pytest.mark.parametrize("case", [
    _model_case_two_watchers_on_one_copy,
    _model_case_four_rotations_while_stopped,
    _model_case_generations_released_one_per_poll,
])  # fmt: skip
def test_tailer_model_cases_found_by_a_random_run(case) -> None:
    """Cases the randomized model found (2026-12-07). The first stopped the reader with a KeyError: two
    draining watchers held one inode (the checkpoint's rotated file, and the copy of a file truncated
    while lograven was stopped), and closing the second found its entry gone. In the second, three
    inodes took turns: the checkpoint's old file (one byte, `L`) had its inode reused by the new
    main.log, which was taken for main.log truncated in place; its "copy", the first file beside it
    starting with `L`, was the checkpointed main.log rotated to main.log.2, which was also resumed as
    rotated while stopped: its lines were read twice."""
    s = TailerModel()
    try:
        case(s)
    finally:
        s.teardown()


@pytest.mark.parametrize("then", ["", "rotate", "write to the old file"])
def test_a_file_truncated_with_a_few_bytes_does_not_take_the_rotated_file_for_its_copy(then: str) -> None:
    """The model's failing cases (2026-12-07): main.log rotated to main.log.1 (read to its end), the new
    main.log holds one byte of a line when it is truncated in place. Its fingerprint is that byte, which
    main.log.1 also begins with: it was taken for the copy and its line read twice; also once renamed
    again to main.log.2, or written to by a writer still holding it."""
    state = TailerModel()
    try:
        state.setup(glob_mode=False, numbered=then == "rotate", start_end=False, initial=[], initial_partial=None)
        state.stop(ack_fraction=1.0)
        state.start()
        state.write_lines(old=False, pads=[0])
        state.rotate()
        state.write_partial(more=1, old=False, pad=0)
        state.poll(limit=None)
        state.copytruncate()
        if then == "rotate":
            state.rotate()
        elif then:
            state.write_lines(old=True, pads=[0])
        state.poll(limit=None)
    finally:
        state.teardown()


def test_a_busy_poll_does_not_rescan_every_file(tmp_path: Path) -> None:
    """While lines keep coming, the reader polls again at once. Each poll expanded the patterns and
    stat'ed and hashed the head of every followed file: with 330 files at 2,000 lines/s that was two
    thirds of the reader's time (90% of a core against 20% for one file). With a rescan interval the
    pass runs at most that often, reads go on from the open descriptors meanwhile, and nothing is
    missed: a rotation is seen at the next pass, and its old file's rest is read first."""
    logs = [tmp_path / f"app{i}.log" for i in range(5)]
    for f in logs:
        f.write_bytes(b"")
    clock = [0.0]
    with make([tmp_path / "*.log"], rescan_interval=1.0) as tailer:
        tailer._clock = lambda: clock[0]
        scans = []
        real = tailer._discover
        tailer._discover = lambda *a: scans.append(clock[0]) or real(*a)  # type: ignore[method-assign]
        got = []
        for step in range(40):  # 40 busy polls in 0.4 s: one pass
            clock[0] = step * 0.01
            append(logs[step % 5], f"line {step}\n".encode())
            got += texts(tailer.poll())
        assert len(scans) == 1 and len(got) == 40
        os.rename(logs[0], tmp_path / "app0.log.1")  # out of the glob
        append(tmp_path / "app0.log.1", b"late\n")
        logs[0].write_bytes(b"new\n")
        clock[0] = 0.5
        got = texts(tailer.poll())
        assert got == [b"late"] and len(scans) == 1  # the old file, still open, read on; no pass yet
        clock[0] = 1.0
        assert texts(tailer.poll()) == [b"new"] and len(scans) == 2  # the pass: the new file, from its start


def test_a_file_event_rescans_at_once(tmp_path: Path) -> None:
    """With file events, a created, moved or deleted file is seen at the next poll whatever the interval."""
    with make([tmp_path / "*.log"], use_watchdog=True, rescan_interval=3600.0) as tailer:
        tailer.poll()
        tailer.wait(0)
        done, _ = _wait_in_thread(tailer, timeout=60)
        (tmp_path / "new.log").write_bytes(b"x\n")
        assert done.wait(10)
        deadline = time.monotonic() + 10
        got = []
        while not got and time.monotonic() < deadline:  # the created event may come after the modify one
            got = texts(tailer.poll())
            time.sleep(0.05)
        assert got == [b"x"]


def test_between_rescans_a_file_truncated_and_written_past_its_offset_is_read_from_its_start(tmp_path: Path) -> None:
    """copytruncate, then more lines than lograven had read, all between two rescans: reading on from
    the old offset would hand out the middle of the new content (a line cut in two, earlier lines
    lost). A file whose size changed has its first bytes checked before it is read."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    clock = [0.0]
    with make([log], rescan_interval=3600.0) as tailer:
        tailer._clock = lambda: clock[0]
        tailer.poll()
        append(log, b"old 1\nold 2\n")
        assert texts(tailer.poll()) == [b"old 1", b"old 2"]
        append(log, b"old 3\n")
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, b"a much longer new first line\nnew 2\n")
        clock[0] = 1.0
        got = texts(tailer.poll()) + texts(tailer.poll())
        assert got == [b"old 3", b"a much longer new first line", b"new 2"]


def test_a_draining_file_renamed_back_between_rescans_is_not_read_again(tmp_path: Path) -> None:
    """A file renamed out of the glob drains; renamed back under it between two passes, a poll without a
    pass let it go on the last pass's word, and the next pass opened it as a new file: every line
    read twice (a review). A draining file is let go only just after a pass."""
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    clock = [0.0]
    with make([tmp_path / "*.log"], rotate_wait=5.0, rescan_interval=1.0) as tailer:
        tailer._clock = lambda: clock[0]
        got = []

        def poll(at: float) -> None:
            clock[0] = at
            got.extend(texts(tailer.poll()))

        poll(0.0)
        log.write_bytes(b"one\ntwo\n")
        poll(0.5)
        os.rename(log, tmp_path / "a.log.hold")  # out of the glob: draining
        poll(1.0)
        poll(4.2)
        poll(5.5)
        os.rename(tmp_path / "a.log.hold", tmp_path / "b.log")  # back under it
        for at in (6.1, 6.6, 7.0, 8.0):
            poll(at)
        assert got == [b"one", b"two"]


def _unlistable_dir(monkeypatch, directory: Path, denied: dict, *, stat_inside: bool = True,
                    scandir_errno: int = errno.EACCES) -> None:
    """`directory` cannot be listed while denied["on"] (simulated: the tests run as root): os.scandir of it
    fails with `scandir_errno`, os.listdir with EACCES, and, with `stat_inside`, os.stat of what is in it."""
    real_scandir, real_listdir, real_stat = os.scandir, os.listdir, os.stat
    here, inside = str(directory), str(directory) + os.sep

    def scandir(path="."):
        if denied["on"] and os.fspath(path) == here:
            raise OSError(scandir_errno, os.strerror(scandir_errno), os.fspath(path))
        return real_scandir(path)

    def listdir(path="."):
        if denied["on"] and os.fspath(path) == here:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_listdir(path)

    def stat_(path, *a, **k):
        if denied["on"] and stat_inside and os.fspath(path).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "stat", stat_)


def test_a_glob_in_a_directory_that_cannot_be_listed_keeps_its_saved_positions(
        tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture) -> None:
    """`/var/log/app/*.log` with app/ made 0700 root at a start: glob matches nothing and says nothing, so
    the pattern looked like one matching no file, its file's saved position was forgotten ("is gone") and
    the checkpoint got an empty entry: once the directory was fixed, the file was read again from its start
    (review, 2026-12-07). Now the directory is named, the position waits, in the checkpoint too.
    (Simulated: the tests run as root; the real check as another user is in test_service_units.py.)"""
    app = tmp_path / "app"
    app.mkdir()
    log = app / "x.log"
    log.write_bytes(b"line 1\n")
    pattern = str(app / "*.log")
    with make([pattern], start_position="beginning") as tailer:
        ack_all(tailer, tailer.poll())
        saved = json.loads(json.dumps(tailer.positions()))
    append(log, b"line 2\n")
    denied = {"on": True}
    _unlistable_dir(monkeypatch, app, denied)
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([pattern], start_position="beginning", positions=saved) as tailer:
        assert tailer.poll() == []
        assert tailer.positions() == saved  # kept for the next start, and no empty entry for the pattern
        assert tailer.stats()[str(app)].readable is False  # lograven_file_readable{file=".../app"} 0
        denied["on"] = False  # fixed while running
        assert texts(tailer.poll()) == [b"line 2"]
        assert tailer.stats()[str(app)].readable is True
    said = caplog.text
    assert f"cannot list {app}, the directory of {pattern}: permission denied" in said, said
    assert said.count("cannot list") == 1 and "can be listed again" in said
    assert "is gone" not in said
    denied["on"] = True
    with make([pattern], start_position="beginning", positions=saved) as tailer:
        assert tailer.poll() == []
        again = json.loads(json.dumps(tailer.positions()))
    assert again == saved
    denied["on"] = False  # fixed after another restart
    with make([pattern], start_position="beginning", positions=again) as tailer:
        assert texts(tailer.poll()) == [b"line 2"]


def test_the_permission_warning_gives_the_fix_that_works_for_the_files_mode(tmp_path: Path, monkeypatch) -> None:
    """`cannot read FILE: permission denied. Add the lograven user to the file's group (usermod -aG adm ...)`
    was said of RHEL's root:root 0600 /var/log/secure too, where no group helps (admin review, 2026-12-07);
    and "No group may read it" of a file whose directory may not be searched (review of that fix)."""
    import grp

    from lograven.tailer import _read_access_fix

    f = tmp_path / "secure"
    f.write_text("x\n")
    real_stat = os.stat

    def no_search(path, *a, **k):
        if os.fspath(path) == str(f):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(os, "stat", no_search)
        said = _read_access_fix(str(f))
    assert said.startswith("A directory on its path may not be searched") and f"setfacl -m u:lograven:x {tmp_path}" in said
    # the first directory it may not enter is named, through a link (setfacl on the link's name would
    # change its target, not the blocked directory; review, 2026-12-07)
    (tmp_path / "priv" / "app").mkdir(parents=True)
    (tmp_path / "logs").symlink_to(tmp_path / "priv" / "app")
    deep = tmp_path / "logs" / "x.log"
    real_access = os.access
    with monkeypatch.context() as m:
        m.setattr(os, "stat", lambda p, *a, **k: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied", str(p))))
        m.setattr(os, "access", lambda p, mode, **k: os.fspath(p) != str(tmp_path / "priv") and real_access(p, mode))
        said = _read_access_fix(str(deep))
    assert f"setfacl -m u:lograven:x {tmp_path / 'priv'})" in said, said
    if os.geteuid() != 0:
        pytest.skip("changing a file's group needs root")
    os.chown(f, 0, 0)
    f.chmod(0o600)
    said = _read_access_fix(str(f))
    assert said.startswith("No group may read it: give it an ACL (setfacl -m u:lograven:r ") and "usermod" not in said
    f.chmod(0o640)  # group root: joining it is no fix to suggest
    assert _read_access_fix(str(f)).startswith("No group may read it")
    try:
        adm = grp.getgrnam("adm").gr_gid
    except KeyError:
        pytest.skip("no group adm on this machine")
    os.chown(f, 0, adm)
    said = _read_access_fix(str(f))
    assert said.startswith("Add the lograven user to its group (usermod -aG adm lograven, then restart)"), said
    f.chmod(0o600)
    assert _read_access_fix(str(f)).startswith("No group may read it")


@pytest.mark.parametrize("case", ["denied", "no-descriptors", "glob-matches-it-now", "deleted-while-read"])
def test_a_rotated_files_position_waits_while_its_directory_cannot_be_listed(
        tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture, case: str) -> None:
    """The checkpoint's old file (app.log.1, rotated with lines not yet acknowledged) in a directory made
    0700 while lograven was stopped: it was said "gone" and its lines lost, although the file was there
    (review of today's fixes, 2026-12-07). Its position now waits, in the checkpoint too, and the rest
    of the old file is read before the new file's lines once the directory can be listed. The review of
    that: out of descriptors is no reason to give up either; a file the patterns match by then is
    resumed at its position (it was said gone and read from its start); a file deleted while it was read
    is said gone at once (it waited for ever)."""
    app = tmp_path / "app"
    app.mkdir()
    log = app / "app.log"
    log.write_bytes(b"l1\nl2\nl3\n")
    pattern = str(app / "*.log")
    with make([pattern], start_position="beginning") as tailer:
        got = tailer.poll()
        ack_all(tailer, got[:1])  # l2, l3 read but not acknowledged
        log.rename(app / "app.log.1")
        append(log, b"n1\n")
        tailer.poll(max_lines=0)
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved[str(log)].get("rotated"), saved
    if case == "deleted-while-read":
        saved[str(log)]["rotated"][0]["read_from"] = "(deleted)"
    if case == "glob-matches-it-now":
        pattern = str(app / "app.log*")
    denied = {"on": True}
    _unlistable_dir(monkeypatch, app, denied, scandir_errno=errno.EMFILE if case == "no-descriptors" else errno.EACCES)
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([pattern], start_position="beginning", positions=saved) as tailer:
        assert tailer.poll() == []
        kept = json.loads(json.dumps(tailer.positions()))
        if case == "deleted-while-read":
            assert "rotated" not in kept.get(str(log), {}) and "is gone" in caplog.text
            return
        assert kept[str(log)]["rotated"] == saved[str(log)]["rotated"], kept
        denied["on"] = False
        got = [line for _ in range(3) for line in tailer.poll()]
    assert texts(got) == [b"l2", b"l3", b"n1"], texts(got)
    assert "is gone" not in caplog.text and f"cannot look for the old file of {log}" in caplog.text


@pytest.mark.parametrize("pattern_kind", ["glob", "path"])
def test_a_checkpointed_file_rotated_while_stopped_into_a_directory_not_listable_is_read_later(
        tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture, pattern_kind: str) -> None:
    """app.log (l1 acknowledged, l2 l3 not) rotated to app.log.1 while lograven was stopped, its directory
    0700 (a glob) or --x (a path named) at the start: the position was forgotten as "gone" and l2, l3 were
    lost; with a glob, the saved position stayed in the checkpoint for ever (review, 2026-12-07). The rest
    of the old file is read once the directory can be listed (with a glob, before the new file)."""
    app = tmp_path / "app"
    app.mkdir()
    log = app / "app.log"
    log.write_bytes(b"l1\nl2\nl3\n")
    pattern = str(app / "*.log") if pattern_kind == "glob" else str(log)
    with make([pattern], start_position="beginning") as tailer:
        got = tailer.poll()
        ack_all(tailer, got[:1])
        saved = json.loads(json.dumps(tailer.positions()))
    log.rename(app / "app.log.1")
    append(log, b"n1\n")
    denied = {"on": True}
    # a glob's directory 0700: nothing in it can be looked at either; a path's --x: its files can
    _unlistable_dir(monkeypatch, app, denied, stat_inside=pattern_kind == "glob")
    caplog.set_level(logging.INFO, logger="lograven.tailer")
    with make([pattern], start_position="beginning", positions=saved) as tailer:
        got = tailer.poll()
        denied["on"] = False
        got += [line for _ in range(3) for line in tailer.poll()]
        left = json.loads(json.dumps(tailer.positions()))
    expected = [b"l2", b"l3", b"n1"] if pattern_kind == "glob" else [b"n1", b"l2", b"l3"]  # a path: its new file is there
    assert texts(got) == expected, texts(got)
    assert "is gone" not in caplog.text
    assert all(e.get("file_id") != saved[str(log)]["file_id"] for e in left.values())  # no stale entry left


def test_two_waiting_old_files_of_a_path_are_read_oldest_first(tmp_path: Path, monkeypatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Two old files of app.log in the checkpoint, both renamed again while lograven was stopped into a
    directory it could not list at the start: once it can, the newer one's rest was read first (each was
    put back before its path's first old file; review, 2026-12-07)."""
    app = tmp_path / "app"
    app.mkdir()
    log = app / "app.log"
    log.write_bytes(b"l1\nl2\nl3\n")
    pattern = str(app / "*.log")
    with make([pattern], start_position="beginning") as tailer:
        ack_all(tailer, tailer.poll()[:1])
        log.rename(app / "app.log.1")
        append(log, b"m1\nm2\n")
        tailer.poll()  # m1 m2 read, not acknowledged
        (app / "app.log.1").rename(app / "app.log.2")
        log.rename(app / "app.log.1")
        append(log, b"o1\n")
        tailer.poll(max_lines=0)
        saved = json.loads(json.dumps(tailer.positions()))
    assert len(saved[str(log)].get("rotated", [])) == 2, saved
    (app / "app.log.2").rename(app / "app.log.3")  # rotated again while stopped
    (app / "app.log.1").rename(app / "app.log.2")
    denied = {"on": True}
    _unlistable_dir(monkeypatch, app, denied)
    with make([pattern], start_position="beginning", positions=saved) as tailer:
        assert tailer.poll() == []
        denied["on"] = False
        got = texts([line for _ in range(4) for line in tailer.poll()])
    assert got.index(b"l3") < got.index(b"m1"), got
    assert [x for x in got if x in (b"l2", b"l3", b"m1", b"m2")] == [b"l2", b"l3", b"m1", b"m2"], got
    assert "Their lines are not read" not in caplog.text  # the newer old file waits its turn: it is read


def test_one_nul_byte_at_a_line_start_is_said_as_such(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A soak (2026-12-07): a line that began with one NUL byte was explained as "a file truncated in place
    under a writer that does not append", which sends an admin after logrotate for nothing."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        append(log, b"first\n\x00second\n")
        assert texts(tailer.poll()) == [b"first", b"second"]
    assert "1 NUL byte before the line at byte 7 was skipped (a line that begins with a NUL byte" in caplog.text


# ------------------------------------------------------------ acknowledgements reach their own generation

_HEADER = b"#fields " + b"f" * 291 + b"\n"  # 300 bytes that begin every generation (a fixed banner)


def _after_a_crash(log: Path, saved: dict) -> list[bytes]:
    """What a Tailer started from the checkpoint `saved` (a kill -9 after it) reads."""
    with make([log], positions=json.loads(json.dumps(saved))) as tailer:
        return texts(tailer.poll()) + texts(tailer.poll()) + texts(tailer.poll())


def test_a_copys_acknowledgement_never_advances_the_refilled_file(tmp_path: Path) -> None:
    """From a review: acknowledgements were routed by file id (device, inode, first 256 bytes), which a
    copytruncate's copy and the refilled file share when every generation begins with the same bytes (a
    banner, a field list). The copy's lines, acknowledged after the file was refilled, advanced the new
    file over lines never processed: a crash then lost those and read the copy's again. Each generation
    now hands out its own ack id (RawLine.ack_id)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        append(log, _HEADER + b"old 1\nold 2\n")
        old = tailer.poll()  # in flight
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, _HEADER + b"new 1\n")  # shorter than what was read: the truncation is seen
        new = tailer.poll()
        append(log, b"new 2\nnew 3\n")
        new += tailer.poll()  # read, not processed
        assert texts(new) == [_HEADER[:-1], b"new 1", b"new 2", b"new 3"]
        assert old[0].file_id == new[0].file_id and old[0].ack_id != new[0].ack_id
        tailer.acknowledge_lines(old)  # the copy's lines are processed
        saved = tailer.positions()
    assert saved[str(log)]["offset"] == 0 and "rotated" not in saved[str(log)]
    assert _after_a_crash(log, saved) == texts(new)  # before: [old 1, old 2 (again), new 3]: new 1 and 2 lost


def test_a_copys_acknowledgement_that_comes_early_releases_the_copy(tmp_path: Path) -> None:
    """The same, with the copy's lines acknowledged while the refilled file is still shorter than them:
    the acknowledgement had gone to the new file, been found beyond its end and dropped, so the copy stayed
    in every checkpoint and a crash read its processed lines again."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        append(log, _HEADER + b"old 1\nold 2\n")
        old = tailer.poll()
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, _HEADER + b"new 1\n")
        new = tailer.poll()
        tailer.acknowledge_lines(old)
        tailer.acknowledge_lines(new)
        tailer.poll()
        saved = tailer.positions()
    assert "rotated" not in saved[str(log)]
    assert saved[str(log)]["offset"] == new[-1].end
    assert _after_a_crash(log, saved) == []


def test_a_short_files_copy_and_its_refill_with_the_same_first_line(tmp_path: Path) -> None:
    """A file under the fingerprint's 256 bytes has the id of all of its bytes: a refill that begins with
    its first line had its id again, and the copy's first line's acknowledgement advanced it; a crash
    lost the refill's line."""
    log = tmp_path / "job.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        append(log, b"job started\n")
        old = tailer.poll()
        append(log, b"job done\n")
        old += tailer.poll()
        shutil.copyfile(log, tmp_path / "job.log.1")
        os.truncate(log, 0)
        append(log, b"job started\n")
        new = tailer.poll()  # not processed
        assert texts(new) == [b"job started"] and new[0].file_id == old[0].file_id
        tailer.acknowledge_lines(old)
        saved = tailer.positions()
    assert _after_a_crash(log, saved) == [b"job started"]  # before: nothing


def test_an_old_files_acknowledgement_never_reaches_a_new_file_with_its_inode(tmp_path: Path) -> None:
    """A rotated file let go with lines in flight (a failing sink holds their alerts), then deleted: the
    next file at the path can get its inode number (ext4 reuses it) and, with the same first bytes, its
    file id. The old lines' acknowledgement had advanced the new file over lines never processed."""
    log, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        append(log, _HEADER + b"g1 a\ng1 b\n")
        g1 = tailer.poll()  # in flight
        freed = os.stat(log).st_ino
        os.rename(log, rotated)
        log.write_bytes(_HEADER + b"g2 a\n")
        tailer.acknowledge_lines(tailer.poll())
        tailer.poll()
        os.unlink(rotated)  # g1 deleted (rotate 1)
        os.rename(log, rotated)
        log.write_bytes(b"")
        if os.stat(log).st_ino != freed:
            pytest.skip(f"this file system ({tmp_path}) did not give the new file the freed inode number")
        append(log, _HEADER + b"g3 a\ng3 b\ng3 c\n")
        g3 = [x for x in tailer.poll() if x.read_from is None]  # not processed
        assert texts(g3) == [_HEADER[:-1], b"g3 a", b"g3 b", b"g3 c"]
        assert g3[0].file_id == g1[0].file_id
        tailer.acknowledge_lines(g1)
        saved = tailer.positions()
    assert saved[str(log)]["offset"] == 0
    assert texts(g3) == [x for x in _after_a_crash(log, saved) if x in texts(g3)]


def test_a_reloads_reopened_file_takes_the_acknowledgements_of_its_lines_in_flight(tmp_path: Path) -> None:
    """A reload reopens the files where they were read (positions(read=...)); lines processed before it
    whose alerts a failing sink holds are acknowledged afterwards, with the ack ids of the old tailer. The
    reopened file takes them ("ids"), and its checkpoint advances."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        append(log, b"a1\na2\n")
        held = tailer.poll()  # processed, alerts held
        reopened = json.loads(json.dumps(tailer.positions(read={held[-1].ack_id: held[-1].end})))
    assert reopened[str(log)]["ids"] == [held[0].ack_id]
    with make([log], positions=reopened) as tailer:
        append(log, b"a3\n")
        assert texts(tailer.poll()) == [b"a3"]
        assert tailer.positions()[str(log)]["offset"] == 0
        tailer.acknowledge_lines(held)  # the sink delivered them
        assert tailer.positions()[str(log)]["offset"] == held[-1].end
        with pytest.raises(ValueError, match="not an ack id"):
            tailer.acknowledge(str(log), held[0].file_id, 3)  # a file id is no ack id


def test_a_copy_followed_itself_after_a_reload_takes_the_acknowledgements_of_its_lines(tmp_path: Path) -> None:
    """From a review: a copytruncate's copy with lines in flight, reopened by a reload whose pattern now
    matches it (`app.log` -> `app.log*`), is a followed file itself; the acknowledgements of its lines were
    looked for among old files only, its offset stayed 0 and a restart read them again."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    with make([log]) as tailer:
        tailer.poll()
        append(log, b"".join(b"line %d %s\n" % (i, b"x" * 40) for i in range(6)))
        held = tailer.poll()  # processed, their alerts held by a failing sink
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, b"new 1\n")
        new = tailer.poll()
        tailer.acknowledge_lines(new)
        read = {x.ack_id: x.end for x in held + new}
        reopened = json.loads(json.dumps(tailer.positions(read=read)))
    with make([str(tmp_path / "app.log*")], positions=reopened) as tailer:  # the reload
        for _ in range(3):
            tailer.poll()
        tailer.acknowledge_lines(held)  # the sink delivered them
        saved = json.loads(json.dumps(tailer.positions()))
    assert saved[str(tmp_path / "app.log.1")]["offset"] == (tmp_path / "app.log.1").stat().st_size
    with make([str(tmp_path / "app.log*")], positions=saved) as tailer:  # a restart
        assert texts(tailer.poll()) + texts(tailer.poll()) == []
