"""``LocalRayCluster``: a throwaway multi-node Ray cluster on this machine, each node its own
``ray start`` (its own raylet, object store and ports), for tests, benchmarks and trying
``judge_backend="ray"`` without a cluster.

Every port is chosen free, every node has its own process group (so ``kill_node`` takes a
node's raylet and workers down at once, as a machine failure would) and ``stop`` kills only
this cluster's processes -- never ``ray stop``, which would stop every Ray on the machine.

>>> with LocalRayCluster(nodes=2) as cluster:          # doctest: +SKIP
...     executor = RayExecutor(cluster.address)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .ray_runtime import require_ray

# Node deaths are noticed within ~2 s instead of Ray's default 30 s.
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4"}
_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    """``nodes`` Ray nodes on 127.0.0.1 with ``cpus_per_node`` CPUs each; ``address`` is the head's."""

    def __init__(
        self,
        nodes: int = 2,
        *,
        cpus_per_node: int = 1,
        object_store_bytes: int = 200_000_000,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        require_ray()
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.start_timeout_s = start_timeout_s
        self.temp_dir = tempfile.mkdtemp(prefix="sdpo-ray-")
        self.env = {**os.environ, **FAST_FAILURE_DETECTION, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        # The nodes' workers import this checkout's packages, as the driver does.
        root = str(Path(__file__).resolve().parents[2])
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        try:
            for index in range(nodes):
                self.add_node(head=index == 0)
        except BaseException:
            self.stop()
            raise

    def _ray_cli(self) -> str:
        return str(Path(sys.executable).with_name("ray"))

    def add_node(self, *, head: bool = False) -> subprocess.Popen:
        """Start one more node (the head when ``head``) and wait until it accepts connections."""
        argv = [self._ray_cli(), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
        argv += [f"--num-cpus={self.cpus_per_node}", f"--object-store-memory={self.object_store_bytes}"]
        argv += [f"--min-worker-port={free_port()}", "--max-worker-port=0"]
        argv += [f"{flag}={free_port()}" for flag in _PORT_FLAGS]
        if head:
            argv += [
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-port={free_port()}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
            ]
        else:
            argv += [f"--address={self.address}"]
        log = open(Path(self.temp_dir) / f"node{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.procs.append(proc)
        if head:
            self._wait_for_port()
        return proc

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"the Ray head exited: see {self.temp_dir}/node0.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the Ray head did not listen on {self.address} within {self.start_timeout_s} s")

    def wait_for_nodes(self, n: int | None = None) -> None:
        """Wait (as a connected driver) until ``n`` nodes (default all) are alive."""
        ray = require_ray()
        n = len(self.procs) if n is None else n
        deadline = time.monotonic() + self.start_timeout_s
        while sum(bool(node["Alive"]) for node in ray.nodes()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} Ray nodes were not up within {self.start_timeout_s} s")
            time.sleep(0.2)

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``'s raylet, workers and helpers at once (its process group)."""
        proc = self.procs[index]
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """Kill every process of every node (workers last, the head's group last of all)."""
        for index in reversed(range(len(self.procs))):
            self.kill_node(index)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
