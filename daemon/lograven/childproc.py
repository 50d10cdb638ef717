"""Training inside the daemon runs in a child process.

Learn mode and periodic relearning need TensorFlow; imported into the daemon
it would stay there (~700 MB RSS). A spawned child imports it, trains, writes
the bundle and exits, so the serving process stays numpy-only. The corpus
goes to the child as a JSON-lines file and the config as a plain dict: no
pickled objects cross the boundary beyond short status tuples.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import queue
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from lograven.errors import LogravenError
from lograven.training import Corpus

log = logging.getLogger(__name__)


def write_corpus(corpus: Corpus, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in zip(corpus.files, corpus.messages, corpus.programs, corpus.streams, corpus.times):
            f.write(json.dumps(row[:4] + ((row[4] if row[4] == row[4] else None),), ensure_ascii=False) + "\n")


def read_corpus_file(path: Path) -> Corpus:
    from lograven.parsing import LogRecord

    c = Corpus()
    with open(path, encoding="utf-8") as f:
        for line in f:
            file, message, program, stream, *rest = json.loads(line)
            c.add(file, LogRecord(None, None, program, None, message), stream)
            if rest and rest[0] is not None:
                c.times[-1] = float(rest[0])
    return c


def _child(kind: str, corpus_path: str, out: str, cfg: dict, model: str | None, q, log_level: int = logging.INFO) -> None:
    """Runs in the spawned process."""
    import signal

    from lograven.cli import setup_logging
    from lograven.osutil import terminate_as_exit

    setup_logging(log_level)  # the daemon's stderr: the journal's priorities, as the parent's lines have
    # terminated (the daemon stopping, p.terminate()): cleanups run, and never between the renames that
    # put a new version in place (osutil.uninterrupted)
    signal.signal(signal.SIGTERM, terminate_as_exit)
    try:
        from lograven.config import parse_config

        config = parse_config(cfg, "<daemon config>")
        corpus = read_corpus_file(Path(corpus_path))

        def progress(stage: str, fraction: float) -> None:
            # "message types", then "sequence model 40%"...: a stage's start has no "0%", its end no
            # "100%" (the next stage says it)
            if fraction < 1.0:
                q.put(("status", f"{stage} {int(fraction * 100)}%" if fraction > 0 else stage))

        if kind == "train":
            from lograven.training import train

            # what the lines were parsed and keyed with (each by its own source): recorded in the manifest,
            # "mixed" when the sources differ, so a later change of a source's settings can be said
            formats = {src.format for src in config.sources}
            streams = {src.stream for src in config.sources}
            r = train(corpus, Path(out), training=config.training, quantile=config.detectors.autoencoder.quantile,
                      fmt=formats.pop() if len(formats) == 1 else "mixed",
                      stream=streams.pop() if len(streams) == 1 else "mixed", progress=progress,
                      end_gap=config.detectors.sequence.stream_end_after, out_option="state_dir")  # fmt: skip
            q.put(("done", r.summary))
        else:
            from lograven.learning import learn

            # the daemon's periodic relearning: an admin's newer `current` wins over this version
            path, summary = learn(model, corpus, training=config.training, progress=progress, source=out,
                                  keep_newer_current=True, out_option="state_dir")
            summary["path"] = str(path)
            q.put(("done", summary))
    except LogravenError as e:
        q.put(("error", str(e)))
    except SystemExit as e:
        # SIGTERM (terminate_as_exit): the daemon stopping it, or systemd stopping the whole service
        q.put(("stopped", None) if e.code == 128 + signal.SIGTERM else ("error", f"SystemExit: {e.code}"))
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        q.put(("error", f"{type(e).__name__}: {e}"))


def run_training_child(
    kind: str,
    corpus: Corpus,
    *,
    cfg: dict,
    out: str = "",
    model: str | None = None,
    on_status: Callable[[str], None] = lambda s: None,
    tick: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict | None:
    """Train ("train": a new bundle at `out`) or learn ("learn": a new version of `model`) in a child.

    Calls `tick` about once a second (the systemd watchdog). Returns the summary,
    None when stopped, raises LogravenError when the child failed.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="lograven-corpus-") as tmp:
        cpath = Path(tmp) / "corpus.jsonl"
        write_corpus(corpus, cpath)
        p = ctx.Process(target=_child, args=(kind, str(cpath), out, cfg, model, q, logging.getLogger().getEffectiveLevel()),
                        name=f"lograven-{kind}", daemon=True)
        p.start()
        result: dict | None = None
        try:
            while True:
                tick()
                if should_stop():
                    log.warning("stopping: the %s child is terminated; it restarts next time", kind)
                    p.terminate()
                    p.join(10)
                    return None
                try:
                    msg, payload = q.get(timeout=1.0)
                except queue.Empty:
                    if not p.is_alive():
                        code = p.exitcode
                        if code is not None and code < 0 and -code in (signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS):
                            why = (f"killed by {signal.Signals(-code).name}: most often the kernel's out-of-memory "
                                   "killer (`journalctl -k | grep -i oom`). Learn from fewer lines (learn.max_lines) "
                                   "or give the service more memory (MemoryMax=)")
                        else:
                            why = f"exit code {code}; see the log above"
                        raise LogravenError(f"{kind} child process died ({why})")
                    continue
                if msg == "status":
                    on_status(payload)
                elif msg == "done":
                    result = payload
                    break
                elif msg == "stopped":  # SIGTERM: systemd stopping the whole service, or someone the child alone
                    if should_stop():
                        log.warning("the %s child was stopped (SIGTERM); it restarts next time", kind)
                        return None
                    raise LogravenError(f"{kind} child process was stopped by a SIGTERM from outside lograven")
                else:
                    raise LogravenError(f"{kind} failed: {payload}")
        finally:
            p.join(30)
            if p.is_alive():
                p.kill()
    return result

