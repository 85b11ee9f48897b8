"""One reader per on-disk format, each registered in `DATASETS` (`registry.py`) under the dataset names it
reads: cifar10/cifar100 (torchvision's pickles), fashion_mnist (IDX files), imagefolder (a folder or tar of
`train/<class>/*`, `test/<class>/*`), synthetic (seeded random images, only when named)."""

from . import cifar, idx, imagefolder, synthetic  # noqa: F401  (registration)
from .registry import DATASETS, Source

__all__ = ["DATASETS", "Source"]
