"""Shapes, structure and sample counts (GT201-GT204)."""

import numpy as np
import pytest

from guardtrain.checking import codes
from guardtrain.checking.shapes import check_input_shape, check_sample_counts, pair
from guardtrain.checking.specs import InputSpec
from tests.helpers import conv_classifier, regressor, sample


def _sample(shape, where="x"):
    return sample(np.zeros(shape, "float32"), where)


@pytest.mark.pure
def test_reshape_fix_when_element_counts_agree():
    spec = InputSpec("image", (None, 28, 28, 1))
    [p] = check_input_shape(spec, _sample((100, 784)), named=False)
    assert p.code == codes.SHAPE == "GT201"
    assert p.fix == "784 = 28*28*1: x.reshape(-1, 28, 28, 1)"
    assert "(100, 784)" in p.found and "(None, 28, 28, 1)" in p.expected


@pytest.mark.pure
def test_matching_shape_and_keras_rank_adjustment_pass():
    assert check_input_shape(InputSpec("a", (None, 28, 28, 1)), _sample((5, 28, 28, 1))) == []
    assert check_input_shape(InputSpec("a", (None, 28, 28, 1)), _sample((5, 28, 28))) == []
    assert check_input_shape(InputSpec("a", (None, 1)), _sample((5,))) == []
    assert check_input_shape(InputSpec("a", (None, None, 3)), _sample((5, 7, 3))) == []


@pytest.mark.pure
def test_different_element_count_gets_generic_fix():
    [p] = check_input_shape(InputSpec("a", (None, 10)), _sample((4, 12)))
    assert p.code == "GT201" and "keras.Input(shape=(12,))" in p.fix


@pytest.mark.pure
def test_channels_first_data_for_channels_last_model():
    [p] = check_input_shape(InputSpec("a", (None, 32, 32, 3)), _sample((4, 3, 32, 32)))
    assert p.code == codes.CHANNELS == "GT202"
    assert "x.transpose(0, 2, 3, 1)" in p.fix and "channels-first" in p.found


@pytest.mark.pure
def test_channels_last_data_for_channels_first_model():
    [p] = check_input_shape(InputSpec("a", (None, 3, 32, 32)), _sample((4, 32, 32, 3)))
    assert p.code == "GT202" and "x.transpose(0, 3, 1, 2)" in p.fix


@pytest.mark.pure
def test_sample_counts_differ():
    [p] = check_sample_counts([_sample((100, 3)), _sample((90,), where="y")])
    assert p.code == codes.SAMPLE_COUNT == "GT203"
    assert "x has 100" in p.found and "y has 90" in p.found
    assert check_sample_counts([_sample((100, 3)), _sample((100,), where="y")]) == []


@pytest.mark.pure
def test_pair_by_name_reports_missing_and_extra_keys():
    specs = (InputSpec("image", (None, 4)), InputSpec("meta", (None, 2)))
    leaves = [("image", _sample((3, 4), "x['image']")), ("other", _sample((3, 2), "x['other']"))]
    pairs, problems = pair(specs, leaves, "dict", "x")
    assert [s.name for s, _ in pairs] == ["image"]
    assert [p.code for p in problems] == ["GT204", "GT204"]
    assert [p.severity for p in problems] == ["error", "warning"]
    assert "'meta'" in problems[0].found


@pytest.mark.pure
def test_pair_single_array_for_two_inputs():
    specs = (InputSpec("image", (None, 4)), InputSpec("meta", (None, 2)))
    pairs, [p] = pair(specs, [(None, _sample((3, 4)))], "single", "x")
    assert pairs == [] and p.code == "GT204" and "x={'image': ..., 'meta': ...}" in p.fix
    pairs, problems = pair(specs, [(0, _sample((3, 4))), (1, _sample((3, 2)))], "list", "x")
    assert problems == [] and [s.name for s, _ in pairs] == ["image", "meta"]


@pytest.mark.tf
def test_multi_input_model_checked_by_name():
    import keras
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    image, meta = keras.Input((8, 8, 1), name="image"), keras.Input((3,), name="meta")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    model = keras.Model({"image": image, "meta": meta}, keras.layers.Dense(1)(h))
    model.compile("sgd", "mse")
    x = {"image": np.random.rand(16, 64), "meta": np.random.rand(16, 3)}
    with pytest.raises(InputSpecError) as info:
        check(model, x, np.random.rand(16), batch_size=8)
    [p] = info.value.problems
    assert p.where == "x['image']" and "model input 'image'" in p.expected
    assert p.fix == "64 = 8*8*1: x['image'].reshape(-1, 8, 8, 1)"


@pytest.mark.tf
def test_conv_model_fed_flat_images_gets_reshape_fix():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    model = conv_classifier()
    with pytest.raises(InputSpecError) as info:
        check(model, np.random.rand(100, 784).astype("float32"), np.arange(100) % 10)
    assert "[GT201]" in str(info.value)
    assert "Fix: 784 = 28*28*1: x.reshape(-1, 28, 28, 1)" in str(info.value)


@pytest.mark.tf
def test_x_and_y_sample_counts_differ_end_to_end():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    model = regressor((3,))
    with pytest.raises(InputSpecError, match=r"\[GT203\]"):
        check(model, np.random.rand(100, 3), np.random.rand(90))


@pytest.mark.pure
def test_a_one_key_dict_must_name_the_single_input():
    specs = (InputSpec("pixels", (None, 4)),)
    pairs, problems = pair(specs, [("pixels", _sample((3, 4), "x['pixels']"))], "dict", "x")
    assert [s.name for s, _ in pairs] == ["pixels"] and problems == []
    pairs, [p] = pair(specs, [("image", _sample((3, 4), "x['image']"))], "dict", "x")
    assert pairs == [] and p.code == "GT204" and p.severity == "error"
    assert "'pixels'" in p.expected and "'image'" in p.found and "{'pixels': ...}" in p.fix
