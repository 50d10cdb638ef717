"""The one exception type for errors a user can meet and fix."""


class LogravenError(Exception):
    """A problem the user can fix: the message names the file/key and what to do.

    The CLI prints it without a traceback and exits non-zero.
    """



def quoted(text: str) -> str:
    """`text` in single quotes as the user typed it, for messages: repr() doubled each backslash of a
    regex (`'blk_(-?\\\\d+)'`), and a pattern copied back from the message then matched a backslash (a
    review). repr() still for text that single quotes cannot show (a quote, a control character)."""
    return f"'{text}'" if text.isprintable() and "'" not in text else repr(text)
