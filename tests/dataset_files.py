"""Tiny datasets written in the real on-disk layouts (CIFAR pickles, IDX, image folders and tarballs), and the
per-test cache folder, for the data tests. `cache_dir` is an autouse fixture: importing it isolates each test's
cache."""

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


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
