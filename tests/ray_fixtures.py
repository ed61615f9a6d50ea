"""One real two-node local Ray cluster per test session, for the Ray tier.

``ray_cluster`` starts ``cluster/local-cluster.sh`` on free ports with a private state
dir, attaches this process to it, and at the end detaches and stops only what the script
started (by PID). ``tests/conftest.py`` imports it, so every module shares it.

Ray tests run serially against this one cluster: several Ray instances on one host
confuse Ray's cleanup, and each Ray worker with TensorFlow holds ~0.8 GiB.

The cluster runs with token auth (the script makes one token for both nodes, in a file
only this user can read); this process, and the subprocesses it starts, attach with
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``, as a user's driver does.
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

#: The running session cluster: ``{"address", "dir", "token_path"}`` while it is up.
STATE: dict = {}

_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


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

    Each node offers 1 CPU and no GPU. The cluster runs with token auth; while it is up
    this process's environment carries ``RAY_AUTH_MODE=token`` and the token file's path
    (``STATE["token_path"]``), never the token itself.
    """
    port = _free_port_pair()
    state_dir = tempfile.mkdtemp(prefix=f"gtray-{port}-", dir="/tmp")
    env = dict(os.environ, GT_RAY_PORT=str(port), GT_RAY_DIR=state_dir)
    ray_bin = ROOT / ".venv" / "bin" / "ray"
    if ray_bin.exists():
        env["RAY"] = str(ray_bin)
    saved_auth = {k: os.environ.get(k) for k in _AUTH_VARS}
    started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                             timeout=120)
    try:
        if started.returncode != 0:
            pytest.fail(f"local Ray cluster did not start:\n{started.stderr[-2000:]}")
        address = started.stdout.strip().splitlines()[-1]
        token_path = os.path.join(state_dir, "auth_token")
        os.environ.pop("RAY_AUTH_TOKEN", None)   # it would win over the file
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=token_path)
        STATE.update(address=address, dir=state_dir, token_path=token_path)
        yield address
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
            STATE.clear()
            for key, value in saved_auth.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(state_dir, ignore_errors=True)
