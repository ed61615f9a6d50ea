"""Turning a checked JOB file into live objects: the builder imported, the data read.

``resolve_import_path`` imports ``module:function``, the named module from the JOB file's
folder first, without leaving that folder on ``sys.path``; npz files are read with
``allow_pickle=False`` and Parquet through ``gt.data.parquet``. Every problem is collected as a
``guardtrain.core.errors.Problem`` (GT134 imports, GT136 data).

Pure module: no TensorFlow, no Ray (the builder's own imports aside).

Example:

>>> fn = resolve_import_path("os.path:join")
>>> fn("a", "b")
'a/b'
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from guardtrain.core.errors import ConfigError, Problem
from guardtrain.core.validation import suggest
from guardtrain.interface.jobfile.problems import (CODE_DATA, CODE_IMPORT, first_line, join,
                                                   stated)
from guardtrain.interface.jobfile.schema import DATA_KINDS, IMPORT_PATH

__all__ = ["resolve_import_path", "resolve_path", "resolve_callable", "resolve_data"]


def resolve_path(value: str, base: Path) -> Path:
    """``~`` and ``$VARS`` expanded; a relative path starts at ``base`` (the JOB's folder)."""
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return p if p.is_absolute() else (base / p)


def resolve_callable(entry, where: str, base: Path, problems: list[Problem]):
    """``"mod:fn"`` or ``{builder|dataset_fn: "mod:fn", args: {...}}`` -> the function,
    with its ``args`` bound; ``None`` (and a problem) when it cannot be imported."""
    if isinstance(entry, dict):
        target, args = entry.get("builder", entry.get("dataset_fn")), entry.get("args") or {}
    else:
        target, args = entry, {}
    try:
        fn = resolve_import_path(target, where=where, search=[base])
    except ConfigError as err:
        problems.append(stated(err.code, where, err.message.removeprefix(f"{where}: "),
                               err.fix))
        return None
    return functools.partial(fn, **args) if args else fn


def resolve_import_path(spec: str, *, where: str = "import path",
                        search: Sequence[str | os.PathLike] = ()) -> Callable:
    """Imports ``"package.module:function"`` and returns the callable it names.

    Args:
        spec: ``module:attribute``; the attribute may be dotted (``Class.method``).
        where: what the path is for, in messages (``"model"``).
        search: folders the named module is looked up in before the installed
            packages, e.g. the JOB file's folder. They are not left on ``sys.path``: a
            ``pandas.py`` beside a JOB must not replace pandas for the rest of the run.
            While the module is imported they are searched last, so its imports of
            modules beside it (``import helpers`` at the top) work; import those at the
            top of the module, not inside a function called later.

    Raises:
        ConfigError: GT134 with the nearest module or attribute name when one is close.
    """
    spec = str(spec).strip()
    if not IMPORT_PATH.match(spec):
        raise ConfigError(f"{where}: expected 'package.module:function', found {spec!r}",
                          code=CODE_IMPORT, fix="e.g. 'tiny_model:build_model'")
    module_name, _, attr_path = spec.partition(":")
    folders = [os.path.abspath(os.fspath(p)) for p in search]
    try:
        module = _import_beside(module_name, folders)
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
            near = f"{module_name}:{_replace_last(attr_path, part, close[0])}" if close else ""
            raise ConfigError(f"{where}: {done!r} has no attribute {part!r}",
                              code=CODE_IMPORT,
                              fix=(f"did you mean '{near}'?" if close else
                                   f"define {part} in {getattr(module, '__file__', module_name)}"))
        obj = getattr(obj, part)
        done = f"{done}.{part}"
    if not callable(obj):
        raise ConfigError(f"{where}: {spec!r} is a {type(obj).__name__}, not a function",
                          code=CODE_IMPORT, fix="name a function that returns the object")
    return obj


def _import_beside(module_name: str, folders: list[str]):
    """Imports ``module_name``, its top-level module taken from ``folders`` when one holds
    it, else from the installed packages; ``sys.path`` is as before afterwards.

    Only the named module comes from the folders first. Anything it imports is looked up
    as usual, then in the folders (appended to ``sys.path`` for the import only), so a
    sibling module works and a ``pandas.py`` beside it never hides pandas.
    """
    import importlib.machinery
    import importlib.util

    top = module_name.split(".")[0]
    added = [f for f in folders if f not in sys.path]
    sys.path.extend(added)
    try:
        if top not in sys.modules:
            found = importlib.machinery.PathFinder.find_spec(top, folders) if folders else None
            if found is not None and found.loader is not None:
                module = importlib.util.module_from_spec(found)
                sys.modules[top] = module
                try:
                    found.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(top, None)
                    raise
        return importlib.import_module(module_name)
    finally:
        for folder in added:
            try:
                sys.path.remove(folder)
            except ValueError:   # the module removed it itself
                pass


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
    text = first_line(err)
    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, SyntaxError) and err.filename:
        return f"{text} ({err.filename}, line {err.lineno})"
    if frames:
        last = frames[-1]
        return f"{text} ({last.filename}, line {last.lineno})"
    return text


