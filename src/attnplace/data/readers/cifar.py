"""CIFAR-10 and CIFAR-100 from torchvision's on-disk layout (the python pickles), read without torchvision.

torchvision's CIFAR classes md5-check every batch file, which rejects any re-written copy (small test
fixtures included), so the pickles are read here. When the folder is missing, torchvision's downloader
fetches and extracts the official archive, or finds it already placed in `path`.
"""

import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.utils import download_and_extract_archive

from ...errors import UserError
from ..splits import Splits
from .registry import DATASETS, Source, file_digest


@dataclass(frozen=True)
class CifarSpec:
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    url: str
    md5: str


SPECS = {
    "cifar10": CifarSpec("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                         "batches.meta", b"labels", b"label_names",
                         "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         "c58f30108f718f92721af3b95e74349a"),
    "cifar100": CifarSpec("cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names",
                          "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                          "eb9058c3a382ffc7106e4002c42a8d85"),
}

DOWNLOAD_TIMEOUT_S = 20  # a black-holed network must not hang a run (or a test) forever


@DATASETS.register("cifar10")
def cifar10(path: Path | None) -> Source:
    """CIFAR-10 (10 classes, 32×32 RGB): <path>/cifar-10-batches-py/, downloaded when missing and reachable."""
    return _cifar("cifar10", path)


@DATASETS.register("cifar100")
def cifar100(path: Path | None) -> Source:
    """CIFAR-100 (100 fine classes, 32×32 RGB): <path>/cifar-100-python/, downloaded when missing and reachable."""
    return _cifar("cifar100", path)


def _cifar(name: str, path: Path | None) -> Source:
    spec = SPECS[name]
    if path is None:
        raise UserError(f"dataset {name!r} needs a path: a data dir holding {spec.folder}/")
    folder = _locate(name, spec, Path(path).expanduser().resolve())
    files = [folder / f for f in (*spec.train, spec.test, spec.meta)]
    for file in files:
        if not file.is_file():
            raise UserError(f"dataset {name!r}: {file} is missing; {spec.folder}/ should hold "
                            f"{', '.join(f.name for f in files)}")
    return Source(name, folder, lambda: file_digest(files), lambda: _read(spec, folder))


def _locate(name: str, spec: CifarSpec, path: Path) -> Path:
    """The extracted folder: `path` itself, `path/<folder>`, or fetched there by torchvision's downloader."""
    if path.name == spec.folder and path.is_dir():
        return path
    if path.is_file():
        raise UserError(f"dataset {name!r}: {path} is a file; give the data dir that holds {spec.folder}/ "
                        f"(or {spec.url.rsplit('/', 1)[1]}, which is then extracted there)")
    if not (path / spec.folder).is_dir():
        _download(name, spec, path)
    return path / spec.folder


def _download(name: str, spec: CifarSpec, path: Path) -> None:
    existed = path.exists()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        download_and_extract_archive(spec.url, str(path), md5=spec.md5)
    except Exception as exc:  # URLError, timeouts, md5 mismatch, a bad archive: all end the same way
        if not existed and path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # don't leave behind a folder the user may have only mistyped
        archive = spec.url.rsplit("/", 1)[1]
        raise UserError(f"dataset {name!r}: no {spec.folder}/ in {path} and download of {spec.url} failed "
                        f"({type(exc).__name__}: {exc}); put {archive} or its extracted {spec.folder}/ "
                        f"in {path}") from None
    finally:
        socket.setdefaulttimeout(previous)


def _read(spec: CifarSpec, folder: Path) -> Splits:
    train = [_read_batch(folder / f, spec.label_key) for f in spec.train]
    test_x, test_y = _read_batch(folder / spec.test, spec.label_key)
    names = _unpickle(folder / spec.meta).get(spec.names_key)
    if not isinstance(names, list):
        raise UserError(f"{folder / spec.meta}: no {spec.names_key.decode()!r} list of class names")
    return Splits(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y,
                  [n.decode() if isinstance(n, bytes) else str(n) for n in names])


def _read_batch(file: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickle: `data` N×3072 uint8 rows (1024 R, then G, then B, each row-major) -> N×3×32×32."""
    batch = _unpickle(file)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{file}: 'data' should be an N×3072 uint8 array, "
                        f"got {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    if labels is None or len(labels) != len(data):
        raise UserError(f"{file}: {len(data)} images but {'no' if labels is None else len(labels)} "
                        f"{label_key.decode()!r} labels")
    return torch.tensor(data).view(-1, 3, 32, 32), torch.as_tensor(np.asarray(labels), dtype=torch.int64)


class _NumpyOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a downloaded pickle must not be able to run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(file: Path) -> dict:
    try:
        with open(file, "rb") as f:
            obj = _NumpyOnly(f, encoding="bytes").load()
    except Exception as exc:  # truncated, garbage or hostile bytes all mean "not a CIFAR pickle"
        raise UserError(f"{file}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{file}: not a readable CIFAR pickle (holds a {type(obj).__name__}, not a dict)")
    return obj
