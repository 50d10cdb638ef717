"""The model bundle: round trip, verification of every file, clear errors, no pickle."""
from __future__ import annotations

import io
import re
import json
from pathlib import Path

import numpy as np
import pytest

from lograven.bundle import MANIFEST, REQUIRED, load_bundle, read_manifest, save_bundle, sha256_file
from lograven.errors import LogravenError

pytestmark = pytest.mark.slow


def manifest_of(d: Path) -> dict:
    return json.loads((d / MANIFEST).read_text(encoding="utf-8"))


def write_manifest(d: Path, manifest: dict) -> None:
    """Write a modified manifest that is self-consistent (its own checksum updated), so the
    tests reach the check they are about rather than the manifest checksum."""
    from lograven.bundle import _manifest_digest

    manifest = dict(manifest)
    manifest.pop("_sha256", None)
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (d / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def rehash(d: Path, name: str) -> None:
    """Make the manifest agree with a modified file, so that the file's content is what is tested."""
    m = manifest_of(d)
    m["files"][name] = sha256_file(d / name)
    write_manifest(d, m)


def flip_byte(path: Path, pos: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if pos is None else pos
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def sample_messages(b) -> list[str]:
    return [e for t in b.types.types_ for e in t.examples] + ["/dev/sda1 out of diskspace", "something new entirely"]


def test_load_roundtrip(bundle_dir: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle_dir)
    assert set(REQUIRED) <= set(b.manifest["files"])
    assert b.manifest["format_version"] == 2
    assert b.version == b.manifest["id"]
    assert len(b.sha256) == 64
    assert b.sequence.n_types_ == b.types.n_types
    assert b.autoencoder.threshold_ == b.manifest["thresholds"]["autoencoder"]
    assert b.manifest["training"]["lines"] == 3000
    # save what was loaded (no Keras files: no TensorFlow needed) and load it again
    out = save_bundle(tmp_path / "again", b.types, b.sequence, b.autoencoder, training={"note": "copy"}, keras_files=False)
    c = load_bundle(out)
    msgs = sample_messages(b)
    assert c.types.predict(msgs).tolist() == b.types.predict(msgs).tolist()
    for k, v in b.sequence.weights_.items():
        assert np.array_equal(c.sequence.weights_[k], v), k
    for k, v in b.autoencoder.weights_.items():
        assert np.array_equal(c.autoencoder.weights_[k], v), k
    assert c.autoencoder.length_ == b.autoencoder.length_
    assert c.autoencoder.threshold_ == b.autoencoder.threshold_
    texts = ["sshd Accepted password for alice from <IP> port <N> ssh<N>", "kernel /dev/sda<N> out of diskspace"]
    assert np.array_equal(c.autoencoder.score(texts), b.autoencoder.score(texts))
    assert c.manifest["training"] == {"note": "copy"}
    assert not (out / "sequence.keras").exists()


def test_save_over_existing_bundle_replaces_it(bundle, tmp_path: Path) -> None:
    out = tmp_path / "m"
    save_bundle(out, bundle.types, bundle.sequence, bundle.autoencoder, training={"n": 1}, keras_files=False)
    save_bundle(out, bundle.types, bundle.sequence, bundle.autoencoder, training={"n": 2}, keras_files=False)
    assert load_bundle(out).manifest["training"] == {"n": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old directories left


def test_save_refuses_non_bundle_directory(bundle, tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(LogravenError, match="not empty"):
        save_bundle(out, bundle.types, bundle.sequence, bundle.autoencoder, training={}, keras_files=False)
    assert (out / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_manifest_lists_every_file_of_the_bundle(bundle_dir: Path) -> None:
    listed = set(manifest_of(bundle_dir)["files"])
    present = {str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*") if p.is_file()} - {MANIFEST}
    assert listed == present
    assert {"sequence.keras", "autoencoder.keras"} <= listed


def test_flipping_a_byte_in_any_listed_file_is_detected(bundle_copy: Path) -> None:
    files = sorted(manifest_of(bundle_copy)["files"])
    assert len(files) >= len(REQUIRED)
    for name in files:
        path = bundle_copy / name
        original = path.read_bytes()
        flip_byte(path)
        with pytest.raises(LogravenError) as info:
            load_bundle(bundle_copy)
        assert name in str(info.value), (name, str(info.value))
        assert "checksum" in str(info.value)
        path.write_bytes(original)
    load_bundle(bundle_copy)  # intact again


@pytest.mark.parametrize("pos", [0, -1], ids=["first-byte", "last-byte"])
def test_flipping_a_structural_byte_of_the_manifest_is_detected(bundle_copy: Path, pos: int) -> None:
    path = bundle_copy / MANIFEST
    size = path.stat().st_size
    flip_byte(path, pos % size)
    with pytest.raises(LogravenError, match=MANIFEST):
        load_bundle(bundle_copy)


def test_flipping_a_value_byte_of_the_manifest_is_detected(bundle_copy: Path) -> None:
    path = bundle_copy / MANIFEST
    raw = path.read_bytes()
    m = json.loads(raw)
    digits = repr(m["autoencoder"]["threshold"]).encode()
    pos = raw.index(b'"threshold": ' + digits) + len(b'"threshold": ') + 2  # a digit after the point
    assert raw[pos : pos + 1].isdigit()
    data = bytearray(raw)
    data[pos] = ord("0") + (data[pos] - ord("0") + 1) % 10  # still valid JSON, another number
    path.write_bytes(bytes(data))
    with pytest.raises(LogravenError, match=MANIFEST):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("name", [*REQUIRED, "sequence.keras"])
def test_missing_file_is_named(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(LogravenError, match=name.replace(".", r"\.") + ": missing"):
        load_bundle(bundle_copy)


def test_manifest_not_listing_a_required_file(bundle_copy: Path) -> None:
    m = manifest_of(bundle_copy)
    del m["files"]["tokenizer.json"]
    write_manifest(bundle_copy, m)
    with pytest.raises(LogravenError, match="does not list tokenizer.json"):
        load_bundle(bundle_copy)


def test_manifest_file_name_escaping_the_bundle(bundle_copy: Path) -> None:
    m = manifest_of(bundle_copy)
    m["files"]["../outside"] = "0" * 64
    write_manifest(bundle_copy, m)
    with pytest.raises(LogravenError, match="bad file name"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("version", [4, 1, 0, None, "2", True])
def test_wrong_format_version(bundle_copy: Path, version) -> None:
    m = manifest_of(bundle_copy)
    m["format_version"] = version
    write_manifest(bundle_copy, m)
    with pytest.raises(LogravenError, match=r"bundle format .* is not supported"):
        load_bundle(bundle_copy)


def test_directory_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "msgtypes.json").write_text("{}")
    with pytest.raises(LogravenError, match="manifest.json: missing"):
        load_bundle(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LogravenError, match="no model bundle here"):
        load_bundle(tmp_path / "nope")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LogravenError, match="no model bundle here"):
        load_bundle(f)


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b"\xff\xfe{"], ids=["empty", "list", "not-utf8"])
def test_corrupt_manifest(bundle_copy: Path, content: bytes) -> None:
    (bundle_copy / MANIFEST).write_bytes(content)
    with pytest.raises(LogravenError, match="manifest.json: corrupt manifest"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("msgtypes.json", b"{not json", "msgtypes.json"),
        ("msgtypes.json", b'{"format": 1}', "msgtypes.json"),
        ("tokenizer.json", b'{"model": 1}', "tokenizer.json"),
        ("sequence.npz", b"PK\x03\x04 not really a zip", "sequence.npz"),
    ],
    ids=["msgtypes-json", "msgtypes-fields", "tokenizer", "npz"],
)
def test_bad_content_with_matching_checksum_is_named(bundle_copy: Path, name: str, content: bytes, message: str) -> None:
    """A file that passes its checksum (edited and re-hashed) but is unusable still gets a clear error."""
    (bundle_copy / name).write_bytes(content)
    rehash(bundle_copy, name)
    with pytest.raises(LogravenError, match=message.replace(".", r"\.")):
        load_bundle(bundle_copy)


def test_npz_missing_weights_is_named(bundle_copy: Path) -> None:
    with np.load(bundle_copy / "autoencoder.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "out_b"}
    np.savez(bundle_copy / "autoencoder.npz", **arrays)
    rehash(bundle_copy, "autoencoder.npz")
    with pytest.raises(LogravenError, match=r"autoencoder\.npz: missing weights \['out_b'\]"):
        load_bundle(bundle_copy)


def test_weights_beyond_the_model_are_not_read_and_no_array_is_huge(bundle_copy: Path, monkeypatch) -> None:
    """Hostile-input review (2026-12-07): a 3 MB sequence.npz with a 3 GiB array of zeros besides the model's
    loaded every array (19 s, 4 GB); complex weights loaded with a warning. Extra arrays are not read, a
    required one larger than any model's is refused before it is read, complex ones are refused."""
    import lograven.runtime as rt

    with np.load(bundle_copy / "sequence.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(bundle_copy / "sequence.npz", **arrays, junk=np.zeros(50 * 2**20 // 8))
    rehash(bundle_copy, "sequence.npz")
    read: list[str] = []
    real_getitem = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, k: read.append(k) or real_getitem(self, k))
    load_bundle(bundle_copy)
    assert "junk" not in read and "emb" in read
    monkeypatch.setattr(rt, "MAX_WEIGHT_BYTES", 1000)
    with pytest.raises(LogravenError, match=r"sequence\.npz: weights 'emb' hold \d+ bytes, more than any model has"):
        load_bundle(bundle_copy)
    monkeypatch.undo()
    arrays["out_b"] = arrays["out_b"].astype(np.complex64)
    np.savez(bundle_copy / "sequence.npz", **arrays)
    rehash(bundle_copy, "sequence.npz")
    with pytest.raises(LogravenError, match=r"weights 'out_b' are not real numbers"):
        load_bundle(bundle_copy)


def test_a_manifest_that_is_a_link_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    """The files a manifest lists may not be links; the manifest itself could be one, to a file anywhere."""
    elsewhere = tmp_path / "elsewhere.json"
    (bundle_copy / MANIFEST).rename(elsewhere)
    (bundle_copy / MANIFEST).symlink_to(elsewhere)
    with pytest.raises(LogravenError, match="manifest.json: is a symbolic link"):
        load_bundle(bundle_copy)


def test_no_pickle_needed_anywhere(bundle_dir: Path) -> None:
    files = manifest_of(bundle_dir)["files"]
    npz = [n for n in files if n.endswith(".npz")]
    assert {"autoencoder.npz", "sequence.npz"} <= set(npz)
    for name in npz:
        with np.load(bundle_dir / name, allow_pickle=False) as z:
            assert z.files
            for k in z.files:
                arr = z[k]  # raises ValueError for object arrays when pickle is off
                assert arr.dtype != object and np.isfinite(arr).all(), (name, k)
    for name in [n for n in files if n.endswith(".json")] + [MANIFEST]:
        json.loads((bundle_dir / name).read_text(encoding="utf-8"))
    for name in files:
        assert not name.endswith((".pkl", ".pickle", ".joblib"))


def test_read_manifest_records_its_own_hash(bundle_dir: Path) -> None:
    import hashlib

    m = read_manifest(bundle_dir)
    assert m["_sha256"] == hashlib.sha256((bundle_dir / MANIFEST).read_bytes()).hexdigest()


def test_a_bundle_is_readable_by_owner_and_group_only(bundle, tmp_path: Path) -> None:
    """A bundle holds log lines (type examples, replay texts) of logs only root and adm may read: a
    root `train --out /tmp/m` with umask 022 made it world-readable."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = save_bundle(tmp_path / "m", bundle.types, bundle.sequence, bundle.autoencoder, training={}, keras_files=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    for p in out.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o750 if p.is_dir() else 0o640), p
    load_bundle(out)


def test_a_listed_file_that_is_a_link_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    """Hashing a listed file through a link to /proc/kmsg blocked `check` forever; a bundle never holds links."""
    real = tmp_path / "elsewhere.npz"
    (bundle_copy / "sequence.npz").rename(real)
    (bundle_copy / "sequence.npz").symlink_to(real)
    with pytest.raises(LogravenError, match=r"sequence\.npz: not a regular file \(a link or a device\)"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(("name", "key", "damage", "said"), [
    ("sequence.npz", "emb", lambda a: a[:5], "weights 'emb' have shape"),
    ("sequence.npz", "out_k", lambda a: a[:, :-1], "weights 'out_k' have shape"),
    ("sequence.npz", "emb", lambda a: np.full_like(a, np.nan), "not finite"),
    ("autoencoder.npz", "out_k", lambda a: a[:, :100], "do not fit one another or the tokenizer"),
    ("autoencoder.npz", "emb", lambda a: a[:100], "do not fit one another or the tokenizer"),
    ("autoencoder.npz", "dec_b", lambda a: np.where(np.arange(a.size) == 0, np.inf, a).astype(a.dtype), "not finite"),
])  # fmt: skip
def test_weights_that_do_not_fit_the_model_are_refused_at_load(bundle_copy: Path, name, key, damage, said) -> None:
    """Weights of the wrong shape, with the manifest's checksums made to agree, loaded (`check` said
    "model bundle OK", a reload was accepted) and failed at the first line scored, an IndexError that
    stopped the daemon; NaN weights loaded and turned the sequence detector off, silently. Both are
    refused at load now, naming the file, so a reload keeps the running model."""
    with np.load(bundle_copy / name, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = damage(arrays[key])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (bundle_copy / name).write_bytes(buf.getvalue())
    rehash(bundle_copy, name)
    with pytest.raises(LogravenError, match=name) as e:
        load_bundle(bundle_copy)
    assert said in str(e.value) and "retrain or restore" in str(e.value)


def test_sigterm_while_a_bundle_replaces_another_waits_for_the_swap(bundle_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """`lograven` turns SIGTERM into an exception: arriving between the two renames that put a new bundle
    in place of an old one, it left no bundle at --out (the old one hidden, the new one cleaned up). It
    is held back until the swap is done, then ends the command."""
    import os
    import shutil
    import signal

    from lograven import bundle as bundle_mod

    out = tmp_path / "out"
    shutil.copytree(bundle_dir, out)
    b = load_bundle(bundle_dir)
    real_rename = os.rename
    sent = []

    def rename_then_term(src, dst):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)  # while the first rename is being made
        return real_rename(src, dst)

    from lograven.osutil import terminate_as_exit

    previous = signal.signal(signal.SIGTERM, terminate_as_exit)  # as `lograven` commands run
    monkeypatch.setattr(bundle_mod.os, "rename", rename_then_term)
    try:
        with pytest.raises(SystemExit):
            save_bundle(out, b.types, b.sequence, b.autoencoder, training={"note": "new"}, keras_files=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent and manifest_of(out)["training"]["note"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing hidden left beside it


@pytest.mark.parametrize("after_second", [False, True])
def test_ctrl_c_between_the_renames_of_a_swap_puts_the_previous_bundle_back(bundle_dir: Path, tmp_path: Path, monkeypatch,
                                                                            after_second: bool) -> None:  # fmt: skip
    """Ctrl-C (KeyboardInterrupt, which uninterrupted() does not hold back) right after the old bundle was
    moved aside left nothing at --out; the previous bundle is put back. Right after the new one took
    its place, the old one is removed (it was left hidden beside it)."""
    import os
    import shutil

    from lograven import bundle as bundle_mod

    out = tmp_path / "out"
    shutil.copytree(bundle_dir, out)
    before = manifest_of(out)
    b = load_bundle(bundle_dir)
    real_rename = os.rename
    calls = []

    def interrupted_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            if after_second:
                real_rename(src, dst)
            raise KeyboardInterrupt
        return real_rename(src, dst)

    monkeypatch.setattr(bundle_mod.os, "rename", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(out, b.types, b.sequence, b.autoencoder, training={"note": "new"}, keras_files=False)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert manifest_of(out)["training"] == {"note": "new"} if after_second else manifest_of(out) == before


# A bundle review (2026-12-07) found metadata that loaded (check said "model bundle OK") but killed the
# daemon at its first line or reload, and files that hung it. Each is now one LogravenError at load.
def _set(path: tuple, value):
    def edit(m: dict) -> None:
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "said"), [
    (_set(("autoencoder", "length"), 0), "autoencoder length 0 is not in 1.."),
    (_set(("autoencoder", "length"), 10**12), "autoencoder length 1000000000000 is not in 1.."),
    (_set(("autoencoder", "length"), 10**6), "autoencoder length 1000000 is not in 1..8192"),  # 5 GB at the first batch
    (_set(("autoencoder", "threshold"), float("nan")), "autoencoder threshold nan is not a finite number"),
    (_set(("autoencoder", "threshold"), float("inf")), "autoencoder threshold inf is not a finite number"),
    (lambda m: _set(("sequence", "params", "units"), float(m["sequence"]["params"]["units"]))(m),
     "is not a positive integer"),  # the shapes still fit (16 == 16.0): it failed at the first line
    (_set(("sequence", "n_types"), float("inf")),
     "model metadata invalid in manifest.json's sequence section or sequence.npz (OverflowError"),
    (_set(("sequence", "params", "window"), 0), "sequence window 0 is not a whole number in 1..100000"),
    (_set(("sequence", "params", "window"), "64"), "sequence window '64' is not a whole number"),
    (_set(("sequence", "params", "window"), -4), "sequence window -4 is not a whole number"),
    (_set(("training",), [1]), "'training' is not an object"),
    (_set(("sequence", "validation", "steps"), "5000"), "in manifest.json's sequence section (TypeError"),
    (_set(("sequence", "validation", "end_steps"), "x"), "in manifest.json's sequence section (TypeError"),
    (_set(("autoencoder", "type_thresholds"), [1]), "autoencoder type_thresholds is not an object"),
    (_set(("autoencoder", "type_thresholds"), {"0": 1.0}), "type_thresholds: key '0' is not a message type id"),
    (_set(("autoencoder", "type_thresholds"), {"3": float("nan")}), "type_thresholds[3] = nan is not a finite number"),
    (_set(("autoencoder", "type_thresholds"), {"3": "9"}), "type_thresholds[3] = '9' is not a finite number"),
], ids=["length-0", "length-huge", "length-million", "threshold-nan", "threshold-inf", "units-float", "n-types-inf",
        "window-0", "window-str", "window-negative", "training-list",
        "steps-str", "end-steps-str", "type-thresholds-list", "type-thresholds-key", "type-thresholds-nan", "type-thresholds-str"])
def test_metadata_that_cannot_serve_is_refused_at_load(bundle_copy: Path, edit, said: str) -> None:
    m = manifest_of(bundle_copy)
    edit(m)
    write_manifest(bundle_copy, m)
    with pytest.raises(LogravenError, match=re.escape(said)) as e:
        load_bundle(bundle_copy)
    assert "retrain or restore the bundle" in str(e.value)


def test_a_model_that_loads_but_cannot_score_is_refused_at_load(bundle_copy: Path) -> None:
    """Weights that fit one another but give no finite score (a NaN bias would be refused by the loader;
    huge ones overflow): the trial run at load says so, not the daemon's first line."""
    with np.load(bundle_copy / "autoencoder.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["out_k"] = np.full_like(arrays["out_k"], 3e38)
    np.savez(bundle_copy / "autoencoder.npz", **arrays)
    rehash(bundle_copy, "autoencoder.npz")
    with pytest.raises(LogravenError, match="the model cannot score a line"), np.errstate(all="ignore"):
        load_bundle(bundle_copy)


def test_a_bad_regex_or_deep_nesting_in_msgtypes_is_one_error(bundle_copy: Path) -> None:
    doc = json.loads((bundle_copy / "msgtypes.json").read_text())
    doc["extra_masks"] = [{"name": "x", "pattern": "("}] if "extra_masks" in doc else doc.get("extra_masks")
    if doc["extra_masks"] is not None:
        (bundle_copy / "msgtypes.json").write_text(json.dumps(doc))
        rehash(bundle_copy, "msgtypes.json")
        with pytest.raises(LogravenError, match=r"msgtypes\.json: corrupt"):
            load_bundle(bundle_copy)
    (bundle_copy / "msgtypes.json").write_text("[" * 100_000 + "]" * 100_000)
    rehash(bundle_copy, "msgtypes.json")
    with pytest.raises(LogravenError, match=r"msgtypes\.json: corrupt \(ValueError: nested too deeply\)"):
        load_bundle(bundle_copy)


def test_a_deeply_nested_manifest_is_one_error(bundle_copy: Path) -> None:
    """100,000 `[`: a RecursionError escaped, a traceback in check, and a dead daemon at the reload."""
    (bundle_copy / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LogravenError, match="manifest.json: corrupt manifest \\(nested too deeply\\)"):
        load_bundle(bundle_copy)


def test_a_manifest_that_is_not_a_regular_file_is_refused_without_blocking(bundle_copy: Path) -> None:
    """manifest.json as a FIFO blocked check, score and a daemon's reload for ever (deaf to SIGTERM); as a
    link to /dev/zero it filled the memory."""
    import os

    from conftest import call_within

    (bundle_copy / MANIFEST).unlink()
    os.mkfifo(bundle_copy / MANIFEST)
    got = call_within(lambda: load_bundle(bundle_copy))
    assert isinstance(got, LogravenError) and "not a regular file" in str(got), got
    (bundle_copy / MANIFEST).unlink()
    (bundle_copy / MANIFEST).symlink_to("/dev/zero")
    with pytest.raises(LogravenError, match="is a symbolic link"):  # refused before it is read at all
        load_bundle(bundle_copy)


def test_a_file_name_with_a_nul_byte_is_a_bad_name(bundle_copy: Path) -> None:
    m = manifest_of(bundle_copy)
    m["files"]["x\0y"] = "0" * 64
    write_manifest(bundle_copy, m)
    with pytest.raises(LogravenError, match="bad file name"):
        load_bundle(bundle_copy)


def test_rollback_refuses_a_version_that_does_not_load(bundle_dir: Path, tmp_path: Path) -> None:
    """`models rollback --to v0002` checked checksums only, so a version whose metadata load_bundle refuses
    became current: the running daemon refused it, and the next restart failed (bundle review)."""
    import shutil

    from lograven.modelstore import ModelStore

    store = ModelStore(tmp_path / "models")
    for _ in range(2):
        shutil.copytree(bundle_dir, store.new_version_path(), dirs_exist_ok=True)
    store.set_current("v0001")
    m = manifest_of(store.root / "v0002")
    m["autoencoder"]["threshold"] = float("nan")
    write_manifest(store.root / "v0002", m)
    with pytest.raises(LogravenError, match="autoencoder threshold nan"):
        store.set_current("v0002")
    assert store.current_name() == "v0001"
    listed = {v.name: v for v in store.list()}  # and `models list` shows it BROKEN, with the reason
    assert listed["v0001"].manifest is not None and listed["v0002"].manifest is None
    assert "autoencoder threshold nan" in (listed["v0002"].problem or "")


@pytest.mark.parametrize(("ids", "lens", "said"), [
    ([1, 2, 999], [3], "ids outside 0.."),
    ([1, 2, 3], [5, -2], "lengths below 0"),
    ([1, 2, 3], [2], "lengths that add up to 2, not its 3 ids"),
])
def test_learn_refuses_a_replay_sample_that_does_not_fit_the_model(bundle_copy: Path, ids, lens, said) -> None:
    """`learn` on a bundle whose replay ids exceed its types died in TensorFlow (InvalidArgumentError
    traceback); negative lengths were taken (bundle review, 2026-12-07)."""
    from lograven.training import load_replay

    b = load_bundle(bundle_copy)
    np.savez(bundle_copy / "replay.npz", ids=np.array(ids, dtype=np.int32), lens=np.array(lens, dtype=np.int64))
    rehash(bundle_copy, "replay.npz")
    with pytest.raises(LogravenError, match=re.escape(said)):
        load_replay(bundle_copy, b.sequence.n_types_)


def test_learn_refuses_a_replay_file_that_is_a_fifo_without_blocking(bundle_copy: Path) -> None:
    """A replay file the manifest does not list, as a FIFO: `learn` blocked for ever (re-verification)."""
    import os

    from conftest import call_within

    from lograven.training import load_replay

    m = manifest_of(bundle_copy)
    m["files"].pop("replay_texts.json", None)
    write_manifest(bundle_copy, m)
    (bundle_copy / "replay_texts.json").unlink(missing_ok=True)
    os.mkfifo(bundle_copy / "replay_texts.json")
    got = call_within(lambda: load_replay(bundle_copy))
    assert isinstance(got, LogravenError) and "replay_texts.json: not a regular file" in str(got), got


def test_long_autoencoder_lengths_are_scored_in_smaller_passes(bundle_copy: Path, monkeypatch) -> None:
    """The length bound (8,192 tokens, max_length_cap's maximum) is safe because a scoring pass holds at most
    FORWARD_TOKENS tokens: 512 lines of 64 tokens, 4 lines of 8,192 (a length of 10^6 had asked 5 GB at once)."""
    from lograven.autoencoder import FORWARD_TOKENS, Autoencoder

    m = manifest_of(bundle_copy)
    m["autoencoder"]["length"] = 8192
    write_manifest(bundle_copy, m)
    b = load_bundle(bundle_copy)
    seen: list[tuple[int, int]] = []
    real = Autoencoder.errors_from_ids
    monkeypatch.setattr(Autoencoder, "errors_from_ids", lambda self, x, lens: seen.append(x.shape) or real(self, x, lens))
    errs = b.autoencoder.score([f"line {i} of a batch" for i in range(10)])
    assert len(errs) == 10 and np.isfinite(errs).all()
    assert seen and all(rows * length <= FORWARD_TOKENS for rows, length in seen) and seen[0][1] == 8192


# A detector review (2026-12-07, eighteenth session): files that loaded and then crashed or misled the daemon.
def test_a_tokenizer_that_is_not_as_lograven_trains_it_is_refused(bundle_copy: Path) -> None:
    """tokenizer.json was handed to the tokenizers library as it was: a pre-tokenizer `Split` on a
    backtracking regex loaded, and a line with one 34-letter word made the Rust code panic (an exception
    no `except Exception` catches: the daemon stopped, and met the line again at each restart)."""
    path = bundle_copy / "tokenizer.json"
    good = json.loads(path.read_text())
    for key, value in (("pre_tokenizer", {"type": "Sequence", "pretokenizers": [
                           {"type": "Split", "pattern": {"Regex": "(?:a|aa)+b"}, "behavior": "Isolated", "invert": False},
                           {"type": "Whitespace"}]}),
                       ("normalizer", {"type": "Replace", "pattern": {"Regex": "(a+)+$"}, "content": "x"}),
                       ("model", {**good["model"], "dropout": 0.5})):  # fmt: skip
        path.write_text(json.dumps({**good, key: value}))
        rehash(bundle_copy, "tokenizer.json")
        with pytest.raises(LogravenError, match=rf"tokenizer\.json: not a tokenizer lograven trains \({key}"):
            load_bundle(bundle_copy)
    path.write_text(json.dumps(good))
    rehash(bundle_copy, "tokenizer.json")
    load_bundle(bundle_copy)


def test_a_negative_type_id_is_refused(bundle_copy: Path) -> None:
    """A type id of -1 loaded: its lines fed the GRU the last type's row and reported its probability."""
    path = bundle_copy / "msgtypes.json"
    doc = json.loads(path.read_text())
    doc["types"][0]["id"] = -1
    path.write_text(json.dumps(doc))
    rehash(bundle_copy, "msgtypes.json")
    with pytest.raises(LogravenError, match="msgtypes.json: malformed message types .*type id -1 is not 1 or more"):
        load_bundle(bundle_copy)


def test_weights_larger_in_all_than_any_model_are_refused_before_reading(bundle_copy: Path, monkeypatch) -> None:
    """The size cap was per array: 12 compressed arrays of 64 MiB of zeros (a file of 0.75 MiB) took 1.5 GB
    while being refused. The arrays a file gives are capped in all, before any is read."""
    from lograven import runtime

    monkeypatch.setattr(runtime, "MAX_WEIGHTS_BYTES", 1024)  # the test bundle's weights are larger
    with pytest.raises(LogravenError, match=r"sequence\.npz: its weights hold \d+ bytes, more than any model has"):
        load_bundle(bundle_copy)


def test_weights_that_overflow_on_some_lines_flag_them(bundle_copy: Path) -> None:
    """Finite weights of +-3e38 in one BPE token's embedding row passed the loader and its trial run; every
    line with that token scored NaN, and NaN > threshold is false: the autoencoder never fired on them.
    Such a line is now one the autoencoder cannot reconstruct (error inf)."""
    from lograven.detector import Detector
    from lograven.parsing import Parser

    rec = Parser("syslog").parse("Jun  9 06:06:20 web1 sshd[991]: Accepted publickey for root from 10.0.0.1 port 22")
    good = load_bundle(bundle_copy)
    row = good.autoencoder.tokenizer_.encode(good.types._masker.mask_token(rec.message.split()[0]))[0]
    with np.load(bundle_copy / "autoencoder.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    w = arrays["emb"].copy()
    w[row] = np.where(np.arange(w.shape[1]) % 2, 3e38, -3e38)
    arrays["emb"] = w
    np.savez(bundle_copy / "autoencoder.npz", **arrays)
    rehash(bundle_copy, "autoencoder.npz")
    with np.errstate(all="ignore"):
        det = Detector(load_bundle(bundle_copy))  # its trial line has no such token: it loads
        (v,) = det.detect([("s", rec)])
    assert v.ae_error == float("inf") and "autoencoder" in v.detectors, v
