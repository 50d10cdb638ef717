"""The model bundle: one directory, verified on load, written atomically, no pickle.

Layout:
    manifest.json      format version, versions, creation time, training summary,
                       thresholds, model metadata, sha256 of every other file
    msgtypes.json      message types (templates, regexes, counts, examples)
    tokenizer.json     BPE tokenizer (HF tokenizers JSON)
    sequence.npz       GRU weights (serving and further training; an ensemble's members
                       after the first under m1_..., m2_...)
    autoencoder.npz    autoencoder weights (serving and further training)
    sequence.keras     the Keras models (an ensemble's others: sequence_m1.keras, ...), for users who want to inspect or
    autoencoder.keras  fine-tune them in Keras; lograven itself never loads them
    plots/*.png        optional training plots (--plots)
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lograven import __version__
from lograven.autoencoder import Autoencoder
from lograven.config import MAX_AE_LENGTH
from lograven.errors import LogravenError
from lograven.msgtypes import MessageTypes
from lograven.osutil import loads_json, read_regular, uninterrupted, user_name
from lograven.sequence import MAX_WINDOW, SequenceModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the manifest carries its own sha256
FORMAT_WITH_ENSEMBLE = 3  # 3: format 2 with an ensemble of sequence GRUs, which versions before it cannot load:
# they refuse it by its format (0.1.0: "bundle format 3 is not supported"), not as "metadata incomplete";
# one GRU's bundle stays format 2, which they load
READABLE_FORMATS = (FORMAT_VERSION, FORMAT_WITH_ENSEMBLE)
MANIFEST = "manifest.json"
REQUIRED = ("msgtypes.json", "tokenizer.json", "sequence.npz", "autoencoder.npz")


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: dict
    types: MessageTypes
    sequence: SequenceModel
    autoencoder: Autoencoder

    @property
    def version(self) -> str:
        return str(self.manifest.get("id", "unknown"))

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("_sha256", ""))

    @property
    def stream_end_after(self) -> float:
        """The silence (seconds) at which training cut streams and taught ends; 0: streams were not cut."""
        try:
            return float((self.manifest.get("training") or {}).get("stream_end_after") or 0.0)
        except (TypeError, ValueError, AttributeError):
            return 0.0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(
    out: Path,
    types: MessageTypes,
    sequence: SequenceModel,
    autoencoder: Autoencoder,
    *,
    training: dict,
    keras_files: bool = True,
    extra_files: dict[str, bytes] | None = None,
    option: str = "--out",
) -> Path:
    """Write a bundle to `out` atomically (temp dir in the same parent, then rename).

    On a write error (full disk, quota, permissions, read-only file system) the temp dir is
    removed, a bundle already at `out` is left as it was, and LogravenError says what failed
    and what to do: nothing half-written is ever left under the bundle's name."""
    out = Path(out)
    if os.geteuid() == 0:
        # root writes through the resolved path, checked before anything is created: a link on the way
        # that another user controls could be re-pointed during the training
        out = Path(os.path.realpath(out))
        existing = out.parent
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if (unsafe := unsafe_for_root(existing)) is not None:
            raise LogravenError(f"{out}: {unsafe}")
    existed = False
    tmp: Path | None = None
    try:
        existed = out.is_dir() and (out / MANIFEST).exists()
        out.parent.mkdir(parents=True, exist_ok=True)
        if (unsafe := unsafe_for_root(out.parent)) is not None:
            raise LogravenError(f"{out}: {unsafe}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        # A bundle holds log lines (type examples, the replay texts) from logs only root and group adm
        # may read: owner and group only (mkdtemp makes 0700; the group is the daemon's when trained as
        # its user, as the docs say: `sudo -u lograven lograven train ...`)
        os.chmod(tmp, 0o750 & ~umask)
        (tmp / "msgtypes.json").write_text(types.dumps(), encoding="utf-8")
        files = ["msgtypes.json", *autoencoder.save(tmp), *sequence.save(tmp)]
        if keras_files:
            files += _save_keras(tmp, sequence, autoencoder)
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
            files.append(name)
        created = datetime.now(timezone.utc)
        digests = {name: sha256_file(tmp / name) for name in sorted(files)}
        ident = created.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha256(json.dumps(digests).encode()).hexdigest()[:8]
        manifest = {
            "format_version": FORMAT_WITH_ENSEMBLE if len(sequence.members_) > 1 else FORMAT_VERSION,
            "id": ident,
            "created": created.isoformat(timespec="seconds"),
            "lograven_version": __version__,
            "tensorflow_version": _tf_version(),
            "training": training,
            "thresholds": {
                "autoencoder": autoencoder.threshold_,
                "sequence_default_p": 0.02,
            },
            "msgtypes": {"types": len(types.types_), "clusters": types.n_clusters_},
            "sequence": sequence.meta(),
            "autoencoder": autoencoder.meta(),
            "files": digests,
        }
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        for root, dirs, names in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o750 & ~umask)
            for n in names:
                os.chmod(os.path.join(root, n), 0o640 & ~umask)
        for name in [*files, MANIFEST]:
            _fsync(tmp / name, strict=True)  # a delayed ENOSPC/EIO must fail here, not go unnoticed
        _replace_dir(tmp, out)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            kept = "the bundle already there is unchanged" if existed else "no partial bundle was left behind"
            # before the temp dir existed, creating a missing parent failed: name the directory refusing it
            where = Path(e.filename).parent if tmp is None and isinstance(e.filename, str) else out.parent
            raise bundle_write_error(out, e, where, option=option, kept=kept) from e
        raise
    return out


