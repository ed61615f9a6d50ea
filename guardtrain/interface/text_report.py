"""``gt.report``: the text summary of a run, finished or still running.

It reads only the run directory, through ``guardtrain.records.run_record``, so it works
on a run another process is writing. Sections, in order:

```
guardtrain run ID: STATUS (detail)     where it ran, what was planned, the loss so far
                                       (and the folder's other runs, when it was resumed)
attempts                               one line each, and what changed from the previous
verdicts and decisions                 one block per rescue decision, with its evidence
last steps                             medians of the last 10 steps
epochs                                 Keras logs per epoch
error                                  what ended a failed, interrupted or terminated run
files                                  where the history, events, model and plot are
```

Example:

>>> print(gt.report("guardtrain_runs/20261129-101500-ab12"))      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from guardtrain.interface.labels import change_label, lr_text, num_text
from guardtrain.records.run_end import describe_nonfinite
from guardtrain.records.run_record import AttemptRecord, RunRecord, load_run

__all__ = ["report"]

_TAIL_STEPS = 10


def report(result_or_run_dir) -> str:
    """The text summary of a run: attempts, decisions with their evidence, the final
    verdict, the last steps' figures, and where the files are.

    Args:
        result_or_run_dir: a ``gt.Result``, or a run directory (finished or running).

    Returns:
        Plain text, one section per heading, lines under 100 characters where the
        messages allow.

    Raises:
        ConfigError: GT140 when the folder holds no run's records.

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
        lines.append(f"  {a.number:>2}  {a.optimizer:<10} {lr_text(a.learning_rate):>13}  "
                     f"{steps:>13}  {_ended(a)}")
        if a.number > run.attempt_base + 1:     # the run's own first attempt changed nothing
            change = change_label(a.optimizer_from, a.optimizer, a.learning_rate_from,
                                  a.learning_rate,
                                  fresh_optimizer_state=a.fresh_optimizer_state)
            lines.append(f"      from step {a.from_step}: {change}")
    lines += _decisions(run)
    lines += _tail(run)
    lines += _epochs(run)
    lines += _ending(run)
    lines += _files(run)
    return "\n".join(lines)


def _ended(a: AttemptRecord) -> str:
    """How an attempt ended, in a few words."""
    if a.end_code is not None or a.outcome in ("aborted", "exhausted"):
        kind = a.end_verdict
        return f"stopped: {kind + ' ' if kind else ''}[{a.end_code or '?'}]"
    if a.outcome == "rescued":
        step = a.end_step if a.end_step is not None else "?"
        return f"rolled back at step {step}: {a.end_verdict or 'unhealthy'}"
    return a.outcome   # completed, running


def _headline(run: RunRecord, attempts: Sequence[AttemptRecord]) -> str:
    status = run.status
    rescues = len(attempts) - 1
    step = run.end.get("step")
    at = f" at step {step}" if step is not None else ""
    reason = run.end_reason
    cause = reason.get("code") or reason.get("type") or ""
    detail = {
        "healthy": "never touched",
        "rescued": f"healthy after {rescues} rescue{'s' if rescues != 1 else ''}",
        "failed": (describe_nonfinite(run.end["nonfinite"]) if run.end.get("nonfinite") else
                   f"stopped{at} after {len(attempts)} attempt"
                   f"{'s' if len(attempts) != 1 else ''}" + (f": {cause}" if cause else "")),
        "interrupted": f"Ctrl-C{at}: {reason.get('type', 'KeyboardInterrupt')}",
        "terminated": f"SIGTERM{at}: the process was asked to stop",
        "running": "no end record yet: still running, or killed before it could say",
    }.get(status, "")
    return f"guardtrain run {run.run_id}: {status.upper()}" + (f" ({detail})" if detail else "")


def _ending(run: RunRecord) -> list[str]:
    """What ended a run that did not complete, and the non-finite values of one that did."""
    lines = []
    reason = run.end_reason
    if reason or run.of("error"):
        head = f"[{reason.get('code')}] " if reason.get("code") else ""
        kind = reason.get("type")
        text = f"{head}{kind + ': ' if kind and not head else ''}{reason.get('message', '')}"
        lines += ["", "error" if run.status == "failed" else run.status]
        lines += ["  " + line for line in text.splitlines()]
    info = run.end.get("nonfinite")
    if info:
        lines += ["", "non-finite values", "  " + describe_nonfinite(info) + (
            "; the guard was off" if not info.get("guard") else "")]
    return lines


