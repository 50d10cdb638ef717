"""Small operating-system helpers shared by the CLI and the daemon."""
from __future__ import annotations

import bz2
import contextlib
import errno
import fnmatch
import gzip
import io
import json
import logging
import lzma
import os
import re
import stat
import zlib
from typing import BinaryIO

log = logging.getLogger(__name__)


class TooLarge(OSError):
    """A file larger than the limit for its kind (read_limited)."""


def read_limited(path, limit: int, errors: str = "strict") -> str:
    """A small file's text (UTF-8), read in at most `limit` bytes: a config or rules file is small, and
    `--config /dev/zero` must not fill the memory. Raises TooLarge beyond the limit, and what open()
    and decoding raise."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(27, f"larger than {limit // 2**20} MiB", str(path))
    return data.decode("utf-8", errors)


def user_name(uid: int) -> str | None:
    """The name of user `uid`, or None when it has none (or there is no user database)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")
#: logrotate's names for old copies: numbered (`.1`) or dated (dateext `-20261207`, `-2026-12-07`), maybe compressed
_ROTATED_SUFFIX = re.compile(r"(\.\d+|-\d[\d_.-]*)(" + "|".join(map(re.escape, COMPRESSED_SUFFIXES)) + ")?")


def rotated_generations(path) -> tuple[list[tuple[str, os.stat_result]], list[tuple[str, os.stat_result]]]:
    """The rotated copies of `path` beside it (`messages.1`, `messages-20261207`), regular files, newest
    first: the plain ones and the compressed ones, each with its stat."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return [], []
    found = []
    for n in names:
        if n.startswith(base) and _ROTATED_SUFFIX.fullmatch(n[len(base):]):
            full = os.path.join(folder, n)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((full, st))
    found.sort(key=lambda f: f[1].st_mtime, reverse=True)
    return ([f for f in found if not f[0].endswith(COMPRESSED_SUFFIXES)],
            [f for f in found if f[0].endswith(COMPRESSED_SUFFIXES)])


def acl_user() -> str:
    """Whom a permission fix (`setfacl -m u:NAME:r FILE`) is for: this process's user (`check --user NAME`
    runs the checks as NAME), or `lograven`, the service's user, when root or nameless runs it."""
    name = user_name(os.geteuid()) if os.geteuid() != 0 else None
    return name or "lograven"


def whoami() -> str:
    """This process's effective user, for messages: `user NAME`, else `uid N`."""
    name = user_name(os.geteuid())
    return f"user {name}" if name else f"uid {os.geteuid()}"


def as_user(name: str, fn, extra_groups: tuple[str, ...] = ()) -> object:
    """`fn()`'s result (JSON-able), computed in a child process running as user `name` with that user's
    groups and `extra_groups` (those that exist): what that user may read is what the kernel says, ACLs
    and all. Only root can do this; raises PermissionError otherwise, KeyError for an unknown user,
    and RuntimeError when the child fails."""
    import grp
    import json
    import pwd

    pw = pwd.getpwnam(name)
    groups = set(os.getgrouplist(name, pw.pw_gid))
    for g in extra_groups:
        try:
            groups.add(grp.getgrnam(g).gr_gid)
        except KeyError:
            pass
    if os.geteuid() != 0:
        raise PermissionError(f"only root can check as user {name}")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, compute, report, and never return into the caller
        code = 0
        try:
            os.close(r)
            os.setgroups(sorted(groups))
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            data = json.dumps({"ok": fn()})
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            data, code = json.dumps({"error": f"{type(e).__name__}: {e}"}), 1
        try:
            view = memoryview(data.encode())
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        reply = {}
    if "ok" not in reply:
        raise RuntimeError(reply.get("error", "the child process gave no answer"))
    return reply["ok"]


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc's malloc_trim). Parsing a large JSON
    document (a checkpoint of 100,000 streams is 77 MB) frees many small blocks that glibc keeps:
    the daemon's RSS stayed 150 MB higher for good after a restart. False where there is no glibc."""
    import ctypes

    try:  # the symbols already loaded into this process (no ctypes.util.find_library: it runs ldconfig)
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return False
    if trim is None:  # musl, macOS: nothing to do
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


COMPRESSION_MAGIC_BYTES = 10  # enough to tell every format compression_of knows


_MAGICS = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd") + tuple(
    b"BZh" + bytes([level]) + block for level in range(0x31, 0x3A) for block in (b"1AY&SY", b"\x17rE8P\x90"))


def may_become_compressed(head: bytes) -> bool:
    """Whether a head too short for compression_of to tell could still be a compressed file's start."""
    return any(magic.startswith(head[: len(magic)]) for magic in _MAGICS)


