"""Shared fixtures: generator data, one fitted set of message types, one tiny trained bundle.

Training is the expensive part of the model tests, so one tiny bundle is
trained per session (a few seconds) and every model, bundle and detector
test reuses it; tests that modify a bundle work on a copy.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lograven.generator import GeneratedLine, LogGenerator, write_log
from lograven.parsing import LogRecord, Parser

# Tiny models: enough to exercise every code path, small enough for a 2-core CI box.
# one GRU: ensembles (members, automatic for sessions) are tested in test_ensemble.py
TINY_SEQUENCE = {"units": 16, "embedding_dim": 8, "window": 16, "epochs": 3, "members": 1}
# a higher learning rate than the default so two epochs separate normal from unseen text clearly
TINY_AUTOENCODER = {"vocab_size": 128, "epochs": 2, "filters": 16, "latent_dim": 8, "embedding_dim": 8, "learning_rate": 0.01}
TRAIN_SEED = 1
TRAIN_LINES = 3000

_parser = Parser("syslog")


def pytest_configure(config: pytest.Config) -> None:
    # MessageTypes tries k up to the number of distinct signatures; KMeans warns when several
    # signatures coincide after SVD. Harmless here, and noise in every run.
    config.addinivalue_line("filterwarnings", "ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The benchmark smoke test runs last: its run starts with the session (below) and is done by then."""
    smoke = [it for it in items if it.nodeid.endswith("test_bench_smoke_writes_every_section")]
    if smoke:
        items[:] = [it for it in items if it not in smoke] + smoke


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the benchmark suite's smoke test is selected, start it now, beside the other tests (see
    test_bench_smoke.start_bench_smoke): the suite takes about 3 minutes less on two cores."""
    if session.config.option.collectonly or not any(
        item.nodeid.endswith("test_bench_smoke_writes_every_section") for item in session.items
    ):
        return
    import tempfile

    from test_bench_smoke import start_bench_smoke

    out_dir = Path(tempfile.mkdtemp(prefix="lograven-bench-smoke-"))
    session.config._lograven_bench_smoke = (start_bench_smoke(out_dir), out_dir)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = getattr(session.config, "_lograven_bench_smoke", None)
    if started is not None:
        proc, out_dir = started
        if proc.poll() is None:  # the test did not run (deselected by -x, or the session was interrupted)
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(out_dir, ignore_errors=True)


def parse(text: str) -> LogRecord:
    """A generator line as the daemon sees it (RFC 3164 header split off)."""
    return _parser.parse(text)


@dataclass(frozen=True)
class Labelled:
    """Generator output parsed once: raw lines, their messages and ground-truth template ids."""

    lines: list[GeneratedLine]
    messages: list[str]
    templates: list[str]


@pytest.fixture(scope="session")
def normal_data() -> Labelled:
    """5000 normal generator lines (seed 1) with their template labels."""
    lines = LogGenerator(seed=1).generate(5000)
    return Labelled(lines, [parse(g.text).message for g in lines], [g.template for g in lines])


@pytest.fixture(scope="session")
def unseen_data() -> Labelled:
    """Unseen-type anomalies only (messages normal output never contains), from another seed."""
    lines = [g for g in LogGenerator(seed=7).generate(3000, anomaly_rate=0.2, kinds=("unseen_type",)) if g.kind == "unseen_type"]
    return Labelled(lines, [parse(g.text).message for g in lines], [g.template for g in lines])


@pytest.fixture(scope="session")
def fitted_types(normal_data: Labelled):
    """MessageTypes fitted on `normal_data` (no TensorFlow involved). Do not mutate: copy via JSON."""
    from lograven.msgtypes import MessageTypes

    return MessageTypes().fit(normal_data.messages)


def tiny_training_config():
    """A TrainingConfig with tiny models, built through the real config validation."""
    from lograven.config import parse_config

    return parse_config({"training": {"seed": 42, "sequence": TINY_SEQUENCE, "autoencoder": TINY_AUTOENCODER}}).training


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny bundle trained on LogGenerator(seed=1).lines(3000). Read-only: copy it to modify it."""
    from lograven.training import read_corpus, train

    d = tmp_path_factory.mktemp("tiny-bundle")
    log = d / "messages"
    write_log(log, LogGenerator(seed=TRAIN_SEED).lines(TRAIN_LINES))
    corpus = read_corpus([str(log)])
    result = train(corpus, d / "bundle", training=tiny_training_config())
    return result.path


@pytest.fixture(scope="session")
def training_log(bundle_dir: Path) -> Path:
    """The log file the tiny bundle was trained on."""
    return bundle_dir.parent / "messages"


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


@pytest.fixture
def bundle(bundle_dir: Path):
    """A freshly loaded tiny bundle (own caches, own objects)."""
    from lograven.bundle import load_bundle

    return load_bundle(bundle_dir)


def reference_p(seq, types: np.ndarray, n: int) -> np.ndarray:
    """Next-type distribution for line n (0-based) of one stream, computed statelessly.

    sequence.py's docstring: two GRU states restarted half a window apart, the
    prediction made with the one with the longer history; the first state of a
    stream starts with BOS. Evaluated here from a zero state over that history.
    """
    from lograven.sequence import BOS

    W, half = seq.params.window, seq.params.window // 2
    hist0 = np.concatenate([[BOS], types[:n]]) if n <= W else types[W * ((n - 1) // W) : n]
    hist1 = types[:n] if n <= half else types[half + W * ((n - 1 - half) // W) : n]
    hist = hist0 if len(hist0) >= len(hist1) else hist1
    assert 1 <= len(hist) <= W + 1
    return seq.window_probs(np.asarray(hist, dtype=np.int64)[None, :])[0, -1]


@pytest.fixture(autouse=True)
def _no_installed_config(monkeypatch):
    """`allow` and `models` default to the installed daemon's config: never the host's, in tests."""
    monkeypatch.setenv("LOGRAVEN_CONFIG", "/nonexistent/lograven-tests/config.yaml")


@pytest.fixture(autouse=True)
def _no_service_user(monkeypatch):
    """`check` run as root also checks as the service's user when it exists: not a host's, in tests."""
    from lograven import cli

    monkeypatch.setattr(cli, "SERVICE_USER", "lograven-tests-no-such-user")


@pytest.fixture(autouse=True)
def _no_daemon_left_behind():
    """A failing end-to-end test must not leave `lograven run` processes behind."""
    yield
    import sys

    mod = sys.modules.get("test_daemon_e2e")
    for proc in getattr(mod, "LIVE", []):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    if mod is not None:
        mod.LIVE.clear()


def call_within(fn, seconds: float = 10.0):
    """fn()'s result, or the exception it raised (returned, not raised); fails the test when fn does not
    return within `seconds`: it blocked (on a FIFO, say). fn runs in a daemon thread, left behind then."""
    import threading

    out: list = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn!r} did not return within {seconds} s: it blocked"
    return out[0]
