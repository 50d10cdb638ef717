"""The one exception type for errors a user can meet and fix."""


class LogravenError(Exception):
    """A problem the user can fix: the message names the file/key and what to do.

    The CLI prints it without a traceback and exits non-zero.
    """


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
