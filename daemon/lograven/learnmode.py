"""Learn mode: a daemon started without a model learns one from the host's own logs first."""
from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lograven.errors import LogravenError
from lograven.parsing import Parser, StreamKey, decode_line
from lograven.tailer import Fingerprinter, GlobPathProvider, Tailer, make_file_id
from lograven.childproc import run_training_child
from lograven.training import Corpus

if TYPE_CHECKING:
    from lograven.service import Service

log = logging.getLogger(__name__)

AVG_LINE_BYTES = 160  # a first guess at where the last learn.max_lines lines of a file start
MAX_TAIL_BYTES = 256 * 2**20  # the most read back from one file (unless max_lines x 160 bytes is more)


def _tail_lines(path: str, budget_lines: int, max_line_bytes: int, fp_bytes: int) -> tuple[list[bytes], dict] | None:
    """The last `budget_lines` complete lines of a file (all of them when it has fewer), and the tailer
    position after them. Reads back from the end, growing the window by the lines' measured length
    (a first guess of 160 bytes per line gave 7,565 of 20,000 lines of 420 bytes)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        log.warning("learn mode: cannot read %s (%s); it is skipped for learning", path, e.strerror)
        return None
    try:
        st = os.fstat(fd)
        fp_hex, fp_len = Fingerprinter(fp_bytes).fingerprint(fd)
        size = st.st_size
        window = budget_lines * AVG_LINE_BYTES
        # no more can be needed, and never more than MAX_TAIL_BYTES (a sparse wtmp matched by a glob)
        limit = min(budget_lines * (max_line_bytes + 1), max(MAX_TAIL_BYTES, window))
        while True:
            start = max(0, size - min(window, limit))
            data = os.pread(fd, size - start, start)
            count = data.count(b"\n")
            if start == 0 or count > budget_lines or window >= limit or count == 0:
                break  # (no newline at all: not a text log, or one enormous line; growing will not help)
            # the lines' measured mean length, with a margin; at least twice the window
            window = max(2 * window, int((size - start) / max(count, 1) * (budget_lines + 1) * 1.2))
        if count == 0 and start > 0:  # no line start known: nothing to learn, follow from the end
            pos = {"file_id": make_file_id(st.st_dev, st.st_ino, fp_hex), "offset": size, "fingerprint_len": fp_len}
            return [], pos
        end = start + data.rfind(b"\n") + 1  # complete lines only; a partial last line waits for the tailer
        data = data[: end - start]
        lines = data.split(b"\n")[:-1] if data else []
        if start > 0 and lines:
            lines = lines[1:]  # the first one may be cut
        lines = lines[-budget_lines:] if budget_lines > 0 else []
        pos = {"file_id": make_file_id(st.st_dev, st.st_ino, fp_hex), "offset": end, "fingerprint_len": fp_len}
        return [ln[:max_line_bytes] for ln in lines], pos
    finally:
        os.close(fd)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


_FAILURES = "learn-failures.json"  # in state_dir: learn mode's failed trainings, for the back-off after a restart
BACKOFF_FIRST, BACKOFF_MAX = 60.0, 3600.0


def _failures(svc: Service) -> tuple[int, float]:
    try:
        d = json.loads((svc.state_dir / _FAILURES).read_text(encoding="utf-8"))
        return int(d["failures"]), float(d["last"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0.0


def _last_failure(svc: Service) -> str:
    """What the last failed training said (recorded since 2026-12-07), or ''."""
    try:
        why = json.loads((svc.state_dir / _FAILURES).read_text(encoding="utf-8")).get("why")
    except (OSError, ValueError, AttributeError):
        return ""
    return why if isinstance(why, str) else ""


def _record_failure(svc: Service, why: str = "") -> None:
    n, _ = _failures(svc)
    try:
        (svc.state_dir / _FAILURES).write_text(json.dumps({"failures": n + 1, "last": time.time(), "why": why[:500]}),
                                               encoding="utf-8")  # fmt: skip
    except OSError:
        pass


def _clear_failures(svc: Service) -> None:
    try:
        (svc.state_dir / _FAILURES).unlink()
    except OSError:
        pass


class Reloaded(Exception):
    """SIGHUP in learn mode, with a configuration that loads and differs: learning starts again with it."""


def take_reload(svc: Service) -> None:
    """SIGHUP while learn mode collects lines or waits: re-read the configuration (a source path fixed
    at first start, the usual case, was ignored until a restart). A bad one is rejected and learning
    goes on; a changed one raises Reloaded. A reload during a training is taken once it is over, by the
    running daemon."""
    if not svc._reload.is_set():
        return
    svc._reload.clear()
    from lograven.config import load_config
    from lograven.service import keep_in_force, reload_error, say_restart_only

    svc.notifier.reloading("reloading configuration")
    try:
        cfg = load_config(svc.config_path) if svc.config_path else svc.cfg
        cfg, pending = keep_in_force(svc.cfg, cfg)
        path = svc._model_location(cfg)
        if path is not None:  # a `model:` now set must load: refused here, not a dead daemon once learning ends
            from lograven.bundle import load_bundle

            load_bundle(path)
    except Exception as e:  # noqa: BLE001 - whatever the new config holds, learning goes on
        e = reload_error(e)
        svc.metrics.reload_failed()
        log.error("reload rejected, learn mode goes on with the running configuration: %s", e)
        svc.notifier.ready(f"reload failed: {str(e)[:200]}")
        return
    svc.metrics.reload_succeeded()
    say_restart_only(pending)
    svc.notifier.ready(svc._status or "learn mode")
    if cfg == svc.cfg:
        log.info("reload: configuration unchanged; learn mode goes on")
        return
    svc.cfg = cfg
    raise Reloaded


def _back_off_after_failures(svc: Service) -> bool:
    """After failed trainings (the OOM killer, typically; systemd restarts the daemon at once), wait
    1, 2, 4 ... 60 min before the next attempt instead of training again every few seconds. Returns
    False when stopped while waiting."""
    n, last = _failures(svc)
    if n == 0:
        return True
    wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (n - 1)) - (time.time() - last)
    if wait <= 0:
        return True
    why = _last_failure(svc)
    advice = ("fix what it says" if why and "killed" not in why
              else "if it was killed for memory: lower learn.max_lines, or give the service more memory")
    log.warning("learn mode: training failed %d time(s) before%s; waiting %.0f s before the next attempt (%s; "
                "remove %s to retry at once)", n, f" (last: {why})" if why else "", wait, advice,
                svc.state_dir / _FAILURES)  # fmt: skip
    svc._set_status(f"learn mode: waiting {wait:.0f} s after {n} failed training(s)")
    return _wait(svc, wait)


def _wait(svc: Service, seconds: float) -> bool:
    """Wait `seconds`, feeding systemd's watchdog and taking reloads; False when stopped meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        svc.notifier.watchdog()
        take_reload(svc)
        if svc._stop.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            return False
    return True


