"""Shapes: which array feeds which model input or output, per-sample shapes, sample counts.

A mismatch with the same number of values per sample gets the exact reshape
(``784 = 28*28*1: x.reshape(-1, 28, 28, 1)``); channels on the wrong side get the
transpose. Keras' own rank adjustment (``(n,)`` for ``(None, 1)``, ``(n, 28, 28)`` for
``(None, 28, 28, 1)``) is accepted, as ``model.fit`` accepts it.
"""

from __future__ import annotations

import math

from guardtrain.checking import codes
from guardtrain.checking.specs import ModelSpec, Sample
from guardtrain.core.errors import Problem

__all__ = ["pair", "check_input_shape", "check_sample_counts", "var_name",
           "check_positional_inputs"]


def pair(specs, leaves, structure: str, where: str, *, what: str = "input"):
    """Matches data arrays to model inputs (or labels to outputs) by name or position.

    Args:
        specs: the model's ``InputSpec``s or ``OutputSpec``s; empty when unknown.
        leaves: ``(key, Sample)`` pairs from ``sources.load``.
        structure: ``"single"``, ``"list"`` or ``"dict"``: how the data was given.
        where: ``"x"`` or ``"y"`` (with any prefix), for messages.
        what: ``"input"`` or ``"output"``.

    Returns:
        ``([(spec or None, Sample)], problems)``.
    """
    if not specs:
        return [(None, s) for _, s in leaves], []
    names = [s.name for s in specs]
    listing = ", ".join(repr(n) for n in names)
    if structure == "dict":
        by_key = dict(leaves)
        if len(specs) == 1 and len(by_key) == 1 and next(iter(by_key)) != names[0]:
            # Keras looks a dict up by name even for one input or output: any other key
            # fails at the first step, inside the traced function.
            key = next(iter(by_key))
            return [], [Problem(
                codes.STRUCTURE, where, f"the key {names[0]!r} (the model's {what} name)",
                f"the key {key!r}",
                f"pass the array itself ({where.split()[-1]}=array), or name the key "
                f"after the {what}: {where.split()[-1]}={{{names[0]!r}: ...}}")]
        pairs = [(s, by_key[s.name]) for s in specs if s.name in by_key]
        missing = [n for n in names if n not in by_key]
        extra = [k for k in by_key if k not in names]
        problems = []
        if missing:
            problems.append(Problem(
                codes.STRUCTURE, where, f"a key per model {what}: {listing}",
                f"keys {sorted(map(str, by_key))}; missing {missing}",
                f"name the dict keys after the model's {what}s: "
                + "{" + ", ".join(f"{n!r}: ..." for n in names) + "}"))
        if extra:
            problems.append(Problem(
                codes.STRUCTURE, where, f"keys among {listing}", f"extra keys {extra}",
                f"drop them or rename them to the model's {what} names; Keras ignores them",
                severity="warning"))
        return pairs, problems
    if len(leaves) == len(specs):
        return [(spec, s) for spec, (_, s) in zip(specs, leaves)], []
    if not leaves:
        return [], []   # every array was dropped while reading, which said why
    given = f"{len(leaves)} array{'s' if len(leaves) != 1 else ''}"
    fix = ("pass a dict by name: " + where.split()[-1] + "={"
           + ", ".join(f"{n!r}: ..." for n in names) + "}") if len(specs) > 1 else (
        f"pass one array for the model's single {what}")
    return [], [Problem(codes.STRUCTURE, where,
                        f"{len(specs)} array{'s' if len(specs) != 1 else ''}, one per model "
                        f"{what} ({listing})", given, fix)]


def var_name(where: str) -> str:
    """The name a user would type for ``where``: ``"validation_data x"`` -> ``"x_val"``."""
    if where.startswith("validation_data "):
        rest = where[len("validation_data "):]
        return rest[0] + "_val" + rest[1:]
    return where


