"""How the report and the plot write numbers and rescue changes.

A change is built from a decision's or an attempt's fields (``optimizer_from``,
``optimizer_to``, ``learning_rate_from``, ``learning_rate_to``, ``fresh_optimizer_state``),
never cut out of its ``summary`` sentence, which is for people only
(docs/architecture.md, "Rescue").

Example:

>>> change_label("sgd", "adam", 1e-6, 1e-3, short=True)
'sgd -> adam, lr 1e-06 -> 1e-03'
>>> change_label("sgd", "sgd", 1e-6, 1e-2)
'learning_rate 1.0e-06 -> 1.0e-02'
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["change_label", "decision_label", "lr_text", "num_text"]


def lr_text(value) -> str:
    """A learning rate as ``1.0e-03``; ``?`` when unknown."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "?"
    return "?" if not math.isfinite(value) else f"{value:.1e}"


def num_text(value) -> str:
    """A figure with 4 significant digits, in scientific notation when tiny or huge."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return str(value)
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.2e}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4g}"


def _short_lr(value) -> str:
    """``1e-06`` for a round rate, ``2.5e-04`` otherwise (a plot label has little room)."""
    text = lr_text(value)
    return text.replace(".0e", "e") if text != "?" else text


def change_label(optimizer_from: str | None, optimizer_to: str | None,
                 learning_rate_from: float | None, learning_rate_to: float | None, *,
                 fresh_optimizer_state: bool = False, short: bool = False) -> str:
    """What an adjustment changed, from its fields.

    Args:
        optimizer_from, optimizer_to: the optimizer before and after (``None``: unknown).
        learning_rate_from, learning_rate_to: the rate before and after.
        fresh_optimizer_state: the new attempt did not keep the snapshot's optimizer state.
        short: the plot's form (``sgd -> adam, lr 1e-06 -> 1e-03``) instead of the
            report's (``optimizer sgd -> adam, learning_rate 1.0e-06 -> 1.0e-03, fresh
            optimizer state``).

    Returns:
        The label; ``"no change"`` when the fields say nothing moved.
    """
    parts = []
    if optimizer_to is not None and optimizer_from not in (None, optimizer_to):
        parts.append(f"{optimizer_from} -> {optimizer_to}" if short
                     else f"optimizer {optimizer_from} -> {optimizer_to}")
    # Compared as written: a rate read back from a float32 variable is not bit-equal.
    if learning_rate_to is not None and lr_text(learning_rate_from) != lr_text(learning_rate_to):
        fmt = _short_lr if short else lr_text
        before = f"{fmt(learning_rate_from)} -> " if learning_rate_from is not None else "-> "
        parts.append(f"{'lr' if short else 'learning_rate'} {before}{fmt(learning_rate_to)}")
    if fresh_optimizer_state and not short:
        parts.append("fresh optimizer state")
    return ", ".join(parts) or "no change"


def decision_label(event: Mapping[str, Any]) -> str:
    """The short label of an ADJUST or ABORT decision event, for the plot.

    Reads ``optimizer_from``/``optimizer_to``/``learning_rate_from``/``learning_rate_to``
    of an ADJUST and ``code`` of an ABORT; runs written before those fields existed give
    what they have (``optimizer``, ``learning_rate``).
    """
    action = event.get("action")
    if action == "ABORT":
        return f"stopped [{event.get('code')}]"
    if action == "PROBE":
        rates = event.get("learning_rates") or ()
        return "probe lr " + ", ".join(_short_lr(r) for r in rates)
    to_opt = event.get("optimizer_to", event.get("optimizer"))
    to_lr = event.get("learning_rate_to", event.get("learning_rate"))
    return change_label(event.get("optimizer_from"), to_opt, event.get("learning_rate_from"),
                        to_lr, short=True)
