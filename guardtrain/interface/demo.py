"""``guardtrain demo``: three reasons a Keras model does not train, each shown twice.

```
cnn       a CNN fed flat vectors          model.fit: an exception from inside the traced
                                          model; guardtrain: refused before anything starts,
                                          with the reshape that fixes it
lr        Adam at learning rate 1e-6      model.fit: a flat loss, no word; guardtrain:
                                          STALLED, a short range test, a 10^4x larger rate
momentum  SGD, lr 0.5 with momentum 0.99  model.fit: the loss jumps between 4 and 28,
                                          accuracy stays at chance, no word; guardtrain:
                                          OSCILLATING, rolled back, a 10x smaller rate
```

Everything is small (2,560 samples, 8 features, an MLP or a tiny CNN, a few epochs) so the
whole demo takes 15-30 s on 2 CPU cores. The runs are ~40 steps per epoch, so the
guard judges smaller windows than its defaults (``warmup_steps=10, window_steps=30``
instead of 50 and 100): the output says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["run_demo", "SITUATIONS"]

_GUARD = {"warmup_steps": 10, "window_steps": 30}
_BATCH = 64
_EPOCHS = 3
_STEPS_PER_LOOP = 10
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RULE = "=" * 88


@dataclasses.dataclass
class Outcome:
    plain: str
    guardtrain: str


def _blobs(n=2560 + 512, classes=4, features=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.2, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, features))
    x, y = x.astype("float32"), y.astype("int64")
    return (x[:2560], y[:2560]), (x[2560:], y[2560:])


def _mlp(optimizer_fn: Callable[[], object]):
    def build():
        import keras

        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)),
                                  keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(4)])
        model.compile(optimizer=optimizer_fn(),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return build


def _cnn():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _say(text: str = "") -> None:
    print(text, flush=True)


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line if line else line for line in text.splitlines())


def _plain_fit(build, x, y, val) -> tuple[str, object, float]:
    """Runs model.fit at verbose=2 and returns what it printed, the history, and how far
    the weights moved relative to where they started (which model.fit never shows)."""
    model = build()
    before = np.concatenate([w.ravel() for w in model.get_weights()])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = model.fit(x, y, batch_size=_BATCH, epochs=_EPOCHS, validation_data=val,
                            verbose=2)
    after = np.concatenate([w.ravel() for w in model.get_weights()])
    moved = float(np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-12))
    return _ANSI.sub("", out.getvalue()).rstrip(), history, moved


def _guarded_fit(build, x, y, val, run_dir: Path):
    import guardtrain as gt

    return gt.fit(build, x, y, batch_size=_BATCH, epochs=_EPOCHS, validation_data=val,
                  steps_per_loop=_STEPS_PER_LOOP, guard=gt.GuardConfig(**_GUARD),
                  run_dir=run_dir, verbose=2)


def _decisions(run_dir: Path) -> list[dict]:
    from guardtrain.records.events import load_events

    return [e for e in load_events(run_dir) if e.get("event") == "decision"
            and e.get("action") in ("ADJUST", "ABORT")]


def _after(run_dir: Path, result) -> None:
    from guardtrain.interface.plotting import plot

    png = plot(run_dir, run_dir / "report.png")
    loss = result.logs.get("loss")
    val = result.logs.get("val_loss")
    acc = result.logs.get("val_accuracy")
    parts = [f"verdict {result.verdict}"]
    if loss is not None:
        parts.append(f"last epoch loss {loss:.3f}")
    if val is not None:
        parts.append(f"val_loss {val:.3f}")
    if acc is not None:
        parts.append(f"val_accuracy {acc:.2f}")
    _say("  " + ", ".join(parts))
    _say(f"  run dir: {run_dir}   plot: {png.name}   (guardtrain report {run_dir})")


# -- the three situations -------------------------------------------------------------------

def _situation_cnn(run_root: Path) -> Outcome:
    import guardtrain as gt

    (x, y), (xv, yv) = _blobs()
    # 8 features do not make an image: tile them to 64 values, the flat vector a
    # CNN on 8x8x1 images is fed by mistake.
    x64 = np.tile(x, (1, 8))
    xv64 = np.tile(xv, (1, 8))
    _say(f"model: Conv2D over (8, 8, 1) images;  data: x {x64.shape}, flat vectors of 64\n")
    _say("plain model.fit:")
    try:
        _cnn().fit(x64, y, batch_size=_BATCH, epochs=1, verbose=0)
        plain = "trained (unexpected)"
        _say("    trained without complaint")
    except Exception as err:   # noqa: BLE001 - showing what Keras raises is the point
        first = " ".join(_ANSI.sub("", str(err)).split("Arguments received")[0].split())
        _say(_indent(f"{type(err).__name__}: {first[:300]}"))
        _say("    (raised from inside the traced model, after the dataset and the step "
             "function were built;\n     on Ray workers it arrives after start-up, "
             "wrapped in a worker's traceback)")
        plain = f"{type(err).__name__} from inside the traced model"
    _say("\nguardtrain (gt.check runs on the driver before anything is built or launched):")
    start = time.perf_counter()
    try:
        gt.check(_cnn, x64, y, batch_size=_BATCH)
        said = "check passed (unexpected)"
    except gt.InputSpecError as err:
        elapsed = time.perf_counter() - start
        _say(_indent(str(err)))
        _say(f"    -> refused in {elapsed:.2f} s; `guardtrain fit` exits {err.exit_code} "
             "and nothing starts")
        codes = ", ".join(p.code for p in err.problems)
        said = f"refused before start: {codes} with the reshape"
    fixed = x64.reshape(-1, 8, 8, 1)
    _say("\nwith the Fix applied (x.reshape(-1, 8, 8, 1)):")
    _say(_indent(str(gt.check(_cnn, fixed, y, batch_size=_BATCH))))
    run_dir = run_root / "cnn"
    result = gt.fit(_cnn, fixed, y, batch_size=_BATCH, epochs=_EPOCHS,
                    validation_data=(xv64.reshape(-1, 8, 8, 1), yv),
                    steps_per_loop=_STEPS_PER_LOOP, guard=gt.GuardConfig(**_GUARD),
                    run_dir=run_dir, verbose=0)
    _after(run_dir, result)
    return Outcome(plain=plain, guardtrain=said)


def _situation_lr(run_root: Path) -> Outcome:
    import keras

    (x, y), val = _blobs()
    build = _mlp(lambda: keras.optimizers.Adam(learning_rate=1e-6))
    _say("model: MLP 8-32-32-4, Adam(learning_rate=1e-6)\n")
    _say("plain model.fit:")
    text, history, moved = _plain_fit(build, x, y, val)
    _say(_indent(text))
    losses = history.history["loss"]
    _say(f"    -> no error, no warning; the loss moves in the third decimal. Not shown: in "
         f"{len(losses) * -(-len(x) // _BATCH)} steps the weights\n       moved {moved:.1e} of their norm "
         "in all (healthy is ~1e-3 per step)")
    _say("\nguardtrain.fit:")
    run_dir = run_root / "lr"
    result = _guarded_fit(build, x, y, val, run_dir)
    _after(run_dir, result)
    return Outcome(plain=f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, silent",
                   guardtrain=_what_it_did(run_dir, result))


def _situation_momentum(run_root: Path) -> Outcome:
    import keras

    (x, y), val = _blobs()
    build = _mlp(lambda: keras.optimizers.SGD(learning_rate=0.5, momentum=0.99))
    _say("model: MLP 8-32-32-4, SGD(learning_rate=0.5, momentum=0.99)\n")
    _say("plain model.fit:")
    text, history, _ = _plain_fit(build, x, y, val)
    _say(_indent(text))
    losses = history.history["loss"]
    acc = history.history["accuracy"][-1]
    _say(f"    -> no error, no warning: the loss goes "
         f"{', '.join(f'{v:.3g}' for v in losses)} and accuracy ends at {acc:.2f} "
         "(chance is 0.25)")
    _say("\nguardtrain.fit:")
    run_dir = run_root / "momentum"
    result = _guarded_fit(build, x, y, val, run_dir)
    _after(run_dir, result)
    return Outcome(plain=f"loss {losses[0]:.3g} -> {losses[-1]:.3g}, silent",
                   guardtrain=_what_it_did(run_dir, result))


def _what_it_did(run_dir: Path, result) -> str:
    decisions = _decisions(run_dir)
    steps = []
    for d in decisions:
        kind = (d.get("verdict") or {}).get("kind", "?")
        steps.append(f"{kind} at step {d.get('step')}: {_change(d)}")
    done = "; ".join(steps) or "nothing to do"
    loss = result.logs.get("val_loss")
    return done + (f"; val_loss {loss:.3f}" if loss is not None else "")


def _change(decision: dict) -> str:
    """What a decision changed, from its fields: 'lr 1.0e-06 -> 1.0e-02', 'optimizer sgd ->
    adam, lr 1.0e-02 -> 1.0e-03', or 'stop [GT306]'."""
    if decision.get("action") == "ABORT":
        return f"stop [{decision.get('code')}]"
    rate = f"lr {decision['learning_rate_from']:.1e} -> {decision['learning_rate_to']:.1e}"
    if decision["optimizer_to"] != decision["optimizer_from"]:
        return f"optimizer {decision['optimizer_from']} -> {decision['optimizer_to']}, {rate}"
    return rate


