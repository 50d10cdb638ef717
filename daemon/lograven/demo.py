"""`lograven demo`: the real daemon on a live synthetic syslog stream, with anomalies injected at a visible pace."""
from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TextIO

from lograven.config import parse_config
from lograven.errors import LogravenError
from lograven.generator import LogGenerator

log = logging.getLogger(__name__)

KINDS = ("unseen_type", "forbidden_transition", "malformed")
KIND_TEXT = {
    "unseen_type": "a message type never seen in training",
    "forbidden_transition": "a cron burst followed directly by an sshd burst (never happens in training)",
    "malformed": "a malformed line",
}


def default_model_dir() -> Path:
    """The bundle the demo uses: $LOGRAVEN_DEFAULT_MODEL, else models/default of the source tree."""
    env = os.environ.get("LOGRAVEN_DEFAULT_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models" / "default"


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    return preferred


class _Writer(threading.Thread):
    """Appends generator lines to the demo log; injects one anomaly of each kind in turn."""

    def __init__(self, path: Path, rate: float, every: float, seed: int, out: TextIO):
        super().__init__(name="lograven-demo-writer", daemon=True)
        self.path, self.rate, self.every, self.out = path, rate, every, out
        self.gen = LogGenerator(seed=seed, start=datetime.now())
        self.stop_event = threading.Event()
        self.written = 0
        self.injected: list[tuple[str, str, int]] = []  # (kind, line, byte offset in the log)
        self.offsets: list[int] = []  # start of every written line
        self._kinds = itertools.cycle(KINDS)

    def run(self) -> None:
        next_anomaly = time.monotonic() + min(self.every, 3.0)
        with open(self.path, "ab") as f:
            while not self.stop_event.is_set():
                t0 = time.monotonic()
                batch = self.gen.generate(max(1, int(self.rate / 10)))
                if t0 >= next_anomaly:
                    kind = next(self._kinds)
                    # generate until one anomaly of this kind appeared (the generator finishes bursts
                    # across calls, so every generated line is written: no burst is cut short)
                    lines = []
                    while not any(ln.kind == kind for ln in lines) and len(lines) < 10_000:
                        lines += self.gen.generate(10, anomaly_rate=0.5, kinds=(kind,))
                    cut = next(i for i, ln in enumerate(lines) if ln.kind == kind) if any(ln.kind == kind for ln in lines) else len(lines) - 1
                    # the generator may hold back further anomalies for its next calls: every
                    # anomalous line written is announced below, whenever it comes
                    batch += [ln for i, ln in enumerate(lines) if i <= cut or ln.kind == "normal"]
                    next_anomaly = t0 + self.every
                for ln in batch:
                    text = _now_stamp(ln.text)
                    self.offsets.append(f.tell())
                    if ln.kind != "normal":
                        self.injected.append((ln.kind, text, f.tell()))
                        self.out.write(f"\n>>> injecting {KIND_TEXT[ln.kind]}:\n    {text[:160]}\n")
                        self.out.flush()
                    f.write(text.replace("\n", " ").encode("utf-8", "surrogateescape") + b"\n")
                f.flush()
                self.written += len(batch)
                self.stop_event.wait(max(0.0, 0.1 - (time.monotonic() - t0)))


_STAMP = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ")


def _now_stamp(line: str) -> str:
    """Live demo: the generator's simulated clock runs fast; show wall-clock time instead."""
    if _STAMP.match(line):
        return datetime.now().strftime("%b %e %H:%M:%S ") + line[16:]
    return line


def run_demo(
    *,
    duration: float | None = None,
    rate: float = 20.0,
    every: float = 6.0,
    model: str | None = None,
    seed: int | None = None,
    keep: bool = False,
    out: TextIO | None = None,
) -> dict:
    """Run the demo; returns the summary (also printed)."""
    from lograven.bundle import load_bundle
    from lograven.service import Service

    out = out or sys.stdout
    model_dir = Path(model) if model else default_model_dir()
    try:
        bundle = load_bundle(model_dir)
    except LogravenError as e:
        raise LogravenError(f"{e}\nthe demo needs the default model: rebuild it with `bash models/build.sh` (about 2 minutes)") from e
    tmp = Path(tempfile.mkdtemp(prefix="lograven-demo-"))
    logs = tmp / "log"
    logs.mkdir()
    logfile = logs / "messages"
    logfile.touch()
    has_syslog = os.path.exists("/dev/log")
    port = _free_port(9077)
    cfg = parse_config(
        {
            "sources": [{"paths": [str(logfile)], "start_position": "end"}],
            "model": str(model_dir),
            "state_dir": str(tmp / "state"),
            "alerts": {
                "syslog": {"enabled": has_syslog},
                "jsonl": {"enabled": True, "path": str(tmp / "alerts.jsonl")},
                "stdout": {"enabled": True, "format": "human"},
                "dedup_window_seconds": 5,
                "max_per_minute": 30,
            },
            "metrics": {"enabled": True, "listen": f"127.0.0.1:{port}"},
            "runtime": {"poll_interval_seconds": 0.5, "checkpoint_interval_seconds": 5},
        },
        "<demo>",
    )
    out.write(
        f"lograven demo — the real daemon (`lograven run`) on a live synthetic syslog stream\n"
        f"  model      {model_dir} ({bundle.version}, {len(bundle.types.types_)} message types)\n"
        f"  log        {logfile}  (~{rate:.0f} lines/s of sshd/cron/systemd/kernel/sudo/dhclient)\n"
        f"  alerts     here, in {tmp / 'alerts.jsonl'}"
        + (", and to syslog (/dev/log, tag lograven)" if has_syslog else "; /dev/log not found, so no syslog alerts")
        + f"\n  metrics    http://127.0.0.1:{port}/metrics\n"
        f"  an anomaly is injected every {every:.0f} s, cycling: unseen message type, forbidden transition, malformed line\n"
        + ("  stop with Ctrl-C\n" if duration is None else f"  running for {duration:.0f} s\n")
    )
    out.flush()
    svc = Service(cfg, None)
    writer = _Writer(logfile, rate, every, seed if seed is not None else random.randrange(1 << 30), out)
    timer = None

    def start_writer() -> None:
        # the daemon is ready once its model is loaded and files are open
        while svc.detector is None or not svc._sources:
            if svc._stop.is_set():
                return
            time.sleep(0.05)
        writer.start()

    threading.Thread(target=start_writer, daemon=True).start()
    if duration is not None:
        timer = threading.Timer(duration, svc.stop)
        timer.daemon = True
        timer.start()
    t0 = time.monotonic()
    try:
        try:
            svc.run()
        except KeyboardInterrupt:
            pass
        finally:
            writer.stop_event.set()
            if timer:
                timer.cancel()
        summary = _summary(tmp / "alerts.jsonl", writer, time.monotonic() - t0, _read_to(svc.checkpointer.load(), logfile))
        out.write("\n" + _format_summary(summary) + "\n")
    finally:  # an error above too: the demo leaves nothing in /tmp unless asked to keep it
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            out.write(f"files kept in {tmp}\n")
    return summary


def _read_to(state: dict | None, logfile: Path) -> int | None:
    """How far the daemon had read the log when it stopped: the acknowledged offset in its checkpoint's
    `state` (Checkpointer.load), None without one."""
    for group in ((state or {}).get("positions") or {}).values():
        entry = group.get(str(logfile)) if isinstance(group, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("offset"), int):
            return entry["offset"]
    return None


def _summary(alerts_path: Path, writer: _Writer, seconds: float, read_to: int | None = None) -> dict:
    """What was injected and caught. An injection the daemon had not read when it stopped (written in
    the moment of the Ctrl-C) is not counted as missed: it is counted apart, as not read."""
    alerts = []
    if alerts_path.exists():
        alerts = [json.loads(x) for x in alerts_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    by_det = Counter(d["name"] for a in alerts for d in a["detectors"])
    caught: dict[str, list[int]] = {}
    alert_offsets = {a["offset"] for a in alerts}
    index = {off: i for i, off in enumerate(writer.offsets)}
    explained: set[int] = set()
    unread = 0
    for kind, _line, offset in writer.injected:
        # a forbidden transition may be noticed on the first lines of the burst that breaks the rule
        i = index.get(offset, -1)
        window = writer.offsets[i : i + (4 if kind == "forbidden_transition" else 1)] if i >= 0 else [offset]
        explained.update(window)
        hit = any(o in alert_offsets for o in window)
        if not hit and read_to is not None and window[-1] >= read_to:
            unread += 1  # written after the daemon's last read: neither caught nor missed
            continue
        c = caught.setdefault(kind, [0, 0])
        c[1] += 1
        c[0] += hit
    other = [a for a in alerts if a["offset"] not in explained]
    return {
        "seconds": round(seconds, 1),
        "lines_written": writer.written,
        "alerts": len(alerts),
        "alerts_by_detector": dict(by_det),
        "injected_caught": {k: {"caught": v[0], "injected": v[1]} for k, v in caught.items()},
        "alerts_on_other_lines": len(other),
        "injected_not_read": unread,
    }


def _format_summary(s: dict) -> str:
    lines = [f"summary after {s['seconds']} s: {s['lines_written']} lines written, {s['alerts']} alerts"]
    for kind, v in s["injected_caught"].items():
        lines.append(f"  {kind:<22} caught {v['caught']}/{v['injected']}")
    lines.append(f"  alerts by detector     {s['alerts_by_detector']}")
    lines.append(f"  alerts on other lines  {s['alerts_on_other_lines']} (false positives, or neighbours of a malformed line)")
    if s.get("injected_not_read"):
        lines.append(f"  not read before the stop: {s['injected_not_read']} injected (not counted above)")
    return "\n".join(lines)