def bundle_write_error(out: Path, e: OSError, where: Path, *, option: str = "--out", kept: str = "",
                       named: bool = False) -> LogravenError:  # fmt: skip
    """A write failure at bundle location `out` (in directory `where`) as one line: what, why, the fix
    (`named`: the message starts with the option that gave `out`)."""
    why = e.strerror or str(e) or type(e).__name__
    code = e.errno
    if code == errno.ENOSPC:
        fix = f"free space on that file system (`df -h {where}`) or choose another {option}"
    elif code == errno.EDQUOT:
        fix = f"free space within your disk quota or choose another {option}"
    elif code == errno.EROFS:
        fix = f"choose another {option} on a writable file system"
    elif code in (errno.EACCES, errno.EPERM):
        fix = f"choose another {option}, or run as a user that may write to {where}"
    else:
        fix = f"choose another {option}"
    head = f"{option} {out}" if named else str(out)
    return LogravenError(f"{head}: cannot write the model bundle ({where}: {why}); {fix}" + (f"; {kept}" if kept else ""))


def check_bundle_target(out: str | Path, option: str = "--out", *, named: bool = True) -> None:
    """Refuse, before any training, a bundle location `save_bundle` would fail to write: a file or a
    non-bundle directory in the way, a directory this user cannot write to, a read-only or full file
    system. Creates nothing that stays (a temporary directory is made and removed again).
    `named`: the user gave `out` as `option` (the messages start with it)."""
    out = Path(out)
    head = f"{option} {out}" if named else str(out)
    where = out.parent
    try:
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise LogravenError(f"{head}: exists and is not a bundle directory; choose another {option}")
        if out.is_dir() and not (out / MANIFEST).exists() and any(out.iterdir()):
            raise LogravenError(f"{head}: exists, is not empty and holds no bundle; choose another {option}")
        while not where.exists() and where.parent != where:  # save_bundle creates the missing parents
            where = where.parent
        if not where.is_dir():
            raise LogravenError(f"{head}: {where} is not a directory; choose another {option}")
        if (unsafe := unsafe_for_root(where)) is not None:
            raise LogravenError(f"{head}: {unsafe}")
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=where)
        os.rmdir(probe)
        free = _free_bytes(where)
        if free is not None and free < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {free // 1024} KiB free, a bundle takes a MiB or more")
    except OSError as e:
        raise bundle_write_error(out, e, where, option=option, named=named) from e


def check_room_for_a_version(root: str | Path, option: str) -> None:
    """`check_bundle_target` for the next version of model directory `root` (ModelStore.new_version_path
    numbers after every version directory, one left without a bundle included, so a name no version has is
    probed); its errors name `root`, not the probe."""
    probe = Path(root) / ".room-for-a-version"
    try:
        check_bundle_target(probe, option, named=False)
    except LogravenError as e:
        raise LogravenError(str(e).replace(str(probe), str(root))) from e


#: `check_bundle_target` refuses a file system with less free space than this (the default model's bundle: 1.4 MiB)
MIN_FREE_BYTES = 1 << 20


def unsafe_for_root(directory: Path) -> str | None:
    """Why root must not write a bundle under `directory`, or None. Root writes a bundle's files by
    name into a temporary directory there; if another user owns (or may write to) that directory or
    one above it, that user can swap the temporary directory for a symbolic link while the training
    runs, and root's writes land in any file of the system. Only root is at risk: another user's
    writes are limited to what that user may write anyway."""
    if os.geteuid() != 0:
        return None
    d = Path(os.path.realpath(directory))
    for p in (d, *d.parents):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if st.st_uid != 0:
            name = user_name(st.st_uid)
            owner, sudo_as = (name, name) if name else (f"uid {st.st_uid}", f"'#{st.st_uid}'")
            return (f"{p} belongs to {owner}: as root, a bundle written there could be redirected by that user "
                    f"to overwrite any file; run as {owner} (`sudo -u {sudo_as} lograven ...`)")
        # group write is others' unless the group is root's; a sticky directory keeps entries to their owners
        if (st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != 0)) and not st.st_mode & stat.S_ISVTX:
            return (f"{p} may be written by other users: as root, a bundle written there could be redirected "
                    "to overwrite any file; choose a directory only root may write to")
    return None


