"""Config keys added after run ids were first computed.

A key declared with `later(default)` is left out of the run id while it holds its default (`run.config.identity`),
so adding one changes no earlier run's id, and a variant that does not read it (its canonical config resets it
to the default) never names it. Declare a new option so where it is defined: a gate form's field in
`BlockOptions`, a schedule's in `OptimConfig`.
"""

import dataclasses

LATER = "later"  # the field metadata that marks such a key


def later(default):
    """A dataclass field added after run ids were first computed, with its `default`."""
    return dataclasses.field(default=default, metadata={LATER: True})


def later_defaults(cls) -> dict[str, object]:
    """The later fields of dataclass `cls` (not those of its nested sections), by name, with their defaults."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.metadata.get(LATER)}
