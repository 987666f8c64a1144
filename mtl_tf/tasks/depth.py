"""Per-pixel depth regression (label kind `depth`: float32 [H, W, 1], e.g. metres).

Pixels without depth are NaN (or 0 with `invalid: zero`); crop padding is NaN. Maps resize by
nearest neighbour: a bilinear mix of two surfaces is a depth that exists nowhere, and NaN stays
on the pixels that had none. The head predicts log(depth / depth_scale); the loss is L1 on the
depth or the scale-invariant log error (Eigen et al. 2014) over labelled pixels.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.dense import DepthEvaluator
from mtl_tf.tasks.dense import DenseConfig, DenseTask, blend, colour_map, masked_mean

# Raw log-depth is clipped to this range before exp (depth_scale * e^±12 covers any scene).
_LOG_RANGE = 12.0
# 16-bit PNG written by `predict`: depth * PNG_SCALE (KITTI's convention), 0 = no depth.
PNG_SCALE = 256.0


class DepthConfig(DenseConfig):
    loss: Literal["l1", "silog"] = Field("l1", description="l1 on the depth, or the scale-invariant log error")
    silog_lambda: float = Field(0.5, ge=0, le=1, description="silog: weight of the subtracted squared mean log error")
    invalid: Literal["nan", "zero"] = Field(
        "nan", description="the value marking pixels without depth in the labels (NaN always does)")
    depth_scale: float = Field(10.0, gt=0, description="a typical depth in label units: the head predicts "
                               "log(depth / depth_scale), so an untrained head starts near it")


class DepthTask(DenseTask):
    """Raw output: log(depth / depth_scale) [B, H/s, W/s, 1]; exported and predicted: the depth."""

    type: ClassVar[str] = "depth"
    Config: ClassVar = DepthConfig
    source_kind: ClassVar[str] = "depth"
    map_key: ClassVar[str] = "depth"
    export_kind: ClassVar[str] = "depth"
    primary_metric: ClassVar[str] = "abs_rel"
    lower_is_better: ClassVar[frozenset] = frozenset({"abs_rel", "rmse"})

    @classmethod
    def label_spec(cls):
        return {"depth": LabelKey("float32", (None, None, 1), "map", resize="nearest", fill=math.nan, pad=math.nan)}

    def check_example(self, labels, image):
        problem = super().check_example(labels, image)
        depth = np.asarray(labels["depth"])
        if problem is None and (depth.ndim != 3 or depth.shape[2] != 1):
            problem = f"depth map of shape {depth.shape}: expected [H, W, 1]"
        if problem is None and np.nanmin(depth, initial=0.0) < 0:
            problem = f"negative depths (min {np.nanmin(depth):g})"
        return problem

    def valid(self, depth: tf.Tensor) -> tf.Tensor:
        """Pixels with a depth: finite, and non-zero with `invalid: zero`."""
        valid = tf.math.is_finite(depth)
        return valid & tf.not_equal(depth, 0.0) if self.config.invalid == "zero" else valid

    def encode(self, example):
        """Target: depth [H, W] (0 where there is none); weight: has_<task> * labelled."""
        depth = tf.cast(example[self.key("depth")], tf.float32)[..., 0]
        valid = self.valid(depth)
        weight = tf.cast(valid, tf.float32) * tf.cast(example[self.has_key], tf.float32)
        return tf.where(valid, depth, 0.0), weight

    # -- model side -------------------------------------------------------------------
    def log_depth(self, raw) -> tf.Tensor:
        return tf.clip_by_value(raw, -_LOG_RANGE, _LOG_RANGE) + math.log(self.config.depth_scale)

    def loss(self, y_true, y_pred, sample_weight):
        log_pred = self.log_depth(self.full(y_pred))[..., 0]
        target = tf.cast(y_true, tf.float32)
        weights = tf.cast(sample_weight, tf.float32)
        if self.config.loss == "l1":
            return masked_mean(tf.abs(tf.exp(log_pred) - target), weights)
        weights = weights * tf.cast(target > 0, tf.float32)  # log needs a positive depth
        error = (log_pred - tf.math.log(tf.maximum(target, 1e-6))) * weights
        pixels = tf.reduce_sum(weights, axis=[1, 2])
        mean = tf.reduce_sum(error, axis=[1, 2]) / tf.maximum(pixels, 1.0)
        mean_square = tf.reduce_sum(error * error, axis=[1, 2]) / tf.maximum(pixels, 1.0)
        per_image = mean_square - self.config.silog_lambda * mean * mean
        return masked_mean(per_image, tf.cast(pixels > 0, tf.float32))

    def decode(self, raw):
        return tf.exp(self.log_depth(raw))

    def refine(self, values):
        return values[..., 0]

    # -- evaluation and reports -------------------------------------------------------
    def evaluator(self):
        return DepthEvaluator(self.config.invalid)

    def prediction_maps(self, labels):
        depth = np.nan_to_num(np.asarray(labels["depth"], np.float64), nan=0.0)
        return {"depth": np.clip(np.round(depth * PNG_SCALE), 0, 65535).astype(np.uint16)}

    def render(self, image, labels):
        depth = np.asarray(labels["depth"], np.float32)
        depth = depth[..., 0] if depth.ndim == 3 else depth
        finite = depth[np.isfinite(depth)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        return blend(image, colour_map(depth, low, high), 0.6 * np.isfinite(depth))
