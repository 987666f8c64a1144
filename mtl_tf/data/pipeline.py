"""tf.data pipelines: sources -> examples -> (augmented) -> encoded, batched model inputs.

`examples_dataset` yields the example contract for the recipe's tasks (class ids remapped from
each source's class list to the task's); `load_sources` gives each source's examples, from the
TFRecord cache when it is complete (data/cache.py). `training_batches` shuffles, mixes
(data/mixing.py), augments (data/augment.py) and encodes examples into
`(image, targets, sample_weights)` for Keras `fit`, with parallel map calls and prefetching;
`evaluation_batches` keeps the raw labels, padded per batch (box class -1 marks padding), for
the evaluators.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from mtl_tf.data import augment as augment_lib
from mtl_tf.data import cache as cache_lib
from mtl_tf.data import mixing as mixing_lib
from mtl_tf.data import skipping
from mtl_tf.data.binding import bind_targets
from mtl_tf.data.example import DataError
from mtl_tf.data.labels import resize_image, resize_map
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

    Each source's label kinds are bound to tasks (data/binding.py); an example's labels of a
    bound kind become that task's labels, namespaced under the task's name, with class ids
    remapped to the task's list; a task whose kind the example lacks is flagged has_<task>=False
    with placeholder labels. The image is resized to the recipe's size (bilinear) and every
    label map as its task's spec says.

    Sources configured with `skip_invalid: true` are checked once here and replaced by their
    valid subset (data/skipping.py); `skipped` maps each such source to its problems, and a
    summary of them is printed.
    """

    def __init__(self, source_configs: list, tasks: dict, image_size):
        self.tasks = tasks
        self.image_size = tuple(image_size)
        self.sources = [build_source(cfg, self.image_size) for cfg in source_configs]
        self._bindings = [self._binding(cfg) for cfg in source_configs]
        self.skipped = {}
        for s, cfg in enumerate(source_configs):
            if getattr(cfg, "skip_invalid", False):
                name = f"{self.sources[s].describe()} (source {s})"
                self.sources[s], self.skipped[name] = skipping.validated(self.sources[s], functools.partial(self.read, s))
                print(skipping.summary(name, len(self.sources[s]), self.skipped[name]))

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def _binding(self, source_config) -> dict:
        """{task: (label kind, lookup from the source's class ids to the task's or None)}."""
        binding = {}
        for kind, name in bind_targets(source_config, self.tasks).items():
            task, names = self.tasks[name], source_config.class_names(kind)
            lookup = np.array([task.classes.index(n) for n in names], np.int64) if task.classes else None
            binding[name] = (kind, lookup)
        return binding

    def read(self, source_index: int, index: int) -> dict:
        source = self.sources[source_index]
        raw = source[index]
        image = raw["image"]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(
                f"{source.describe()} example {index}: image must be uint8 [H, W, 3], "
                f"got {getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
            )
        example = {"image": resize_image(image, self.image_size)}
        for name, task in self.tasks.items():
            kind, lookup = self._bindings[source_index].get(name, (None, None))
            has = kind is not None and kind in raw
            labels = task.from_source(raw) if has else task.placeholder()
            if has:
                problem = task.remap_classes(labels, lookup) if lookup is not None else None
                labels = self._fit(task, labels)
                problem = problem or task.check_example(labels, example["image"])
                if problem:
                    raise DataError(f"{source.describe()} example {index}: {name} labels: {problem}")
            example.update(task.namespaced(labels))
            example[task.has_key] = has
        return example

    def _fit(self, task, labels: dict) -> dict:
        """Label maps resized to the recipe's size as the task's spec says."""
        spec = task.label_spec()
        return {k: resize_map(v, self.image_size, spec[k].resize) if spec[k].geometry == "map" and np.ndim(v) >= 2 else v
                for k, v in labels.items()}

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


def encode(example: dict, tasks: dict):
    """An example -> (image, {task: target}, {task: sample weight})."""
    targets, weights = {}, {}
    for name, task in tasks.items():
        targets[name], weights[name] = task.encode(example)
    return example["image"], targets, weights


@dataclass
class SourceExamples:
    """One source's examples for a split: `records` turned into example dicts by `decode` (None:
    already examples), `count` of them. `kind` says where they come from (memory or a cache)."""

    records: tf.data.Dataset
    count: int
    kind: str = "memory"
    decode: Callable | None = None

    def examples(self) -> tf.data.Dataset:
        if self.decode is None:
            return self.records
        return self.records.map(self.decode, num_parallel_calls=AUTOTUNE)


