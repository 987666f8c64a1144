"""Image classification: one class per image (softmax over `classes`).

The head pools each backbone tap of the recipe (`taps`, default C5) by global average and global
max, concatenates them, optionally adds a hidden dense layer with dropout, and ends in one logit
per class. The label is the class id (kind `label`, int32; -1 = none); the loss is cross-entropy
(with optional label smoothing) over the labelled images only.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.config import ClassTaskConfig
from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.classification import MultiClassEvaluator
from mtl_tf.tasks.base import Task
from mtl_tf.tasks.segmentation import SegmentationTask

Tap = Literal["C3", "C4", "C5"]


class PooledHeadConfig(ClassTaskConfig):
    """The options of a head on globally pooled backbone taps."""

    taps: list[Tap] = Field(["C5"], min_length=1, description="backbone taps pooled (average + max) and concatenated")
    hidden: int | None = Field(None, ge=1, description="units of a hidden dense layer (relu + dropout); none by default")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout after the hidden layer")


class ClassificationConfig(PooledHeadConfig):
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    top_k: int = Field(5, ge=1, description="classes kept per image by predictions (labels.json)")


def pooled_head(features: dict, config: PooledHeadConfig, outputs: int, name: str):
    """Logits [B, outputs]: global average and max pooling of each tap in `config.taps`,
    concatenated, then the optional hidden layer, then a dense layer."""
    pooled = []
    for tap in config.taps:
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"{name}_{tap}_avg")(features[tap]))
        pooled.append(keras.layers.GlobalMaxPooling2D(name=f"{name}_{tap}_max")(features[tap]))
    x = keras.layers.Concatenate(name=f"{name}_pooled")(pooled)
    if config.hidden:
        x = keras.layers.Dense(config.hidden, activation="relu", name=f"{name}_hidden")(x)
        x = keras.layers.Dropout(config.dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(outputs, name=f"{name}_logits")(x)


def masked_mean(per_item, weight) -> tf.Tensor:
    """sum(per_item * weight) / max(sum(weight), 1): zero, with zero gradient, where weight is 0."""
    weight = tf.cast(weight, tf.float32)
    return tf.reduce_sum(per_item * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def label_caption(image: np.ndarray, text: str, row: int = 0) -> np.ndarray:
    """`image` with `text` in a dark band at the top (`row` 0) or at text row `row`."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, min(image.shape[:2]) // 16))
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    top = row * (y1 - y0 + 6)
    draw.rectangle([0, top, x1 + 6, top + y1 - y0 + 6], fill=(0, 0, 0))
    draw.text((3, top + 3 - y0), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


class PooledHeadTask(Task):
    """Base of the image-level task types: the head on pooled taps (`pooled_head`), one logit
    per class, the taps set by the recipe."""

    taps: ClassVar[tuple[str, ...]] = ("C5",)
    records_file: ClassVar[str] = "labels.json"

    def __init__(self, config, image_size, name=None):
        super().__init__(config, image_size, name)
        self.taps = tuple(config.taps)

    def build_head(self, features):
        return pooled_head(features, self.config, len(self.classes), self.name)


class ClassificationTask(PooledHeadTask):
    """One class per image; raw output: logits [B, C]."""

    type: ClassVar[str] = "classification"
    Config: ClassVar = ClassificationConfig
    source_kind: ClassVar[str] = "label"
    primary_metric: ClassVar[str] = "top1"
    draw_order: ClassVar[int] = 2

    # -- data side --------------------------------------------------------------------
    @classmethod
    def label_spec(cls):
        return {"label": LabelKey("int32", (), "image", fill=-1, pad=-1)}

    def remap_classes(self, labels, lookup):
        label = int(labels["label"])
        if not 0 <= label < len(lookup):
            return f"class id {label} is not in the source's {len(lookup)} classes"
        labels["label"] = np.int32(lookup[label])
        return None

    def check_example(self, labels, image):
        label = int(labels["label"])
        if not 0 <= label < len(self.classes):
            return f"class id {label} outside 0..{len(self.classes) - 1}"
        return None

    def encode(self, example):
        """Target: the class id (0 where unlabelled); weight: has_<task> and a class id >= 0."""
        label = tf.cast(example[self.key("label")], tf.int32)
        weight = tf.cast(example[self.has_key], tf.float32) * tf.cast(label >= 0, tf.float32)
        return tf.maximum(label, 0), weight

    # -- model side -------------------------------------------------------------------
    def loss(self, y_true, y_pred, sample_weight):
        """Cross-entropy with label smoothing, averaged over the labelled images."""
        num_classes = len(self.classes)
        target = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes)
        smoothing = self.config.label_smoothing
        target = target * (1.0 - smoothing) + smoothing / num_classes
        per_image = -tf.reduce_sum(target * tf.nn.log_softmax(tf.cast(y_pred, tf.float32)), axis=-1)
        weight = tf.ones_like(per_image) if sample_weight is None else tf.reshape(sample_weight, [-1])
        return masked_mean(per_image, weight)

    def postprocess(self, raw):
        return self._predictions(tf.nn.softmax(tf.cast(raw, tf.float32), axis=-1))

    def _predictions(self, probabilities) -> dict:
        """probabilities [B, C], the top_k classes [B, k] and their scores [B, k]."""
        k = min(self.config.top_k, len(self.classes))
        top = tf.math.top_k(probabilities, k=k)
        return {"probabilities": probabilities, "top_classes": tf.cast(top.indices, tf.int32), "top_scores": top.values}

    def export_outputs(self, raw, nms=False, integer=False):
        """Class probabilities [B, C] (in [0, 1], so an int8 artifact gives them their own scale)."""
        return {"probabilities": tf.nn.softmax(tf.cast(raw, tf.float32), axis=-1)}

    def postprocess_exported(self, outputs):
        return self._predictions(tf.convert_to_tensor(outputs["probabilities"], tf.float32))

    def export_parameters(self):
        return {"postprocess": f"{self.name}_probabilities holds one probability per class; the label is the argmax"}

    # -- evaluation and reports -------------------------------------------------------
    def evaluator(self):
        return MultiClassEvaluator(self.classes)

    def update_evaluator(self, evaluator, batch, predictions):
        labels = batch[self.key("label")]
        for i in np.flatnonzero(batch[self.has_key]):
            if labels[i] >= 0:
                evaluator.add_image(labels[i], predictions["probabilities"][i])

    # `<task>_confusion_matrix.png`, drawn as segmentation's (both evaluators have a `matrix`).
    write_figures = SegmentationTask.write_figures

    def labels_from_prediction(self, prediction, index, min_score: float = 0.3):
        classes, scores = prediction["top_classes"][index], prediction["top_scores"][index]
        return {"label": int(classes[0]), "score": float(scores[0]),
                "top_classes": np.asarray(classes), "top_scores": np.asarray(scores)}

    def prediction_records(self, labels, source, size):
        """One record per image: its top_k classes with their probabilities, best first."""
        top = [{"label": self.classes[int(c)], "score": round(float(s), 5)}
               for c, s in zip(labels["top_classes"], labels["top_scores"])]
        return [{"image": source, "label": top[0]["label"], "top_k": top}]

    def render(self, image, labels):
        label = int(labels["label"])
        if label < 0:
            return image
        score = f" {labels['score']:.2f}" if "score" in labels else ""
        return label_caption(image, f"{self.name}: {self.classes[label]}{score}")

    # -- statistics -------------------------------------------------------------------
    def stats_counter(self):
        return np.zeros(len(self.classes), np.int64)

    def count_labels(self, counter, labels):
        label = int(labels["label"])
        if label >= 0:
            counter[label] += 1

    def stats_result(self, counter):
        return {"images_per_class": dict(zip(self.classes, counter.tolist()))}

    def stats_lines(self, stats):
        return ["images per class: " + ", ".join(f"{c} {n}" for c, n in stats["images_per_class"].items())]
