"""The one exception type for user mistakes.

A `UserError` carries a single line that names the bad key or file and what would be valid.
The CLI prints it without a traceback; everything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in user input (a name, a config value, a file), reported as one line.

    `cause` is what the runs of a grid that hit the same mistake have in common, by which the grid sees that
    all its runs would fail alike: the whole line, unless the line names one run (its folder, say).
    """

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause or message


class UnwritableFolder(UserError):
    """A folder that cannot be written: a full, read-only or unwritable disk (`atomic.folder_errors`). Unlike
    other user errors, one such run in a grid is enough to stop it: every run after it would write there too."""


def choices_error(what: str, given: object, valid) -> UserError:
    """`unknown attention 'sse'; valid: cbam, coord, eca, ...` — the standard unknown-name message."""
    return UserError(f"unknown {what} {given!r}; valid: {', '.join(map(str, valid))}")
