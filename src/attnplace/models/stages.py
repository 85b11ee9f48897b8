"""Which stages of a network get the pattern: one check, for a backbone named in a config or `build_model`
(`ModelOptions`) and for a network handed to `convert`."""

from ..errors import InvalidOption


def check_stages(stages, n: int, network: str) -> None:
    """`stages` (1-based) must be a non-empty set of `network`'s n stages."""
    chosen = sorted(set(stages))
    if not (chosen and set(chosen) <= set(range(1, n + 1))):
        raise InvalidOption("stages", list(stages), f"a non-empty list of {network}'s stages 1..{n}",
                            f"stages={chosen} do not exist in {network}; valid: 1..{n}")