def compression_of(head: bytes) -> str | None:
    """The compressed format rotated logs come in that `head` (a file's first bytes) starts with, if any."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    # bzip2: "BZh", the block size 1-9, then a block's or the end's magic (a log line may start "BZh")
    if len(head) >= 10 and head[:3] == b"BZh" and 0x31 <= head[3] <= 0x39 and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2"
    return None


# the formats of compression_of that can be read (zstd has no reader in Python's library: it is refused
# with the fix)
DECOMPRESSED_KINDS = ("gzip", "bzip2", "xz")
# what reading a damaged or truncated archive raises besides OSError (gzip.BadGzipFile is one)
DECOMPRESSION_ERRORS = (EOFError, ValueError, zlib.error, lzma.LZMAError)


def open_decompressed(kind: str, f: BinaryIO, path: str) -> BinaryIO:
    """The decompressed bytes of `f`, a stream compressed as `kind` (one of DECOMPRESSED_KINDS), read
    as zcat, bzcat and xzcat read them. Bytes after a gzip archive's last member that start no member
    end it with a warning naming `path`, as `zcat` ends it ("trailing garbage ignored"): Python's bz2
    and lzma readers already ignore what follows their last stream, and gzip's had refused the file
    after its lines were read. A truncated or damaged member is still an error (EOFError, BadGzipFile)."""
    if kind == "bzip2":
        return bz2.open(f, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return io.BufferedReader(_XzWithinMemory(f, path), buffer_size=1 << 16)  # type: ignore[return-value]
    if kind != "gzip":
        raise ValueError(f"{kind}: not one of {DECOMPRESSED_KINDS}")
    return io.BufferedReader(_GzipEndsAtGarbage(gzip.open(f, "rb"), path), buffer_size=1 << 16)  # type: ignore


class _GzipEndsAtGarbage(io.RawIOBase):
    def __init__(self, z: gzip.GzipFile, path: str) -> None:
        self._z, self._path, self._ended = z, path, False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._ended:
            return 0
        try:
            # read1: one read of the member, so what it returned is not dropped when the next one raises
            # (readinto fills `b` from several reads and loses them all to an exception)
            data = self._z.read1(len(b))
        except gzip.BadGzipFile as e:
            # the magic of a member after the first is wrong (the first's was checked by compression_of):
            # the archive's members were whole, what follows them is no archive
            if not str(e).startswith("Not a gzipped file"):
                raise
            log.warning("%s: bytes after the gzip archive's end were ignored (zcat gives the same lines, and "
                        "says \"trailing garbage ignored\"); the lines before them were read", self._path)
            self._ended = True
            return 0
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._z.close()
        finally:
            super().close()


# what decompressing one xz file may take: every xz preset (-9e: a 64 MiB dictionary) decodes in
# under 70 MiB; a crafted file can declare a dictionary of up to 1.5 GiB, which lzma.open() allocates
XZ_MEMORY_LIMIT = 256 * 2**20
_XZ_MAGIC = b"\xfd7zXZ\x00"


class _XzWithinMemory(io.RawIOBase):
    """An xz file's decompressed bytes, as xzcat gives them (concatenated streams, stream padding),
    decoded within XZ_MEMORY_LIMIT: lzma.open() has no memory limit. Bytes after the last stream
    that start no stream end it with a warning naming `path` (lzma.open() ignored them silently).
    Closing it leaves `f` open, as lzma.open(f) does."""

    def __init__(self, f: BinaryIO, path: str) -> None:
        self._f, self._path, self._ended, self._pending = f, path, False, b""
        self._d = self._decompressor()

    @staticmethod
    def _decompressor() -> lzma.LZMADecompressor:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMORY_LIMIT)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._ended:
            if self._d.eof:
                self._next_stream()
                continue
            data = b""
            if self._d.needs_input:
                data, self._pending = self._pending or self._f.read(1 << 16), b""
                if not data:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            try:
                out = self._d.decompress(data, len(b))
            except lzma.LZMAError as e:
                if "memory" not in str(e).lower():
                    raise
                raise lzma.LZMAError(
                    f"decompressing it needs more than {XZ_MEMORY_LIMIT // 2**20} MiB of memory (a dictionary "
                    f"larger than any xz preset's), which lograven does not spend on one file; decompress it "
                    f"yourself (`xz -dc {self._path}`) if you trust it") from None
            if out:
                b[: len(out)] = out
                return len(out)
        return 0

    def _next_stream(self) -> None:
        rest = self._d.unused_data
        while True:
            rest = rest.lstrip(b"\0")  # stream padding
            if len(rest) >= len(_XZ_MAGIC) or (rest and not _XZ_MAGIC.startswith(rest)):
                break
            more = self._f.read(1 << 16)
            if not more:
                break
            rest += more
        if rest.startswith(_XZ_MAGIC):
            self._d, self._pending = self._decompressor(), rest
            return
        if rest:
            log.warning("%s: bytes after the xz file's last stream were ignored; the lines before them were read",
                        self._path)
        self._ended = True


def write_text_replacing(path: str | os.PathLike, text: str) -> None:
    """Write a file whole or not at all: into a temporary file beside it, synced, then renamed over it,
    with the replaced file's mode (and, as root, its owner). A full disk leaves the previous file as it
    was (not a truncated one), and no temporary file.
    Only a regular file itself (or a new one) is replaced so. A symbolic link, a device or a FIFO is
    written through by open(), as before: the kernel's checks on links apply (fs.protected_symlinks:
    root never follows another user's link in /tmp), and /dev/stdout is not renamed over."""
    import tempfile

    path = os.fspath(path)
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            keep_access(f.fileno(), path)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def keep_access(fd: int, path: str | os.PathLike, first_mode: int = 0o666, group_of_directory: bool = False) -> None:
    """Give a new file about to replace `path` (mkstemp makes it 0600, the caller's) the old file's mode
    and, run as root, its owner; by descriptor, as a name in a directory others may write could be
    swapped for a link meanwhile. A first file gets `first_mode` less the umask, and with
    `group_of_directory` its directory's group (a file the daemon's user must read, written by root)."""
    try:
        st = os.stat(path)
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode, uid = first_mode & ~umask, -1
        gid = os.stat(os.path.dirname(os.path.abspath(path))).st_gid if group_of_directory else -1
    os.fchmod(fd, mode)
    if os.geteuid() == 0:
        os.fchown(fd, uid, gid)


