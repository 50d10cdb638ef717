"""The benchmark suite runs end to end in smoke mode and reports every section.

Not a benchmark: `--smoke` makes each measurement about a second, and the
numbers are not checked, only that every benchmark ran (or skipped with a
reason, e.g. Drain3 not installed) and wrote rows to the JSON and markdown.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_smoke_writes_every_section(tmp_path):
    sys.path.insert(0, str(REPO))
    try:
        from bench.__main__ import BENCHMARKS
    finally:
        sys.path.remove(str(REPO))
    out = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", "--out", str(out), "--data", str(tmp_path / "no-shared-data")],
        cwd=REPO, capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads(Path(r.stdout.strip().splitlines()[-1]).read_text())
    sections = result["benchmarks"]
    assert set(BENCHMARKS) <= set(sections), f"missing sections: {set(BENCHMARKS) - set(sections)}"
    for name in BENCHMARKS:
        sec = sections[name]
        assert sec["status"] in ("ok", "skipped"), f"{name}: {sec['status']}: {sec.get('message', '')[-2000:]}"
        if sec["status"] == "ok":
            assert sec["rows"], f"{name} reported no rows"
        else:
            assert sec["message"], f"{name} skipped without saying why"
    assert result["machine"]["cores_online"] >= 1
    md = out / f"{result['stamp']}.md"
    text = md.read_text()
    for name in BENCHMARKS:
        assert f"`{name}` —" in text
