"""Image classification metrics: multi-class (top-k, per-class and balanced accuracy, confusion
matrix) and multi-label with labels that may be unknown per image (per-label AP, balanced
accuracy and F1 at a threshold). Each matches scikit-learn's function of the same name on the
same predictions (tests/test_classification.py cross-checks them)."""

from __future__ import annotations

import numpy as np

UNKNOWN = -1  # a multi-label entry whose value is not known


def precision_recall(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of one label at every distinct score, highest first: images scoring
    the same are counted together, so the order of ties never matters (scikit-learn's
    `precision_recall_curve`, without its final (0, 1) point)."""
    truth = np.asarray(truth, bool)
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], truth[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(hits)[last_of_each_score]
    precision = true_positives / (last_of_each_score + 1)
    return true_positives / max(truth.sum(), 1), precision


def ranking_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Non-interpolated AP of one label: the sum over distinct scores of precision times the gain
    in recall (scikit-learn's `average_precision_score`; ties counted together)."""
    if not np.asarray(truth, bool).any():
        return float("nan")
    recall, precision = precision_recall(truth, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_per_class(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of every class id among those present in `truth` (NaN for absent classes)."""
    present = np.bincount(truth, minlength=num_classes).astype(np.float64)
    hits = np.bincount(truth[truth == predicted], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, hits / present, np.nan)


def binary_balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates, over those defined (scikit-learn's
    `balanced_accuracy_score` on 0/1 labels): accuracy on a set with as many positives as
    negatives. NaN without examples."""
    rates = recall_per_class(np.asarray(truth, np.int64), np.asarray(predicted, np.int64), 2)
    return float(np.nanmean(rates)) if np.isfinite(rates).any() else float("nan")


def binary_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of the positive class (0 when there is nothing positive, as scikit-learn)."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    denominator = float(truth.sum() + predicted.sum())  # 2 TP + FP + FN
    return 2 * float((truth & predicted).sum()) / denominator if denominator else 0.0


class MultiClassEvaluator:
    """`add_image(label, scores)` per image: the true class id and the scores of every class.
    Metrics: top1, top5 (more than 5 classes), balanced_accuracy (mean recall over the classes
    present), per_class_accuracy; `matrix` is the confusion matrix (truth rows)."""

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        self._truth, self._scores = [], []

    def add_image(self, label, scores) -> None:
        scores = np.asarray(scores, np.float64).reshape(-1)
        if scores.size != len(self.class_names):
            raise ValueError(f"{scores.size} scores for {len(self.class_names)} classes")
        if not 0 <= int(label) < len(self.class_names):
            raise ValueError(f"class id {int(label)} outside 0..{len(self.class_names) - 1}")
        self._truth.append(int(label))
        self._scores.append(scores)

    @property
    def matrix(self) -> np.ndarray:
        n = len(self.class_names)
        if not self._truth:
            return np.zeros((n, n), np.int64)
        predicted = np.argmax(np.stack(self._scores), axis=1)
        return np.bincount(np.asarray(self._truth) * n + predicted, minlength=n * n).reshape(n, n)

    def result(self) -> dict:
        if not self._scores:
            return {}
        scores, truth = np.stack(self._scores), np.asarray(self._truth)
        predicted = np.argmax(scores, axis=1)
        recall = recall_per_class(truth, predicted, len(self.class_names))
        metrics = {"top1": float((predicted == truth).mean())}
        if len(self.class_names) > 5:
            top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
            metrics["top5"] = float((top5 == truth[:, None]).any(axis=1).mean())
        metrics["balanced_accuracy"] = float(np.nanmean(recall))
        metrics["per_class_accuracy"] = {n: float(r) for n, r in zip(self.class_names, recall) if np.isfinite(r)}
        return metrics


class MultiLabelEvaluator:
    """`add_image(labels, scores)` per image: labels [L] with 1 (present), 0 (absent) or -1
    (unknown: left out of that label's metrics) and one score (probability) per label.

    Metrics: `map` (mean over labels with a known positive of their AP), `balanced_accuracy`
    (mean over labels of their accuracy on equal numbers of positives and negatives, i.e. the
    mean of the true-positive and true-negative rates, at `threshold`), `f1` (mean F1 at
    `threshold` over the labels with a known positive), and each per label."""

    def __init__(self, class_names: list[str], threshold: float = 0.5):
        self.class_names = list(class_names)
        self.threshold = threshold
        self._truth, self._scores = [], []

    def add_image(self, labels, scores) -> None:
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if labels.size != len(self.class_names) or scores.size != labels.size:
            raise ValueError(f"{labels.size} labels and {scores.size} scores for {len(self.class_names)} labels")
        if not np.isin(labels, (UNKNOWN, 0, 1)).all():
            raise ValueError(f"label values must be 1, 0 or {UNKNOWN}. Received: {labels.tolist()}")
        self._truth.append(labels)
        self._scores.append(scores)

    def per_label(self) -> dict[str, dict[str, float]]:
        """{label: {ap, balanced_accuracy, f1}} over the images where the label is known
        (labels never known are left out; ap and f1 only where a positive is known)."""
        if not self._truth:
            return {}
        truth, scores = np.stack(self._truth), np.stack(self._scores)
        out = {}
        for c, name in enumerate(self.class_names):
            known = truth[:, c] != UNKNOWN
            if not known.any():
                continue
            y, s = truth[known, c], scores[known, c]
            predicted = s >= self.threshold
            out[name] = {"balanced_accuracy": binary_balanced_accuracy(y, predicted)}
            if y.any():
                out[name].update(ap=ranking_average_precision(y, s), f1=binary_f1(y, predicted))
        return out

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{label: (recall, precision)} over the images where the label is known and has a positive."""
        if not self._truth:
            return {}
        truth, scores = np.stack(self._truth), np.stack(self._scores)
        known = truth != UNKNOWN
        return {name: precision_recall(truth[known[:, c], c] == 1, scores[known[:, c], c])
                for c, name in enumerate(self.class_names) if (truth[known[:, c], c] == 1).any()}

    def result(self) -> dict:
        per_label = self.per_label()
        if not per_label:
            return {}

        def mean(metric):
            values = [m[metric] for m in per_label.values() if metric in m]
            return float(np.mean(values)) if values else 0.0

        return {
            "map": mean("ap"),
            "balanced_accuracy": mean("balanced_accuracy"),
            "f1": mean("f1"),
            "per_label_ap": {n: m["ap"] for n, m in per_label.items() if "ap" in m},
            "per_label_balanced_accuracy": {n: m["balanced_accuracy"] for n, m in per_label.items()},
            "per_label_f1": {n: m["f1"] for n, m in per_label.items() if "f1" in m},
        }
