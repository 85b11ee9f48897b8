"""Derived seeds: one run seed fans out into independent, named random streams."""

import hashlib


def derive_seed(*parts: object) -> int:
    """A 64-bit seed for `parts`, e.g. (seed, epoch) or (seed, "stage2.block0.residual.0.0").

    Distinct tuples get unrelated streams (unlike `seed + epoch`), and the value depends on nothing else,
    so a stream is the same whichever other streams a program draws first.
    """
    text = "/".join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