def _free_bytes(path: Path) -> int | None:
    """Bytes this user may still write on the file system of `path` (None: not known)."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    if st.f_blocks == 0:  # some network and FUSE file systems report no sizes
        return None
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use the reserved blocks
    return blocks * st.f_frsize


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.is_symlink() or out.is_file():
        raise LogravenError(f"{out}: exists and is not a bundle directory; choose another --out")
    if out.exists():
        if not (out / MANIFEST).exists() and any(out.iterdir()):
            raise LogravenError(f"{out}: exists, is not empty and holds no bundle; choose another --out")
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        # no SIGTERM between the two renames (`lograven` turns it into an exception): it would leave no
        # bundle at --out, the previous one hidden, and the new one removed by the caller's cleanup
        with uninterrupted():
            try:
                os.rename(out, old)
                os.rename(tmp, out)
            except BaseException:  # an error, or Ctrl-C (which uninterrupted() does not hold back)
                if os.path.lexists(old) and not os.path.lexists(out):
                    os.rename(old, out)  # put the previous bundle back
                elif os.path.lexists(old):
                    shutil.rmtree(old, ignore_errors=True)  # interrupted once the new one was in place
                raise
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    _fsync(out.parent)


#: fsync errors that only say the file system cannot sync (not that data was lost)
_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


def _fsync(path: Path, strict: bool = False) -> None:
    """fsync a file or directory; `strict`: raise what says the data may not be on disk (ENOSPC, EIO...)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if strict and e.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _tf_version() -> str | None:
    import sys

    tf = sys.modules.get("tensorflow")
    return getattr(tf, "__version__", None)


def _save_keras(d: Path, sequence: SequenceModel, autoencoder: Autoencoder) -> list[str]:
    from lograven import autoencoder as ae_mod
    from lograven import sequence as seq_mod
    from lograven.tfsetup import keras_session

    keras_session()
    names = []
    for i, W in enumerate(sequence.members_):  # an ensemble: one Keras model per member
        m = seq_mod.build_keras(sequence.n_types_, sequence.params)
        seq_mod.set_keras_weights(m, W)
        names.append("sequence.keras" if i == 0 else f"sequence_m{i}.keras")
        m.save(d / names[-1])
    assert autoencoder.tokenizer_ is not None
    a = ae_mod.build_keras(autoencoder.tokenizer_.vocab_size, autoencoder.length_, autoencoder.params)
    ae_mod.set_keras_weights(a, autoencoder.weights_)
    a.save(d / "autoencoder.keras")
    return names + ["autoencoder.keras"]


