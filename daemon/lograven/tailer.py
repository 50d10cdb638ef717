"""File source: follow log files line by line through rotation and truncation.

The parts are named after the concepts they own (as in Vector's file source):

- ``GlobPathProvider``: which paths to follow; glob patterns expanded on every poll.
- ``Fingerprinter``: what makes a file the same file: ``(st_dev, st_ino)`` plus a
  hash of its first bytes, so a reused inode or a file rewritten in place is not
  mistaken for the one we were reading.
- ``FileWatcher``: one open file, its byte offsets and its held-back partial line.
- ``DirectoryWaker``: watchdog wake-ups. Stat polling is the source of truth; an
  event only ends ``Tailer.wait()`` early.
- ``Tailer``: the loop that ties them: discovery, rotation, reading, positions.

Delivery is at-least-once: ``positions()`` reports, per file, the byte offset up to
which the caller has *acknowledged* lines, and a restarted ``Tailer`` resumes there.
That includes a rotated file not yet read and acknowledged to its end: a restarted
``Tailer`` finds it again (by identity, next to its old name) and reads the rest of it.
"""

from __future__ import annotations

import errno
import functools
import glob
import hashlib
import itertools
import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from .errors import LogravenError
from .osutil import COMPRESSED_SUFFIXES, COMPRESSION_MAGIC_BYTES, acl_user, compression_of, glob_matches, may_become_compressed, rotated_generations

log = logging.getLogger(__name__)

#: Bytes read per system call; also the most a reader holds beyond max_line_bytes.
CHUNK_BYTES = 64 * 1024
#: The first byte that is not NUL: a line never starts with NUL bytes (see FileWatcher.read).
_NOT_NUL = re.compile(rb"[^\x00]")
_NUL_BLOCK = bytes(4096)
#: Stats of paths that have not been seen for this long are forgotten (bounds label cardinality).
STATS_RETENTION_SECONDS = 3600.0
#: Of an old file read to its end, this many first bytes tell it from a copy that reuses its inode.
READ_OLD_BYTES = 4096
#: Closed rotated files whose lines still await acknowledgement: at most this many are remembered.
MAX_RETIRED = 64

#: "Too many open files" and other failures to look at a file or directory are logged at most this often.
WARN_INTERVAL_SECONDS = 60.0
#: Checkpointed offsets and sizes beyond this (off_t's maximum) are malformed, as are inf and nan.
MAX_CHECKPOINT_OFFSET = 2**63 - 1
#: Checkpointed fingerprint lengths beyond this (and the configured fingerprint size) are malformed.
MAX_CHECKPOINT_FINGERPRINT = 1 << 20

START_POSITIONS = ("end", "beginning")
_GLOB_MAGIC = frozenset("*?[")
# glob.glob() matches nothing in a directory that is missing: not a failed expansion
_NOTHING_TO_LIST = frozenset({errno.ENOENT, errno.ENOTDIR})
# nor in one that may not be read; but then what it holds is not known (GlobPathProvider.unlistable)
_NOT_ALLOWED = frozenset({errno.EACCES, errno.EPERM})
# os.stat() of a followed path: the file is not there any more
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


@dataclass(slots=True)
class RawLine:
    """One complete line read from a file."""

    path: str
    file_id: str  # the file's identity, as in positions(): device, inode, fingerprint of its first bytes
    offset: int  # byte offset of the line start
    end: int  # offset after the newline
    data: bytes  # without the newline, truncated to max_line_bytes
    truncated: bool
    # where the file is now, when that is not `path`: the rest of a rotated file (`messages.1`), or
    # "(deleted)"; `offset` is in that file. None while the file is at `path`.
    read_from: str | None = None
    # what Tailer.acknowledge() takes: this generation of the file, and no other. A file_id is not
    # enough: a copytruncate's copy and the refilled file, or a file and a later one given its freed
    # inode, can have the same (a review: an acknowledgement of the copy's lines advanced the new
    # file over lines never processed, lost at a crash)
    ack_id: str = ""


@dataclass
class FileStats:
    """Counters and gauges for one path, exported as Prometheus metrics by the daemon."""

    lines: int = 0  # lines handed out
    bytes: int = 0  # bytes consumed, newlines and skipped lines included
    truncated_lines: int = 0  # lines longer than max_line_bytes
    unterminated_lines: int = 0  # lines handed out without their newline (idle too long, or a rotated file's last)
    skipped_lines: int = 0  # lines dropped by the skip predicate
    rotations: int = 0  # the file at this path was renamed away or replaced
    truncations: int = 0  # the file shrank or was rewritten in place (copytruncate)
    unread_bytes: int = 0  # lost to a truncation before they were read, with no copy beside the file
    read_errors: int = 0  # failures to open or read (permission denied, I/O errors)
    offset: int = 0  # bytes of the current file handed out
    size: int = 0  # size of the current file at the last poll
    behind: int = 0  # bytes not yet read of the path's old (rotated) files still being read
    readable: bool = True  # False while the file cannot be opened


def _kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for messages."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def has_magic(text: str) -> bool:
    """Whether a path has glob characters (`*`, `?`, `[`): a pattern, not a named file."""
    return any(c in _GLOB_MAGIC for c in text)


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    """Read up to `length` bytes at `offset`, fewer only at end of file."""
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b"".join(parts)


def _line_start_before(fd: int, size: int) -> tuple[int, bool]:
    """Start of the line being written at `size`, so "end" never starts mid-line.

    Looks back one chunk; for a longer unfinished line returns (size, True): the
    rest of that line is to be dropped rather than handed out as a fragment.
    """
    if size == 0:
        return 0, False
    low = max(0, size - CHUNK_BYTES)
    tail = _pread_full(fd, size - low, low)
    newline = tail.rfind(b"\n")
    if newline >= 0:
        return low + newline + 1, False
    return (0, False) if low == 0 else (size, True)


def _current_name(fd: int, path: str) -> str | None:
    """The name an open file has now, if it is not `path` (Linux: /proc/self/fd); "(deleted)" for a
    deleted file; None when it is still `path` or cannot be told."""
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if name.endswith(" (deleted)"):
        return "(deleted)"
    return None if name == path else name


def _list_error(directory: str) -> OSError | None:
    """The error opening `directory` for listing, unless it is missing."""
    try:
        with os.scandir(directory):
            pass
    except OSError as exc:
        if exc.errno in _NOTHING_TO_LIST:
            return None
        return exc
    return None


def is_fd_limit(exc: BaseException) -> bool:
    """Whether an error is "too many open files" (EMFILE: this process; ENFILE: the system)."""
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


def _read_access_fix(path: str) -> str:
    """How to let lograven's user read `path`: its group, when the group may read it (Debian's root:adm
    0640); else an ACL (RHEL's root:root 0600, where no group helps)."""
    import grp

    try:
        st = os.stat(path)
        group = grp.getgrgid(st.st_gid).gr_name if st.st_mode & stat.S_IRGRP and st.st_gid != 0 else None
    except PermissionError:  # a directory on the way may not be searched: no ACL on the file helps
        real = os.path.realpath(path)  # through links: setfacl on a link's name changes its target
        blocked = os.path.dirname(real)
        d = os.sep
        for part in real.split(os.sep)[1:-1]:  # the first directory from / it may not enter
            d = os.path.join(d, part)
            if not os.access(d, os.X_OK):
                blocked = d
                break
        return ("A directory on its path may not be searched: give lograven's user search (x) permission on it "
                f"(e.g. setfacl -m u:{acl_user()}:x {blocked}); see docs/operations.md, Permissions")
    except (OSError, KeyError):
        group = None
    acl = f"give it an ACL (setfacl -m u:{acl_user()}:r {path}, and a default ACL on its directory for the files rotation creates)"
    if group is None:
        return f"No group may read it: {acl}; see docs/operations.md, Permissions"
    return f"Add the {acl_user()} user to its group (usermod -aG {group} {acl_user()}, then restart), or {acl}"


class GlobPathProvider:
    """Expands glob patterns to the regular files they match, on every call."""

    def __init__(self, patterns: Iterable[str], exclude: Iterable[str] = ()) -> None:
        """`exclude`: the patterns of earlier sources. A file they match is theirs, not this one's
        (two sources over one file would learn it twice and score every line twice)."""
        self.patterns = [os.path.abspath(os.path.expanduser(p)) for p in patterns]
        self._exclude = GlobPathProvider(exclude) if exclude else None
        # The patterns whose directory this process may not list, at the last expansion: pattern ->
        # the error (its filename the directory). They match nothing, but their files may be there.
        self.unlistable: dict[str, OSError] = {}
        # The paths named without a glob that are something else than a file at the last expansion (a
        # directory, a FIFO): path -> what it is
        self.not_files: dict[str, str] = {}

    def expand(self) -> tuple[dict[str, os.stat_result], dict[str, OSError]]:
        """Matched regular files with their stat, and paths that could not be stat'ed.

        Directories, sockets and FIFOs are ignored; symlinks are followed.
        """
        found, denied, _failed = self.expand_checked()
        return found, denied

    def expand_checked(
        self,
    ) -> tuple[dict[str, os.stat_result], dict[str, OSError], dict[str, OSError]]:
        """As `expand`, plus the patterns whose directory could not be listed, with the error.

        glob.glob() says nothing when it cannot list a directory: out of file descriptors
        (EMFILE, ENFILE), it returns fewer files or none. The directory a glob starts from is
        opened first to tell that case; a pattern whose directory fails so is not expanded,
        and its files are missing from the result: the expansion is incomplete. A directory
        that does not exist is no error (glob matches nothing there); one that may not be read
        is none either, and its pattern is in `unlistable` (what it holds is not known).
        """
        found: dict[str, os.stat_result] = {}
        denied: dict[str, OSError] = {}
        failed: dict[str, OSError] = {}
        taken: set[str] = set()
        if self._exclude is not None:
            theirs, their_denied, their_failed = self._exclude.expand_checked()
            taken = set(theirs) | set(their_denied)
            failed.update(their_failed)  # not knowing theirs, this expansion is not complete either
        self.unlistable = {}
        self.not_files = {}
        for pattern in self.patterns:
            if has_magic(pattern):
                root = self.glob_root(pattern)[0]
                error = _list_error(root)
                if error is not None and error.errno in _NOT_ALLOWED:
                    error.filename = error.filename or root
                    self.unlistable[pattern] = error
                    continue
                if error is not None:
                    failed[pattern] = error
                    continue
                names = sorted(glob.glob(pattern, recursive="**" in pattern))
            else:
                names = [pattern]
            for name in names:
                if name in found or name in taken:
                    continue
                try:
                    st = os.stat(name)
                except PermissionError as exc:
                    denied[name] = exc
                    continue
                except OSError:  # vanished meanwhile, dangling symlink
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[name] = st
                elif name == pattern:  # a path named in the sources (no glob) that is no file now
                    self.not_files[name] = _kind_of(st.st_mode)
        return found, denied, failed

    def excluded(self, path: str) -> bool:
        """Whether an earlier source's patterns (`exclude`) match `path`: it is that source's file."""
        return self._exclude is not None and self._exclude.matches(path)

    def matches(self, path: str) -> bool:
        """Whether `path` could match a pattern, as glob.glob reads it: `*` within a name, `**` for any
        number of directories, none included (fnmatch's `*` crossed `/`, and its `**/` needed one: a
        review found `logs/**/*.log` disowning `logs/top.log`, whose position was then dropped at each
        restart, and `/x/*.log` claiming `/x/app/y.log` of another source)."""
        return any(glob_matches(path, p) for p in self.patterns)

    def watch_roots(self) -> list[tuple[str, bool]]:
        """(directory, recursive) pairs covering every pattern: its longest fixed prefix."""
        roots: dict[str, bool] = {}
        for pattern in self.patterns:
            root, recursive = self.glob_root(pattern)
            roots[root] = roots.get(root, False) or recursive
        return sorted(roots.items())

    @staticmethod
    def glob_root(pattern: str) -> tuple[str, bool]:
        """A pattern's longest fixed directory prefix, and whether a directory below it has magic."""
        fixed: list[str] = []
        for part in pattern.split(os.sep)[:-1]:
            if has_magic(part):
                return os.sep.join(fixed) or os.sep, True
            fixed.append(part)
        return os.sep.join(fixed) or os.sep, False


class Fingerprinter:
    """Hashes (sha256) the first `size` bytes of a file, or all of it when shorter."""

    def __init__(self, size: int = 256) -> None:
        self.size = size

    def fingerprint(self, fd: int) -> tuple[str, int]:
        """(hex digest, number of bytes hashed) of the file's first bytes."""
        head = _pread_full(fd, self.size, 0)
        return hashlib.sha256(head).hexdigest(), len(head)

    @staticmethod
    def prefix(fd: int, length: int) -> str | None:
        """Hex digest of exactly the first `length` bytes; None if the file is shorter."""
        head = _pread_full(fd, length, 0)
        if len(head) < length:
            return None
        return hashlib.sha256(head).hexdigest()


