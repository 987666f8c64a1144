"""The task contract: everything the model builder, trainer and evaluator know about a task.

A task owns its head (built on named backbone taps), its target encoder, its masked and
normalized loss, its post-processing, its evaluator and how its predictions are drawn.
Adding a task is one new module implementing this class plus an entry in `tasks.TASKS`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow as tf

from mtl_tf.config import Strict
from mtl_tf.data.example import has_key


class Task:
    """Base class of tasks. Subclasses set `name`, `Config`, `primary_metric` and the methods."""

    name: ClassVar[str]
    Config: ClassVar[type[Strict]]
    primary_metric: ClassVar[str]
    # Backbone taps the head reads, e.g. ("C4", "C5").
    taps: ClassVar[tuple[str, ...]]
    # File `mtl-tf predict` writes this task's per-image records into (None: no such file).
    records_file: ClassVar[str | None] = None

    def __init__(self, config: Strict, image_size: tuple[int, int]):
        self.config = config
        self.image_size = tuple(image_size)

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def has_key(self) -> str:
        return has_key(self.name)

    # -- data side --------------------------------------------------------------------
    def example_spec(self) -> dict[str, tf.TensorSpec]:
        """Specs of the example keys holding this task's labels (besides has_<task>)."""
        raise NotImplementedError

    def placeholder(self) -> dict[str, np.ndarray]:
        """Label arrays for an example that lacks this task's labels (flagged has_<task>=False)."""
        raise NotImplementedError

    def remap_classes(self, example: dict, lookup: np.ndarray) -> str | None:
        """Rewrite the example's class ids from its source's list to this task's, in place,
        through `lookup` (source id -> task id); returns a problem description or None."""
        raise NotImplementedError

    def check_example(self, example: dict) -> str | None:
        """A description of what is wrong with this task's labels in `example`, or None."""
        return None

    def encode(self, example: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """(target, sample_weight) of one example, in graph mode inside tf.data."""
        raise NotImplementedError

    # -- model side -------------------------------------------------------------------
    def build_head(self, features: dict) -> "keras.KerasTensor":  # noqa: F821
        """The head on backbone taps `features` (name -> tensor); returns the raw output."""
        raise NotImplementedError

    def loss(self, y_true, y_pred, sample_weight) -> tf.Tensor:
        """Scalar loss, zero for (and with zero gradient from) unlabelled samples."""
        raise NotImplementedError

    def postprocess(self, raw) -> dict[str, tf.Tensor]:
        """Decode a batch of raw head outputs into predictions (boxes, class maps, ...)."""
        raise NotImplementedError

    # -- export -----------------------------------------------------------------------
    def export_outputs(self, raw, nms: bool = False, integer: bool = False) -> dict[str, tf.Tensor]:
        """The artifact's outputs of this task, one tensor per kind (so int8 scales stay sane),
        keyed by kind; the artifact names them `<task>_<kind>`. `nms`: post-process in graph.
        `integer`: the artifact computes in int8, so leave out of the graph what loses precision
        there (the app does it in float from metadata.json)."""
        return {"raw": raw}

    def postprocess_exported(self, outputs: dict) -> dict[str, tf.Tensor]:
        """`postprocess` for the (float) outputs of an exported artifact, keyed by kind."""
        return self.postprocess(outputs["raw"])

    def export_parameters(self) -> dict:
        """What an app needs besides the outputs to use them (anchors, thresholds, ...)."""
        return {}

    # -- evaluation and reports -------------------------------------------------------
    def evaluator(self):
        """A fresh evaluator of this task's metrics; `result()` gives them as a dict."""
        raise NotImplementedError

    def update_evaluator(self, evaluator, batch: dict, predictions: dict) -> None:
        """Add a batch (numpy examples) and its post-processed predictions to `evaluator`,
        skipping the examples that lack this task's labels."""
        raise NotImplementedError

    def write_figures(self, evaluator, folder) -> list[str]:
        """Write this task's evaluation figures (PR curves, confusion matrix, ...) into
        `folder`; returns the file names."""
        return []

    def render(self, image: np.ndarray, labels: dict) -> np.ndarray:
        """`image` (uint8 HxWx3, any size) with one example's labels or predictions (same keys
        as the example, normalized boxes, a mask of the image's size) drawn on it."""
        raise NotImplementedError

    def labels_from_prediction(self, prediction: dict, index: int, min_score: float = 0.3) -> dict:
        """One image's prediction in the example's label keys, for drawing; tasks that score
        instances keep those scoring at least `min_score`."""
        raise NotImplementedError

    def labels_to_size(self, labels: dict, size: tuple[int, int]) -> dict:
        """This task's labels of one image mapped onto the image's original (height, width);
        normalized labels (boxes, class ids) are returned as they are."""
        return labels

    def prediction_records(self, labels: dict, source: str, size: tuple[int, int]) -> list[dict]:
        """JSON records of one image's predictions for `records_file` (pixel units of `size`)."""
        return []
