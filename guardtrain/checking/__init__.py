"""Input-spec validation before dispatch: ``check(model, x, y, ...) -> CheckReport``.

``check`` samples the data (bounded: never the whole of it), reads the model's inputs,
outputs, loss and optimizer, and runs every check below. Each check is a function
returning ``Problem``s; all are collected, then one ``InputSpecError`` lists every
blocking problem (with the warnings), or a ``CheckReport`` returns the warnings.
``gt.fit`` calls it first, on the driver, before any strategy or worker exists.

Codes (stable; one per kind of problem). E = error, blocks training; W = warning:

  GT200    the InputSpecError itself: "N problems with the training inputs"
 shapes.py
  GT201 E  a per-sample shape or rank differs from the model input (with the exact reshape)
  GT202 E  channels-first data for a channels-last model, or the reverse (the transpose)
  GT203 E  x and y (or two inputs) have different sample counts
  GT204 E  arrays do not match the model's inputs/outputs by name or count (extra keys: W)
 labels.py (K = the output width)
  GT205 E  sparse class ids outside [0, K): 1-based, >= K, negative
  GT206 E  one-hot labels with a sparse loss
  GT207 E  integer class ids with a categorical (one-hot) loss
  GT208 E  one-hot width != K, or a categorical loss over 1 unit
  GT209 E  a probability loss with labels outside [0, 1]
  GT210 E  binary cross-entropy, output wider than 1, one label per sample
  GT211 E  softmax over a single unit
  GT212 E  softmax/sigmoid output with from_logits=True
  GT213 W  linear output with a loss that expects probabilities
  GT214 W  classification loss on continuous targets (sparse loss: E)
  GT215 E  one class only (on a sample of the labels: W)
  GT216 E  label shape does not fit the output (the loss would broadcast)
  GT217 E  an output that is not a probability (relu, tanh, ...) with from_logits=False
  GT218 W  an activation other than softmax/sigmoid before from_logits=True
  GT219 W  sigmoid outputs with a softmax cross-entropy (sparse or categorical)
 dtypes.py
  GT220 E  strings, objects or datetimes in features
  GT221 W  booleans in features (cast to 0/1)
  GT222 W  integer features into a float input (not read by an Embedding)
  GT223 E  labels that are not numbers
 values.py (on the bounded sample; messages say so)
  GT230 E  NaN/Inf in features (count and first rows)
  GT231 E  NaN/Inf in labels
  GT232 E  every value of an input is the same
  GT233 W  constant feature columns (2-D inputs)
  GT234 W  unscaled features: max |x| > 100
 batches.py (batch_size is the global batch)
  GT240 W  fewer samples than one global batch (fewer than the replicas: E)
  GT241 E  global batch not divisible by the replica count
  GT242 W  the last batch leaves a replica empty
  GT243 E  per-replica batch rounds to 0
  GT244 E  batch_size is not an int >= 1
 model_checks.py, runner.py
  GT250 E  model not compiled
  GT251 E  no trainable weights (all frozen, or none)
  GT252 -  retired: a rescue scales a learning-rate schedule (engine/schedules)
  GT253 E  model is not a keras.Model, or the function building it failed
  GT254 E  compiled without a loss
  GT255 E  the model overrides train_step (guardtrain would bypass it)
  GT256 E  jit_compile=True with several replicas on logical CPU devices
 dispatch.py, parquet_schema.py
  GT260 E  a tf.data.Dataset object for Ray workers (send a dataset function)
  GT261 -  retired: the cluster's resources are checked at launch (LaunchError GT420-GT422)
  GT262 E  Parquet columns missing
  GT263 E  Parquet columns of the wrong type
  GT264 W  a relative path that workers may not see
 sources.py
  GT270 E  the input cannot be read (type, no files matched, the pipeline raised)
  GT271 E  a dataset of single samples (not batched)
  GT272 E  no labels
  GT273 E  y given with a source that already yields labels
  GT274 E  an input with 0 samples (a Parquet source with no rows too)
  GT275 E  nested Python lists whose rows differ in length (ragged)
  GT276 E  several model inputs as a tuple or list (give a dict by input name)

Raised at once as a ``ConfigError``, before any data is read (a call, not the data):

 runner.py
  GT102    a dataset function, or a dataset of unknown length, with steps_per_epoch=None
  GT109    check(launch=...) is not a LaunchConfig, a dict of its fields or None
 optimizers.py (called by gt.fit and the JOB reader)
  GT122    an optimizer on RescueConfig.optimizer_ladder that Keras does not know

Example:

>>> from guardtrain.checking import check
>>> report = check(model, x_train, y_train, batch_size=64)   # doctest: +SKIP
"""

from guardtrain.checking.report import CheckReport
from guardtrain.checking.runner import check

__all__ = ["check", "CheckReport"]
