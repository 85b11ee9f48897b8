"""`BatchLoader`: batches straight from in-memory uint8 tensors, with no per-image Python work.

It stands in for `torch.utils.data.DataLoader`: Lightning accepts any iterable with `__len__`.
"""

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from ..errors import UserError
from ..seeds import derive_seed
from .augment import Augment, none, normalizer


class BatchLoader:
    """Yields `(images float32 N×C×H×W normalised, labels int64 N)` on the device the tensors live on.

    Training (`train=True`): each epoch a permutation from a CPU generator seeded by `(seed, epoch())`,
    the same generator drawing the augmentation, and the last partial batch dropped. Because everything
    random derives from (seed, epoch), a run resumed at epoch k replays exactly the batches an
    uninterrupted run would have seen; `epoch` is a callable so the trainer's live epoch counter drives it.
    Evaluation: fixed order, no augmentation, every image.
    """

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float],
                 batch_size: int, *, train: bool = False, augment: Augment = none, seed: int = 0,
                 epoch: Callable[[], int] = lambda: 0):
        if train and len(images) < batch_size:
            raise UserError(f"batch_size={batch_size} exceeds the {len(images)} training images, "
                            f"so dropping the last partial batch would leave none")
        self.images, self.labels = images, labels
        self.mean, self.std = mean, std
        self.batch_size, self.train, self.augment = batch_size, train, augment
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        normalize = normalizer(self.mean, self.std, self.images.device)
        if not self.train:
            for start in range(0, len(self.images), self.batch_size):
                end = start + self.batch_size
                yield normalize(self.images[start:end]), self.labels[start:end]
            return
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch()))
        order = torch.randperm(len(self.images), generator=generator).to(self.images.device)
        for batch in order[: len(self) * self.batch_size].view(len(self), self.batch_size):
            # index_select, not images[batch]: ~10× faster on CPU for this row gather
            yield normalize(self.augment(self.images.index_select(0, batch), generator)), self.labels[batch]

