"""Surface normals (label kind `normals`: float32 [H, W, 3] unit vectors x right, y down, z
towards the camera; zero vectors = unlabelled). A horizontal flip negates x, a vertical flip y.
Maps resize by nearest neighbour (a bilinear mix of two normals is not a unit vector)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.dense import NormalsEvaluator
from mtl_tf.tasks.dense import DenseConfig, DenseTask, blend, masked_mean


def unit(vectors, epsilon: float = 1e-6) -> tf.Tensor:
    """Vectors [..., 3] scaled to unit length (x * rsqrt(|x|^2 + eps): one builtin op chain)."""
    return vectors * tf.math.rsqrt(tf.reduce_sum(tf.square(vectors), axis=-1, keepdims=True) + epsilon)


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Unit normals [H, W, 3] as uint8 RGB ((n + 1) / 2 * 255; zero vectors mid-grey)."""
    return np.clip(np.round((np.nan_to_num(np.asarray(normals, np.float64)) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# The angular loss's cosine stays below 1 - _EDGE, where acos' gradient is finite (0.08 degrees).
_EDGE = 1e-6


class NormalsConfig(DenseConfig):
    loss: Literal["angular", "cosine"] = Field(
        "angular", description="angular: the angle in radians (its gradient does not fade as the error "
        "shrinks, so flat regions end exactly right); cosine: 1 - cos(angle)")


class NormalsTask(DenseTask):
    """Raw output: unnormalized vectors [B, H/s, W/s, 3], starting at (0, 0, 1) (facing the camera,
    as every visible surface roughly does); exported and predicted: unit normals. Loss: the angle
    (or 1 - its cosine) averaged over labelled pixels. Metrics: angular errors in degrees."""

    type: ClassVar[str] = "normals"
    source_kind: ClassVar[str] = "normals"
    map_key: ClassVar[str] = "normals"
    export_kind: ClassVar[str] = "normals"
    Config: ClassVar = NormalsConfig
    channels: ClassVar[int] = 3
    output_bias: ClassVar[tuple[float, ...]] = (0.0, 0.0, 1.0)
    primary_metric: ClassVar[str] = "mean_angle"
    lower_is_better: ClassVar[frozenset] = frozenset({"mean_angle", "median_angle"})

    @classmethod
    def label_spec(cls):
        return {"normals": LabelKey("float32", (None, None, 3), "map", resize="nearest", fill=0.0,
                                    negate_on_flip=((1, 0), (0, 1)))}

    def check_example(self, labels, image):
        problem = super().check_example(labels, image)
        normals = np.asarray(labels["normals"])
        if problem is None and (normals.ndim != 3 or normals.shape[2] != 3):
            problem = f"normals map of shape {normals.shape}: expected [H, W, 3]"
        return problem

    def encode(self, example):
        """Target: unit normals [H, W, 3] (0 where unlabelled); weight: has_<task> * labelled."""
        normals = tf.where(tf.math.is_finite(example[self.key("normals")]), example[self.key("normals")], 0.0)
        labelled = tf.reduce_sum(tf.square(normals), axis=-1) > 0.25
        weight = tf.cast(labelled, tf.float32) * tf.cast(example[self.has_key], tf.float32)
        return unit(normals), weight

    def loss(self, y_true, y_pred, sample_weight):
        cosine = tf.reduce_sum(unit(self.full(y_pred)) * tf.cast(y_true, tf.float32), axis=-1)
        if self.config.loss == "cosine":
            return masked_mean(1.0 - cosine, sample_weight)
        return masked_mean(tf.acos(tf.clip_by_value(cosine, -1.0 + _EDGE, 1.0 - _EDGE)), sample_weight)

    def decode(self, raw):
        return unit(raw)

    def refine(self, values):
        return unit(values)

    def evaluator(self):
        return NormalsEvaluator()

    def prediction_maps(self, labels):
        return {"normals": normals_to_rgb(labels["normals"])}

    def render(self, image, labels):
        normals = np.asarray(labels["normals"], np.float32)
        labelled = np.sum(np.nan_to_num(normals) ** 2, axis=-1) > 0.25
        return blend(image, normals_to_rgb(normals), 0.6 * labelled)
