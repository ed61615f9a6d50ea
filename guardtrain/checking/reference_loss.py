"""The reference loss of a run, from the labels ``check`` sampled (``core.reference``).

Computed on the driver before dispatch, and only from labels that stand for the whole
data: all of them, or rows spread evenly over all of them. The first batches of a dataset
may hold one class only (data sorted by label), and a reference from them would call a
learning run "no progress"; so a dataset read in part has no reference, and the guard then
never judges NO_PROGRESS (docs/architecture.md, "Guard verdicts").
"""

from __future__ import annotations

from guardtrain.checking import shapes
from guardtrain.checking.specs import Inputs, ModelSpec
from guardtrain.core.reference import OutputLoss, Reference, canonical_loss, reference_loss

__all__ = ["reference_for"]

# Keras's reductions that give a per-sample mean, as the reference is.
_MEANS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
# With fewer sampled labels per class than this, the sample's entropy is biased low.
_ROWS_PER_CLASS = 50


def reference_for(spec: ModelSpec | None, inputs: Inputs | None) -> tuple[Reference | None, str]:
    """The constant-prediction reference, or None and why there is none.

    Returns:
        ``(reference, "")``, or ``(None, note)`` where the note says what is missing.
    """
    if spec is None or not spec.outputs or inputs is None or not inputs.y:
        return None, "no reference loss: the labels or the model's outputs are unknown"
    if spec.masked:
        return None, ("no reference loss: the model masks positions (a masked loss averages "
                      "over the unmasked ones only): NO_PROGRESS is not judged")
    where_y = inputs.y[0][1].where.split("[")[0]
    pairs, problems = shapes.pair(spec.outputs, inputs.y, inputs.y_structure, where_y,
                                  what="output")
    if problems or len(pairs) != len(spec.outputs) or any(o is None for o, _ in pairs):
        return None, "no reference loss: the labels could not be matched to the outputs"
    outs, labels = [], []
    for output, sample in pairs:
        loss = output.loss
        if loss is None or canonical_loss(loss.name) is None or loss.ignore_class is not None:
            name = loss.name if loss is not None else "no loss"
            return None, (f"no reference loss for {name} (known: cross-entropies, MSE, MAE, "
                          f"Huber): NO_PROGRESS is not judged")
        if loss.reduction not in _MEANS:
            return None, (f"no reference loss for {loss.name}(reduction={loss.reduction!r}): "
                          "the training loss is not a per-sample mean: NO_PROGRESS is not "
                          "judged")
        if not (sample.complete or sample.indices is not None):
            return None, ("no reference loss: only the first batches of the labels were "
                          "read, which need not show every class: NO_PROGRESS is not judged")
        width = output.width or 1
        if not sample.complete and width > len(sample.rows) / _ROWS_PER_CLASS:
            # The entropy of a sample's class frequencies is low by about (K-1)/(2N): with
            # many classes and a sample, a healthy run could sit "above" the reference.
            return None, (f"no reference loss: {width} classes and a sample of "
                          f"{len(sample.rows):,} labels: NO_PROGRESS is not judged")
        outs.append(OutputLoss(loss.name, width=output.width,
                               label_smoothing=loss.label_smoothing, delta=loss.delta,
                               weight=output.loss_weight))
        labels.append(sample.rows)
    total = pairs[0][1].n_total
    reference = reference_loss(outs, labels, total_rows=total)
    if reference is None:
        return None, "no reference loss: the labels do not fit the loss"
    return reference, ""
