"""A JOB file as Python: ``parse_job`` -> ``JobSpec`` (checked) -> ``Job`` (ready to run).

``parse_job`` reads the YAML, applies the command line's overrides and checks every key
without importing anything; ``JobSpec.resolve`` then imports the builder and reads the
data. Both collect every problem before raising one ``ConfigError``.

Pure module: no TensorFlow, no Ray (the builder's own imports aside).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from guardtrain.core.errors import Problem
from guardtrain.core.guard import GuardConfig
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.rescue import RescueConfig
from guardtrain.interface.jobfile.problems import raise_problems
from guardtrain.interface.jobfile.reading import apply_override, parse_override, read_yaml
from guardtrain.interface.jobfile.resolution import (resolve_callable, resolve_data,
                                                     resolve_path)
from guardtrain.interface.jobfile.schema import check_job

__all__ = ["JobSpec", "Job", "parse_job", "load_job", "user_modules"]


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
        """Imports the builder (and the dataset function) and reads the data.

        Raises:
            ConfigError: every import (GT134) and data (GT136) problem found.
        """
        problems: list[Problem] = []
        model = resolve_callable(self.raw["model"], "model", self.base, problems)
        x, y = resolve_data(self.raw["data"], "data", self.base, problems, training=True)
        validation = None
        if self.raw.get("validation") is not None:
            validation = resolve_data(self.raw["validation"], "validation", self.base,
                                      problems, training=False)
        raise_problems(problems, str(self.path))
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
    raw = read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        apply_override(raw, key, value)
    notes = []
    for key, value in (launch_overrides or {}).items():
        apply_override(raw, ("launch", key), value)
    launch = raw.get("launch")
    if ((launch_overrides or {}).get("workers") and isinstance(launch, dict)
            and launch.get("cpu_replicas")):
        notes.append(f"--workers {launch['workers']}: launch.cpu_replicas "
                     f"{launch.pop('cpu_replicas')} dropped (it splits this process's CPU; "
                     "each Ray worker runs one replica per device it has)")
    if run_dir is not None:
        raw["run_dir"] = os.path.abspath(os.fspath(run_dir))

    fit_args, configs, out_dir, problems = check_job(raw)
    raise_problems(problems, str(path))
    return JobSpec(path=path.resolve(), raw=raw, guard=configs["guard"],
                   rescue=configs["rescue"], launch=configs["launch"], fit_args=fit_args,
                   run_dir=resolve_path(out_dir, path.resolve().parent) if out_dir else None,
                   notes=tuple(notes))


def load_job(path: str | os.PathLike, overrides: Sequence[str] = (), **kwargs) -> Job:
    """``parse_job(...).resolve()``: the job checked, its builder imported, its data read."""
    return parse_job(path, overrides, **kwargs).resolve()


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
