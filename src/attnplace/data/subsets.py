"""Class-balanced, seeded index selection: the validation carve and the training subset."""

import torch
from torch import Tensor

from ..errors import UserError


def carve(labels: Tensor, val_size: int, train_subset: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, val indices) into `labels`, both sorted, disjoint and class-balanced.

    The validation draw comes first from the seeded generator, so the validation set does not depend on
    `train_subset`; and subsets of one seed are nested (the 1000-image subset lies inside the 2000 one).
    """
    n = len(labels)
    if not isinstance(val_size, int) or not 0 <= val_size < n:
        raise UserError(f"val_size={val_size!r} must be an integer from 0 to {n - 1} "
                        f"(the training split has {n} images and needs at least one left)")
    g = torch.Generator().manual_seed(seed)
    val = balanced_pick(labels, val_size, g)
    rest = torch.ones(n, dtype=torch.bool)
    rest[val] = False
    rest = rest.nonzero().squeeze(1)
    if train_subset is not None:
        if not isinstance(train_subset, int) or not 1 <= train_subset <= len(rest):
            raise UserError(f"train_subset={train_subset!r} must be an integer from 1 to {len(rest)} "
                            f"(the training images left after a {val_size}-image validation split), or None for all")
        rest = rest[balanced_pick(labels[rest], train_subset, g)]
    return rest.sort().values, val.sort().values


def balanced_pick(labels: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """`count` random indices spread over classes as evenly as possible (class counts differ by at most
    one while every class has images left), with seeded choice of which classes get the remainder.

    Vectorised: shuffle, rank each item within its class, then take items in order of (rank, class order).
    """
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    shuffle = torch.randperm(len(labels), generator=generator)
    class_order = torch.randperm(num_classes, generator=generator)
    shuffled = labels[shuffle]
    by_class = torch.argsort(shuffled, stable=True)
    sizes = torch.bincount(shuffled, minlength=num_classes)
    starts = sizes.cumsum(0) - sizes
    rank = torch.empty_like(shuffled)
    rank[by_class] = torch.arange(len(shuffled)) - starts[shuffled[by_class]]
    return shuffle[torch.argsort(rank * num_classes + class_order[shuffled])[:count]]
