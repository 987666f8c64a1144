"""Run a model over evaluation batches and feed every task's evaluator.

The model is reached through `infer(images) -> {task: raw output}`, so a Keras model and,
later, an exported artifact go through the same evaluators.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
from tqdm import tqdm

Infer = Callable[[np.ndarray], dict]


def keras_infer(model) -> Infer:
    """`infer` for a Keras model: one compiled forward pass per batch, in inference mode."""
    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    return lambda images: forward(tf.convert_to_tensor(images))


def run_evaluators(infer: Infer, tasks: dict, batches, progress: bool = False) -> dict:
    """{task: evaluator} fed with every batch of raw examples (see data.pipeline.evaluation_batches)."""
    evaluators = {name: task.evaluator() for name, task in tasks.items()}
    iterator = batches.as_numpy_iterator() if hasattr(batches, "as_numpy_iterator") else batches
    if progress:
        iterator = tqdm(iterator, desc="evaluate", unit="batch", leave=False)
    for batch in iterator:
        raw = infer(batch["image"])
        for name, task in tasks.items():
            task.update_evaluator(evaluators[name], batch, predict_task(task, raw[name]))
    return evaluators


def evaluate(infer: Infer, tasks: dict, batches, progress: bool = False) -> dict:
    """{task: metrics dict} over `batches` of raw examples."""
    return {name: ev.result() for name, ev in run_evaluators(infer, tasks, batches, progress).items()}


def predict_task(task, raw) -> dict:
    """A task's post-processed predictions of a batch, as numpy arrays. `raw` is the raw head
    output, or an exported artifact's outputs of the task keyed by kind."""
    decoded = task.postprocess_exported(raw) if isinstance(raw, dict) else task.postprocess(raw)
    return {k: np.asarray(v) for k, v in decoded.items()}


def scalar_metrics(results: dict) -> dict[str, float]:
    """Flatten {task: {metric: value}} to {"<task>_<metric>": value} for scalar values only."""
    return {
        f"{task}_{key}": float(value)
        for task, metrics in results.items()
        for key, value in metrics.items()
        if isinstance(value, (int, float))
    }
