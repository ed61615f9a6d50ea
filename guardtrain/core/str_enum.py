"""``ValueEnum``: an enum whose members read as their bare value wherever text is made.

Verdict kinds and rescue actions are enums so code compares members, not spelled strings;
the records stay what they were: ``str(member)``, ``f"{member}"`` and ``json.dumps(member)``
give the bare value (``"STALLED"``, not ``"VerdictKind.STALLED"``) on every Python from
3.10, where ``enum.StrEnum`` does not exist yet and a ``(str, Enum)`` formats differently
from one version to the next (docs/architecture.md, "Guard verdicts").

Pure module: no TensorFlow, no Ray.

Example:

>>> class Colour(ValueEnum):
...     RED = "RED"
>>> str(Colour.RED), f"{Colour.RED}", Colour.RED == "RED"
('RED', 'RED', True)
"""

from __future__ import annotations

import enum

__all__ = ["ValueEnum"]


class ValueEnum(str, enum.Enum):
    """A ``str`` enum that prints, formats and serialises as its value."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)
