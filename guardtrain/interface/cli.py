"""The ``guardtrain`` command: check, fit, report, demo.

```
guardtrain check JOB  [launch options] [--set key=value ...]
guardtrain fit JOB    [launch options] [--run-dir DIR [--resume]] [--set key=value ...]
                      [--verbose N]
guardtrain report RUN_DIR [--png PATH]
guardtrain demo [--only cnn|lr|momentum]
```

Errors end the command with their family's exit code (``EXIT_CODES``); the message
comes first and ends with a ``Fix:`` line, never with a raw traceback (``--debug`` shows it).
SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C, so the run's record says why
it ended (``guardtrain.records.run_end``).
This module imports no TensorFlow until a command needs it, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from guardtrain.core import errors
from guardtrain.records import run_end

__all__ = ["main", "build_parser", "EXIT_CODES"]

logger = logging.getLogger(__name__)

#: Exit code per outcome, as printed by ``guardtrain --help``.
EXIT_CODES = (
    (0, "success: check found no blocking problem; fit finished healthy or rescued"),
    (1, "an unexpected error (a bug, or an error in your code that check could not name)"),
    (2, "usage or configuration: bad arguments, JOB file, --set, import path (ConfigError, "
        "GT1xx)"),
    (3, "the data does not fit the model (InputSpecError, GT2xx): nothing was started"),
    (4, "training unhealthy and rescue off or unable to help (UnhealthyTrainingError, GT3xx), "
        "or a run that finished failed (non-finite values, or a rescue whose last attempt "
        "did not learn)"),
    (5, "launch failed: devices, Ray, workers, hangs (LaunchError, GT4xx)"),
    (6, "every rescue attempt spent (RescueExhaustedError, GT5xx)"),
    (130, "interrupted (Ctrl-C), also on Ray workers; the run's record says INTERRUPTED"),
    (143, "terminated (SIGTERM); the run's record says TERMINATED"),
)

_JOB_FORMAT = """\
JOB file (YAML, read with a safe loader; relative paths start at the JOB file's folder):
  model: tiny_model:build_model        # module:function -> compiled keras.Model
                                       #   (or {builder: ..., args: {...}})
  data: {npz: tiny.npz, x: x_train, y: y_train}
        # or {parquet: 'train-*.parquet', features: [a, b], label: y}
        # or {dataset_fn: 'mod:fn', args: {...}}  (fn(input_context) -> tf.data.Dataset)
  validation: {npz: tiny.npz, x: x_val, y: y_val}   # optional; npz or parquet
  batch_size: 64          epochs: 3          steps_per_epoch: null
  steps_per_loop: 50      shuffle: true      run_dir: null
  guard:  {warmup_steps: 50, window_steps: 100, ...}    # GuardConfig fields, or false
  rescue: {max_attempts: 4, ...}                        # RescueConfig fields, or false
  launch: {workers: 0, cpu_replicas: 2, ...}            # LaunchConfig fields
Modules named by an import path are looked up beside the JOB file first, then in the
installed packages. Unknown keys are errors, with the nearest known key."""


def _exit_table() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (a function, so tests and docs can read the help text)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="guardtrain", formatter_class=formatter,
        description="Guarded Keras training on tf.distribute, in this process or on Ray "
                    "workers:\nrefuses input that does not fit the model before anything "
                    "starts, watches every\nstep that the weights really move, and rescues "
                    "stalled or diverging runs in place.",
        epilog=_exit_table() + "\n\nRun 'guardtrain COMMAND --help' for a command's "
                               "options; 'guardtrain demo' shows what it does.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error, and TensorFlow's logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check", formatter_class=formatter,
        help="validate a JOB: the data against the model, the loss and the launch",
        description="Validates a JOB without training: reads the JOB file, imports the "
                    "model builder,\nsamples the data and runs every input check "
                    "(gt.check). Prints the warnings;\nexits 0 when nothing blocks "
                    "training, 3 with every blocking problem listed.",
        epilog=_JOB_FORMAT + "\n\n" + _exit_table())
    _job_arguments(check)

    fit = commands.add_parser(
        "fit", formatter_class=formatter,
        help="train a JOB: progress, rescue decisions, final summary",
        description="Trains a JOB with gt.fit: checks the input first, then trains in "
                    "this process\n(launch.workers: 0) or on Ray workers (--workers N). "
                    "Prints progress, every rescue\ndecision with its reason, the final "
                    "summary, and writes RUN_DIR/report.png.",
        epilog=_JOB_FORMAT + "\n\n" + _exit_table())
    _job_arguments(fit)
    fit.add_argument("--run-dir", metavar="DIR",
                     help="where the run's files go (default: the JOB's run_dir, else "
                          "guardtrain_runs/<time>-<id> here)")
    fit.add_argument("--resume", action="store_true",
                     help="add this run to a run directory that holds earlier runs (else "
                          "a folder that is not empty is refused, GT152)")
    fit.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                     help="0 silent, 1 progress bar, 2 one line per epoch (default: 1 on a "
                          "terminal, else 2)")

    report = commands.add_parser(
        "report", formatter_class=formatter,
        help="summarise a run directory (finished or running), optionally as a PNG",
        description="Prints what happened in a run: attempts, rescue decisions with "
                    "their evidence,\nthe final verdict, the last steps' figures and "
                    "where the files are. Works on a\nrun that is still going.",
        epilog=_exit_table())
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (fit prints it)")
    report.add_argument("--png", metavar="PATH",
                        help="also draw loss, update ratio, gradient spread and learning "
                             "rate with every rescue marked")

    demo = commands.add_parser(
        "demo", formatter_class=formatter,
        help="three classic reasons Keras does not train, and what guardtrain does",
        description="Three small situations, each shown twice: what plain model.fit "
                    "shows, then\nwhat guardtrain says and does. 15-30 s on 2 CPU "
                    "cores.\n  cnn       a CNN fed flat vectors\n  lr        Adam "
                    "at learning rate 1e-6\n  momentum  SGD with momentum poorly tuned",
        epilog=_exit_table())
    demo.add_argument("--only", choices=("cnn", "lr", "momentum"), action="append",
                      help="run only this situation (repeatable)")
    demo.add_argument("--run-root", metavar="DIR", default="guardtrain_runs",
                      help="where the demo's run directories go (default: guardtrain_runs)")

    for sub, func in ((check, _cmd_check), (fit, _cmd_fit), (report, _cmd_report),
                      (demo, _cmd_demo)):
        sub.set_defaults(func=func)
    return parser


def _job_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("job", metavar="JOB", help="the JOB file (YAML)")
    sub.add_argument("--workers", type=_non_negative_int, metavar="N",
                     help="Ray workers (0 = this process); sets launch.workers")
    sub.add_argument("--gpus-per-worker", type=float, metavar="G",
                     help="GPUs each Ray worker asks for; sets launch.gpus_per_worker")
    sub.add_argument("--address", metavar="ADDR",
                     help="the Ray cluster to attach to ('auto', 'HOST:6379', "
                          "'ray://HOST:10001'); sets launch.address")
    sub.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE",
                     help="override a JOB key, dotted for sections (epochs=3, "
                          "guard.window_steps=50, model.args.units=64); the value is read "
                          "as YAML. Repeatable")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, found {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, found {value}")
    return value


def _version() -> str:
    from guardtrain import __version__

    return __version__


# -- commands -------------------------------------------------------------------------------

def _spec(args):
    from guardtrain.interface.jobfile import parse_job

    launch = {}
    if args.workers is not None:
        launch["workers"] = args.workers
    if args.gpus_per_worker is not None:
        launch["gpus_per_worker"] = args.gpus_per_worker
    if args.address is not None:
        launch["address"] = args.address
    spec = parse_job(args.job, args.overrides, launch_overrides=launch,
                     run_dir=getattr(args, "run_dir", None))
    for note in spec.notes:
        print(f"[job] {note}")
    return spec


def _describe(spec) -> str:
    launch = spec.launch
    if launch.workers:
        where = (f"{launch.workers} Ray worker{'s' if launch.workers != 1 else ''}"
                 + (f" x {launch.gpus_per_worker:g} GPU" if launch.gpus_per_worker else "")
                 + f" at {launch.address or 'a new local Ray'}")
    elif launch.cpu_replicas and launch.cpu_replicas > 1:
        where = f"this process, {launch.cpu_replicas} logical CPUs"
    else:
        where = "this process"
    model = spec.raw["model"]
    model = model.get("builder") if isinstance(model, dict) else model
    args = spec.fit_args
    return (f"[job] {spec.path}\n      model {model}, batch {args['batch_size']}, "
            f"{args['epochs']} epoch{'s' if args['epochs'] != 1 else ''}, on {where}")


def _cmd_check(args) -> int:
    spec = _spec(args)
    print(_describe(spec), flush=True)
    job = spec.resolve()
    from guardtrain.checking import check

    report = check(job.model, job.x, job.y, **job.check_kwargs())
    print(report)
    return 0


def _cmd_fit(args) -> int:
    spec = _spec(args)
    print(_describe(spec), flush=True)
    if spec.launch.cpu_replicas and spec.launch.cpu_replicas > 1:
        from guardtrain.engine.devices import split_cpu

        split_cpu(spec.launch.cpu_replicas)   # before the builder's imports touch devices
    from guardtrain.records.run_dir import new_run_dir

    # The CLI picks the run directory itself, so it can report on a run that fails; a
    # folder that is not empty is refused here, before the data is read (GT152).
    run_dir, _ = new_run_dir(spec.run_dir, resume=args.resume)
    job = spec.resolve()
    print(f"[job] run dir {run_dir}" + (" (resumed: this run is added to it)"
                                       if args.resume else ""), flush=True)
    if spec.launch.workers:
        _ship_user_modules(job)
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    import guardtrain as gt

    kwargs = {**job.fit_kwargs(), "run_dir": run_dir}
    if args.resume:
        kwargs["resume"] = True
    try:
        result = gt.fit(job.model, job.x, job.y, verbose=verbose, **kwargs)
    except (KeyboardInterrupt, run_end.Terminated):
        print(f"\n  the run's record: guardtrain report {run_dir}", flush=True)
        raise
    except Exception as err:
        if not isinstance(err, (errors.ConfigError, errors.InputSpecError)):
            _report_failed_run(run_dir)
        raise
    print()
    print(result.summary())
    png = _plot_quietly(run_dir)
    if png:
        print(f"  plot: {png}")
    print(f"  details: guardtrain report {run_dir}")
    if result.verdict == "failed":
        # Finished, but neither healthy nor rescued (non-finite values, a rescue whose
        # last attempt did not learn): a scheduler must not read it as a success.
        print(f"\nguardtrain fit: the run finished failed (exit "
              f"{errors.UnhealthyTrainingError.exit_code}); see the summary above",
              file=sys.stderr)
        return errors.UnhealthyTrainingError.exit_code
    return 0


def _report_failed_run(run_dir: Path) -> None:
    from guardtrain.interface.text_report import report

    _plot_quietly(run_dir)
    try:
        text = report(run_dir)
    except errors.GuardtrainError:
        return   # nothing was recorded
    except Exception as err:   # noqa: BLE001 - the run's own error is the one to show
        logger.warning("could not report on %s: %s", run_dir, err)
        return
    print("\n" + text, flush=True)


def _plot_quietly(run_dir: Path) -> Path | None:
    from guardtrain.interface.plotting import plot

    try:
        return plot(run_dir, Path(run_dir) / "report.png")
    except errors.GuardtrainError:
        return None
    except Exception as err:   # a plot must never turn a finished run into a failure
        logger.warning("could not draw %s/report.png: %s", run_dir, err)
        return None


def _ship_user_modules(job) -> None:
    """Modules beside the JOB file are not installed on Ray workers: send them by value."""
    from guardtrain.interface.jobfile import user_modules

    names = user_modules(job)
    if not names:
        return
    import ray.cloudpickle as cloudpickle

    for name in names:
        cloudpickle.register_pickle_by_value(sys.modules[name])
    print(f"[job] sending {', '.join(names)} to the workers by value (not installed there)")


def _cmd_report(args) -> int:
    from guardtrain.interface.plotting import plot
    from guardtrain.interface.text_report import report

    print(report(args.run_dir))
    if args.png:
        path = plot(args.run_dir, args.png)
        print(f"\nplot: {path}")
    return 0


def _cmd_demo(args) -> int:
    from guardtrain.interface.demo import run_demo

    return run_demo(only=args.only, run_root=args.run_root)


# -- entry point ----------------------------------------------------------------------------

class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (a test may have replaced it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def _logging_to_stdout(debug: bool):
    """For the command's duration, guardtrain's own log records (the guard's verdicts) go
    to stdout, in order with the progress and the decision blocks printed there; the
    logger is restored afterwards (``main`` may be called from Python, e.g. in tests)."""
    package = logging.getLogger("guardtrain")
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if debug else logging.WARNING)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(saved)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (see ``EXIT_CODES``)."""
    parser = build_parser()
    args = parser.parse_args(argv)       # usage errors exit 2 here, as argparse does
    if not args.debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _logging_to_stdout(args.debug), run_end.sigterm_raises():
            return int(args.func(args) or 0)
    except errors.GuardtrainError as err:
        if args.debug:
            traceback.print_exc()
        print(f"\nguardtrain {args.command}: {err}", file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except KeyboardInterrupt:
        print(f"\nguardtrain {args.command}: interrupted (exit 130)", file=sys.stderr)
        return 130
    except run_end.Terminated:
        print(f"\nguardtrain {args.command}: terminated by SIGTERM (exit 143)",
              file=sys.stderr)
        return 143
    except Exception:   # noqa: BLE001 - the last resort: say it is unexpected, show it all
        traceback.print_exc()
        print(f"\nguardtrain {args.command}: unexpected error (exit 1). If it comes from "
              "guardtrain itself, please report it with the traceback above.",
              file=sys.stderr)
        return 1


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
