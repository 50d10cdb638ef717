"""Progress display for long CLI stages: a bar on a terminal, a log line per stage otherwise."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable as `progress(stage, fraction)`; writes to stderr so stdout stays clean."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._stage: str | None = None
        self._t0 = time.monotonic()
        self._last = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        now = time.monotonic()
        if stage != self._stage:
            if self._stage is not None and self.tty:
                self.stream.write("\n")
            self._stage = stage
            self._t0 = now
            if not self.tty:
                self.stream.write(f"lograven: {stage}...\n")
                self.stream.flush()
        if self.tty and (now - self._last > 0.1 or fraction >= 1.0):
            self._last = now
            filled = int(self.width * fraction)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r  {stage:<16} [{bar}] {fraction * 100:5.1f}%  {now - self._t0:6.1f}s")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._stage is not None:
            self.stream.write("\n")
            self.stream.flush()
