"""Semantic segmentation with an FCN head with one skip connection (FCN-16s style)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.config import ClassTaskConfig
from mtl_tf.data.example import IGNORE
from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.segmentation import ConfusionMatrixEvaluator
from mtl_tf.tasks.base import Task

_cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


class SegmentationConfig(ClassTaskConfig):
    output_stride: Literal[1, 2, 4, 8] = Field(
        1, description="the head's logits at 1/output_stride of the input size; the loss, the "
        "evaluation and `predict` upsample them (bilinear) to the image, an exported model leaves "
        "that to the app (upsampling the class map is far cheaper than 21-channel logits)",
    )
    loss: Literal["ce", "balanced", "ohem"] = Field(
        "ce", description="ce: cross-entropy averaged over labelled pixels; balanced: every class present in "
        "the batch weighs equally (the mean of per-class mean cross-entropies); ohem: the mean over the "
        "hardest ohem_keep share of labelled pixels (online hard example mining)",
    )
    ohem_keep: float = Field(0.25, gt=0, le=1, description="ohem: share of labelled pixels kept (hardest first)")


def build_fcn_head(features: dict, num_classes: int, image_size, name: str = "segmentation", output_stride: int = 1):
    """1x1 class scores on C5 and C4, C5's upsampled to C4's size and summed, then upsampled
    bilinearly to the input size / output_stride. Returns logits [B, H/s, W/s, num_classes]."""
    c4, c5 = features["C4"], features["C5"]
    score5 = keras.layers.Conv2D(num_classes, 1, name=f"{name}_score5")(c5)
    score4 = keras.layers.Conv2D(num_classes, 1, name=f"{name}_score4")(c4)
    up5 = keras.layers.Resizing(*c4.shape[1:3], interpolation="bilinear", name=f"{name}_up2")(score5)
    fused = keras.layers.Add(name=f"{name}_skip")([up5, score4])
    size = [side // output_stride for side in image_size]
    return keras.layers.Resizing(*size, interpolation="bilinear", name=f"{name}_upsample")(fused)


def full_resolution(logits, size):
    """Logits [B, h, w, C] upsampled bilinearly to `size` (as the head does at output_stride 1)."""
    if tuple(logits.shape[1:3]) == tuple(size):
        return logits
    return tf.image.resize(logits, size, method="bilinear")


def pixel_loss(ce, labels, sample_weight, num_classes: int, mode: str = "ce", keep: float = 0.25):
    """Reduce per-pixel losses `ce` [B, H, W] over the pixels with weight > 0.

    ce: their weighted mean; balanced: each class present among them weighs equally (class c's
    pixels weighted by n / (k n_c), k classes present); ohem: the weighted mean of the hardest
    ceil(keep * n) of them."""
    weights = tf.cast(sample_weight, tf.float32)
    n = tf.reduce_sum(weights)
    if mode == "balanced":
        labels = tf.cast(labels, tf.int32)
        per_class = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), tf.reshape(labels, [-1]), num_classes)
        present = tf.reduce_sum(tf.cast(per_class > 0, tf.float32))
        class_weight = n / tf.maximum(present * per_class, 1e-12)
        weights = weights * tf.gather(class_weight, labels)
    elif mode == "ohem":
        flat_w, flat_ce = tf.reshape(weights, [-1]), tf.reshape(ce, [-1])
        k = tf.cast(tf.math.ceil(keep * tf.reduce_sum(tf.cast(flat_w > 0, tf.float32))), tf.int32)
        ranked = tf.where(flat_w > 0, flat_ce, -1.0)
        top = tf.math.top_k(tf.stop_gradient(ranked), k=tf.maximum(k, 1)).indices
        weights = tf.scatter_nd(top[:, None], tf.gather(flat_w, top), tf.shape(flat_w)) * tf.cast(k > 0, tf.float32)
        ce, n = flat_ce, tf.reduce_sum(weights)
    elif mode != "ce":
        raise ValueError(f"unknown segmentation loss {mode!r}; choose ce, balanced or ohem")
    return tf.reduce_sum(ce * weights) / tf.maximum(n, 1.0)


class SegmentationTask(Task):
    """Per-pixel classes; raw output: logits [B, H, W, C]. Pixels labelled IGNORE are skipped."""

    type: ClassVar[str] = "segmentation"
    Config: ClassVar = SegmentationConfig
    source_kind: ClassVar[str] = "mask"
    primary_metric: ClassVar[str] = "miou"
    taps: ClassVar[tuple[str, ...]] = ("C4", "C5")
    draw_order: ClassVar[int] = 0

    # -- data side --------------------------------------------------------------------
    @classmethod
    def label_spec(cls):
        return {"mask": LabelKey("uint8", (None, None), "map", resize="nearest", fill=IGNORE, pad=IGNORE)}

    def remap_classes(self, example, lookup):
        mask = np.asarray(example["mask"])
        values = np.unique(mask)
        unknown = values[(values >= len(lookup)) & (values != IGNORE)]
        if unknown.size:
            return f"mask values {unknown.tolist()} are not in the source's {len(lookup)} classes or {IGNORE}"
        table = np.full(256, IGNORE, np.uint8)
        table[: len(lookup)] = lookup
        example["mask"] = table[mask]
        return None

    def check_example(self, labels, image):
        mask = np.asarray(labels["mask"])
        if mask.shape != tuple(np.asarray(image).shape[:2]):
            return f"mask of shape {mask.shape} for an image of shape {np.asarray(image).shape}"
        values = np.unique(mask)
        bad = values[(values >= len(self.classes)) & (values != IGNORE)]
        if bad.size:
            return f"mask values {bad.tolist()} are not class ids 0..{len(self.classes) - 1} or {IGNORE}"
        return None

    def encode(self, example):
        """Target: class ids [H, W] (IGNORE -> 0); weight: has_<task> * (mask != IGNORE)."""
        mask = tf.cast(example[self.key("mask")], tf.int32)
        labelled = tf.cast(mask != IGNORE, tf.float32) * tf.cast(example[self.has_key], tf.float32)
        return tf.where(mask == IGNORE, 0, mask), labelled

    # -- model side -------------------------------------------------------------------
    def build_head(self, features):
        return build_fcn_head(features, len(self.classes), self.image_size, name=self.name,
                              output_stride=self.config.output_stride)

    def loss(self, y_true, y_pred, sample_weight):
        """Per-pixel cross-entropy over labelled pixels (per-pixel sample weights), reduced as
        `config.loss` says (see `pixel_loss`)."""
        ce = _cross_entropy(y_true, full_resolution(y_pred, self.image_size))
        return pixel_loss(ce, y_true, sample_weight, len(self.classes), self.config.loss, self.config.ohem_keep)

    def postprocess(self, raw):
        return {"mask": tf.cast(tf.argmax(full_resolution(raw, self.image_size), axis=-1), tf.uint8)}

    def export_outputs(self, raw, nms=False, integer=False):
        """Logits [B, H/s, W/s, C]; the app takes the argmax (and scales the class map to its
        frame), no in-graph choice to make."""
        return {"logits": raw}

    def postprocess_exported(self, outputs):
        return self.postprocess(outputs["logits"])

    def export_parameters(self):
        return {"postprocess": "argmax over the last axis of segmentation_logits, then the class map "
                "scaled to the image (the logits are at 1/output_stride of the input size)",
                "output_stride": self.config.output_stride}

    # -- evaluation and reports -------------------------------------------------------
    def evaluator(self):
        return ConfusionMatrixEvaluator(self.classes)

    def update_evaluator(self, evaluator, batch, predictions):
        masks = batch[self.key("mask")]
        for i in np.flatnonzero(batch[self.has_key]):
            evaluator.add_image(masks[i], predictions["mask"][i])

    def write_figures(self, evaluator, folder):
        from mtl_tf.report.plots import plot_confusion_matrix

        name = f"{self.name}_confusion_matrix.png"
        plot_confusion_matrix(evaluator.matrix, self.classes, Path(folder) / name, title=f"{self.name}: confusion matrix")
        return [name]

    def labels_from_prediction(self, prediction, index, min_score: float = 0.3):
        return {"mask": prediction["mask"][index]}

    def prediction_maps(self, labels):
        return {"mask": labels["mask"]}

    # -- statistics -------------------------------------------------------------------
    def stats_counter(self):
        return np.zeros(256, np.int64)

    def count_labels(self, counter, labels):
        counter += np.bincount(np.asarray(labels["mask"]).ravel(), minlength=256)

    def stats_result(self, counter):
        pixels = dict(zip(self.classes, counter[: len(self.classes)].tolist()))
        return {"pixels": {**pixels, "ignore": int(counter[IGNORE])}}

    def stats_lines(self, stats):
        pixels = stats["pixels"]
        total = max(1, sum(pixels.values()))
        shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in pixels.items())
        return [f"pixels: {shares}"]

    def render(self, image, labels):
        from mtl_tf.report.render import blend_mask

        return blend_mask(image, np.asarray(labels["mask"]), len(self.classes))
