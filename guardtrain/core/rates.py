"""``round_rate``: the one rounding of a learning rate, wherever one is read or derived.

The loop reads the rate back from the optimizer's float32 variable (1e-6 reads back as
9.99999997e-07) and the rescue multiplies and divides it (1e-6 x 10 is
9.999999999999999e-06 in float64). Both round to 6 significant digits, just under
float32's ~7.2: a rate a user typed comes back as typed (at 7 digits 9.62e-7 reads back as
9.619999e-07), and every worker derives the same number (docs/architecture.md, "Rescue").

Pure module: no TensorFlow, no Ray.

Example:

>>> round_rate(0.0010000000474974513), round_rate(1e-6 * 10), round_rate(9.6199999e-07)
(0.001, 1e-05, 9.62e-07)
"""

from __future__ import annotations

__all__ = ["round_rate"]

#: Significant digits kept: below float32's ~7.2, so a float32 read-back is undone.
RATE_DIGITS = 6


def round_rate(learning_rate: float) -> float:
    """``learning_rate`` to ``RATE_DIGITS`` significant digits, as a Python float."""
    return float(f"{float(learning_rate):.{RATE_DIGITS}g}")
