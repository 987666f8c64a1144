"""Multi-label image classification: one sigmoid per label (`classes` names the labels).

The label (kind `labels`) is a vector [L] of 1 (present), 0 (absent) or -1 (unknown); an unknown
entry contributes no loss and no gradient, so each label can come from its own partly-labelled
data. The head is the classification head (pooled taps, optional hidden layer), one logit per
label.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow as tf
from pydantic import Field

from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.classification import UNKNOWN, MultiLabelEvaluator
from mtl_tf.tasks.classification import PooledHeadConfig, PooledHeadTask, label_caption, masked_mean


class MultilabelConfig(PooledHeadConfig):
    threshold: float = Field(0.5, gt=0, lt=1, description="probability from which a label counts as present (F1, "
                             "balanced accuracy, predictions)")


def as_label_vector(values) -> np.ndarray:
    """int8 [L] of 1 / 0 / -1 from any numeric vector (NaN = unknown); other values are kept
    so that `check_example` can name them."""
    values = np.asarray(values, np.float64).reshape(-1)
    values = np.where(np.isnan(values), UNKNOWN, values)
    return values.astype(np.int8) if np.isin(values, (UNKNOWN, 0, 1)).all() else values


class MultilabelTask(PooledHeadTask):
    """Independent binary labels per image; raw output: logits [B, L]."""

    type: ClassVar[str] = "multilabel"
    Config: ClassVar = MultilabelConfig
    source_kind: ClassVar[str] = "labels"
    primary_metric: ClassVar[str] = "map"
    draw_order: ClassVar[int] = 3

    # -- data side --------------------------------------------------------------------
    @classmethod
    def label_spec(cls):
        """labels: int8 [L] (the number of labels is the task's, so the spec leaves it open)."""
        return {"labels": LabelKey("int8", (None,), "image", fill=UNKNOWN, pad=UNKNOWN)}

    def placeholder(self):
        return {"labels": np.full(len(self.classes), UNKNOWN, np.int8)}

    def remap_classes(self, labels, lookup):
        values = as_label_vector(labels["labels"])
        if values.size != len(lookup):
            return f"{values.size} label values for the source's {len(lookup)} labels"
        remapped = np.full(len(self.classes), UNKNOWN, values.dtype)  # labels the source lacks: unknown
        remapped[lookup] = values
        labels["labels"] = remapped
        return None

    def check_example(self, labels, image):
        values = np.asarray(labels["labels"])
        if values.shape != (len(self.classes),):
            return f"{values.size} label values for {len(self.classes)} labels"
        bad = np.setdiff1d(values, (UNKNOWN, 0, 1))
        if bad.size:
            return f"label values {bad.tolist()} are not 1, 0 or {UNKNOWN} (unknown)"
        return None

    def encode(self, example):
        """Target: 0/1 per label [L]; weight [L]: has_<task> and the label known."""
        labels = tf.cast(example[self.key("labels")], tf.float32)
        known = tf.cast(labels >= 0, tf.float32) * tf.cast(example[self.has_key], tf.float32)
        return tf.maximum(labels, 0.0), known

    # -- model side -------------------------------------------------------------------
    def loss(self, y_true, y_pred, sample_weight):
        """Binary cross-entropy averaged over the known labels of the batch."""
        logits = tf.cast(y_pred, tf.float32)
        per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(y_true, tf.float32), logits=logits)
        return masked_mean(per_label, tf.ones_like(per_label) if sample_weight is None else sample_weight)

    def postprocess(self, raw):
        return self._predictions(tf.sigmoid(tf.cast(raw, tf.float32)))

    def _predictions(self, probabilities) -> dict:
        return {"probabilities": probabilities, "present": probabilities >= self.config.threshold}

    def export_outputs(self, raw, nms=False, integer=False):
        """Label probabilities [B, L] (in [0, 1]: their own int8 scale)."""
        return {"probabilities": tf.sigmoid(tf.cast(raw, tf.float32))}

    def postprocess_exported(self, outputs):
        return self._predictions(tf.convert_to_tensor(outputs["probabilities"], tf.float32))

    def export_parameters(self):
        return {"threshold": self.config.threshold,
                "postprocess": f"a label is present where {self.name}_probabilities >= threshold"}

    # -- evaluation and reports -------------------------------------------------------
    def evaluator(self):
        return MultiLabelEvaluator(self.classes, self.config.threshold)

    def write_figures(self, evaluator, folder):
        from mtl_tf.report.plots import plot_pr_curves

        name = f"{self.name}_pr_curves.png"
        plot_pr_curves(evaluator.curves(), evaluator.result().get("per_label_ap", {}), Path(folder) / name,
                       title=f"{self.name}: precision-recall per label")
        return [name]

    def update_evaluator(self, evaluator, batch, predictions):
        labels = batch[self.key("labels")]
        for i in np.flatnonzero(batch[self.has_key]):
            evaluator.add_image(labels[i], predictions["probabilities"][i])

    def labels_from_prediction(self, prediction, index, min_score: float = 0.3):
        return {"labels": np.asarray(prediction["present"][index], np.int8),
                "scores": np.asarray(prediction["probabilities"][index])}

    def prediction_records(self, labels, source, size):
        """One record per image: the labels present and every label's probability."""
        present = [self.classes[c] for c in np.flatnonzero(np.asarray(labels["labels"]) == 1)]
        scores = {n: round(float(s), 5) for n, s in zip(self.classes, labels["scores"])}
        return [{"image": source, "labels": present, "scores": scores}]

    def render(self, image, labels):
        present = [self.classes[c] for c in np.flatnonzero(np.asarray(labels["labels"]) == 1)]
        return label_caption(image, f"{self.name}: {', '.join(present) or '-'}", row=1)

    # -- statistics -------------------------------------------------------------------
    def stats_counter(self):
        return np.zeros((len(self.classes), 3), np.int64)  # per label: positives, negatives, unknown

    def count_labels(self, counter, labels):
        values = np.asarray(labels["labels"])
        counter[:, 0] += values == 1
        counter[:, 1] += values == 0
        counter[:, 2] += values == UNKNOWN

    def stats_result(self, counter):
        return {kind: dict(zip(self.classes, counter[:, k].tolist()))
                for k, kind in enumerate(("positives", "negatives", "unknown"))}

    def stats_lines(self, stats):
        return [f"{label}: {stats['positives'][label]} positive, {stats['negatives'][label]} negative, "
                f"{stats['unknown'][label]} unknown" for label in self.classes]
