"""Pack result folders into one .tar.gz to carry them off a machine: everything except the checkpoints of runs
that completed (their record.json holds all a report needs). A run not yet completed keeps its last.ckpt, so
that, unpacked at the repository root, the grid resumes it.

    python benchmarks/pack.py ARCHIVE.tar.gz FOLDER [FOLDER ...]
"""

import sys
import tarfile
from pathlib import Path

from attnplace.atomic import atomic_write
from attnplace.run.record import read_record


def wanted(file: Path) -> bool:
    return file.suffix != ".ckpt" or (read_record(file.parent / "record.json") or {}).get("status") != "completed"


def pack(archive: Path, folders: list[Path]) -> None:
    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for folder in folders:
                for file in sorted(p for p in folder.rglob("*") if p.is_file() and wanted(p)):
                    tar.add(file)

    atomic_write(archive, write)
    print(f"packed {', '.join(map(str, folders))} into {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    pack(Path(sys.argv[1]), [Path(f) for f in sys.argv[2:]])
