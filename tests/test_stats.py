"""``guardtrain.core.stats``: the host-side summary of a chunk, against an independent NumPy route.

The raw figures a replica ships (``[loss / R, sum of squares of each variable's gradient of
that scaled loss, zero count per variable]``) are built here from explicit per-variable
gradient arrays; the expected columns are computed from the same arrays by
``tests/reference_stats.py`` (norms of concatenated vectors, per-layer concatenations),
never from sums of squares.
"""

import subprocess
import sys

import numpy as np
import pytest

from guardtrain.core.stats import REPLICA_NORMS, STAT_COLUMNS, VarLayout, summarise_chunk
from tests import reference_stats as reference

pytestmark = pytest.mark.pure

# Three layers: layer 0 owns variables 0 and 1, layer 1 variable 2, layer 2 variables 3, 4.
LAYOUT = VarLayout(layer_of_var=(0, 0, 1, 2, 2), var_sizes=(6, 2, 4, 3, 1),
                   layer_names=("dense", "dense_1", "dense_2"))


def _raw_chunk(grads, local_losses, weights_before, weights_after, layout):
    """The arrays a chunk ships, from explicit tensors.

    grads[s][r][v]: gradient of replica r's LOCAL mean loss at step s for variable v.
    local_losses[s][r]: replica r's local mean loss. weights_*[s][v]: the variables.
    """
    steps, reps = len(grads), len(grads[0])
    v = layout.num_vars
    replica = np.zeros((steps, reps, 1 + 2 * v))
    shared = np.zeros((steps, 2 * v))
    for s in range(steps):
        for r in range(reps):
            # What the device sees: the loss and its gradients divided by the replica count.
            scaled = [g / reps for g in grads[s][r]]
            replica[s, r, 0] = local_losses[s][r] / reps
            replica[s, r, 1:1 + v] = [np.sum(np.square(g)) for g in scaled]
            replica[s, r, 1 + v:] = [np.sum(g == 0) for g in scaled]
        shared[s, :v] = [np.sum(np.square(a - b))
                         for a, b in zip(weights_after[s], weights_before[s])]
        shared[s, v:] = [np.sum(np.square(b)) for b in weights_before[s]]
    return replica, shared


def _expected(grads, local_losses, weights_before, weights_after, layout):
    """The reference, step by step; the loss of a step is the mean of the replicas'."""
    return reference.stack([
        reference.step_row(grads[s], weights_before[s], weights_after[s], layout.layer_of_var,
                           loss=np.mean(local_losses[s]))
        for s in range(len(grads))])


def _random_chunk(rng, steps, reps, layout=LAYOUT, zero_some=True):
    shapes = [(s,) for s in layout.var_sizes]
    grads = [[[rng.normal(size=sh) for sh in shapes] for _ in range(reps)] for _ in range(steps)]
    if zero_some:   # a few exactly-zero entries (dead units)
        grads[0][0][0][:3] = 0.0
        grads[-1][reps - 1][2][:] = 0.0
    losses = rng.uniform(0.5, 2.0, size=(steps, reps))
    before = [[rng.normal(size=sh) for sh in shapes] for _ in range(steps)]
    after = [[b + rng.normal(scale=10.0 ** -(i % 3 + 1), size=b.shape) for i, b in enumerate(w)]
             for w in before]
    return grads, losses, before, after


@pytest.mark.parametrize("reps", [1, 2, 3])
def test_summary_equals_independent_numpy(reps):
    rng = np.random.default_rng(reps)
    chunk = _random_chunk(rng, steps=4, reps=reps)
    got = summarise_chunk(*_raw_chunk(*chunk, LAYOUT), LAYOUT)
    want = _expected(*chunk, LAYOUT)
    assert set(got) == set(STAT_COLUMNS) | {REPLICA_NORMS}
    for key in STAT_COLUMNS:
        assert got[key].shape == (4,), key
    reference.assert_stats_equal(got, want, rtol=1e-12, columns=STAT_COLUMNS)
    assert got["grad_norm_argmin"].dtype.kind == "i"
    assert got[REPLICA_NORMS].shape == (4, reps)


