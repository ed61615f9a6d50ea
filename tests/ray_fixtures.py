"""One real two-node local Ray cluster per test session, for the Ray tier.

``ray_cluster`` starts ``cluster/local-cluster.sh`` on free ports with a private state
dir, attaches this process to it, and at the end detaches and stops only what the script
started (by PID). ``tests/conftest.py`` imports it, so every module shares it.

Ray tests run serially against this one cluster: several Ray instances on one host
confuse Ray's cleanup, and each Ray worker with TensorFlow holds ~0.8 GiB.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster" / "local-cluster.sh"


def _free_port_pair() -> int:
    # The script uses PORT (GCS) and PORT + 1 (Ray Client). Stay below 10002, where Ray's
    # worker port range starts; start from the PID so parallel sessions spread out.
    start = 6400 + os.getpid() % 3000
    for port in range(start, 9990, 7):
        if _free(port) and _free(port + 1):
            return port
    raise RuntimeError("no free port pair for the test Ray cluster")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def ray_cluster():
    """The address (``"127.0.0.1:PORT"``) of a running two-node local Ray cluster.

    Each node offers 1 CPU and no GPU; auth is disabled (a second raylet on one host
    needs it), so this process attaches with ``RAY_AUTH_MODE=disabled``.
    """
    port = _free_port_pair()
    state_dir = tempfile.mkdtemp(prefix=f"gtray-{port}-", dir="/tmp")
    env = dict(os.environ, GT_RAY_PORT=str(port), GT_RAY_DIR=state_dir)
    ray_bin = ROOT / ".venv" / "bin" / "ray"
    if ray_bin.exists():
        env["RAY"] = str(ray_bin)
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                             timeout=120)
    try:
        if started.returncode != 0:
            pytest.fail(f"local Ray cluster did not start:\n{started.stderr[-2000:]}")
        address = started.stdout.strip().splitlines()[-1]
        os.environ["RAY_AUTH_MODE"] = "disabled"
        yield address
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
            if saved_auth is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = saved_auth
            shutil.rmtree(state_dir, ignore_errors=True)
