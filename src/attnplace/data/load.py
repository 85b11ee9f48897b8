"""`load_dataset`: a registered reader, behind the content-keyed cache."""

from pathlib import Path

from . import cache
from . import cifar, idx, imagefolder, synthetic  # noqa: F401  (registration)
from .sources import DATASETS, Source
from .splits import Splits


def load_dataset(name: str, path: str | Path | None = None, **options) -> Splits:
    """Dataset `name` at `path`, decoded into memory; the first load writes the cache, later ones read it."""
    source = _locate(name, path, options)
    if source.fingerprint is None:
        return source.read()
    fingerprint = source.fingerprint()
    if (file := cache.find(name, fingerprint, source.location)) and (splits := cache.load(file)):
        return splits
    splits = source.read()
    cache.store(splits, name, fingerprint, source.location)
    return splits


def prepare_dataset(name: str, path: str | Path | None = None, **options) -> None:
    """Download and decode into the cache if that has not happened yet; cheap (a hash) once it has."""
    source = _locate(name, path, options)
    if source.fingerprint is None or not cache.find(name, source.fingerprint(), source.location):
        load_dataset(name, path, **options)


def _locate(name: str, path: str | Path | None, options: dict) -> Source:
    return DATASETS.get(name)(None if path is None else Path(path), **options)
