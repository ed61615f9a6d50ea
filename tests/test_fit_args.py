"""``fit``'s own arguments and configs: one rule for the Python API and JOB files, every
problem at once, and the forms Keras accepts (``validation_data`` as a list, a config as
a dict) accepted."""

import numpy as np
import pytest

from guardtrain.core.errors import ConfigError
from guardtrain.core.fit_args import FIT_ARGS, fit_arg_defaults, fit_arg_problems
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.interface.jobfile.schema import check_job

COUNTS = ["batch_size", "epochs", "steps_per_epoch", "steps_per_loop"]
BAD_COUNTS = [0, -3, 1.5, "2", True]
_JOB = {"model": "m:f", "data": {"npz": "d.npz"}}


@pytest.mark.pure
@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
def test_a_bad_count_is_refused_alike_in_python_and_in_a_job_file(name, value):
    (python,) = fit_arg_problems({name: value}, code="GT108")
    assert python.code == "GT108" and python.where == f"fit({name}=...)"
    assert python.fix.startswith("use ") and repr(value) in python.found
    _, _, _, problems = check_job({**_JOB, name: value})
    (job,) = [p for p in problems if p.where == name]
    assert job.code == "GT132" and job.expected == python.expected.replace("None", "null")
    assert job.found == python.found


@pytest.mark.pure
def test_good_values_pass_numpy_integers_included():
    good = {"batch_size": np.int64(64), "epochs": 3, "steps_per_epoch": None,
            "steps_per_loop": np.int32(10), "shuffle": False}
    assert fit_arg_problems(good, code="GT108") == []
    assert fit_arg_problems(fit_arg_defaults(), code="GT108") == []
    assert [a.name for a in FIT_ARGS][:5] == [*COUNTS, "shuffle"]


@pytest.mark.pure
def test_every_wrong_argument_is_listed_at_once():
    problems = fit_arg_problems({"epochs": 0, "batch_size": "32", "shuffle": "yes"},
                                code="GT108")
    assert [p.where for p in problems] == ["fit(batch_size=...)", "fit(epochs=...)",
                                           "fit(shuffle=...)"]
    assert "'32' (str)" in problems[0].found


@pytest.mark.pure
def test_launch_config_checks_every_type_at_once():
    with pytest.raises(ConfigError) as info:
        LaunchConfig(workers="2", gpus_per_worker="1", address=6379, storage_path=3,
                     step_timeout_s="600")
    err = info.value
    assert err.code == "GT101"
    fields = [p.where for p in err.details["problems"]]
    assert fields == ["LaunchConfig(workers=...)", "LaunchConfig(gpus_per_worker=...)",
                      "LaunchConfig(address=...)", "LaunchConfig(storage_path=...)",
                      "LaunchConfig(step_timeout_s=...)"]
    assert all(p.fix for p in err.details["problems"])


@pytest.mark.pure
def test_launch_config_still_takes_what_it_took():
    launch = LaunchConfig(workers=2, gpus_per_worker=0.5, cpus_per_worker=2,
                          address="auto", storage_path="/tmp/ray", step_timeout_s=None)
    assert launch.distributed
    assert LaunchConfig(step_timeout_s=float("inf")).step_timeout_s == float("inf")


@pytest.mark.pure
def test_a_job_with_a_dataset_fn_needs_steps_per_epoch():
    raw = {"model": "m:f", "data": {"dataset_fn": "m:data"}}
    _, _, _, problems = check_job(raw)
    assert [(p.code, p.where) for p in problems] == [("GT102", "steps_per_epoch")]
    _, _, _, problems = check_job({**raw, "steps_per_epoch": 10})
    assert problems == []


@pytest.mark.tf
def test_an_unknown_optimizer_names_the_ones_keras_knows():
    from guardtrain.checking.optimizers import known_optimizers, ladder_problems

    import keras

    assert {"sgd", "adam", "rmsprop", "adamw"} <= set(known_optimizers())
    assert "lossscaleoptimizer" not in known_optimizers()   # it wraps another one
    for name in known_optimizers():   # each is what the rescue's switch will build
        assert isinstance(keras.optimizers.get(name), keras.optimizers.Optimizer), name
    assert ladder_problems(("sgd", "Adam", "rmsprop")) == []
    (problem,) = ladder_problems(("sgd", "adamm"))
    assert problem.code == "GT122" and "did you mean 'adam'?" in problem.fix
    assert "rmsprop" in problem.fix


@pytest.mark.tf
def test_fit_takes_validation_as_a_list_and_configs_as_dicts(tmp_path):
    import guardtrain
    from tests.helpers import classifier, class_data

    x, y = class_data(64)
    result = guardtrain.fit(classifier(), x, y, batch_size=16, epochs=2, verbose=0,
                            validation_data=[x[:16], y[:16]],
                            guard={"warmup_steps": 2, "window_steps": 8},
                            rescue={"max_attempts": 2}, launch={"workers": 0},
                            run_dir=tmp_path / "run")
    assert result is not None
    assert (tmp_path / "run").is_dir()