def check_input_shape(spec, sample: Sample, *, named: bool = True) -> list[Problem]:
    """Compares one array's per-sample shape with one model input's (GT201, GT202).

    Args:
        spec: the model input.
        sample: the array fed to it.
        named: say the input's name in messages (models with several inputs).
    """
    data, model = tuple(sample.rows.shape[1:]), tuple(spec.shape[1:])
    if _fits(data, model) or _keras_adjusts(data, model):
        return []
    where = sample.where
    expected = f"shape {_fmt((None,) + model)}" + (f" (model input {spec.name!r})" if named
                                                   else "")
    found = f"shape {_fmt(sample.shape)}"
    known = all(d is not None for d in model)
    moved = _channels_move(data, model) if known else None
    if moved:
        perm, side = moved
        return [Problem(codes.CHANNELS, where, expected, f"{found}: {side} data",
                        f"{var_name(where)}.transpose{perm}, or build the model for "
                        f"{side} data (data_format='{side.replace('-', '_')}')")]
    if known and math.prod(data) == math.prod(model):
        product = "*".join(str(d) for d in model)
        return [Problem(codes.SHAPE, where, expected, found,
                        f"{math.prod(data)} = {product}: {var_name(where)}.reshape(-1, "
                        f"{', '.join(str(d) for d in model)})")]
    return [Problem(codes.SHAPE, where, expected, found,
                    f"feed samples of shape {_fmt(model)}, or build the model on the data's "
                    f"shape: keras.Input(shape={_fmt(data)})")]


def check_sample_counts(samples: list[Sample]) -> list[Problem]:
    """Every array of x and y must have the same number of samples (GT203)."""
    known = [s for s in samples if s.n_total is not None]
    if len({s.n_total for s in known}) <= 1:
        return []
    first = known[0]
    odd = [s for s in known if s.n_total != first.n_total]
    found = ", ".join(f"{s.where} has {s.n_total:,}" for s in [first] + odd)
    return [Problem(codes.SAMPLE_COUNT, odd[0].where,
                    f"{first.n_total:,} samples, as {first.where} has",
                    found,
                    "x and y pair up row by row: check the split or slicing that made them "
                    f"(e.g. both [:{min(s.n_total for s in known)}])")]


def _fits(data, model) -> bool:
    return len(data) == len(model) and all(m is None or d == m for d, m in zip(data, model))


def _keras_adjusts(data, model) -> bool:
    # Keras expands or squeezes one trailing axis of size 1 on its own.
    if len(data) + 1 == len(model) and model[-1] == 1:
        return _fits(data, model[:-1])
    if len(data) == len(model) + 1 and data[-1] == 1:
        return _fits(data[:-1], model)
    return False


def _channels_move(data, model):
    """``(transpose, side)`` fixing data whose channel axis is on the other side."""
    r = len(model)
    if r < 2 or len(data) != r:
        return None
    if data == (model[-1],) + model[:-1]:          # channels-first data, channels-last model
        return (0,) + tuple(range(2, r + 1)) + (1,), "channels-first"
    if data == model[1:] + (model[0],):            # channels-last data, channels-first model
        return (0, r) + tuple(range(1, r)), "channels-last"
    return None


def _fmt(shape) -> str:
    shape = tuple(shape)
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_positional_inputs(x, spec: ModelSpec | None) -> list[Problem]:
    """Several model inputs given as a tuple or list (GT276). ``model.fit`` maps them to
    the inputs by position; guardtrain's input path does not, and would read the tuple as
    rows of one input: refused, with the dict that works. Another count of arrays is a
    mismatch the count check names (GT204)."""
    if (spec is None or len(spec.inputs) < 2 or not isinstance(x, (tuple, list))
            or len(x) != len(spec.inputs)):
        return []
    names = [i.name for i in spec.inputs]
    return [Problem(codes.POSITIONAL_INPUTS, "x",
                    f"a dict of {len(names)} arrays keyed by input name {names}",
                    f"a {type(x).__name__} of {len(x)}",
                    "x = {" + ", ".join(f"'{n}': x[{i}]" for i, n in enumerate(names))
                    + "} (guardtrain does not map positional inputs yet)")]
