"""Daemon latency: a line appended -> its alert in the JSON-lines sink; and the highest sustained rate.

`lograven run` (pinned to CPU 0) follows one file in a temp dir with the
default bundle; syslog alerts off, JSON-lines on, de-duplication off,
max_per_minute huge, everything else default (batch 256, max_wait 20 ms,
fsync per alert batch). This process (pinned to CPU 1) appends generator
lines at a fixed rate in 10 ms ticks and, 20 times a second, a marker line of
a type no model knows, noting the time just before its write; a second
thread tails alerts.jsonl every millisecond and notes when each marker's
alert appears. Latency = appearance - write, per marker.

Sustained rate: the rate is stepped up; at each step the daemon's
`lograven_file_lag_bytes` (bytes written but not read) and
`lograven_queue_lines` (read, not yet scored) are scraped twice a second. A
step is sustained when the backlog (lag in lines + queue) ends below 0.1 s
of input (or 1,000 lines) and grows by less than 1% of the rate per second
over the step's second half. The highest
sustained step is reported; the next one is where the backlog grew.
"""
from __future__ import annotations

import time

from bench.common import (
    LOAD_CPU, MEASURE_CPU, AlertWatcher, Context, Daemon, LineWriter, metric_sum, percentile, pinned_here, read_lines, row,
)  # fmt: skip

TITLE = "Daemon latency (line appended → alert in alerts.jsonl) and sustained rate"
RATES = (500, 2_000, 10_000)
TARGET_P99_MS = 50.0
MARKERS_PER_S = 20.0


def _phase(d: Daemon, writer: LineWriter, watcher: AlertWatcher, rate: float, warm: float, seconds: float) -> dict:
    writer.rate = rate
    time.sleep(warm)
    first = writer._next_id
    cpu0, t0, w0 = d.cpu_seconds(), time.perf_counter(), writer.written
    writer.marker_every = 1.0 / MARKERS_PER_S
    time.sleep(seconds)
    writer.marker_every = None
    written = writer.written - w0
    last = writer._next_id
    wall = time.perf_counter() - t0
    cpu = d.cpu_seconds() - cpu0
    deadline = time.perf_counter() + 15.0
    while time.perf_counter() < deadline and any(i not in watcher.seen for i in range(first, last)):
        time.sleep(0.05)
    lat = [(watcher.seen[i] - writer.markers[i]) * 1000 for i in range(first, last) if i in watcher.seen]
    return {
        "rate": rate, "achieved_rate": written / wall, "markers": last - first, "missing": sum(i not in watcher.seen for i in range(first, last)),
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
        "daemon_cpu_share": cpu / wall, "writer_behind_s": writer.behind_s,
    }  # fmt: skip


def _backlog(d: Daemon, line_bytes: float) -> tuple[float, float, float]:
    m = d.metrics()
    lag = metric_sum(m, "lograven_file_lag_bytes")
    q = metric_sum(m, "lograven_queue_lines")
    return lag, q, lag / line_bytes + q


def _slope(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples) or 1.0
    return sum((t - mt) * (v - mv) for t, v in samples) / den


def _ramp(ctx: Context, lines: list[bytes], model, line_bytes: float) -> dict:
    steps = (2_000, 5_000) if ctx.smoke else (2_000, 5_000, 8_000, 12_000, 16_000, 20_000, 24_000, 28_000, 32_000, 36_000, 40_000, 50_000, 60_000)
    step_s = ctx.seconds(12.0, 2.0)
    root = ctx.work / "latency" / "ramp"
    log = root / "messages"
    root.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    out, best = [], None
    with Daemon(root, [str(log)], model=model, cpu=MEASURE_CPU) as d:
        d.start()
        writer = LineWriter([log], lines, 0.0)
        writer.start()
        try:
            for rate in steps:
                writer.rate = rate
                t0 = time.perf_counter()
                w0, cpu0 = writer.written, d.cpu_seconds()
                samples = []
                while (t := time.perf_counter() - t0) < step_s:
                    time.sleep(0.5)
                    lag, q, backlog = _backlog(d, line_bytes)
                    samples.append((t, backlog, lag, q))
                wall = time.perf_counter() - t0
                achieved = (writer.written - w0) / wall
                second_half = [(t, b) for t, b, _, _ in samples if t >= step_s / 2]
                slope = _slope(second_half)
                end_backlog = samples[-1][1] if samples else 0.0
                ok = end_backlog <= max(0.1 * rate, 1000) and slope <= 0.01 * rate and achieved >= 0.95 * rate
                out.append({"rate": rate, "achieved_rate": achieved, "end_backlog_lines": end_backlog, "backlog_slope_lines_per_s": slope,
                            "end_lag_bytes": samples[-1][2] if samples else None, "end_queue_lines": samples[-1][3] if samples else None,
                            "max_lag_bytes": max((s[2] for s in samples), default=0), "daemon_cpu_share": (d.cpu_seconds() - cpu0) / wall,
                            "sustained": ok})  # fmt: skip
                ctx.log(f"    ramp {rate:>6,} lines/s: wrote {achieved:,.0f}/s, backlog {end_backlog:,.0f} lines "
                        f"(slope {slope:+,.0f}/s), daemon CPU {out[-1]['daemon_cpu_share']:.0%} → {'ok' if ok else 'lagging'}")  # fmt: skip
                if not ok:
                    break
                best = rate
        finally:
            writer.stop()
    return {"steps": out, "max_sustained": best, "step_seconds": step_s}


