"""Dynamic task sampling (`data.mixing.weights: dynamic`): after every epoch, sample more the
sources whose tasks lag furthest behind.

Each task's validation metric (`train.best.metrics`, default its primary) is divided by its
reference (`train.best.references`) or, without one, by its own best value so far (in the
metric's direction, as `relative_score`); its shortfall is 1 minus that ratio (0 when at or above
it). A source's need is the largest shortfall of the tasks it labels; its probability is
proportional to exp(need / temperature), then kept within [min_share, max_share]. This is the
thesis' proposal: sample more the task that is lowest relative to its expected accuracy.

The probabilities live in a table variable, one row per epoch, that the mixing stream reads
(data/mixing.py). The shares decided at the end of epoch e fill the rows from epoch e + 2 on: the
pipeline draws batches ahead of training (its prefetch), so a row written for the very next epoch
could be read before or after its update depending on timing. One epoch of lag makes every run,
killed and resumed or not, see the same batches; the table and each task's best so far are part
of the training snapshot (`state`, `set_state`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mtl_tf.config import DynamicSamplingConfig
from mtl_tf.data.binding import bind_targets
from mtl_tf.train.callbacks import relative_score


def bounded_shares(weights, low: float, high: float) -> np.ndarray:
    """Shares clip(c * weights, low, high) summing to 1 (c found by bisection; needs
    len * low <= 1 <= len * high): proportional to `weights` where no bound applies."""
    w = np.asarray(weights, np.float64)
    lo, hi = 0.0, high / max(w[w > 0].min(initial=np.inf), 1e-300) + 1.0
    for _ in range(200):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if np.clip(c * w, low, high).sum() < 1 else (lo, c)
    shares = np.clip(hi * w, low, high)
    return shares / shares.sum()


class DynamicSampling(keras.callbacks.Callback):
    """Updates `probabilities` (one per train source) from the epoch's validation metrics; list it
    after TaskEvaluation. Logs each source's share as `sampling_share_<i>`."""

    def __init__(self, source_tasks: list[list[str]], tasks: dict, config: DynamicSamplingConfig,
                 metrics: dict | None = None, references: dict | None = None, epochs: int = 1):
        super().__init__()
        self.source_tasks, self.tasks, self.config = source_tasks, tasks, config
        self.metrics, self.references = metrics or {}, references or {}
        self.best: dict[str, float] = {}
        n = len(source_tasks)
        self.probabilities = tf.Variable(np.full((epochs, n), 1.0 / n), trainable=False, dtype=tf.float64,
                                         name="sampling")  # row e: the probabilities of epoch e's batches

    def state(self) -> dict:
        """What a resumed run needs: the table and each task's best value so far."""
        return {"table": self.probabilities.numpy().tolist(), "best": dict(self.best)}

    def set_state(self, state: dict) -> None:
        self.probabilities.assign(np.asarray(state["table"], np.float64))
        self.best = dict(state["best"])

    @classmethod
    def for_recipe(cls, recipe, tasks: dict) -> DynamicSampling | None:
        """The callback of the recipe's mixing, or None unless its weights are dynamic."""
        mixing = recipe.data.mixing
        if mixing is None or mixing.weights != "dynamic":
            return None
        source_tasks = [list(bind_targets(source, tasks).values()) for source in recipe.data.train]
        return cls(source_tasks, tasks, mixing.dynamic or DynamicSamplingConfig(),
                   recipe.train.best.metrics, recipe.train.best.references, recipe.train.epochs)

    def shortfalls(self, logs: dict) -> dict[str, float]:
        """{task: 1 - metric / (reference or best so far), at least 0} for the tasks in `logs`."""
        out = {}
        for name, task in self.tasks.items():
            metric = self.metrics.get(name, task.primary_metric)
            value = logs.get(f"val_{name}_{metric}")
            if value is None:
                continue
            higher = task.higher_is_better(metric)
            best = self.best.get(name, value)
            self.best[name] = max(best, value) if higher else min(best, value)
            reference = self.references.get(name, self.best[name])
            if reference:
                out[name] = max(0.0, 1.0 - relative_score(value, reference, higher))
        return out

    def shares(self, shortfalls: dict[str, float]) -> np.ndarray:
        need = np.array([max([shortfalls.get(t, 0.0) for t in tasks], default=0.0) for tasks in self.source_tasks])
        weights = np.exp((need - need.max()) / self.config.temperature)
        return bounded_shares(weights, self.config.min_share, self.config.max_share)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        shares = self.shares(self.shortfalls(logs))
        table = self.probabilities.numpy()
        table[epoch + 2 :] = shares
        self.probabilities.assign(table)
        logs.update({f"sampling_share_{i}": float(s) for i, s in enumerate(shares)})
