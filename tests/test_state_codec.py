"""The checkpoint state codec (guardtrain.records.state_codec): JSON + one npz, no pickle.

The classes below are made in a throwaway module registered as ``guardtrain.core._codec_
fixture``: the codec decodes only classes under ``guardtrain.core.``, and these stay the
same whatever shape the real core classes take.
"""

import dataclasses
import enum
import json
import sys
import types
from typing import NamedTuple

import numpy as np
import pytest

from guardtrain.records import state_codec
from guardtrain.records.state_codec import decode, encode, read_state, write_state

pytestmark = pytest.mark.pure

MODULE = "guardtrain.core._codec_fixture"


class Kind(str, enum.Enum):
    STALLED = "STALLED"
    HEALTHY = "HEALTHY"


@dataclasses.dataclass(frozen=True)
class Step:
    number: int
    kind: Kind
    evidence: dict = dataclasses.field(default_factory=dict)
    note: str = dataclasses.field(default="", init=False)


class Window(NamedTuple):
    loss: np.ndarray
    steps: tuple
    best: Step | None = None


class State(NamedTuple):
    attempt: int
    window: Window
    history: tuple


@pytest.fixture(autouse=True)
def core_module(monkeypatch):
    module = types.ModuleType(MODULE)
    for cls in (Kind, Step, Window, State):
        cls.__module__ = MODULE
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, MODULE, module)
    return module


def _same(a, b):
    """Equal values of equal types, arrays by dtype, shape and content."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tolist() == b.tolist()
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (a != a and b != b))
    elif isinstance(a, tuple) and hasattr(a, "_fields"):
        for name in a._fields:
            _same(getattr(a, name), getattr(b, name))
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def _state():
    best = Step(3, Kind.STALLED, {"ratio": np.float32(3e-7), "window": (1, 2)})
    object.__setattr__(best, "note", "set after init")
    window = Window(loss=np.linspace(2.3, 2.1, 5), steps=(1, 2, 3), best=best)
    return {
        "state": State(attempt=2, window=window, history=(Step(1, Kind.HEALTHY),)),
        "rows": {1: [{"step": np.arange(4, dtype=np.int64),
                      "verdict": np.array(["HEALTHY", "STALLED (warm-up)"], dtype=object),
                      "optimizer": "adam"}]},
        "weights": [np.ones((2, 3), np.float32), np.zeros(0, np.float64)],
        "scalars": [np.int64(7), np.bool_(True), np.float64(0.5)],
        "plain": [None, True, 3, 1.5, "x", float("nan"), float("inf"), (1, (2,))],
        "kind": Kind.HEALTHY,
    }


def test_round_trip_through_json_and_npz_files(tmp_path):
    value = _state()
    write_state(tmp_path, "s", value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.npz"]
    json.loads((tmp_path / "s.json").read_text())         # strict JSON: no NaN literal
    back = read_state(tmp_path, "s")
    _same(value, back)
    assert back["kind"] is Kind.HEALTHY
    assert back["state"].window.best.note == "set after init"
    # an object array of str comes back as object: a longer label still fits
    verdicts = back["rows"][1][0]["verdict"]
    verdicts[0] = "a much longer verdict label"
    assert verdicts[0] == "a much longer verdict label"


def test_encoding_is_pure_json_and_arrays():
    tree, arrays = encode(_state())
    json.dumps(tree, allow_nan=False)
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    _same(_state(), decode(tree, arrays))


def test_a_class_outside_guardtrain_core_is_refused_both_ways():
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(TypeError, match="only classes"):
        encode({"a": Local(1)})
    with pytest.raises(TypeError, match="cannot encode"):
        encode({"a": object()})
    with pytest.raises(TypeError, match="object array"):
        encode(np.array([object()], dtype=object))
    # a forged tree naming another module is refused before that module is imported
    for name in ("os:system", "subprocess:Popen", "guardtrainXcore.x:Y",
                 "guardtrain.records.history:HistoryWriter"):
        forged = {"$": "dataclass", "class": name, "fields": {}}
        with pytest.raises(ValueError, match="refusing"):
            decode(forged, {})


def test_a_class_reached_through_a_core_module_attribute_is_refused():
    # guardtrain.core modules import difflib, numpy...: a dotted name through them must
    # not reach those libraries' classes, nor private names.
    for name in ("guardtrain.core.validation:difflib.Match",
                 "guardtrain.core.stats:np.dtype", "guardtrain.core.stats:np._CopyMode",
                 "guardtrain.core.verdicts:Verdict.__class__"):
        with pytest.raises(ValueError, match="refusing"):
            decode({"$": "namedtuple", "class": name, "fields": {}}, {})


def test_a_forged_field_the_class_does_not_declare_is_refused():
    from guardtrain.core import verdicts

    tree, arrays = encode(verdicts.Verdict(kind="STALLED", step=3, reason="r"))
    tree["fields"]["summary"] = "forged"
    with pytest.raises(ValueError, match="no fields"):
        decode(tree, arrays)


def test_a_forged_tag_naming_the_wrong_kind_of_class_is_refused():
    with pytest.raises(ValueError):
        decode({"$": "namedtuple", "class": f"{MODULE}:Step", "fields": {}}, {})
    with pytest.raises(ValueError):
        decode({"$": "enum", "class": f"{MODULE}:Step", "value": 1}, {})
    with pytest.raises(ValueError, match="unknown"):
        decode({"$": "pickle", "data": ""}, {})


def test_a_real_rescue_state_round_trips():
    from guardtrain.core import rescue

    state = rescue.initial_state(optimizer="adam", learning_rate=1e-3, step=0)
    tree, arrays = encode(state)
    _same(state, decode(tree, arrays))
    assert state_codec.ALLOWED_PREFIX == "guardtrain.core."