# SIGTERM as an exception (see `terminate_as_exit`), held back inside `uninterrupted()` blocks
_uninterrupted = 0
_held_signal: int | None = None


def terminate_as_exit(signum: int, frame: object) -> None:
    """A SIGTERM handler: SystemExit(128 + signum), so cleanups run; inside `uninterrupted()`, when
    the block ends. (Blocking the signal would not do: another thread of the process receives it, and
    Python runs the handler in the main thread all the same.)"""
    global _held_signal
    if _uninterrupted:
        _held_signal = signum
        return
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def uninterrupted():
    """Steps that must not be cut in the middle (two renames that swap a bundle): a SIGTERM handled by
    `terminate_as_exit` meanwhile ends the command after them."""
    global _uninterrupted, _held_signal
    _uninterrupted += 1
    try:
        yield
    finally:
        _uninterrupted -= 1
        if not _uninterrupted:
            signum, _held_signal = _held_signal, None
            if signum is not None:
                raise SystemExit(128 + signum)


def glob_matches(path: str, pattern: str) -> bool:
    """Whether glob.glob(pattern, recursive=True) can give `path`: component by component (fnmatch's `*`
    alone would span `/`: `/var/log/*` over `/var/log/nginx/access.log.1`), a `**` component standing
    for any number of directories, none included. As glob, a wildcard does not give a hidden name (`*.log`
    not `.x.log`, `**` not `.cache/`) unless the pattern's component starts with a dot too."""
    a, b = path.split(os.sep), pattern.split(os.sep)

    def match(i: int, j: int) -> bool:
        while j < len(b):
            if b[j] == "**":
                k = i
                while True:  # over directories, not into hidden ones
                    if match(k, j + 1):
                        return True
                    if k >= len(a) or a[k].startswith("."):
                        return False
                    k += 1
            if i >= len(a) or not fnmatch.fnmatchcase(a[i], b[j]):
                return False
            if a[i].startswith(".") and not b[j].startswith(".") and a[i] not in (".", ".."):
                return False
            i, j = i + 1, j + 1
        return i == len(a)

    return match(0, 0)


def stdin_binary():
    """Standard input's binary stream; a clear error when the process was started with it closed (`<&-`),
    where Python has no sys.stdin at all."""
    import sys

    from lograven.errors import LogravenError

    if sys.stdin is None:
        raise LogravenError("standard input is closed (started with <&-), and the lines are to come from it: "
                            "pipe them in (tail -F FILE | lograven ...), or give the files")  # fmt: skip
    return sys.stdin.buffer


def read_regular(path, limit: int | None = None) -> bytes:
    """A file's bytes, refusing anything but a regular file (links are followed): a FIFO blocked the
    reader for ever (a daemon stuck in a reload, deaf to SIGTERM) and /dev/zero filled the memory. The
    open does not block (O_NONBLOCK); the type is checked on the opened file. Raises OSError (ENOENT,
    EACCES, ...; EINVAL for a file that is not regular, EFBIG beyond `limit`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))
        if limit is not None and st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 2**20} MiB", str(path))
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read()  # a regular file, its size checked: read(limit + 1) would allocate the limit at once
        if limit is not None and len(data) > limit:  # grew since the fstat
            raise OSError(errno.EFBIG, f"larger than {limit // 2**20} MiB", str(path))
        return data
    finally:
        if fd >= 0:
            os.close(fd)


def loads_json(text: str | bytes):
    """json.loads that raises ValueError for every malformed document, also one nested too deeply for
    the parser (100,000 `[`: a RecursionError escaped every `except ValueError` and killed the daemon)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