def test_zero_fraction_counts_zero_entries_of_every_replica():
    rng = np.random.default_rng(7)
    grads, losses, before, after = _random_chunk(rng, steps=1, reps=2, zero_some=False)
    grads[0][1] = [np.zeros_like(g) for g in grads[0][1]]      # replica 1: all zero
    got = summarise_chunk(*_raw_chunk(grads, losses, before, after, LAYOUT), LAYOUT)
    assert got["zero_grad_fraction"][0] == pytest.approx(0.5)
    assert got["grad_norm_min"][0] == 0.0
    assert got["grad_norm_argmin"][0] == 1


def test_grad_norms_do_not_change_with_the_replica_count():
    """Each replica's norm is of its local mean loss: R replicas holding the same local
    gradient report the same norm as one replica with that gradient."""
    rng = np.random.default_rng(3)
    grads, losses, before, after = _random_chunk(rng, steps=2, reps=1, zero_some=False)
    one = summarise_chunk(*_raw_chunk(grads, losses, before, after, LAYOUT), LAYOUT)
    for reps in (2, 4):
        many_grads = [[step[0]] * reps for step in grads]
        many_losses = np.repeat(losses, reps, axis=1)
        many = summarise_chunk(*_raw_chunk(many_grads, many_losses, before, after, LAYOUT),
                               LAYOUT)
        for key in ("loss", "grad_norm_min", "grad_norm_mean", "grad_norm_max",
                    "grad_first", "grad_last"):
            np.testing.assert_allclose(many[key], one[key], rtol=1e-12, err_msg=key)
        np.testing.assert_allclose(many[REPLICA_NORMS],
                                   np.repeat(one[REPLICA_NORMS], reps, axis=1), rtol=1e-12)


def test_layers_group_variables_and_median_is_over_layers():
    """Hand-made: per-layer update / weight norms give ratios 0.1, 3.0, 0.5 (median 0.5,
    mean 1.2), and a layer's norm is over ALL its variables, not per variable."""
    v = LAYOUT.num_vars
    # layer 0: weight sq 9 + 16 = 25 (norm 5), update sq 0.09 + 0.16 = 0.25 (norm 0.5) -> 0.1
    # layer 1: weight sq 4 (norm 2), update sq 36 (norm 6) -> 3.0
    # layer 2: weight sq 1 + 3 = 4 (norm 2), update sq 0.5 + 0.5 = 1 (norm 1) -> 0.5
    update_sq = [0.09, 0.16, 36.0, 0.5, 0.5]
    weight_sq = [9.0, 16.0, 4.0, 1.0, 3.0]
    shared = np.array([update_sq + weight_sq])
    replica = np.zeros((1, 1, 1 + 2 * v))
    replica[0, 0, 1:1 + v] = [1.0, 3.0, 4.0, 9.0, 16.0]   # layer grads: 2, 2, 5
    got = summarise_chunk(replica, shared, LAYOUT)
    assert got["layer_ratio_min"][0] == pytest.approx(0.1)
    assert got["layer_ratio_median"][0] == pytest.approx(0.5)
    assert got["layer_ratio_max"][0] == pytest.approx(3.0)
    assert got["grad_first"][0] == pytest.approx(2.0)
    assert got["grad_last"][0] == pytest.approx(5.0)
    assert got["update_norm"][0] == pytest.approx(np.sqrt(sum(update_sq)))
    assert got["weight_norm"][0] == pytest.approx(np.sqrt(25.0 + 4.0 + 4.0))


def test_median_of_an_even_number_of_layers_is_the_middle_mean():
    layout = VarLayout(layer_of_var=(0, 1, 2, 3), var_sizes=(1, 1, 1, 1),
                       layer_names=("a", "b", "c", "d"))
    ratios = np.array([0.4, 0.1, 10.0, 0.2])
    shared = np.array([list(np.square(ratios)) + [1.0] * 4])
    got = summarise_chunk(np.zeros((1, 1, 9)), shared, layout)
    assert got["layer_ratio_median"][0] == pytest.approx(0.3)
    assert got["layer_ratio_min"][0] == pytest.approx(0.1)
    assert got["layer_ratio_max"][0] == pytest.approx(10.0)


