"""Secure by default: who may use a Ray cluster, and what a JOB file's folder may replace.

- ray: the session's two-node cluster (``cluster/local-cluster.sh start``, shared through
  ``tests/ray_fixtures.py``) runs with token auth; a driver without the token is refused,
  by Ray (after ~20 s of retries) and by ``guardtrain`` (GT410 with the fix, in seconds);
  one with the token file runs a task. Each client is a subprocess with its own
  environment and an empty ``$HOME``, so no token is found by accident (~3-6 s each on
  2 cores, the refused plain-Ray one ~22 s).
- pure: the module a JOB names is imported from the JOB's folder, and the folder is not
  left on ``sys.path``: a ``pandas.py`` beside a JOB never replaces pandas.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guardtrain.interface.jobfile import resolve_import_path
from tests.ray_fixtures import STATE

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ pure

@pytest.fixture
def forget_modules():
    """Names of modules a test imports from a temp folder, removed from sys.modules after."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.pure
def test_a_pandas_py_beside_the_job_does_not_replace_pandas(tmp_path, forget_modules):
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed")
    forget_modules += ["gtjob_model", "gtjob_helper"]
    (tmp_path / "pandas.py").write_text("FROM_THE_JOB_FOLDER = True\n")
    (tmp_path / "gtjob_only_here.py").write_text("X = 1\n")
    (tmp_path / "gtjob_helper.py").write_text("UNITS = 7\n")
    (tmp_path / "gtjob_model.py").write_text(
        "import pandas\n"
        "import gtjob_helper            # a sibling, imported at import time\n"
        "PANDAS_FILE = pandas.__file__\n"
        "def build(scale=1):\n"
        "    return gtjob_helper.UNITS * scale\n")
    before = list(sys.path)

    fn = resolve_import_path("gtjob_model:build", search=[tmp_path])

    assert fn(2) == 14                                       # the module and its sibling
    module = sys.modules["gtjob_model"]
    assert Path(module.__file__).parent == tmp_path          # taken from the JOB's folder
    assert sys.path == before                                # the folder is not left there
    assert importlib.util.find_spec("gtjob_only_here") is None
    import pandas

    assert not hasattr(pandas, "FROM_THE_JOB_FOLDER")        # the real one, also inside
    assert module.PANDAS_FILE == pandas.__file__
    assert not pandas.__file__.startswith(str(tmp_path))


@pytest.mark.pure
def test_a_package_beside_the_job_and_its_submodule(tmp_path, forget_modules):
    forget_modules += ["gtjob_pkg", "gtjob_pkg.models", "gtjob_pkg.layers"]
    pkg = tmp_path / "gtjob_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text("WIDTH = 3\n")
    (pkg / "models.py").write_text("from gtjob_pkg import layers\n"
                                   "def build():\n    return layers.WIDTH\n")
    before = list(sys.path)
    assert resolve_import_path("gtjob_pkg.models:build", search=[tmp_path])() == 3
    assert sys.path == before


@pytest.mark.pure
def test_a_module_that_fails_to_import_leaves_nothing_behind(tmp_path, forget_modules):
    from guardtrain.core.errors import ConfigError

    forget_modules += ["gtjob_broken"]
    (tmp_path / "gtjob_broken.py").write_text("raise RuntimeError('half-written module')\n")
    before = list(sys.path)
    with pytest.raises(ConfigError) as info:
        resolve_import_path("gtjob_broken:build", search=[tmp_path])
    assert "half-written module" in str(info.value)
    assert "gtjob_broken" not in sys.modules and sys.path == before


# ------------------------------------------------------------------------------ ray

_CLIENT = """
import json, os, sys, time
start = time.monotonic()
out = {}
try:
    import ray
    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
    out["task"] = ray.get(ray.remote(lambda: 6 * 7).options(num_cpus=0.1).remote(),
                          timeout=30)
except BaseException as err:   # what Ray raised, by name: the test reads it
    out["error"] = f"{type(err).__name__}: {err}"[:600]
out["seconds"] = round(time.monotonic() - start, 1)
print(json.dumps(out), flush=True)
os._exit(0)
"""

_GUARDTRAIN = """
import json, sys
from guardtrain.core.errors import LaunchError
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.ray.cluster import connect
try:
    connect(LaunchConfig(workers=1, address=sys.argv[1]))
    import ray
    task = ray.get(ray.remote(lambda: 6 * 7).options(num_cpus=0.1).remote(), timeout=30)
    print(json.dumps({"task": task}))
except LaunchError as err:
    print(json.dumps({"code": err.code, "message": str(err), "fix": err.fix}))
"""


def _run(code: str, address: str, home: Path, timeout: float = 90, **auth: str) -> dict:
    """Runs ``code`` in a fresh Python with no Ray auth setting but ``auth``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", **auth)
    done = subprocess.run([sys.executable, "-c", code, address], env=env, cwd=str(home),
                          capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-2000:]
    return json.loads(lines[-1])


@pytest.mark.ray
def test_the_local_cluster_runs_token_auth_with_a_private_token(ray_cluster):
    token_file = Path(STATE["token_path"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(STATE["dir"]).stat().st_mode) == 0o700
    # Both nodes run with token auth and read the one token from that file.
    for name in ("head", "node2"):
        pid = (Path(STATE["dir"]) / f"{name}.pid").read_text().strip()
        env = dict(item.split("=", 1) for item in
                   Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert env.get("RAY_AUTH_MODE") == "token", name
        assert env.get("RAY_AUTH_TOKEN_PATH") == str(token_file), name
        assert "RAY_AUTH_TOKEN" not in env, name
    # This process attached with the token file, as a user's driver does.
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token_file)


@pytest.mark.ray
def test_a_driver_without_the_token_is_refused(ray_cluster, tmp_path):
    # Plain Ray: ~20 s of retries, then a ConnectionError.
    out = _run(_CLIENT, ray_cluster, tmp_path)
    assert "task" not in out, out
    assert out["seconds"] < 60, out                      # refused, not left hanging
    assert not (tmp_path / ".ray").exists()              # and it made itself no token


@pytest.mark.ray
def test_guardtrain_names_a_missing_or_wrong_token_with_the_fix(ray_cluster, tmp_path):
    token = Path(STATE["token_path"]).read_text().strip()
    for auth, why in (({}, "no token"), ({"RAY_AUTH_TOKEN": "0" * 64}, "not its token")):
        out = _run(_GUARDTRAIN, ray_cluster, tmp_path, **auth)
        assert out.get("code") == "GT410", out
        assert why in out["message"], out
        assert "RAY_AUTH_TOKEN_PATH" in out["fix"] and "local-cluster.sh env" in out["fix"]
        assert token not in json.dumps(out)


@pytest.mark.ray
def test_a_driver_with_the_token_file_runs_a_task(ray_cluster, tmp_path):
    out = _run(_CLIENT, ray_cluster, tmp_path, RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=STATE["token_path"])
    assert out.get("task") == 42, out
    # guardtrain needs only the path: a token given means token auth.
    out = _run(_GUARDTRAIN, ray_cluster, tmp_path, RAY_AUTH_TOKEN_PATH=STATE["token_path"])
    assert out.get("task") == 42, out
