"""Fixtures shared by several test files."""

import csv
import time
from pathlib import Path

import pytest

from attnplace.data import load_dataset
from attnplace.grid import local
from record_fixtures import write_results

# ../shared/data beside the project root: read-only real data for tests (see its README).
SHARED_TARBALL = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpeg.tar.gz"


def shared_folder_state() -> dict[str, int]:
    """Every path under the shared data folder with its modification time, to prove nothing wrote there."""
    return {str(p): p.stat().st_mtime_ns for p in SHARED_TARBALL.parent.rglob("*")}


SHARED_AT_START = shared_folder_state() if SHARED_TARBALL.is_file() else {}


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


def logged_rows(run_dir: Path) -> list[dict]:
    """metrics.csv, Lightning's per-step log of a run, as a user reads it."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def wandb_records(run_dir: Path, wait_s: float = 60.0) -> list:
    """Every record of the offline run's `.wandb` file, once its `exit` record is on disk: `run.finish()` returns
    before wandb's service process has written the last records, and on a loaded machine the file can still lack
    them (its final summary, say) when the test reads it."""
    deadline = time.monotonic() + wait_s
    while True:
        records = list(_records_on_disk(run_dir))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _records_on_disk(run_dir: Path):
    """Every record the offline run's `.wandb` file holds so far, decoded with wandb's own protobuf classes.

    The file is a LevelDB-style log (wandb 0.31 ships no Python reader): a 7-byte `:W&B` header, then
    32 KiB blocks of chunks, each `crc32c(4) length(2, LE) type(1)` + payload; type 1 = whole record,
    2/3/4 = first/middle/last piece of one; a block tail shorter than a chunk header is padding.
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, pieces, block = path.read_bytes(), 7, [], 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or kind == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            return
        pieces.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record


@pytest.fixture
def results(tmp_path) -> Path:
    """A small grid of hand-written records (`record_fixtures.write_results`)."""
    return write_results(tmp_path)


@pytest.fixture
def workers_started(monkeypatch) -> list:
    """The worker processes that grids start in this test (one entry each: its GPU, None on a CPU)."""
    started, start = [], local.Worker.__init__

    def counted(self, gpu):
        started.append(gpu)
        start(self, gpu)

    monkeypatch.setattr(local.Worker, "__init__", counted)
    return started
