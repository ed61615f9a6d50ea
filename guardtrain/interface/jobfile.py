"""JOB files: a training run described in YAML, for ``guardtrain check|fit JOB``.

```yaml
model: tiny_model:build_model        # module:function returning a compiled keras.Model
data:                                # one of: npz / parquet / dataset_fn
  npz: tiny.npz                      #   paths are relative to this file
  x: x_train
  y: y_train
validation: {npz: tiny.npz, x: x_val, y: y_val}     # optional: npz or parquet
batch_size: 64
epochs: 3
guard: {warmup_steps: 20, window_steps: 40}         # GuardConfig fields, or false
rescue: {max_attempts: 4}                           # RescueConfig fields, or false
launch: {workers: 0, cpu_replicas: 2}               # LaunchConfig fields
```

Reading a JOB file runs nothing it contains: YAML is loaded with a safe loader (no
Python tags), ``.npz`` files are read with ``allow_pickle=False``, and the only code that
runs is the module an import path names, imported as Python imports it. ``parse_job``
checks every key and value without importing anything; ``JobSpec.resolve`` then imports
the builder and reads the data. Both collect every problem before raising one
``ConfigError``.

Codes (``ConfigError``, exit code 2):

  GT130  the JOB file cannot be read: missing, not YAML, a duplicate key, not a mapping
  GT131  an unknown key (with the nearest known key)
  GT132  a value of the wrong type or out of range
  GT133  a required key is missing (``model``, ``data``, a data source)
  GT134  an import path that is malformed, or whose module or attribute is not found
  GT135  a ``--set key=value`` that is malformed or goes through a non-mapping
  GT136  a data file or an array in it is missing or unreadable

Pure module: no TensorFlow, no Ray (the builder's own imports aside).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import ConfigError
from guardtrain.core.guard import GuardConfig
from guardtrain.core.rescue import RescueConfig

__all__ = ["JobSpec", "Job", "parse_job", "load_job", "parse_override", "resolve_import_path",
           "user_modules", "yaml_value", "TOP_KEYS"]

CODE_UNREADABLE = "GT130"
CODE_UNKNOWN_KEY = "GT131"
CODE_BAD_VALUE = "GT132"
CODE_MISSING = "GT133"
CODE_IMPORT = "GT134"
CODE_OVERRIDE = "GT135"
CODE_DATA = "GT136"

#: Top-level keys and what each holds (also the ``--help`` text of the format).
TOP_KEYS = {
    "model": "import path 'module:function' of a function returning a compiled keras.Model, "
             "or {builder: ..., args: {...}}",
    "data": "the training data: {npz: ..., x: ..., y: ...}, {parquet: ..., features: [...], "
            "label: ...} or {dataset_fn: 'module:function', args: {...}}",
    "validation": "optional validation data: {npz: ...} or {parquet: ...}",
    "batch_size": "global batch size (32)",
    "epochs": "epochs (1)",
    "steps_per_epoch": "steps per epoch (one pass over the data; required with dataset_fn)",
    "steps_per_loop": "steps per tf.function call and per guard verdict (50)",
    "shuffle": "reshuffle array data every epoch (true)",
    "run_dir": "where the run's files go (guardtrain_runs/<time>-<id> in the current folder)",
    "guard": "GuardConfig fields, or false to record statistics without judging",
    "rescue": "RescueConfig fields, or false to stop at the first unhealthy verdict",
    "launch": "LaunchConfig fields (workers, cpu_replicas, gpus_per_worker, address, ...)",
    "description": "free text, for people",
}
_REQUIRED = ("model", "data")
_DATA_KEYS = {
    "npz": ("npz", "x", "y"),
    "parquet": ("parquet", "features", "label", "feature_dtype"),
    "dataset_fn": ("dataset_fn", "args"),
}
_MODEL_KEYS = ("builder", "args")
_SECTIONS = {"guard": GuardConfig, "rescue": RescueConfig, "launch": LaunchConfig}
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


# -- YAML: safe, with 1e-5 read as a number ------------------------------------------------

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


# -- problems, collected ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Problem:
    code: str
    where: str
    message: str
    fix: str

    def render(self) -> str:
        return f"  {self.where}: {self.message}   [{self.code}]\n    Fix: {self.fix}"


def _raise(problems: Sequence[_Problem], source: str) -> None:
    if not problems:
        return
    n = len(problems)
    if n == 1:   # its Fix is the error's Fix line
        p = problems[0]
        raise ConfigError(f"1 problem in {source}:\n  {p.where}: {p.message}   [{p.code}]",
                          code=p.code, fix=p.fix)
    message = (f"{n} problems in {source}:\n" + "\n".join(p.render() for p in problems))
    raise ConfigError(message, code=problems[0].code)


def _suggest(key: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    listing = ", ".join(known)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"use one of: {listing}"


def _unknown_keys(mapping: Mapping, known: Iterable[str], where: str) -> list[_Problem]:
    known = list(known)
    return [_Problem(CODE_UNKNOWN_KEY, _join(where, key), "unknown key", _suggest(key, known))
            for key in mapping if key not in known]


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


# -- --set key=value ----------------------------------------------------------------------

def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"guard.window_steps=100"`` -> ``(("guard", "window_steps"), 100)``.

    The value is read as YAML (``1e-5``, ``false``, ``null``, ``[a, b]``), never evaluated.
    """
    key, sep, value = text.partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not sep or not all(path):
        raise ConfigError(f"--set {text!r}: expected key=value with a dotted key, found "
                          f"{text!r}", code=CODE_OVERRIDE,
                          fix="write it like --set epochs=3 or --set guard.window_steps=100")
    try:
        parsed = yaml_value(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({_first_line(err)})",
                          code=CODE_OVERRIDE, fix="quote strings: --set run_dir='runs/a b'"
                          ) from None
    return path, parsed


