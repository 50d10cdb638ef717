"""Raw log line -> LogRecord. (Interface placeholder; implementation in progress.)"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class LogRecord:
    """One parsed log line. Models learn from `message` only."""

    timestamp: datetime | None
    host: str | None
    program: str | None
    pid: int | None
    message: str
    stream: str | None = None  # from a regex format's `stream` group
    parsed: bool = True  # False: the format did not match, the whole line became the message
