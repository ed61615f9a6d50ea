"""The per-step statistics computed again, independently, in NumPy.

One reference for the step (``tests/test_step.py``, real Keras steps) and for the host-side
summary (``tests/test_stats.py``, ``guardtrain.core.stats``). It starts from explicit
arrays — each replica's gradients of its LOCAL mean loss, the weights before and after the
step — and follows the history column table of docs/architecture.md literally: norms of
concatenated vectors (``np.linalg.norm``), per-layer concatenations, ``np.median``. The
package works from per-variable sums of squares instead, so a slip there is not repeated
here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from guardtrain.core.stats import REPLICA_NORMS

#: Columns compared exactly (flags and indices); every other is compared with a tolerance.
EXACT = ("finite", "grad_norm_argmin", "measured")


def _norm(arrays) -> float:
    """The 2-norm of all entries of ``arrays`` as one vector."""
    return float(np.linalg.norm(np.concatenate([np.ravel(a) for a in arrays])))


def step_row(local_grads: Sequence[Sequence[np.ndarray]], weights_before: Sequence[np.ndarray],
             weights_after: Sequence[np.ndarray], layer_of_var: Sequence[int], *,
             loss: float) -> dict:
    """The statistics of one step.

    Args:
        local_grads: ``local_grads[r][v]``, replica r's gradient of its own mean loss for
            trainable variable v (not divided by the replica count).
        weights_before: each variable before the step, ``w_{t-1}``.
        weights_after: each variable after it, ``w_t``.
        layer_of_var: the layer index of each variable (0 = first).
        loss: the step's loss over the global batch.

    Returns:
        One value per history column, plus ``REPLICA_NORMS`` (each replica's norm).
    """
    n_layers = max(layer_of_var) + 1

    def of_layer(arrays, layer):
        return [a for a, owner in zip(arrays, layer_of_var) if owner == layer]

    norms = np.array([_norm(g) for g in local_grads])
    update = [np.asarray(a, np.float64) - b for a, b in zip(weights_after, weights_before)]
    ratios = np.array([_norm(of_layer(update, layer)) / _norm(of_layer(weights_before, layer))
                       for layer in range(n_layers)])
    zeros = sum(int(np.sum(np.asarray(g) == 0)) for grads in local_grads for g in grads)
    entries = len(local_grads) * sum(np.size(w) for w in weights_before)
    return {
        "loss": loss,
        "grad_norm_min": norms.min(), "grad_norm_mean": norms.mean(),
        "grad_norm_max": norms.max(), "grad_norm_argmin": int(np.argmin(norms)),
        "update_norm": _norm(update), "weight_norm": _norm(weights_before),
        "update_ratio": _norm(update) / _norm(weights_before),
        "layer_ratio_min": ratios.min(), "layer_ratio_median": np.median(ratios),
        "layer_ratio_max": ratios.max(),
        # each replica's own first / last layer norm, averaged over the replicas
        "grad_first": np.mean([_norm(of_layer(g, 0)) for g in local_grads]),
        "grad_last": np.mean([_norm(of_layer(g, n_layers - 1)) for g in local_grads]),
        "zero_grad_fraction": zeros / entries,
        "finite": True,
        "measured": True,
        REPLICA_NORMS: norms,
    }


def stack(rows: Sequence[dict]) -> dict[str, np.ndarray]:
    """Rows of ``step_row`` -> one array per column (``REPLICA_NORMS``: ``[steps, R]``)."""
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def assert_stats_equal(got, want, *, rtol: float, atol: float = 0.0,
                       columns: Sequence[str] | None = None) -> None:
    """Every column of ``want`` (or ``columns``) and ``REPLICA_NORMS``: flags and the
    argmin exactly, the figures to ``rtol``/``atol``. The message names the column."""
    for key in columns or [k for k in want if k != REPLICA_NORMS]:
        if key in EXACT:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol, err_msg=key)
    np.testing.assert_allclose(got[REPLICA_NORMS], want[REPLICA_NORMS], rtol=rtol, atol=atol,
                               err_msg=REPLICA_NORMS)
