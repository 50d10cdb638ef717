"""Small operating-system helpers shared by the CLI and the daemon."""
from __future__ import annotations

import os


class TooLarge(OSError):
    """A file larger than the limit for its kind (read_limited)."""


def read_limited(path, limit: int, errors: str = "strict") -> str:
    """A small file's text (UTF-8), read in at most `limit` bytes: a config or rules file is small, and
    `--config /dev/zero` must not fill the memory. Raises TooLarge beyond the limit, and what open()
    and decoding raise."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(27, f"larger than {limit // 2**20} MiB", str(path))
    return data.decode("utf-8", errors)


def user_name(uid: int) -> str | None:
    """The name of user `uid`, or None when it has none (or there is no user database)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


def whoami() -> str:
    """This process's effective user, for messages: `user NAME`, else `uid N`."""
    name = user_name(os.geteuid())
    return f"user {name}" if name else f"uid {os.geteuid()}"
