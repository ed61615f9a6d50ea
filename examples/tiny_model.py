"""The model builder named by ``tiny-job.yaml``: a small classifier of 8 features into 4
classes, compiled. A JOB file names it as ``tiny_model:build_model``; guardtrain calls it
inside the strategy's scope (and on each Ray worker), so it must build a fresh model on
every call.
"""

import keras


def build_model(units: int = 32, optimizer: str = "adam", learning_rate: float = 1e-3,
                momentum: float = 0.0, features: int = 8, classes: int = 4):
    """A compiled MLP; the arguments come from ``model.args`` in the JOB file."""
    model = keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(classes),
    ])
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate, momentum=momentum)
    else:
        opt = keras.optimizers.get({"class_name": optimizer,
                                    "config": {"learning_rate": learning_rate}})
    model.compile(optimizer=opt,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model