def _apply_override(raw: dict, path: tuple[str, ...], value: Any) -> None:
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


# -- the parsed job -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A JOB file checked key by key; nothing imported, no data read.

    Args:
        path: the JOB file.
        raw: its content with the overrides applied.
        guard, rescue: the configs, or ``False`` when the section is ``false``.
        launch: the ``LaunchConfig``.
        fit_args: ``batch_size``, ``epochs``, ``steps_per_epoch``, ``steps_per_loop``,
            ``shuffle`` with their defaults filled in.
        run_dir: the run directory, absolute, or ``None`` for the default.
        notes: what the command line changed that the user may not expect.
    """

    path: Path
    raw: Mapping[str, Any]
    guard: GuardConfig | bool
    rescue: RescueConfig | bool
    launch: LaunchConfig
    fit_args: Mapping[str, Any]
    run_dir: Path | None
    notes: tuple[str, ...] = ()

    @property
    def base(self) -> Path:
        """The folder that relative paths and bare module names are resolved against."""
        return self.path.parent

    def resolve(self) -> "Job":
        """Imports the builder (and the dataset function) and reads the data."""
        problems: list[_Problem] = []
        model = _resolve_callable(self.raw["model"], "model", self.base, problems)
        x, y = _resolve_data(self.raw["data"], "data", self.base, problems, training=True)
        validation = None
        if self.raw.get("validation") is not None:
            validation = _resolve_data(self.raw["validation"], "validation", self.base,
                                       problems, training=False)
        _raise(problems, str(self.path))
        return Job(spec=self, model=model, x=x, y=y, validation_data=validation)


@dataclasses.dataclass(frozen=True)
class Job:
    """A JOB file ready to run: the builder imported and the data read.

    Example:

    >>> job = load_job("examples/tiny-job.yaml", ["epochs=1"])     # doctest: +SKIP
    >>> gt.fit(job.model, job.x, job.y, **job.fit_kwargs())        # doctest: +SKIP
    """

    spec: JobSpec
    model: Callable[[], Any]
    x: Any
    y: Any
    validation_data: Any = None

    def check_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``gt.check`` besides model, x and y."""
        return {"batch_size": self.spec.fit_args["batch_size"],
                "validation_data": self.validation_data, "launch": self.spec.launch}

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``gt.fit`` besides model, x and y."""
        return {**self.spec.fit_args, "validation_data": self.validation_data,
                "guard": self.spec.guard, "rescue": self.spec.rescue,
                "launch": self.spec.launch, "run_dir": self.spec.run_dir}


def parse_job(path: str | os.PathLike, overrides: Sequence[str] = (), *,
              launch_overrides: Mapping[str, Any] | None = None,
              run_dir: str | os.PathLike | None = None) -> JobSpec:
    """Reads and checks a JOB file; imports nothing, reads no data.

    Args:
        path: the YAML file.
        overrides: ``"key=value"`` strings (``--set``), dotted keys, applied in order.
        launch_overrides: ``LaunchConfig`` fields set from the command line (``workers``,
            ``gpus_per_worker``, ``address``); they win over the file. ``workers`` >= 1
            drops the file's ``launch.cpu_replicas`` (an in-process setting), with a note.
        run_dir: a run directory from the command line (relative to the current folder).

    Raises:
        ConfigError: every problem found, with the nearest key for an unknown one.
    """
    path = Path(path)
    raw = _read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        _apply_override(raw, key, value)
    notes = []
    for key, value in (launch_overrides or {}).items():
        _apply_override(raw, ("launch", key), value)
    launch = raw.get("launch")
    if ((launch_overrides or {}).get("workers") and isinstance(launch, dict)
            and launch.get("cpu_replicas")):
        notes.append(f"--workers {launch['workers']}: launch.cpu_replicas "
                     f"{launch.pop('cpu_replicas')} dropped (it splits this process's CPU; "
                     "each Ray worker runs one replica per device it has)")
    if run_dir is not None:
        raw["run_dir"] = os.path.abspath(os.fspath(run_dir))

    problems = _unknown_keys(raw, TOP_KEYS, "")
    problems += [_Problem(CODE_MISSING, key, "required key missing", f"add {key}: "
                          + TOP_KEYS[key].split(",")[0]) for key in _REQUIRED if key not in raw]
    fit_args = _fit_args(raw, problems)
    if "model" in raw:
        _check_callable_entry(raw["model"], "model", _MODEL_KEYS, "builder", problems)
    if "data" in raw:
        _check_data(raw["data"], "data", problems, training=True)
    if raw.get("validation") is not None:
        _check_data(raw["validation"], "validation", problems, training=False)
    if raw.get("description") is not None and not isinstance(raw["description"], str):
        problems.append(_Problem(CODE_BAD_VALUE, "description", "expected text",
                                 "quote it: description: '...'"))
    configs = {name: _section(raw, name, cls, problems) for name, cls in _SECTIONS.items()}
    out_dir = raw.get("run_dir")
    if out_dir is not None and not isinstance(out_dir, str):
        problems.append(_Problem(CODE_BAD_VALUE, "run_dir", f"expected a path, found "
                                 f"{out_dir!r}", "run_dir: runs/tiny"))
        out_dir = None
    _raise(problems, str(path))
    return JobSpec(path=path.resolve(), raw=raw, guard=configs["guard"],
                   rescue=configs["rescue"], launch=configs["launch"], fit_args=fit_args,
                   run_dir=_resolve_path(out_dir, path.resolve().parent) if out_dir else None,
                   notes=tuple(notes))


def load_job(path: str | os.PathLike, overrides: Sequence[str] = (), **kwargs) -> Job:
    """``parse_job(...).resolve()``: the job checked, its builder imported, its data read."""
    return parse_job(path, overrides, **kwargs).resolve()


def _read_yaml(path: Path) -> dict:
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


# -- checks without imports ---------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_FIT_ARGS = {
    # name: (default, check, expected, example)
    "batch_size": (32, lambda v: _is_int(v) and v >= 1, "an int >= 1", "batch_size: 64"),
    "epochs": (1, lambda v: _is_int(v) and v >= 1, "an int >= 1", "epochs: 3"),
    "steps_per_epoch": (None, lambda v: v is None or (_is_int(v) and v >= 1),
                        "null or an int >= 1", "steps_per_epoch: 100"),
    "steps_per_loop": (None, lambda v: v is None or (_is_int(v) and v >= 1),
                       "null or an int >= 1", "steps_per_loop: 50"),
    "shuffle": (True, lambda v: isinstance(v, bool), "true or false", "shuffle: true"),
}


def _fit_args(raw, problems) -> dict:
    out = {}
    for name, (default, ok, expected, example) in _FIT_ARGS.items():
        value = raw.get(name, default)
        if not ok(value):
            problems.append(_Problem(CODE_BAD_VALUE, name, f"expected {expected}, found "
                                     f"{value!r}", example))
        out[name] = value
    return out


def _check_import_path(value, where, problems) -> bool:
    if isinstance(value, str) and _IMPORT_PATH.match(value.strip()):
        return True
    problems.append(_Problem(
        CODE_IMPORT, where, f"expected an import path 'package.module:function', found "
        f"{value!r}", "name the module and the function with a colon, e.g. "
        "'tiny_model:build_model' (a module beside the JOB file) or "
        "'mypackage.models:build'"))
    return False


def _check_callable_entry(value, where, keys, path_key, problems) -> None:
    """``"mod:fn"`` or ``{<path_key>: "mod:fn", args: {...}}``."""
    if isinstance(value, dict):
        problems += _unknown_keys(value, keys, where)
        if path_key not in value:
            problems.append(_Problem(CODE_MISSING, _join(where, path_key),
                                     "required key missing", f"add {path_key}: 'module:function'"))
        else:
            _check_import_path(value[path_key], _join(where, path_key), problems)
        _check_args(value.get("args"), _join(where, "args"), problems)
    else:
        _check_import_path(value, where, problems)


def _check_args(args, where, problems) -> None:
    if args is not None and not (isinstance(args, dict)
                                 and all(isinstance(k, str) for k in args)):
        problems.append(_Problem(CODE_BAD_VALUE, where, f"expected a mapping of keyword "
                                 f"arguments, found {args!r}", "args: {units: 64}"))


def _data_kind(value, where, problems, training: bool) -> str | None:
    kinds = ("npz", "parquet", "dataset_fn") if training else ("npz", "parquet")
    if not isinstance(value, dict):
        problems.append(_Problem(CODE_BAD_VALUE, where, f"expected a mapping, found {value!r}",
                                 f"{where}: {{npz: data.npz, x: x, y: y}}"))
        return None
    present = [k for k in kinds if k in value]
    if len(present) == 1:
        return present[0]
    if not present:
        unknown = [k for k in value if k not in {k2 for ks in _DATA_KEYS.values() for k2 in ks}]
        if not training and "dataset_fn" in value:
            problems.append(_Problem(CODE_BAD_VALUE, _join(where, "dataset_fn"),
                                     "not supported for validation data",
                                     "give validation data as npz or parquet"))
            return None
        hint = _suggest(unknown[0], kinds) if unknown else f"add one of: {', '.join(kinds)}"
        problems.append(_Problem(CODE_MISSING, where, f"expected one data source "
                                 f"({', '.join(kinds)}), found none", hint))
        return None
    problems.append(_Problem(CODE_BAD_VALUE, where, f"expected one data source, found "
                             f"{', '.join(present)}", f"keep one of {', '.join(present)}"))
    return None


def _check_data(value, where, problems, training: bool) -> None:
    kind = _data_kind(value, where, problems, training)
    if kind is None:
        return
    problems += _unknown_keys(value, _DATA_KEYS[kind], where)
    if kind == "dataset_fn":
        _check_import_path(value["dataset_fn"], _join(where, "dataset_fn"), problems)
        _check_args(value.get("args"), _join(where, "args"), problems)
        return
    source = value[kind]
    if not isinstance(source, str) or not source:
        problems.append(_Problem(CODE_BAD_VALUE, _join(where, kind),
                                 f"expected a path, found {source!r}", f"{kind}: data/train.{kind}"))
    if kind == "npz":
        xs = value.get("x", "x")
        ok = (isinstance(xs, str) or (isinstance(xs, list) and xs and all(isinstance(k, str)
                                                                           for k in xs))
              or (isinstance(xs, dict) and xs and all(isinstance(k, str) for k in xs.values())))
        if not ok:
            problems.append(_Problem(CODE_BAD_VALUE, _join(where, "x"),
                                     f"expected an array name, a list of names or {{input: "
                                     f"name}}, found {xs!r}", "x: x_train"))
        ys = value.get("y", "y")
        if ys is not None and not isinstance(ys, str):
            problems.append(_Problem(CODE_BAD_VALUE, _join(where, "y"),
                                     f"expected an array name or null, found {ys!r}",
                                     "y: y_train"))
    else:
        features = value.get("features")
        if features is None:
            problems.append(_Problem(CODE_MISSING, _join(where, "features"),
                                     "required key missing", "features: [a, b, c]  (or the "
                                     "name of one list column)"))
        elif not (isinstance(features, str) or (isinstance(features, list) and features
                                                and all(isinstance(f, str) for f in features))):
            problems.append(_Problem(CODE_BAD_VALUE, _join(where, "features"),
                                     f"expected a column name or a list of them, found "
                                     f"{features!r}", "features: [a, b, c]"))
        label = value.get("label")
        if label is not None and not isinstance(label, str):
            problems.append(_Problem(CODE_BAD_VALUE, _join(where, "label"),
                                     f"expected a column name, found {label!r}", "label: y"))


def _section(raw, name, cls, problems):
    """A config section -> the dataclass (``False`` for ``guard: false``/``rescue: false``)."""
    value = raw.get(name)
    if value is None or value is True:
        value = {}
    if value is False and name in ("guard", "rescue"):
        return False
    if not isinstance(value, dict):
        problems.append(_Problem(CODE_BAD_VALUE, name, f"expected a mapping of {cls.__name__} "
                                 f"fields{' or false' if name != 'launch' else ''}, found "
                                 f"{value!r}", f"{name}: {{...}}  (fields: "
                                 f"{', '.join(f.name for f in dataclasses.fields(cls))})"))
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = _unknown_keys(value, fields, name)
    if unknown:
        problems += unknown
        return cls()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        problems.append(_Problem(err.code, name, err.message, err.fix or "see the message"))
    except (TypeError, ValueError) as err:
        problems.append(_Problem(CODE_BAD_VALUE, name, str(err), "see the message"))
    return cls()


# -- resolution: imports and data ---------------------------------------------------------

def _resolve_path(value: str, base: Path) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return p if p.is_absolute() else (base / p)


def _resolve_callable(entry, where, base, problems):
    if isinstance(entry, dict):
        target, args = entry.get("builder", entry.get("dataset_fn")), entry.get("args") or {}
    else:
        target, args = entry, {}
    try:
        fn = resolve_import_path(target, where=where, search=[base])
    except ConfigError as err:
        problems.append(_Problem(err.code, where, err.message.removeprefix(f"{where}: "),
                                 err.fix))
        return None
    return functools.partial(fn, **args) if args else fn


def resolve_import_path(spec: str, *, where: str = "import path",
                        search: Sequence[str | os.PathLike] = ()) -> Callable:
    """Imports ``"package.module:function"`` and returns the callable it names.

    Args:
        spec: ``module:attribute``; the attribute may be dotted (``Class.method``).
        where: what the path is for, in messages (``"model"``).
        search: folders put in front of ``sys.path`` (kept there, as for a script's
            folder, so the module's own later imports work), e.g. the JOB file's folder.

    Raises:
        ConfigError: GT134 with the nearest module or attribute name when one is close.
    """
    spec = str(spec).strip()
    if not _IMPORT_PATH.match(spec):
        raise ConfigError(f"{where}: expected 'package.module:function', found {spec!r}",
                          code=CODE_IMPORT, fix="e.g. 'tiny_model:build_model'")
    module_name, _, attr_path = spec.partition(":")
    folders = [os.path.abspath(os.fspath(p)) for p in search]
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            near = _near_modules(missing, folders)
            raise ConfigError(
                f"{where}: no module named {missing!r} (looked in {', '.join(folders) or '-'} "
                f"and the installed packages)", code=CODE_IMPORT,
                fix=(f"did you mean '{near}'?" if near else
                     "put the module beside the JOB file, or install its package")) from None
        raise ConfigError(f"{where}: importing {module_name!r} failed: it needs the module "
                          f"{missing!r}, which is not installed", code=CODE_IMPORT,
                          fix=f"install {missing.split('.')[0]!r}") from None
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(f"{where}: importing {module_name!r} raised "
                          f"{_where_raised(err)}", code=CODE_IMPORT,
                          fix=f"run python -c 'import {module_name}' to see the whole "
                              "traceback") from None
    obj: Any = module
    done = module_name
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            raise ConfigError(f"{where}: {done!r} has no attribute {part!r}",
                              code=CODE_IMPORT,
                              fix=(f"did you mean '{module_name}:{_replace_last(attr_path, part, close[0])}'?"
                                   if close else
                                   f"define {part} in {getattr(module, '__file__', module_name)}"))
        obj = getattr(obj, part)
        done = f"{done}.{part}"
    if not callable(obj):
        raise ConfigError(f"{where}: {spec!r} is a {type(obj).__name__}, not a function",
                          code=CODE_IMPORT, fix="name a function that returns the object")
    return obj


def _replace_last(attr_path: str, part: str, new: str) -> str:
    head, _, _ = attr_path.rpartition(part)
    return head + new


def _near_modules(name: str, folders: Sequence[str]) -> str | None:
    top = name.split(".")[0]
    candidates = set()
    for folder in folders:
        try:
            for entry in os.listdir(folder):
                if entry.endswith(".py"):
                    candidates.add(entry[:-3])
                elif os.path.isfile(os.path.join(folder, entry, "__init__.py")):
                    candidates.add(entry)
        except OSError:
            continue
    close = difflib.get_close_matches(top, sorted(candidates), n=1, cutoff=0.6)
    return close[0] + name[len(top):] if close else None


def _where_raised(err: BaseException) -> str:
    text = _first_line(err)
    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, SyntaxError) and err.filename:
        return f"{text} ({err.filename}, line {err.lineno})"
    if frames:
        last = frames[-1]
        return f"{text} ({last.filename}, line {last.lineno})"
    return text


def _first_line(err: BaseException) -> str:
    lines = traceback.format_exception_only(type(err), err)
    return " ".join(lines[-1].split()) if lines else type(err).__name__


def _resolve_data(value, where, base, problems, *, training: bool):
    kind = next(k for k in ("npz", "parquet", "dataset_fn") if k in value)
    if kind == "dataset_fn":
        fn = _resolve_callable({"builder": value["dataset_fn"], "args": value.get("args")},
                               _join(where, "dataset_fn"), base, problems)
        return fn, None
    if kind == "parquet":
        from guardtrain.data import parquet

        source = parquet(str(_resolve_path(value["parquet"], base)),
                         features=value["features"], label=value.get("label"),
                         feature_dtype=value.get("feature_dtype", "float32"))
        if not source.files:
            problems.append(_Problem(CODE_DATA, _join(where, "parquet"),
                                     f"no Parquet file matches {source.path!r}",
                                     "check the path or glob (relative paths start at the "
                                     "JOB file's folder)"))
            return None, None
        if training:
            return source, None
        return source.read_numpy()   # model.evaluate takes arrays, not a source
    return _read_npz(value, where, base, problems)


def _read_npz(value, where, base, problems):
    import numpy as np

    path = _resolve_path(value["npz"], base)
    try:
        with np.load(path, allow_pickle=False) as archive:   # never unpickle a job's data
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        problems.append(_Problem(CODE_DATA, _join(where, "npz"), f"no file {str(path)!r}",
                                 "check the path (relative paths start at the JOB file's "
                                 "folder)"))
        return None, None
    except ValueError as err:
        if "allow_pickle" in str(err):
            problems.append(_Problem(CODE_DATA, _join(where, "npz"),
                                     f"{str(path)!r} holds object arrays, which would need "
                                     "unpickling", "save plain numeric arrays "
                                     "(np.savez(path, x=x.astype('float32'), y=y))"))
        else:
            problems.append(_Problem(CODE_DATA, _join(where, "npz"),
                                     f"{str(path)!r} is not a readable .npz ({err})",
                                     "write it with np.savez or np.savez_compressed"))
        return None, None
    except OSError as err:
        problems.append(_Problem(CODE_DATA, _join(where, "npz"),
                                 f"{str(path)!r} cannot be read ({err})",
                                 "write it with np.savez or np.savez_compressed"))
        return None, None

    def pick(name, key):
        if name in arrays:
            return arrays[name]
        problems.append(_Problem(CODE_DATA, _join(where, key), f"no array {name!r} in "
                                 f"{path.name}", _suggest(name, arrays)))
        return None

    xs = value.get("x", "x")
    if isinstance(xs, dict):
        x = {inp: pick(name, "x") for inp, name in xs.items()}
    elif isinstance(xs, list):
        x = [pick(name, "x") for name in xs]
    else:
        x = pick(xs, "x")
    ys = value.get("y", "y")
    y = pick(ys, "y") if ys is not None else None
    return x, y


def user_modules(job: Job) -> list[str]:
    """The top-level modules the job's import paths name that live outside the installed
    packages (beside the JOB file, in the current folder): Ray workers on other machines
    cannot import them, so the CLI sends them by value. guardtrain itself is never one."""
    names = []
    for entry in (job.spec.raw.get("model"), (job.spec.raw.get("data") or {}).get("dataset_fn")):
        if isinstance(entry, dict):
            entry = entry.get("builder")
        if not isinstance(entry, str):
            continue
        top = entry.split(":")[0].split(".")[0]
        module = sys.modules.get(top)
        file = getattr(module, "__file__", None)
        if (top != "guardtrain" and file and "site-packages" not in file
                and "dist-packages" not in file):
            names.append(top)
    return names
