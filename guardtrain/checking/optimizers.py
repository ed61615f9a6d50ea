"""Whether Keras knows each optimizer on a rescue's ladder (GT122).

``RescueConfig`` is pure and cannot ask Keras, so a misspelt ``"adamm"`` would pass it
and only fail at the first switch, deep in a run. ``gt.fit`` and the JOB reader call
``ladder_problems`` before anything starts; both get the same problem, with the names
Keras does know (``keras.optimizers.get`` resolves a built-in optimizer by its class name
in lower case, and ``known_optimizers`` lists those a rescue can build).

Example:

>>> ladder_problems(("sgd", "adamm"))[0].fix     # doctest: +SKIP
"did you mean 'adam'? (Keras knows: adadelta, adafactor, adagrad, adam, ...)"
"""

from __future__ import annotations

import functools
import inspect
from typing import Sequence

from guardtrain.core.errors import ConfigError, Problem
from guardtrain.core.validation import suggest

__all__ = ["CODE_UNKNOWN_OPTIMIZER", "known_optimizers", "ladder_problems",
           "check_ladder"]

CODE_UNKNOWN_OPTIMIZER = "GT122"


@functools.lru_cache(maxsize=1)
def known_optimizers() -> tuple[str, ...]:
    """The names ``keras.optimizers.get`` resolves (each built-in optimizer's class name,
    lower case) whose class a rescue can build from a learning rate alone, as
    ``engine.supervisor.make_optimizer`` does (a loss-scale or multi-optimizer wrapper
    needs another optimizer).

    Read off the classes, never by calling ``get``: that builds an optimizer, whose
    variables start TensorFlow's runtime, after which the CPU can no longer be split
    into the logical devices a ``LaunchConfig(cpu_replicas=...)`` run needs."""
    import keras

    try:
        # The table get() looks a name up in. Not every exported optimizer is in it
        # (Keras 3.15 exports Lamb, which get("lamb") does not resolve).
        from keras.src.optimizers import ALL_OBJECTS_DICT as table
    except ImportError:  # a Keras that moved it: the exported classes, by lower-case name
        table = {attr.lower(): getattr(keras.optimizers, attr)
                 for attr in dir(keras.optimizers)}
    names = [name for name, cls in table.items()
             if isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)
             and cls is not keras.optimizers.Optimizer and _rate_alone(cls)]
    return tuple(sorted(set(names)))


def _rate_alone(cls) -> bool:
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.name == "self"
               or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def ladder_problems(ladder: Sequence[str], *,
                    where: str = "RescueConfig(optimizer_ladder=...)") -> list[Problem]:
    """One problem per name on ``ladder`` that Keras does not resolve.

    Args:
        ladder: the optimizer names (``RescueConfig.optimizer_ladder``).
        where: how the place is named: ``RescueConfig(optimizer_ladder=...)`` for
            ``gt.fit``, ``rescue.optimizer_ladder`` in a JOB file.
    """
    known = known_optimizers()
    problems = []
    for name in ladder:
        if not isinstance(name, str) or name.strip().lower() in known:
            continue  # a name of the wrong type is RescueConfig's own problem (GT120)
        near = suggest(name, known)
        fix = (f"{near} (Keras knows: {', '.join(known)})" if near.startswith("did")
               else f"use one of the names Keras knows: {', '.join(known)}")
        problems.append(Problem(code=CODE_UNKNOWN_OPTIMIZER, where=where,
                                expected="optimizer names keras.optimizers.get resolves",
                                found=repr(name), fix=fix))
    return problems


def check_ladder(rescue) -> None:
    """Raises ``ConfigError`` (GT122) when ``rescue`` (a ``RescueConfig``, or ``False``
    / ``None`` for none) names an optimizer Keras does not know."""
    ladder = getattr(rescue, "optimizer_ladder", None)
    problems = ladder_problems(ladder) if ladder else []
    if not problems:
        return
    names = ", ".join(p.found for p in problems)
    raise ConfigError(f"RescueConfig(optimizer_ladder=...): expected optimizer names Keras "
                      f"knows, found {names}", code=CODE_UNKNOWN_OPTIMIZER,
                      fix=problems[0].fix if len(problems) == 1 else
                      f"use names Keras knows: {', '.join(known_optimizers())}",
                      details={"problems": problems})
