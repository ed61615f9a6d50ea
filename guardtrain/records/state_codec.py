"""A run's state on disk without pickle: JSON for the structure, one ``.npz`` for arrays.

A checkpoint must be readable by a later process without executing anything it holds,
so the state is written as a tagged JSON tree plus one NumPy archive read with
``allow_pickle=False`` (docs/architecture.md, "Checkpoints"). Encoded:

============================  ==============================================================
value                         JSON
============================  ==============================================================
None, bool, int, str          itself
float                         itself; ``{"$": "float", "value": "nan"}`` when not finite
list                          a JSON array of encoded items
tuple                         ``{"$": "tuple", "items": [...]}``
dict (any mapping)            ``{"$": "dict", "items": [[key, value], ...]}`` (any keys)
NumPy array or scalar         ``{"$": "array" | "scalar", "key": "a3"}``, the values in the npz
Enum                          ``{"$": "enum", "class": ..., "value": ...}``
dataclass, NamedTuple         ``{"$": "dataclass" | "namedtuple", "class": ..., "fields": {}}``
============================  ==============================================================

Every JSON object is a tag, so a user's dict never collides with one. Classes are
written as ``module:qualname`` and decoded only from modules under ``guardtrain.core.``:
their fields are read generically (``dataclasses.fields``, ``_fields``, an Enum's value),
so a class that gains or loses a field needs no change here. An array of Python strings
(``dtype=object``, as the history's verdict column) is stored as a Unicode array and
comes back as ``object``, so later, longer strings still fit.

Example:

>>> import numpy as np
>>> tree, arrays = encode({"step": 3, "w": [np.zeros(2, np.float32)]})
>>> back = decode(tree, arrays)
>>> back["step"], back["w"][0].dtype
(3, dtype('float32'))
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import math
import os
from typing import Any, Mapping

import numpy as np

__all__ = ["encode", "decode", "write_state", "read_state", "ALLOWED_PREFIX", "FORMAT"]

#: Only classes from modules under this prefix are decoded.
ALLOWED_PREFIX = "guardtrain.core."
#: Written into every state file; a reader refuses another format.
FORMAT = "guardtrain-state/1"


def encode(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """``value`` as a JSON-serialisable tree and the arrays it refers to.

    Raises:
        TypeError: a value of another type, or a class outside ``guardtrain.core.``,
            named with where it sits in ``value``.
    """
    arrays: dict[str, np.ndarray] = {}
    return _encode(value, arrays, "state"), arrays


def decode(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The value ``encode`` gave ``(tree, arrays)`` for.

    Raises:
        ValueError: an unknown tag, or a class outside ``guardtrain.core.`` (refused
            before its module is imported).
    """
    return _decode(tree, arrays)


def write_state(directory: str | os.PathLike, name: str, value: Any) -> None:
    """Writes ``value`` as ``directory/name.json`` and ``directory/name.npz``."""
    tree, arrays = encode(value)
    base = os.path.join(os.fspath(directory), name)
    with open(base + ".npz", "wb") as f:
        np.savez(f, **arrays)
    with open(base + ".json", "w") as f:
        json.dump({"format": FORMAT, "value": tree}, f, allow_nan=False)


