"""The stable GT2xx codes of ``guardtrain.check``, one per kind of problem.

A code never changes meaning once released; a new kind of problem gets a new code.
The table with explanations is in the package docstring (``guardtrain.checking``).
"""

# shapes and structure
SHAPE = "GT201"                # a feature's per-sample shape or rank differs from the input's
CHANNELS = "GT202"             # channels-first data for a channels-last model, or the reverse
SAMPLE_COUNT = "GT203"         # x and y (or two inputs) have different sample counts
STRUCTURE = "GT204"            # inputs/outputs by name or position do not match the model
# labels vs loss vs output layer
LABEL_RANGE = "GT205"          # sparse ids outside [0, K): 1-based, >= K, negative
ONE_HOT_SPARSE = "GT206"       # one-hot labels with a sparse loss
INT_CATEGORICAL = "GT207"      # integer ids with a categorical (one-hot) loss
ONE_HOT_WIDTH = "GT208"        # one-hot width != output width
LABEL_NOT_BINARY = "GT209"     # probability loss with labels outside [0, 1]
BINARY_WIDE_OUTPUT = "GT210"   # binary cross-entropy, output wider than 1, one label per sample
SOFTMAX_ONE_UNIT = "GT211"     # softmax over a single unit: always 1.0
ACTIVATION_LOGITS = "GT212"    # softmax/sigmoid output with from_logits=True
LINEAR_PROBABILITY = "GT213"   # linear output with a loss expecting probabilities (warning)
CONTINUOUS_TARGETS = "GT214"   # classification loss on continuous targets
SINGLE_CLASS = "GT215"         # only one class present in the labels
LABEL_SHAPE = "GT216"          # label shape does not fit the output (would broadcast)
# dtypes
FEATURE_TEXT = "GT220"         # strings / objects / datetimes in features
FEATURE_BOOL = "GT221"         # booleans in features
FEATURE_INT = "GT222"          # integer features into a float input (warning)
LABEL_DTYPE = "GT223"          # labels that are not numbers (strings, objects)
# values
FEATURE_NONFINITE = "GT230"    # NaN/Inf in features
LABEL_NONFINITE = "GT231"      # NaN/Inf in labels
ALL_CONSTANT = "GT232"         # every value of an input is the same
CONSTANT_COLUMNS = "GT233"     # some feature columns are constant (warning)
UNSCALED = "GT234"             # max |x| > 100 (warning)
# batches and replicas
FEWER_THAN_BATCH = "GT240"     # fewer samples than one global batch
BATCH_NOT_DIVISIBLE = "GT241"  # global batch not divisible by the replica count
EMPTY_REPLICA = "GT242"        # the last batch leaves a replica empty (warning)
ZERO_PER_REPLICA = "GT243"     # per-replica batch rounds to 0
BAD_BATCH_SIZE = "GT244"       # batch_size is not an int >= 1
# the model
NOT_COMPILED = "GT250"         # model not compiled
NO_TRAINABLE = "GT251"         # no trainable weights (all frozen / none)
LR_SCHEDULE = "GT252"          # a learning-rate schedule that rescue would replace (warning)
NOT_A_MODEL = "GT253"          # model is not a keras.Model, or its builder failed
NO_LOSS = "GT254"              # compiled without a loss
# distributed dispatch (launch.workers > 0) and Parquet
DATASET_OBJECT = "GT260"       # a tf.data.Dataset cannot be sent to workers
RESOURCES = "GT261"            # the Ray cluster lacks the resources asked for
PARQUET_MISSING = "GT262"      # Parquet columns missing
PARQUET_TYPE = "GT263"         # Parquet columns of the wrong type
RELATIVE_PATH = "GT264"        # a relative path workers may not see (warning)
# the inputs themselves
UNREADABLE = "GT270"           # the input cannot be read (type, files, iteration error)
UNBATCHED = "GT271"            # a tf.data.Dataset whose elements are single samples
NO_LABELS = "GT272"            # arrays without y
LABELS_TWICE = "GT273"         # y passed with a source that already yields labels
EMPTY = "GT274"                # an input with 0 samples

ALL = {name: value for name, value in globals().items() if name.isupper()}
