"""Image classification metrics: top-k accuracy (multi-class) and per-label AP (multi-label,
with labels that may be unknown per image)."""

from __future__ import annotations

import numpy as np


def ranking_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Non-interpolated AP of one label: mean precision at the rank of every positive
    (scikit-learn's `average_precision_score`, ties broken by order)."""
    truth = np.asarray(truth, bool)
    if not truth.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = truth[order]
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hits.mean())


class ClassificationEvaluator:
    """Multi-class: `add_image(label, scores)`. Multi-label: `add_image(labels, scores, known)`
    with 0/1 `labels` [C] and a `known` mask [C]: unknown labels are left out of that label's AP."""

    def __init__(self, class_names: list[str], multi_label: bool = False):
        self.class_names = list(class_names)
        self.multi_label = multi_label
        self.reset()

    def reset(self) -> None:
        self._truth, self._scores, self._known = [], [], []

    def add_image(self, truth, scores, known=None) -> None:
        scores = np.asarray(scores, np.float64).reshape(-1)
        if scores.size != len(self.class_names):
            raise ValueError(f"{scores.size} scores for {len(self.class_names)} classes")
        self._scores.append(scores)
        if self.multi_label:
            truth = np.asarray(truth).reshape(-1).astype(bool)
            self._truth.append(truth)
            self._known.append(np.ones_like(truth) if known is None else np.asarray(known, bool).reshape(-1))
        else:
            self._truth.append(int(truth))

    def result(self) -> dict:
        if not self._scores:
            return {}
        scores = np.stack(self._scores)
        if self.multi_label:
            return self._multi_label(np.stack(self._truth), scores, np.stack(self._known))
        truth = np.asarray(self._truth)
        top = np.argsort(-scores, axis=1)
        per_class = {
            n: float((top[truth == c, 0] == c).mean()) for c, n in enumerate(self.class_names) if (truth == c).any()
        }
        k = min(5, scores.shape[1])
        return {
            "accuracy": float((top[:, 0] == truth).mean()),
            "top5_accuracy": float((top[:, :k] == truth[:, None]).any(1).mean()),
            "mean_class_accuracy": float(np.mean(list(per_class.values()))),
            "per_class_accuracy": per_class,
        }

    def _multi_label(self, truth, scores, known) -> dict:
        per_label = {}
        for c, name in enumerate(self.class_names):
            ap = ranking_average_precision(truth[known[:, c], c], scores[known[:, c], c])
            if not np.isnan(ap):
                per_label[name] = ap
        correct = ((scores >= 0.5) == truth) & known
        return {
            "map": float(np.mean(list(per_label.values()))) if per_label else 0.0,
            "label_accuracy": float(correct.sum() / max(known.sum(), 1)),
            "per_label_ap": per_label,
        }
