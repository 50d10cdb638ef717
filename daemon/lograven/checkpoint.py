"""Checkpoint: the daemon's resumable state (file positions, per-stream GRU states) as one JSON file.

Saving is atomic and durable (temp file in the same directory, fsync, rename, fsync of
the directory), so a crash leaves either the previous checkpoint or the new one. Loading
never raises: a missing file means a first start; a corrupt or foreign one is set aside
as ``<name>.corrupt-<timestamp>`` for inspection and the daemon starts fresh.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LogravenError
from .osutil import read_regular, whoami

log = logging.getLogger(__name__)

#: Written in every checkpoint; a file with another format or version is not loaded.
FORMAT = "lograven-checkpoint"
FORMAT_VERSION = 1

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


_CHUNK_CHARS = 1 << 20


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# What starting without a checkpoint means for the files (a hostile-input review: "starting without it" hid
# that the lines written while stopped were skipped)
WITHOUT_POSITIONS = ("without file positions, each file is read from sources[].start_position (`end`: lines written "
                     "while lograven was stopped are not read; `beginning`: all are read again)")


class Checkpointer:
    """Saves and loads one checkpoint file; `corrupt_count` counts files set aside."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt_count = 0
        self.saved_at: float | None = None  # wall-clock time the loaded checkpoint was written (load)

    def save(self, state: dict[str, Any], tick: Callable[[], None] = lambda: None) -> None:
        """Write `state` (JSON-serialisable) atomically; raise LogravenError if the disk is full or unwritable.

        `state["streams"]` may be a dict or an iterable of (key, entry) pairs: it is serialised entry by
        entry and written in chunks of about 1 MB, with `tick` (the systemd watchdog) called after each,
        so a checkpoint of very many streams neither blocks for long nor holds the whole document in
        memory. An entry that cannot be serialised raises before the old checkpoint is replaced."""
        streams = state.get("streams")
        rest = {k: v for k, v in state.items() if k != "streams"}
        head = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "saved_at": time.time()}, separators=(",", ":"))
        body = json.dumps(rest, separators=(",", ":"))
        pairs = streams.items() if isinstance(streams, dict) else (streams or ())
        if "streams" in state:  # the document up to the streams' first entry, and what closes it
            opening, closing = [head[:-1], ',"state":', body[:-1], "," if rest else "", '"streams":{'], "}}}"
        else:
            opening, closing, pairs = [head[:-1], ',"state":', body, "}"], "", ()
        directory = self.path.parent
        tmp: Path | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                chunk, size, first = opening, 0, True
                for key, entry in pairs:
                    piece = ("" if first else ",") + json.dumps(key) + ":" + json.dumps(entry, separators=(",", ":"))
                    first = False
                    chunk.append(piece)
                    size += len(piece)
                    if size >= _CHUNK_CHARS:
                        _write_all(fd, "".join(chunk).encode("utf-8"))
                        chunk, size = [], 0
                        tick()
                chunk.append(closing)
                _write_all(fd, "".join(chunk).encode("utf-8"))
                tick()
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            tmp = None
            _fsync_directory(directory)
        except BaseException as exc:
            if tmp is not None:
                try:
                    tmp.unlink()
                except OSError:
                    pass
            if not isinstance(exc, OSError):
                raise  # an entry that cannot be serialised: a bug, not the disk; the old checkpoint stays
            kept = " The previous checkpoint is kept." if os.path.isfile(self.path) else ""  # never raises
            if exc.errno in _DISK_FULL:
                raise LogravenError(
                    f"cannot save the checkpoint {self.path}: the disk holding {directory} is full "
                    f"({exc.strerror}); free space there or point state_dir at another filesystem.{kept}"
                ) from exc
            if os.path.isdir(self.path):
                raise LogravenError(f"cannot save the checkpoint {self.path}: a directory is in its place; "
                                    "move it away (lograven writes a file there)") from exc  # fmt: skip
            raise LogravenError(
                f"cannot save the checkpoint {self.path} in {directory}: {exc.strerror or exc}; "
                f"check that the directory exists and is writable by the user lograven runs as ({whoami()}) "
                f"(state_dir).{kept}"
            ) from exc

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none usable (never raises)."""
        self._remove_stale_temp_files()
        try:
            raw = read_regular(self.path)  # a FIFO blocked the start, deaf to SIGTERM
        except FileNotFoundError:
            return None
        except OSError as exc:
            fix = ("check its permissions (state_dir)" if exc.errno in (errno.EACCES, errno.EPERM)
                   else "remove it (lograven writes a new one)")
            log.warning("cannot read the checkpoint %s (%s); starting without it: %s. %s", self.path, exc, WITHOUT_POSITIONS,
                        fix[0].upper() + fix[1:])
            return None
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
            problem = _schema_problem(document)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            problem = f"not valid JSON ({exc})"
        if problem is None:
            state = document["state"]
            if state.get("streams") is not None and not isinstance(state["streams"], dict):
                # the GRU states only: the file positions stay (dropping them skipped, or re-read, every
                # line written while lograven was stopped)
                log.warning("the checkpoint %s: state.streams is not an object; its GRU states are dropped (streams "
                            "start afresh), its file positions are kept", self.path)  # fmt: skip
                state["streams"] = {}
            saved = document.get("saved_at")
            self.saved_at = float(saved) if isinstance(saved, (int, float)) and not isinstance(saved, bool) \
                and 0 < saved < 1e11 else None  # fmt: skip
            return document["state"]
        self._set_aside(problem)
        return None

    def _set_aside(self, problem: str) -> None:
        self.corrupt_count += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        counter = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{counter}")
            counter += 1
        try:
            os.replace(self.path, target)
        except OSError as exc:
            log.warning("the checkpoint %s is unusable (%s) and could not be moved aside (%s); "
                        "starting without it: %s", self.path, problem, exc, WITHOUT_POSITIONS)
            return
        log.warning("the checkpoint %s is unusable (%s); kept it as %s and starting without it: %s",
                    self.path, problem, target, WITHOUT_POSITIONS)

    def _remove_stale_temp_files(self) -> None:
        """Temp files left by a crash during save() are useless: the rename never happened."""
        try:
            leftovers = list(self.path.parent.glob(f".{self.path.name}.*.tmp"))
        except OSError:
            return
        for leftover in leftovers:
            try:
                leftover.unlink()
                log.debug("removed the unfinished checkpoint %s", leftover)
            except OSError:
                pass


def _no_constant(name: str) -> None:
    """json.loads hook: NaN and Infinity are not JSON, and no checkpoint field may hold them. They are
    read as null, which the field's own check refuses: one stream's bad time drops that stream (it set
    the whole file aside, its file positions with it)."""
    return None


def _finite_float(text: str) -> float | None:
    """json.loads hook: a number too large for a float (1e999) is a damaged value, not infinity: null."""
    value = float(text)
    return value if math.isfinite(value) else None


def _schema_problem(document: Any) -> str | None:
    """What is wrong with a decoded checkpoint document, or None."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("format") != FORMAT:
        return f"format is {document.get('format')!r}, expected {FORMAT!r}"
    if document.get("version") != FORMAT_VERSION:
        return f"version {document.get('version')!r}, this lograven reads version {FORMAT_VERSION}"
    state = document.get("state")
    if not isinstance(state, dict):
        return "no state object"
    positions = state.get("positions")
    if positions is not None and not (
        isinstance(positions, dict) and all(isinstance(v, dict) or v is None for v in positions.values())
    ):
        return "state.positions is not an object of objects (source -> file -> position)"
    return None


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A float32 array as JSON: shape plus base64 of its little-endian bytes (bit-exact for float32)."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"encode_array takes a numeric array, got dtype {array.dtype}")
    little = np.asarray(array, dtype="<f4")  # not ascontiguousarray: it turns 0-d into 1-d
    return {
        "dtype": "float32",
        "shape": list(little.shape),
        "data": base64.b64encode(little.tobytes(order="C")).decode("ascii"),
    }


def decode_array(encoded: dict[str, Any]) -> np.ndarray:
    """The array `encode_array` encoded, as a writable native float32 array; ValueError if malformed."""
    try:
        dtype = encoded["dtype"]
        shape = encoded["shape"]
        data = encoded["data"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an encoded array: {exc!r}") from exc
    if dtype != "float32":
        raise ValueError(f"unsupported encoded array dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"bad encoded array shape {shape!r}")
    if not isinstance(data, str):
        raise ValueError("encoded array data must be a base64 string")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"encoded array data is not base64: {exc}") from exc
    count = math.prod(shape)
    if len(raw) != 4 * count:
        raise ValueError(f"encoded array holds {len(raw)} bytes, shape {shape} needs {4 * count}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