def _tells_text(head: bytes) -> bool:
    """Whether a file's first bytes, not those of a compressed file (compression_of), are enough to say
    it is not one: COMPRESSION_MAGIC_BYTES of them, or a whole first line."""
    return len(head) >= COMPRESSION_MAGIC_BYTES or b"\n" in head


def _processed_end(watcher: FileWatcher, processed: Mapping[str, int]) -> int | None:
    """How far the caller processed this file's current generation, when past its acknowledged offset."""
    ends = [processed[i] for i in watcher.ids if i in processed]
    if not ends:
        return None
    end = min(max(ends), watcher.offset)
    return end if end > watcher.acked else None


def _beside(path: str) -> list[tuple[str, str]]:
    """Where the old files of `path` are looked for, as (directory, name prefix): beside the path, and
    beside the file it names when it is a symbolic link (/var/log/app.log -> /opt/app/logs/app.log,
    rotated there)."""
    places = [os.path.split(path)]
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return places
    if real != path:
        places.append(os.path.split(real))
    return places


def make_file_id(dev: int, ino: int, fingerprint_hex: str) -> str:
    """The file_id string carried by RawLine and positions: device, inode, fingerprint."""
    return f"{dev}:{ino}:{fingerprint_hex[:16]}"


_GENERATIONS = itertools.count(1)  # numbers the generations of files this process reads (ack ids)


def _new_ack_id(dev: int, ino: int) -> str:
    """A RawLine.ack_id for a new generation of the file (dev, ino): unique in this process."""
    return f"{dev}:{ino}#{next(_GENERATIONS)}"


@functools.lru_cache(maxsize=1024)  # acknowledge() parses the same few ids over and over
def _parse_ack_id(ack_id: str) -> tuple[int, int, int] | None:
    """(device, inode, generation) of a RawLine.ack_id; None when it is not one."""
    devino, sep, gen = ack_id.partition("#")
    parts = devino.split(":")
    if not sep or len(parts) != 2:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(gen)
    except ValueError:
        return None


def _latest_ack_ids(ids: Iterable[str]) -> list[str]:
    """The MAX_CARRIED_IDS ack ids of the latest generations among `ids`, oldest first."""
    return sorted(ids, key=lambda i: _parse_ack_id(i)[2])[-MAX_CARRIED_IDS:]  # type: ignore[index]


def _parse_file_id(file_id: str) -> tuple[int, int, str] | None:
    parts = file_id.split(":")
    if len(parts) != 3:
        return None
    try:
        dev, ino = int(parts[0]), int(parts[1])
        int(parts[2], 16)
    except ValueError:
        return None
    return dev, ino, parts[2].lower()


def _checkpoint_number(value: Any, limit: int) -> int:
    """A byte count of a checkpoint, 0 to `limit`; ValueError for inf and nan (json reads 1e999 as inf),
    negative or absurd numbers (a fingerprint length of 1e300 would be read from the file)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)  # "5", true, 1.5 (1.5 read the file again from byte 1: a review's 1,467 duplicate alerts)
    number = int(value)
    if not 0 <= number <= limit:
        raise ValueError(value)
    return number


@dataclass(frozen=True, slots=True)
class _SavedPosition:
    """One entry of a checkpoint's positions, parsed."""

    path: str
    file_id: str
    dev: int
    ino: int
    fingerprint: str  # hex prefix, as in file_id
    fingerprint_len: int
    offset: int
    # set for an old (rotated) file not read and acknowledged to its end: the path it was followed
    # as (RawLine.path, = path), its name then (RawLine.read_from), and its size then
    rotated_from: str | None = None
    read_from: str | None = None
    size: int | None = None
    # a reload's reopening (positions(read=...)): how far the caller processed the file; reading resumes
    # there and `offset` stays the acknowledged position, so lines whose alerts a failing sink holds are
    # not read twice
    read: int | None = None
    # also a reload's: the ack ids (RawLine.ack_id) its lines in flight carry (for a copytruncate's
    # copy also the truncated file's), and FileWatcher.acks_to, so that their acknowledgements still
    # reach the file reopened
    ids: tuple[str, ...] = ()
    acks_to: int | None = None


MAX_CARRIED_IDS = 64  # ack ids a reopened file keeps for its lines in flight (a reload's positions)


class FileWatcher:
    """One open file: where we are in it, and the start of a line not yet complete.

    Invariant: bytes [offset, scan_pos) hold no newline; `pending` is their first
    max_line_bytes bytes. Lines before `offset` have been handed out (or skipped).
    """

    def __init__(
        self,
        path: str,
        fd: int,
        st: os.stat_result,
        fingerprint: tuple[str, int],
        offset: int,
        max_line_bytes: int,
    ) -> None:
        self.path = path
        self.fd = fd
        self.devino = (st.st_dev, st.st_ino)
        self.size = st.st_size
        self.max_line_bytes = max_line_bytes
        self.draining_since: float | None = None
        self.read_from: str | None = None  # set while draining: the file's name now (see RawLine)
        self.failing = False  # an I/O error was logged; log again only after recovery
        self.mid_line = False  # started inside a line: drop up to its newline
        self.text_checked = False  # read from its first byte: its head was checked not to be compressed
        self.grew_at: float | None = None  # when reading last found new bytes (Tailer's clock); None: not yet read
        self.final = False  # no writer will add to it (a copy, a file let go): its last line is whole
        # a copytruncate's copy shorter than what was read of the file: acknowledgements up to this end (of
        # lines read from the file, beyond the copy) are taken as reaching the copy's end
        self.acks_to: int | None = None
        self.head_seen = -1  # bytes of a head too short to tell from a compressed file's, at grew_at
        self.letting_go = False  # draining: done with (rotate_wait over, seen at a pass); closed once read
        self.nul_said = False  # NUL bytes before a line were skipped, and said
        self.nul_from: int | None = None  # where the NUL bytes being skipped began
        self.fp_hex = ""
        self.fp_len = 0
        self.file_id = ""
        self.ack_id = ""
        # the ack ids whose acknowledgements this file takes: its generation's, and those of lines in flight
        # it took over (a copytruncate's copy: the truncated file's; a reload's reopening: the old tailer's)
        self.ids: set[str] = set()
        self.restart(fingerprint, offset)

    def restart(self, fingerprint: tuple[str, int], offset: int) -> None:
        """Start a new generation of this file (opened, or truncated) at `offset`."""
        self.offset = offset
        self.scan_pos = offset
        self.pending = bytearray()
        self.mid_line = False
        self.nul_from = None
        self.acked = offset
        self.last_emitted_end = offset
        self.ack_id = _new_ack_id(*self.devino)
        self.ids = {self.ack_id}
        self.set_fingerprint(*fingerprint)

    def set_fingerprint(self, fp_hex: str, fp_len: int) -> None:
        """Adopt a (longer) fingerprint (the ack id stays: lines handed out before are acknowledged alike)."""
        self.fp_hex = fp_hex
        self.fp_len = fp_len
        self.file_id = make_file_id(self.devino[0], self.devino[1], fp_hex)

    def read(
        self,
        out: list[RawLine],
        limit: int | None,
        skip: Callable[[bytes], bool] | None,
        stats: FileStats,
    ) -> bool:
        """Append complete lines to `out` (at most `limit`); True if end of file was reached."""
        emitted = 0
        max_len = self.max_line_bytes
        while True:
            if limit is not None and emitted >= limit:
                return False
            base = self.scan_pos
            chunk = os.pread(self.fd, CHUNK_BYTES, base)
            if not chunk:
                return True
            start = 0
            while True:
                if chunk.startswith(b"\0", start) and base + start == self.offset:
                    self._skip_nul(chunk, base, start, stats)
                    start = self.offset - base
                    if start >= len(chunk):  # (past it: a sparse hole jumped over)
                        self.scan_pos = self.offset
                        break
                newline = chunk.find(b"\n", start)
                if newline < 0:
                    room = max_len - len(self.pending)
                    if room > 0:
                        self.pending += chunk[start : start + room]
                    self.scan_pos = base + len(chunk)
                    break
                end = base + newline + 1
                line_start = self.offset
                if self.pending:
                    room = max_len - len(self.pending)
                    if room > 0:
                        self.pending += chunk[start : min(newline, start + room)]
                    data = bytes(self.pending)
                    self.pending.clear()
                else:
                    data = chunk[start : min(newline, start + max_len)]
                truncated = end - 1 - line_start > max_len
                self.offset = self.scan_pos = end
                start = newline + 1
                if self._hand_out(out, line_start, end, data, truncated, skip, stats):
                    emitted += 1
                if limit is not None and emitted >= limit:
                    return False
            if len(chunk) < CHUNK_BYTES:
                return True

    def _skip_nul(self, chunk: bytes, base: int, start: int, stats: FileStats) -> None:
        """NUL bytes where a line starts are skipped, not read as (part of) a line: a file truncated
        in place (copytruncate) under a writer without O_APPEND (`app > app.log`) goes on at the
        writer's old offset, so it begins with a hole of NULs as long as the file was. Glued to the
        first line after it, they made a line that does not parse (an unknown-type alert at every
        rotation), or, past max_line_bytes, a line of NULs instead of it. Counted as read bytes."""
        if self.nul_from is None:
            self.nul_from = base + start
        pos = start
        while chunk.startswith(_NUL_BLOCK, pos):  # memcmp speed: a hole can be gigabytes
            pos += len(_NUL_BLOCK)
        found = _NOT_NUL.search(chunk, pos)  # within the next block, or the chunk ends first
        stop = base + (found.start() if found else len(chunk))
        if found is None and len(chunk) == CHUNK_BYTES:
            try:  # a sparse hole (a truncated file written at an old offset): to the data after it at once
                stop = max(stop, os.lseek(self.fd, stop, os.SEEK_DATA))
            except OSError:
                pass  # no data after it yet (ENXIO), or no SEEK_DATA here: read on
        if self.acked == self.offset:  # nothing outstanding
            self.acked = stop
        stats.bytes += stop - (base + start)
        self.offset = stop
        if found:
            if not self.nul_said:
                self.nul_said = True
                n = stop - self.nul_from
                why = ("a line that begins with a NUL byte, or a file truncated in place?" if n == 1 else
                       "a file truncated in place under a writer that does not append? Use logrotate's `create`, or "
                       "have the program open its log for appending")  # fmt: skip
                log.warning("%s: %d NUL byte%s before the line at byte %d %s skipped (%s)", self.path, n,
                            "" if n == 1 else "s", stop, "was" if n == 1 else "were", why)
            self.nul_from = None

    def _hand_out(self, out: list[RawLine], line_start: int, end: int, data: bytes, truncated: bool,
                  skip: Callable[[bytes], bool] | None, stats: FileStats) -> bool:
        """Append the line [line_start, end) unless it is the rest of a line started before lograven
        (mid_line) or skipped; True if appended. `offset` is already `end`."""
        stats.bytes += end - line_start
        if self.mid_line or (skip is not None and skip(data)):
            if self.mid_line:
                self.mid_line = False
            else:
                stats.skipped_lines += 1
            if self.acked == line_start:  # nothing outstanding: no need to re-read it
                self.acked = end
            return False
        out.append(RawLine(self.path, self.file_id, line_start, end, data, truncated, self.read_from, self.ack_id))
        self.last_emitted_end = end
        stats.lines += 1
        if truncated:
            stats.truncated_lines += 1
        return True

    def hand_out_unterminated(self, out: list[RawLine], skip: Callable[[bytes], bool] | None,
                              stats: FileStats) -> bool:
        """Hand out the bytes after the last newline read as a line of their own, without waiting for its
        newline (see Tailer's `unterminated_after`); True if a line was appended."""
        line_start, end = self.offset, self.scan_pos
        if end <= line_start:
            return False
        data = bytes(self.pending)
        self.pending.clear()
        self.offset = end
        if not self._hand_out(out, line_start, end, data, end - line_start > self.max_line_bytes, skip, stats):
            return False
        stats.unterminated_lines += 1
        return True

    def acknowledge(self, end: int) -> None:
        """The caller durably processed every line of this file ending at or before `end`."""
        if end >= self.last_emitted_end:
            # Only skipped lines can lie between the last emitted line and `offset`.
            self.acked = max(self.acked, self.offset)
        else:
            self.acked = max(self.acked, end)

    def close(self) -> None:
        """Release the file descriptor (once: a number closed twice may be another file's by then)."""
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            os.close(fd)
        except OSError:
            pass


class _WakeHandler(FileSystemEventHandler):
    """Watchdog callback: sets the event for changes that may concern a followed path."""

    IGNORED = frozenset({"opened", "closed_no_write", "attrib"})  # caused by our own reads

    STRUCTURE = frozenset({"created", "moved", "deleted"})  # the set of files changed, not only their content

    def __init__(self, event: threading.Event, matches: Callable[[str], bool],
                 structure: threading.Event | None = None) -> None:
        super().__init__()
        self._event = event
        self._matches = matches
        self._structure = structure

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type in self.IGNORED:
                return
            if event.is_directory:
                self._changed()
                return
            for raw in (event.src_path, event.dest_path):
                if raw and self._matches(os.fsdecode(raw)):
                    if event.event_type in self.STRUCTURE:
                        self._changed()
                    self._event.set()
                    return
        except Exception:  # an exception here would kill the observer thread
            self._changed()

    def _changed(self) -> None:
        if self._structure is not None:
            self._structure.set()
        self._event.set()