ROOM_RETRY_SECONDS = 60.0  # how often learn mode looks again for room to save its model


def _wait_for_room(svc: Service) -> bool:
    """Before training: wait until the model directory can take a bundle (a free MiB or more, writable).
    A full state_dir had trained for minutes, failed to save, failed to record the failure for the
    back-off as well, and the restart trained again at once: a loop of trainings on a host whose disk
    is full (a robustness review). Said once, in the status, and looked at again every minute. Returns
    False when stopped while waiting."""
    from lograven.bundle import check_room_for_a_version

    said = None
    while True:
        try:
            # the directory new_version_path() saves into (a version directory left without a bundle takes
            # its number, not the probe's: a review)
            check_room_for_a_version(svc.store.root, "state_dir")
            if said is not None:
                log.info("learn mode: room to save the model again; training")
            return True
        except LogravenError as e:
            if str(e) != said:
                said = str(e)
                log.error("learn mode: the model could not be saved, so it is not trained yet: %s; looking again "
                          "every %.0f s", e, ROOM_RETRY_SECONDS)
            svc._set_status(f"learn mode: waiting for room to save the model in {svc.store.root}")
        if not _wait(svc, ROOM_RETRY_SECONDS):
            return False


MAX_HISTORY_GENERATIONS = 8  # rotated copies of a file read for learn mode's history, newest first
TICK_BYTES = 64 * 1024  # compressed bytes read between two watchdog ticks (at most about 64 MB decompressed)


