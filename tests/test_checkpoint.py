"""Checkpointer: atomic saves, corrupt files set aside, full disks, arrays bit-exact."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from lograven import checkpoint
from lograven.checkpoint import FORMAT, FORMAT_VERSION, Checkpointer, decode_array, encode_array
from lograven.errors import LogravenError


def _state() -> dict:
    return {
        "positions": {"/var/log/messages": {"file_id": "2049:1234:0123456789abcdef", "offset": 4096}},
        "streams": {"/var/log/messages": encode_array(np.arange(6, dtype=np.float32).reshape(2, 3))},
    }


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_save_then_load_roundtrips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "state" / "checkpoint.json")  # the directory is created
    ckpt.save(_state())
    assert ckpt.load() == _state()
    assert _siblings(ckpt.path) == []
    document = json.loads(ckpt.path.read_text())
    assert document["format"] == FORMAT and document["version"] == FORMAT_VERSION


def test_save_replaces_the_previous_checkpoint(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    ckpt.save({"n": 1})
    ckpt.save({"n": 2})
    assert Checkpointer(ckpt.path).load() == {"n": 2}


def test_missing_file_is_a_first_start(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    assert ckpt.load() is None
    assert ckpt.corrupt_count == 0


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": "lograven-checkpoint", "version": 1, "state": {"posi',  # cut short by a crash
        b"\xff\xfe\x00garbage",  # not even UTF-8
        b"[1, 2, 3]",  # JSON, not an object
        json.dumps({"format": FORMAT, "version": FORMAT_VERSION + 1, "state": {}}).encode(),
        json.dumps({"format": "something-else", "version": FORMAT_VERSION, "state": {}}).encode(),
        json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "state": [1]}).encode(),
        # hand-edited or half-restored: these crashed the daemon before (a restart loop under systemd)
        json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "state": {"positions": "x"}}).encode(),
        json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "state": {"positions": {"0": "x"}}}).encode(),
    ],
    ids=["partial", "binary", "array", "newer-version", "foreign", "state-not-object", "positions-string",
         "source-positions-string"],
)
def test_unusable_file_is_set_aside_counted_and_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_bytes(content)
    ckpt = Checkpointer(path)
    assert ckpt.load() is None
    assert ckpt.corrupt_count == 1
    assert not path.exists()
    kept = _siblings(path)
    assert len(kept) == 1 and kept[0].startswith("checkpoint.json.corrupt-")
    assert (tmp_path / kept[0]).read_bytes() == content  # kept as it was, for inspection
    assert str(path) in caplog.text
    # what starting without it means for the files (a review: lines written while stopped were skipped, unsaid)
    assert "lines written while lograven was stopped are not read" in caplog.text
    # The next start finds no checkpoint at all, and a new one can be written.
    assert ckpt.load() is None and ckpt.corrupt_count == 1
    ckpt.save({"ok": True})
    assert ckpt.load() == {"ok": True}


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"format": "lograven-checkpoint", "version": 1, "state": {"positions": {"0": {"/a": {"offset": 7}}}, '
     b'"streams": [1]}}', {"positions": {"0": {"/a": {"offset": 7}}}, "streams": {}}),
    # numbers no checkpoint holds (int() of them raised OverflowError at every start): null, which the
    # field's own check refuses (one position, or the GRU states), not the whole file
    (b'{"format": "lograven-checkpoint", "version": 1, "state": {"positions": {"0": {"/b": {"offset": 7}}}, '
     b'"streams": {"s": {"h": {}, "seen": 1e999, "at": NaN}}}}',
     {"positions": {"0": {"/b": {"offset": 7}}}, "streams": {"s": {"h": {}, "seen": None, "at": None}}}),
    (b'{"format": "lograven-checkpoint", "version": 1, "state": {"positions": {"0": {"/a": {"offset": NaN}, '
     b'"/b": {"offset": 7}}}}}', {"positions": {"0": {"/a": {"offset": None}, "/b": {"offset": 7}}}}),
    (b'{"format": "lograven-checkpoint", "version": 1, "state": {"positions": {"0": {"/a": {"offset": -Infinity}}}}}',
     {"positions": {"0": {"/a": {"offset": None}}}}),
], ids=["streams-array", "huge-number", "nan", "infinity"])
def test_a_bad_part_of_the_state_loses_that_part_only(tmp_path: Path, content: bytes, expected: dict,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """`streams` not an object, or a NaN in one stream's time, set the whole file aside, its file positions
    with them: with start_position end every line written while lograven was stopped was skipped (bundle
    review, 2026-12-07). The positions are kept; what is bad is null (refused by its own check: the tailer
    ignores that position, the service drops the GRU states) or, for `streams`, empty."""
    path = tmp_path / "checkpoint.json"
    path.write_bytes(content)
    ckpt = Checkpointer(path)
    assert ckpt.load() == expected
    assert ckpt.corrupt_count == 0 and path.exists()


def test_a_checkpoint_that_is_a_fifo_does_not_block_the_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """state_dir/checkpoint.json as a FIFO: `run` hung at start, deaf to SIGTERM (bundle review, 2026-12-07)."""
    from conftest import call_within

    path = tmp_path / "checkpoint.json"
    os.mkfifo(path)
    assert call_within(lambda: Checkpointer(path).load()) is None
    assert "not a regular file" in caplog.text and "Remove it (lograven writes a new one)" in caplog.text


def test_two_corrupt_files_in_the_same_second_are_both_kept(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    ckpt = Checkpointer(path)
    for content in (b"{", b"{{"):
        path.write_bytes(content)
        assert ckpt.load() is None
    assert ckpt.corrupt_count == 2
    assert sorted((tmp_path / name).read_bytes() for name in _siblings(path)) == [b"{", b"{{"]


def test_leftover_temp_file_from_a_crash_is_removed(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    ckpt.save({"n": 1})
    leftover = tmp_path / ".checkpoint.json.999.123.tmp"
    leftover.write_bytes(b'{"half')
    assert ckpt.load() == {"n": 1}
    assert not leftover.exists()


def _fail_writes_to_temp_files(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr(checkpoint.os, "write", write)


def test_full_disk_raises_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    ckpt.save({"n": 1})
    before = ckpt.path.read_bytes()
    _fail_writes_to_temp_files(monkeypatch, errno.ENOSPC)
    with pytest.raises(LogravenError) as info:
        ckpt.save({"n": 2})
    message = str(info.value)
    assert str(tmp_path) in message and "full" in message and "The previous checkpoint is kept" in message
    monkeypatch.undo()
    assert ckpt.path.read_bytes() == before
    assert _siblings(ckpt.path) == []  # the temp file is gone
    assert ckpt.load() == {"n": 1}


def test_unwritable_directory_raises_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    _fail_writes_to_temp_files(monkeypatch, errno.EACCES)
    with pytest.raises(LogravenError, match="writable"):
        ckpt.save({"n": 1})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_directory_in_the_checkpoints_place_is_named(tmp_path: Path) -> None:
    """It said "check that the directory exists and is writable ... The previous checkpoint is kept":
    neither was the problem, and there was no previous checkpoint."""
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    ckpt.path.mkdir()
    with pytest.raises(LogravenError) as info:
        ckpt.save({"n": 1})
    assert "a directory is in its place; move it away" in str(info.value)
    assert "previous checkpoint" not in str(info.value)
    assert ckpt.path.is_dir() and [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]


def test_unserialisable_state_does_not_touch_the_previous_checkpoint(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoint.json")
    ckpt.save({"n": 1})
    with pytest.raises(TypeError):
        ckpt.save({"array": np.zeros(2)})  # arrays must go through encode_array
    assert ckpt.load() == {"n": 1}
    assert _siblings(ckpt.path) == []


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4), (2, 1, 5)])
def test_arrays_roundtrip_bit_exact(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    array = bits.view(np.float32)  # every bit pattern: NaN payloads, infinities, -0.0, subnormals
    encoded = json.loads(json.dumps(encode_array(array)))
    decoded = decode_array(encoded)
    assert decoded.dtype == np.float32 and decoded.shape == shape
    assert np.array_equal(decoded.view(np.uint32), bits)
    decoded[...] = 0  # writable, not a view of the base64 buffer


def test_special_values_and_byte_order() -> None:
    values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38], dtype=np.float32)
    assert np.array_equal(decode_array(encode_array(values)).view(np.uint32), values.view(np.uint32))
    big_endian = values.astype(">f4")
    assert np.array_equal(decode_array(encode_array(big_endian)).view(np.uint32), values.view(np.uint32))


def test_non_contiguous_arrays_keep_their_logical_order() -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for view in (base.T, base[::2, 1::3], np.asfortranarray(base)):
        assert np.array_equal(decode_array(encode_array(view)), view)


def test_other_dtypes_are_stored_as_float32() -> None:
    decoded = decode_array(encode_array(np.array([[1, 2], [3, 4]], dtype=np.int64)))
    assert decoded.dtype == np.float32
    assert decoded.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError):
        encode_array(np.array(["a"], dtype=object))


@pytest.mark.parametrize(
    "encoded",
    [
        {"dtype": "float32", "shape": [3], "data": "AAAAAA=="},  # 4 bytes for 3 floats
        {"dtype": "float64", "shape": [1], "data": "AAAAAAAAAAA="},
        {"dtype": "float32", "shape": [-1], "data": ""},
        {"dtype": "float32", "shape": [1], "data": "not base64!"},
        {"shape": [1], "data": "AAAAAA=="},
        ["not", "a", "dict"],
    ],
)
def test_malformed_encoded_arrays_raise_value_error(encoded: object) -> None:
    with pytest.raises(ValueError):
        decode_array(encoded)  # type: ignore[arg-type]


def test_an_unsearchable_state_dir_is_a_user_error_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a directory that cannot be searched, Path.is_file raises PermissionError: checked inside the
    error handler, it escaped it and stopped the daemon instead of "checkpoint not written"."""
    ckpt = Checkpointer(tmp_path / "checkpoint.json")

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint.os, "open", denied)
    monkeypatch.setattr(Path, "is_file", denied)
    monkeypatch.setattr(Path, "is_dir", denied)
    with pytest.raises(LogravenError, match="Permission denied; check that the directory exists and is writable"):
        ckpt.save({"n": 1})
