"""models/default, the bundle the demo ships with: it loads, it is small, and it detects.

The acceptance numbers at the bottom score fresh generator output (another
seed than the bundle's training data, seed 1) with the real Detector:
every unseen or malformed line is an unknown type, the forbidden cron->sshd
transition is caught by the sequence detector, and normal lines rarely alert.
Measured on the current bundle: unseen 83/83, malformed 114/114, forbidden
transition 103/103 (calibrated relative rule and floor at false_alarm_rate 1e-4),
false positives 1/29,700 normal lines (at 1e-5: 101/103 and 0).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lograven.bundle import FORMAT_VERSION, load_bundle, read_manifest
from lograven.detector import Detector
from lograven.generator import LogGenerator
from lograven.msgtypes import UNKNOWN
from lograven.parsing import Parser

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"
MAX_BYTES = 10 * 1024 * 1024
FORBIDDEN_WINDOW = 4  # the labelled first line of the offending burst and the next 3


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(DEFAULT)


def test_loads_with_this_code_and_format(bundle) -> None:
    manifest = read_manifest(DEFAULT)  # verifies every file's sha256
    assert manifest["format_version"] == FORMAT_VERSION
    assert bundle.types.n_types == bundle.sequence.n_types_ > 0
    assert 0 < bundle.autoencoder.threshold_ < float("inf")
    assert manifest["training"]["lines"] == 100_000, "models/README.md says 100,000 generator lines"


def test_is_small() -> None:
    size = sum(f.stat().st_size for f in DEFAULT.rglob("*") if f.is_file())
    assert size <= MAX_BYTES, f"models/default is {size / 1e6:.1f} MB, more than 10 MB"


def test_types_cover_sshd_cron_and_systemd(bundle) -> None:
    templates = [t.template for t in bundle.types.types_]
    for expected in (
        "Accepted publickey for <*> from <*> port <*>",  # sshd
        "Invalid user <*> from <*> port <*>",  # sshd
        "(root) CMD (cd / && run-parts --report /etc/cron.hourly)",  # cron
        "Started Session <*> of User <*>",  # systemd
        "Deactivated successfully.",  # systemd
    ):
        assert any(expected in t for t in templates), expected
    # and the lines of those programs in fresh normal output are typed, with several types each
    parser = Parser("syslog")
    by_source: dict[str, list[int]] = {}
    for g in LogGenerator(seed=11).generate(5000):
        by_source.setdefault(g.source, []).append(bundle.types.classify(parser.parse(g.text).message))
    for source in ("sshd", "cron", "systemd"):
        ids = by_source[source]
        assert sum(i == UNKNOWN for i in ids) / len(ids) <= 0.01, source
        assert len(set(ids) - {UNKNOWN}) >= 3, source


@pytest.mark.slow
def test_detection_acceptance(bundle) -> None:
    lines = LogGenerator(seed=7).generate(30000, anomaly_rate=0.01)
    det = Detector(bundle)
    parser = Parser("syslog")
    verdicts = []
    for i in range(0, len(lines), 1024):
        verdicts += det.detect([("/var/log/messages", parser.parse(g.text)) for g in lines[i : i + 1024]])
    kinds = Counter(g.kind for g in lines)
    assert all(kinds[k] > 50 for k in ("unseen_type", "malformed", "forbidden_transition")), kinds

    missed_unknown = [g.text for g, v in zip(lines, verdicts) if g.kind in ("unseen_type", "malformed") and "unknown_type" not in v.detectors]
    assert not missed_unknown, missed_unknown[:5]

    forbidden = [i for i, g in enumerate(lines) if g.kind == "forbidden_transition"]
    caught = sum(any("sequence" in v.detectors for v in verdicts[i : i + FORBIDDEN_WINDOW]) for i in forbidden)
    assert caught >= 0.9 * len(forbidden), f"sequence caught {caught}/{len(forbidden)} forbidden transitions"

    normal = [v for g, v in zip(lines, verdicts) if g.kind == "normal"]
    false_positives = sum(v.anomaly for v in normal)
    assert false_positives <= 0.002 * len(normal), f"{false_positives} alerts on {len(normal)} normal lines"
