"""One error type for everything a user can get wrong (bad flags, bad files).

The CLI prints ``error: <message>`` on one line and exits 2 for these; anything
else is a bug and keeps its traceback.
"""


class PhaserError(Exception):
    """A user-facing error: the message is the whole story, no traceback."""


class ServiceFailure(PhaserError):
    """A running service cannot go on (e.g. its broker lost every topic): one
    line on stderr and exit code 3, so a supervisor restarts it."""

    exit_code = 3