def _manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without this field: the manifest checks itself too."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _unreadable(file: Path, e: OSError) -> LogravenError:
    return LogravenError(f"{file}: cannot read ({e.strerror}); run as a user who can read the bundle "
                         "(the service's: lograven) or fix its permissions")


def read_manifest(path: Path) -> dict:
    """Read and verify a bundle's manifest and file hashes (no model parsing)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise LogravenError(f"{path}: no model bundle here; train one with `lograven train --out {path} LOGFILE...`")
    if mpath.is_symlink():  # as the files it lists: a bundle's own, not a link to one elsewhere
        raise LogravenError(f"{mpath}: is a symbolic link; a bundle's files must be its own (retrain or restore it)")
    try:
        raw = read_regular(mpath, MANIFEST_MAX_BYTES)  # not a FIFO (a reload hung) nor /dev/zero
    except FileNotFoundError:
        raise LogravenError(f"{mpath}: missing; {path} is not a complete bundle (retrain or restore it)") from None
    except PermissionError as e:
        raise _unreadable(mpath, e) from e
    except OSError as e:
        raise LogravenError(f"{mpath}: {e.strerror or e}; retrain or restore the bundle") from None
    try:
        manifest = loads_json(raw.decode("utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise LogravenError(f"{mpath}: corrupt manifest ({e}); retrain or restore the bundle") from e
    fv = manifest.get("format_version")
    if fv not in READABLE_FORMATS or isinstance(fv, bool):
        newer = isinstance(fv, int) and not isinstance(fv, bool) and fv > max(READABLE_FORMATS)
        fix = ("it was written by a newer lograven: upgrade lograven (or train a model with this one)" if newer
               else "retrain with `lograven train`")
        raise LogravenError(
            f"{mpath}: bundle format {fv!r} is not supported by lograven {__version__} "
            f"(reads formats {', '.join(map(str, READABLE_FORMATS))}); {fix}"
        )
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise LogravenError(f"{mpath}: checksum mismatch (manifest corrupt or modified); retrain or restore the bundle")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise LogravenError(f"{mpath}: no file list; retrain or restore the bundle")
    for name in REQUIRED:
        if name not in files:
            raise LogravenError(f"{mpath}: does not list {name}; retrain or restore the bundle")
    for name, digest in files.items():
        fp = path / name
        if not isinstance(name, str) or "\0" in name or ".." in Path(name).parts or Path(name).is_absolute():
            raise LogravenError(f"{mpath}: bad file name {name!r}; retrain or restore the bundle")
        try:
            st = os.lstat(fp)
        except FileNotFoundError:
            raise LogravenError(f"{fp}: missing from the bundle; retrain or restore it") from None
        except OSError as e:
            raise _unreadable(fp, e) from None
        if not stat.S_ISREG(st.st_mode):  # a link (to /proc/kmsg, which would block) or a device: never ours
            raise LogravenError(f"{fp}: not a regular file (a link or a device); retrain or restore the bundle")
        try:
            actual = sha256_file(fp)
        except OSError as e:
            raise _unreadable(fp, e) from None
        if actual != digest:
            raise LogravenError(f"{fp}: checksum mismatch (file corrupt or modified); retrain or restore the bundle")
    manifest["_sha256"] = hashlib.sha256(raw).hexdigest()
    return manifest


def load_types(path: str | Path) -> MessageTypes:
    """A bundle's message types alone (no checksums, no models: `load_bundle` verifies the bundle)."""
    file = Path(path) / "msgtypes.json"
    try:
        return MessageTypes.from_json(loads_json(read_regular(file).decode("utf-8")), str(file))
    except LogravenError:
        raise
    except OSError as e:
        raise LogravenError(f"{file}: cannot read ({e.strerror or e}); retrain or restore the bundle") from None
    except Exception as e:  # noqa: BLE001 - a bad regex, a huge number: whatever it holds, the file is bad
        raise LogravenError(f"{file}: corrupt ({type(e).__name__}: {e}); retrain or restore the bundle") from None


