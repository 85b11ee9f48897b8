"""The data layer after reading: the split carve, batched augmentation, the loader and the DataModule."""

import math

import lightning as L
import pytest
import torch

from attnplace.data import AUGMENTS, AttnDataModule
from attnplace.data.augment import crop_and_flip, crop_flip, normalizer
from attnplace.data.batches import BatchLoader
from attnplace.data.subsets import carve
from attnplace.errors import UserError

from dataset_files import cache_dir, image_tree, write_tree  # noqa: F401 (cache_dir: an autouse fixture)


# ---- split carve ----

def test_val_carve_deterministic_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    train, val = carve(labels, 100, None, seed=3)
    assert torch.equal(val, carve(labels, 100, None, seed=3)[1])
    assert not torch.equal(val, carve(labels, 100, None, seed=4)[1])
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    assert len(train) == 900 and not set(train.tolist()) & set(val.tolist())
    uneven = carve(labels, 15, None, seed=0)[1]
    assert sorted(torch.bincount(labels[uneven], minlength=10).tolist()) == [1] * 5 + [2] * 5


def test_train_subset_balanced_disjoint_and_independent_of_val():
    labels = torch.arange(1000) % 10
    train, val = carve(labels, 100, 200, seed=0)
    assert len(train) == 200 and torch.bincount(labels[train]).tolist() == [20] * 10
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(val, carve(labels, 100, None, seed=0)[1])


@pytest.mark.parametrize("val_size, subset, message", [(-1, None, "val_size=-1"), (1000, None, "val_size=1000"),
                                                       (100, 901, "train_subset=901 .* 1 to 900"),
                                                       (0, 0, "train_subset=0")])
def test_carve_errors(val_size, subset, message):
    with pytest.raises(UserError, match=message):
        carve(torch.arange(1000) % 10, val_size, subset, seed=0)


# ---- augmentation and loader ----

def test_crop_flip_shape_dtype_and_flip_exactness():
    images = torch.randint(0, 256, (8, 3, 6, 7), dtype=torch.uint8)
    out = crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    zeros, ones = torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.bool)
    assert torch.equal(crop_and_flip(images, zeros, zeros, ones, pad=0), images.flip(-1))
    assert torch.equal(crop_and_flip(images, zeros, zeros, ~ones, pad=0), images)
    seeded = crop_flip(images, torch.Generator().manual_seed(1), pad=0)
    flipped = [torch.equal(seeded[i], images[i].flip(-1)) for i in range(8)]
    assert all(flipped[i] or torch.equal(seeded[i], images[i]) for i in range(8)) and 0 < sum(flipped) < 8


def test_every_crop_is_a_translation_of_at_most_pad():
    image = torch.randint(1, 256, (3, 10, 12), dtype=torch.uint8)  # no zeros, so padding shows
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    candidates = {(dy, dx, f): (padded[:, 4 + dy:14 + dy, 4 + dx:16 + dx].flip(-1) if f else
                                padded[:, 4 + dy:14 + dy, 4 + dx:16 + dx])
                  for dy in range(-4, 5) for dx in range(-4, 5) for f in (False, True)}
    out = crop_flip(image.expand(200, -1, -1, -1).contiguous(), torch.Generator().manual_seed(0), pad=4)
    found = [[key for key, c in candidates.items() if torch.equal(c, o)] for o in out]
    assert all(len(keys) == 1 for keys in found)
    assert len({keys[0] for keys in found}) > 50  # offsets and flips actually vary