def read_state(directory: str | os.PathLike, name: str) -> Any:
    """Reads what ``write_state(directory, name, value)`` wrote; no pickle is ever loaded."""
    base = os.path.join(os.fspath(directory), name)
    with open(base + ".json") as f:
        document = json.load(f)
    if document.get("format") != FORMAT:
        raise ValueError(f"{base}.json: expected format {FORMAT!r}, found "
                         f"{document.get('format')!r}")
    with np.load(base + ".npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return decode(document["value"], arrays)


# ---------------------------------------------------------------------------- encoding

def _encode(value: Any, arrays: dict, where: str) -> Any:
    # Order matters: a str-valued Enum is a str, np.float64 is a float, bool is an int,
    # a NamedTuple is a tuple.
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return {"$": "enum", "class": _class_name(type(value), where),
                "value": _encode(value.value, arrays, f"{where}.value")}
    if isinstance(value, (np.ndarray, np.generic)):
        return _encode_array(value, arrays, where)
    if isinstance(value, (bool, int, str)):
        return _plain(value)
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {"$": "float", "value": repr(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name), arrays, f"{where}.{f.name}")
                  for f in dataclasses.fields(value)}
        return {"$": "dataclass", "class": _class_name(type(value), where), "fields": fields}
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        fields = {name: _encode(getattr(value, name), arrays, f"{where}.{name}")
                  for name in type(value)._fields}
        return {"$": "namedtuple", "class": _class_name(type(value), where), "fields": fields}
    if isinstance(value, tuple):
        return {"$": "tuple", "items": [_encode(v, arrays, f"{where}[{i}]")
                                        for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {"$": "dict", "items": [[_encode(k, arrays, f"{where} key"),
                                        _encode(v, arrays, f"{where}[{k!r}]")]
                                       for k, v in value.items()]}
    raise TypeError(f"{where}: cannot encode a {type(value).__module__}."
                    f"{type(value).__qualname__} (a state holds plain data, NumPy arrays, "
                    f"and dataclasses, NamedTuples and Enums from {ALLOWED_PREFIX}*)")


def _plain(value):
    # bool and int subclasses (other than Enums, handled before) are written as the base.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return str(value)


def _encode_array(value, arrays: dict, where: str) -> dict:
    array = np.asarray(value)
    tag = "scalar" if isinstance(value, np.generic) else "array"
    node = {"$": tag, "key": f"a{len(arrays)}"}
    if array.dtype == object:
        if not all(isinstance(v, str) for v in array.flat):
            raise TypeError(f"{where}: cannot encode an object array of other than str "
                            "(the archive is read without pickle)")
        array = array.astype(str) if array.size else np.zeros(array.shape, "U1")
        node["object"] = True
    arrays[node["key"]] = array
    return node


def _class_name(cls: type, where: str) -> str:
    if not cls.__module__.startswith(ALLOWED_PREFIX) or "<locals>" in cls.__qualname__:
        raise TypeError(f"{where}: cannot encode {cls.__module__}.{cls.__qualname__}: only "
                        f"classes defined at module level under {ALLOWED_PREFIX}* are "
                        "encoded")
    return f"{cls.__module__}:{cls.__qualname__}"


# ---------------------------------------------------------------------------- decoding

def _decode(node: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    tag = node.get("$")
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in node["items"])
    if tag == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["items"]}
    if tag == "float":
        return float(node["value"])
    if tag in ("array", "scalar"):
        array = arrays[node["key"]]
        if node.get("object"):
            array = array.astype(object)
        return array[()] if tag == "scalar" else array
    if tag == "enum":
        cls = _load_class(node["class"], enum.Enum)
        return cls(_decode(node["value"], arrays))
    if tag in ("dataclass", "namedtuple"):
        cls = _load_class(node["class"], None)
        fields = {name: _decode(v, arrays) for name, v in node["fields"].items()}
        if tag == "namedtuple":
            if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
                raise ValueError(f"{node['class']} is not a NamedTuple")
            return cls(**fields)
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{node['class']} is not a dataclass")
        return _make_dataclass(cls, fields)
    raise ValueError(f"unknown state tag {tag!r}")


def _make_dataclass(cls, fields: dict):
    declared = {f.name: f.init for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(declared))
    if unknown:
        raise ValueError(f"refusing to decode {cls.__qualname__}: no fields {unknown}")
    obj = cls(**{k: v for k, v in fields.items() if declared[k]})
    for name, value in fields.items():
        if not declared[name]:    # init=False fields: set as the instance had them
            object.__setattr__(obj, name, value)
    return obj


def _load_class(name: str, base: type | None) -> type:
    module_name, _, qualname = name.partition(":")
    parts = qualname.split(".")
    if (not module_name.startswith(ALLOWED_PREFIX) or not qualname
            or any(not p.isidentifier() or p.startswith("_") for p in parts)):
        raise ValueError(f"refusing to decode {name!r}: only public classes under "
                         f"{ALLOWED_PREFIX}* are decoded")
    obj: Any = importlib.import_module(module_name)
    for part in parts:
        obj = getattr(obj, part, None)
    # A name reached through a module attribute (``core.stats:np.dtype``) is not defined
    # there: only classes whose own module and qualified name are the ones written.
    if (not isinstance(obj, type) or obj.__module__ != module_name
            or obj.__qualname__ != qualname
            or (base is not None and not issubclass(obj, base))):
        raise ValueError(f"refusing to decode {name!r}: not a "
                         f"{'class' if base is None else base.__name__}")
    return obj
