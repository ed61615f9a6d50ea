"""The inner loop: many training steps in one ``tf.function`` call, with their statistics.

One call of ``StepRunner.run(iterator, n)`` runs ``n`` optimizer steps on the strategy and
returns the raw figures of every step (see ``stats.summarise_chunk``). Costs, in order:

- the step itself is Keras's ``train_step`` (forward, loss, gradients, ``apply_gradients``,
  metrics) — nothing is changed in what the optimizer sees;
- on one step in ``stats_every`` (default 1 here; ``GuardConfig`` picks 10), per
  trainable variable, a few reductions over the gradient and the weight (sum of squares,
  zero count, update) — work that grows with the model but stays on the device, with no
  extra copy of the gradients; ~8 small ops per variable cost 10-20 % of a 0.1-0.3 ms
  MLP step when done on every step. The loss is read on every step, the learning rate
  once per chunk (every step under a schedule);
- a pending snapshot save (``Snapshot.save``) is copied at the start of the call, not in
  a call of its own;
- no cross-replica communication for statistics inside the chunk: each replica's figures
  are read from its local result and stacked in a ``tf.TensorArray``; on several workers
  they are gathered once per chunk, at its end;
- one host sync per chunk, when the caller converts the stacked result to NumPy.

``n`` is passed as a tensor, so every chunk length reuses one trace. A new optimizer
needs a new trace (an already-traced step would silently keep the old one): call
``rebuild()``.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from guardtrain.core.stats import VarLayout

__all__ = ["StepRunner", "var_layout"]

logger = logging.getLogger(__name__)


def var_layout(model: keras.Model) -> VarLayout:
    """Groups the model's trainable variables by the layer that owns them, in order."""
    owner: dict[int, int] = {}
    names: list[str] = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        own = [v for v in layer._trainable_variables] if hasattr(layer, "_trainable_variables") \
            else []
        if not own:
            continue
        index = len(names)
        names.append(layer.name)
        for v in own:
            owner.setdefault(id(v), index)
    layer_of_var, sizes = [], []
    for v in model.trainable_variables:
        if id(v) not in owner:  # a variable created directly on the model
            owner[id(v)] = len(names)
            names.append(v.path.rsplit("/", 1)[0] or model.name)
        layer_of_var.append(owner[id(v)])
        sizes.append(int(np.prod(v.shape)) if len(v.shape) else 1)
    # Renumber layers in the order their variables appear, so layer 0 is the first layer
    # that trains and the last index the last one.
    order: dict[int, int] = {}
    for layer in layer_of_var:
        order.setdefault(layer, len(order))
    return VarLayout(layer_of_var=tuple(order[i] for i in layer_of_var),
                     var_sizes=tuple(sizes),
                     layer_names=tuple(names[i] for i in order))


def _all_finite(tree) -> tf.Tensor:
    """1.0 when every floating value in ``tree`` is finite, else 0.0."""
    # expand_composites: a SparseTensor's values, not the composite (is_finite has no
    # sparse dispatch).
    checks = [tf.reduce_all(tf.math.is_finite(t))
              for t in tf.nest.flatten(tree, expand_composites=True)
              if t is not None and hasattr(t, "dtype") and tf.as_dtype(t.dtype).is_floating]
    return tf.cast(tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True),
                   tf.float32)


def _first_input(x):
    return next(t for t in tf.nest.flatten(x) if t is not None)


