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


class InvalidOption(UserError):
    """A bad value of one named option, raised by the check where the option is defined. Its message is what the
    caller of a function sees (`unknown gate 'soft'; valid: ...`, naming the argument); a config reader states it
    of the config's dotted key instead (`in_config`: `model.gate='soft' is invalid; valid: ...`)."""

    def __init__(self, key: str, value: object, valid: str, message: str | None = None):
        self.key, self.value, self.valid = key, value, valid
        super().__init__(message or f"{key}={value!r} is invalid; valid: {valid}")

    def in_config(self, prefix: str) -> str:
        return f"{prefix}{self.key}={self.value!r} is invalid; valid: {self.valid}"


def require(ok: bool, key: str, value: object, valid: str, message: str | None = None) -> None:
    """Raise `InvalidOption` for `key=value` unless `ok`; `valid` says what would be, `message` (if given) how a
    function's caller is told."""
    if not ok:
        raise InvalidOption(key, value, valid, message)


def choose(key: str, value: object, choices) -> None:
    """Raise `InvalidOption` unless `value` is one of `choices`; a caller sees `choices_error`'s message."""
    if value not in choices:
        raise InvalidOption(key, value, ", ".join(map(str, choices)), str(choices_error(key, value, choices)))
