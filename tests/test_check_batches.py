"""Batches and replicas (GT240-GT244) and the model's own state (GT250-GT254)."""

import numpy as np
import pytest

from guardtrain.checking.batches import check_batches
from guardtrain.checking.model_checks import check_compiled, check_trainable
from guardtrain.checking.specs import ModelSpec
from tests.helpers import regressor


def _codes(problems):
    return [p.code for p in problems]


@pytest.mark.pure
def test_good_batches_pass():
    assert check_batches(64, 2, 1000) == []
    assert check_batches(32, 1, 32) == []


@pytest.mark.pure
def test_fewer_samples_than_one_global_batch():
    [p] = check_batches(64, 2, 50)
    assert p.code == "GT240" and p.severity == "warning" and "batch_size=50" in p.fix
    [p] = check_batches(64, 4, 3)
    assert p.code == "GT240" and p.severity == "error"


@pytest.mark.pure
def test_global_batch_not_divisible_by_replicas():
    [p] = check_batches(33, 2, 1000)
    assert p.code == "GT241" and "batch_size=32 or batch_size=34" in p.fix
    [p] = check_batches(33, 2, None, from_dataset=True)
    assert "dataset.batch(32)" in p.fix


@pytest.mark.pure
def test_last_batch_leaves_a_replica_empty():
    [p] = check_batches(64, 4, 64 * 10 + 2)
    assert p.code == "GT242" and p.severity == "warning" and "2 replicas get" in p.found
    assert check_batches(64, 4, 64 * 10 + 8) == []


@pytest.mark.pure
def test_per_replica_batch_rounds_to_zero():
    [p] = check_batches(1, 2, 100)
    assert p.code == "GT243" and "batch_size=2" in p.fix


@pytest.mark.pure
@pytest.mark.parametrize("bad", [0, -4, 2.5, "32", True, None])
def test_bad_batch_size(bad):
    [p] = check_batches(bad, 1, 100)
    assert p.code == "GT244"


@pytest.mark.pure
def test_not_compiled_and_no_loss():
    [p] = check_compiled(ModelSpec(compiled=False))
    assert p.code == "GT250" and "model.compile(" in p.fix
    [p] = check_compiled(ModelSpec(has_loss=False))
    assert p.code == "GT254"
    assert check_compiled(ModelSpec()) == []


@pytest.mark.pure
def test_no_trainable_weights():
    [p] = check_trainable(ModelSpec(n_weights=4, n_trainable=0))
    assert p.code == "GT251" and "all 4 weights frozen" in p.found
    [p] = check_trainable(ModelSpec(n_weights=0, n_trainable=0))
    assert "no weights" in p.found
    assert check_trainable(ModelSpec(built=False, n_weights=0, n_trainable=0)) == []
    assert check_trainable(ModelSpec()) == []


@pytest.mark.tf
def test_model_state_read_from_keras():
    import keras
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    x, y = np.random.rand(64, 4).astype("float32"), np.random.rand(64)
    frozen = regressor(compile=False)
    frozen.trainable = False
    frozen.compile("sgd", "mse")
    with pytest.raises(InputSpecError, match=r"\[GT251\]"):
        check(frozen, x, y)
    uncompiled = regressor(compile=False)
    with pytest.raises(InputSpecError, match=r"\[GT250\]"):
        check(uncompiled, x, y)
    scheduled = regressor(compile=False)
    rate = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.9)
    scheduled.compile(keras.optimizers.SGD(rate), "mse")
    report = check(scheduled, x, y)
    assert report.codes == []  # a rescue scales a schedule: nothing to warn about


@pytest.mark.tf
def test_model_function_is_called_and_bad_models_reported():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    def build():
        return regressor()

    x, y = np.random.rand(64, 4).astype("float32"), np.random.rand(64)
    assert check(build, x, y).warnings == ()
    with pytest.raises(InputSpecError, match=r"\[GT253\]"):
        check(lambda: None, x, y)
    with pytest.raises(InputSpecError, match=r"\[GT253\]"):
        check("model.keras", x, y)


@pytest.mark.tf
def test_replicas_come_from_the_launch_config():
    from guardtrain.checking import check
    from guardtrain.core.launch_config import LaunchConfig
    from guardtrain.core.errors import InputSpecError

    model = regressor()
    x, y = np.random.rand(64, 4).astype("float32"), np.random.rand(64)
    with pytest.raises(InputSpecError, match=r"\[GT241\]"):
        check(model, x, y, batch_size=15, launch=LaunchConfig(cpu_replicas=2))
    report = check(model, x, y, batch_size=16, launch=LaunchConfig(cpu_replicas=2))
    assert report.replicas == 2 and report.per_replica_batch == 8
