"""Helpers of the engine tests: tiny models with the engine attached, fixed batches."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from conftest import tiny_task_configs
from mtl_tf.config import TrainConfig
from mtl_tf.model.multitask import MultitaskModel
from mtl_tf.train.engine import MultitaskEngine
from mtl_tf.train.optim import build_optimizer

SIZE = (64, 64)


def tiny(tasks=("detection", "segmentation"), freeze_bn: bool = False, seed: int = 0) -> MultitaskModel:
    """A tiny model; `freeze_bn` puts BatchNorm in inference mode so that a sample's gradient
    does not depend on the other samples of its batch (needed to compare batchings)."""
    keras.utils.set_random_seed(seed)
    configs = {k: v for k, v in tiny_task_configs().items() if k in tasks}
    model = MultitaskModel({"name": "tiny", "width": 8}, configs, SIZE)
    if freeze_bn:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model


def attach_engine(model, batch_size: int, lr: float = 0.05, **train) -> MultitaskEngine:
    """Compile with plain SGD (its steps are proportional to the gradients, so scale errors show)
    and attach an engine configured by TrainConfig fields `train`."""
    config = TrainConfig.model_validate({"optimizer": {"name": "sgd", "learning_rate": lr, "momentum": 0.0,
                                                       "schedule": "constant"}, **train})
    model.compile(optimizer=build_optimizer(config.optimizer, 100, constant=True))
    model.engine = MultitaskEngine(model, config, batch_size, 100)
    return model.engine


def batches(model, n: int, batch: int, labelled: dict | None = None, seed: int = 0) -> tf.data.Dataset:
    """`n` random examples as (image, targets, weights) batches; `labelled[task]` is a 0/1 array
    over the examples saying which carry that task's labels (default: all)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, (n, *SIZE, 3)).astype(np.uint8)
    y, w = {}, {}
    for name, task in model.tasks.items():
        flag = np.ones(n, np.float32) if labelled is None or name not in labelled else np.asarray(labelled[name], np.float32)
        if name == "segmentation":
            y[name] = rng.integers(0, len(task.classes), (n, *SIZE)).astype(np.int32)
            w[name] = np.ones((n, *SIZE), np.float32) * flag[:, None, None]
        else:
            examples = [_boxes_example(rng, task) for _ in range(n)]
            y[name] = np.stack([np.asarray(task.encode(e)[0]) for e in examples])
            w[name] = flag
    return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(batch)


def _boxes_example(rng, task) -> dict:
    k = 3
    yx = rng.uniform(0, 0.6, (k, 2))
    hw = rng.uniform(0.15, 0.4, (k, 2))
    boxes = np.concatenate([yx, yx + hw], axis=1).astype(np.float32)
    labels = {"boxes": boxes, "box_classes": rng.integers(0, len(task.classes), k).astype(np.int32)}
    return {**task.namespaced(labels), task.has_key: True}


def weights_of(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]