class DirectoryWaker:
    """Sets an Event when something changes in a directory the patterns look into.

    Watches each pattern's fixed directory prefix with a watchdog Observer; restarts
    a dead observer, re-watches a directory that was recreated, and falls back to
    pure polling (with a warning) when inotify limits are reached.
    """

    RETRY_SECONDS = 60.0
    # Opened, closed-without-write and attrib events are left out at the source: our own reads cause them.
    EVENT_FILTER: list[type[FileSystemEvent]] = [
        FileModifiedEvent,
        FileCreatedEvent,
        FileMovedEvent,
        FileDeletedEvent,
        FileClosedEvent,
        DirCreatedEvent,
        DirDeletedEvent,
        DirMovedEvent,
    ]

    def __init__(self, paths: GlobPathProvider, event: threading.Event, structure: threading.Event | None = None) -> None:
        self._roots = paths.watch_roots()
        self._handler = _WakeHandler(event, paths.matches, structure)
        self._observer: BaseObserver | None = None
        self._watches: dict[str, tuple[int, ObservedWatch]] = {}  # root -> (directory inode, watch)
        self._retry_at = 0.0
        self._warned: set[str] = set()
        self.restarts = 0

    def ensure(self) -> None:
        """Start the observer if needed (or restart a dead one) and watch every existing root."""
        if self._observer is not None and not self._observer.is_alive():
            log.warning("the watchdog observer thread died; restarting it (stat polling continued meanwhile)")
            self._observer = None
            self._watches.clear()
            self.restarts += 1
        if self._observer is None:
            now = time.monotonic()
            if now < self._retry_at:
                return
            observer = Observer()
            observer.daemon = True
            try:
                observer.start()
            except (OSError, RuntimeError) as exc:
                self._retry_at = now + self.RETRY_SECONDS
                log.warning(
                    "cannot start the file watcher (%s); lograven falls back to polling. "
                    "If inotify limits are reached, raise fs.inotify.max_user_instances",
                    exc,
                )
                return
            self._observer = observer
        for root, recursive in self._roots:
            self._watch(root, recursive)

    def _watch(self, root: str, recursive: bool) -> None:
        assert self._observer is not None
        try:
            ino = os.stat(root).st_ino
        except OSError:
            ino = None
        current = self._watches.get(root)
        if current is not None and current[0] == ino:
            return
        if current is not None:  # directory deleted or recreated: the old watch is dead
            try:
                self._observer.unschedule(current[1])
            except Exception:  # already gone with its directory
                pass
            del self._watches[root]
        if ino is None:
            return
        try:
            try:
                watch = self._observer.schedule(
                    self._handler, root, recursive=recursive, event_filter=self.EVENT_FILTER
                )
            except TypeError:  # watchdog < 4 has no event_filter; the handler filters instead
                watch = self._observer.schedule(self._handler, root, recursive=recursive)
        except OSError as exc:
            if root not in self._warned:
                self._warned.add(root)
                log.warning(
                    "cannot watch %s for changes (%s); its files are still polled. "
                    "If inotify limits are reached, raise fs.inotify.max_user_watches",
                    root,
                    exc,
                )
            return
        self._warned.discard(root)
        self._watches[root] = (ino, watch)

    @property
    def observer_alive(self) -> bool:
        """Whether the watchdog observer thread is running."""
        return self._observer is not None and self._observer.is_alive()

    def close(self) -> None:
        """Stop the observer thread."""
        observer, self._observer = self._observer, None
        self._watches.clear()
        if observer is not None:
            observer.stop()
            try:
                observer.join(timeout=5)
            except RuntimeError:  # never started
                pass


