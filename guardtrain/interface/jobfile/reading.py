"""Reading a JOB file's YAML: a safe loader, one ``--set`` value, the overrides applied.

Nothing a JOB file contains is run while reading it: the loader is PyYAML's
``SafeLoader`` (no Python tags), which also reads ``1e-5`` as a number and refuses a key
given twice. ``--set key=value`` values are read as YAML too, never evaluated.

Pure module: no TensorFlow, no Ray.

Example:

>>> yaml_value("1e-5")
1e-05
>>> parse_override("guard.window_steps=50")
(('guard', 'window_steps'), 50)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from guardtrain.core.errors import ConfigError
from guardtrain.interface.jobfile.problems import CODE_OVERRIDE, CODE_UNREADABLE, first_line

__all__ = ["yaml_value", "read_yaml", "parse_override", "apply_override"]

_SCALAR_KEYS = (str, int, float, bool, type(None))


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` (no Python tags) that also reads ``1e-5`` as a float (YAML 1.1 wants
    ``1.0e-5``; a learning rate as a string would be a silent trap) and refuses duplicate
    keys (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, _SCALAR_KEYS) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def yaml_value(text: str) -> Any:
    """One value written as YAML (``100``, ``1e-5``, ``false``, ``[a, b]``), read safely."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def read_yaml(path: Path) -> dict:
    """The JOB file's mapping.

    Raises:
        ConfigError: GT130 when the file is missing, not YAML, has a duplicate key or is
            not a mapping.
    """
    if not path.is_file():
        raise ConfigError(f"JOB file {str(path)!r}: expected a YAML file, found "
                          f"{'a folder' if path.is_dir() else 'nothing'}",
                          code=CODE_UNREADABLE, fix="give the path of a .yaml JOB file "
                          "(see examples/tiny-job.yaml)")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"JOB file {str(path)!r} is not valid YAML: "
                          f"{' '.join(str(err).split())}", code=CODE_UNREADABLE,
                          fix="fix the YAML at the line shown (Python tags such as "
                              "!!python/object are refused on purpose)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"JOB file {str(path)!r} cannot be read: {err}",
                          code=CODE_UNREADABLE, fix="check the path and its permissions"
                          ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"JOB file {str(path)!r}: expected a mapping of keys (model:, "
                          f"data:, ...), found {type(raw).__name__}", code=CODE_UNREADABLE,
                          fix="start from examples/tiny-job.yaml")
    return raw


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"guard.window_steps=50"`` -> ``(("guard", "window_steps"), 50)``.

    The value is read as YAML (``1e-5``, ``false``, ``null``, ``[a, b]``), never evaluated.

    Raises:
        ConfigError: GT135 when there is no ``=``, a dotted part is empty, or the value
            is not YAML.
    """
    key, sep, value = text.partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not sep or not all(path):
        raise ConfigError(f"--set {text!r}: expected key=value with a dotted key, found "
                          f"{text!r}", code=CODE_OVERRIDE,
                          fix="write it like --set epochs=3 or --set guard.window_steps=50")
    try:
        parsed = yaml_value(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({first_line(err)})",
                          code=CODE_OVERRIDE, fix="quote strings: --set run_dir='runs/a b'"
                          ) from None
    return path, parsed


def apply_override(raw: dict, path: tuple[str, ...], value: Any) -> None:
    """Sets ``raw[path[0]][path[1]]... = value``, creating missing mappings on the way.

    Raises:
        ConfigError: GT135 when the path goes through a value that is not a mapping.
    """
    node = raw
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(path[:i + 1])
            raise ConfigError(
                f"--set {'.'.join(path)}=...: {where} is {child!r}, not a mapping",
                code=CODE_OVERRIDE,
                fix=f"set {where} itself (--set {where}=...), or make it a mapping first")
        node = child
    node[path[-1]] = value
