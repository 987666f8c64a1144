"""The task contract: everything the model builder, trainer and evaluator know about a task.

A task is a named instance of a task type (`tasks: {vehicles: {type: detection, ...}}`). The
type owns its labels (`label_spec`: keys, dtypes, how each follows geometry; `source_kind`: the
label kind it takes from sources), its head (built on named backbone taps), its target encoder,
its masked and normalized loss, its post-processing, its metrics (and whether higher is better),
its evaluator and how its labels and predictions are drawn and summarized.

Example keys are namespaced per task: the task `vehicles` keeps its boxes in `vehicles/boxes`
(`key`), and `own(example)` gives the task's labels under their plain names. Methods that take
`labels` get that plain view; methods that take an example or a batch read their own keys.
Adding a task type is one new module implementing this class plus an entry in `tasks.TASKS`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow as tf

from mtl_tf.config import TaskConfig
from mtl_tf.data.example import has_key
from mtl_tf.data.labels import LabelKey, resize_map


class Task:
    """Base class of task types. Subclasses set `type`, `Config`, `source_kind`, `label_spec`,
    `primary_metric` (and `higher_is_better`) and the methods."""

    type: ClassVar[str]
    Config: ClassVar[type[TaskConfig]]
    # The label kind this type takes from sources (see data/binding.py).
    source_kind: ClassVar[str]
    primary_metric: ClassVar[str]
    # Metrics where lower is better (errors, losses); every other metric: higher is better.
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    # Backbone taps the head reads, e.g. ("C4", "C5").
    taps: ClassVar[tuple[str, ...]]
    # File `mtl-tf predict` writes this task's per-image records into, prefixed with the task's
    # name (None: no such file).
    records_file: ClassVar[str | None] = None
    # Drawing order on overlays: lower first (dense maps under boxes and labels).
    draw_order: ClassVar[int] = 0

    def __init__(self, config: TaskConfig, image_size: tuple[int, int], name: str | None = None):
        self.config = config
        self.image_size = tuple(image_size)
        self.name = name or self.type

    @property
    def classes(self) -> list[str]:
        """The task's class names (empty for tasks without classes)."""
        return list(getattr(self.config, "classes", None) or [])

    @property
    def has_key(self) -> str:
        return has_key(self.name)

    def higher_is_better(self, metric: str | None = None) -> bool:
        """Whether a larger value of `metric` (default: the primary metric) is better."""
        return (metric or self.primary_metric) not in self.lower_is_better

    # -- labels and example keys ------------------------------------------------------
    @classmethod
    def label_spec(cls) -> dict[str, LabelKey]:
        """This type's label keys (plain names) and how each is stored and moves."""
        raise NotImplementedError

    def key(self, label: str) -> str:
        """The example key of this task's label `label`: `<task>/<label>`."""
        return f"{self.name}/{label}"

    def own(self, example: dict) -> dict:
        """This task's labels of `example` (or of a batch) under their plain names."""
        return {k: example[self.key(k)] for k in self.label_spec() if self.key(k) in example}

    def namespaced(self, labels: dict) -> dict:
        """Plain-named labels as example keys."""
        return {self.key(k): v for k, v in labels.items()}

    def example_spec(self) -> dict[str, tf.TensorSpec]:
        """Specs of the example keys holding this task's labels (besides has_<task>)."""
        return {self.key(k): tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype)) for k, spec in self.label_spec().items()}

    def placeholder(self) -> dict[str, np.ndarray]:
        """Plain-named label arrays for an example that lacks this task's labels (flagged
        has_<task>=False), only so that tensors line up."""
        return {k: spec.placeholder(self.image_size) for k, spec in self.label_spec().items()}

    def from_source(self, raw: dict) -> dict:
        """This task's plain-named labels from a source's example (its `source_kind` present),
        keys the source does not give filled with their placeholder."""
        spec = self.label_spec()
        return {k: raw[k] if k in raw else spec[k].placeholder(self.image_size) for k in spec}

    def remap_classes(self, labels: dict, lookup: np.ndarray) -> str | None:
        """Rewrite the labels' class ids from the source's list to this task's, in place,
        through `lookup` (source id -> task id); returns a problem description or None."""
        return None

    def check_example(self, labels: dict, image: np.ndarray) -> str | None:
        """A description of what is wrong with this task's labels of one example, or None."""
        return None

    def encode(self, example: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """(target, sample_weight) of one example, in graph mode inside tf.data."""
        raise NotImplementedError

    # -- statistics (`mtl-tf data inspect`) -------------------------------------------
    def stats_counter(self):
        """A fresh accumulator of this task's label statistics (None: the type has none)."""
        return None

    def count_labels(self, counter, labels: dict) -> None:
        """Add one labelled example's plain-named labels to `counter`."""

    def stats_result(self, counter) -> dict:
        """{statistic: JSON value} of `counter`."""
        return {}

    def stats_lines(self, stats: dict) -> list[str]:
        """Human-readable lines of `stats_result`'s output."""
        return []

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
    def serving_head(self, model):
        """What of `model`'s graph (symbolic tensors) `export_outputs` starts from in an artifact:
        the task's raw output, unless the head joins tensors of different kinds into it."""
        return model.output[self.name]

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
        """Write this task's evaluation figures into `folder`, each file name prefixed with the
        task's name (`<task>_pr_curves.png`); returns the file names."""
        return []

    def render(self, image: np.ndarray, labels: dict) -> np.ndarray:
        """`image` (uint8 HxWx3, any size) with one example's plain-named labels or predictions
        (normalized boxes, maps of the image's size) drawn on it."""
        raise NotImplementedError

    def labels_from_prediction(self, prediction: dict, index: int, min_score: float = 0.3) -> dict:
        """One image's prediction as plain-named labels, for drawing; tasks that score
        instances keep those scoring at least `min_score`."""
        raise NotImplementedError

    def labels_to_size(self, labels: dict, size: tuple[int, int]) -> dict:
        """Plain-named labels of one image mapped onto the image's original (height, width):
        maps resized as their spec says; normalized labels (boxes, class ids) unchanged."""
        spec = self.label_spec()
        maps = {k for k in labels if k in spec and spec[k].geometry == "map"}
        if not maps:
            return labels
        return {k: resize_map(v, size, spec[k].resize) if k in maps else v for k, v in labels.items()}

    def prediction_records(self, labels: dict, source: str, size: tuple[int, int]) -> list[dict]:
        """JSON records of one image's predictions for `records_file` (pixel units of `size`)."""
        return []

    def prediction_maps(self, labels: dict) -> dict[str, np.ndarray]:
        """Maps `predict` saves as PNG files per image, by name (e.g. {"mask": class ids})."""
        return {}
