"""``gt.plot``: a run as a PNG, finished or still running.

Four panels over the optimizer step, one colour per attempt:

```
loss            train per step (faint) and its running median; validation per epoch
update ratio    log scale; the healthy band 1e-4..1e-2 shaded, the guard's limits dashed
gradient norm   per-replica spread (min..max band) and the mean, log scale
learning rate   log scale, with the optimizer named where an attempt starts
```

A red line marks every ADJUST and ABORT decision at its step, labelled with the verdict
and the change (built from the decision's fields); the grey span before it is what the
rollback undid. It reads only the run directory, through ``guardtrain.records.run_record``.

Example:

>>> gt.plot("guardtrain_runs/20261129-101500-ab12", "run.png")     # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from guardtrain.interface.labels import decision_label, lr_text
from guardtrain.records.atomic import write_atomic
from guardtrain.records.run_record import AttemptRecord, RunRecord, load_run

__all__ = ["plot"]

# The guard's default update-ratio limits (GuardConfig), used when a run's directory has no
# ``guard`` event (runs with guard=False, or older runs), and the healthy band around 1e-3.
_STALL_RATIO = 1e-5
_THROWN_RATIO = 1e-1
_HEALTHY_BAND = (1e-4, 1e-2)
_ACTIONS_MARKED = ("ADJUST", "ABORT")


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
        parts.append(f"{kind} at step {d.get('step')} -> {decision_label(d)}")
    if len(adjusts) > 3:
        parts.append(f"... {len(adjusts) - 3} more")
    ends = run.loss_ends() if run.rows else None
    if ends:
        parts.append(f"loss {ends[0]:.3g} -> {ends[1]:.3g}")
    return "  |  ".join(parts)


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
        label = f"attempt {a.number}: {a.optimizer} lr {lr_text(a.learning_rate)}"
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
            ax.annotate(f"{a.optimizer} {lr_text(lr[0])}", (steps[0], lr[0]),
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
        label = f"{kind} -> {decision_label(d)}"
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
