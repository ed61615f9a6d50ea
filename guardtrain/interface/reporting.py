"""``gt.report`` (text) and ``gt.plot`` (PNG) of a run, finished or still running.

Both read only the run directory (``history/attempt-*.parquet`` and ``events.jsonl``), so
they work on a run another process is writing: history files are replaced atomically and
a reader never sees half of one.

The plot has four panels over the optimizer step, one colour per attempt:

```
loss            train per step (faint) and its running median; validation per epoch
update ratio    log scale; the healthy band 1e-4..1e-2 shaded, the guard's limits dashed
gradient norm   per-replica spread (min..max band) and the mean, log scale
learning rate   log scale, with the optimizer named where an attempt starts
```

A red line marks every rescue decision at its step, labelled with the verdict and the
change; the grey span before it is what the rollback undid.

Example:

>>> print(gt.report("guardtrain_runs/20261129-101500-ab12"))      # doctest: +SKIP
>>> gt.plot("guardtrain_runs/20261129-101500-ab12", "run.png")     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from guardtrain.core.errors import ConfigError

__all__ = ["report", "plot", "load_run", "RunRecord"]

CODE_NOT_A_RUN = "GT140"

# The guard's default update-ratio limits (GuardConfig), used when a run's directory has no
# ``guard`` event (runs with guard=False, or older runs), and the healthy band around 1e-3.
_STALL_RATIO = 1e-5
_THROWN_RATIO = 1e-1
_HEALTHY_BAND = (1e-4, 1e-2)
_TAIL_STEPS = 10
_ACTIONS_MARKED = ("ADJUST", "ABORT")


@dataclasses.dataclass
class AttemptRecord:
    """One attempt as the run directory tells it."""

    number: int
    optimizer: str = "?"
    learning_rate: float = float("nan")
    first_step: int | None = None
    last_step: int | None = None
    rows: int = 0
    from_step: int = 0
    change: str = "start"
    ended: str = ""
    rolled_back_from: int | None = None   # the next attempt restarted from this step


@dataclasses.dataclass
class RunRecord:
    """Everything ``report`` and ``plot`` read from a run directory.

    Args:
        run_dir: the run directory.
        columns: the history as ``{column: np.ndarray}``, sorted by attempt then step.
        events: ``events.jsonl``, one dict per event.
    """

    run_dir: Path
    columns: dict[str, np.ndarray]
    events: list[dict[str, Any]]

    @property
    def rows(self) -> int:
        return len(self.columns.get("step", ()))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    def guard_limit(self, name: str, default: float) -> float:
        """A ``GuardConfig`` field as the run used it (its ``guard`` event), else ``default``."""
        for event in self.of("guard"):
            value = (event.get("config") or {}).get(name)
            if isinstance(value, (int, float)):
                return float(value)
        return default

    @property
    def start(self) -> dict[str, Any]:
        found = self.of("start")
        return found[0] if found else {}

    @property
    def run_id(self) -> str:
        return str(self.start.get("run_id") or self.run_dir.name)

    @property
    def status(self) -> str:
        """``healthy``, ``rescued``, ``failed`` or ``running`` (no end record yet)."""
        if self.of("error"):
            return "failed"
        ends = self.of("end")
        if ends:
            return str(ends[-1].get("verdict", "healthy"))
        return "running"

    def attempts(self) -> list[AttemptRecord]:
        steps = self.columns.get("step", np.array([], int))
        numbers = self.columns.get("attempt", np.array([], int))
        decisions = self.of("decision")
        adjusts = {int(d["attempt"]): d for d in decisions if d.get("action") == "ADJUST"}
        found = sorted(set(int(a) for a in numbers) | set(adjusts) | {1})
        out = []
        for n in found:
            rec = AttemptRecord(number=n)
            mask = numbers == n
            if mask.any():
                rec.rows = int(mask.sum())
                rec.first_step, rec.last_step = int(steps[mask].min()), int(steps[mask].max())
                rec.optimizer = str(self.columns["optimizer"][mask][0])
                rec.learning_rate = float(self.columns["learning_rate"][mask][0])
                rec.from_step = rec.first_step - 1
            if n in adjusts:
                d = adjusts[n]
                rec.from_step = int(d.get("from_step") or 0)
                rec.change = str(d.get("change", ""))
                if not mask.any():
                    rec.optimizer = str(d.get("optimizer") or "?")
                    rec.learning_rate = float(d.get("learning_rate") or float("nan"))
            out.append(rec)
        for rec, nxt in zip(out, out[1:]):
            d = adjusts.get(nxt.number, {})
            kind = (d.get("verdict") or {}).get("kind", "unhealthy")
            rec.ended = f"rolled back at step {d.get('step', '?')}: {kind}"
            rec.rolled_back_from = nxt.from_step
        last = out[-1]
        aborts = [d for d in decisions if d.get("action") == "ABORT"]
        errors = self.of("error")
        if errors:
            err = errors[-1]
            # The verdict that stopped it: the ABORT's, else (rescue off) the last verdict
            # within the last attempt.
            started = max((i for i, e in enumerate(self.events)
                           if e.get("event") == "decision" and e.get("action") == "ADJUST"),
                          default=-1)
            own = [e for e in self.events[started + 1:] if e.get("event") == "verdict"]
            cause = aborts[-1].get("verdict") if aborts else (own[-1] if own else {})
            kind = (cause or {}).get("kind")
            last.ended = f"stopped: {kind + ' ' if kind else ''}[{err.get('code', '?')}]"
        elif self.of("end"):
            last.ended = "completed"
        else:
            last.ended = "running"
        return out


def load_run(result_or_run_dir) -> RunRecord:
    """Reads a run directory (or a ``gt.Result``'s) into a ``RunRecord``.

    Raises:
        ConfigError: GT140 when the folder holds neither history nor events.
    """
    from guardtrain.records.history import load_events, load_history

    run_dir = Path(getattr(result_or_run_dir, "run_dir", result_or_run_dir))
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r}: expected a folder, found "
                          f"{'a file' if run_dir.exists() else 'nothing'}",
                          code=CODE_NOT_A_RUN,
                          fix="give a folder under guardtrain_runs/ (gt.fit prints it)")
    table = load_history(run_dir)
    if table.num_rows == 0 and hasattr(result_or_run_dir, "history"):
        table = result_or_run_dir.history   # a worker-side Result: rows but no files
    events = load_events(run_dir)
    if table.num_rows == 0 and not events:
        raise ConfigError(f"run directory {str(run_dir)!r}: expected history/ or "
                          "events.jsonl, found neither", code=CODE_NOT_A_RUN,
                          fix="give a folder under guardtrain_runs/ (gt.fit prints it), or "
                              "wait until the run has written its first records")
    columns = {name: table.column(name).to_numpy(zero_copy_only=False)
               for name in table.column_names}
    return RunRecord(run_dir=run_dir.resolve(), columns=columns, events=events)


# -- text -----------------------------------------------------------------------------------

def report(result_or_run_dir) -> str:
    """The text summary of a run: attempts, decisions with their evidence, the final
    verdict, the last steps' figures, and where the files are.

    Args:
        result_or_run_dir: a ``gt.Result``, or a run directory (finished or running).

    Returns:
        Plain text, one section per heading, lines under 100 characters where the
        messages allow.

    Example:

    >>> print(gt.report(result))      # doctest: +SKIP
    guardtrain run 20261129-101500-ab12: RESCUED (healthy after 1 rescue)
    ...
    """
    run = load_run(result_or_run_dir)
    attempts = run.attempts()
    lines = [_headline(run, attempts)]
    lines += _where(run)
    lines += ["", "attempts"]
    lines.append(f"  {'#':>2}  {'optimizer':<10} {'learning rate':>13}  {'steps':>13}  ended")
    for a in attempts:
        steps = (f"{a.first_step}-{a.last_step}" if a.first_step is not None else "-")
        lines.append(f"  {a.number:>2}  {a.optimizer:<10} {_lr(a.learning_rate):>13}  "
                     f"{steps:>13}  {a.ended}")
        if a.number > 1:
            lines.append(f"      from step {a.from_step}: {a.change}")
    lines += _decisions(run)
    lines += _tail(run)
    lines += _epochs(run)
    errors = run.of("error")
    if errors:
        lines += ["", "error"] + ["  " + line for line in
                                  f"[{errors[-1].get('code')}] {errors[-1].get('message', '')}"
                                  .splitlines()]
    lines += _files(run)
    return "\n".join(lines)


def _headline(run: RunRecord, attempts: Sequence[AttemptRecord]) -> str:
    status = run.status
    rescues = len(attempts) - 1
    detail = {
        "healthy": "never touched",
        "rescued": f"healthy after {rescues} rescue{'s' if rescues != 1 else ''}",
        "failed": f"stopped after {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}",
        "running": "no end record yet: still running, or stopped abruptly",
    }.get(status, "")
    return f"guardtrain run {run.run_id}: {status.upper()}" + (f" ({detail})" if detail else "")


def _where(run: RunRecord) -> list[str]:
    start = run.start
    lines = [f"  run dir:  {run.run_dir}"]
    if start:
        replicas = start.get("replicas", "?")
        lines.append(f"  ran on:   {start.get('strategy', '?')}, {replicas} replica"
                     f"{'s' if replicas != 1 else ''}"
                     + (f", {start.get('workers')} Ray workers" if start.get("workers") else ""))
        spe, epochs = start.get("steps_per_epoch"), start.get("epochs")
        if spe and epochs:
            lines.append(f"  planned:  {epochs} epoch{'s' if epochs != 1 else ''} x {spe} "
                         f"steps = {epochs * spe} steps")
    if run.rows:
        last = int(run.columns["step"][-1])
        text = f"  progress: at step {last}, {run.rows} steps recorded"
        ends = _loss_ends(run)
        if ends:
            text += f", loss {ends[0]:.4g} -> {ends[1]:.4g} (medians of the first and last 10)"
        lines.append(text)
    return lines


def _loss_ends(run: RunRecord) -> tuple[float, float] | None:
    """The median loss of the run's first 10 and last 10 finite steps (one step is noise)."""
    loss = run.columns["loss"].astype(float)
    finite = loss[np.isfinite(loss)]
    if not finite.size:
        return None
    return float(np.median(finite[:10])), float(np.median(finite[-10:]))


def _decisions(run: RunRecord) -> list[str]:
    from guardtrain.core.rescue import Decision, format_decision

    shown = [d for d in run.of("decision")]
    probes = {int(p.get("step", -1)): p for p in run.of("probe")}
    decided = {(int(d.get("step", -1)), (d.get("verdict") or {}).get("kind")) for d in shown}
    loose = [v for v in run.of("verdict")
             if (int(v.get("step", -1)), v.get("kind")) not in decided]
    if not shown and not loose:
        return ["", "verdicts and decisions", "  none: the guard never called the run unhealthy"]
    lines = ["", "verdicts and decisions"]
    names = {f.name for f in dataclasses.fields(Decision)}
    for d in shown:
        fields = {k: v for k, v in d.items() if k in names and k != "verdict"}
        fields["probe_learning_rates"] = tuple(fields.get("probe_learning_rates") or ())
        block = format_decision(Decision(**fields))
        lines += ["  " + line for line in block.splitlines()]
        evidence = _evidence(d.get("verdict") or {})
        if evidence:
            lines.append("    " + evidence)
        probe = probes.get(int(d.get("step", -1)))
        if d.get("action") == "PROBE" and probe:
            lines.append("    probe:  " + "; ".join(
                f"{_lr(r['learning_rate'])} loss {r['loss_start']:.4g} -> {r['loss_end']:.4g}"
                + ("" if r.get("finite", True) else " (non-finite)")
                for r in probe.get("results", [])))
    for v in loose:
        lines.append(f"  [guard] {v.get('reason', v.get('kind'))}")
        evidence = _evidence(v)
        if evidence:
            lines.append("    " + evidence)
    return lines


def _evidence(verdict: dict) -> str:
    evidence = verdict.get("evidence") or {}
    if not evidence:
        return ""
    window = ""
    if verdict.get("first_step") is not None:
        window = f" (steps {verdict['first_step']}-{verdict.get('step')})"
    parts = []
    for key, value in evidence.items():
        if isinstance(value, (list, tuple, dict)):
            continue
        parts.append(f"{key}={_num(value)}")
    return f"evidence{window}: " + ", ".join(parts)


def _tail(run: RunRecord) -> list[str]:
    if not run.rows:
        return ["", "last steps", "  none recorded yet"]
    c = run.columns
    last_attempt = c["attempt"][-1]
    idx = np.nonzero(c["attempt"] == last_attempt)[0][-_TAIL_STEPS:]
    med = lambda name: float(np.nanmedian(c[name][idx].astype(float)))  # noqa: E731
    steps = c["step"][idx]
    return ["", f"last {len(idx)} steps (attempt {last_attempt}, steps {steps[0]}-{steps[-1]}, "
                "medians)",
            f"  loss {_num(med('loss'))}   update_ratio {med('update_ratio'):.1e}   "
            f"grad_norm {_num(med('grad_norm_mean'))} (replicas {_num(med('grad_norm_min'))}"
            f"..{_num(med('grad_norm_max'))})   learning_rate {_lr(c['learning_rate'][idx][-1])}"
            f" {c['optimizer'][idx][-1]}   verdict {c['verdict'][idx][-1]}"]


def _epochs(run: RunRecord) -> list[str]:
    epochs = run.of("epoch")
    if not epochs:
        return []
    lines = ["", "epochs"]
    for e in epochs:
        logs = e.get("logs") or {}
        shown = {k: v for k, v in logs.items() if k not in ("update_ratio", "grad_norm")}
        text = "  ".join(f"{k} {_num(v)}" for k, v in shown.items())
        lines.append(f"  epoch {int(e.get('epoch', 0)) + 1:>3}  step {e.get('step', '?'):>6}  "
                     f"attempt {e.get('attempt', '?')}  {text}")
    return lines


def _files(run: RunRecord) -> list[str]:
    d = run.run_dir
    hist = sorted((d / "history").glob("attempt-*.parquet"))
    lines = ["", "files",
             f"  {d / 'history'}/  {len(hist)} file{'s' if len(hist) != 1 else ''}, "
             f"{run.rows} rows  (gt.load_history)",
             f"  {d / 'events.jsonl'}  {len(run.events)} events"]
    if (d / "model.keras").exists():
        lines.append(f"  {d / 'model.keras'}  the final model (keras.models.load_model)")
    png = d / "report.png"
    lines.append(f"  {png}" if png.exists()
                 else f"  plot: guardtrain report {d} --png {png}")
    return lines


def _lr(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "?"
    return "?" if not math.isfinite(value) else f"{value:.1e}"


def _num(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return str(value)
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.2e}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4g}"


# -- picture --------------------------------------------------------------------------------

def plot(result_or_run_dir, path: str | os.PathLike) -> Path:
    """Draws the run as a PNG: loss, update ratio, per-replica gradient spread, learning
    rate, with every rescue marked. Uses matplotlib's Agg canvas directly, so it never
    changes the caller's pyplot backend.

    Args:
        result_or_run_dir: a ``gt.Result``, or a run directory (finished or running).
        path: the PNG to write (written to a temp file, then renamed).

    Returns:
        The path written.

    Example:

    >>> gt.plot(result, "run.png")      # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from guardtrain.records.history import write_atomic

    run = load_run(result_or_run_dir)
    fig = Figure(figsize=(11, 10.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, height_ratios=(1.4, 1, 1, 0.7))
    attempts = run.attempts()
    fig.suptitle(_title(run, attempts), fontsize=12, x=0.01, ha="left")
    if not run.rows:
        for ax in axes:
            ax.text(0.5, 0.5, "no steps recorded yet", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
    else:
        _draw_loss(axes[0], run, attempts)
        _draw_ratio(axes[1], run, attempts)
        _draw_grads(axes[2], run, attempts)
        _draw_lr(axes[3], run, attempts)
        _mark_decisions(axes, run)
    axes[-1].set_xlabel("optimizer step (a rollback moves it back: each attempt has its "
                        "own colour)")
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    path = Path(path)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def _title(run: RunRecord, attempts: Sequence[AttemptRecord]) -> str:
    status = run.status.upper()
    parts = [f"{run.run_id}: {status}"]
    adjusts = [d for d in run.of("decision") if d.get("action") in _ACTIONS_MARKED]
    for d in adjusts[:3]:
        kind = (d.get("verdict") or {}).get("kind", "?")
        parts.append(f"{kind} at step {d.get('step')} -> {_short_change(d)}")
    if len(adjusts) > 3:
        parts.append(f"... {len(adjusts) - 3} more")
    ends = _loss_ends(run) if run.rows else None
    if ends:
        parts.append(f"loss {ends[0]:.3g} -> {ends[1]:.3g}")
    return "  |  ".join(parts)


def _short_change(d: dict) -> str:
    if d.get("action") == "ABORT":
        return f"stopped [{d.get('code')}]"
    change = str(d.get("change", ""))
    return change.split(" (")[0].replace("learning_rate", "lr").replace(
        ", fresh optimizer state", "")


def _colour(n: int) -> str:
    return f"C{(n - 1) % 10}"


def _segments(run: RunRecord, attempts: Sequence[AttemptRecord]):
    """Per attempt: (attempt, index array kept, index array rolled back)."""
    c = run.columns
    for a in attempts:
        idx = np.nonzero(c["attempt"] == a.number)[0]
        if not idx.size:
            continue
        if a.rolled_back_from is not None:
            undone = c["step"][idx] > a.rolled_back_from
            yield a, idx[~undone], idx[undone]
        else:
            yield a, idx, idx[:0]


def _measured(c, idx: np.ndarray) -> np.ndarray:
    """The rows of ``idx`` whose norms were measured (``stats_every``): the others are
    null, and a line through them would be all gaps."""
    if "measured" not in c:
        return idx
    return idx[np.asarray(c["measured"][idx], bool)]


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or values.size < 3:
        return values
    pad = width // 2
    padded = np.pad(values.astype(float), pad, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * pad + 1)
    return np.nanmedian(windows, axis=1)[: values.size]


def _draw_loss(ax, run, attempts) -> None:
    c = run.columns
    width = max(1, run.rows // 60)
    for a, kept, undone in _segments(run, attempts):
        colour = _colour(a.number)
        label = f"attempt {a.number}: {a.optimizer} lr {_lr(a.learning_rate)}"
        for idx, faded in ((kept, False), (undone, True)):
            if not idx.size:
                continue
            steps, loss = c["step"][idx], c["loss"][idx].astype(float)
            loss = np.where(np.isfinite(loss), loss, np.nan)
            ax.plot(steps, loss, color=colour, alpha=0.15 if faded else 0.3, lw=0.8)
            ax.plot(steps, _running_median(loss, width), color=colour,
                    alpha=0.45 if faded else 1.0, lw=1.0 if faded else 1.8,
                    ls="--" if faded else "-", label=label)
            label = None
    bad = ~c["finite"].astype(bool)
    if bad.any():
        ax.plot(c["step"][bad], np.zeros(int(bad.sum())), "x", color="red",
                transform=ax.get_xaxis_transform(), clip_on=False, label="non-finite step")
    kept_val, undone_val = _validation(run, attempts)
    if kept_val:
        ax.plot(*zip(*kept_val), "o-", color="black", ms=5, lw=1.2,
                label="validation (per epoch)")
    if undone_val:
        ax.plot(*zip(*undone_val), "o", mfc="white", mec="0.45", ms=5,
                label="validation, undone")
    if not kept_val and not undone_val:
        ax.text(1.005, 0.05, "no validation\nloss recorded", transform=ax.transAxes,
                ha="left", va="bottom", fontsize=8, color="0.45")
    _scale_loss(ax, run, attempts, width)
    ax.set_ylabel("loss")
    ax.set_title("loss: train per step (thin), running median (bold); dashed = steps a "
                 "rollback undid", fontsize=9, loc="left")
    _legend(ax)


def _validation(run, attempts):
    """``(step, val_loss)`` pairs at epoch ends: those on the run's final path, and those
    a rollback undid (drawn hollow, not joined)."""
    undone_after = {a.number: a.rolled_back_from for a in attempts}
    kept, undone = [], []
    for e in run.of("epoch"):
        value = (e.get("logs") or {}).get("val_loss")
        if not isinstance(value, (int, float)) or e.get("step") is None:
            continue
        limit = undone_after.get(int(e.get("attempt", 0) or 0))
        (undone if limit is not None and e["step"] > limit else kept).append(
            (e["step"], value))
    return sorted(kept), undone


def _scale_loss(ax, run, attempts, width) -> None:
    """Scales the loss axis to the steps that count (not the ones a rollback undid).

    A divergence that was rolled back reaches thousands while the rescued run ends near 0:
    on one linear axis the rescued curve would be a flat line. So the axis follows the
    kept steps' running median, and what it cuts off is said in a note. A loss that
    itself spans more than 3 decades gets a log axis.
    """
    c = run.columns
    kept = np.concatenate([k for _, k, _ in _segments(run, attempts)] or [np.array([], int)])
    loss = c["loss"].astype(float)
    kept_loss = loss[kept][np.isfinite(loss[kept])]
    if not kept_loss.size:
        return
    smooth = _running_median(kept_loss, width)
    val = [e["logs"]["val_loss"] for e in run.of("epoch")
           if isinstance((e.get("logs") or {}).get("val_loss"), (int, float))]
    top = max(float(np.nanmax(smooth)), float(kept_loss[0]), *val)
    # Undone steps count too while they stay near (a stall); a blow-up is left off scale.
    everything = loss[np.isfinite(loss)]
    near = everything[everything <= 3 * top]
    top = max(top, float(near.max()) if near.size else top)
    low = float(np.nanmin(smooth))
    if low > 0 and top / low > 1000:   # smoothed: single batches at loss ~0 do not count
        ax.set_yscale("log")
        ax.set_ylim(low / 3, top * 3)
    else:
        bottom = min(0.0, float(kept_loss.min()))
        ax.set_ylim(bottom, top + 0.08 * (top - bottom or 1.0))
    high = float(everything.max()) if everything.size else top
    if high > ax.get_ylim()[1]:
        ax.text(1.005, 0.5, f"off scale: undone\nsteps reach {high:.3g}",
                transform=ax.transAxes, ha="left", va="center", fontsize=8, color="0.35")


def _legend(ax) -> None:
    # Outside the axes, on the right: inside, it hides the curves or the rescue labels.
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def _draw_ratio(ax, run, attempts) -> None:
    c = run.columns
    ax.set_yscale("log")
    ax.axhspan(*_HEALTHY_BAND, color="tab:green", alpha=0.12, lw=0,
               label="healthy (~1e-3)")
    stall = run.guard_limit("stall_update_ratio", _STALL_RATIO)
    thrown = run.guard_limit("thrown_update_ratio", _THROWN_RATIO)
    ax.axhline(stall, color="tab:orange", ls="--", lw=1, label=f"stall limit {stall:.0e}")
    ax.axhline(thrown, color="tab:red", ls="--", lw=1, label=f"thrown limit {thrown:.0e}")
    for a, kept, undone in _segments(run, attempts):
        for idx, faded in ((kept, False), (undone, True)):
            idx = _measured(c, idx)
            if idx.size:
                ratio = c["update_ratio"][idx].astype(float)
                ratio = np.where(ratio > 0, ratio, np.nan)
                ax.plot(c["step"][idx], ratio, color=_colour(a.number),
                        alpha=0.4 if faded else 1.0, lw=1.0 if faded else 1.4,
                        ls="--" if faded else "-")
    ax.set_ylabel("update / weight norm")
    ax.set_title("update ratio  ||w_t - w_t-1|| / ||w_t-1||  (log scale)", fontsize=9,
                 loc="left")
    _widen_log_limits(ax, c["update_ratio"], (stall / 3, thrown * 3),
                      robust=True)
    _legend(ax)


def _draw_grads(ax, run, attempts) -> None:
    c = run.columns
    ax.set_yscale("log")
    for a, kept, undone in _segments(run, attempts):
        colour = _colour(a.number)
        for idx, faded in ((kept, False), (undone, True)):
            idx = _measured(c, idx)
            if not idx.size:
                continue
            steps = c["step"][idx]
            low = np.where(c["grad_norm_min"][idx] > 0, c["grad_norm_min"][idx], np.nan)
            high = np.where(c["grad_norm_max"][idx] > 0, c["grad_norm_max"][idx], np.nan)
            mean = np.where(c["grad_norm_mean"][idx] > 0, c["grad_norm_mean"][idx], np.nan)
            ax.fill_between(steps, low, high, color=colour, alpha=0.12 if faded else 0.3,
                            lw=0)
            ax.plot(steps, mean, color=colour, alpha=0.4 if faded else 1.0,
                    lw=1.0 if faded else 1.4, ls="--" if faded else "-")
    replicas = run.start.get("replicas")
    spread = c["grad_norm_max"] / np.where(c["grad_norm_min"] > 0, c["grad_norm_min"], np.nan)
    note = (f"{replicas} replica{'s' if replicas != 1 else ''}; " if replicas else "")
    if np.all(~np.isfinite(spread) | (spread <= 1.0 + 1e-9)):
        note += "min = max: no spread to show"
    else:
        note += f"max/min median {np.nanmedian(spread):.3g}"
    ax.text(1.005, 0.5, note.replace("; ", "\n"), transform=ax.transAxes, ha="left",
            va="center", fontsize=8, color="0.3")
    _widen_log_limits(ax, np.concatenate([c["grad_norm_min"], c["grad_norm_max"]]), None,
                      robust=True)   # batches with gradient ~0 would stretch it to 1e-17
    ax.set_ylabel("gradient norm")
    ax.set_title("per-replica gradient norm: band = min..max over replicas, line = mean",
                 fontsize=9, loc="left")


def _draw_lr(ax, run, attempts) -> None:
    c = run.columns
    ax.set_yscale("log")
    for a, kept, undone in _segments(run, attempts):
        idx = np.concatenate([kept, undone])
        steps = c["step"][idx]
        lr = c["learning_rate"][idx].astype(float)
        ax.step(steps, np.where(lr > 0, lr, np.nan), where="post", color=_colour(a.number),
                lw=1.6)
        if lr.size and lr[0] > 0:
            ax.annotate(f"{a.optimizer} {_lr(lr[0])}", (steps[0], lr[0]),
                        textcoords="offset points", xytext=(3, 4), fontsize=8,
                        color=_colour(a.number))
    _widen_log_limits(ax, c["learning_rate"], None, top=8)
    ax.set_ylabel("learning rate")


def _widen_log_limits(ax, values, span, *, robust: bool = False, top: float = 2) -> None:
    """Log-axis limits around the positive values (and ``span``). ``robust`` ignores the
    lowest 5%: a batch whose gradient is ~0 would otherwise stretch the axis to 1e-17."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return
    low = np.percentile(v, 5) / 3 if robust else v.min()
    high = v.max()
    if span is not None:
        low, high = min(low, span[0]), max(high, span[1])
    ax.set_ylim(low / 2, high * top)


def _mark_decisions(axes, run: RunRecord) -> None:
    marked = [d for d in run.of("decision") if d.get("action") in _ACTIONS_MARKED]
    for i, d in enumerate(marked):
        step = d.get("step")
        if step is None:
            continue
        colour = "darkred" if d.get("action") == "ABORT" else "red"
        start = d.get("from_step")
        for ax in axes:
            ax.axvline(step, color=colour, ls="-", lw=1.3, alpha=0.9)
            if start is not None and start < step:
                ax.axvspan(start, step, color="0.5", alpha=0.08, lw=0)
        kind = (d.get("verdict") or {}).get("kind", "?")
        label = f"{kind} -> {_short_change(d)}"
        if d.get("action") == "ADJUST":
            label = f"attempt {d.get('attempt')}: " + label
        low, high = axes[0].get_xlim()
        right = (step - low) / max(high - low, 1e-9) > 0.6   # keep the label inside
        axes[0].annotate(label, (step, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(-4 if right else 4, -6 - 16 * (i % 3)),
                         textcoords="offset points", fontsize=8.5, color=colour,
                         ha="right" if right else "left", va="top",
                         bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour,
                                   alpha=0.9))