SITUATIONS = {
    "cnn": ("A CNN fed flat vectors", _situation_cnn),
    "lr": ("Adam at learning rate 1e-6", _situation_lr),
    "momentum": ("SGD with momentum, poorly tuned", _situation_momentum),
}


def run_demo(only: Sequence[str] | None = None, run_root: str | Path = "guardtrain_runs"
             ) -> int:
    """Runs the situations (all, or ``only`` these) and prints both sides of each.

    Returns:
        0 (the exit code of ``guardtrain demo``).
    """
    names = [n for n in SITUATIONS if not only or n in only]
    root = Path(run_root) / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    _say("guardtrain demo: three reasons Keras does not train. Each is shown twice: what "
         "plain\nmodel.fit shows, then what guardtrain says and does.")
    _say(f"Small on purpose (2,560 samples, {_EPOCHS} epochs of 40 steps), so the guard "
         f"judges windows of\n{_GUARD['warmup_steps']} warm-up + {_GUARD['window_steps']} "
         f"steps here: GuardConfig(warmup_steps={_GUARD['warmup_steps']}, "
         f"window_steps={_GUARD['window_steps']}); the defaults\nare 50 + 100 for real "
         f"runs. Runs go to {root}/.")
    import keras  # noqa: F401 - import TensorFlow once, before the clock of a situation

    outcomes = {}
    for i, name in enumerate(names, 1):
        title, fn = SITUATIONS[name]
        _say(f"\n{_RULE}\n{i}/{len(names)}  {title}\n{_RULE}")
        outcomes[name] = fn(root)
    _say(f"\n{_RULE}\nsummary ({time.perf_counter() - started:.0f} s)\n{_RULE}")
    for name, outcome in outcomes.items():
        _say(f"  {SITUATIONS[name][0]}")
        _say(f"    model.fit:   {outcome.plain}")
        _say(f"    guardtrain:  {outcome.guardtrain}")
    return 0
