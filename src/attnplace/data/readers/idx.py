"""Fashion-MNIST from the IDX files it is distributed as, parsed here (big-endian magic, then dims).

Accepted layouts: torchvision's `<path>/FashionMNIST/raw/`, or a folder holding the four files directly
(`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`,
each optionally `.gz`). Debian's `dataset-fashion-mnist` package installs them in
/usr/share/datasets/fashion-mnist, the default `path`.
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import torch

from ...errors import UserError
from ..splits import Splits
from .registry import DATASETS, Source, file_digest, require_path

DEBIAN_PATH = Path("/usr/share/datasets/fashion-mnist")
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
LAYOUT = f"FashionMNIST/raw/ or a folder holding {', '.join(STEMS)} (each optionally .gz)"


@DATASETS.register("fashion-mnist")
def fashion_mnist(path: Path | None) -> Source:
    """Fashion-MNIST (10 classes, 28×28 grayscale) from its four IDX files (default: Debian's install dir)."""
    root = require_path("fashion-mnist", DEBIAN_PATH if path is None else path, LAYOUT)
    for folder in (root / "FashionMNIST" / "raw", root):
        files = [_find(folder, stem) for stem in STEMS]
        if all(files):
            return Source("fashion-mnist", folder, lambda: file_digest(files), lambda: _read(files))
    raise UserError(f"dataset 'fashion-mnist': {root} lacks the IDX files; expected {LAYOUT}")


def _find(folder: Path, stem: str) -> Path | None:
    return next((f for f in (folder / stem, folder / f"{stem}.gz") if f.is_file()), None)


def _read(files: list[Path]) -> Splits:
    train_x, train_y, test_x, test_y = (read_idx(f, ndim) for f, ndim in zip(files, (3, 1, 3, 1)))
    for images, labels, x, y in ((files[0], files[1], train_x, train_y), (files[2], files[3], test_x, test_y)):
        if len(x) != len(y):
            raise UserError(f"{labels}: {len(y)} labels for the {len(x)} images in {images.name}")
    return Splits(train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long(), list(CLASSES))


def read_idx(file: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes with `ndim` dimensions: magic 00 00 08 <ndim>, ndim big-endian
    uint32 sizes, then the data, exactly that long."""
    raw = _read_bytes(file)
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes([0, 0, 8, ndim]):
        raise UserError(f"{file}: not an IDX file of {ndim}-d unsigned bytes (magic {raw[:4].hex() or 'missing'}, "
                        f"expected {bytes([0, 0, 8, ndim]).hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + math.prod(dims):
        raise UserError(f"{file}: header says {'×'.join(map(str, dims))} bytes of data, "
                        f"file holds {len(raw) - header}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).view(dims)


def _read_bytes(file: Path) -> bytes:
    if file.suffix != ".gz":
        return file.read_bytes()
    try:
        return gzip.decompress(file.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{file}: corrupt or truncated gzip ({exc})") from None
