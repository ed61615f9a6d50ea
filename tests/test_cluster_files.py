"""The cluster recipes and the Dockerfile: validated by the tools that will read them, where
those tools run here, and checked against each other and against the CLI.

- ``cluster/ray-cluster.yaml`` goes through Ray's own ``prepare_config`` and
  ``validate_config`` (the JSON schema ``ray up`` applies), with a broken copy as control.
- ``cluster/slurm/guardtrain.sbatch`` passes ``bash -n``, and runs against stand-ins for
  ``srun``, ``scontrol``, ``ray``, ``python`` and ``guardtrain`` that record their arguments.
- ``cluster/k8s/rayjob.yaml`` loads, asks for GPUs, and its command parses with the CLI.
- The Dockerfile installs the way the README does (``scripts/setup-env.sh``).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from guardtrain.interface.cli import build_parser

pytestmark = pytest.mark.pure

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SBATCH = CLUSTER / "slurm" / "guardtrain.sbatch"


# -- Dockerfile ----------------------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _setup_calls(text: str) -> list[list[str]]:
    """Every ``bash scripts/setup-env.sh ...`` call in a shell text, as argument lists."""
    calls = []
    for part in re.split(r"&&|;|\n", text):
        words = shlex.split(part, comments=True)
        words = [w for w in words if "=" not in w or w.startswith("-")]   # drop VAR=value
        if "scripts/setup-env.sh" in words:
            calls.append(words[words.index("scripts/setup-env.sh") + 1:])
    return calls


def test_dockerfile_installs_the_way_the_readme_does():
    import tomllib

    readme = (ROOT / "README.md").read_text()
    # The README's commands, and the setup script they run.
    commands = re.findall(r"^bash (scripts/\S+\.sh)", readme, flags=re.M)
    assert "scripts/main-job.sh" in commands
    readme_setups = [call for cmd in commands for call in _setup_calls((ROOT / cmd).read_text())]
    assert readme_setups, "the README's commands no longer call scripts/setup-env.sh"

    steps = _dockerfile()
    runs = [args for word, args in steps if word == "RUN"]
    docker_setups = [call for run in runs for call in _setup_calls(run)]
    assert len(docker_setups) == 1, runs
    extras = docker_setups[0]
    assert extras == ["gpu"]                            # same script, the GPU extra
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(d.startswith("tensorflow[and-cuda]")
               for d in pyproject["project"]["optional-dependencies"]["gpu"])
    # The script installs the checkout: what pip needs must be copied before it runs.
    setup = (ROOT / "scripts" / "setup-env.sh").read_text()
    assert 'pip install' in setup and '-e "$spec"' in setup
    before = steps[:next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "setup-env" in a)]
    copied = " ".join(a for w, a in before if w == "COPY")
    for needed in ("pyproject.toml", pyproject["project"]["readme"], "scripts/", "guardtrain/"):
        assert needed in copied, needed
    # The setup ran in WORKDIR; its .venv/bin is on PATH and guardtrain is the entrypoint.
    workdir = [a for w, a in before if w == "WORKDIR"][-1]
    env = " ".join(a for w, a in steps if w == "ENV")
    assert f"{workdir}/.venv/bin" in env
    assert ('ENTRYPOINT', '["guardtrain"]') in steps
    # Python of the base image satisfies requires-python.
    base = next(a for w, a in steps if w == "FROM")
    version = tuple(int(p) for p in re.search(r"python:(\d+)\.(\d+)", base).groups())
    floor = tuple(int(p) for p in re.search(r">=\s*(\d+)\.(\d+)",
                                            pyproject["project"]["requires-python"]).groups())
    assert version >= floor


def _docker_arg(name: str) -> str:
    return next(a.split("=", 1)[1] for w, a in _dockerfile() if w == "ARG" and a.startswith(name))


# -- ray-cluster.yaml -----------------------------------------------------------------------

def _ray_validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))   # what `ray up` does first
    validate_config(prepared)
    return prepared


def test_ray_cluster_yaml_passes_rays_own_validation():
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    prepared = _ray_validate(config)
    nodes = prepared["available_node_types"]
    workers = [n for name, n in nodes.items() if name != prepared["head_node_type"]]
    assert workers and all(n["resources"].get("GPU", 0) >= 1 for n in workers)
    # Every node runs the guardtrain image and installs the synced checkout over it.
    assert "guardtrain" in prepared["docker"]["image"]
    assert "~/guardtrain" in prepared["file_mounts"]
    assert any("pip install" in c and "~/guardtrain" in c for c in prepared["setup_commands"])
    assert "--gpus all" in prepared["docker"]["worker_run_options"]
    # The image's entrypoint is `guardtrain`; Ray runs its containers with `bash`.
    assert ("ENTRYPOINT", '["guardtrain"]') in _dockerfile()
    assert any(o.startswith("--entrypoint=") for o in prepared["docker"]["run_options"])


def test_rays_validator_rejects_a_broken_copy():
    from jsonschema import ValidationError

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu-worker"]["min_workers"] = "two"
    with pytest.raises(ValidationError):
        _ray_validate(broken)
    broken = copy.deepcopy(config)
    broken["head_node_type"] = "nowhere"
    with pytest.raises(ValueError):
        _ray_validate(broken)


# -- SLURM ----------------------------------------------------------------------------------

def test_sbatch_is_valid_bash_with_gpu_requests():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, flags=re.M))
    assert directives["gpus-per-node"] and directives["nodes"] and "time" in directives
    assert not re.search(r"^\s*ray stop", text, flags=re.M)      # never kill others' Ray


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sbatch_starts_ray_on_every_node_then_guardtrain_fit(tmp_path):
    bin_dir, home, log = tmp_path / "bin", tmp_path / "home", tmp_path / "calls.log"
    bin_dir.mkdir()
    (home / ".venv" / "bin").mkdir(parents=True)
    (home / ".venv" / "bin" / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    record = f'echo "$(basename "$0") $*" >> {log}\n'
    _stub(bin_dir, "scontrol", 'printf "gpu-a\\ngpu-b\\ngpu-c\\n"\n')
    # srun: drop its own options, then run the command (hostname prints the head's IP).
    _stub(bin_dir, "srun", record + 'while [[ "$1" == -* ]]; do [[ "$1" == -w ]] && shift; '
                                    'shift; done\n[[ "$1" == hostname ]] && { echo 10.0.0.7; '
                                    'exit 0; }\nexec "$@"\n')
    _stub(bin_dir, "ray", record + '[[ "$1" == start ]] && exec sleep 30\nexit 0\n')
    # python: prints the token; as `wait_for_nodes N`, waits until N `ray start` ran (the
    # real one polls ray.nodes() the same way).
    _stub(bin_dir, "python", record + '[[ "$1" == -c ]] && { echo token123; exit 0; }\n'
                                      'cat > /dev/null\nfor _ in $(seq 100); do\n'
                                      f'  (( $(grep -c "^ray start" {log}) >= $3 )) && exit 0\n'
                                      '  sleep 0.1\ndone\nexit 1\n')
    _stub(bin_dir, "guardtrain", record + 'echo "RAY_AUTH_TOKEN=$RAY_AUTH_TOKEN" >> '
                                          f'{log}\nexit 4\n')
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", GUARDTRAIN_HOME=str(home),
               SLURM_JOB_NODELIST="gpu-[a-c]", SLURM_GPUS_PER_NODE="a100:4",
               SLURM_CPUS_PER_TASK="16")
    done = subprocess.run(["bash", str(SBATCH), "examples/tiny-job.yaml", "--set", "epochs=5"],
                          env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines()
    assert done.returncode == 4, done.stderr                   # guardtrain's exit code
    head = [c for c in calls if c.startswith("ray start --head")]
    assert len(head) == 1 and "--node-ip-address=10.0.0.7" in head[0]
    assert "--num-gpus=4" in head[0] and "--num-cpus=16" in head[0]
    joined = [c for c in calls if c.startswith("ray start") and "--address=10.0.0.7:6379" in c]
    assert len(joined) == 2                                    # gpu-b and gpu-c
    fit = next(c for c in calls if c.startswith("guardtrain "))
    argv = fit.split()[1:]
    assert argv[:2] == ["fit", "examples/tiny-job.yaml"]
    args = build_parser().parse_args(argv)                     # the flags exist
    assert args.address == "10.0.0.7:6379"
    assert (args.workers, args.gpus_per_worker) == (12, 1.0)   # 3 nodes x 4 GPUs
    assert args.overrides == ["launch.cpus_per_worker=4", "epochs=5"]
    assert "RAY_AUTH_TOKEN=token123" in calls                  # the job's own token
    assert not any(c.startswith("ray stop") for c in calls)
    waits = [c.split()[-1] for c in calls if c.startswith("python - 10.0.0.7:6379")]
    assert waits == ["1", "3"]                                 # the head, then all nodes


# -- KubeRay RayJob -------------------------------------------------------------------------

def test_rayjob_runs_guardtrain_fit_on_gpu_workers():
    docs = list(yaml.safe_load_all((CLUSTER / "k8s" / "rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == _docker_arg("RAY_VERSION")
    gpus = 0
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        limit = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert limit >= 1 and "guardtrain" in container["image"]
        gpus += group["replicas"] * limit
    fit = spec["entrypoint"].split("&&")[-1]
    argv = shlex.split(fit)
    assert argv[:2] == ["guardtrain", "fit"]
    args = build_parser().parse_args(argv[1:])
    assert args.workers == gpus and args.gpus_per_worker == 1 and args.address == "auto"
    assert args.job.startswith("/opt/guardtrain/")
    assert (ROOT / args.job.removeprefix("/opt/guardtrain/")).exists()   # in the image
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    volumes = cluster["headGroupSpec"]["template"]["spec"]["volumes"]
    assert {v["persistentVolumeClaim"]["claimName"] for v in volumes} <= claims
    assert spec["backoffLimit"] == 0


def test_cluster_readme_lists_every_recipe_and_the_exit_codes():
    from guardtrain.interface.cli import EXIT_CODES

    text = (CLUSTER / "README.md").read_text()
    for name in ("local-cluster.sh", "ray-cluster.yaml", "slurm/guardtrain.sbatch",
                 "k8s/rayjob.yaml", "Dockerfile"):
        assert name in text
    for code, _ in EXIT_CODES:
        assert f"| {code} |" in text
