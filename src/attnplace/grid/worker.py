"""Runs one grid run; the same function serves local worker processes and Ray tasks.

A per-run lock file keeps two launchers (a rerun while an orphan still trains, two Ray retries) from
ever training the same run directory at once.
"""

import fcntl
import json
import sys
import traceback
from pathlib import Path

from ..train.config import Config, from_dict
from ..train.record import read_record


def run_payload(payload: dict) -> dict:
    """Train the run described by `payload` ({"config", "grid", "axes"}); return its status and id."""
    from ..train.fit import fit

    config = from_dict(Config, payload["config"])
    run_dir = config.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"id": config.run_id, "status": "busy", "error": "another process is training this run"}
        try:
            record = fit(config, grid=payload["grid"], axes=payload["axes"])
        except Exception:  # fit has recorded it as failed; the traceback goes to this run's log
            record = read_record(run_dir / "record.json") or {"status": "failed"}
            traceback.print_exc()
    return {"id": config.run_id, "status": record.get("status"), "error": record.get("error"),
            "metrics": record.get("metrics", {})}


def main() -> int:
    payload = json.loads(Path(sys.argv[1]).read_text())
    result = run_payload(payload)
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