def test_loader_without_augment_yields_the_normalized_images():
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(50)  # label = index, so each training batch says which images it holds
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    expected = (images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    train = BatchLoader(images, labels, mean, std, 16, train=True, augment=AUGMENTS.get("none"))
    batches = list(train)
    assert len(batches) == len(train) == 3  # 50 // 16, last partial batch dropped
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.allclose(x.double(), expected[y], atol=1e-5)
    assert sorted(torch.cat([y for _, y in batches]).tolist()) != list(range(48))  # shuffled, 2 left out
    evaluation = list(BatchLoader(images, labels, mean, std, 16))
    assert [len(y) for _, y in evaluation] == [16, 16, 16, 2]
    assert torch.allclose(torch.cat([x for x, _ in evaluation]).double(), expected, atol=1e-5)
    assert torch.equal(torch.cat([y for _, y in evaluation]), labels)


def test_loader_batches_follow_seed_and_epoch():
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    epoch = [0]

    def batches(seed):
        loader = BatchLoader(images, torch.arange(64), (0.5,) * 3, (0.25,) * 3, 16, train=True,
                             augment=crop_flip, seed=seed, epoch=lambda: epoch[0])
        return torch.cat([x for x, _ in loader])

    first = batches(0)
    assert torch.equal(first, batches(0))
    assert not torch.equal(first, batches(1))
    epoch[0] = 1
    assert not torch.equal(first, batches(0))


def test_normalizer_matches_definition():
    images = torch.randint(0, 256, (2, 2, 3, 3), dtype=torch.uint8)
    out = normalizer((0.3, 0.6), (0.1, 0.2))(images)
    assert torch.allclose(out[:, 1], (images[:, 1].float() / 255 - 0.6) / 0.2, atol=1e-5)


# ---- DataModule ----

def test_datamodule_attributes_and_loader_lengths():
    dm = AttnDataModule("synthetic", val_size=100, train_subset=500, batch_size=64, eval_batch_size=128,
                        synthetic={"num_train": 1000, "num_test": 300, "num_classes": 5, "image_size": 12,
                                   "channels": 1})
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.num_train) == (5, 1, (12, 12), 500)
    assert dm.class_names == [f"class{i}" for i in range(5)] and len(dm.mean) == len(dm.std) == 1
    assert len(dm.train_dataloader()) == 500 // 64
    assert len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == math.ceil(300 / 128)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 12, 12) and x.dtype == torch.float32 and y.max() < 5


def test_datamodule_uses_shipped_val_and_no_val_when_zero(tmp_path):
    root = write_tree(tmp_path / "d", image_tree(splits=("train", "val", "test"), per_class=3))
    dm = AttnDataModule("imagefolder", root, val_size=5000, batch_size=2)
    dm.setup()
    assert dm.num_train == 6 and sum(len(y) for _, y in dm.val_dataloader()) == 6
    dm = AttnDataModule("imagefolder", write_tree(tmp_path / "e", image_tree(per_class=3)), val_size=0, batch_size=2)
    dm.setup()
    assert dm.num_train == 6 and dm.val_dataloader() == []


def test_resumed_fit_sees_the_same_batches(tmp_path):
    """The training loader's epoch comes from the trainer, so resuming from an epoch-end checkpoint
    replays exactly the batches (and so the weights) of an uninterrupted run."""

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3 * 8 * 8, 4)
            self.sums = []

        def training_step(self, batch, _):
            x, y = batch
            self.sums.append(x.sum().item())
            return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(max_epochs, ckpt_path=None, root=None):
        torch.manual_seed(0)
        model = Recorder()
        dm = AttnDataModule("synthetic", val_size=0, batch_size=16,
                            synthetic={"num_train": 64, "num_test": 16, "num_classes": 4, "image_size": 8})
        L.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=root is not None,
                  default_root_dir=root).fit(model, dm, ckpt_path=ckpt_path)
        return model

    whole = fit(2)
    fit(1, root=tmp_path)
    [checkpoint] = tmp_path.rglob("*.ckpt")
    resumed = fit(2, ckpt_path=checkpoint)
    assert len(whole.sums) == 8 and resumed.sums == whole.sums[4:]
    assert whole.sums[:4] != whole.sums[4:]
    assert torch.equal(resumed.layer.weight, whole.layer.weight)