def resolve_data(value, where: str, base: Path, problems: list[Problem], *, training: bool):
    """A checked data entry -> ``(x, y)``: arrays, a Parquet source (training) or a
    ``dataset_fn``; ``(None, None)`` (and a problem) when it cannot be read."""
    kind = next(k for k in DATA_KINDS if k in value)
    if kind == "dataset_fn":
        fn = resolve_callable({"builder": value["dataset_fn"], "args": value.get("args")},
                              join(where, "dataset_fn"), base, problems)
        return fn, None
    if kind == "parquet":
        from guardtrain.data import parquet

        source = parquet(str(resolve_path(value["parquet"], base)),
                         features=value["features"], label=value.get("label"),
                         feature_dtype=value.get("feature_dtype", "float32"))
        if not source.files:
            problems.append(stated(CODE_DATA, join(where, "parquet"),
                                   f"no Parquet file matches {source.path!r}",
                                   "check the path or glob (relative paths start at the "
                                   "JOB file's folder)"))
            return None, None
        if training:
            return source, None   # read by gt.check and the loop, which name its problems
        unreadable = _parquet_unreadable(source)
        if unreadable:
            problems.append(stated(CODE_DATA, join(where, "parquet"), unreadable,
                                   "write the validation data with pyarrow.parquet."
                                   "write_table or DataFrame.to_parquet, with its rows"))
            return None, None
        return source.read_numpy()   # model.evaluate takes arrays, not a source
    return _read_npz(value, where, base, problems)


def _parquet_unreadable(source) -> str | None:
    """Why ``source``'s files cannot be read as validation rows, or ``None``."""
    try:
        rows = source.num_rows()   # the footers only
    except Exception as err:  # pyarrow's own error for a file that is not Parquet
        return f"{source.path!r} is not readable as Parquet ({first_line(err)})"
    if rows == 0:
        return f"{source.path!r} holds no rows (the schema only)"
    return None


def _not_an_archive(path: Path) -> str | None:
    """What ``path`` holds instead of an npz archive (a zip of ``.npy`` files), or ``None``.

    ``np.load`` falls back to unpickling whatever is not a zip or an ``.npy``, so with
    ``allow_pickle=False`` a text file would be reported as "object arrays"."""
    import zipfile

    if not path.is_file() or zipfile.is_zipfile(path):
        return None   # missing: reported by np.load's FileNotFoundError below
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array (np.save), not a named set of arrays"
    if not head:
        return "the file is empty"
    try:
        text = head.decode("utf-8").splitlines()[0][:40]
        return f"it is a text file (it starts {text!r})"
    except (UnicodeDecodeError, IndexError):
        return "it is neither a zip archive nor an .npy array"


def _read_npz(value, where, base, problems):
    import numpy as np

    path = resolve_path(value["npz"], base)
    where_npz = join(where, "npz")
    not_npz = _not_an_archive(path)
    if not_npz:
        problems.append(stated(CODE_DATA, where_npz, f"{str(path)!r} is not an .npz archive: "
                               f"{not_npz}", "write it with np.savez(path, x=x, y=y) or "
                               "np.savez_compressed, or point npz: at the archive"))
        return None, None
    try:
        with np.load(path, allow_pickle=False) as archive:   # never unpickle a job's data
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        problems.append(stated(CODE_DATA, where_npz, f"no file {str(path)!r}",
                               "check the path (relative paths start at the JOB file's "
                               "folder)"))
        return None, None
    except ValueError as err:
        if "allow_pickle" in str(err):
            problems.append(stated(CODE_DATA, where_npz,
                                   f"{str(path)!r} holds object arrays, which would need "
                                   "unpickling", "save plain numeric arrays "
                                   "(np.savez(path, x=x.astype('float32'), y=y))"))
        else:
            problems.append(stated(CODE_DATA, where_npz,
                                   f"{str(path)!r} is not a readable .npz ({err})",
                                   "write it with np.savez or np.savez_compressed"))
        return None, None
    except OSError as err:
        problems.append(stated(CODE_DATA, where_npz, f"{str(path)!r} cannot be read ({err})",
                               "write it with np.savez or np.savez_compressed"))
        return None, None

    def pick(name, key):
        if name in arrays:
            return arrays[name]
        problems.append(stated(CODE_DATA, join(where, key),
                               f"no array {name!r} in {path.name}", suggest(name, arrays)))
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
