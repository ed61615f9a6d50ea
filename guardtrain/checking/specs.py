"""What the checks read: plain descriptions of the model and bounded samples of the data.

The checks take these, never a ``keras.Model`` or a ``tf.data.Dataset``, so each of them
is a pure function tested in milliseconds. ``model_spec.describe`` and ``sources.load``
build them from the real objects.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["LossSpec", "InputSpec", "OutputSpec", "ModelSpec", "Sample", "Inputs"]

#: Loss kinds the label checks know.
SPARSE, CATEGORICAL, BINARY, REGRESSION, UNKNOWN = (
    "sparse_categorical", "categorical", "binary", "regression", "unknown")
CLASSIFICATION = (SPARSE, CATEGORICAL, BINARY)


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A loss as the label checks see it.

    Args:
        kind: one of ``sparse_categorical``, ``categorical``, ``binary``, ``regression``,
            ``unknown`` (a custom loss: label checks are skipped).
        name: the loss as the user gave it, for messages.
        from_logits: whether it expects logits rather than probabilities.
        ignore_class: a label id the loss skips (``ignore_class=`` of the sparse loss).
        label_smoothing: the cross-entropies' ``label_smoothing``.
        delta: the Huber loss's ``delta``.
        reduction: the loss's ``reduction`` (a per-sample mean unless ``"sum"``/``None``).
    """

    kind: str
    name: str
    from_logits: bool = False
    ignore_class: int | None = None
    label_smoothing: float = 0.0
    delta: float = 1.0
    reduction: str | None = "sum_over_batch_size"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input.

    Args:
        name: the input's name (the key of a dict ``x``).
        shape: the full shape with the batch axis, e.g. ``(None, 28, 28, 1)``.
        dtype: the input's dtype name.
        takes_integers: an integer input, or one read by an ``Embedding``/lookup layer.
    """

    name: str
    shape: tuple
    dtype: str = "float32"
    takes_integers: bool = False


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One model output.

    Args:
        name: the output's name (the key of a dict ``y``).
        shape: the full shape with the batch axis, e.g. ``(None, 10)``.
        activation: ``"softmax"``, ``"sigmoid"``, ``"linear"``, another name, or ``None``
            when unknown.
        loss: the loss applied to it, or ``None``.
        loss_weight: its ``loss_weights`` entry (1.0 when not given).
    """

    name: str
    shape: tuple
    activation: str | None = None
    loss: LossSpec | None = None
    loss_weight: float = 1.0

    @property
    def width(self) -> int | None:
        return self.shape[-1] if len(self.shape) > 1 else 1


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model as the checks see it. Empty ``inputs``/``outputs`` mean unknown."""

    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    input_structure: str = "single"      # "single", "list" or "dict"
    compiled: bool = True
    has_loss: bool = True
    built: bool = True
    n_weights: int = 1
    n_trainable: int = 1
    lr_schedule: str | None = None       # class name of a LearningRateSchedule
    own_train_step: str | None = None    # class name of a model that overrides train_step
    jit_compile: bool = False            # the step is compiled with XLA (model.jit_compile)
    masked: bool = False                 # a Masking layer or mask_zero=True: masked losses


@dataclasses.dataclass
class Sample:
    """A bounded sample of one array of the data.

    Args:
        where: how messages name it: ``"x"``, ``"x['image']"``, ``"y"``.
        rows: the sampled rows (axis 0 = samples).
        n_total: rows in the whole data; ``None`` when unknown (a dataset).
        indices: the row index of each sampled row in the whole data; ``None`` when the
            rows are the first ones (a dataset or a Parquet head).
        columns: names of the feature columns (Parquet), for messages.
    """

    where: str
    rows: np.ndarray
    n_total: int | None = None
    indices: np.ndarray | None = None
    columns: tuple[str, ...] | None = None

    @property
    def complete(self) -> bool:
        return self.n_total is not None and len(self.rows) == self.n_total

    @property
    def shape(self) -> tuple:
        """The shape of the whole data (sample count first, ``None`` when unknown)."""
        return (self.n_total,) + tuple(self.rows.shape[1:])

    def row_index(self, i) -> Any:
        """The index in the whole data of sampled row(s) ``i``."""
        return self.indices[i] if self.indices is not None else i

    def column_name(self, j: int) -> str:
        """How messages name feature column ``j``."""
        return repr(self.columns[j]) if self.columns else str(j)

    def describe(self) -> str:
        """``"all 100 rows"`` or ``"a sample of 10,000 of 1,000,000 rows"``, for messages."""
        if self.complete:
            return f"all {len(self.rows):,} rows"
        total = f"{self.n_total:,}" if self.n_total is not None else "an unknown number of"
        return f"a sample of {len(self.rows):,} of {total} rows"


@dataclasses.dataclass
class Inputs:
    """The data of one ``check`` call, sampled.

    Args:
        kind: ``"arrays"``, ``"dataset"``, ``"dataset_fn"`` or ``"parquet"``.
        x: ``(key, Sample)`` per feature array; key is a name (dict ``x``), a position
            (list ``x``) or ``None`` (a single array).
        y: the same for labels.
        structure: ``"single"``, ``"list"`` or ``"dict"`` for ``x``.
        y_structure: the same for ``y``.
        n_rows: samples in the whole data, ``None`` when unknown.
        batch: the observed batch of a dataset (its global batch), else ``None``.
        source: the object the user passed (kept for the dispatch checks).
    """

    kind: str
    x: list = dataclasses.field(default_factory=list)
    y: list = dataclasses.field(default_factory=list)
    structure: str = "single"
    y_structure: str = "single"
    n_rows: int | None = None
    batch: int | None = None
    source: Any = None