MANIFEST_MAX_BYTES = 64 * 2**20
# MAX_AE_LENGTH (config): tokens per line the autoencoder reads, training.autoencoder.max_length_cap's bound; a
# manifest's length of 1,000,000 passed `check` and the first batch asked for 5 GB (hostile-input review)


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle, verifying format version and every file's sha256 first, then its metadata, and
    scoring one line with it: a bundle that loads serves."""
    path = Path(path)
    manifest = read_manifest(path)
    types = load_types(path)
    part = "manifest.json"  # what was being read, for the message: its metadata, or a model's weights with it
    try:
        if not isinstance(manifest.get("training", {}), dict):
            raise ValueError("'training' is not an object")
        part = "manifest.json's sequence section or sequence.npz"
        seq = SequenceModel.load(path, manifest["sequence"])
        part = "manifest.json's autoencoder section, autoencoder.npz or tokenizer.json"
        ae = Autoencoder.load(path, manifest["autoencoder"])
        part = "manifest.json"
        if not 1 <= ae.length_ <= MAX_AE_LENGTH:
            raise ValueError(f"autoencoder length {ae.length_} is not in 1..{MAX_AE_LENGTH}")
        if not (math.isfinite(ae.threshold_) and ae.threshold_ >= 0):  # NaN turned the detector off, unsaid
            raise ValueError(f"autoencoder threshold {ae.threshold_} is not a finite number >= 0")
        if not isinstance(seq.params.units, int) or isinstance(seq.params.units, bool) or seq.params.units < 1:
            raise ValueError(f"sequence units {seq.params.units!r} is not a positive integer")
        window = seq.params.window  # only serving reads it (a review: 0 loaded, then divided by zero at a line)
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"sequence window {window!r} is not a whole number in 1..{MAX_WINDOW}")
    except LogravenError:
        raise
    except Exception as e:  # noqa: BLE001 - metadata of any shape: one clear error, never a traceback
        raise LogravenError(f"{path}: model metadata invalid in {part} ({type(e).__name__}: {e}); retrain or restore "
                            "the bundle") from None
    if seq.n_types_ < types.n_types:
        raise LogravenError(f"{path}: sequence model knows {seq.n_types_} types but msgtypes.json has {types.n_types}; retrain")
    _trial_run(path, seq, ae)
    bundle = Bundle(path, manifest, types, seq, ae)
    from lograven.detector import Detector

    try:  # the detector reads the metadata too (calibration figures): a value of the wrong type killed a reload
        Detector(bundle)
    except Exception as e:  # noqa: BLE001 - metadata of any shape: one clear error, never a traceback
        raise LogravenError(f"{path}: model metadata invalid in manifest.json's sequence section ({type(e).__name__}: "
                            f"{e}); retrain or restore the bundle") from None
    return bundle


def _trial_run(path: Path, seq: SequenceModel, ae: Autoencoder) -> None:
    """Score one line with the loaded models: metadata that loads but cannot serve (an autoencoder kernel
    of width 0, weights that fit but give NaN) failed at the daemon's first line, after `check` said OK."""
    import numpy as np

    try:
        err = ae.score(["lograven trial run 1"])
        h = seq.step(np.zeros((1, seq.width), dtype=np.float32), np.zeros(1, dtype=np.int64))
        p = seq.probs(h)
        ok = err.shape == (1,) and bool(np.isfinite(err).all()) and p.shape == (1, seq.n_types_ + 1) \
            and bool(np.isfinite(p).all())
        why = "it gives no finite score"
    except Exception as e:  # noqa: BLE001
        ok, why = False, f"{type(e).__name__}: {e}"
    if not ok:
        raise LogravenError(f"{path}: the model cannot score a line ({why}); retrain or restore the bundle")
