"""The model itself: compiled with a loss, something to train, a step guardtrain can run.

A learning-rate schedule is no problem (GT252 is retired): a rescue scales it
(``engine/schedules``)."""

from __future__ import annotations

from guardtrain.checking import codes
from guardtrain.checking.specs import ModelSpec
from guardtrain.core.errors import Problem

__all__ = ["check_compiled", "check_trainable", "check_train_step", "check_jit"]


def check_compiled(spec: ModelSpec) -> list[Problem]:
    """Not compiled (GT250), or compiled without a loss (GT254)."""
    if not spec.compiled:
        return [Problem(codes.NOT_COMPILED, "model", "a compiled model (optimizer and loss)",
                        "model.compile() was not called",
                        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')"
                        " (or the loss that fits your labels) before gt.fit")]
    if not spec.has_loss:
        return [Problem(codes.NO_LOSS, "model", "a loss given to compile()",
                        "loss=None", "model.compile(optimizer=..., loss='mse') or the loss "
                        "that fits your labels")]
    return []


def check_trainable(spec: ModelSpec) -> list[Problem]:
    """No trainable weights: every layer frozen, or no weights at all (GT251)."""
    if not spec.built or spec.n_trainable:
        return []
    if spec.n_weights:
        found = f"all {spec.n_weights} weights frozen (trainable=False)"
        fix = ("set layer.trainable = True on the layers to train (e.g. the new head), "
               "then compile again")
    else:
        found = "a model with no weights"
        fix = "add a layer with weights (e.g. keras.layers.Dense) to train"
    return [Problem(codes.NO_TRAINABLE, "model", "at least one trainable weight", found, fix)]


def check_train_step(spec: ModelSpec) -> list[Problem]:
    """A model with its own ``train_step`` (GT255): guardtrain runs its own measured step,
    so that method would never be called. Refused rather than bypassed in silence."""
    if not spec.own_train_step:
        return []
    return [Problem(codes.OWN_TRAIN_STEP, "model",
                    "a model trained by Keras's own train_step (guardtrain runs its own "
                    "measured step)",
                    f"{spec.own_train_step} overrides train_step: guardtrain would never "
                    "call it",
                    "train this model with model.fit, or move what train_step adds into "
                    "the loss (compute_loss, add_loss) or the layers")]


def check_jit(spec: ModelSpec, cpu_replicas: int | None) -> list[Problem]:
    """XLA over several logical CPU devices (GT256): TensorFlow cannot compile a step whose
    replica variables sit on another CPU device; ``model.fit`` fails the same way, with an
    ``InvalidArgumentError`` after the first trace."""
    if not spec.jit_compile or not cpu_replicas or cpu_replicas < 2:
        return []
    return [Problem(codes.XLA_CPU_REPLICAS, "model",
                    "jit_compile=False, or one replica per device XLA can place",
                    f"compile(jit_compile=True) with {cpu_replicas} replicas on logical CPU "
                    "devices: XLA cannot place a replica's step on a CPU device that holds "
                    "another replica's variables",
                    "compile with jit_compile=False for cpu_replicas, or run one replica "
                    "per GPU (or LaunchConfig(cpu_replicas=None))")]