class StepRunner:
    """Runs chunks of training steps of ``model`` on ``strategy``.

    Args:
        model: a compiled Keras model whose variables live in ``strategy``'s scope.
        strategy: the ``tf.distribute`` strategy.
        collect_stats: ``False`` skips the per-variable figures (for benchmarks); only
            the loss is returned then.
        stats_every: measure the norms on one step in ``k``: the first ``ceil(n / k)``
            steps of each ``n``-step chunk; the loss on every step. The other steps' norm
            figures are NaN and ``ChunkOutput.measured`` is False for them.
        snapshot: a ``Snapshot`` whose deferred save the next chunk makes inside the
            chunk's call, before its first step.

    Example:

    >>> runner = StepRunner(model, tf.distribute.get_strategy())   # doctest: +SKIP
    >>> replica, shared = runner.run(iterator, 20)                 # doctest: +SKIP
    """

    def __init__(self, model: keras.Model, strategy, *, collect_stats: bool = True,
                 stats_every: int = 1, snapshot=None):
        self.model = model
        self.snapshot = snapshot
        self.strategy = strategy
        self.collect_stats = collect_stats
        self.stats_every = max(1, int(stats_every))
        self.layout = var_layout(model)
        self.trace_count = 0
        self._num_workers = max(1, int(getattr(strategy.extended, "_num_workers", 1) or 1))
        self._multi_worker = self._num_workers > 1
        self._chunk_fn = None
        # Under mixed precision the loss is scaled, and an overflowing step is skipped by
        # the optimizer by design (its update is exactly 0): both are undone for the
        # statistics (``run``).
        self.loss_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        # Keras resolves "auto" here: XLA on an accelerator when every layer supports it.
        self.jit_compile = bool(getattr(model, "jit_compile", False))
        self.rebuild()

    # -- the step -----------------------------------------------------------------------
    def _replica_step(self, data, measure: bool = True):
        model, optimizer = self.model, self.model.optimizer
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            # Under a strategy, Keras losses with the default reduction already divide by the
            # replica count; stats.summarise_chunk multiplies it back.
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                      training=True)
            model._loss_tracker.update_state(
                keras.src.losses.loss.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(_first_input(x))[0])
            scaled = optimizer.scale_loss(loss)
        variables = model.trainable_variables
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        if measure:
            # Read before the update: the weight norm is of w_{t-1}, the update w_t - w_{t-1}.
            # tf.identity forces the read here (``v.value`` may be the variable itself, read
            # lazily after the update); the read is a snapshot the update does not change.
            before = [tf.identity(v.value) for v in variables]
            if self.loss_scaled:
                # The scale the loss was multiplied by, read before apply_gradients moves
                # it, on measured steps only: the statistics are of the true gradient
                # (docs/architecture.md, "What the loop measures").
                unscale = 1.0 / tf.cast(optimizer.dynamic_scale, tf.float32) ** 2
        optimizer.apply_gradients(zip(grads, variables))
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        # The loss and whether this batch's inputs, labels and weights were all finite:
        # a non-finite loss from a NaN row is a data error, never a learning-rate problem
        # (a reduction per input per step; scripts/bench_overhead.py measures it).
        loss32 = tf.stack([tf.cast(loss, tf.float32), _all_finite((x, y, sample_weight))])
        if not measure:
            return (loss32,)
        # Few ops per variable: each is a kernel launch that costs more than its arithmetic
        # on small tensors. l2_loss is half the sum of squares in one kernel (the host
        # doubles it); the zero count is a sum over a comparison.
        f32 = lambda t: tf.cast(t, tf.float32)  # noqa: E731 - mixed precision variables
        grad_sq = [tf.nn.l2_loss(f32(g)) for g in grads]
        if self.loss_scaled:
            grad_sq = [sq * unscale for sq in grad_sq]
        zeros = [tf.reduce_sum(tf.cast(tf.equal(g, 0), tf.float32)) for g in grads]
        update_sq = [tf.nn.l2_loss(f32(v.value) - f32(b)) for v, b in zip(variables, before)]
        weight_sq = [tf.nn.l2_loss(f32(b)) for b in before]
        return loss32, tf.stack(grad_sq + zeros), tf.stack(update_sq + weight_sq)

    # -- the chunk ----------------------------------------------------------------------
    def rebuild(self) -> None:
        """Traces a fresh chunk function (after an optimizer switch)."""
        strategy = self.strategy
        n_local = strategy.num_replicas_in_sync // self._num_workers
        v = self.layout.num_vars
        every = self.stats_every

        # model.fit compiles its per-replica step with XLA when the model asks
        # (compile(jit_compile=True), or "auto" on an accelerator): so does this step,
        # statistics included. The loop around it stays a plain tf.function, as Keras's.
        measured = functools.partial(self._replica_step, measure=True)
        plain = functools.partial(self._replica_step, measure=False)
        if self.jit_compile:
            measured = tf.function(measured, jit_compile=True)
            plain = tf.function(plain, jit_compile=True)

        def chunk(iterator, n_steps, save_first):
            self.trace_count += 1  # Python side effect: runs once per trace
            if self.snapshot is not None and save_first:
                self.snapshot.copy()  # before the first step changes anything
            n_measured = (n_steps + every - 1) // every
            loss_ta = tf.TensorArray(tf.float32, size=n_steps, element_shape=[n_local, 2])
            lr_ta = tf.TensorArray(tf.float32, size=n_steps, element_shape=[])
            # Under loss scaling, the scale before every step and after the last: a step
            # the optimizer skipped (an overflow) is one after which the scale fell.
            scale_ta = tf.TensorArray(tf.float32, size=n_steps + 1, element_shape=[])
            kept = n_measured if self.collect_stats else 0
            rep_ta = tf.TensorArray(tf.float32, size=kept, element_shape=[n_local, 2 * v])
            sh_ta = tf.TensorArray(tf.float32, size=kept, element_shape=[2 * v])

            # A rate held in a variable cannot change inside a call (callbacks and the
            # rescue run between chunks): read it once. A schedule moves it every step.
            # ``optimizer.learning_rate`` is the inner optimizer's under mixed precision.
            held = isinstance(self.model.optimizer.learning_rate, keras.Variable)

            def rate():
                return tf.cast(self.model.optimizer.learning_rate, tf.float32)

            def scale():
                return tf.cast(self.model.optimizer.dynamic_scale, tf.float32)

            def step(i, loss_ta, lr_ta, scale_ta, measure):
                if not held:
                    lr_ta = lr_ta.write(i, rate())   # the rate this step will use
                if self.loss_scaled:
                    scale_ta = scale_ta.write(i, scale())
                out = strategy.run(measured if measure else plain, args=(next(iterator),))
                # Local results only: no communication on the per-step path.
                local = [strategy.experimental_local_results(t) for t in out]
                loss_ta = loss_ta.write(i, tf.stack(local[0]))
                return loss_ta, lr_ta, scale_ta, local

            first_rate = rate() if held else None
            # The measured steps come first, then the plain ones: two flat loops. A tf.cond
            # per step, or a plain loop nested after each measured step, cost more than
            # the figures they would skip (a loop start is ~a measured step on a small MLP).
            for i in tf.range(n_measured):
                loss_ta, lr_ta, scale_ta, local = step(i, loss_ta, lr_ta, scale_ta,
                                                       self.collect_stats)
                if self.collect_stats:
                    rep_ta = rep_ta.write(i, tf.stack(local[1]))
                    sh_ta = sh_ta.write(i, local[2][0])
            for i in tf.range(n_measured, n_steps):
                loss_ta, lr_ta, scale_ta, _ = step(i, loss_ta, lr_ta, scale_ta, False)
            rates = tf.fill([n_steps], first_rate) if held else lr_ta.stack()
            scales = (scale_ta.write(n_steps, scale()).stack() if self.loss_scaled
                      else tf.zeros([0]))
            losses, figures = loss_ta.stack(), rep_ta.stack()
            if self._multi_worker:
                losses = self._gather_workers(losses)
                figures = self._gather_workers(figures)
            # Metrics are sync-on-read: reading them here folds their aggregation into
            # this call instead of costing a host round trip per metric after it.
            metrics = self.model.get_metrics_result()
            return losses, figures, sh_ta.stack(), rates, metrics, scales

        self._chunk_fn = tf.function(chunk)

    def _gather_workers(self, local):
        """All workers' per-replica figures, in global replica order, once per chunk."""
        strategy = self.strategy
        parts = iter(range(strategy.num_replicas_in_sync // self._num_workers))

        def value_fn(_ctx):
            return local[:, next(parts)][None]  # [1, n, width] for this replica

        per_replica = strategy.experimental_distribute_values_from_function(value_fn)
        gathered = strategy.gather(per_replica, axis=0)  # [replicas, n, width]
        return tf.transpose(gathered, [1, 0, 2])

    def run(self, iterator, n_steps: int) -> "ChunkOutput":
        """Runs ``n_steps`` steps and brings their figures to the host.

        The conversion to NumPy is the chunk's one host sync point.
        """
        save_first = self.snapshot is not None and self.snapshot.take_pending()
        losses, figures, shared, lr, metrics, scales = self._chunk_fn(
            iterator, tf.constant(n_steps, tf.int32), tf.constant(save_first))
        losses, figures, shared = losses.numpy(), figures.numpy(), shared.numpy()
        # Back to one row per step: the loss on every step, the norms' figures on the
        # measured ones and NaN on the others.
        measured = np.zeros(n_steps, bool)
        measured[:-(-n_steps // self.stats_every)] = self.collect_stats
        n, reps = n_steps, losses.shape[1]
        inputs_finite = (losses[:, :, 1] > 0.5).all(axis=1)
        losses = losses[:, :, 0]
        w = figures.shape[-1] if self.collect_stats else 0
        replica = np.full((n, reps, 1 + w), np.nan, np.float32)
        replica[:, :, 0] = losses
        full_shared = np.full((n, shared.shape[-1] if w else 0), np.nan, np.float32)
        if w:
            v = w // 2
            # l2_loss halves a sum of squares. A float32 sum past 3.4e38 is inf, as a
            # plain sum of squares on the device would be: no warning for it.
            with np.errstate(over="ignore"):
                replica[measured, :, 1:] = figures
                replica[measured, :, 1:1 + v] *= 2.0
                full_shared[measured] = 2.0 * shared
        skipped = np.zeros(n_steps, bool)
        if self.loss_scaled:
            # A loss-scale overflow: the optimizer skipped the update and lowered its
            # scale. Expected, not a divergence: such a step counts as unmeasured (its
            # scaled gradient is non-finite by definition), and is counted.
            scales = scales.numpy()
            skipped = scales[1:] < scales[:-1]
            measured = measured & ~skipped
            replica[skipped, :, 1:] = np.nan
            full_shared[skipped] = np.nan
        return ChunkOutput(replica, full_shared, lr.numpy(),
                           {k: float(np.asarray(v)) for k, v in metrics.items()}, measured,
                           skipped, inputs_finite)


class ChunkOutput(NamedTuple):
    """What one chunk returns to the host.

    Args:
        replica: ``[n, R, 1 + 2V]`` per-replica figures (see ``stats.summarise_chunk``).
        shared: ``[n, 2V]`` figures that are the same on every replica.
        learning_rate: ``[n]`` the rate each step used.
        metrics: the model's metric results after the chunk (Keras logs).
        measured: ``[n]`` whether the norms were measured at each step (NaN where not).
        skipped: ``[n]`` measured steps the loss-scale optimizer skipped (an overflow
            under mixed precision); they are not ``measured``.
        inputs_finite: ``[n]`` every value of the step's batch (inputs and labels, on
            every replica) was finite.
    """

    replica: np.ndarray
    shared: np.ndarray
    learning_rate: np.ndarray
    metrics: dict
    measured: np.ndarray
    skipped: np.ndarray | None = None
    inputs_finite: np.ndarray | None = None
