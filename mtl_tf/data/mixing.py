"""Mixing several training sources into one example stream (the recipe's `data.mixing`).

Every mode builds a stream of source indices, one per example, and hands it to
`tf.data.Dataset.choose_from_datasets` over the sources' endless, shuffled example streams:

- `interleave`: each batch holds exactly `per_batch[i]` examples of source i, in that order (the
  reference aerial model mixed a boxes-only and a masks-only source in every mini-batch).
- `sample`: each example comes from source i with probability w_i.
- `per_batch_task`: each batch is drawn whole from one source, picked with probability w_i.

Weights: `uniform`, `proportional` (to the sources' sizes), a fixed list, `annealed`: w_i
proportional to n_i ** alpha with alpha going linearly from 1 (proportional) to 0 (uniform)
over `anneal_steps` batches (default: the whole training), the annealed sampling of Stickland &
Murray (2019), `{from: w0, to: w1}`: linearly from one setting to another over anneal_steps, or
`dynamic`: probabilities held in a table variable with one row per epoch, which training fills
from the tasks' validation metrics (train/sampling.py). Draws are stateless, so a seed fixes the
whole sequence (for dynamic weights, given the same table).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from mtl_tf.config import AnnealedWeights


def per_batch_counts(mixing, num_sources: int, batch_size: int) -> list[int]:
    """Examples per source in every interleaved batch: the recipe's, or an even split."""
    if mixing.per_batch is not None:
        return list(mixing.per_batch)
    base, extra = divmod(batch_size, num_sources)
    return [base + (i < extra) for i in range(num_sources)]


def fixed_weights(weights, sizes) -> np.ndarray:
    """Normalized source probabilities for `uniform`, `proportional` or a list of weights (the
    first ones of annealed, {from, to} and dynamic weights)."""
    sizes = np.asarray(sizes, np.float64)
    if isinstance(weights, AnnealedWeights):
        return fixed_weights(weights.start, sizes)
    if weights in ("uniform", "dynamic"):
        w = np.ones_like(sizes)
    elif weights in (None, "proportional", "annealed"):  # annealing starts proportional
        w = sizes
    else:
        w = np.asarray(weights, np.float64)
    return w / w.sum()


def annealed_weights(step: tf.Tensor, sizes, anneal_steps: int) -> tf.Tensor:
    """w_i proportional to n_i ** alpha, alpha = 1 - step / anneal_steps (clipped to [0, 1])."""
    alpha = 1.0 - tf.minimum(tf.cast(step, tf.float64) / float(anneal_steps), 1.0)
    w = tf.pow(tf.constant(sizes, tf.float64), alpha)
    return w / tf.reduce_sum(w)


def interpolated_weights(step: tf.Tensor, start: np.ndarray, end: np.ndarray, anneal_steps: int) -> tf.Tensor:
    """(1 - a) * start + a * end with a = step / anneal_steps (clipped to [0, 1])."""
    a = tf.minimum(tf.cast(step, tf.float64) / float(anneal_steps), 1.0)
    return (1.0 - a) * tf.constant(start, tf.float64) + a * tf.constant(end, tf.float64)


def weight_schedule(mixing, sizes, anneal_steps: int, dynamic: tf.Variable | None = None,
                    total_steps: int | None = None) -> Callable:
    """step (batches) -> source probabilities (float64 [n]) for `mixing.weights`; `dynamic` is
    the table variable (float64 [epochs, n]) whose row e holds the probabilities of epoch e's
    batches for weights: dynamic, epochs of total_steps / rows batches (without it, e.g. in `data
    bench`, they stay uniform)."""
    weights = mixing.weights
    if weights == "annealed":
        return lambda step: annealed_weights(step, sizes, anneal_steps)
    if isinstance(weights, AnnealedWeights):
        start, end = fixed_weights(weights.start, sizes), fixed_weights(weights.end, sizes)
        return lambda step: interpolated_weights(step, start, end, anneal_steps)
    if weights == "dynamic" and dynamic is not None:
        rows = int(dynamic.shape[0])
        per_row = max((total_steps or rows) // rows, 1)
        return lambda step: tf.cast(tf.gather(dynamic, tf.minimum(step // per_row, rows - 1)), tf.float64)
    fixed = tf.constant(fixed_weights(weights, sizes))
    return lambda step: fixed


def source_choices(mixing, sizes, batch_size: int, seed: int, total_steps: int | None,
                   dynamic: tf.Variable | None = None) -> tf.data.Dataset:
    """An endless stream of source indices (int64), one per example, for `mixing`."""
    n = len(sizes)
    if mixing.mode == "interleave":
        pattern = np.repeat(np.arange(n), per_batch_counts(mixing, n, batch_size))
        return tf.data.Dataset.from_tensor_slices(pattern.astype(np.int64)).repeat()

    schedule = weight_schedule(mixing, sizes, mixing.anneal_steps or total_steps or 1, dynamic, total_steps)
    # `step` counts draws: examples in mode sample, batches in per_batch_task.
    per_batch = 1 if mixing.mode == "per_batch_task" else batch_size

    def draw(step, draw_seed):
        logits = tf.math.log(tf.maximum(schedule(step // per_batch), 1e-30))
        return tf.random.stateless_categorical(logits[None], 1, draw_seed, dtype=tf.int64)[0, 0]

    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    choices = tf.data.Dataset.zip(tf.data.Dataset.counter(), seeds).map(draw)
    if mixing.mode == "per_batch_task":
        choices = choices.map(lambda c: tf.fill([batch_size], c)).unbatch()
    return choices


def mix(streams: list[tf.data.Dataset], mixing, sizes, batch_size: int, seed: int,
        total_steps: int | None = None, dynamic: tf.Variable | None = None) -> tf.data.Dataset:
    """One example stream drawn from the (endless) per-source `streams` as `mixing` says."""
    choices = source_choices(mixing, sizes, batch_size, seed, total_steps, dynamic)
    return tf.data.Dataset.choose_from_datasets(streams, choices)


def describe(mixing, sizes, batch_size: int) -> str:
    """One line saying how batches are made, for the training log."""
    if mixing is None:
        return "one shuffled stream of all train sources"
    if mixing.mode == "interleave":
        return f"interleave {per_batch_counts(mixing, len(sizes), batch_size)} examples per batch"
    weights = mixing.weights
    start = np.round(fixed_weights(weights, sizes), 3).tolist()
    if isinstance(weights, AnnealedWeights):
        return f"{mixing.mode} with weights {start} -> {np.round(fixed_weights(weights.end, sizes), 3).tolist()}"
    name = "fixed" if isinstance(weights, list) else weights or "proportional"
    end = {"annealed": " -> uniform", "dynamic": ", updated every epoch"}.get(name, "")
    return f"{mixing.mode} with {name} weights {start}{end}"
