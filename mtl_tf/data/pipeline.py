"""tf.data pipelines: sources -> examples -> (augmented) -> encoded, batched model inputs.

`examples_dataset` yields the example contract for the recipe's tasks (class ids remapped from
each source's class list to the task's). `training_batches` turns examples into
`(image, targets, sample_weights)` for Keras `fit`; `evaluation_batches` keeps the raw labels,
padded per batch (box class -1 marks padding), for the evaluators.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import tensorflow as tf

from mtl_tf.data import skipping
from mtl_tf.data.example import DataError  # noqa: F401  (re-exported: the CLI catches it here)
from mtl_tf.data.sources import build_source

AUTOTUNE = tf.data.AUTOTUNE


def example_signature(tasks: dict, image_size) -> dict:
    """tf.TensorSpec of every key of an example for these tasks."""
    spec = {"image": tf.TensorSpec([*image_size, 3], tf.uint8)}
    for task in tasks.values():
        spec.update(task.example_spec())
        spec[task.has_key] = tf.TensorSpec([], tf.bool)
    return spec


class ExampleReader:
    """Reads examples from the recipe's sources in order, fitted to the recipe's tasks.

    Sources configured with `skip_invalid: true` are checked once here and replaced by their
    valid subset (data/skipping.py); `skipped` maps each such source to its problems, and a
    summary of them is printed.
    """

    def __init__(self, source_configs: list, tasks: dict, image_size):
        self.tasks = tasks
        self.image_size = tuple(image_size)
        self.sources = [build_source(cfg, self.image_size) for cfg in source_configs]
        self._maps = [self._class_maps(cfg) for cfg in source_configs]
        self.skipped = {}
        for s, cfg in enumerate(source_configs):
            if getattr(cfg, "skip_invalid", False):
                name = f"{self.sources[s].describe()} (source {s})"
                self.sources[s], self.skipped[name] = skipping.validated(self.sources[s], partial(self.read, s))
                print(skipping.summary(name, len(self.sources[s]), self.skipped[name]))

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def _class_maps(self, source_config) -> dict:
        """Per task, a lookup from the source's class ids to the task's class ids."""
        maps = {}
        for name, task in self.tasks.items():
            names = source_config.class_names(name)
            maps[name] = np.array([task.classes.index(n) for n in names], np.int64)
        return maps

    def read(self, source_index: int, index: int) -> dict:
        source = self.sources[source_index]
        raw = source[index]
        example = {"image": raw["image"]}
        for name, task in self.tasks.items():
            has = bool(raw.get(task.has_key, False))
            labels = {k: raw[k] for k in task.example_spec() if k in raw} if has else task.placeholder()
            example.update(labels)
            example[task.has_key] = has
            if has:
                problem = task.remap_classes(example, self._maps[source_index][name])
                problem = problem or task.check_example(example)
                if problem:
                    raise DataError(f"{source.describe()} example {index}: {task.name} labels: {problem}")
        if example["image"].shape != (*self.image_size, 3) or example["image"].dtype != np.uint8:
            raise DataError(
                f"{source.describe()} example {index}: image must be uint8 {(*self.image_size, 3)}, "
                f"got {example['image'].dtype} {example['image'].shape}"
            )
        return example

    def __iter__(self):
        for s, source in enumerate(self.sources):
            for i in range(len(source)):
                yield self.read(s, i)


# DataErrors raised inside tf.data generators, newest last: TensorFlow re-raises them as an
# opaque InvalidArgumentError, so `data_error_behind` finds the original for the user.
_FAILURES: list[DataError] = []


def _reading(reader):
    try:
        yield from reader
    except DataError as err:
        _FAILURES.append(err)
        raise


def data_error_behind(err: BaseException) -> DataError | None:
    """The DataError that made TensorFlow raise `err` while reading examples, if any."""
    if isinstance(err, tf.errors.OpError) and _FAILURES:
        return _FAILURES.pop()
    return None


def examples_dataset(reader: ExampleReader) -> tf.data.Dataset:
    """The reader's examples as a tf.data.Dataset (cached in memory after the first pass)."""
    signature = example_signature(reader.tasks, reader.image_size)
    ds = tf.data.Dataset.from_generator(lambda: _reading(reader), output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(len(reader))).cache()


def horizontal_flip(example: dict) -> dict:
    """Mirror image, mask and boxes together."""
    out = dict(example)
    out["image"] = tf.reverse(example["image"], axis=[1])
    if "mask" in example:
        out["mask"] = tf.reverse(example["mask"], axis=[1])
    if "boxes" in example:
        b = example["boxes"]
        out["boxes"] = tf.stack([b[:, 0], 1.0 - b[:, 3], b[:, 2], 1.0 - b[:, 1]], axis=1)
    return out


def augment(example: dict, seed: tf.Tensor, horizontal: bool) -> dict:
    if not horizontal:
        return example
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: horizontal_flip(example), lambda: dict(example))


def encode(example: dict, tasks: dict):
    """An example -> (image, {task: target}, {task: sample weight})."""
    targets, weights = {}, {}
    for name, task in tasks.items():
        targets[name], weights[name] = task.encode(example)
    return example["image"], targets, weights


def training_batches(
    examples: tf.data.Dataset,
    tasks: dict,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    horizontal_flip: bool = True,
) -> tf.data.Dataset:
    """Shuffled, augmented, encoded batches, repeated forever (pair with `steps_per_epoch`)."""
    ds = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)
    ds = ds.map(lambda ex, s: augment(ex, s, horizontal_flip), num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda ex: encode(ex, tasks), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def validation_batches(examples: tf.data.Dataset, tasks: dict, batch_size: int) -> tf.data.Dataset:
    """Encoded batches in a fixed order, one pass, for validation losses."""
    ds = examples.map(lambda ex: encode(ex, tasks), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def evaluation_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Raw examples in a fixed order, variable-length labels padded (box class -1)."""
    padding = {k: _pad_value(k, spec) for k, spec in examples.element_spec.items()}
    return examples.padded_batch(batch_size, padding_values=padding).prefetch(AUTOTUNE)


def _pad_value(key: str, spec: tf.TensorSpec):
    if key == "box_classes":
        return tf.constant(-1, spec.dtype)
    return tf.constant(0, spec.dtype) if spec.dtype != tf.bool else tf.constant(False)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.floor(num_examples / batch_size))
