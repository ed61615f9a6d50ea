"""The GT2xx codes of ``guardtrain.check`` as constants, one per kind of problem.

The codes, their severity and meaning live in one table, ``guardtrain.core.codes``; this
module gives the checks a name for each (``codes.SHAPE``), so a check reads what it
reports and a renumbering happens in one place. ``lookup(codes.SHAPE)`` says what a code
means.
"""

from guardtrain.core.codes import lookup, problem_codes

# A name missing from the table fails here, at import, not when the problem is reported.
_TABLE = problem_codes()

# shapes and structure
SHAPE = _TABLE["SHAPE"]
CHANNELS = _TABLE["CHANNELS"]
SAMPLE_COUNT = _TABLE["SAMPLE_COUNT"]
STRUCTURE = _TABLE["STRUCTURE"]
# labels vs loss vs output layer
LABEL_RANGE = _TABLE["LABEL_RANGE"]
ONE_HOT_SPARSE = _TABLE["ONE_HOT_SPARSE"]
INT_CATEGORICAL = _TABLE["INT_CATEGORICAL"]
ONE_HOT_WIDTH = _TABLE["ONE_HOT_WIDTH"]
LABEL_NOT_BINARY = _TABLE["LABEL_NOT_BINARY"]
BINARY_WIDE_OUTPUT = _TABLE["BINARY_WIDE_OUTPUT"]
SOFTMAX_ONE_UNIT = _TABLE["SOFTMAX_ONE_UNIT"]
ACTIVATION_LOGITS = _TABLE["ACTIVATION_LOGITS"]
LINEAR_PROBABILITY = _TABLE["LINEAR_PROBABILITY"]
CONTINUOUS_TARGETS = _TABLE["CONTINUOUS_TARGETS"]
SINGLE_CLASS = _TABLE["SINGLE_CLASS"]
LABEL_SHAPE = _TABLE["LABEL_SHAPE"]
# dtypes
FEATURE_TEXT = _TABLE["FEATURE_TEXT"]
FEATURE_BOOL = _TABLE["FEATURE_BOOL"]
FEATURE_INT = _TABLE["FEATURE_INT"]
LABEL_DTYPE = _TABLE["LABEL_DTYPE"]
# values
FEATURE_NONFINITE = _TABLE["FEATURE_NONFINITE"]
LABEL_NONFINITE = _TABLE["LABEL_NONFINITE"]
ALL_CONSTANT = _TABLE["ALL_CONSTANT"]
CONSTANT_COLUMNS = _TABLE["CONSTANT_COLUMNS"]
UNSCALED = _TABLE["UNSCALED"]
# batches and replicas
FEWER_THAN_BATCH = _TABLE["FEWER_THAN_BATCH"]
BATCH_NOT_DIVISIBLE = _TABLE["BATCH_NOT_DIVISIBLE"]
EMPTY_REPLICA = _TABLE["EMPTY_REPLICA"]
ZERO_PER_REPLICA = _TABLE["ZERO_PER_REPLICA"]
BAD_BATCH_SIZE = _TABLE["BAD_BATCH_SIZE"]
# the model
NOT_COMPILED = _TABLE["NOT_COMPILED"]
NO_TRAINABLE = _TABLE["NO_TRAINABLE"]
LR_SCHEDULE = _TABLE["LR_SCHEDULE"]
NOT_A_MODEL = _TABLE["NOT_A_MODEL"]
NO_LOSS = _TABLE["NO_LOSS"]
OWN_TRAIN_STEP = _TABLE["OWN_TRAIN_STEP"]
# distributed dispatch (launch.workers > 0) and Parquet
DATASET_OBJECT = _TABLE["DATASET_OBJECT"]
PARQUET_MISSING = _TABLE["PARQUET_MISSING"]
PARQUET_TYPE = _TABLE["PARQUET_TYPE"]
RELATIVE_PATH = _TABLE["RELATIVE_PATH"]
# the inputs themselves
UNREADABLE = _TABLE["UNREADABLE"]
UNBATCHED = _TABLE["UNBATCHED"]
NO_LABELS = _TABLE["NO_LABELS"]
LABELS_TWICE = _TABLE["LABELS_TWICE"]
EMPTY = _TABLE["EMPTY"]
RAGGED = _TABLE["RAGGED"]
POSITIONAL_INPUTS = _TABLE["POSITIONAL_INPUTS"]

#: Every constant above, by name.
ALL = {name: value for name, value in globals().items()
       if name.isupper() and not name.startswith("_")}

__all__ = ["ALL", "lookup", *ALL]
