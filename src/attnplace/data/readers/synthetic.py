"""Seeded random images for smoke tests: used only when the dataset is named `synthetic`.

Each class has a random prototype image and every sample is half prototype, half noise, so a model can
learn it quickly, and a smoke test can check that the loss goes down.
"""

from pathlib import Path

import torch

from ...errors import UserError, choices_error
from ..splits import Splits
from .registry import DATASETS, Source

DEFAULTS = {"num_train": 1000, "num_test": 200, "num_classes": 10, "image_size": 32, "channels": 3, "seed": 0}


@DATASETS.register("synthetic")
def synthetic(path: Path | None = None, **options) -> Source:
    """Seeded random images with a learnable class signal, for smoke tests only.

    Options: num_train, num_test, num_classes, image_size, channels, seed (see DEFAULTS)."""
    for key, value in options.items():
        if key not in DEFAULTS:
            raise choices_error("synthetic option", key, DEFAULTS)
        least = 0 if key == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise UserError(f"synthetic option {key}={value!r} must be an integer >= {least}")
    opts = DEFAULTS | options
    return Source("synthetic", None, None, lambda: _make(**opts))


def _make(num_train, num_test, num_classes, image_size, channels, seed) -> Splits:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, 256, (num_classes, channels, image_size, image_size), generator=g, dtype=torch.uint8)

    def split(n):
        y = torch.arange(n)[torch.randperm(n, generator=g)] % num_classes
        noise = torch.randint(0, 128, (n, channels, image_size, image_size), generator=g, dtype=torch.uint8)
        return prototypes[y] // 2 + noise, y

    return Splits(*split(num_train), *split(num_test), [f"class{i}" for i in range(num_classes)])
