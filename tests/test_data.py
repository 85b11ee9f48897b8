"""The data layer: readers on tiny files written here (and the shared CIFAR-10 JPEG tarball), the cache,
the split carve, batched augmentation, the loader and the DataModule."""

import dataclasses
import gzip
import io
import math
import pickle
import struct
import tarfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from attnplace.data import AUGMENTS, AttnDataModule, load_dataset
from attnplace.data.readers import cifar
from attnplace.data.augment import crop_and_flip, crop_flip, normalizer
from attnplace.data.batches import BatchLoader
from attnplace.data.subsets import carve
from attnplace.errors import UserError

from conftest import SHARED_AT_START, SHARED_TARBALL, shared_folder_state

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache folder, so no test sees another's cache."""
    monkeypatch.setenv("ATTNPLACE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---- writers of tiny datasets in the real on-disk layouts ----

def write_cifar(root: Path, hundred: bool = False, per_batch: int = 4, seed: int = 0) -> dict:
    """torchvision's CIFAR layout with random pixels; returns the raw rows and labels written."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key, names_key = (b"fine_labels", b"fine_label_names") if hundred else (b"labels", b"label_names")
    num_classes = 100 if hundred else 10
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    rows = {}
    for name in [*train_files, "test" if hundred else "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, num_classes, per_batch).tolist()
        # protocol 2 like the original python-2 era files for CIFAR-10, the current default for CIFAR-100
        (folder / name).write_bytes(pickle.dumps({b"data": data, label_key: labels}, protocol=2 if not hundred else 5))
        rows[name] = (data, labels)
    names = [f"c{i}".encode() for i in range(num_classes)]
    (folder / ("meta" if hundred else "batches.meta")).write_bytes(pickle.dumps({names_key: names}))
    return rows


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(folder: Path, gz: bool, n_train: int = 6, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def image_tree(splits=("train", "test"), classes=("cat", "ant"), per_class=2, size=(5, 4), gray=False):
    """{relative path: (png bytes, pixel array)}; every image differs (random noise)."""
    rng = np.random.default_rng(2)
    shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
    tree = {}
    for split in splits:
        for cls in classes:
            for i in range(per_class):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                tree[f"{split}/{cls}/{i:03d}.png"] = (png(pixels), pixels)
    return tree


def write_tree(root: Path, tree: dict) -> Path:
    for rel, (data, _) in tree.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def write_tar(file: Path, tree: dict, wrap: str = "") -> Path:
    with tarfile.open(file, "w:gz") as tar:
        for rel, (data, _) in tree.items():
            info = tarfile.TarInfo(f"{wrap}{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return file


def chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1) if pixels.ndim == 3 else torch.from_numpy(pixels)[None]


def test_shared_cifar10_jpeg_loads_whole(shared_cifar):
    splits, _, _ = shared_cifar
    assert splits.train_x.shape == (50000, 3, 32, 32) and splits.test_x.shape == (10000, 3, 32, 32)
    assert splits.train_x.dtype == torch.uint8 and splits.val_x is None
    assert splits.class_names == CIFAR10_CLASSES
    assert torch.bincount(splits.train_y).tolist() == [5000] * 10
    assert torch.bincount(splits.test_y).tolist() == [1000] * 10
    # CIFAR-10's well-known channel means (JPEG shifts them slightly)
    assert np.allclose(splits.mean, (0.4914, 0.4822, 0.4465), atol=0.005)
    assert np.allclose(splits.std, (0.2470, 0.2435, 0.2616), atol=0.005)


def test_shared_cifar10_second_load_hits_cache(shared_cifar, monkeypatch):
    splits, cache, first = shared_cifar
    files = list(cache.glob("imagefolder-*.pt"))
    assert len(files) == 1 and files[0].stat().st_size > 50000 * 3072
    assert shared_folder_state() == SHARED_AT_START, "wrote into the read-only shared folder"
    monkeypatch.setenv("ATTNPLACE_CACHE", str(cache))
    start = time.perf_counter()
    again = load_dataset("imagefolder", SHARED_TARBALL)
    assert time.perf_counter() - start < max(3.0, first / 2)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(again, field), getattr(splits, field))
    assert again.class_names == splits.class_names and again.mean == splits.mean


# ---- readers ----

def test_cifar10_pickles_exact_pixels_and_labels(tmp_path):
    rows = write_cifar(tmp_path)
    splits = load_dataset("cifar10", tmp_path)
    assert splits.train_x.shape == (20, 3, 32, 32) and splits.test_x.shape == (4, 3, 32, 32)
    assert splits.class_names == [f"c{i}" for i in range(10)]
    data, labels = rows["data_batch_2"]  # images 4..7 of the training split
    # a row is 1024 red, 1024 green, 1024 blue bytes, each plane row-major: green pixel (row 5, col 7)
    assert splits.train_x[4 + 1, 1, 5, 7] == data[1, 1024 + 5 * 32 + 7]
    assert torch.equal(splits.train_x[4:8], torch.from_numpy(data).view(4, 3, 32, 32))
    assert splits.train_y[4:8].tolist() == labels
    assert torch.equal(splits.test_x, torch.from_numpy(rows["test_batch"][0]).view(4, 3, 32, 32))


def test_cifar100_pickles(tmp_path):
    rows = write_cifar(tmp_path, hundred=True)
    splits = load_dataset("cifar100", tmp_path / "cifar-100-python")  # the extracted folder itself works too
    assert splits.num_classes == 100 and splits.class_names[99] == "c99"
    assert torch.equal(splits.train_x, torch.from_numpy(rows["train"][0]).view(4, 3, 32, 32))
    assert splits.train_y.tolist() == rows["train"][1] and splits.test_y.tolist() == rows["test"][1]


@pytest.mark.parametrize("torchvision_layout", [True, False])
def test_fashion_mnist_idx(tmp_path, torchvision_layout):
    folder = tmp_path / "FashionMNIST" / "raw" if torchvision_layout else tmp_path
    arrays = write_idx(folder, gz=torchvision_layout)
    splits = load_dataset("fashion-mnist", tmp_path)
    assert splits.train_x.shape == (6, 1, 28, 28) and splits.image_size == (28, 28) and splits.in_channels == 1
    assert torch.equal(splits.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(splits.test_x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert splits.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert splits.class_names[0] == "T-shirt/top" and splits.num_classes == 10


def test_imagefolder_directory(tmp_path):
    tree = image_tree()
    splits = load_dataset("imagefolder", write_tree(tmp_path / "data", tree))
    assert splits.class_names == ["ant", "cat"]  # sorted
    assert splits.train_x.shape == (4, 3, 4, 5) and splits.test_x.shape == (4, 3, 4, 5)
    assert splits.train_y.tolist() == [0, 0, 1, 1] and splits.val_x is None
    assert torch.equal(splits.train_x[2], chw(tree["train/cat/000.png"][1]))
    assert torch.equal(splits.test_x[1], chw(tree["test/ant/001.png"][1]))


def test_imagefolder_tarball_with_wrapper_val_and_grayscale(tmp_path):
    tree = image_tree(splits=("train", "val", "test"), gray=True)
    splits = load_dataset("imagefolder", write_tar(tmp_path / "d.tar.gz", tree, wrap="d/"))
    assert splits.in_channels == 1 and splits.val_x.shape == (4, 1, 4, 5)
    assert torch.equal(splits.val_x[3], chw(tree["val/cat/001.png"][1]))
    assert splits.val_y.tolist() == [0, 0, 1, 1]


def test_imagefolder_ignores_non_images_and_hidden_files(tmp_path, cache_dir):
    root = write_tree(tmp_path / "d", image_tree())
    expected = load_dataset("imagefolder", root)
    (root / "README.txt").write_text("not an image")
    (root / "train/ant/.DS_Store").write_bytes(b"junk")
    (root / "train/ant/._000.png").write_bytes(b"macOS fork, not a png")
    (root / "train/.hidden").mkdir()
    (root / "train/.hidden/x.png").write_bytes(b"junk")
    assert torch.equal(load_dataset("imagefolder", root).train_x, expected.train_x)
    assert len(list(cache_dir.glob("*.pt"))) == 1  # same files decoded, same cache key


def test_imagefolder_test_class_missing_from_train(tmp_path):
    tree = image_tree(classes=("ant",)) | image_tree(splits=("test",), classes=("bee",))
    with pytest.raises(UserError, match="'bee'"):
        load_dataset("imagefolder", write_tree(tmp_path / "d", tree))


def test_imagefolder_sizes_must_match(tmp_path):
    tree = image_tree()
    tree["test/cat/999.png"] = (png(np.zeros((6, 6, 3), np.uint8)), None)
    with pytest.raises(UserError, match="test/cat/999.png is 6×6"):
        load_dataset("imagefolder", write_tree(tmp_path / "d", tree))


# ---- broken or missing inputs: one-line UserErrors that name the file ----

def test_truncated_tarball(tmp_path):
    archive = write_tar(tmp_path / "d.tar.gz", image_tree(per_class=20, size=(16, 16)))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match=r"d\.tar\.gz: corrupt or truncated archive"):
        load_dataset("imagefolder", archive)


def test_corrupt_image(tmp_path):
    tree = image_tree()
    tree["train/ant/bad.png"] = (b"\x89PNG not really", None)
    with pytest.raises(UserError, match=r"train/ant/bad\.png: cannot decode image"):
        load_dataset("imagefolder", write_tree(tmp_path / "d", tree))


def test_corrupt_jpeg_in_tarball(tmp_path):
    tree = image_tree()
    tree["train/ant/bad.jpg"] = (b"\xff\xd8\xff\xe0 truncated", None)
    with pytest.raises(UserError, match=r"d\.tar\.gz: train/ant/bad\.jpg: cannot decode image"):
        load_dataset("imagefolder", write_tar(tmp_path / "d.tar.gz", tree))


@pytest.mark.parametrize("content", [b"garbage", pickle.dumps({b"data": [1, 2, 3]})[:-5]])
def test_corrupt_pickle(tmp_path, content):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(content)
    with pytest.raises(UserError, match="data_batch_3: not a readable CIFAR pickle"):
        load_dataset("cifar10", tmp_path)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(UserError, match="test_batch: .*refusing to load builtins.print"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("damage, message", [(lambda raw: b"\x00\x00\x09\x03" + raw[4:], "not an IDX file"),
                                             (lambda raw: raw[:-10], "header says 6×28×28 bytes")])
def test_bad_idx(tmp_path, damage, message):
    write_idx(tmp_path, gz=False)
    file = tmp_path / "train-images-idx3-ubyte"
    file.write_bytes(damage(file.read_bytes()))
    with pytest.raises(UserError, match=f"train-images-idx3-ubyte: {message}"):
        load_dataset("fashion-mnist", tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / 'nope'} does not exist; expected .*train/<class>"):
        load_dataset("imagefolder", tmp_path / "nope")


def test_cifar_path_must_be_a_folder(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(UserError, match="cifar-10-python.tar.gz is a file; give the data dir"):
        load_dataset("cifar10", tmp_path / "cifar-10-python.tar.gz")


def test_missing_cifar10_without_network_says_where_to_put_it(tmp_path, monkeypatch):
    # a closed local port: the real download path fails at once, and no test ever downloads 170 MB
    spec = dataclasses.replace(cifar.SPECS["cifar10"], url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setitem(cifar.SPECS, "cifar10", spec)
    start = time.perf_counter()
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", tmp_path / "data")
    assert time.perf_counter() - start < 30
    message = str(caught.value)
    assert "\n" not in message and spec.url in message
    assert f"put cifar-10-python.tar.gz or its extracted cifar-10-batches-py/ in {tmp_path / 'data'}" in message
    assert not (tmp_path / "data").exists()


def test_unknown_names():
    with pytest.raises(UserError, match="unknown dataset 'cifar11'; valid: cifar10, cifar100, fashion-mnist"):
        AttnDataModule("cifar11")
    with pytest.raises(UserError, match="unknown augment 'mixup'; valid: crop_flip, none"):
        AttnDataModule("synthetic", augment="mixup")
    with pytest.raises(UserError, match="unknown synthetic option 'size'"):
        load_dataset("synthetic", size=3)


# ---- cache ----

def test_corrupt_cache_is_rebuilt(tmp_path, cache_dir):
    write_cifar(tmp_path)
    first = load_dataset("cifar10", tmp_path)
    [file] = cache_dir.glob("cifar10-*.pt")
    file.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring unreadable dataset cache"):
        again = load_dataset("cifar10", tmp_path)
    assert torch.equal(again.train_x, first.train_x)
    assert torch.load(file, weights_only=True)["train_x"].shape == (20, 3, 32, 32)  # rewritten whole


def test_cache_beside_data_unless_read_only(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTNPLACE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    writable = write_tree(tmp_path / "rw" / "d", image_tree())
    load_dataset("imagefolder", writable)
    assert len(list((tmp_path / "rw" / "d.attnplace-cache").glob("imagefolder-*.pt"))) == 1
    read_only = write_tree(tmp_path / "ro" / "d", image_tree())
    (tmp_path / "ro").chmod(0o555)
    try:
        load_dataset("imagefolder", read_only)
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert not (tmp_path / "ro" / "d.attnplace-cache").exists()
    assert len(list((tmp_path / "home" / ".cache" / "attnplace").glob("imagefolder-*.pt"))) == 1


def test_changed_image_folder_is_not_served_from_cache(tmp_path, cache_dir):
    root = write_tree(tmp_path / "d", image_tree())
    assert load_dataset("imagefolder", root).train_x[0].sum() > 0
    (root / "train/ant/000.png").write_bytes(png(np.zeros((4, 5, 3), np.uint8)))
    assert load_dataset("imagefolder", root).train_x[0].sum() == 0
    assert len(list(cache_dir.glob("*.pt"))) == 2


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
