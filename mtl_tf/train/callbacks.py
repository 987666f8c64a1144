"""Callbacks of the training job."""

from __future__ import annotations

import keras

from mtl_tf.evaluate.runner import keras_infer, run_evaluators, scalar_metrics


class TaskEvaluation(keras.callbacks.Callback):
    """After every epoch, run the tasks' evaluators on the validation examples.

    Scalar metrics are added to the epoch logs as `val_<task>_<metric>` so that the CSV log,
    TensorBoard and History record them; list this callback before those.
    """

    def __init__(self, tasks: dict, batches):
        super().__init__()
        self.tasks = tasks
        self.batches = batches
        self.last_evaluators: dict = {}  # task -> evaluator of the latest epoch
        self._infer = None

    def on_train_begin(self, logs=None):
        self._infer = keras_infer(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.last_evaluators = run_evaluators(self._infer, self.tasks, self.batches)
        results = {name: ev.result() for name, ev in self.last_evaluators.items()}
        scalars = {f"val_{k}": v for k, v in scalar_metrics(results).items()}
        if logs is not None:
            logs.update(scalars)