def _where(run: RunRecord) -> list[str]:
    start = run.start
    lines = [f"  run dir:  {run.run_dir}"]
    if run.other_runs:
        n = len(run.other_runs) + 1
        lines.append(f"  runs:     this folder holds {n} runs (resumed); shown: {run.run_id}; "
                     "others: " + ", ".join(f"{r['run_id']} {str(r['status']).upper()}"
                                           for r in run.other_runs))
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
        ends = run.loss_ends()
        if ends:
            text += f", loss {ends[0]:.4g} -> {ends[1]:.4g} (medians of the first and last 10)"
        lines.append(text)
    return lines


def _decision_block(d: dict[str, Any]) -> list[str]:
    """One decision in the log's fixed shape (as the run printed it), from its fields;
    ``summary`` is the decision's own sentence."""
    lines = [f"[rescue] {d.get('action')}  attempt {d.get('attempt')} of "
             f"{d.get('max_attempts')}",
             f"  reason: {d.get('reason', '')}",
             # Runs written before ``summary`` existed called the sentence ``change``.
             f"  change: {d.get('summary', d.get('change', ''))}"]
    if d.get("from_step") is not None:
        lines.append(f"  from:   snapshot at step {d['from_step']}")
    if d.get("fix"):
        lines.append(f"  fix:    {d['fix']}")
    return lines


def _decisions(run: RunRecord) -> list[str]:
    shown = run.of("decision")
    probes = {int(p.get("step", -1)): p for p in run.of("probe")}
    decided = {(int(d.get("step", -1)), (d.get("verdict") or {}).get("kind")) for d in shown}
    loose = [v for v in run.of("verdict")
             if (int(v.get("step", -1)), v.get("kind")) not in decided]
    if not shown and not loose:
        return ["", "verdicts and decisions", "  none: the guard never called the run unhealthy"]
    lines = ["", "verdicts and decisions"]
    for d in shown:
        lines += ["  " + line for line in _decision_block(d)]
        evidence = _evidence(d.get("verdict") or {})
        if evidence:
            lines.append("    " + evidence)
        probe = probes.get(int(d.get("step", -1)))
        if d.get("action") == "PROBE" and probe:
            lines.append("    probe:  " + "; ".join(
                f"{lr_text(r['learning_rate'])} loss {r['loss_start']:.4g} -> "
                f"{r['loss_end']:.4g}" + ("" if r.get("finite", True) else " (non-finite)")
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
        parts.append(f"{key}={num_text(value)}")
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
            f"  loss {num_text(med('loss'))}   update_ratio {med('update_ratio'):.1e}   "
            f"grad_norm {num_text(med('grad_norm_mean'))} (replicas "
            f"{num_text(med('grad_norm_min'))}..{num_text(med('grad_norm_max'))})   "
            f"learning_rate {lr_text(c['learning_rate'][idx][-1])}"
            f" {c['optimizer'][idx][-1]}   verdict {c['verdict'][idx][-1]}"]


def _epochs(run: RunRecord) -> list[str]:
    epochs = run.of("epoch")
    if not epochs:
        return []
    lines = ["", "epochs"]
    for e in epochs:
        logs = e.get("logs") or {}
        shown = {k: v for k, v in logs.items() if k not in ("update_ratio", "grad_norm")}
        text = "  ".join(f"{k} {num_text(v)}" for k, v in shown.items())
        attempt = e.get("attempt")
        if isinstance(attempt, int):
            attempt += run.attempt_base         # numbered as the history files are
        lines.append(f"  epoch {int(e.get('epoch', 0)) + 1:>3}  step {e.get('step', '?'):>6}  "
                     f"attempt {attempt if attempt is not None else '?'}  {text}")
    return lines


def _files(run: RunRecord) -> list[str]:
    d = run.run_dir
    hist = sorted((d / "history").glob("attempt-*.parquet"))
    lines = ["", "files",
             f"  {d / 'history'}/  {len(hist)} file{'s' if len(hist) != 1 else ''}, "
             f"{run.rows} rows  (gt.load_history)",
             f"  {d / 'events.jsonl'}  {len(run.events)} events"]
    if (d / "attempts.json").exists():
        lines.append(f"  {d / 'attempts.json'}  {len(run.stored_attempts or ())} attempts")
    if (d / "model.keras").exists():
        lines.append(f"  {d / 'model.keras'}  the final model (keras.models.load_model)")
    png = d / "report.png"
    lines.append(f"  {png}" if png.exists()
                 else f"  plot: guardtrain report {d} --png {png}")
    return lines
