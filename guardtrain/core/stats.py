"""The per-step health statistics: names, and their host-side summary.

The step (``guardtrain/engine/step.py``) computes only sums of squares and counts per
variable on the device — the cheapest exact form — and ships them to the host once per
chunk. Here, in NumPy, they become the history columns (docs/architecture.md, "What the
loop measures"). Keeping this part pure means every figure the guard reads is checked in
milliseconds against an independent computation.

Pure module: NumPy only, no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import numpy as np

__all__ = ["STAT_COLUMNS", "NORM_COLUMNS", "VarLayout", "median_last", "summarise_chunk"]

#: The statistics of one step, in history order (docs/architecture.md, "What the loop
#: measures").
STAT_COLUMNS: tuple[str, ...] = (
    "loss",
    "grad_norm_min", "grad_norm_mean", "grad_norm_max", "grad_norm_argmin",
    "update_norm", "weight_norm", "update_ratio",
    "layer_ratio_min", "layer_ratio_median", "layer_ratio_max",
    "grad_first", "grad_last",
    "zero_grad_fraction",
    "finite",
    "measured",
)

#: The columns measured only on the steps ``stats_every`` picks (the rest: every step).
NORM_COLUMNS: tuple[str, ...] = tuple(
    c for c in STAT_COLUMNS if c not in ("loss", "finite", "measured"))

#: Extra per-step array handed to the guard (not a history column): each replica's own
#: gradient norm, shape ``[steps, replicas]``, replicas in global order.
REPLICA_NORMS = "grad_norm_replicas"

# A weight norm of exactly 0 (all-zero init) would make the ratio undefined; this floor
# keeps it finite and huge instead, which is what such a first step is.
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class VarLayout:
    """How the trainable variables group into layers.

    Args:
        layer_of_var: for each trainable variable, the index of its layer (0 = first).
        var_sizes: number of entries in each trainable variable.
        layer_names: name of each layer, in order.
    """

    layer_of_var: tuple[int, ...]
    var_sizes: tuple[int, ...]
    layer_names: tuple[str, ...]

    @property
    def num_vars(self) -> int:
        return len(self.layer_of_var)

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)

    def per_layer(self, per_var: np.ndarray) -> np.ndarray:
        """Sums ``[..., V]`` per-variable figures into ``[..., L]`` per-layer figures."""
        grouping = self._grouping
        if grouping is None:        # a layer without variables: sum layer by layer
            out = np.zeros(per_var.shape[:-1] + (self.num_layers,), dtype=np.float64)
            for v, layer in enumerate(self.layer_of_var):
                out[..., layer] += per_var[..., v]
            return out
        order, starts = grouping
        grouped = per_var if order is None else per_var[..., order]
        # One reduceat, not an add per variable: this runs on every chunk. A NaN stays in
        # its own layer (a matrix product would spread it to all).
        return np.add.reduceat(np.asarray(grouped, np.float64), starts, axis=-1)

    @functools.cached_property
    def _grouping(self) -> tuple[np.ndarray | None, np.ndarray] | None:
        """Variables sorted by layer (None when they already are) and where each layer
        starts in that order; None when some layer has no variable (reduceat cannot
        give an empty group)."""
        layers = np.asarray(self.layer_of_var, dtype=np.int64)
        if set(layers.tolist()) != set(range(self.num_layers)):
            return None
        order = np.argsort(layers, kind="stable")
        starts = np.searchsorted(layers[order], np.arange(self.num_layers))
        return (None if (order == np.arange(len(order))).all() else order), starts


def median_last(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)`` at a fifth of its cost on a few columns (NaN in, NaN out)."""
    a = np.asarray(a, np.float64)
    k = a.shape[-1]
    if k == 0:
        return np.full(a.shape[:-1], np.nan)
    s = np.sort(a, axis=-1)          # NaN sorts last; the last column says if any
    mid = s[..., k // 2] if k % 2 else 0.5 * (s[..., k // 2 - 1] + s[..., k // 2])
    return np.where(np.isnan(s[..., -1]), np.nan, mid)


def summarise_chunk(replica: np.ndarray, shared: np.ndarray, layout: VarLayout,
                    measured: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Turns the raw figures of one chunk into the §3 columns.

    Args:
        replica: ``[steps, replicas, 1 + 2V]``, per replica: the loss of the step as the
            replica saw it (its local mean loss already divided by the replica count, as
            Keras scales it under a strategy), then the sum of squares of each variable's
            gradient of that scaled loss, then the count of exactly-zero gradient entries
            per variable.
        shared: ``[steps, 2V]``, the same on every replica: the sum of squares of each
            variable's update ``w_t - w_{t-1}``, then of each variable before the step.
        layout: the variable-to-layer grouping.
        measured: ``[steps]`` bool, the steps whose norms were measured (default: all).
            The figures of the others are NaN and only their loss is read.

    Returns:
        A dict of the ``STAT_COLUMNS`` (each ``[steps]``) plus ``REPLICA_NORMS``. On steps
        not measured, the ``NORM_COLUMNS`` are NaN (``grad_norm_argmin`` -1) and
        ``finite`` is the loss's.
    """
    replica = np.asarray(replica, dtype=np.float64)
    shared = np.asarray(shared, dtype=np.float64)
    v = layout.num_vars
    n_rep = replica.shape[1]
    scaled_loss = replica[:, :, 0]
    grad_sq = replica[:, :, 1:1 + v]
    zeros = replica[:, :, 1 + v:1 + 2 * v]
    update_sq = shared[:, :v]
    weight_sq = shared[:, v:2 * v]

    # Gradients are of the loss divided by the replica count: multiply back so a norm
    # does not change with the number of replicas (docs/architecture.md, "What the loop
    # measures").
    rep_norms = n_rep * np.sqrt(grad_sq.sum(axis=-1))
    layer_grad = n_rep * np.sqrt(layout.per_layer(grad_sq))          # [steps, R, L]
    layer_update = np.sqrt(layout.per_layer(update_sq))              # [steps, L]
    layer_weight = np.sqrt(layout.per_layer(weight_sq))
    layer_ratio = layer_update / np.maximum(layer_weight, _EPS)
    update_norm = np.sqrt(update_sq.sum(axis=-1))
    weight_norm = np.sqrt(weight_sq.sum(axis=-1))
    loss = scaled_loss.sum(axis=-1)
    total_entries = float(sum(layout.var_sizes)) * n_rep
    measured = (np.ones(len(loss), bool) if measured is None
                else np.asarray(measured, bool).reshape(len(loss)))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(loss) & (~measured | (
            np.isfinite(rep_norms).all(axis=-1) & np.isfinite(update_norm)
            & np.isfinite(weight_norm)))
    argmin = np.argmin(np.where(np.isnan(rep_norms), np.inf, rep_norms), axis=-1)
    return {
        "loss": loss,
        "grad_norm_min": rep_norms.min(axis=-1),
        "grad_norm_mean": rep_norms.mean(axis=-1),
        "grad_norm_max": rep_norms.max(axis=-1),
        "grad_norm_argmin": np.where(measured, argmin, -1).astype(np.int64),
        "update_norm": update_norm,
        "weight_norm": weight_norm,
        "update_ratio": update_norm / np.maximum(weight_norm, _EPS),
        "layer_ratio_min": layer_ratio.min(axis=-1),
        "layer_ratio_median": median_last(layer_ratio),
        "layer_ratio_max": layer_ratio.max(axis=-1),
        # Mean over replicas of each replica's own first/last-layer norm: exact on one
        # replica, and needs no extra communication on many.
        "grad_first": layer_grad[:, :, 0].mean(axis=-1),
        "grad_last": layer_grad[:, :, -1].mean(axis=-1),
        "zero_grad_fraction": zeros.sum(axis=(1, 2)) / max(total_entries, 1.0),
        "finite": finite,
        "measured": measured,
        REPLICA_NORMS: rep_norms,
    }


def concat_chunks(chunks: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Joins consecutive chunk summaries (e.g. to form the guard's window)."""
    if not chunks:
        return {}
    return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}
