"""`load_dataset`: a registered reader, behind the content-keyed cache."""

from pathlib import Path

from . import cache
from .readers import DATASETS, Source
from .splits import Splits


_kept: dict[tuple[str, str], Splits] = {}  # (name, fingerprint) -> splits, at most one, once `keep_last_dataset()`
_keeping = False


def keep_last_dataset() -> None:
    """From now on hold the last dataset loaded in memory: a grid worker's later runs of the same data skip
    even the cache file. One dataset at most; runs may share it, since nothing writes into its tensors."""
    global _keeping
    _keeping = True


def load_dataset(name: str, path: str | Path | None = None, **options) -> Splits:
    """Dataset `name` at `path`, decoded into memory; the first load writes the cache, later ones read it."""
    source = _locate(name, path, options)
    if source.fingerprint is None:
        return source.read()
    key = (name, source.fingerprint())
    if key in _kept:
        return _kept[key]
    if not ((file := cache.find(*key, source.location)) and (splits := cache.load(file))):
        splits = source.read()
        cache.store(splits, *key, source.location)
    if _keeping:
        _kept.clear()
        _kept[key] = splits
    return splits


def dataset_fingerprint(name: str, path: str | Path | None = None, **options) -> str:
    """`Splits.fingerprint` of dataset `name` at `path`: loaded as `load_dataset` does, so a grid worker that
    checks it before a run pays for the load only once (`keep_last_dataset`)."""
    return load_dataset(name, path, **options).fingerprint


def prepare_dataset(name: str, path: str | Path | None = None, **options) -> None:
    """Download and decode into the cache if that has not happened yet; cheap (a hash) once it has."""
    source = _locate(name, path, options)
    if source.fingerprint is None or not cache.find(name, source.fingerprint(), source.location):
        load_dataset(name, path, **options)


def _locate(name: str, path: str | Path | None, options: dict) -> Source:
    return DATASETS.get(name)(None if path is None else Path(path), **options)