def run(ctx: Context) -> dict:
    model = ctx.default_model()
    lines = read_lines(ctx.generated(ctx.lines(200_000, 20_000), seed=7))
    line_bytes = sum(map(len, lines)) / len(lines)
    warm, seconds = ctx.seconds(3.0, 0.5), ctx.seconds(20.0, 1.5)
    rows, details = [], {"phases": []}
    with pinned_here(LOAD_CPU):
        root = ctx.work / "latency" / "fixed"
        log = root / "messages"
        root.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        with Daemon(root, [str(log)], model=model, cpu=MEASURE_CPU) as d:
            d.start()
            watcher = AlertWatcher(d.alerts)
            watcher.start()
            writer = LineWriter([log], lines, 0.0)
            writer.start()
            try:
                for rate in RATES:
                    ph = _phase(d, writer, watcher, rate, warm, seconds)
                    details["phases"].append(ph)
                    ctx.log(f"    {rate:>6,} lines/s: p50 {ph['p50_ms']:.1f} ms, p99 {ph['p99_ms']:.1f} ms, "
                            f"{ph['markers']} markers, {ph['missing']} missing, daemon CPU {ph['daemon_cpu_share']:.0%}")  # fmt: skip
            finally:
                writer.stop()
                watcher.stop()
            details["alerts_total"] = watcher.alerts
        for ph in details["phases"]:
            is_target = ph["rate"] == 2_000
            note = (f"{ph['markers']} markers ({ph['missing']} without alert); p90 {ph['p90_ms']:.1f} ms, max {ph['max_ms']:.1f} ms; "
                    f"daemon CPU {ph['daemon_cpu_share']:.0%} of a core; wrote {ph['achieved_rate']:,.0f} lines/s")  # fmt: skip
            rows.append(row(f"{ph['rate']:,} lines/s: p50", ph["p50_ms"], "ms", noisy=True))
            rows.append(row(f"{ph['rate']:,} lines/s: p99", ph["p99_ms"], "ms", target=f"≤ {TARGET_P99_MS:.0f} ms" if is_target else None,
                            ok=(ph["p99_ms"] <= TARGET_P99_MS and ph["missing"] == 0) if is_target else None, note=note, noisy=True))  # fmt: skip
        ramp = _ramp(ctx, lines, model, line_bytes)
    details["ramp"] = ramp
    last = ramp["steps"][-1] if ramp["steps"] else None
    nxt = next((s for s in ramp["steps"] if not s["sustained"]), None)
    rows.append(row("highest sustained rate (backlog not growing)", ramp["max_sustained"], "lines/s",
                    note=(f"next step {nxt['rate']:,}/s: backlog {nxt['end_backlog_lines']:,.0f} lines, lag {nxt['end_lag_bytes']:,.0f} B, "
                          f"growing {nxt['backlog_slope_lines_per_s']:+,.0f} lines/s" if nxt else
                          f"every step up to {last['rate']:,}/s sustained" if last else "")
                    + f"; {ramp['step_seconds']:.0f} s steps", noisy=True))  # fmt: skip
    return {"title": TITLE, "rows": rows, "details": details}