def test_nan_makes_the_step_not_finite_and_argmin_stays_defined():
    v = LAYOUT.num_vars
    steps, reps = 4, 3
    replica = np.ones((steps, reps, 1 + 2 * v))
    replica[:, :, 1 + v:] = 0.0
    replica[:, 1, 1:1 + v] = 0.25         # replica 1: the smallest norm everywhere
    shared = np.ones((steps, 2 * v))
    replica[0, 1, 3] = np.nan             # step 0: replica 1's gradient is NaN
    replica[1, :, 0] = np.nan             # step 1: the loss is NaN
    shared[2, v + 1] = np.inf             # step 2: a weight is infinite
    replica[3, :, 2] = np.nan             # step 3: every replica's gradient is NaN
    got = summarise_chunk(replica, shared, LAYOUT)
    np.testing.assert_array_equal(got["finite"], [False, False, False, False])
    argmin = got["grad_norm_argmin"]
    assert argmin.dtype.kind == "i"
    assert argmin[0] in (0, 2)            # the NaN replica is never the argmin
    assert argmin[1] == 1 and argmin[2] == 1
    assert 0 <= argmin[3] < reps          # all NaN: still a valid replica index
    # A clean step in the same chunk stays finite.
    clean = summarise_chunk(np.ones((1, reps, 1 + 2 * v)), np.ones((1, 2 * v)), LAYOUT)
    assert clean["finite"][0]


def test_zero_weights_give_a_finite_huge_ratio():
    v = LAYOUT.num_vars
    shared = np.zeros((1, 2 * v))
    shared[0, :v] = 1e-4
    got = summarise_chunk(np.zeros((1, 1, 1 + 2 * v)), shared, LAYOUT)
    assert np.isfinite(got["update_ratio"][0]) and got["update_ratio"][0] > 1e6
    assert np.isfinite(got["layer_ratio_max"][0])


def test_var_layout_per_layer_sums_variables_into_layers():
    per_var = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)
    got = LAYOUT.per_layer(per_var)
    assert got.shape == (2, 3, 3)
    np.testing.assert_array_equal(got[..., 0], per_var[..., 0] + per_var[..., 1])
    np.testing.assert_array_equal(got[..., 1], per_var[..., 2])
    np.testing.assert_array_equal(got[..., 2], per_var[..., 3] + per_var[..., 4])
    assert (LAYOUT.num_vars, LAYOUT.num_layers) == (5, 3)


def test_var_layout_per_layer_with_interleaved_owners():
    layout = VarLayout(layer_of_var=(1, 0, 1), var_sizes=(1, 1, 1), layer_names=("a", "b"))
    np.testing.assert_array_equal(layout.per_layer(np.array([1.0, 10.0, 100.0])), [10.0, 101.0])


def test_stats_module_imports_no_tensorflow():
    code = ("import sys, guardtrain.core.stats; "
            "bad = [m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_layer_median_equals_numpy_median_on_odd_even_and_nan_rows():
    from guardtrain.core.stats import median_last

    rng = np.random.default_rng(3)
    for k in range(1, 7):
        a = rng.random((9, k))
        a[2] = np.nan
        a[4, 0] = np.nan
        np.testing.assert_array_equal(median_last(a), np.median(a, axis=-1))
    assert np.isnan(median_last(np.zeros(0)))      # a chunk with no measured step


def test_var_layout_per_layer_with_a_layer_without_variables():
    # Layer 1 owns nothing (a public VarLayout may say so): its sum is 0, not a neighbour's.
    layout = VarLayout(layer_of_var=(0, 2, 2), var_sizes=(1, 1, 1), layer_names=("a", "b", "c"))
    np.testing.assert_array_equal(layout.per_layer(np.array([[1.0, 2.0, 3.0]])),
                                  [[1.0, 0.0, 5.0]])
    last_empty = VarLayout(layer_of_var=(0, 0), var_sizes=(1, 1), layer_names=("a", "b"))
    np.testing.assert_array_equal(last_empty.per_layer(np.array([1.0, 2.0])), [3.0, 0.0])
