"""Dtypes (GT220-GT223) and values (GT230-GT234), on bounded samples."""

import time

import numpy as np
import pytest

from guardtrain.checking import sources
from guardtrain.checking.dtypes import check_feature_dtype, check_label_dtype
from guardtrain.checking.specs import InputSpec
from guardtrain.checking.values import check_constant, check_finite, check_scale
from tests.helpers import sample


@pytest.mark.pure
def test_string_and_object_features():
    [p] = check_feature_dtype(sample(np.array([["a", "b"], ["c", "d"]])))
    assert p.code == "GT220" and "StringLookup" in p.fix and "'a'" in p.found
    numbers_as_objects = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object)
    [p] = check_feature_dtype(sample(numbers_as_objects))
    assert p.code == "GT220" and "x.astype('float32')" in p.fix
    [p] = check_feature_dtype(sample(np.array(["2024-01-01"], dtype="datetime64[D]")))
    assert p.code == "GT220"


@pytest.mark.pure
def test_bool_features_warn():
    [p] = check_feature_dtype(sample(np.array([[True, False], [False, True]])))
    assert p.code == "GT221" and p.severity == "warning"


@pytest.mark.pure
def test_integer_features_warn_unless_the_input_takes_integers():
    x = sample(np.arange(12).reshape(6, 2))
    [p] = check_feature_dtype(x)
    assert p.code == "GT222" and p.severity == "warning" and "Embedding" in p.fix
    embedded = InputSpec("tokens", (None, 2), "int32", takes_integers=True)
    assert check_feature_dtype(x, embedded) == []
    assert check_feature_dtype(sample(np.zeros((3, 2), "float32"))) == []


@pytest.mark.pure
def test_labels_of_the_wrong_kind():
    [p] = check_label_dtype(sample(np.array(["cat", "dog", "cat"]), where="y"))
    assert p.code == "GT223" and "np.unique(y, return_inverse=True)" in p.fix
    assert check_label_dtype(sample(np.array([0, 1, 2]), where="y")) == []


@pytest.mark.pure
def test_nan_and_inf_in_features_counted_with_first_rows():
    x = np.random.rand(100, 3)
    x[7, 1], x[42, 0], x[42, 2] = np.nan, np.inf, np.nan
    [p] = check_finite(sample(x))
    assert p.code == "GT230"
    assert "2 NaN and 1 Inf in 2 rows" in p.found and "first rows: 7, 42" in p.found
    assert check_finite(sample(np.random.rand(10, 3))) == []


@pytest.mark.pure
def test_nan_in_labels_with_sampled_row_indices():
    y = np.array([0.0, np.nan, 1.0])
    [p] = check_finite(sample(y, where="y", n_total=3000, indices=np.array([0, 1500, 2999])),
                       labels=True)
    assert p.code == "GT231" and "first rows: 1500" in p.found
    assert "a sample of 3 of 3,000 rows" in p.found


@pytest.mark.pure
def test_all_constant_input_is_an_error():
    [p] = check_constant(sample(np.full((50, 4), 0.5)))
    assert p.code == "GT232" and p.severity == "error" and "0.5" in p.found
    assert check_constant(sample(np.random.rand(50, 4))) == []


@pytest.mark.pure
def test_constant_columns_warn_with_names():
    x = np.random.rand(50, 4)
    x[:, 2] = 1.0
    [p] = check_constant(sample(x, columns=("a", "b", "c", "d")))
    assert p.code == "GT233" and p.severity == "warning" and "'c'" in p.found
    assert "1 of 4 columns" in p.found
    images = np.random.rand(10, 8, 8, 1)
    images[:, 0, 0, 0] = 0          # constant border pixels are normal in images
    assert check_constant(sample(images)) == []


@pytest.mark.pure
def test_unscaled_inputs_warn_with_hint():
    [p] = check_scale(sample(np.random.randint(0, 256, (20, 5)).astype("float32")))
    assert p.code == "GT234" and p.severity == "warning" and "/ 255.0" in p.fix
    [p] = check_scale(sample(np.random.rand(20, 3) * 5000))
    assert "standardise" in p.fix
    assert check_scale(sample(np.random.rand(20, 3))) == []


@pytest.mark.pure
def test_large_array_is_sampled_not_scanned():
    x = np.lib.stride_tricks.as_strided(np.zeros(1, "float32"), (2_000_000, 784), (0, 0))
    problems = []
    start = time.perf_counter()
    sample = sources._sample_array(x, "x", sources.MAX_ROWS, problems)
    assert time.perf_counter() - start < 0.5
    assert sample.rows.shape == (10_000, 784) and not sample.complete
    assert "a sample of 10,000 of 2,000,000 rows" in sample.describe()
    labels = sources._sample_array(np.zeros(500_000), "y", sources.MAX_ROWS, problems)
    assert labels.complete            # 1-D labels fit in the element budget: read whole
