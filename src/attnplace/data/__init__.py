"""Datasets held in memory as uint8 tensors, served by a LightningDataModule with batched augmentation.

    dm = AttnDataModule("imagefolder", "/work/shared/data/cifar10-jpeg.tar.gz", val_size=5000, seed=0)
    splits = load_dataset("cifar10", "data/")        # Splits: train_x/_y, test_x/_y, class_names, mean, std
"""

from .augment import AUGMENTS
from .datamodule import AttnDataModule
from .load import load_dataset
from .readers import DATASETS
from .splits import Splits

__all__ = ["AUGMENTS", "AttnDataModule", "DATASETS", "Splits", "load_dataset"]
