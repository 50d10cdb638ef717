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


def start_bench_smoke(out_dir: Path) -> subprocess.Popen:
    """Start `python -m bench --smoke` (niced) writing into `out_dir`. The suite's conftest starts it
    when the session begins, when this test is selected, so that its 3-4 minutes overlap the other
    tests on the second core instead of adding to the suite's time; the test then waits for it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "bench.stderr", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            ["nice", "-n", "5", sys.executable, "-m", "bench", "--smoke", "--json", "--out", str(out_dir / "results"),
             "--data", str(out_dir / "no-shared-data")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_smoke_writes_every_section(tmp_path, request):
    sys.path.insert(0, str(REPO))
    try:
        from bench.__main__ import BENCHMARKS
    finally:
        sys.path.remove(str(REPO))
    started = getattr(request.config, "_lograven_bench_smoke", None)  # from conftest, at the session's start
    if started is None:
        proc, out_dir = start_bench_smoke(tmp_path), tmp_path
    else:
        proc, out_dir = started
    try:
        stdout, _ = proc.communicate(timeout=1700)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = (out_dir / "bench.stderr").read_text(errors="replace")
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), stderr)
    out = out_dir / "results"
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