class Tailer:
    """Follows the files matched by glob patterns and hands out their complete lines.

    Call `poll()` to read what is new and `wait()` to sleep until something may have
    changed. Acknowledge lines with `acknowledge()` once their results are durable;
    `positions()` (for the checkpoint) only advances over acknowledged lines.
    `poll`/`wait` are meant for one thread; `acknowledge`, `positions` and `stats`
    may be called from others.
    """

    _clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(
        self,
        patterns: list[str],
        *,
        start_position: str = "end",
        max_line_bytes: int = 65536,
        poll_interval: float = 1.0,
        fingerprint_bytes: int = 256,
        positions: Mapping[str, Mapping[str, Any]] | None = None,
        skip_predicate: Callable[[bytes], bool] | None = None,
        use_watchdog: bool = True,
        rotate_wait: float = 5.0,
        exclude_paths: Iterable[str] = (),
        rescan_interval: float = 0.0,
        unterminated_after: float = 0.0,
        saved_at: float | None = None,
    ) -> None:
        """Open the files matched now: resume saved positions, else apply `start_position`.

        `saved_at`: when `positions` were checkpointed (wall clock), if they come from a checkpoint: a
        file empty then and copytruncated while lograven was stopped is said, with the generation
        written since that holds its lines (see _say_copy_of_an_empty_file).

        `rotate_wait`: seconds a file renamed out of the patterns or deleted stays
        open after it was drained, for writers that have not reopened their log yet.
        `rescan_interval`: while lines keep coming, the patterns are expanded and every file's size and
        first bytes checked (rotation, truncation) at most this often, and at once after a file event
        that creates, moves or deletes a file; 0 does it on every poll. Each such pass stats and reads
        the head of every followed file: on every poll, with 330 files under load, it took two thirds
        of the reader's time (the daemon passes its poll interval).
        `exclude_paths`: earlier sources' patterns; the files they match are not followed here.
        `unterminated_after`: seconds after which the bytes after a file's last newline, when no byte
        came since, are handed out as a line; 0 waits for the newline. Without it, a line left
        unterminated (by a writer that died, or on purpose by one that can write the file) is joined
        to the next writer's line, which it hides. A rotated file's unterminated last line is handed
        out when the file is let go, whatever this is.
        """
        if isinstance(patterns, str) or not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise LogravenError(f"sources[].paths must be a non-empty list of paths or globs, got {patterns!r}")
        if start_position not in START_POSITIONS:
            raise LogravenError(
                f"sources[].start_position must be 'end' or 'beginning', got {start_position!r}"
            )
        if max_line_bytes < 1:
            raise LogravenError(f"runtime.max_line_bytes must be at least 1, got {max_line_bytes}")
        if fingerprint_bytes < 1:
            raise LogravenError(f"fingerprint_bytes must be at least 1, got {fingerprint_bytes}")
        if poll_interval <= 0 or rotate_wait < 0 or unterminated_after < 0:
            raise LogravenError(
                f"poll_interval must be > 0, rotate_wait and unterminated_after >= 0, got {poll_interval}, "
                f"{rotate_wait} and {unterminated_after}"
            )
        self.start_position = start_position
        self.max_line_bytes = max_line_bytes
        self.poll_interval = poll_interval
        self.rotate_wait = rotate_wait
        self.unterminated_after = float(unterminated_after)
        self._skip = skip_predicate
        self._paths = GlobPathProvider(patterns, exclude_paths)
        self._fingerprinter = Fingerprinter(fingerprint_bytes)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = False
        self.rescan_interval = max(0.0, float(rescan_interval))
        self._structure = threading.Event()  # a file was created, moved or deleted: rescan at the next poll
        self._scanned_at = -math.inf  # when poll last expanded the patterns and checked the files (_clock)
        self._scan_complete = True  # whether that expansion was complete

        self._live: list[FileWatcher] = []  # in reading order (rotated for fairness)
        self._draining: list[FileWatcher] = []  # gone from the patterns: read to the end, then close
        # drained and closed, but lines handed out from them are not all acknowledged yet
        self._retired: list[FileWatcher] = []
        # old files read to their end and let go: (device, inode) -> the hash and length of their first bytes.
        # Such a file (renamed, or written to, since) is never the copy of a truncated one (a copy is a
        # new file), though its first bytes may match a short fingerprint
        self._read_old: dict[tuple[int, int], tuple[str, int]] = {}
        self._by_devino: dict[tuple[int, int], FileWatcher] = {}
        self._stats: dict[str, FileStats] = {}
        self._last_seen: dict[str, float] = {}
        self._unreadable: set[str] = set()
        self._deleted: set[str] = set()  # named (not globbed) paths whose file was deleted, not rotated
        # Out of file descriptors (EMFILE, ENFILE): paths not opened yet for that, the first such error
        # of the current discovery (what was done, the error), and when each warning was last logged.
        self._fd_waiting: set[str] = set()
        self._fd_error: tuple[str, OSError] | None = None
        self._fd_warned = False  # a warning is out: say so when descriptors are free again
        self._warned_at: dict[str, float] = {}

        self._known_absent: set[str] = set()  # paths and patterns the checkpoint followed, with no file then
        self._matching_nothing: set[str] = set()  # patterns no file matched at the last complete look
        self._unlistable_said: dict[str, str] = {}  # patterns whose directory may not be listed, said so: -> it
        self._rotated_waiting: list[_SavedPosition] = []  # checkpointed old files in a directory not listable
        saved = self._renumbered_devices(self._parse_positions(positions))
        self._pending_saved: list[_SavedPosition] = [s for s in saved if s.rotated_from is None]
        self._saved_paths = {s.path for s in self._pending_saved}
        self._truncated_at_start: set[str] = set()  # checkpointed files truncated while lograven was stopped
        self._renamed_at_start: set[str] = set()  # checkpointed files found renamed (rotated while stopped)
        # a path whose checkpointed file was renamed while lograven was stopped to a name the patterns
        # match too (`app.log*`): path -> that name. The path's new file waits until the old one is read
        # to its end, as it waits for a draining old file
        self._ahead: dict[str, str] = {}
        # compressed files a pattern matches (messages* over messages.2.gz): (dev, ino) -> (size, mtime_ns)
        # when found so; not opened again while unchanged. And the paths already warned about.
        self._not_text: dict[tuple[int, int], tuple[int, int]] = {}
        self._not_text_said: set[str] = set()
        # named paths found to be no file (a directory, a FIFO), said once each while they are (at the start,
        # `check` and the daemon's source warnings say it)
        self._not_files_said: set[tuple[str, str]] = set()
        self._dropped: list[FileWatcher] = []
        checkpointed = (self._saved_paths | {s.rotated_from for s in saved if s.rotated_from is not None}
                        | self._known_absent)
        self._checkpointed_patterns = [
            # (a pattern's own entry, "followed, no file there", is its text: `app[12].log` matches no such name)
            p for p in self._paths.patterns if any(s == p or glob_matches(s, p) for s in checkpointed)
        ]

        self._waker: DirectoryWaker | None = None
        if use_watchdog:
            self._waker = DirectoryWaker(self._paths, self._wake, self._structure)
            self._waker.ensure()

        matched, denied, failed = self._paths.expand_checked()
        # Paths present at this start that are not yet open; they get the start rules.
        self._initial: set[str] = set(matched) | set(denied)
        # The first complete expansion (this one, unless the patterns could not be listed: EMFILE)
        # completes `_initial` and tells which checkpointed files were renamed, and which are gone.
        self._first_look = True
        self._saved_at = saved_at
        with self._lock:
            self._resume_rotated([s for s in saved if s.rotated_from is not None], matched)
            self._resume_truncated(matched)
            self._discover(matched, denied, failed)

    # ----------------------------------------------------------------- public API

    def poll(self, max_lines: int | None = None) -> list[RawLine]:
        """Read what is new in all files now, without blocking; at most `max_lines` lines."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Tailer.poll() called after close()")
            try:
                return self._poll(max_lines)
            finally:
                self._let_go_not_text()

    def _poll(self, max_lines: int | None) -> list[RawLine]:
        """poll(), under its lock."""
        now = self._clock()
        rescanned = (self.rescan_interval <= 0 or now - self._scanned_at >= self.rescan_interval
                     or self._structure.is_set())  # fmt: skip
        if rescanned:
            self._structure.clear()
            if self._waker is not None:
                self._waker.ensure()
            self._scan_complete = self._discover(*self._paths.expand_checked())
            now = self._clock()  # a file the pass set draining was set so after `now` above
            self._scanned_at = now
        else:
            # Between passes, a file whose size changed has its first bytes checked before it is
            # read (one fstat for a file that did not): truncated and written again past the
            # offset (copytruncate, a rewrite), it would be read from that offset, mid-content.
            # All before any read, so that a copy found now is read before the file's new lines.
            for watcher in self._draining + self._live:
                try:
                    size = os.fstat(watcher.fd).st_size
                except OSError:
                    continue  # said when it is read
                if size != watcher.size:
                    self._check_content(watcher, size)
        complete = self._scan_complete
        out: list[RawLine] = []
        waiting: set[str] = set()  # paths whose rotated file's last line may still be finished
        for watcher in list(self._draining):
            remaining = None if max_lines is None else max_lines - len(out)
            if watcher.path in waiting:
                continue  # after the older file of its path
            eof = self._read(watcher, out, remaining)
            if not eof:
                return out  # the file now at its path must wait for the rest
            assert watcher.draining_since is not None
            waited = now - watcher.draining_since
            # while the expansion is incomplete, a file renamed within the patterns is not let go; and
            # only after a pass made rotate_wait after it was seen rotated (which would have seen it come
            # back under the patterns), at this poll or, the budget spent, a later one
            if not watcher.letting_go and self._scanned_at - watcher.draining_since >= self.rotate_wait \
                    and (complete or self._left_patterns(watcher)):
                watcher.letting_go = True
            if watcher.letting_go:
                if self._unfinished(watcher):
                    # its writer had rotate_wait to finish its last line: that line is whole as it is (or,
                    # shorter than a compressed file's magic, the file was not read at all)
                    if max_lines is not None and len(out) >= max_lines:
                        return out  # no room for it: let go at the next poll
                    watcher.final = True
                    if not self._read(watcher, out, None if max_lines is None else max_lines - len(out)):
                        return out  # more than the budget: let go at the next poll
                self._close_draining(watcher)
            elif waited < self.rotate_wait + max(self.rescan_interval, self.poll_interval) and self._unfinished(watcher):
                # its last line may still be finished: its path's newer lines wait until it is let go (not
                # longer: a file kept open while the patterns cannot be listed is not let go)
                waiting.add(watcher.path)
        order = self._live
        if self._ahead:  # forget the old files read to their end (below), or no longer followed
            live = {w.path for w in order}
            self._ahead = {new: old for new, old in self._ahead.items() if old in live}
        behind = {old: new for new, old in self._ahead.items()}
        held: list[FileWatcher] = []
        for index, watcher in enumerate(order):
            remaining = None if max_lines is None else max_lines - len(out)
            if watcher.path in waiting:
                continue
            if watcher.path in self._ahead:
                held.append(watcher)
                continue
            if remaining == 0 or not self._read(watcher, out, remaining):
                # Out of budget: the files after this one go first next time.
                self._live = order[index + 1 :] + order[: index + 1]
                return out
            if watcher.path in behind:  # read to its end: its path's new file comes next
                del self._ahead[behind.pop(watcher.path)]
        while held:  # the files held back whose old file was read to its end above, in this same poll
            ready = [w for w in held if w.path not in self._ahead]
            if not ready:
                break
            for watcher in ready:
                held.remove(watcher)
                remaining = None if max_lines is None else max_lines - len(out)
                if remaining == 0 or not self._read(watcher, out, remaining):
                    return out
                if watcher.path in behind:
                    del self._ahead[behind.pop(watcher.path)]
        return out

    def wait(self, timeout: float | None = None) -> None:
        """Block until a watched directory changes, `wake()` is called, or `timeout` (default poll_interval)."""
        if self._waker is not None and not self._closed:
            with self._lock:
                self._waker.ensure()
        self._wake.wait(self.poll_interval if timeout is None else timeout)
        self._wake.clear()

    def wake(self) -> None:
        """End a pending or the next `wait()` now (thread-safe; e.g. for shutdown)."""
        self._wake.set()

    def acknowledge(self, path: str, ack_id: str, end_offset: int) -> None:
        """Lines of `ack_id` (a RawLine.ack_id) up to `end_offset` (a RawLine.end) are durably processed.

        Files are found by the id of the generation the lines were read from, so acknowledging works
        after a rename and reaches a copytruncate's copy, never the file refilled after it;
        acknowledgements for files closed since are ignored.
        """
        parsed = _parse_ack_id(ack_id)
        if parsed is None:
            raise ValueError(f"not an ack id (RawLine.ack_id): {ack_id!r}")
        with self._lock:
            watcher = self._by_devino.get(parsed[:2])
            if watcher is None or ack_id not in watcher.ids:
                # a copy or a renamed file: draining, retired, or followed itself (a reload that widened the
                # pattern to the copy: a review, its lines' acknowledgements had reached nothing)
                watcher = next((w for w in (*self._retired, *self._draining, *self._live) if ack_id in w.ids), None)
            if watcher is None or end_offset > max(watcher.offset, watcher.acks_to or 0):
                log.debug("ignoring acknowledgement for %s (%s) at %d: file closed or restarted", path, ack_id, end_offset)
                return
            watcher.acknowledge(min(end_offset, watcher.offset))
            if watcher in self._retired and watcher.acked >= watcher.last_emitted_end:
                self._retired.remove(watcher)

    def acknowledge_lines(self, lines: Iterable[RawLine]) -> None:
        """Acknowledge a batch of handed-out lines (only the furthest end per file matters)."""
        furthest: dict[str, RawLine] = {}
        for line in lines:
            seen = furthest.get(line.ack_id)
            if seen is None or line.end > seen.end:
                furthest[line.ack_id] = line
        with self._lock:
            for line in furthest.values():
                self.acknowledge(line.path, line.ack_id, line.end)

    def positions(self, read: Mapping[str, int] | None = None) -> dict[str, dict[str, Any]]:
        """{path: {"file_id", "offset", "fingerprint_len"}}: acknowledged offsets, JSON-serialisable.

        A path's old files, rotated (renamed away or deleted) but not yet read and acknowledged to
        their end, are listed under its "rotated" key, oldest first, each as {"file_id", "offset",
        "fingerprint_len", "read_from", "size"}: "read_from" is the file's name then (RawLine.read_from:
        `messages.1`, "(deleted)", or null) and "size" its size then. A restarted Tailer finds them
        again and reads their rest. The entry of a path with no file there now has only "rotated".
        A file followed under another name (a symbolic link's target) has that name as "read_from".

        With `read` ({RawLine.ack_id: end of the last line the caller processed}; a reload reopening
        the files, never a checkpoint), an entry whose file has processed lines past its acknowledged
        offset also has "read", that end, and "ids", the ack ids of those lines: a Tailer given these
        positions resumes reading there, while its acknowledged offset stays "offset" until the lines in
        between are acknowledged to it (with their old ack ids). Lines handed out but never processed
        (a reader stopped with them in hand) are read again.
        """
        with self._lock:
            result: dict[str, dict[str, Any]] = {
                w.path: {"file_id": w.file_id, "offset": w.acked, "fingerprint_len": w.fp_len}
                for w in self._live
            }
            for w in self._live:
                # the name the file has when it is not its path (a link's target: app.log -> app-20261207.log):
                # a link pointed elsewhere while lograven is stopped leaves the file there, where a restart
                # looks for it first (a review: its rest had been taken for gone); and a file renamed that the
                # tailer has not noticed yet (logrotate's dateext or olddir). A readlink per file: 6 ms a
                # checkpoint with 1,000 files (limiting it to links lost the renamed ones: a review)
                if (name := _current_name(w.fd, w.path)) is not None and name != "(deleted)":
                    result[w.path]["read_from"] = name
            for watcher in self._retired + self._draining:
                entry = self._rotated_entry(watcher)
                if read is not None and (done := _processed_end(watcher, read)) is not None:
                    # the reopened file takes the acknowledgements of the lines in flight (a copy's also carry
                    # the truncated file's ids: a review, it had kept them in the checkpoint, read again at a restart)
                    entry["read"], entry["ids"] = done, _latest_ack_ids(watcher.ids)
                    if watcher.acks_to is not None:
                        entry["acks_to"] = watcher.acks_to
                result.setdefault(watcher.path, {}).setdefault("rotated", []).append(entry)
            if read is not None:
                for w in self._live:
                    if (done := _processed_end(w, read)) is not None:
                        result[w.path]["read"], result[w.path]["ids"] = done, _latest_ack_ids(w.ids)
            for saved in self._pending_saved:  # not opened yet (see _forget_unmatched_saved): kept as it was
                if saved.path not in result or "file_id" not in result[saved.path]:
                    entry = {"file_id": saved.file_id, "offset": saved.offset, "fingerprint_len": saved.fingerprint_len}
                    if saved.read_from is not None:
                        entry["read_from"] = saved.read_from
                    result[saved.path] = {**result.get(saved.path, {}), **entry}
            first: dict[str, int] = {}
            for saved in self._rotated_waiting:  # kept as they were (see _resume_rotated): the oldest, so first
                entry = {"file_id": saved.file_id, "offset": saved.offset, "fingerprint_len": saved.fingerprint_len,
                         "read_from": saved.read_from, "size": saved.size}  # fmt: skip
                at = first.get(saved.rotated_from, 0)
                result.setdefault(saved.rotated_from, {}).setdefault("rotated", []).insert(at, entry)
                first[saved.rotated_from] = at + 1
            for pattern in self._matching_nothing:
                # followed, with no file at the last complete look (rotated with `nocreate`, a log its
                # program creates on its next write): an empty entry says so, so that a file appearing there
                # while lograven is stopped is read from its start, not from its end as at a first start.
                # Not for a file there that could not be opened (unreadable): it is not new when it can be
                if not any(glob_matches(path, pattern) for path in result):
                    result[pattern] = {}
            for path in self._deleted:  # still unreadable after a reload or a restart (lograven_file_readable 0)
                result.setdefault(path, {})["deleted"] = True
            return result

    def stats(self) -> dict[str, FileStats]:
        """A copy of the per-path counters, with offset and size of the file there now."""
        with self._lock:
            shown: dict[str, FileWatcher] = {}
            for watcher in self._draining + self._live:  # live ones win on a shared path
                shown[watcher.path] = watcher
            for st in self._stats.values():
                st.behind = 0
            for watcher in self._draining:  # the rest of a rotated file is part of its path's backlog
                if shown[watcher.path] is not watcher:
                    self._stat(watcher.path).behind += max(watcher.size - watcher.offset, 0)
            for path, watcher in shown.items():
                st = self._stat(path)
                st.offset, st.size = watcher.offset, watcher.size
            return {path: replace(s) for path, s in self._stats.items()}

    @property
    def watchdog_alive(self) -> bool:
        """Whether watchdog wake-ups are active (False with use_watchdog=False)."""
        return self._waker is not None and self._waker.observer_alive

    def close(self) -> None:
        """Stop watching and close every file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._waker is not None:
                self._waker.close()
            for watcher in self._live + self._draining:
                watcher.close()
            self._live.clear()
            self._draining.clear()
            self._retired.clear()
            self._by_devino.clear()
        self._wake.set()

    def __enter__(self) -> Tailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- discovery

    def _stat(self, path: str) -> FileStats:
        stats = self._stats.get(path)
        if stats is None:
            stats = self._stats[path] = FileStats()
        return stats

    def _discover(
        self,
        matched: dict[str, os.stat_result],
        denied: dict[str, OSError],
        failed: Mapping[str, OSError] | None = None,
    ) -> bool:
        """Match the files now at the patterns' paths with the files we follow.

        `failed`: patterns that could not be expanded (see GlobPathProvider.expand_checked). A file we
        follow is never taken for rotated or deleted because the expansion missed it: that is checked
        on its path first. Returns whether the expansion was complete.
        """
        complete = not failed
        unlistable = self._paths.unlistable
        if complete:  # the patterns that match nothing at all (no file, not even one that cannot be looked at,
            # nor a directory that may not be listed: its files are not known)
            seen = [*matched, *denied]
            self._matching_nothing = {p for p in self._paths.patterns
                                      if p not in unlistable and not any(glob_matches(x, p) for x in seen)}
        now_not_files = set(self._paths.not_files.items())
        for path, kind in sorted(now_not_files - self._not_files_said):
            if not self._first_look:  # (a robustness review: only lograven_file_readable 0 had shown it)
                log.warning("%s is %s now, not a file: lograven reads files, and reads it again once a file is "
                            "there", path, kind)
            self._not_files_said.add((path, kind))
        if complete:
            self._not_files_said &= now_not_files
        recovered = self._say_unlistable(unlistable)
        if recovered:
            # a checkpointed file kept while its directory could not be listed, not at its path now: renamed
            # (rotated) while lograven was stopped; looked for as an old file, read before the path's new one
            here = {(st.st_dev, st.st_ino) for st in matched.values()}
            for saved in list(self._pending_saved):
                if (saved.dev, saved.ino) not in here and any(glob_matches(saved.path, p) for p in recovered):
                    self._pending_saved.remove(saved)
                    self._rotated_waiting.append(replace(saved, rotated_from=saved.path))
        if self._rotated_waiting:
            self._retry_rotated_waiting(matched)
        now = self._clock()
        self._fd_error = None
        for pattern, exc in (failed or {}).items():
            if is_fd_limit(exc):
                self._fd_error = self._fd_error or (f"listing {exc.filename or pattern}", exc)
            else:
                self._warn_limited(f"list {pattern}", "cannot list %s for %s: %s; the files followed there "
                                   "are still read, new ones are not seen until it can be listed; retrying on "
                                   "every poll", exc.filename or pattern, pattern, exc)
        where: dict[tuple[int, int], str] = {}
        for path, st in matched.items():
            where.setdefault((st.st_dev, st.st_ino), path)
            self._last_seen[path] = now
        for path in denied:
            self._last_seen[path] = now
        present = set(matched) | set(denied)
        first_look = complete and self._first_look  # the first look at all the files since the start
        if first_look:
            self._initial |= present - {w.path for w in self._live + self._draining}
            self._claim_renamed(matched, denied)
        claimed: set[str] = set()

        for watcher in list(self._live):
            st = matched.get(watcher.path)
            if st is not None and (st.st_dev, st.st_ino) == watcher.devino:
                claimed.add(watcher.path)
                continue
            if st is None:  # not matched: gone, or missed by the expansion (EMFILE)? Its path tells.
                there = self._check_path(watcher)
                if there in ("here", "unknown"):
                    claimed.add(watcher.path)
                    self._last_seen[watcher.path] = now
                    continue
                replaced = there == "replaced"
            else:
                replaced = True
            new_path = where.get(watcher.devino)
            if new_path is not None:
                log.info("%s was renamed to %s; following it there", watcher.path, new_path)
                self._stat(watcher.path).rotations += 1
                watcher.path = new_path
                claimed.add(new_path)
            else:
                self._start_draining(watcher, now, replaced=replaced)

        for watcher in list(self._draining):
            back = where.get(watcher.devino)
            if back is not None and back not in claimed:
                log.info("%s is back under the patterns as %s; following it again", watcher.path, back)
                watcher.path = back
                watcher.draining_since = None
                watcher.read_from = None
                watcher.final = watcher.letting_go = False
                self._draining.remove(watcher)
                self._live.append(watcher)
                claimed.add(back)

        if complete:  # compressed files no longer matched are forgotten
            self._not_text = {k: v for k, v in self._not_text.items() if k in where}
            self._not_text_said &= set(matched)
        resuming = {(saved.dev, saved.ino) for saved in self._pending_saved}
        # files that take a checkpointed position first, so that one renamed while lograven was stopped
        # (to a name the patterns match) is known as such before its path's new file is opened
        for path, st in sorted(matched.items(), key=lambda item: (item[1].st_dev, item[1].st_ino) not in resuming):
            if path not in claimed and (st.st_dev, st.st_ino) not in self._by_devino:
                if self._not_text.get((st.st_dev, st.st_ino)) == (st.st_size, st.st_mtime_ns):
                    continue  # found compressed, and unchanged since
                if self._fd_error is None:
                    self._open(path)
                else:  # out of file descriptors: do not even try; retried on the next poll
                    self._note_unreadable(path, self._fd_error[1])

        for path, exc in denied.items():
            if path not in claimed:  # else still followed, on the descriptor opened before
                self._note_unreadable(path, exc)

        for watcher in self._draining + self._live:  # a rotated file may have been truncated first
            self._check_content(watcher)

        if first_look:
            self._first_look = False
            self._forget_unmatched_saved(matched, denied)
        if complete:  # else a path missing from `present` may still be there
            self._initial &= present
            for path in self._unreadable - present:  # gone: no longer an unreadable file
                self._stat(path).readable = True
            self._unreadable &= present
            self._fd_waiting &= present
        self._report_fd_limit(complete)
        # A file named in the config (not by a glob) that was deleted, not rotated, cannot be read: say so
        # (lograven_file_readable 0) until a file is there again, so that a deleted /var/log/secure is
        # noticed. A rotated file's successor may be created late (logrotate nocreate, an application
        # that creates its log on its next write), and a glob's files come and go with retention.
        self._deleted -= present
        for path in self._deleted:
            self._stat(path).readable = False
        followed = {w.path for w in self._live} | {w.path for w in self._draining}
        for path in [p for p, seen in self._last_seen.items() if now - seen > STATS_RETENTION_SECONDS]:
            if path not in followed and path not in self._deleted:  # a deleted named file stays at 0
                del self._last_seen[path]
                self._stats.pop(path, None)
        return complete

    def _check_path(self, watcher: FileWatcher) -> str:
        """Whether the file followed as `watcher.path` is still there, when the expansion did not match
        it: "here", "gone", "replaced" (another file is there), or "unknown" when that cannot be told now
        (EMFILE, I/O error): then the file is kept as it is, and its path checked again on the next poll."""
        try:
            st = os.stat(watcher.path)
        except OSError as exc:
            if exc.errno in _GONE:
                return "gone"
            if is_fd_limit(exc):
                self._fd_error = self._fd_error or (f"checking {watcher.path}", exc)
            else:
                self._warn_limited(f"stat {watcher.path}", "cannot tell whether %s was rotated: %s; reading "
                                   "the file opened there meanwhile; retrying on every poll", watcher.path, exc)
            return "unknown"
        return "here" if (st.st_dev, st.st_ino) == watcher.devino else "replaced"

    def _left_patterns(self, watcher: FileWatcher) -> bool:
        """Whether a draining file is surely not under the patterns any more: deleted, or renamed to a
        name no pattern matches. While the expansion is incomplete, only such files are closed: one
        renamed within the patterns (messages -> messages.1 with messages*) is to be followed again."""
        name = _current_name(watcher.fd, watcher.path)
        return name == "(deleted)" or (name is not None and not self._paths.matches(name))

    def _warn_limited(self, key: str, message: str, *args: object) -> bool:
        """log.warning, at most once per WARN_INTERVAL_SECONDS per `key`; whether it was logged."""
        now = self._clock()
        last = self._warned_at.get(key)
        if last is not None and now - last < WARN_INTERVAL_SECONDS:
            return False
        self._warned_at[key] = now
        log.warning(message, *args)
        return True

    def _report_fd_limit(self, complete: bool) -> None:
        """Say (at most once a minute) that the descriptor limit was hit in this discovery, and what
        that means; and say once when it is over."""
        if self._fd_error is None:
            if self._fd_warned and complete and not self._fd_waiting:
                self._fd_warned = False
                log.info("lograven can open files again: every matched file is followed")
            return
        what, exc = self._fd_error
        if self._warn_limited(
            "fd limit",
            "too many open files (%s) when %s: lograven follows %d files; %d more match the patterns but are "
            "not opened%s. The files followed are read on, none is dropped; retrying on every poll. Raise "
            "the limit on open files (LimitNOFILE= in the systemd unit, `ulimit -n`%s), or narrow "
            "sources[].paths so that fewer files match",
            errno.errorcode.get(exc.errno or 0, exc), what, len(self._live) + len(self._draining),
            len(self._fd_waiting), "" if complete else ", and new files are not seen: the patterns cannot be listed",
            "; for ENFILE, the system's fs.file-max" if exc.errno == errno.ENFILE else "",
        ):
            self._fd_warned = True

    def _start_draining(self, watcher: FileWatcher, now: float, replaced: bool) -> None:
        try:
            deleted = os.fstat(watcher.fd).st_nlink == 0
        except OSError:
            deleted = True
        if replaced or not deleted:
            self._stat(watcher.path).rotations += 1
            log.info("%s was rotated; reading the rest of the old file before the new one", watcher.path)
        else:
            log.info("%s was deleted; reading the rest of it", watcher.path)
            if watcher.path in self._paths.patterns and not has_magic(watcher.path):
                self._deleted.add(watcher.path)
        watcher.draining_since = now
        watcher.read_from = _current_name(watcher.fd, watcher.path)
        self._live.remove(watcher)
        self._draining.append(watcher)

    def _close_draining(self, watcher: FileWatcher) -> None:
        # the file's first bytes, as many as READ_OLD_BYTES (more than the fingerprint, which may be a few):
        # a later file that reuses the inode is told apart by them (a log whose every file begins alike
        # would need as many equal bytes)
        try:
            n = min(os.fstat(watcher.fd).st_size, READ_OLD_BYTES)
            head = Fingerprinter.prefix(watcher.fd, n) if n > 0 else None
        except OSError:
            n, head = 0, None
        if head is not None:
            self._read_old[watcher.devino] = (head, n)
            if len(self._read_old) > 4 * MAX_RETIRED:
                del self._read_old[next(iter(self._read_old))]
        watcher.close()
        self._draining.remove(watcher)
        if self._by_devino.get(watcher.devino) is watcher:  # another watcher may hold the inode now
            del self._by_devino[watcher.devino]
        if watcher.acked < watcher.last_emitted_end:  # its position stays in positions() until acknowledged
            watcher.size = max(watcher.size, watcher.scan_pos)
            self._retired.append(watcher)
            if len(self._retired) > MAX_RETIRED:
                oldest = self._retired.pop(0)
                log.warning("more than %d rotated files have lines not acknowledged: forgetting the position "
                            "of the old file of %s (%s); after a restart, its lines after byte %d are not "
                            "read again", MAX_RETIRED, oldest.path, oldest.read_from or "rotated", oldest.acked)

    def _note_unreadable(self, path: str, exc: OSError) -> None:
        stats = self._stat(path)
        stats.readable = False
        if is_fd_limit(exc):  # said once for all files, by _report_fd_limit
            self._fd_error = self._fd_error or (f"opening {path}", exc)
            self._fd_waiting.add(path)
        if path in self._unreadable:
            return
        self._unreadable.add(path)
        stats.read_errors += 1
        if is_fd_limit(exc):
            return
        if isinstance(exc, PermissionError):
            log.warning("cannot read %s: permission denied. %s; retrying on every poll", path, _read_access_fix(path))
        else:
            log.warning("cannot open %s: %s; retrying on every poll", path, exc)

    def _open(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._note_unreadable(path, exc)
            return
        try:
            st = os.fstat(fd)
            devino = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or devino in self._by_devino:
                os.close(fd)
                return
            head = os.pread(fd, COMPRESSION_MAGIC_BYTES, 0) if st.st_size else b""
            kind = compression_of(head)
            if kind is not None:  # found compressed at once (at start, or complete): not followed
                os.close(fd)
                self._not_text_found(path, st, kind)
                # readable, and not a file found at start: a text file later at this path is read whole
                self._initial.discard(path)
                self._unreadable.discard(path)
                self._fd_waiting.discard(path)
                self._stats.pop(path, None)  # not a followed file: no series on /metrics
                return
            fingerprint = self._fingerprinter.fingerprint(fd)
            offset, mid_line, saved = self._start_offset(path, fd, st)
        except OSError as exc:
            os.close(fd)
            self._note_unreadable(path, exc)
            return
        if path in self._unreadable:
            if path not in self._fd_waiting:
                log.info("%s is readable now", path)
            self._unreadable.discard(path)
        self._fd_waiting.discard(path)
        self._stat(path).readable = True
        watcher = FileWatcher(path, fd, st, fingerprint, offset, self.max_line_bytes)
        watcher.text_checked = _tells_text(head)  # its first read needs no second look at its head
        watcher.mid_line = mid_line
        if saved is not None:  # read further than acknowledged (a reload): the rest is acknowledged later
            watcher.acked = saved.offset
            watcher.ids |= set(saved.ids)  # with the ack ids the lines in flight carry
        self._live.append(watcher)
        self._by_devino[devino] = watcher

    def _start_offset(self, path: str, fd: int, st: os.stat_result) -> tuple[int, bool, _SavedPosition | None]:
        """Where to start reading a file we did not follow yet, whether that is mid-line, and its saved
        position when its acknowledged offset is behind the start (a file a reload reopened), else None."""
        saved = self._take_saved(path, fd, st)
        if saved is not None:
            self._initial.discard(path)  # resumed: its path's next file is a rotation, not one found at start
            if saved.path != path:
                log.info("%s was rotated to %s while lograven was stopped; resuming there at byte %d",
                         saved.path, path, saved.offset)
                self._renamed_at_start.add(saved.path)
                after = path
                while after in self._ahead and after != saved.path:
                    after = self._ahead[after]
                # only with something left to read in it, known by its first bytes (an empty file's inode
                # reused by another generation would chain the generations in a circle, none ever read)
                if saved.fingerprint_len > 0 and saved.offset < st.st_size and after != saved.path:
                    self._ahead[saved.path] = path
            if saved.offset > st.st_size:
                log.warning("%s is shorter (%d bytes) than its saved position (%d): truncated while "
                            "lograven was stopped; reading it from the start", path, st.st_size, saved.offset)
                self._stat(path).truncations += 1
                return 0, False, None
            if saved.read is not None and saved.read <= st.st_size:  # reopened by a reload
                return saved.read, False, saved
            return saved.offset, False, None
        if path in self._truncated_at_start:  # truncated while lograven was stopped: _resume_truncated
            self._truncated_at_start.discard(path)
            self._initial.discard(path)
            return 0, False, None
        if path in self._initial:
            self._initial.discard(path)
            if path in self._renamed_at_start:  # its old file was found: nothing is amiss
                log.info("%s is a new file since that rotation; reading it from the start", path)
                self._stat(path).rotations += 1
                return 0, False, None
            if path in self._saved_paths:
                log.warning("%s is not the file recorded in the checkpoint: it was rotated or replaced "
                            "while lograven was stopped; reading it from the start", path)
                self._stat(path).rotations += 1
                return 0, False, None
            if any(glob_matches(path, p) for p in self._checkpointed_patterns):
                log.info("%s appeared while lograven was stopped; reading it from the start", path)
                return 0, False, None
            if self.start_position == "beginning":
                return 0, False, None
            return (*_line_start_before(fd, st.st_size), None)
        log.info("new file %s; reading it from the start", path)
        return 0, False, None

    def _take_saved(self, path: str, fd: int, st: os.stat_result) -> _SavedPosition | None:
        """The saved position of this very file (same device, inode and first bytes), if any."""
        for saved in self._pending_saved:
            if (saved.dev, saved.ino) != (st.st_dev, st.st_ino):
                continue
            self._pending_saved.remove(saved)
            digest = Fingerprinter.prefix(fd, saved.fingerprint_len)
            if digest is not None and digest.startswith(saved.fingerprint):
                return saved
            what = "the old file of " if saved.rotated_from is not None else "the checkpointed file "
            log.warning("%s has the inode of %s%s but not its content: that file is gone (its inode reused)",
                        path, what, saved.path)
            return None
        return None

    def _say_unlistable(self, unlistable: Mapping[str, OSError]) -> set[str]:
        """Say once that a pattern's directory may not be listed (its files are not seen: the pattern
        would look like one matching nothing), and once that it can be again. Meanwhile the directory
        is an unreadable file on /metrics (lograven_file_readable 0, as for a file: the alert rule fires).
        Returns the patterns whose directory can be listed again."""
        now = self._clock()
        for pattern, exc in unlistable.items():
            where = str(exc.filename)
            self._stat(where).readable = False
            self._last_seen[where] = now
            if pattern not in self._unlistable_said:
                log.warning("cannot list %s, the directory of %s: permission denied. Its files are not seen (one "
                            "followed there at the last checkpoint keeps its position) until lograven's user may "
                            "read and search it (r and x: e.g. setfacl -m u:%s:rx %s, or a group with g+rx); "
                            "retrying on every poll", exc.filename, pattern, acl_user(), exc.filename)  # fmt: skip
        recovered = set(self._unlistable_said) - set(unlistable)
        for pattern in sorted(recovered):
            log.info("the directory of %s can be listed again: its files are followed", pattern)
            self._stat(self._unlistable_said[pattern]).readable = True  # until its series is retired
        self._unlistable_said = {pattern: str(exc.filename) for pattern, exc in unlistable.items()}
        return recovered

    def _forget_unmatched_saved(self, matched: dict[str, os.stat_result], denied: Mapping[str, OSError]) -> None:
        """After the first discovery, keep only saved positions that may still be opened later: of files
        found and not opened yet, and of paths that could not be looked at (a directory lograven cannot
        search or list at this start: its file is resumed once it can, and stays in the checkpoint
        meanwhile)."""
        waiting = {(st.st_dev, st.st_ino) for path, st in matched.items() if path in self._initial}
        unlistable = list(self._paths.unlistable)
        for saved in list(self._pending_saved):
            if (saved.dev, saved.ino) in waiting or saved.path in denied \
                    or any(glob_matches(saved.path, p) for p in unlistable):
                continue
            self._pending_saved.remove(saved)
            # rotated while lograven was stopped, into a directory it cannot list now: not "gone"
            if self._keep_waiting(replace(saved, rotated_from=saved.path),
                                  f"the file followed as {saved.path} at the last checkpoint (rotated while stopped?)"):
                continue
            log.warning("the file followed as %s at the last checkpoint is gone (rotated out of the "
                        "patterns or deleted while lograven was stopped); lines written to it after "
                        "byte %d were not read", saved.path, saved.offset)

    def _renumbered_devices(self, saved: list[_SavedPosition]) -> list[_SavedPosition]:
        """A filesystem can come back from a reboot under another device number (LVM's device-mapper
        minors, btrfs subvolumes, a re-attached cloud volume), and every file was then taken for a new
        one and read again from its start. A checkpointed file still at its path with its inode and first
        bytes, on a device number the checkpoint does not know, says that its device was renumbered: the
        checkpoint's positions on the old number are taken as on the new one."""
        known = {s.dev for s in saved}
        moved: dict[int, int] = {}
        for s in saved:
            if s.rotated_from is not None or s.dev in moved or s.fingerprint_len == 0:
                continue  # (an empty file at the checkpoint is read from its start anyway)
            try:
                fd = os.open(s.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if st.st_ino != s.ino or st.st_dev == s.dev or st.st_dev in known or not stat.S_ISREG(st.st_mode):
                    continue
                digest = Fingerprinter.prefix(fd, s.fingerprint_len)
                if digest is not None and digest.startswith(s.fingerprint):
                    moved[s.dev] = st.st_dev
            except OSError:
                continue
            finally:
                os.close(fd)
        if not moved:
            return saved
        for old, new in moved.items():
            log.warning("the filesystem of %s has another device number than at the checkpoint (%d, was %d: "
                        "renumbered at a reboot?); its files are matched by inode and first bytes as before",
                        ", ".join(sorted({s.path for s in saved if s.dev == old})[:3]), new, old)
        return [replace(s, dev=moved[s.dev], file_id=make_file_id(moved[s.dev], s.ino, s.fingerprint))
                if s.dev in moved else s for s in saved]

    def _parse_positions(self, positions: Mapping[str, Mapping[str, Any]] | None) -> list[_SavedPosition]:
        result: list[_SavedPosition] = []
        for path, entry in (positions or {}).items():
            if "\0" in path:  # no file name holds one: a damaged checkpoint (os calls would raise ValueError)
                log.warning("ignoring a malformed checkpoint position for %r: a NUL byte in the path", path)
                continue
            path = os.path.abspath(path)
            if isinstance(entry, Mapping) and entry.get("deleted") is True:  # a named file deleted, none since
                if path in self._paths.patterns and not has_magic(path):
                    self._deleted.add(path)
                entry = {k: v for k, v in entry.items() if k != "deleted"}
            if isinstance(entry, Mapping) and not entry:  # followed, no file there then (see positions())
                self._known_absent.add(path)
                continue
            rotated = entry.get("rotated") if isinstance(entry, Mapping) else None
            if isinstance(rotated, list):  # old files of this path, still to be read (see positions())
                for item in rotated:
                    saved = self._parse_position(path, item, rotated=True)
                    if saved is not None:
                        result.append(saved)
                if "file_id" not in entry and "offset" not in entry:  # no file at the path then
                    continue
            elif rotated is not None:
                log.warning("ignoring malformed checkpoint positions of rotated files of %s: %r", path, rotated)
            saved = self._parse_position(path, entry, rotated=False)
            if saved is not None:
                result.append(saved)
        return result

    def _parse_position(self, path: str, entry: Any, rotated: bool) -> _SavedPosition | None:
        """One checkpointed position: of the file at `path`, or of one of its old (rotated) files."""
        try:
            file_id = str(entry["file_id"])
            offset = _checkpoint_number(entry["offset"], MAX_CHECKPOINT_OFFSET)
            fp_len = _checkpoint_number(entry.get("fingerprint_len", self._fingerprinter.size),
                                        max(MAX_CHECKPOINT_FINGERPRINT, self._fingerprinter.size))
            parsed = _parse_file_id(file_id)
            if parsed is None:
                raise ValueError(file_id)
            read_from = size = None
            read = entry.get("read") if isinstance(entry, Mapping) else None
            read = None if read is None else _checkpoint_number(read, MAX_CHECKPOINT_OFFSET)
            if read is not None and read < offset:
                read = None
            read_from = entry.get("read_from")  # a live file's: the name it had, when not its path
            read_from = read_from if isinstance(read_from, str) and read_from and "\0" not in read_from else None
            ids: tuple[str, ...] = ()
            acks_to = None
            if read is not None:  # a reload's: see _SavedPosition.ids
                raw_ids = entry.get("ids", [])
                if not isinstance(raw_ids, list) or len(raw_ids) > MAX_CARRIED_IDS \
                        or not all(isinstance(i, str) and _parse_ack_id(i) is not None for i in raw_ids):
                    raise ValueError(raw_ids)
                ids = tuple(raw_ids)
            if rotated and read is not None:
                if entry.get("acks_to") is not None:
                    acks_to = _checkpoint_number(entry["acks_to"], MAX_CHECKPOINT_OFFSET)
            if rotated:
                size = entry.get("size")
                size = None if size is None else _checkpoint_number(size, MAX_CHECKPOINT_OFFSET)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            what = "an old (rotated) file of " if rotated else ""
            then = ("the rest of that old file is not read" if rotated
                    else "it is read as a file not seen before (sources[].start_position: `end` does not read the "
                    "lines written while lograven was stopped)" if self.start_position == "end"
                    else "it is read again from its start (sources[].start_position: beginning)")
            log.warning("ignoring a malformed checkpoint position for %s%s: %r; %s", what, path, entry, then)
            return None
        dev, ino, fingerprint = parsed
        return _SavedPosition(path, file_id, dev, ino, fingerprint, fp_len, offset,
                              path if rotated else None, read_from, size, read, ids, acks_to)

    # ----------------------------------------------------------------- rotated files across restarts

    def _rotated_entry(self, watcher: FileWatcher) -> dict[str, Any]:
        """The positions() entry of a draining or retired file, listed under its path's "rotated"."""
        name, size = watcher.read_from, watcher.size
        if watcher in self._draining:  # still open: its name and size now (renamed again to messages.2?)
            name = _current_name(watcher.fd, watcher.path) or name
            try:
                size = os.fstat(watcher.fd).st_size
            except OSError:
                pass
        return {
            "file_id": watcher.file_id,
            "offset": watcher.acked,
            "fingerprint_len": watcher.fp_len,
            "read_from": name,
            "size": max(size, watcher.scan_pos),
        }

    def _resume_rotated(self, rotated: list[_SavedPosition], matched: dict[str, os.stat_result]) -> None:
        """At start: go on reading the rotated files of the checkpoint, where they are now."""
        matched_ids = {(st.st_dev, st.st_ino) for st in matched.values()}
        for saved in rotated:
            assert saved.rotated_from is not None
            if (saved.dev, saved.ino) in matched_ids:  # under the patterns (a glob): opened as any file
                self._pending_saved.append(saved)
                continue
            if not self._paths.matches(saved.rotated_from):
                log.warning("the old file of %s (%s), not read to its end when lograven stopped, is no "
                            "longer under the configured paths: %s of it were not read",
                            saved.rotated_from, self._describe_name(saved), self._unread(saved))
                continue
            found = self._find_rotated(saved, set(matched))
            # its directory may not be listed now (0700 after an upgrade): not "gone"; kept, in the
            # checkpoint too, and looked for again once the directory can be listed
            if found is None and self._keep_waiting(
                    saved, f"the old file of {saved.rotated_from} ({self._describe_name(saved)})"):
                continue
            if found is None:
                how = log.warning
                if saved.size is not None and saved.size <= saved.offset:
                    how = log.info  # nothing was left in it that we know of
                how("the old file of %s (%s), not read to its end when lograven stopped, is gone (deleted "
                    "or compressed while lograven was stopped): %s of it were not read",
                    saved.rotated_from, self._describe_name(saved), self._unread(saved))
                continue
            self._open_rotated(saved, *found, while_stopped=False)

    @staticmethod
    def _unlistable_place(saved: _SavedPosition) -> str | None:
        """The directory where a rotated file would be that this process cannot list now (permission
        denied, or out of file descriptors: it cannot tell), if any. A file deleted while it was read
        is nowhere to be looked for."""
        assert saved.rotated_from is not None
        if saved.read_from == "(deleted)":
            return None
        places = [os.path.dirname(saved.rotated_from)]
        if saved.read_from is not None and os.path.isabs(saved.read_from):
            places.append(os.path.dirname(saved.read_from))
        for directory in dict.fromkeys(places):
            if _list_error(directory) is not None:  # (a missing directory holds nothing to wait for)
                return directory
        return None

    def _keep_waiting(self, saved: _SavedPosition, what: str) -> bool:
        """Keep a rotated position (`what`, for the message) whose directory cannot be listed now, to be
        looked for once it can (_retry_rotated_waiting), instead of saying it gone; at most MAX_RETIRED.
        Whether it was kept."""
        where = self._unlistable_place(saved)
        if where is None:
            return False
        if len(self._rotated_waiting) >= MAX_RETIRED:
            log.warning("more than %d old files wait for a directory lograven cannot list: forgetting the position "
                        "of %s; %s of it are not read", MAX_RETIRED, what, self._unread(saved))  # fmt: skip
            return True
        log.warning("cannot look for %s in %s (permission denied, or no file descriptor left); its position is kept "
                    "until that directory can be listed", what, where)  # fmt: skip
        self._rotated_waiting.append(saved)
        return True

    def _retry_rotated_waiting(self, matched: dict[str, os.stat_result]) -> None:
        """The rotated positions kept while their directory could not be listed: opened once it can be
        (before the path's new file, which waits for a draining old one), or said gone."""
        here = {(st.st_dev, st.st_ino) for st in matched.values()}
        reopened: set[int] = set()  # watchers put back in this pass: the waiting list is oldest first
        for saved in list(self._rotated_waiting):
            if self._unlistable_place(saved) is not None:
                continue
            self._rotated_waiting.remove(saved)
            if (saved.dev, saved.ino) in here:  # the patterns match it now: opened as any file, at its position
                self._pending_saved.append(saved)
                continue
            found = self._find_rotated(saved, set(matched))
            if found is None:
                log.warning("the old file of %s (%s), not read to its end when lograven stopped, is gone: %s of "
                            "it were not read", saved.rotated_from, self._describe_name(saved), self._unread(saved))
                continue
            log.info("the directory of %s can be listed again: reading the rest of its old file %s",
                     saved.rotated_from, found[0])
            n = len(self._draining)
            self._open_rotated(saved, *found, while_stopped=False)
            if len(self._draining) > n:  # older than its path's files rotated since: read before them
                w = self._draining.pop()
                first = next((i for i, d in enumerate(self._draining) if d.path == w.path and id(d) not in reopened),
                             len(self._draining))  # fmt: skip
                self._draining.insert(first, w)
                reopened.add(id(w))

    def _resume_truncated(self, matched: dict[str, os.stat_result]) -> None:
        """At start: a checkpointed file still under the patterns (the same device and inode) whose first
        bytes changed was truncated (logrotate's copytruncate) or rewritten while lograven was stopped.
        What lograven had not read of it is in the copy beside it, found as for a truncation while
        running (_find_copy): read from the checkpointed offset, before the file's new content. A copy
        the patterns match resumes at that offset as a file of its own."""
        where = {(st.st_dev, st.st_ino): path for path, st in matched.items()}
        for saved in list(self._pending_saved):
            path = where.get((saved.dev, saved.ino))
            if path is None:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                continue  # _open says why
            try:
                st = os.fstat(fd)
                digest = Fingerprinter.prefix(fd, saved.fingerprint_len)
            except OSError:
                continue
            finally:
                os.close(fd)
            if (st.st_dev, st.st_ino) == (saved.dev, saved.ino) and saved.fingerprint_len == 0 \
                    and path == saved.path and saved.rotated_from is None:
                self._say_copy_of_an_empty_file(path, saved, st, where)
                continue  # resumed at byte 0 all the same
            if (st.st_dev, st.st_ino) != (saved.dev, saved.ino) or (
                    digest is not None and digest.startswith(saved.fingerprint)):
                continue  # the checkpointed file (or another one now): _take_saved decides
            if path != saved.path or saved.rotated_from is not None:
                # another name now has that inode (reused after a deletion), or an old file of this path
                # has its inode: renamed away, it never comes back as the live file. Not a truncation; its
                # copy would be whatever file beside it starts with the same few bytes (the checkpointed
                # live file, rotated while stopped and read as well: its lines twice)
                continue
            self._pending_saved.remove(saved)
            self._truncated_at_start.add(path)
            self._stat(path).truncations += 1
            found = self._find_copy(path, st.st_uid, saved.fingerprint, saved.fingerprint_len,
                                    lambda devino: devino in where)
            if isinstance(found, str):
                try:
                    lst = os.lstat(found)
                    followed_as = where.get((lst.st_dev, lst.st_ino))  # matched maybe by another name (a link)
                except OSError:
                    followed_as = None
                if followed_as is not None:
                    copy = matched[followed_as]
                    self._pending_saved.append(replace(
                        saved, path=followed_as, dev=copy.st_dev, ino=copy.st_ino,
                        file_id=make_file_id(copy.st_dev, copy.st_ino, saved.fingerprint)))
                    log.warning("%s was truncated or rewritten in place (copytruncate?) while lograven was stopped; "
                                "its copy %s is followed as a file of its own (the patterns match it): resuming it at "
                                "byte %d, and reading %s from the start. Name the live file only in `sources`",
                                path, followed_as, saved.offset, path)
                    continue
                found = None  # gone meanwhile
            if found is not None and found[2].st_size > saved.offset:
                name, fd, cst = found
                try:
                    fingerprint = self._fingerprinter.fingerprint(fd)
                except OSError as exc:
                    os.close(fd)
                    log.warning("%s was truncated (copytruncate?) while lograven was stopped, and its copy %s "
                                "cannot be read: %s; the lines after byte %d were not read", path, name, exc, saved.offset)
                    continue
                # a reload's reopening: resumed after the lines processed, acknowledged where they were
                start = saved.read if saved.read is not None and saved.offset <= saved.read <= cst.st_size else saved.offset
                log.warning("%s was truncated (copytruncate?) while lograven was stopped: reading the rest of its "
                            "copy %s from byte %d, then the file from the start", path, name, start)
                self._warn_later_generations(path, name, cst)
                watcher = FileWatcher(path, fd, cst, fingerprint, start, self.max_line_bytes)
                watcher.acked = saved.offset
                watcher.ids |= set(saved.ids)  # a reload's lines in flight: their acknowledgements come to it
                self._drain(watcher, name, final=True)
                continue
            if found is not None:
                os.close(found[1])
                log.warning("%s was truncated or rewritten in place (copytruncate?) while lograven was stopped, "
                            "after lograven had read all of it; reading it from the start", path)
                continue
            # Or rotated more than once, and the new file got the old file's inode number (freed when the old
            # generation was compressed): then the generation between is beside it, not a copy (day-one review)
            beside = self._newest_beside(path, (st.st_dev, st.st_ino), lambda devino: devino in where)
            log.warning("%s was truncated in place (copytruncate?), or deleted and created again, or rotated with "
                        "its inode number reused by the new file, while lograven was stopped: the lines written to "
                        "it after byte %d were not read, and no copy of it is beside it %s. Reading it from the "
                        "start", path, saved.offset,
                        f"(its newest uncompressed generation {beside} may hold lines written while lograven was "
                        f"stopped: `lograven score` it if they matter)" if beside else
                        "(compressed at once?: with copytruncate, use logrotate's delaycompress)")  # fmt: skip

    def _say_copy_of_an_empty_file(self, path: str, saved: _SavedPosition, st: os.stat_result,
                                   where: Mapping[tuple[int, int], str]) -> None:
        """At start: the checkpointed file was empty (no first bytes to tell it by), is still at its path
        and changed since. Written to and then copied and truncated while lograven was stopped
        (copytruncate), it looks unchanged, and its lines are in the copy (an admin's review: lost
        without a word). Said, not read: a generation written since the stop may as well be an old file
        its writer wrote to late, whose lines were read (a review: reading it as the copy read a whole
        generation again). The newest plain generation beside it, modified after the checkpoint was
        written, not empty, with the file's owner, neither followed nor an old file being read, is named."""
        if self._saved_at is None or st.st_ctime <= self._saved_at:
            return
        known = set(where) | set(self._by_devino) | {(s.dev, s.ino) for s in self._pending_saved + self._rotated_waiting}
        for name, gst in rotated_generations(path)[0]:
            devino = (gst.st_dev, gst.st_ino)
            if devino == (st.st_dev, st.st_ino) or devino in known or self._paths.matches(name) \
                    or self._paths.excluded(name):
                continue
            if gst.st_mtime <= self._saved_at or gst.st_size == 0 or gst.st_uid != st.st_uid:
                return  # the newest is older than the stop (or not this file's): nothing to say
            log.warning("%s was empty when lograven stopped and was changed since; %s beside it was written since "
                        "too: if logrotate's copytruncate ran meanwhile, the lines written to %s while lograven was "
                        "stopped are there and were not read (`lograven score %s` if they matter)", path, name, path,
                        name)  # fmt: skip
            return

    def _newest_beside(self, path: str, own: tuple[int, int], followed: Callable[[tuple[int, int]], bool]) -> str | None:
        """The newest uncompressed rotated copy of `path` beside it that lograven does not follow: a
        generation of the log that may hold lines not read."""
        for full, st in rotated_generations(path)[0]:
            devino = (st.st_dev, st.st_ino)
            if devino != own and not followed(devino) and not self._paths.matches(full):
                return full
        return None

    def _warn_later_generations(self, path: str, resumed: str, st: os.stat_result) -> None:
        """After a restart, lograven reads the old file it was reading (`resumed`), then the file now at
        `path`. Had the file been rotated more than once while lograven was stopped, a generation between
        the two lies beside them, unread: said, not guessed at (files beside a log are not all its own)."""
        directory, base = os.path.split(path)
        later = []
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return
        # files lograven reads, or will once their directory can be listed, are not "not read"
        known = set(self._by_devino) | {(s.dev, s.ino) for s in self._rotated_waiting + self._pending_saved}
        for n in names:
            full = os.path.join(directory, n)
            if not n.startswith(base) or full in (path, resumed) or self._paths.matches(full):
                continue
            if n.endswith(COMPRESSED_SUFFIXES):
                # older than the plain generation resumed (logrotate compresses the ones after it), and its
                # time is the compression's with a compressor that does not keep it (a soak's false warning)
                continue
            try:
                other = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISREG(other.st_mode) and other.st_mtime > st.st_mtime and (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino) \
                    and (other.st_dev, other.st_ino) not in known:
                later.append(full)
        if later:
            log.warning("%s beside %s changed after %s, which lograven reads the rest of now: rotated more than "
                        "once while lograven was stopped? Their lines are not read (`lograven score` them if they "
                        "matter)", ", ".join(later[:3]) + (" …" if len(later) > 3 else ""), path, resumed)

    def _claim_renamed(self, matched: dict[str, os.stat_result], denied: Mapping[str, OSError]) -> None:
        """At start (the first complete expansion): a checkpointed file that is no longer at its path (rotated while lograven was
        stopped, e.g. by a nightly logrotate during an upgrade) is looked for next to that path, as
        the rotated files of the checkpoint are, and read to its end before the new file."""
        here = {(st.st_dev, st.st_ino) for st in matched.values()}
        for saved in list(self._pending_saved):
            if (saved.dev, saved.ino) in here or not self._paths.matches(saved.path) or saved.path in denied:
                continue  # at its path, or not followed now, or its path cannot be looked at: not known renamed
            as_rotated = replace(saved, rotated_from=saved.path)
            found = self._find_rotated(as_rotated, set(matched))
            if found is not None:  # else _forget_unmatched_saved says what was not read
                self._pending_saved.remove(saved)
                self._renamed_at_start.add(saved.path)
                self._open_rotated(as_rotated, *found, while_stopped=True)

    def _open_rotated(self, saved: _SavedPosition, name: str, fd: int, st: os.stat_result, *, while_stopped: bool) -> None:
        """Read the rest of a rotated file found again at `name` (an open `fd`), as a draining file:
        rotated `while_stopped`, or before lograven stopped (the checkpoint's old files)."""
        assert saved.rotated_from is not None
        offset = saved.offset
        resumed = saved.read is not None and offset <= saved.read <= st.st_size  # reopened by a reload
        if resumed:
            offset = saved.read  # type: ignore[assignment]
        if offset > st.st_size:
            log.warning("the rotated %s (now %s) is shorter (%d bytes) than its saved position (%d): "
                        "truncated while lograven was stopped; reading it from the start",
                        saved.rotated_from, name, st.st_size, offset)
            self._stat(saved.rotated_from).truncations += 1
            offset = 0
        try:
            fingerprint = self._fingerprinter.fingerprint(fd)
        except OSError as exc:
            os.close(fd)
            log.warning("cannot read the rotated %s (now %s): %s; %s were not read",
                        saved.rotated_from, name, exc, self._unread(saved))
            return
        if resumed:
            log.info("resuming the rotated %s (now %s) at byte %d", saved.rotated_from, name, offset)
        else:
            log.info("%s was rotated to %s %s; reading the rest of it from byte %d", saved.rotated_from, name,
                     "while lograven was stopped" if while_stopped else "before lograven stopped", offset)
            self._warn_later_generations(saved.rotated_from, name, st)
        watcher = FileWatcher(saved.rotated_from, fd, st, fingerprint, offset, self.max_line_bytes)
        if resumed:
            watcher.acked = saved.offset
            watcher.ids |= set(saved.ids)  # its lines in flight: their acknowledgements come to it
            watcher.acks_to = saved.acks_to
        self._drain(watcher, name)

    def _drain(self, watcher: FileWatcher, name: str, final: bool = False) -> None:
        """Read an old file of `watcher.path` (rotated, or a copytruncate's copy, now at `name`) to its end
        before the file at the path, then let it go."""
        watcher.draining_since = self._clock()
        watcher.read_from = name
        watcher.final = final  # a copy: no writer adds to it (a rotated file's writer may not have reopened yet)
        self._draining.append(watcher)
        self._by_devino[watcher.devino] = watcher

    def _find_rotated(self, saved: _SavedPosition, exclude: set[str]) -> tuple[str, int, os.stat_result] | None:
        """The file of a rotated position: its last name, or a name next to the path it was followed
        as (or to its last name) that starts with that path's file name (messages.1, messages-20261206),
        with the same device, inode and first bytes. (name, open descriptor, stat) or None."""
        assert saved.rotated_from is not None
        candidates: list[str] = []
        places = _beside(saved.rotated_from)
        if saved.read_from is not None and os.path.isabs(saved.read_from):  # not "(deleted)"
            candidates.append(saved.read_from)
            places.append((os.path.dirname(saved.read_from), places[0][1]))  # an olddir
        for directory, prefix in dict.fromkeys(places):
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            candidates += [os.path.join(directory, n) for n in names if n.startswith(prefix)]
        for name in dict.fromkeys(candidates):
            if name in exclude:
                continue
            try:
                st = os.stat(name)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (saved.dev, saved.ino) or not stat.S_ISREG(st.st_mode):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError as exc:
                log.warning("cannot open the rotated %s (now %s): %s", saved.rotated_from, name, exc)
                return None
            try:
                st = os.fstat(fd)
                digest = Fingerprinter.prefix(fd, saved.fingerprint_len)
            except OSError:
                digest = None
            if (st.st_dev, st.st_ino) == (saved.dev, saved.ino) and digest is not None \
                    and digest.startswith(saved.fingerprint):
                return name, fd, st
            os.close(fd)
            log.info("%s has the inode of the old file of %s but not its content", name, saved.rotated_from)
            return None
        return None

    @staticmethod
    def _describe_name(saved: _SavedPosition) -> str:
        """How a rotated file was last seen, for log messages."""
        if saved.read_from == "(deleted)":
            return "deleted while lograven read it"
        if saved.read_from is None:
            return "rotated"
        return f"rotated to {saved.read_from}"

    @staticmethod
    def _unread(saved: _SavedPosition) -> str:
        """What a lost rotated file held beyond its acknowledged offset, for log messages."""
        if saved.size is None:
            return f"the lines after byte {saved.offset}"
        return f"{max(0, saved.size - saved.offset)} bytes (from byte {saved.offset} to {saved.size})"

    # ----------------------------------------------------------------- reading

    def _check_content(self, watcher: FileWatcher, size: int | None = None) -> None:
        """Detect truncation or in-place rewrites; extend a short file's fingerprint as it grows. `size`:
        the file's, when the caller has just fstat'ed it."""
        stats = self._stat(watcher.path)
        try:
            if size is None:
                size = os.fstat(watcher.fd).st_size
            changed = size < watcher.scan_pos or size < watcher.fp_len
            want = min(self._fingerprinter.size, size)
            head = b""
            if not changed:
                head = _pread_full(watcher.fd, max(want, watcher.fp_len), 0)
                changed = hashlib.sha256(head[: watcher.fp_len]).hexdigest() != watcher.fp_hex
            if changed:
                stats.truncations += 1
                self._read_rest_from_copy(watcher, size)
                watcher.restart(self._fingerprinter.fingerprint(watcher.fd), 0)
            elif want > watcher.fp_len:
                watcher.set_fingerprint(hashlib.sha256(head[:want]).hexdigest(), want)
        except OSError as exc:
            self._note_read_error(watcher, exc)
            return
        watcher.size = size

    def _read_rest_from_copy(self, watcher: FileWatcher, size: int) -> None:
        """A followed file was truncated (logrotate's copytruncate) or rewritten. What lograven had not
        read of it (it was behind, or lines came after its last read) is in the copy logrotate made
        beside it (messages.1, messages-20261206): found by its owner and first bytes, the copy is read
        from where reading stopped, before the file's new content, as a rotated file is. With no copy,
        a loss that the last known size shows is said, in bytes, and counted."""
        unread = max(watcher.size, watcher.scan_pos) - watcher.offset  # by the size at the last look
        try:
            owner = os.fstat(watcher.fd).st_uid
        except OSError:
            owner = -1  # no copy can match
        found = self._find_copy(watcher.path, owner, watcher.fp_hex, watcher.fp_len,
                                lambda devino: devino in self._by_devino)
        if isinstance(found, str):  # the sources' patterns match the copy: it is read as a file of its own
            log.warning("%s was truncated or rewritten in place (copytruncate?); its copy %s is followed as a "
                        "file of its own (the patterns match it), so its lines are read (again) there. Name "
                        "the live file only in `sources`. Reading %s again from the start", watcher.path, found, watcher.path)
            return
        # lines handed out, not yet acknowledged, some of them in the copy (lines written between logrotate's
        # copy and its truncation are in neither file: a copy shorter than the acknowledged offset holds none)
        in_flight = found is not None and watcher.acked < min(watcher.last_emitted_end, found[2].st_size)
        if found is not None and (found[2].st_size > watcher.offset or in_flight):
            name, fd, st = found
            if found[2].st_size > watcher.offset:
                log.warning("%s was truncated (copytruncate?) before lograven had read it all: reading the rest "
                            "of its copy %s from byte %d, then the file again from the start", watcher.path, name,
                            watcher.offset)  # fmt: skip
            else:
                log.info("%s was truncated or rewritten in place (size %d, read up to byte %d; copytruncate?); "
                         "reading it again from the start; the lines read but not yet processed are in its "
                         "copy %s until they are", watcher.path, size, watcher.offset, name)
            # (at most at its end: what was read beyond it is in neither file)
            start = min(watcher.offset, st.st_size)
            copy = FileWatcher(watcher.path, fd, st, (watcher.fp_hex, watcher.fp_len), start, self.max_line_bytes)
            # lines in flight are acknowledged to the copy (their old ids), and its position is checkpointed
            # (under "rotated") until they are: after a crash they are read again from it, as they are from a
            # renamed file (a review: with the file read to its end, they had been forgotten at once)
            copy.acked, copy.last_emitted_end = watcher.acked, min(watcher.last_emitted_end, start)
            if watcher.last_emitted_end > start:  # lines read beyond the copy's end: their acknowledgements end it
                copy.acks_to = watcher.last_emitted_end
            copy.ids |= watcher.ids
            copy.mid_line = watcher.mid_line  # still inside a line begun before lograven started
            self._drain(copy, name, final=True)
            return
        if found is not None:
            os.close(found[1])
        if unread <= 0:  # nothing lost: a routine copytruncate is no warning (lograven_file_truncations_total counts it)
            log.info("%s was truncated or rewritten in place (size %d, read up to byte %d; copytruncate?); "
                     "reading it again from the start", watcher.path, size, watcher.offset)
            return
        log.warning("%s was truncated or rewritten in place (copytruncate?) before lograven had read it all: "
                    "bytes %d to %d (at least %d bytes) were not read, and no copy of it with those bytes is "
                    "beside it (compressed at once?: use logrotate's delaycompress). Reading it again from "
                    "the start", watcher.path, watcher.offset, watcher.offset + unread, unread)  # fmt: skip
        self._stat(watcher.path).unread_bytes += unread

    def _read_before(self, fd: int, st: os.stat_result) -> bool:
        """Whether this is an old file lograven read to its end and let go (the same inode and first
        bytes; renamed or written to since, at most; a reused inode has other first bytes): with
        a fingerprint of a few bytes (a file truncated when it held only part of a line), the rotated
        `messages.1` read earlier matched as the truncated file's copy, and was read again."""
        old = self._read_old.get((st.st_dev, st.st_ino))
        return old is not None and Fingerprinter.prefix(fd, old[1]) == old[0]

    def _find_copy(self, path: str, owner: int, fingerprint: str, fp_len: int,
                   followed: Callable[[tuple[int, int]], bool]) -> tuple[str, int, os.stat_result] | str | None:
        """The copy of a truncated file beside it: a name starting with its name, a regular file (not a
        link: it could point anywhere) with the same owner and first bytes (the hash of its first
        `fp_len` bytes starts with `fingerprint`), not modified in the future, and not an old file
        already read to its end (`_read_before`); the most recently modified. (name, open descriptor, stat); the name
        alone when the copy is `followed` already (the patterns match it); or None."""
        names = []
        for directory, base in _beside(path):
            try:
                names += sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(base) and n != base)
            except OSError:
                continue
        if not names:
            return None
        now = time.time()
        best: tuple[float, str, int, os.stat_result] | None = None
        for name in names:
            try:
                lst = os.lstat(name)
                if not stat.S_ISREG(lst.st_mode) or lst.st_uid != owner or lst.st_mtime > now + 60:
                    continue
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                digest = Fingerprinter.prefix(fd, fp_len)
                ok = ((st.st_dev, st.st_ino) == (lst.st_dev, lst.st_ino)
                      and digest is not None and digest.startswith(fingerprint)
                      and not self._read_before(fd, st))
            except OSError:
                ok = False
            if ok and followed((st.st_dev, st.st_ino)):
                os.close(fd)
                if best is not None:
                    os.close(best[2])
                return name
            if ok and (best is None or st.st_mtime > best[0]):
                if best is not None:
                    os.close(best[2])
                best = (st.st_mtime, name, fd, st)
            else:
                os.close(fd)
        return None if best is None else best[1:]

    def _read(self, watcher: FileWatcher, out: list[RawLine], limit: int | None) -> bool:
        try:
            cut_idle = False
            if watcher.scan_pos == 0 and not watcher.text_checked:
                told, cut_idle = self._text_so_far(watcher)
                if not told:
                    return True  # compressed (let go after this poll), or too few bytes yet to tell
            before = watcher.scan_pos
            stats = self._stat(watcher.path)
            eof = watcher.read(out, limit, self._skip, stats)
        except OSError as exc:
            self._note_read_error(watcher, exc)
            return True
        watcher.failing = False
        # (at the end of the file, `limit` has room left: read stops before the end when it has none)
        if eof and (watcher.final or cut_idle) and watcher.scan_pos > watcher.offset:
            watcher.hand_out_unterminated(out, self._skip, stats)  # before the lines of newer files
        elif watcher.scan_pos != before or watcher.grew_at is None:
            watcher.grew_at = self._clock()
        elif (eof and self.unterminated_after > 0 and watcher.scan_pos > watcher.offset
              and self._clock() - watcher.grew_at >= self.unterminated_after):  # fmt: skip
            watcher.hand_out_unterminated(out, self._skip, stats)
        return eof

    @staticmethod
    def _unfinished(watcher: FileWatcher) -> bool:
        """Whether the file has bytes after its last newline not yet handed out (or, not yet told from a
        compressed file, some bytes not read at all)."""
        if watcher.scan_pos > watcher.offset:
            return True
        if watcher.scan_pos or watcher.text_checked:
            return False
        try:
            return os.fstat(watcher.fd).st_size > 0
        except OSError:
            return False

    def _text_so_far(self, watcher: FileWatcher) -> tuple[bool, bool]:
        """Before a file is read from its first byte: whether it is not a compressed file, and whether it is
        a head too short to tell that stayed the same for unterminated_after (an unterminated line, which
        _read then hands out). A pattern such
        as `messages*` or `*.log*` also matches the rotated, compressed generations (messages.2.gz): read
        as text, each new one made a thousand lines of garbage, and as many alerts. logrotate creates the
        .gz file empty and then writes it, so the check waits for the first bytes."""
        head = os.pread(watcher.fd, COMPRESSION_MAGIC_BYTES, 0)
        kind = compression_of(head)
        if kind is None:
            # too few bytes to tell (bzip2 needs 10): wait for more, unless none will come, or none came for
            # unterminated_after (then it is an unterminated line, handed out by _read)
            watcher.text_checked = _tells_text(head) or watcher.final
            if not watcher.text_checked and head and self.unterminated_after > 0 and not may_become_compressed(head):
                now = self._clock()
                if watcher.grew_at is None or len(head) != watcher.head_seen:
                    watcher.grew_at, watcher.head_seen = now, len(head)
                elif now - watcher.grew_at >= self.unterminated_after:
                    watcher.text_checked = True
                    return True, True
            return watcher.text_checked, False
        self._not_text_found(watcher.path, os.fstat(watcher.fd), kind)
        self._dropped.append(watcher)
        return False, False

    def _not_text_found(self, path: str, st: os.stat_result, kind: str) -> None:
        """A compressed file at `path`: not opened again while unchanged, and said once per path."""
        self._not_text[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns)
        if path not in self._not_text_said:
            self._not_text_said.add(path)
            log.warning("%s is a %s-compressed file (a rotated log the pattern matches?): not read. Give "
                        "patterns that match the logs only (messages, not messages*)", path, kind)

    def _let_go_not_text(self) -> None:
        """Stop following the compressed files the last poll found (see _text_so_far)."""
        for watcher in self._dropped:
            for followed in (self._live, self._draining):
                if watcher in followed:
                    followed.remove(watcher)
            if self._by_devino.get(watcher.devino) is watcher:
                del self._by_devino[watcher.devino]
            watcher.close()  # at most once (a draining one may have been closed in this poll)
            if not any(w.path == watcher.path for w in self._live + self._draining):
                self._stats.pop(watcher.path, None)  # not a followed file: no series on /metrics
        self._dropped.clear()

    def _note_read_error(self, watcher: FileWatcher, exc: OSError) -> None:
        if not watcher.failing:
            watcher.failing = True
            self._stat(watcher.path).read_errors += 1
            log.warning("error reading %s: %s; retrying on the next poll", watcher.path, exc)
