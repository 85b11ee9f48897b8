"""Readers on tiny files written here (and the shared CIFAR-10 JPEG tarball): exact pixels and labels, one-line
errors for broken or missing inputs, and the cache."""

import dataclasses
import pickle
import time

import numpy as np
import pytest
import torch

from attnplace.data import AttnDataModule, load_dataset
from attnplace.data.readers import cifar
from attnplace.errors import UserError

from conftest import SHARED_AT_START, SHARED_TARBALL, shared_folder_state
from dataset_files import (  # noqa: F401 (cache_dir: an autouse fixture)
    cache_dir, chw, image_tree, png, write_cifar, write_idx, write_tar, write_tree,
)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


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
