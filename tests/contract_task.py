"""A task type and a source written only against the task contract (tests/test_task_contract.py).

`HeatTask` regresses a per-pixel "heat" map in [0, 1] (a float map that resizes bilinearly and
whose metric, the mean absolute error, is better when lower); `HeatScenes` yields synthetic aerial
images with the pixels of one surface class as that map, at twice the recipe's size (so the
reader has to resize it as the task's label spec says). Nothing outside this module knows them:
the test registers them with one line each.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.config import SourceSection, TaskConfig
from mtl_tf.data.labels import LabelKey
from mtl_tf.data.synthetic import SURFACE_CLASSES, render_scene
from mtl_tf.tasks.base import Task


class HeatConfig(TaskConfig):
    output_stride: int = Field(4, ge=1)


class MeanAbsoluteError:
    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, truth, prediction):
        self.total += float(np.abs(np.asarray(truth, np.float64) - prediction).sum())
        self.count += truth.size

    def result(self):
        return {"mae": self.total / max(self.count, 1)}


class HeatTask(Task):
    type: ClassVar[str] = "heat"
    Config: ClassVar = HeatConfig
    source_kind: ClassVar[str] = "heat"
    primary_metric: ClassVar[str] = "mae"
    lower_is_better: ClassVar[frozenset] = frozenset({"mae"})
    taps: ClassVar[tuple] = ("C4",)

    @classmethod
    def label_spec(cls):
        return {"heat": LabelKey("float32", (None, None, 1), "map", resize="bilinear", fill=0.0)}

    def encode(self, example):
        return tf.cast(example[self.key("heat")], tf.float32), tf.cast(example[self.has_key], tf.float32)

    def build_head(self, features):
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{self.name}_conv")(features["C4"])
        x = keras.layers.Conv2D(1, 1, activation="sigmoid", name=f"{self.name}_out")(x)
        size = [s // self.config.output_stride for s in self.image_size]
        return keras.layers.Resizing(*size, interpolation="bilinear", name=f"{self.name}_resize")(x)

    def _full(self, raw):
        return tf.image.resize(tf.convert_to_tensor(raw, tf.float32), self.image_size, method="bilinear")

    def loss(self, y_true, y_pred, sample_weight):
        per_image = tf.reduce_mean(tf.abs(y_true - self._full(y_pred)), axis=[1, 2, 3])
        weight = tf.cast(sample_weight, tf.float32)
        return tf.reduce_sum(per_image * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)

    def postprocess(self, raw):
        return {"heat": self._full(raw)}

    def export_outputs(self, raw, nms=False, integer=False):
        return {"map": raw}

    def postprocess_exported(self, outputs):
        return self.postprocess(outputs["map"])

    def evaluator(self):
        return MeanAbsoluteError()

    def update_evaluator(self, evaluator, batch, predictions):
        heat = self.own(batch)["heat"]
        for i in np.flatnonzero(batch[self.has_key]):
            evaluator.add(heat[i], predictions["heat"][i])

    def labels_from_prediction(self, prediction, index, min_score=0.3):
        return {"heat": np.asarray(prediction["heat"][index])}

    def prediction_maps(self, labels):
        return {"heat": (np.clip(labels["heat"][..., 0], 0, 1) * 255).astype(np.uint8)}

    def render(self, image, labels):
        heat = np.clip(np.asarray(labels["heat"], np.float32)[..., :1], 0, 1)
        out = image.astype(np.float32)
        out[..., 0] = out[..., 0] * (1 - heat[..., 0]) + 255 * heat[..., 0]
        return out.round().astype(np.uint8)

    def stats_counter(self):
        return {"sum": 0.0, "pixels": 0}

    def count_labels(self, counter, labels):
        counter["sum"] += float(np.sum(labels["heat"]))
        counter["pixels"] += int(np.size(labels["heat"]))

    def stats_result(self, counter):
        return {"mean_heat": {"mean": counter["sum"] / max(counter["pixels"], 1)}}


class HeatScenes:
    """Synthetic scenes whose `surface` pixels are hot (1) and the rest cold (0), rendered at
    twice the recipe's size."""

    class Config(SourceSection):
        type: Literal["heat_scenes"] = "heat_scenes"
        num_images: int = Field(ge=1)
        seed: int = 0
        surface: Literal[tuple(SURFACE_CLASSES)] = "building"

        def label_kinds(self):
            return ["heat"]

    def __init__(self, config, image_size):
        self.config, self.image_size = config, tuple(image_size)

    def __len__(self):
        return self.config.num_images

    def __getitem__(self, index):
        rng = np.random.default_rng([self.config.seed, index])
        height, width = (2 * s for s in self.image_size)
        image, mask, _, _ = render_scene(rng, height, width, max_objects=4)
        hot = (mask == SURFACE_CLASSES.index(self.config.surface)).astype(np.float32)[..., None]
        return {"image": image, "heat": hot}

    def describe(self):
        return f"heat_scenes(seed={self.config.seed}, surface={self.config.surface})"