class _Stopped(Exception):
    """A stop (SIGTERM) while learn mode reads its history."""


class _Ticking(io.RawIOBase):
    """A compressed file read for history: `tick()` every TICK_BYTES of it (systemd's watchdog, however
    much text they decompress to); a True from it (a stop) raises _Stopped."""

    def __init__(self, raw, tick: Callable[[], bool]) -> None:
        self._raw, self._tick, self._since = raw, tick, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = self._raw.readinto(b)
        self._since += n or 0
        if self._since >= TICK_BYTES:
            self._since = 0
            if self._tick():
                raise _Stopped
        return n


def _history(path: str, budget: int, max_line_bytes: int, sources: set[str],
             tick: Callable[[], bool] | None = None) -> tuple[list[str], list[str]]:
    """The last `budget` lines of the rotated generations beside `path` (`syslog.1`, `syslog.2.gz`,
    `messages-20261206`), the newest generation first until the budget is used, returned oldest first
    (they come before the file's own lines); and the generations read. Compressed ones (gzip, bzip2,
    xz) are read decompressed; a generation that is itself a configured file is the tailer's, not
    history; one that cannot be read is skipped and said. `tick()` is called every few thousand lines
    (systemd's watchdog: a large compressed generation takes a while); when it returns True (a stop),
    reading ends with what was read."""
    from collections import deque

    from lograven.errors import LogravenError
    from lograven.osutil import COMPRESSION_MAGIC_BYTES, compression_of, rotated_generations
    from lograven.training import iter_maybe_compressed

    plain, compressed = rotated_generations(path)
    gens = sorted(plain + compressed, key=lambda g: g[1].st_mtime, reverse=True)
    got: list[list[str]] = []
    used: list[str] = []
    for gen, _ in gens[:MAX_HISTORY_GENERATIONS]:
        if budget <= 0:
            break
        if tick is not None and tick():
            return [], used  # stopped: nothing is learned
        if gen in sources or os.path.realpath(gen) in sources:
            continue
        kept: deque[str] = deque(maxlen=budget)  # a compressed file is read through; its last lines kept
        try:
            fd = os.open(gen, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                kind = compression_of(os.pread(fd, COMPRESSION_MAGIC_BYTES, 0))
                if kind == "zstd":
                    log.info("learn mode: %s is zstd-compressed, which the standard library cannot read: not "
                             "learned as history", gen)  # fmt: skip
                    continue
                if kind is None:  # plain: read back from its end, as the files' own lines are
                    tail = _tail_lines(gen, budget, max_line_bytes, 256)
                    kept.extend(t for t in (decode_line(raw, max_line_bytes)[0] for raw in (tail[0] if tail else []))
                                if t.strip())  # fmt: skip
                else:
                    # ticked by what is read, not by lines: an archive of gigabytes without a newline yields none
                    src = _Ticking(f, tick) if tick is not None else f
                    for text, _ in iter_maybe_compressed(src, gen, max_line_bytes):  # type: ignore[arg-type]
                        if text.strip():
                            kept.append(text)
        except _Stopped:
            return [], used  # stopped: nothing is learned
        except (OSError, LogravenError) as e:
            # damaged after some lines (a truncated archive): those lines are history all the same
            log.warning("learn mode: cannot read %s for history (%s); %s", gen, getattr(e, "strerror", None) or e,
                        f"learning the {len(kept)} lines read before the error" if kept else "it is skipped")  # fmt: skip
            if not kept:
                continue
        got.append(list(kept))
        used.append(gen)
        budget -= len(kept)
    return [line for lines in reversed(got) for line in lines], used


def existing_lines(cfg, files_per_source: list[list[str]],
                   tick: Callable[[], bool] | None = None) -> tuple[Corpus, dict[str, dict], int]:
    """The last lines of the sources' files, learn.max_lines in total, shared evenly with the smallest
    files first, so that what a short file does not use goes to the larger ones (an even share per
    file learned 25,000 of 40,000 lines from a 40,000-line and a 5,000-line file). What they leave of
    the budget goes to their history: the last lines of their rotated generations, read before each
    file's own lines, in the order they were written (a file rotated daily may hold a few hours of a
    host's messages, too few to learn its orderings). Returns the corpus, the tailer positions after
    the files' lines per source, and how many files were read."""
    corpus = Corpus()
    positions: dict[str, dict] = {str(i): {} for i in range(len(cfg.sources))}
    todo = sorted(((_size(path), i, path) for i, files in enumerate(files_per_source) for path in files))
    budget, n_read = cfg.learn.max_lines, 0
    own: list[tuple[int, str, list[str]]] = []
    for k, (_, i, path) in enumerate(todo):
        got = _tail_lines(path, budget // (len(todo) - k), cfg.runtime.max_line_bytes, 256)
        if got is None:
            continue
        lines, pos = got
        n_read += 1
        budget -= len(lines)
        positions[str(i)][path] = pos
        texts = [decode_line(raw, cfg.runtime.max_line_bytes)[0] for raw in lines]
        own.append((i, path, [t for t in texts if t.strip()]))
    sources = {p for files in files_per_source for p in files} | {
        os.path.realpath(p) for files in files_per_source for p in files}
    n_hist = 0
    for k, (i, path, texts) in enumerate(own):
        if tick is not None and tick():
            break  # stopped: learn mode returns without training
        history, used = (_history(path, budget // (len(own) - k), cfg.runtime.max_line_bytes, sources, tick)
                         if budget > 0 else ([], []))
        budget -= len(history)
        if history:
            n_hist += len(history)
            log.info("learn mode: %d lines of history from %s", len(history), ", ".join(used))
        src = cfg.sources[i]
        parser, key = Parser(src.format), StreamKey(src.stream)
        # one stream with the file's own lines (stream: file): the history goes on into them
        for text in history + texts:
            rec = parser.parse(text)
            corpus.add(path, rec, key.key(path, rec, text))
    if n_hist:
        log.info("learn mode: %d lines in all, %d of them from rotated generations", len(corpus), n_hist)
    return corpus, positions, n_read


def learn_initial_model(svc: Service) -> dict:
    """Learn from existing content (then from new lines until learn.min_lines); returns tailer positions."""
    cfg = svc.cfg
    min_lines = cfg.learn.min_lines
    svc._set_status("learn mode: reading existing log content")
    files_per_source = []
    for i, src in enumerate(cfg.sources):
        # a file matched by two sources is its first source's, as the tailers follow it (learned once)
        earlier = [p for e in cfg.sources[:i] for p in e.paths]
        files = sorted(GlobPathProvider(list(src.paths), earlier).expand()[0])
        files_per_source.append(files)
    def tick() -> bool:
        svc.notifier.watchdog()
        return svc._stop.is_set()

    corpus, positions, n_read = existing_lines(cfg, files_per_source, tick)
    if svc._stop.is_set():
        return positions
    log.info("learn mode: %d existing lines from %d file(s)", len(corpus), n_read)
    if len(corpus) < min_lines:
        positions = _collect_more(svc, corpus, positions, min_lines)
        if svc._stop.is_set() or _made_current(svc, said=True):
            return positions
    if not _back_off_after_failures(svc) or not _wait_for_room(svc):
        return positions  # stopped while waiting
    svc._set_status(f"learn mode: training on {len(corpus)} lines")
    out = svc.store.new_version_path()
    try:
        summary = run_training_child(
            "train", corpus, cfg=cfg.to_dict(), out=str(out),
            on_status=lambda text: svc._set_status(f"learn mode: {text}"),
            tick=svc.notifier.watchdog, should_stop=svc._stop.is_set,
        )  # fmt: skip
    except BaseException as e:
        svc.store.release(out)  # the reserved version name, left empty
        if not isinstance(e, (KeyboardInterrupt, SystemExit)):
            _record_failure(svc, str(e))
        raise
    if summary is None:
        svc.store.release(out)
        if (out / "manifest.json").exists():  # saved just before the stop came: made current at the next start
            log.warning("stopped just after learning: the model is saved as %s, made current at the next start",
                        out.name)
        else:
            log.warning("stopped during learning: the model is not saved; learning restarts next time")
        return positions
    with svc.store.switching():
        if _made_current(svc, learned=out.name):
            return positions
        svc.store.set_current(out.name)
    _clear_failures(svc)
    log.info("learn mode: model %s saved in %s (%.1f s)", out.name, svc.store.root, summary["seconds"]["total"])
    from lograven.sequence import FEW_CALIBRATION_STEPS, MIN_FLOOR_STEPS

    steps = int((summary.get("sequence_validation") or {}).get("steps", 0) or 0)
    seq = cfg.detectors.sequence
    if steps < FEW_CALIBRATION_STEPS and seq.enabled and seq.calibrate and seq.rule != "top_k":
        log.warning("learn mode: model %s learned from %d lines, and held back %d steps to calibrate its sequence "
                    "rule (%s): it may miss never-seen orderings of messages until it learns from more history; "
                    "relearn later (learn.schedule), or train on a longer history (lograven train, %d lines or more)",
                    out.name, len(corpus), steps,
                    "too few: the configured thresholds apply" if steps < MIN_FLOOR_STEPS
                    else f"fewer than {FEW_CALIBRATION_STEPS:,}",
                    20 * FEW_CALIBRATION_STEPS)  # fmt: skip
    return positions


def _export_file_metrics(svc: Service, tailers: list) -> set[str]:
    """The learn-mode tailers' per-file series, as the running daemon exports them: a file lograven may
    not read at its first start (the usual problem then) shows as lograven_file_readable 0 and fires
    LogravenFileUnreadable, not only in the journal. Returns the files exported."""
    files: set[str] = set()
    for _, _, t in tailers:
        for path, st in t.stats().items():
            files.add(path)
            svc.metrics.export_file_stats(path, st)
    return files


def _made_current(svc: Service, learned: str | None = None, said: bool = False) -> bool:
    """Whether an admin made a version current while learn mode learned (`lograven train --out` the models
    directory, `models rollback`): learn mode then ends, and the daemon runs it from where learn mode read.
    It had gone on, then made its own model current over the admin's without a word (a review). `learned`:
    the version learn mode has just saved, kept (not current). Said once (`said`: already said)."""
    try:
        name = svc.store.current_name()
    except LogravenError:
        name = "?"  # `current` points elsewhere: the start says what is wrong with it
    if name is None:
        return False
    if not said:
        kept = f"; the version it learned, {learned}, is kept (`lograven models rollback --to {learned}` uses it)" if learned else ""
        log.warning("learn mode: %s was made current in %s meanwhile: learn mode ends and the daemon runs it%s",
                    name, svc.store.root, kept)
    return True


def _collect_more(svc: Service, corpus: Corpus, positions: dict, min_lines: int) -> dict:
    """Too little history: follow the files and learn from new lines until there are enough."""
    cfg = svc.cfg
    tailers = []
    for i, src in enumerate(cfg.sources):
        tailers.append(
            (Parser(src.format), StreamKey(src.stream),
             Tailer(list(src.paths), start_position="beginning", max_line_bytes=cfg.runtime.max_line_bytes,
                    poll_interval=cfg.runtime.poll_interval_seconds, positions=positions.get(str(i)) or None))
        )  # fmt: skip
    exported: set[str] = set()
    try:
        last_log = 0.0
        while len(corpus) < min_lines and not svc._stop.is_set():
            got = 0
            for parser, key, t in tailers:
                for raw in t.poll(10_000):
                    text, _ = decode_line(raw.data, cfg.runtime.max_line_bytes)
                    if text.strip():
                        rec = parser.parse(text)
                        corpus.add(raw.path, rec, key.key(raw.path, rec, text))
                    t.acknowledge(raw.path, raw.ack_id, raw.end)
                    got += 1
            svc.notifier.watchdog()
            exported |= _export_file_metrics(svc, tailers)
            take_reload(svc)
            if _made_current(svc):  # the daemon runs it from where these tailers read
                break
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                svc._set_status(f"learn mode: collecting lines ({len(corpus)}/{min_lines})")
            if not got:
                tailers[0][2].wait(1.0)
        return {str(i): t.positions() for i, (_, _, t) in enumerate(tailers)}
    finally:
        for _, _, t in tailers:
            t.close()
        for path in exported:  # the running daemon's tailers export their own series, counted afresh
            svc.metrics.remove_file(path)
