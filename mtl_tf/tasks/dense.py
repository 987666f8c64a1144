"""What the dense per-pixel task types (depth, normals, saliency, boundaries) share: the config,
a light FCN head on C3/C4/C5, masked means, and the plumbing from raw outputs to maps.

A dense type sets `map_key` (its one label key; also its source kind), `export_kind` (the
artifact's output `<task>_<export_kind>`), `channels` (the head's output channels) and defines
`decode` (raw head output -> the exported value, e.g. sigmoid), `encode`, `loss`, `evaluator`,
`render` and `prediction_maps`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.config import TaskConfig
from mtl_tf.data.example import IGNORE
from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.dense import BinaryMapEvaluator
from mtl_tf.model.layers import conv_bn_relu
from mtl_tf.tasks.base import Task
from mtl_tf.tasks.segmentation import full_resolution


class DenseConfig(TaskConfig):
    output_stride: Literal[1, 2, 4, 8] = Field(
        4, description="the head's map at 1/output_stride of the input size; the loss, evaluation and "
        "`predict` upsample it (bilinear) to the image, an exported model outputs it as it is",
    )
    head_channels: int = Field(32, ge=4, description="channels of the head's feature pyramid and 3x3 conv")


def build_dense_head(features: dict, channels: int, image_size, name: str, output_stride: int, width: int,
                     output_bias=None):
    """Light FCN: 1x1 projections of C5, C4, C3 summed top-down (bilinear 2x upsampling), a 3x3
    conv + BN + ReLU at stride 8, a 1x1 conv to `channels` (its bias starting at `output_bias`,
    default 0), bilinear to input size / output_stride."""
    x = None
    for tap in ("C5", "C4", "C3"):
        lateral = keras.layers.Conv2D(width, 1, name=f"{name}_lateral_{tap}")(features[tap])
        if x is not None:
            x = keras.layers.Resizing(*lateral.shape[1:3], interpolation="bilinear", name=f"{name}_up_{tap}")(x)
            lateral = keras.layers.Add(name=f"{name}_add_{tap}")([x, lateral])
        x = lateral
    x = conv_bn_relu(x, width, 3, name=f"{name}_fuse")
    bias = "zeros" if output_bias is None else keras.initializers.Constant(list(output_bias))
    x = keras.layers.Conv2D(channels, 1, bias_initializer=bias, name=f"{name}_out")(x)
    size = [side // output_stride for side in image_size]
    if tuple(size) == tuple(x.shape[1:3]):
        return x
    return keras.layers.Resizing(*size, interpolation="bilinear", name=f"{name}_upsample")(x)


def masked_mean(values, weights) -> tf.Tensor:
    """Sum of `values * weights` over the sum of `weights` (at least 1): a mean over labelled
    pixels that is 0, with zero gradient, where every weight is 0."""
    weights = tf.cast(weights, tf.float32)
    return tf.reduce_sum(values * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def colour_map(values: np.ndarray, low: float, high: float, name: str = "turbo") -> np.ndarray:
    """uint8 RGB [H, W, 3] of `values` [H, W] scaled from [low, high] through a matplotlib map;
    non-finite values black."""
    import matplotlib

    values = np.asarray(values, np.float64)
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0, 1)
    rgb = matplotlib.colormaps[name](np.nan_to_num(scaled))[..., :3]
    rgb[~np.isfinite(values)] = 0
    return (rgb * 255).round().astype(np.uint8)


def blend(image: np.ndarray, layer: np.ndarray, alpha) -> np.ndarray:
    """`layer` (uint8 RGB) over `image` with opacity `alpha` (scalar or [H, W])."""
    alpha = np.asarray(alpha, np.float32)
    alpha = alpha[..., None] if alpha.ndim == 2 else alpha
    out = image.astype(np.float32) * (1 - alpha) + layer.astype(np.float32) * alpha
    return out.round().astype(np.uint8)


class DenseTask(Task):
    """Base of the dense per-pixel task types (see the module docstring)."""

    Config: ClassVar = DenseConfig
    taps: ClassVar[tuple[str, ...]] = ("C3", "C4", "C5")
    map_key: ClassVar[str]
    export_kind: ClassVar[str]
    channels: ClassVar[int] = 1
    output_bias: ClassVar[tuple[float, ...] | None] = None  # the raw output's starting value (a prior)

    # -- data side --------------------------------------------------------------------
    def check_example(self, labels, image):
        value = np.asarray(labels[self.map_key])
        if value.shape[:2] != tuple(np.asarray(image).shape[:2]):
            return f"{self.map_key} map of shape {value.shape} for an image of shape {np.asarray(image).shape}"
        return None

    # -- model side -------------------------------------------------------------------
    def build_head(self, features):
        return build_dense_head(features, self.channels, self.image_size, self.name,
                                self.config.output_stride, self.config.head_channels, self.output_bias)

    def full(self, raw) -> tf.Tensor:
        """A raw or decoded map upsampled bilinearly to the input size."""
        return full_resolution(tf.convert_to_tensor(raw, tf.float32), self.image_size)

    def decode(self, raw) -> tf.Tensor:
        """The raw head output as the value the artifact exports (identity by default)."""
        return raw

    def refine(self, values) -> tf.Tensor:
        """The upsampled decoded map as the prediction (e.g. renormalized); identity by default."""
        return values

    def postprocess(self, raw):
        return self.postprocess_exported({self.export_kind: self.decode(tf.convert_to_tensor(raw, tf.float32))})

    def export_outputs(self, raw, nms=False, integer=False):
        return {self.export_kind: self.decode(raw)}

    def postprocess_exported(self, outputs):
        return {self.map_key: self.refine(self.full(outputs[self.export_kind]))}

    def export_parameters(self):
        return {"output_stride": self.config.output_stride,
                "postprocess": f"{self.name}_{self.export_kind} is at 1/output_stride of the input size: scale it "
                "(bilinear) to the image"}

    # -- evaluation and reports -------------------------------------------------------
    def update_evaluator(self, evaluator, batch, predictions):
        truth = batch[self.key(self.map_key)]
        for i in np.flatnonzero(batch[self.has_key]):
            evaluator.add(truth[i], np.asarray(predictions[self.map_key][i]))

    def labels_from_prediction(self, prediction, index, min_score: float = 0.3):
        return {self.map_key: np.asarray(prediction[self.map_key][index])}


class BinaryMapTask(DenseTask):
    """A binary per-pixel map (uint8 [H, W]: 0, 1, 255 = ignore) learned with class-balanced
    cross-entropy (HED): positives weighted by the share of negatives among the batch's labelled
    pixels and negatives by that of positives. Raw output: logits [B, H/s, W/s, 1]; exported and
    predicted: the probability. Metrics: max F over thresholds (ODS), F at 0.5."""

    export_kind: ClassVar[str] = "probability"
    primary_metric: ClassVar[str] = "max_f"
    colour: ClassVar[tuple[int, int, int]] = (255, 40, 40)

    @classmethod
    def label_spec(cls):
        return {cls.map_key: LabelKey("uint8", (None, None), "map", resize="nearest", fill=IGNORE, pad=IGNORE)}

    def check_example(self, labels, image):
        problem = super().check_example(labels, image)
        values = np.unique(np.asarray(labels[self.map_key]))
        bad = values[(values > 1) & (values != IGNORE)]
        if problem is None and bad.size:
            problem = f"{self.map_key} values {bad.tolist()} are not 0, 1 or {IGNORE} (ignore)"
        return problem

    def encode(self, example):
        """Target: float 0/1 [H, W] (IGNORE -> 0); weight: has_<task> * (value != IGNORE)."""
        value = example[self.key(self.map_key)]
        labelled = tf.cast(value != IGNORE, tf.float32) * tf.cast(example[self.has_key], tf.float32)
        return tf.cast(value == 1, tf.float32), labelled

    def loss(self, y_true, y_pred, sample_weight):
        logits = self.full(y_pred)[..., 0]
        weights = tf.cast(sample_weight, tf.float32)
        target = tf.cast(y_true, tf.float32)
        positives = tf.reduce_sum(target * weights)
        labelled = tf.maximum(tf.reduce_sum(weights), 1.0)
        beta = 1.0 - positives / labelled  # the negatives' share weighs the positives
        balance = tf.stop_gradient(target * beta + (1.0 - target) * (1.0 - beta))
        entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
        return masked_mean(entropy * balance, weights)

    def decode(self, raw):
        return tf.sigmoid(raw)

    def refine(self, values):
        return values[..., 0]

    def evaluator(self):
        return BinaryMapEvaluator()

    def prediction_maps(self, labels):
        return {self.map_key: (np.clip(labels[self.map_key], 0, 1) * 255).round().astype(np.uint8)}

    def render(self, image, labels):
        value = np.asarray(labels[self.map_key])
        strength = np.where(value == IGNORE, 0, value).astype(np.float32) if value.dtype == np.uint8 else value
        layer = np.broadcast_to(np.array(self.colour, np.uint8), image.shape)
        return blend(image, layer, 0.8 * np.clip(strength, 0, 1))
