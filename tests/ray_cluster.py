"""A Ray cluster on this machine, started the way users start one: `ray start --head`, then `ray start
--address=…` for every further node. Each node is a raylet of its own, with its own resources and temp dir,
and runs in a session of its own (`ray start --block` in a new session), so a test can kill one node with
every process it started, as if its machine had died.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
# No auth token (a token left in ~/.ray by another Ray would lock out the second node), no usage report,
# and dead nodes noticed within seconds rather than the default half minute.
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_initial_delay_ms": "1000",
       "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
       "RAY_health_check_failure_threshold": "3"}


class RayCluster:
    def __init__(self):
        # Short: Ray's Unix sockets live under the temp dir, and a socket path may not pass 107 characters.
        self.tmp, self.port = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp")), _free_port()
        self.env = {**os.environ, **ENV}
        self.nodes: dict[str, subprocess.Popen] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, name: str, cpus: int = 1, gpus: int = 0, wrap: tuple[str, ...] = (),
              resources: dict[str, float] | None = None) -> None:
        """Start node `name` (the first one is the head) and wait until the cluster counts it. `wrap`
        prefixes the command, e.g. to start the node in a mount namespace of its own; `resources` are custom
        resources it declares (`ray start --resources`), e.g. its hardware kind."""
        where = ["--head", f"--port={self.port}", "--include-dashboard=false"] if not self.nodes else [
            f"--address={self.address}"]
        command = [*wrap, RAY, "start", "--block", *where, f"--num-cpus={cpus}",
                   f"--num-gpus={gpus}", f"--temp-dir={self.tmp / name}", "--object-store-memory=100000000",
                   "--disable-usage-stats", *([f"--resources={json.dumps(resources)}"] if resources else [])]
        with open(self.tmp / f"{name}.log", "w") as log:  # the node keeps its own copy of the file
            self.nodes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                start_new_session=True)
        self.wait_for(len(self.nodes))

    def alive(self) -> int:
        """Nodes the head counts as active (`ray status`), or -1 while it cannot be asked."""
        status = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True,
                                env=self.env, check=False)
        active = re.search(r"Active:\n(.*?)\nPending:", status.stdout, re.DOTALL)
        return len(re.findall(r"node_", active.group(1))) if status.returncode == 0 and active else -1

    def wait_for(self, count: int, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while self.alive() != count:
            for name, proc in self.nodes.items():
                assert proc.poll() is None, f"ray node {name} exited: {(self.tmp / f'{name}.log').read_text()}"
            assert time.time() < deadline, f"the cluster did not reach {count} live nodes in {timeout} s"
            time.sleep(1)

    def kill(self, name: str) -> None:
        """SIGKILL node `name`: its raylet, its Ray workers (and their runs), all at once."""
        _kill_session(self.nodes.pop(name))

    def stop(self) -> None:
        """Kill every node outright: a test cluster has nothing to save, and `ray start --block` took its
        full 30 s grace period to answer SIGTERM, per test."""
        for proc in self.nodes.values():
            _kill_session(proc)
        self.nodes.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL every process in `proc`'s session: `ray start` and all the node processes it started."""
    for pid in _session_members(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _session_members(sid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # the fields after "pid (comm)": state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
