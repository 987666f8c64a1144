"""Metrics of dense per-pixel tasks, pooled over every labelled pixel of the dataset.

- `DepthEvaluator`: abs_rel, rmse, delta1/2/3 (share of pixels with max(d/d*, d*/d) < 1.25^k).
- `NormalsEvaluator`: mean and median angular error (degrees), share within 11.25, 22.5, 30.
- `BinaryMapEvaluator`: max F-measure over thresholds (ODS: one threshold for the whole dataset)
  and F at 0.5; a pixel is predicted positive when its probability is >= the threshold.
"""

from __future__ import annotations

import numpy as np

from mtl_tf.data.example import IGNORE

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
# Median angular error resolution (degrees): errors are histogrammed in bins this wide.
ANGLE_BIN = 0.01
# Thresholds of the F-measure: k / THRESHOLD_BINS (0.5 is one of them).
THRESHOLD_BINS = 100


def valid_depth(depth: np.ndarray, invalid: str = "nan") -> np.ndarray:
    """Pixels with a depth: finite, and non-zero where `invalid` is "zero"."""
    valid = np.isfinite(depth)
    if invalid == "zero":
        valid &= depth != 0
    return valid


class DepthEvaluator:
    """Depth errors over the labelled pixels; ratio metrics (abs_rel, deltas) over those > 0."""

    def __init__(self, invalid: str = "nan"):
        self.invalid = invalid
        self.squared, self.pixels = 0.0, 0
        self.rel, self.positive = 0.0, 0
        self.within = np.zeros(3, np.int64)

    def add(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        truth = np.asarray(truth, np.float64).reshape(-1)
        prediction = np.asarray(prediction, np.float64).reshape(-1)
        keep = valid_depth(truth, self.invalid)
        truth, prediction = truth[keep], prediction[keep]
        self.squared += float(np.sum((prediction - truth) ** 2))
        self.pixels += truth.size
        positive = truth > 0
        t, p = truth[positive], np.maximum(prediction[positive], 1e-6)
        self.rel += float(np.sum(np.abs(p - t) / t))
        self.positive += t.size
        ratio = np.maximum(p / t, t / p)
        self.within += [int(np.sum(ratio < 1.25**k)) for k in (1, 2, 3)]

    def result(self) -> dict:
        n = max(self.positive, 1)
        return {"abs_rel": self.rel / n, "rmse": float(np.sqrt(self.squared / max(self.pixels, 1))),
                **{f"delta{k}": float(self.within[k - 1]) / n for k in (1, 2, 3)}}


def angular_errors(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Angles (degrees) between the labelled truth normals (non-zero vectors) and the predicted
    ones, both [..., 3]."""
    truth = np.asarray(truth, np.float64).reshape(-1, 3)
    prediction = np.asarray(prediction, np.float64).reshape(-1, 3)
    norm = np.linalg.norm(truth, axis=1)
    keep = np.isfinite(norm) & (norm > 0.5)
    t = truth[keep] / norm[keep, None]
    p = prediction[keep] / np.maximum(np.linalg.norm(prediction[keep], axis=1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip(np.sum(t * p, axis=1), -1.0, 1.0)))


class NormalsEvaluator:
    """Angular errors of surface normals over the labelled pixels (zero vectors are unlabelled)."""

    def __init__(self):
        self.histogram = np.zeros(int(round(180 / ANGLE_BIN)) + 1, np.int64)
        self.total, self.count = 0.0, 0
        self.within = np.zeros(len(ANGLE_THRESHOLDS), np.int64)

    def add(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        errors = angular_errors(truth, prediction)
        self.total += float(errors.sum())
        self.count += errors.size
        self.within += [int(np.sum(errors < t)) for t in ANGLE_THRESHOLDS]
        self.histogram += np.bincount(np.floor(errors / ANGLE_BIN).astype(np.int64), minlength=self.histogram.size)

    def result(self) -> dict:
        n = max(self.count, 1)
        cumulative = np.cumsum(self.histogram)
        median = (np.searchsorted(cumulative, (self.count + 1) / 2) + 0.5) * ANGLE_BIN if self.count else 0.0
        within = {f"within_{t:g}".replace(".", "_"): float(w) / n for t, w in zip(ANGLE_THRESHOLDS, self.within)}
        return {"mean_angle": self.total / n, "median_angle": float(median), **within}


class BinaryMapEvaluator:
    """Dataset-wide precision and recall of a binary map at thresholds k / THRESHOLD_BINS."""

    def __init__(self):
        self.positives = np.zeros(THRESHOLD_BINS, np.int64)
        self.negatives = np.zeros(THRESHOLD_BINS, np.int64)

    def add(self, truth: np.ndarray, probability: np.ndarray) -> None:
        truth = np.asarray(truth).reshape(-1)
        probability = np.asarray(probability, np.float64).reshape(-1)
        keep = truth != IGNORE
        bins = np.clip(np.floor(probability[keep] * THRESHOLD_BINS), 0, THRESHOLD_BINS - 1).astype(np.int64)
        positive = truth[keep] > 0
        self.positives += np.bincount(bins[positive], minlength=THRESHOLD_BINS)
        self.negatives += np.bincount(bins[~positive], minlength=THRESHOLD_BINS)

    def f_measures(self) -> np.ndarray:
        """F at each threshold k / THRESHOLD_BINS, k = 0 .. THRESHOLD_BINS - 1."""
        tp = np.cumsum(self.positives[::-1])[::-1].astype(np.float64)  # probability >= k / bins
        fp = np.cumsum(self.negatives[::-1])[::-1].astype(np.float64)
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / max(float(self.positives.sum()), 1.0)
        return 2 * precision * recall / np.maximum(precision + recall, 1e-12)

    def result(self) -> dict:
        f = self.f_measures()
        best = int(np.argmax(f))
        return {"max_f": float(f[best]), "f_at_0_5": float(f[THRESHOLD_BINS // 2]),
                "best_threshold": best / THRESHOLD_BINS}
