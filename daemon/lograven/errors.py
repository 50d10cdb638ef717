"""The one exception type for errors a user can meet and fix."""


class LogravenError(Exception):
    """A problem the user can fix: the message names the file/key and what to do.

    The CLI prints it without a traceback and exits non-zero.
    """

