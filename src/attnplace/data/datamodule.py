"""`AttnDataModule`: a dataset by name, held in memory (on the GPU when training there), in batches."""

from pathlib import Path

import lightning as L
import torch

from ..errors import UserError, choices_error
from .augment import AUGMENTS
from .batches import BatchLoader
from .load import load_dataset, prepare_dataset
from .readers import DATASETS
from .subsets import carve


class AttnDataModule(L.LightningDataModule):
    """Serves a registered dataset with a seeded, class-balanced validation carve and batched augmentation.

    After `setup()`: `num_classes`, `in_channels`, `image_size` (H, W), `class_names`, `num_train` (after
    `train_subset`), `mean` and `std` (per channel, 0..1 scale, from the shipped training split), and the
    dataset's content `fingerprint` (`Splits.fingerprint`).

    `val_size` images are carved from train (0: no validation); a dataset that ships a `val/` split uses it
    instead and ignores `val_size`. The training loader's shuffle and augmentation are seeded by
    (`seed`, `trainer.current_epoch`), so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, name: str, path: str | Path | None = None, val_size: int = 5000,
                 train_subset: int | None = None, augment: str = "crop_flip", batch_size: int = 128,
                 eval_batch_size: int = 1000, seed: int = 0, synthetic: dict | None = None):
        super().__init__()
        if name not in DATASETS:
            raise choices_error("dataset", name, DATASETS.names())
        if augment not in AUGMENTS:
            raise choices_error("augment", augment, AUGMENTS.names())
        if synthetic is not None and name != "synthetic":
            raise UserError(f"synthetic options are given but the dataset is {name!r}; "
                            f"they apply only to dataset 'synthetic'")
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{key}={value!r} must be a positive integer")
        self.save_hyperparameters()
        self.name, self.path, self.options = name, path, synthetic or {}
        self.val_size, self.train_subset, self.seed = val_size, train_subset, seed
        self.augment, self.batch_size, self.eval_batch_size = AUGMENTS.get(augment), batch_size, eval_batch_size
        self._splits = None

    def prepare_data(self):
        """Download and decode into the cache once (Lightning runs this on one process only)."""
        prepare_dataset(self.name, self.path, **self.options)

    def setup(self, stage: str | None = None):
        """Load once (from the cache), carve the splits, and put them on the trainer's GPU if there is one.
        Safe to call again, e.g. by `Trainer.fit` after a manual call that read `num_classes`."""
        if self._splits is None:
            self._load()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device.type == "cuda":  # once, so that an epoch makes no host-to-device copies of images
            self._splits = {split: (x.to(device), y.to(device)) for split, (x, y) in self._splits.items()}

    def _load(self):
        data = load_dataset(self.name, self.path, **self.options)
        if data.val_x is not None:
            train, val = carve(data.train_y, 0, self.train_subset, self.seed)
            splits = {"val": (data.val_x, data.val_y)}
        else:
            train, val = carve(data.train_y, self.val_size, self.train_subset, self.seed)
            splits = {"val": (data.train_x[val], data.train_y[val])} if len(val) else {}
        self._splits = {"train": (data.train_x[train], data.train_y[train]), **splits,
                        "test": (data.test_x, data.test_y)}
        self.num_classes, self.in_channels, self.image_size = data.num_classes, data.in_channels, data.image_size
        self.class_names, self.mean, self.std = data.class_names, data.mean, data.std
        self.fingerprint = data.fingerprint
        self.num_train = len(train)

    def train_dataloader(self) -> BatchLoader:
        return BatchLoader(*self._splits["train"], self.mean, self.std, self.batch_size, train=True,
                           augment=self.augment, seed=self.seed, epoch=self._epoch)

    def val_dataloader(self) -> BatchLoader | list:
        """An empty list when there is no validation split: Lightning then skips validation."""
        return self._eval_loader("val") if "val" in self._splits else []

    def test_dataloader(self) -> BatchLoader:
        return self._eval_loader("test")

    def _eval_loader(self, split: str) -> BatchLoader:
        return BatchLoader(*self._splits[split], self.mean, self.std, self.eval_batch_size)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0
