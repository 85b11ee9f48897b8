"""Which code trained a run, where and when: the sessions a record lists, the source hash and git commit, and
the clock every file of a results folder is stamped with."""

import functools
import hashlib
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def session() -> dict:
    """Where and when this process trains a run. A record keeps one per training session: a run killed and
    resumed, or retried by Ray on another node after its node was lost, lists each with the epoch it resumed
    from (`from_epoch`, set when training starts) and the last time it wrote the record (`ended`). On a Ray
    task it also names the node and the GPUs Ray assigned, beside the `CUDA_VISIBLE_DEVICES` the task saw.
    `code` says which attnplace trained it (`code_version`): a run resumed under other code shows it here.
    `resume_note`, only where there was one, says what the session did about a checkpoint it could not
    resume from (`checkpoint.resume_point`)."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": now(), "ended": None, "from_epoch": 0,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "code": code_version()}
    ray = sys.modules.get("ray")  # imported only where a Ray task runs this: ray is optional
    if ray is not None and ray.is_initialized():
        info.update(ray_node=ray.get_runtime_context().get_node_id(), ray_gpu_ids=[str(g) for g in ray.get_gpu_ids()])
    return info


@functools.cache
def code_version() -> dict:
    """The attnplace source that runs: `source_sha256` (the first 12 hex digits of a hash over the package's
    .py files, which identifies the code even in a copy outside git) and `git`, the commit when the package
    sits in a git checkout (`+dirty` when its source differs from that commit), else None."""
    package = Path(__file__).resolve().parents[1]
    return {"source_sha256": source_hash(package), "git": git_commit(package)}


def source_hash(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_commit(folder: Path) -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--", ".") else "")
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an installed wheel)
        return None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
