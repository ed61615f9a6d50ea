"""Every GT code the package raises, in one table: its family, severity and meaning.

A code never changes meaning once released; a new kind of problem gets a new code. The
hundreds digit names the family, which is the error class that carries it and the CLI's
exit code (docs/architecture.md, "Errors"):

```
GT0xx  GuardtrainError          the base; never raised itself
GT1xx  ConfigError              a config value or a call is wrong
GT2xx  InputSpecError           the data does not fit the model (one Problem per code)
GT3xx  UnhealthyTrainingError   training is unhealthy and rescue cannot help
GT4xx  LaunchError              where it runs: devices, Ray, workers, hangs
GT5xx  RescueExhaustedError     every attempt the budget allowed was spent
```

The raising modules keep their own constants (``guardtrain.checking.codes.SHAPE``,
``guardtrain.core.attempts.CODE_INPUT``); this table is what a person, the CLI or a test
reads to learn what a code means. ``tests/test_codes_table.py`` scans the package source
and fails on a code missing here or an entry nothing raises any more.

Pure module: no TensorFlow, no Ray.

Example:

>>> entry = lookup("GT205")
>>> entry.family, entry.severity
('InputSpecError', 'error')
>>> entry.meaning
'sparse class ids outside [0, K): 1-based, >= K, negative'
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["Code", "CODES", "FAMILIES", "family_of", "lookup", "problem_codes"]

#: The error class of each hundreds digit.
FAMILIES: dict[str, str] = {
    "0": "GuardtrainError",
    "1": "ConfigError",
    "2": "InputSpecError",
    "3": "UnhealthyTrainingError",
    "4": "LaunchError",
    "5": "RescueExhaustedError",
}

_PATTERN = re.compile(r"GT\d{3}")


@dataclasses.dataclass(frozen=True)
class Code:
    """One entry of the table.

    Args:
        code: the stable code, ``"GT201"``.
        family: the name of the error class that carries it (``"InputSpecError"``).
        meaning: one line: what went wrong.
        severity: for a problem of ``gt.check`` (GT2xx), ``"error"`` (blocks training) or
            ``"warning"`` (reported, training goes on) in the usual case; the meaning says
            when it is the other. ``None`` for a code that is always raised.
        name: the constant ``guardtrain.checking.codes`` exports for it, if any.
        retired: no longer raised; kept so that the code is never given another meaning.
    """

    code: str
    family: str
    meaning: str
    severity: str | None = None
    name: str | None = None
    retired: bool = False


_BASE, _CONFIG, _INPUT = FAMILIES["0"], FAMILIES["1"], FAMILIES["2"]
_UNHEALTHY, _LAUNCH, _EXHAUSTED = FAMILIES["3"], FAMILIES["4"], FAMILIES["5"]
_E, _W = "error", "warning"


def _problem(code: str, name: str, severity: str, meaning: str) -> Code:
    return Code(code, _INPUT, meaning, severity, name)


#: The table, in code order.
CODES: tuple[Code, ...] = (
    Code("GT000", _BASE, "the base of every guardtrain error; never raised itself"),
    # -- ConfigError: a config value or a call ------------------------------------------
    Code("GT100", _CONFIG, "a config value or an argument is wrong (the family's default)"),
    Code("GT101", _CONFIG, "a LaunchConfig field (or the watchdog's timeout_s) is invalid"),
    Code("GT102", _CONFIG, "a dataset or dataset function of unknown length and no "
                           "steps_per_epoch"),
    Code("GT103", _CONFIG, "fit(verbose=...) is not 'auto', 0, 1 or 2"),
    Code("GT104", _CONFIG, "fit(model=fn): fn() did not return a keras.Model"),
    Code("GT105", _CONFIG, "fit(model): the model is not compiled"),
    Code("GT106", _CONFIG, "fit(model): the model is not built"),
    Code("GT107", _CONFIG, "fit(guard=/rescue=): not a config, a dict of its fields, True, "
                           "None or False"),
    Code("GT108", _CONFIG, "a fit argument (batch_size, epochs, steps_per_epoch, "
                           "steps_per_loop, shuffle, validation_split, validation_*, "
                           "initial_epoch, class_weight) of the wrong type or out of range"),
    Code("GT109", _CONFIG, "fit(launch=...): not a LaunchConfig, a dict of its fields or None"),
    Code("GT110", _CONFIG, "a GuardConfig field is invalid"),
    Code("GT111", _CONFIG, "the guard was given a chunk without steps or with missing or "
                           "ragged columns"),
    Code("GT112", _CONFIG, "fit() was given a keyword it does not know (a misspelling, or "
                           "not a model.fit argument), or an argument twice"),
    Code("GT113", _CONFIG, "a model.fit argument guardtrain does not support yet (or not "
                           "with these inputs): training without it would differ from "
                           "model.fit"),
    Code("GT114", _CONFIG, "fit arguments model.fit refuses too: class_weight with "
                           "sample_weight, validation_split on a dataset or too few rows, "
                           "sample_weight that does not match the rows or the outputs"),
    Code("GT120", _CONFIG, "a RescueConfig field is invalid"),
    Code("GT121", _CONFIG, "the rescue policy was called out of order (decide, after_probe, "
                           "apply, raise)"),
    Code("GT122", _CONFIG, "an optimizer on RescueConfig.optimizer_ladder that Keras does "
                           "not know"),
    Code("GT130", _CONFIG, "the JOB file cannot be read: missing, not YAML, a duplicate key, "
                           "not a mapping"),
    Code("GT131", _CONFIG, "the JOB file has an unknown key"),
    Code("GT132", _CONFIG, "a JOB value of the wrong type or out of range"),
    Code("GT133", _CONFIG, "a required JOB key is missing (model, data, a data source)"),
    Code("GT134", _CONFIG, "an import path that is malformed or whose module or attribute "
                           "is not found"),
    Code("GT135", _CONFIG, "a --set key=value that is malformed or goes through a "
                           "non-mapping"),
    Code("GT136", _CONFIG, "a JOB data file, or an array in it, is missing or unreadable"),
    Code("GT140", _CONFIG, "report/plot: the folder holds neither history nor events"),
    Code("GT150", _CONFIG, "fit(run_dir=...): a file, not a folder"),
    Code("GT151", _CONFIG, "fit(run_dir=...): the folder cannot be created or written"),
    Code("GT152", _CONFIG, "fit(run_dir=...): the folder holds files and resume was not "
                           "asked"),
    # -- InputSpecError: one Problem per code, found by gt.check ------------------------
    Code("GT200", _INPUT, "the InputSpecError itself: N problems with the training inputs"),
    _problem("GT201", "SHAPE", _E, "a per-sample shape or rank differs from the model input"),
    _problem("GT202", "CHANNELS", _E, "channels-first data for a channels-last model, or "
                                      "the reverse"),
    _problem("GT203", "SAMPLE_COUNT", _E, "x and y (or two inputs) have different sample "
                                          "counts"),
    _problem("GT204", "STRUCTURE", _E, "inputs/outputs do not match the model by name or "
                                       "count (extra keys: warning)"),
    _problem("GT205", "LABEL_RANGE", _E, "sparse class ids outside [0, K): 1-based, >= K, "
                                         "negative"),
    _problem("GT206", "ONE_HOT_SPARSE", _E, "one-hot labels with a sparse loss"),
    _problem("GT207", "INT_CATEGORICAL", _E, "integer class ids with a categorical "
                                             "(one-hot) loss"),
    _problem("GT208", "ONE_HOT_WIDTH", _E, "one-hot width differs from the output width"),
    _problem("GT209", "LABEL_NOT_BINARY", _E, "a probability loss with labels outside "
                                              "[0, 1]"),
    _problem("GT210", "BINARY_WIDE_OUTPUT", _E, "binary cross-entropy, output wider than "
                                                "1, one label per sample"),
    _problem("GT211", "SOFTMAX_ONE_UNIT", _E, "softmax over a single unit: always 1.0"),
    _problem("GT212", "ACTIVATION_LOGITS", _E, "softmax/sigmoid output with "
                                               "from_logits=True"),
    _problem("GT213", "LINEAR_PROBABILITY", _W, "linear output with a loss that expects "
                                                "probabilities"),
    _problem("GT214", "CONTINUOUS_TARGETS", _W, "classification loss on continuous targets "
                                                "(sparse loss: error)"),
    _problem("GT215", "SINGLE_CLASS", _E, "one class only in the labels (on a sample: "
                                          "warning)"),
    _problem("GT216", "LABEL_SHAPE", _E, "label shape does not fit the output (the loss "
                                         "would broadcast)"),
    _problem("GT217", "NOT_PROBABILITY", _E, "an output activation that is not a "
                                             "probability (relu, tanh, ...) with a loss "
                                             "that expects probabilities"),
    _problem("GT218", "ACTIVATED_LOGITS", _W, "an activation other than softmax/sigmoid "
                                              "before from_logits=True (relu cuts "
                                              "negative logits)"),
    _problem("GT219", "SIGMOID_MULTICLASS", _W, "sigmoid outputs with a softmax "
                                                "cross-entropy (they do not sum to 1)"),
    _problem("GT220", "FEATURE_TEXT", _E, "strings, objects or datetimes in features"),
    _problem("GT221", "FEATURE_BOOL", _W, "booleans in features"),
    _problem("GT222", "FEATURE_INT", _W, "integer features into a float input"),
    _problem("GT223", "LABEL_DTYPE", _E, "labels that are not numbers"),
    _problem("GT230", "FEATURE_NONFINITE", _E, "NaN/Inf in features"),
    _problem("GT231", "LABEL_NONFINITE", _E, "NaN/Inf in labels"),
    _problem("GT232", "ALL_CONSTANT", _E, "every value of an input is the same"),
    _problem("GT233", "CONSTANT_COLUMNS", _W, "some feature columns are constant"),
    _problem("GT234", "UNSCALED", _W, "unscaled features: max |x| > 100"),
    _problem("GT240", "FEWER_THAN_BATCH", _W, "fewer samples than one global batch (fewer "
                                              "than the replicas: error)"),
    _problem("GT241", "BATCH_NOT_DIVISIBLE", _E, "global batch not divisible by the "
                                                 "replica count"),
    _problem("GT242", "EMPTY_REPLICA", _W, "the last batch leaves a replica empty"),
    _problem("GT243", "ZERO_PER_REPLICA", _E, "per-replica batch rounds to 0"),
    _problem("GT244", "BAD_BATCH_SIZE", _E, "batch_size is not an int >= 1"),
    _problem("GT250", "NOT_COMPILED", _E, "model not compiled"),
    _problem("GT251", "NO_TRAINABLE", _E, "no trainable weights (all frozen, or none)"),
    Code("GT252", _INPUT, "retired: a rescue scales a learning-rate schedule now, it no "
                          "longer replaces it", retired=True),
    _problem("GT253", "NOT_A_MODEL", _E, "model is not a keras.Model, or its builder "
                                         "failed"),
    _problem("GT254", "NO_LOSS", _E, "compiled without a loss"),
    _problem("GT255", "OWN_TRAIN_STEP", _E, "the model overrides train_step, which "
                                            "guardtrain's own step would bypass"),
    _problem("GT256", "XLA_CPU_REPLICAS", _E, "jit_compile=True with several replicas on "
                                              "logical CPU devices (XLA cannot place the "
                                              "step)"),
    _problem("GT260", "DATASET_OBJECT", _E, "a tf.data.Dataset object cannot be sent to "
                                            "Ray workers"),
    Code("GT261", _INPUT, "retired: the cluster's resources are checked at launch "
                          "(GT420-GT422)", retired=True),
    _problem("GT262", "PARQUET_MISSING", _E, "Parquet columns missing"),
    _problem("GT263", "PARQUET_TYPE", _E, "Parquet columns of the wrong type"),
    _problem("GT264", "RELATIVE_PATH", _W, "a relative path that workers may not see"),
    _problem("GT270", "UNREADABLE", _E, "the input cannot be read (type, no files "
                                        "matched, the pipeline raised)"),
    _problem("GT271", "UNBATCHED", _E, "a dataset of single samples (not batched)"),
    _problem("GT272", "NO_LABELS", _E, "no labels"),
    _problem("GT273", "LABELS_TWICE", _E, "y given with a source that already yields "
                                          "labels"),
    _problem("GT274", "EMPTY", _E, "an input with 0 samples"),
    _problem("GT275", "RAGGED", _E, "nested Python lists whose rows differ in length"),
    _problem("GT276", "POSITIONAL_INPUTS", _E, "several model inputs given as a tuple or "
                                               "list (give a dict by input name)"),
    # -- UnhealthyTrainingError: a verdict rescue cannot or may not fix -----------------
    Code("GT300", _UNHEALTHY, "training is unhealthy (the family's default)"),
    Code("GT301", _UNHEALTHY, "STALLED: the weights barely move and the loss does not fall"),
    Code("GT302", _UNHEALTHY, "DIVERGED: non-finite values, or the loss blowing up"),
    Code("GT303", _UNHEALTHY, "OSCILLATING: the loss swings without progress"),
    Code("GT304", _UNHEALTHY, "VANISHING: the first layers' gradients have vanished"),
    Code("GT305", _UNHEALTHY, "DEAD_UNITS: a large share of gradient entries are exactly 0"),
    Code("GT306", _UNHEALTHY, "REPLICA_IMBALANCE: one replica's gradient is ~0 while "
                              "others' are not"),
    Code("GT307", _UNHEALTHY, "non-finite loss at an attempt's first step (the inputs)"),
    Code("GT308", _UNHEALTHY, "gradients exactly 0 at the starting weights"),
    Code("GT309", _UNHEALTHY, "NO_PROGRESS: the loss stays at the constant-prediction "
                              "loss"),
    Code("GT310", _UNHEALTHY, "non-finite loss at an attempt's first step from the forward "
                              "pass: a layer overflows on finite inputs"),
    # -- LaunchError: devices, Ray, workers, hangs ---------------------------------------
    Code("GT400", _LAUNCH, "the run could not be placed or kept running (the family's "
                           "default)"),
    Code("GT401", _LAUNCH, "cpu_replicas asks for more logical CPUs than TensorFlow started "
                           "with"),
    Code("GT402", _LAUNCH, "the worker strategy was built after TensorFlow ran an op"),
    Code("GT403", _LAUNCH, "a Ray launch was asked of a LaunchConfig with workers=0"),
    Code("GT404", _LAUNCH, "the run name exists already (and resume was not asked)"),
    Code("GT410", _LAUNCH, "Ray could not be reached or started"),
    Code("GT411", _LAUNCH, "this process is already attached to another Ray cluster"),
    Code("GT420", _LAUNCH, "the Ray cluster lacks the CPUs asked for"),
    Code("GT421", _LAUNCH, "the Ray cluster lacks the GPUs asked for"),
    Code("GT422", _LAUNCH, "no Ray node fits one worker"),
    Code("GT423", _LAUNCH, "the workers could not be placed"),
    Code("GT430", _LAUNCH, "a worker raised an error that is not guardtrain's"),
    Code("GT431", _LAUNCH, "a worker process died"),
    Code("GT432", _LAUNCH, "Ray Train's controller failed"),
    Code("GT440", _LAUNCH, "a rank made no progress for step_timeout_s (watchdog)"),
    Code("GT441", _LAUNCH, "a collective timed out"),
    Code("GT442", _LAUNCH, "the ranks reported unequally"),
    Code("GT450", _LAUNCH, "a checkpoint helper was called outside a Ray Train worker"),
    # -- RescueExhaustedError -----------------------------------------------------------
    Code("GT500", _EXHAUSTED, "the rescue budget is spent (the family's default)"),
    Code("GT501", _EXHAUSTED, "every attempt of the budget was spent"),
    Code("GT502", _EXHAUSTED, "no optimizer left on the ladder"),
)

_BY_CODE: dict[str, Code] = {c.code: c for c in CODES}


def lookup(code: str) -> Code:
    """The table's entry for ``code``.

    Raises:
        KeyError: an unknown code, with the known codes of its family.
    """
    try:
        return _BY_CODE[code]
    except KeyError:
        near = [c.code for c in CODES if c.code[:3] == str(code)[:3]]
        raise KeyError(f"lookup(code={code!r}): expected a code of the form 'GT201' from "
                       f"guardtrain.core.codes.CODES; found no entry (nearby: "
                       f"{', '.join(near) or 'none'})") from None


def family_of(code: str) -> str:
    """The error class a well-formed code belongs to, by its hundreds digit."""
    if not _PATTERN.fullmatch(str(code)) or code[2] not in FAMILIES:
        raise ValueError(f"family_of(code={code!r}): expected 'GT' and three digits, the "
                         f"first in 0-5")
    return FAMILIES[code[2]]


def problem_codes() -> dict[str, str]:
    """The GT2xx problem codes by constant name: ``{"SHAPE": "GT201", ...}``."""
    return {c.name: c.code for c in CODES if c.name is not None and not c.retired}