def load_sources(configs: list, tasks: dict, image_size, cache=None, split: str = "train") -> list[SourceExamples]:
    """One `SourceExamples` per source config: from its TFRecord cache under `cache` when that
    is complete (see data/cache.py), else read from the source (kept in memory after one pass)."""
    sources = []
    for config in configs:
        folder = cache_lib.find_complete(cache, split, config, tasks, image_size) if cache else None
        if folder is None:
            reader = ExampleReader([config], tasks, image_size)
            sources.append(SourceExamples(examples_dataset(reader), len(reader)))
            continue
        records, complete = cache_lib.read_records(folder, ordered=split != "train")
        decode = cache_lib.parse_fn(example_signature(tasks, image_size), tasks, complete["image_format"])
        sources.append(SourceExamples(records, complete["count"], f"cache:{complete['image_format']}", decode))
    return sources


def concatenated_examples(sources: list[SourceExamples]) -> tf.data.Dataset:
    """The examples of all `sources`, one after the other."""
    examples = [s.examples() for s in sources]
    return functools.reduce(lambda a, b: a.concatenate(b), examples)


def training_batches(
    examples: tf.data.Dataset | list[SourceExamples],
    tasks: dict,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    augment=None,
    mixing=None,
    total_steps: int | None = None,
    deterministic: bool = True,
    dynamic: tf.Variable | None = None,
) -> tf.data.Dataset:
    """Shuffled, mixed, augmented, encoded batches, repeated forever (pair with `steps_per_epoch`).

    `examples`: one dataset, or one `SourceExamples` per train source. `augment` is the recipe's
    data.augment (default: horizontal flips), `mixing` its data.mixing (default: one shuffled
    stream of all sources); `total_steps` (epochs x steps) paces annealed mixing weights;
    `dynamic` holds the source probabilities of `weights: dynamic` (train/sampling.py).
    """
    from mtl_tf.config import AugmentConfig

    if isinstance(examples, tf.data.Dataset):
        examples = [SourceExamples(examples, int(examples.cardinality()))]
    augment = augment if augment is not None else AugmentConfig()
    if mixing is None:
        ds = _shuffled_stream(examples, shuffle_buffer, seed)
    else:
        streams = [_shuffled_stream([s], shuffle_buffer, seed + i) for i, s in enumerate(examples)]
        ds = mixing_lib.mix(streams, mixing, [s.count for s in examples], batch_size, seed, total_steps, dynamic)
    out_size = tuple(ds.element_spec["image"].shape[:2])
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)
    layout = augment_lib.label_layout(tasks)
    ds = ds.map(lambda ex, s: augment_lib.augment(ex, s, augment, out_size, layout), num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda ex: encode(ex, tasks), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)
    options = _distributed_options()
    options.deterministic = deterministic
    return ds.with_options(options)


def _distributed_options() -> tf.data.Options:
    """Options that split batches between workers by element (each worker takes its share of
    every global batch, in order) rather than by file, which would give workers different data
    than one process sees; no effect on one worker."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def recipe_training_batches(recipe, tasks: dict, sources: list[SourceExamples], steps_per_epoch: int,
                            dynamic: tf.Variable | None = None):
    """`training_batches` as the recipe's data and train sections configure them."""
    data = recipe.data
    return training_batches(
        sources, tasks, data.batch_size, data.shuffle_buffer, recipe.train.seed,
        augment=data.augment, mixing=data.mixing, total_steps=steps_per_epoch * recipe.train.epochs,
        deterministic=data.deterministic, dynamic=dynamic,
    )


def _shuffled_stream(sources: list[SourceExamples], shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled examples of `sources`; records of one kind are shuffled before decoding
    (small serialized records in the buffer, decoding in parallel after it)."""
    if len({s.kind for s in sources}) == 1:
        records = functools.reduce(lambda a, b: a.concatenate(b), [s.records for s in sources])
        ds = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        decode = sources[0].decode
        return ds if decode is None else ds.map(decode, num_parallel_calls=AUTOTUNE)
    ds = concatenated_examples(sources)
    return ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()


def validation_batches(examples: tf.data.Dataset, tasks: dict, batch_size: int) -> tf.data.Dataset:
    """Encoded batches in a fixed order, one pass, for validation losses."""
    ds = examples.map(lambda ex: encode(ex, tasks), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE).with_options(_distributed_options())


def evaluation_batches(examples: tf.data.Dataset, tasks: dict, batch_size: int) -> tf.data.Dataset:
    """Raw examples in a fixed order, variable-length labels padded with their spec's `pad`
    (box classes: -1)."""
    pads = {task.key(k): spec.pad for task in tasks.values() for k, spec in task.label_spec().items()}
    padding = {k: tf.cast(tf.constant(pads.get(k, 0)), spec.dtype) for k, spec in examples.element_spec.items()}
    return examples.padded_batch(batch_size, padding_values=padding).prefetch(AUTOTUNE)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.floor(num_examples / batch_size))
