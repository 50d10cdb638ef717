"""Numbered bundle versions in one directory, with a `current` pointer switched atomically.

    models/
      v0001/            a bundle (manifest.json, ...)
      v0002/
      current -> v0002  symlink, replaced with rename(2): readers never see it missing
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from lograven.bundle import MANIFEST, load_bundle
from lograven.errors import LogravenError

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^v(\d{4,})$")


RUNNING_MODEL = "running-model"  # in the state_dir: the model directory the daemon runs, for `models prune`


def record_running(state_dir: Path, model: Path) -> None:
    """Note in `state_dir` the model the daemon runs now (its resolved path): `lograven models prune` keeps
    that version, which may not be `current` (a damaged current the daemon refused). Best effort."""
    from lograven.osutil import write_text_replacing

    try:
        write_text_replacing(Path(state_dir) / RUNNING_MODEL, str(Path(model).resolve()) + "\n")
    except OSError as e:
        log.debug("cannot note the running model in %s: %s", state_dir, e)


def running_version(store: ModelStore, state_dir: Path) -> str | None:
    """The version of `store` a daemon with this `state_dir` runs (or ran last), if it is one of its."""
    try:
        path = Path((Path(state_dir) / RUNNING_MODEL).read_text(encoding="utf-8").strip())
        return path.name if path.parent == store.root.resolve() else None
    except (OSError, ValueError):
        return None


@dataclass
class VersionInfo:
    name: str
    path: Path
    current: bool
    manifest: dict | None
    problem: str | None = None


class ModelStore:
    """The model directory of the daemon (`<state_dir>/models` by default)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def is_store(path: str | Path) -> bool:
        p = Path(path)
        return (p / "current").is_symlink() or any(_VERSION.match(c.name) for c in p.iterdir()) if p.is_dir() else False

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = [c.name for c in self.root.iterdir() if _VERSION.match(c.name) and (c / MANIFEST).exists()]
        return sorted(names, key=lambda n: int(n[1:]))

    def current_name(self, strict: bool = True) -> str | None:
        """The version `current` names; None when there is no link. A link to a directory outside the
        store is an error (strict) or None: its name would be taken for a local version's."""
        link = self.root / "current"
        if not link.is_symlink():
            return None
        if not _names_a_child(self.root, link):
            if strict:
                raise LogravenError(_outside(self.root))
            return None
        return Path(os.readlink(link)).name

    def current_path(self) -> Path | None:
        """The current version's directory; None when there is none yet (learn mode). A `current` that is
        a directory or a file (a store copied with `cp -r`) is an error: taken for "none yet", the daemon
        learned afresh beside the versions it had, then could not make its new one current."""
        name = self.current_name()
        if name is None and os.path.lexists(self.root / "current"):
            raise LogravenError(_not_a_link(self.root))
        return self.root / name if name else None

    def next_name(self) -> str:
        vs = self.versions()
        n = int(vs[-1][1:]) + 1 if vs else 1
        return f"v{n:04d}"

    def new_version_path(self) -> Path:
        """The next version's directory, created empty, which reserves its name: periodic relearning and a
        `lograven learn` at the same moment get two versions, never one replacing the other. A reserved
        directory nothing was saved in is removed with `release`."""
        self.root.mkdir(parents=True, exist_ok=True)
        # after every version name in use, reserved ones (no manifest yet) included
        n = max((int(c.name[1:]) for c in self.root.iterdir() if _VERSION.match(c.name)), default=0) + 1
        while True:
            path = self.root / f"v{n:04d}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1  # taken meanwhile: the next number

    def release(self, path: Path) -> None:
        """Give back a version directory from `new_version_path` that stayed empty (a failed or stopped save)."""
        with contextlib.suppress(OSError):
            path.rmdir()  # only when empty: a saved bundle is never removed here

    @contextlib.contextmanager
    def switching(self):
        """Held while a caller checks `current` and then moves it (`learn`, learn mode, periodic relearning,
        `models rollback`): two at once had both switched, the second over the first's version (a review).
        An exclusive flock on `.switch.lock` in the directory; without one (a read-only directory), none."""
        import fcntl

        try:
            # never through a link planted there (root runs `models rollback` in the service user's directory)
            fd = os.open(self.root / ".switch.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            log.warning("%s: cannot open its lock %s (%s): moving `current` without it; remove the file (it is "
                        "made again) if another user made it unreadable", self.root, self.root / ".switch.lock",
                        e.strerror or e)
            yield
            return
        with contextlib.suppress(OSError):  # readable by every user of the directory whatever the umask (a review:
            st = os.fstat(fd)  # root's 0600 file left the daemon without the lock); a plain file of ours only
            if st.st_uid == os.geteuid() and stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size == 0:
                os.fchmod(fd, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def set_current(self, name: str) -> None:
        """Point `current` at version `name` (verified first), atomically."""
        if not _VERSION.match(name):
            raise LogravenError(f"{name!r} is not a version name (like v0003); see `lograven models list`")
        target = self.root / name
        if not target.is_dir():
            raise LogravenError(f"{target}: there is no version {name} in {self.root}; `lograven models list --dir "
                                f"{self.root}` lists the versions")
        load_bundle(target)  # refuses corrupt or partial bundles, and ones that load but cannot serve
        if os.path.lexists(self.root / "current") and not (self.root / "current").is_symlink():
            raise LogravenError(_not_a_link(self.root))
        tmp = self.root / f".current.tmp-{os.getpid()}"
        try:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            os.symlink(name, tmp)
            os.replace(tmp, self.root / "current")
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            now = self.current_name(strict=False)
            raise LogravenError(
                f"{self.root}/current: cannot point it at {name} ({e.strerror or e}); it still points at "
                f"{now or 'nothing'}. Free space or fix the permissions of {self.root}, then run "
                f"`lograven models rollback --dir {self.root} --to {name}`"
            ) from None
        log.info("model store %s: current -> %s", self.root, name)

    def list(self) -> list[VersionInfo]:
        cur = self.current_name(strict=False)  # a `current` outside the store stars none of its versions
        out = []
        for name in self.versions():
            p = self.root / name
            try:
                m = load_bundle(p).manifest  # as the daemon loads it: a version rollback would refuse is BROKEN
                out.append(VersionInfo(name, p, name == cur, m))
            except LogravenError as e:
                out.append(VersionInfo(name, p, name == cur, None, str(e)))
        # a version directory with files but no manifest (a copy in part, a save cut short by hand): not a
        # version, but shown, as BROKEN (a review: it was invisible, `current` pointing at it unexplained)
        try:
            odd = [c for c in self.root.iterdir() if _VERSION.match(c.name) and not (c / MANIFEST).exists()
                   and c.is_dir() and any(c.iterdir())]
        except OSError:
            odd = []
        for p in odd:
            out.append(VersionInfo(p.name, p, p.name == cur, None, f"{p / MANIFEST}: missing (a copy in part, or a "
                                   "save that did not finish): not a version; remove the directory"))
        return sorted(out, key=lambda i: int(i.name[1:]))

    def rollback(self, to: str | None = None) -> str:
        """Switch `current` to version `to`, or to the newest valid version before the current one."""
        with self.switching():
            return self._rollback(to)

    def _rollback(self, to: str | None) -> str:
        if to:
            self.set_current(to)
            return to
        cur = self.current_name()
        vs = self.versions()
        if cur is None or not _VERSION.match(cur):
            raise LogravenError(f"{self.root}: no current version to roll back from; make one current with "
                                f"`lograven models rollback --dir {self.root} --to vNNNN` (`lograven models list` "
                                "shows them)")
        # the valid versions before it, also when `current` names a version that is gone or damaged (a review:
        # refused, with valid older versions there)
        for name in reversed([v for v in vs if int(v[1:]) < int(cur[1:])]):
            try:
                self.set_current(name)
                return name
            except LogravenError as e:
                log.warning("skipping %s: %s", name, e)
        raise LogravenError(f"{self.root}: no older valid version than {cur}")

    def prune(self, keep: int, protect: tuple[str, ...] = ()) -> list[str]:
        """Delete the oldest versions beyond the newest `keep`, never the current one nor those in
        `protect` (e.g. the version a daemon runs). Reserved directories (no manifest yet) are not
        versions and are left alone. Returns the names deleted."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        for left in self.root.glob(".deleting-v*"):  # an earlier prune that stopped half-way
            shutil.rmtree(left, ignore_errors=True)
        self._remove_abandoned()
        vs = self.versions()
        removed = []
        for name in vs[: max(0, len(vs) - keep)]:
            if name in protect or name == self.current_name():  # read each time: a rollback may have just picked it
                continue
            path = self.root / name
            try:
                # renamed away first: a half-deleted version never looks like a version
                doomed = self.root / f".deleting-{name}-{os.getpid()}"
                os.rename(path, doomed)
            except OSError as e:
                log.warning("model store %s: cannot delete %s (%s)", self.root, name, e.strerror or e)
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(name)
        if removed:
            log.info("model store %s: deleted old versions %s (keeping %d)", self.root, ", ".join(removed), keep)
        return removed

    ABANDONED_AFTER = 24 * 3600.0  # seconds: no save (learn mode's training included) takes that long

    def _remove_abandoned(self) -> None:
        """What a save killed mid-way left (SIGKILL, power loss): an empty reserved version directory,
        or a bundle's `.vNNNN.tmp-*` directory, untouched for a day."""
        now = time.time()
        for c in self.root.iterdir():
            reserved = _VERSION.match(c.name) and not (c / MANIFEST).exists()
            partial = c.name.startswith(".v") and ".tmp-" in c.name
            try:
                if not (reserved or partial) or not c.is_dir() or c.is_symlink() or now - c.stat().st_mtime < self.ABANDONED_AFTER:
                    continue
                if reserved and any(c.iterdir()):
                    continue  # not empty and no manifest: a broken version for `models list` to show, not ours to delete
            except OSError:
                continue
            shutil.rmtree(c, ignore_errors=True)
            log.info("model store %s: removed %s, left by a save that did not finish", self.root, c.name)


def _not_a_link(root: Path) -> str:
    kind = "a directory" if (root / "current").is_dir() else "a file"
    return (f"{root / 'current'}: is {kind}, not a symbolic link to a version (a copy made by `cp -r`?); move it "
            f"away (`mv {root / 'current'} {root / 'current.old'}`) and make a version current with `lograven models "
            f"rollback --dir {root} --to vNNNN` (`lograven models list --dir {root}` lists them)")


def _names_a_child(root: Path, link: Path) -> bool:
    """Whether the symbolic link `link` names an entry of `root` itself (`v0003`, or its absolute path)."""
    target = Path(os.readlink(link))
    if target.name in ("", ".", ".."):
        return False
    try:
        return (root / target).parent.resolve() == root.resolve()
    except (RuntimeError, OSError):
        return False


def _outside(root: Path) -> str:
    current = root / "current"
    return (f"{current}: points to {os.readlink(current)}, which is not in {root}; lograven keeps `current` "
            f"pointing at one of the versions beside it. Make one current: `lograven models rollback --dir {root} "
            f"--to vNNNN` (`lograven models list --dir {root}` lists them), or name the other bundle itself "
            "(`model:` in the configuration, or `--model DIR`)")


def resolve_model_path(path: str | Path) -> Path:
    """A bundle directory, or a model store (its `current` version)."""
    p = Path(path)
    try:
        if (p / MANIFEST).exists():
            return p
        current = p / "current"
        if current.is_symlink():
            if not _names_a_child(p, current):
                raise LogravenError(_outside(p))
            try:
                target = current.resolve(strict=True)
            except (RuntimeError, OSError) as e:  # a loop (current -> current): a traceback, a dead daemon
                if isinstance(e, FileNotFoundError):
                    target = current.resolve()
                else:
                    raise LogravenError(f"{current}: cannot be followed ({e}); make an existing version current: "
                                        f"`lograven models rollback --dir {p} --to vNNNN`") from None
            if not target.is_dir():
                raise LogravenError(
                    f"{current}: points to {os.readlink(current)}, which is not there; make an existing version "
                    f"current: `lograven models list --dir {p}`, then `lograven models rollback --dir {p} --to vNNNN`"
                )
            return target
        if current.exists():
            raise LogravenError(_not_a_link(p))
    except PermissionError as e:
        raise LogravenError(
            f"{p}: cannot look inside ({e.strerror}); run as a user who can read it (the service's models "
            "are the lograven user's: `sudo -u lograven lograven ...`) or copy the bundle"
        ) from None
    if not p.exists():
        raise LogravenError(f"{p}: no such directory; give a model bundle (`lograven train --out DIR LOGFILE...` "
                            "makes one) or a model directory (`lograven train --out DIR/v0001 LOGFILE...`, then "
                            "`lograven models rollback --dir DIR --to v0001` makes it current)")
    if not p.is_dir():
        raise LogravenError(f"{p}: is a file, not a model; give a model bundle directory (`lograven train --out DIR "
                            "LOGFILE...` makes one) or a model directory such as /var/lib/lograven/models")
    try:
        versions = sorted(c.name for c in p.iterdir() if _VERSION.match(c.name) and (c / MANIFEST).exists())
    except OSError:
        versions = []
    if versions:
        raise LogravenError(
            f"{p}: a model directory with versions ({', '.join(versions[-3:])}) but no `current` one; make one "
            f"current: `lograven models rollback --dir {p} --to {versions[-1]}` (`lograven models list --dir {p}` "
            "lists them)"
        )
    raise LogravenError(
        f"{p}: neither a model bundle nor a model directory with a `current` version; train its first "
        f"version with `lograven train --out {p}/v0001 LOGFILE...` and make it current with `lograven models "
        f"rollback --dir {p} --to v0001` (a model directory, as `learn` and the daemon keep it), or give a bundle"
    )


def describe(info: VersionInfo) -> str:
    m = info.manifest or {}
    t = m.get("training", {})
    star = "*" if info.current else " "
    if info.problem:
        return f"{star} {info.name}  BROKEN: {info.problem}"
    # a learned version inherits its parent's training summary: its own lines are `learned_lines` (an audit
    # saw "30000 lines" on every version, whatever each had learned)
    what = (f"{t.get('types', '?')} types; learned {t.get('learned_lines', '?')} lines from {t['learned_from']} "
            f"on {t.get('parent', '?')}" if t.get("learned_from") else
            f"trained on {t.get('lines', '?')} lines, {t.get('types', '?')} types")  # fmt: skip
    return f"{star} {info.name}  {m.get('id', '?')}  created {m.get('created', '?')}  {what}"


def dump(infos: list[VersionInfo]) -> str:
    return json.dumps(
        [{"name": i.name, "current": i.current, "id": (i.manifest or {}).get("id"), "created": (i.manifest or {}).get("created"), "problem": i.problem} for i in infos],
        indent=1,
    )
