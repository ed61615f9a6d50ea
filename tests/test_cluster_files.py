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
    assert {v["persistentVolumeClaim"]["claimName"] for v in volumes
            if "persistentVolumeClaim" in v} <= claims
    assert spec["backoffLimit"] == 0


def test_cluster_readme_lists_every_recipe_and_the_exit_codes():
    from guardtrain.interface.cli import EXIT_CODES

    text = (CLUSTER / "README.md").read_text()
    for name in ("local-cluster.sh", "ray-cluster.yaml", "slurm/guardtrain.sbatch",
                 "k8s/rayjob.yaml", "Dockerfile"):
        assert name in text
    for code, _ in EXIT_CODES:
        assert f"| {code} |" in text


# -- secure by default: auth, exposure, privileges, pinned installs ---------------------------

LOCAL = CLUSTER / "local-cluster.sh"


def _code_lines(text: str) -> str:
    """A shell or YAML text without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_no_recipe_or_readme_turns_ray_auth_off():
    for path in (LOCAL, SBATCH, CLUSTER / "ray-cluster.yaml", CLUSTER / "k8s" / "rayjob.yaml",
                 CLUSTER / "README.md", ROOT / "README.md", ROOT / "Dockerfile",
                 ROOT / "scripts" / "bench_launch.py", ROOT / "tests" / "ray_fixtures.py"):
        text = path.read_text()
        assert not re.search(r"RAY_AUTH_MODE\W{0,4}disabled", text), path
        assert "mode: disabled" not in text, path
    code = _code_lines(LOCAL.read_text())
    assert re.search(r"^export RAY_AUTH_MODE=token$", code, flags=re.M)
    assert "RAY_AUTH_TOKEN_PATH" in code and "unset RAY_AUTH_TOKEN" in code
    # Loopback wherever Ray allows it; no dashboard; never `ray stop`.
    assert "--node-ip-address=127.0.0.1" in code and "--include-dashboard=false" in code
    assert not re.search(r"\bray stop\b|\"\$RAY\" stop", code)
    assert "0.0.0.0" not in code


def _fake_ray(folder: Path, log: Path) -> Path:
    """A `ray` that records its arguments and its auth environment, says it started, and
    stays up like `ray start --block` until SIGTERM."""
    _stub(folder, "ray", f'echo "$* | mode=$RAY_AUTH_MODE path=$RAY_AUTH_TOKEN_PATH '
                         f'token=${{RAY_AUTH_TOKEN:-}}" >> {log}\n'
                         'echo "Ray runtime started."\n'
                         'trap \'kill $! 2>/dev/null; exit 0\' TERM\nsleep 30 &\nwait\n')
    return folder / "ray"


def test_local_cluster_makes_one_private_token_for_both_nodes_and_never_shows_it(tmp_path):
    bin_dir, log, state = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "state"
    bin_dir.mkdir()
    env = dict(os.environ, RAY=str(_fake_ray(bin_dir, log)), GT_RAY_DIR=str(state),
               GT_RAY_PORT="6977", RAY_AUTH_TOKEN="inherited-from-the-caller",
               RAY_AUTH_MODE="disabled")

    def run(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(LOCAL), cmd], env=env, capture_output=True,
                              text=True, timeout=60)

    started = run("start")
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip().splitlines()[-1] == "127.0.0.1:6977"
        token_file = state / "auth_token"
        token = token_file.read_text().strip()
        assert len(token) >= 64 and re.fullmatch(r"[0-9a-f]+", token)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        calls = log.read_text().splitlines()
        assert len(calls) == 2                                     # head, then node2
        for call in calls:
            assert f"mode=token path={token_file} token=" in call    # the file, for both
            assert call.endswith("token=")                          # the caller's is unset
            assert "--node-ip-address=127.0.0.1" in call
        assert "--include-dashboard=false" in calls[0] and "--address=127.0.0.1:6977" in calls[1]
        status, shown = run("status"), run("env")
        assert status.returncode == 0 and f"RAY_AUTH_TOKEN_PATH={token_file}" in status.stdout
        assert shown.stdout.splitlines() == ["export RAY_AUTH_MODE=token",
                                             f"export RAY_AUTH_TOKEN_PATH={token_file}",
                                             "unset RAY_AUTH_TOKEN"]
        for out in (started, status, shown):
            assert token not in out.stdout + out.stderr
        for name in ("head.log", "node2.log"):
            assert token not in (state / name).read_text()
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0 and not (state / "auth_token").exists()


def test_ray_cluster_yaml_runs_token_auth_and_keeps_the_dashboard_on_loopback():
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    # The token reaches every node as a file, where Ray looks for it; never in the YAML.
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN=" not in (CLUSTER / "ray-cluster.yaml").read_text()
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "0.0.0.0" not in " ".join(config["worker_start_ray_commands"])


def _rayjob_docs() -> list[dict]:
    return list(yaml.safe_load_all((CLUSTER / "k8s" / "rayjob.yaml").read_text()))


def _pod_templates(job: dict) -> dict[str, dict]:
    cluster = job["spec"]["rayClusterSpec"]
    pods = {"head": cluster["headGroupSpec"]["template"],
            "submitter": job["spec"]["submitterPodTemplate"]}
    for group in cluster["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]
    return pods


def test_rayjob_has_token_auth_and_no_open_dashboard():
    job = next(d for d in _rayjob_docs() if d["kind"] == "RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    # Token auth needs Ray 2.52 or newer on the pods.
    assert tuple(int(p) for p in cluster["rayVersion"].split(".")[:2]) >= (2, 52)
    # The dashboard may listen beyond loopback only behind the token (checked above).
    host = cluster["headGroupSpec"]["rayStartParams"].get("dashboard-host", "127.0.0.1")
    assert host in ("127.0.0.1", "localhost") or cluster["authOptions"]["mode"] == "token"
    for doc in _rayjob_docs():
        assert doc["kind"] not in ("Service", "Ingress")            # nothing published
    text = (CLUSTER / "k8s" / "rayjob.yaml").read_text()
    assert "port-forward" in text                                  # how to reach it


def test_rayjob_pods_run_unprivileged_on_read_only_roots():
    job = next(d for d in _rayjob_docs() if d["kind"] == "RayJob")
    for name, template in _pod_templates(job).items():
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        mounts_by_container = []
        for container in template["spec"]["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc.get("readOnlyRootFilesystem") is True, name
            mounts_by_container.append({m["mountPath"] for m in container["volumeMounts"]})
        for mounts in mounts_by_container:
            assert "/tmp" in mounts, name                          # Ray writes /tmp/ray
    head = _pod_templates(job)["head"]["spec"]
    assert head["securityContext"].get("fsGroup")                  # the runs claim is writable


def test_networkpolicy_admits_only_the_jobs_own_pods_and_the_operator():
    docs = _rayjob_docs()
    job = next(d for d in docs if d["kind"] == "RayJob")
    [policy] = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert docs.index(policy) < docs.index(job)                    # in place before pods start
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for name, template in _pod_templates(job).items():
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items(), name            # every pod is covered
    assert "Ingress" in policy["spec"]["policyTypes"]
    rules = policy["spec"]["ingress"]
    assert rules
    for rule in rules:
        assert rule.get("from"), rule                              # no rule open to all
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert peer.get("podSelector", {}).get("matchLabels"), peer
            if "namespaceSelector" in peer:                        # from elsewhere: one port
                assert [p["port"] for p in rule["ports"]] == [8265]
    own = [r for r in rules if r["from"][0]["podSelector"]["matchLabels"] == selector]
    assert own and "ports" not in own[0]                           # Ray's ports among its pods


def test_dockerfile_runs_as_a_user_and_installs_the_pinned_versions():
    steps = _dockerfile()
    users = [(i, a) for i, (w, a) in enumerate(steps) if w == "USER"]
    entry = next(i for i, (w, _) in enumerate(steps) if w == "ENTRYPOINT")
    assert users and users[-1][0] < entry
    assert users[-1][1].split(":")[0] not in ("root", "0")
    setup = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "setup-env" in a)
    copied = " ".join(a for w, a in steps[:setup] if w == "COPY")
    assert "constraints.txt" in copied
    pins = _constraints()
    assert pins["ray"] == _docker_arg("RAY_VERSION")
    assert pins["tensorflow"] == _docker_arg("TENSORFLOW_VERSION")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # PyPI packages only: name==version, no paths, URLs, editables or extras.
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;]*)", line)
        assert match, line
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_dependency_floors_exclude_unsafe_versions_and_the_pins_meet_them():
    import tomllib

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = {Requirement(d).name: Requirement(d) for d in pyproject["project"]["dependencies"]}
    pins = _constraints()
    assert "guardtrain" not in pins
    floors = {"pyarrow": "14.0.1", "ray": "2.52", "keras": "3.13.2"}
    for name, floor in floors.items():
        spec = deps[name].specifier
        assert not spec.contains(_just_below(floor)), name      # the unsafe one below
        assert spec.contains(floor), name
    assert "train" in deps["ray"].extras
    for name, req in deps.items():
        assert name in pins, name                                  # every dependency pinned
        assert req.specifier.contains(pins[name]), (name, pins[name])


def _just_below(version: str) -> str:
    """The last release before ``version`` (2.52 -> 2.51.999, 14.0.1 -> 14.0.0)."""
    parts = [int(p) for p in version.split(".")]
    i = max(i for i, p in enumerate(parts) if p > 0)
    parts[i] -= 1
    return ".".join(map(str, parts)) + (".999" if i < len(parts) - 1 or len(parts) < 3 else "")


def test_setup_env_installs_with_the_constraints_on_their_python_only(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup-env.sh").write_text(
        (ROOT / "scripts" / "setup-env.sh").read_text())
    (tmp_path / "constraints.txt").write_text((ROOT / "constraints.txt").read_text())
    made_on = re.search(r"^# python (\d+\.\d+)", (ROOT / "constraints.txt").read_text(),
                        flags=re.M).group(1)
    log = tmp_path / "pip.log"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    for version, pinned in ((made_on, True), ("3.99", False)):
        _stub(tmp_path / ".venv" / "bin", "python",
              f'[[ "$1" == -c ]] && {{ echo {version}; exit 0; }}\necho "$*" > {log}\n')
        done = subprocess.run(["bash", str(tmp_path / "scripts" / "setup-env.sh"), "dev"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        argv = log.read_text().split()
        assert argv[:3] == ["-m", "pip", "install"] and argv[-2:] == ["-e", ".[dev]"]
        assert (["--constraint", "constraints.txt"] == argv[-4:-2]) is pinned
        assert ("unpinned" in done.stderr) is not pinned


def test_readmes_warn_that_a_job_file_runs_the_code_it_names():
    for path in (ROOT / "README.md", CLUSTER / "README.md"):
        text = " ".join(path.read_text().split())
        assert "JOB files you trust" in text, path
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "os:system" in readme
