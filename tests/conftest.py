"""Fixtures shared by several test files."""

import time
from pathlib import Path

import pytest

from attnplace.data import load_dataset

# ../shared/data beside the project root: read-only real data for tests (see its README).
SHARED_TARBALL = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def shared_cifar(tmp_path_factory):
    """The shared CIFAR-10 (JPEG) tarball decoded once per session: (splits, cache dir, seconds taken)."""
    if not SHARED_TARBALL.is_file():
        pytest.skip(f"shared CIFAR-10 (JPEG) tarball not found at {SHARED_TARBALL}")
    cache = tmp_path_factory.mktemp("shared-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNPLACE_CACHE", str(cache))
        start = time.perf_counter()
        splits = load_dataset("imagefolder", SHARED_TARBALL)
        return splits, cache, time.perf_counter() - start


def comparable(history: list[dict]) -> list[dict]:
    """A record's history without its wall-clock fields, which differ between two identical runs."""
    return [{k: v for k, v in entry.items() if k != "train_seconds"} for entry in history]
