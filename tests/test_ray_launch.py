"""Ray launch machinery: resources, error unwrapping, watchdog (pure) and real runs (ray).

The ray tier runs against one two-node local cluster (``tests/ray_fixtures.py``, ~5 s to
start); each trainer run costs ~20 s on 2 cores, most of it starting the worker group, so
this module has only two, for what no ``gt.fit`` run of ``tests/test_ray_fit.py`` shows: a
guardtrain error raised on a worker (rank 1) arriving as itself, and the watchdog; plus an
embedded Ray in a subprocess (~8 s). Two workers on two nodes training in step, the SIGINT
handler restored after a run, and a killed worker's group restarting from its checkpoint
are proved on the ``gt.fit`` runs there.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time

import pytest

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import (ConfigError, GuardtrainError, InputSpecError, LaunchError,
                               Problem, RescueExhaustedError, UnhealthyTrainingError)
from guardtrain.core.resources import check_resources
from guardtrain.ray import checkpoint, watchdog, worker
from guardtrain.ray import launch as rl
# ------------------------------------------------------------------------------ pure

ALL_ERRORS = [GuardtrainError, ConfigError, InputSpecError, UnhealthyTrainingError,
              LaunchError, RescueExhaustedError]


@pytest.mark.pure
@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_class_survives_pickle(cls):
    problem = Problem(code="GT201", where="x", expected="(None, 4)", found="(8, 3)",
                      fix="reshape x")
    kwargs = {"problems": [problem]} if cls is InputSpecError else {}
    err = cls("what went wrong", code="GT999", fix="do this", details={"rank": 1, "step": 7},
              **kwargs)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert (back.code, back.fix, back.details, str(back)) == (err.code, err.fix, err.details,
                                                               str(err))
    assert back.rank == 1
    if cls is InputSpecError:
        assert back.problems == [problem]


@pytest.mark.pure
def test_resources_fit():
    assert check_resources(LaunchConfig(workers=2), {"CPU": 2.0}) == []
    assert check_resources(LaunchConfig(workers=4, cpus_per_worker=0.5), {"CPU": 2.0}) == []
    assert check_resources(LaunchConfig(workers=0, gpus_per_worker=1), {}) == []
    assert check_resources(LaunchConfig(workers=2, gpus_per_worker=1),
                           [{"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}]) == []


@pytest.mark.pure
def test_gpu_request_on_cpu_cluster_names_expected_found_fix():
    [problem] = check_resources(LaunchConfig(workers=2, gpus_per_worker=1), {"CPU": 2.0})
    assert problem.code == "GT421"
    assert problem.expected == "2 GPUs (2 workers x 1)"
    assert problem.found == "0 GPUs in the Ray cluster"
    assert "gpus_per_worker=0" in problem.fix


@pytest.mark.pure
def test_cpu_shortage_and_worker_that_fits_no_node():
    [cpu] = check_resources(LaunchConfig(workers=3), {"CPU": 2.0})
    assert (cpu.code, cpu.expected) == ("GT420", "3 CPUs (3 workers x 1)")
    # 2 CPUs in all, but a worker cannot span the two 1-CPU nodes.
    [node] = check_resources(LaunchConfig(workers=1, cpus_per_worker=2), [{"CPU": 1}, {"CPU": 1}])
    assert node.code == "GT422" and "room for 0" in node.found


class _FakeWorkerGroupError(Exception):
    def __init__(self, failures):
        super().__init__("Training failed due to worker errors")
        self.worker_failures = failures


class DeadlineExceededError(Exception):  # same name as TensorFlow's: matched by name
    pass


class WorkerHealthCheckFailedError(Exception):  # same name as Ray Train's
    pass


class BroadcastCollectiveTimeoutError(Exception):  # same name as Ray Train's
    pass


class WorkerGroupStartupTimeoutError(Exception):  # same name as Ray Train's
    pass


@pytest.mark.pure
def test_guardtrain_error_wins_and_keeps_class_code_fields():
    config_error = ConfigError("lr must be > 0", code="GT123", fix="use lr=1e-3",
                               details={"field": "lr"})
    err = rl.unwrap_error(_FakeWorkerGroupError(
        {0: DeadlineExceededError("Collective ops timed out"), 1: config_error}))
    assert type(err) is ConfigError
    assert (err.code, err.fix, err.field, err.rank) == ("GT123", "use lr=1e-3", "lr", 1)
    assert err.failed_ranks == [0, 1]
    assert "DeadlineExceededError" in err.errors[0]
    assert pickle.loads(pickle.dumps(err)).details == err.details


@pytest.mark.pure
@pytest.mark.parametrize("failures, code", [
    ({1: ValueError("bad shape"), 0: DeadlineExceededError("timed out")}, "GT430"),
    ({0: WorkerHealthCheckFailedError("actor died"), 1: DeadlineExceededError("t")}, "GT431"),
    ({1: DeadlineExceededError("Collective ops timed out")}, "GT441"),
    ({0: BroadcastCollectiveTimeoutError("ranks [1] missing")}, "GT442"),
])
def test_other_worker_failures_become_launch_errors_naming_rank(failures, code):
    err = rl.unwrap_error(_FakeWorkerGroupError(failures))
    assert type(err) is LaunchError and err.code == code
    cause_rank = {"GT430": 1, "GT431": 0, "GT441": 1, "GT442": 0}[code]
    assert err.rank == cause_rank
    assert f"rank {cause_rank}" in str(err)
    assert err.error_type == type(failures[cause_rank]).__name__
    assert "Fix:" in str(err)


@pytest.mark.pure
def test_controller_failures():
    class _Controller(Exception):
        def __init__(self, cause):
            super().__init__(str(cause))
            self.controller_failure = cause

    assert rl.unwrap_error(_Controller(WorkerGroupStartupTimeoutError("60 s"))).code == "GT423"
    assert rl.unwrap_error(_Controller(RuntimeError("boom"))).code == "GT432"


class _NoReduce(Exception):
    def __init__(self, a, b):  # custom __init__, no __reduce__: does not unpickle
        super().__init__(f"{a}/{b}")


@pytest.mark.pure
def test_worker_wrapper_makes_unpicklable_errors_picklable_and_tags_rank():
    def raises(exc):
        def fn(config):
            raise exc
        return fn

    with pytest.raises(LaunchError) as info:
        worker.on_worker(raises(_NoReduce(1, 2)))({})
    assert info.value.code == "GT430" and info.value.error_type == "_NoReduce"
    assert "_NoReduce" in info.value.traceback
    pickle.loads(pickle.dumps(info.value))

    with pytest.raises(UnhealthyTrainingError) as info:
        worker.on_worker(raises(UnhealthyTrainingError("stalled", code="GT301")))({})
    assert info.value.rank == 0

    with pytest.raises(ValueError):  # picklable: passes through untouched
        worker.on_worker(raises(ValueError("x")))({})


@pytest.mark.pure
def test_watchdog_reports_rank_step_and_stack():
    fired = []
    with watchdog.Watchdog(0.3, rank=3, on_timeout=fired.append) as dog:
        for step in range(5):  # beating keeps it quiet
            time.sleep(0.1)
            dog.beat(step)
        time.sleep(0.8)
    [err] = fired
    assert err.code == "GT440" and err.rank == 3 and err.step == 4
    assert "rank 3" in str(err) and "step 4" in str(err)
    assert "test_watchdog_reports_rank_step_and_stack" in err.stack


@pytest.mark.pure
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to the main thread")
def test_watchdog_interrupts_a_blocked_main_thread():
    # Install the handler this path needs: a job started from a background shell or by a
    # scheduler inherits SIGINT as ignored, and the next test covers that case.
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        start = time.monotonic()
        with pytest.raises(LaunchError) as info:
            with watchdog.Watchdog(0.5, rank=0):
                time.sleep(30)  # a step that never returns
    finally:
        signal.signal(signal.SIGINT, saved)
    assert info.value.code == "GT440"
    assert time.monotonic() - start < 5


@pytest.mark.pure
def test_watchdog_interrupts_the_main_thread_when_sigint_is_ignored():
    # With SIGINT ignored (nohup, a batch scheduler) the watchdog cannot signal: it raises
    # in the watched thread instead, which lands between two Python bytecodes.
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start = time.monotonic()
        with pytest.raises(LaunchError) as info:
            with watchdog.Watchdog(0.5, rank=0):
                while time.monotonic() - start < 30:  # a step that never returns
                    time.sleep(0.01)
    finally:
        signal.signal(signal.SIGINT, saved)
    assert info.value.code == "GT440"
    assert time.monotonic() - start < 5


@pytest.mark.pure
def test_disabled_watchdog_and_bad_timeout():
    with watchdog.Watchdog(None) as dog:
        dog.beat(1)
    assert dog.error is None
    with pytest.raises(ConfigError):
        watchdog.Watchdog(0)


@pytest.mark.pure
def test_train_env_defaults_and_user_override(monkeypatch):
    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", raising=False)
    monkeypatch.delenv("RAY_TRAIN_COLLECTIVE_TIMEOUT_S", raising=False)
    env = rl.train_env(LaunchConfig(workers=2, step_timeout_s=30))
    assert env == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
                   "RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "30.0"}
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1")
    assert "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S" not in rl.train_env(LaunchConfig(workers=2))


@pytest.mark.pure
def test_run_on_workers_refuses_before_touching_ray(tmp_path):
    with pytest.raises(LaunchError) as info:
        rl.run_on_workers(lambda c: None, {}, LaunchConfig(workers=0), storage_path=tmp_path)
    assert info.value.code == "GT403"
    (tmp_path / "taken").mkdir()
    with pytest.raises(LaunchError) as info:  # would silently resume that run
        rl.run_on_workers(lambda c: None, {}, LaunchConfig(workers=2), storage_path=tmp_path,
                          run_name="taken")
    assert info.value.code == "GT404"
    assert rl.unique_run_name() != rl.unique_run_name()


@pytest.mark.pure
def test_checkpoint_helpers_outside_ray_worker():
    assert worker.worker_context() == worker.WorkerContext(0, 1, 0, 0, False)
    with pytest.raises(LaunchError, match="GT450"):
        checkpoint.save_state({"step": 1})
    with pytest.raises(LaunchError, match="GT450"):
        checkpoint.load_state()


@pytest.mark.pure
def test_a_token_file_that_cannot_be_read_is_named_before_ray_starts(monkeypatch, tmp_path):
    # Ray aborts the whole process on an unreadable RAY_AUTH_TOKEN_PATH; guardtrain says
    # which file, with the fix, before calling it.
    from guardtrain.ray import cluster

    monkeypatch.setattr(cluster, "_refresh_ray_auth_config", lambda: None)   # no Ray here
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(name, "x")      # recorded, so the test's changes are undone
        monkeypatch.delenv(name)
    (tmp_path / "empty").write_text("\n")
    for path, why in ((tmp_path / "missing", "cannot be read"), (tmp_path / "empty", "is empty")):
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
        with pytest.raises(LaunchError) as info:
            cluster._use_token_for_attach("127.0.0.1:6390")
        assert info.value.code == "GT410"
        assert str(path) in str(info.value) and why in str(info.value)
        assert "RAY_AUTH_TOKEN_PATH" in info.value.fix and "Fix:" in str(info.value)
        # A token path given means token auth: Ray ignores a token without the mode.
        assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")   # the user's explicit choice stands
    cluster._use_token_for_attach("127.0.0.1:6390")
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


# ------------------------------------------------------------------------------- ray
# Train functions run on the workers. This module is pickled by value so that the
# workers need only guardtrain, not the tests, on their path.

def _pickle_this_module_by_value():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _raise_on_rank_1(config):
    if worker.worker_context().rank == 1:
        raise ConfigError("learning_rate must be > 0", code="GT123", fix="use 1e-3",
                          details={"field": "learning_rate"})
    time.sleep(600)  # rank 0 waits, as on a collective, until Ray tears the group down


@pytest.mark.ray
def test_guardtrain_error_on_a_worker_arrives_as_itself(ray_cluster, tmp_path):
    # The one real run of this path: raised out of the train function on rank 1, through
    # Ray Train's worker failure and unwrap_error. A GT301 verdict (test_ray_fit) is
    # returned by rank 0 and raised by the driver; the watchdog's GT440 carries its rank.
    _pickle_this_module_by_value()
    launch = LaunchConfig(workers=2, address=ray_cluster)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        rl.run_on_workers(_raise_on_rank_1, {}, launch, storage_path=tmp_path)
    err = info.value
    assert (err.code, err.fix, err.field, err.rank) == ("GT123", "use 1e-3", "learning_rate", 1)
    assert str(err).startswith("[GT123] learning_rate must be > 0")
    assert time.monotonic() - start < 60  # the waiting rank 0 did not hold the run


@pytest.mark.ray
def test_unsatisfiable_requests_fail_in_seconds(ray_cluster, tmp_path):
    start = time.monotonic()
    for launch, code in [
        (LaunchConfig(workers=2, address=ray_cluster, gpus_per_worker=1), "GT421"),
        (LaunchConfig(workers=3, address=ray_cluster), "GT420"),
        (LaunchConfig(workers=1, address=ray_cluster, cpus_per_worker=2), "GT422"),
    ]:
        with pytest.raises(LaunchError) as info:
            rl.run_on_workers(lambda c: None, {}, launch, storage_path=tmp_path)
        assert info.value.code == code and "Fix:" in str(info.value)
    assert time.monotonic() - start < 10


def _hang_on_both_ranks(config):
    rank = worker.worker_context().rank
    if rank == 0:
        dog = watchdog.Watchdog(config["timeout_s"]).start()
        dog.beat(step=7)
    time.sleep(600)  # a step that never returns, on both ranks; only rank 0 is watched


@pytest.mark.ray
def test_watchdog_turns_a_hung_worker_into_launch_error(ray_cluster, tmp_path):
    # 1 s without a beat: the watched thread is in time.sleep(600) microseconds after it.
    _pickle_this_module_by_value()
    launch = LaunchConfig(workers=2, address=ray_cluster)
    start = time.monotonic()
    with pytest.raises(LaunchError) as info:
        rl.run_on_workers(_hang_on_both_ranks, {"timeout_s": 1.0}, launch, storage_path=tmp_path)
    err = info.value
    assert (err.code, err.rank, err.step) == ("GT440", 0, 7)
    assert "time.sleep(600)" in err.stack
    assert time.monotonic() - start < 60


_EMBEDDED = """
import json, ray
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.ray.cluster import connect, require_resources
conn = connect(LaunchConfig(workers=1))
require_resources(LaunchConfig(workers=1))
again = connect(LaunchConfig(workers=1))
print(json.dumps({"owned": conn.owned, "same": again is conn, "temp_dir": conn.temp_dir,
                  "cpus": ray.cluster_resources().get("CPU"),
                  "store": ray.cluster_resources().get("object_store_memory")}))
"""  # exits without close(): the exit hook must shut Ray down and remove its temp dir


@pytest.mark.ray
def test_embedded_ray_is_private_small_and_cleaned_up(tmp_path):
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", _EMBEDDED], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["owned"] and out["same"] and out["cpus"] >= 1
    assert out["store"] == 300 * 1024 * 1024
    assert not os.path.exists(out["temp_dir"])
    assert not (tmp_path / ".ray").exists()  # no auth token written under $HOME


_LATE_STRATEGY = """
import tensorflow as tf
from guardtrain.ray import launch as rl, worker
tf.constant(1.0) + 1  # a TensorFlow op before the strategy
try:
    worker.make_worker_strategy(5)
except rl.LaunchError as err:
    print(err.code)
"""


@pytest.mark.tf
def test_strategy_after_another_tf_op_is_a_clear_error():
    import json
    import subprocess

    tf_config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                 "task": {"type": "worker", "index": 0}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), PYTHONPATH=os.getcwd(),
               TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _LATE_STRATEGY], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "GT402", done.stderr[-2000:]
