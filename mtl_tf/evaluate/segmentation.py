"""Semantic segmentation metrics from one confusion matrix (ignore pixels excluded)."""

from __future__ import annotations

import numpy as np

from mtl_tf.data.example import IGNORE


class ConfusionMatrixEvaluator:
    """Accumulates a [C, C] confusion matrix (rows: truth, columns: prediction)."""

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        self.reset()

    def reset(self) -> None:
        n = len(self.class_names)
        self.matrix = np.zeros((n, n), np.int64)

    def add_image(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        n = len(self.class_names)
        truth = np.asarray(truth).ravel().astype(np.int64)
        prediction = np.asarray(prediction).ravel().astype(np.int64)
        keep = truth != IGNORE
        truth, prediction = truth[keep], prediction[keep]
        if truth.size and truth.max() >= n:
            raise ValueError(f"mask holds class id {truth.max()} but there are only {n} classes")
        self.matrix += np.bincount(truth * n + prediction, minlength=n * n).reshape(n, n)

    def result(self) -> dict:
        """mIoU and accuracies over the classes present in truth or prediction."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        truth_total, pred_total = m.sum(1), m.sum(0)
        union = truth_total + pred_total - tp
        present = union > 0
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
        total = m.sum()
        has_truth = truth_total > 0
        class_acc = np.divide(tp, truth_total, out=np.zeros_like(tp), where=has_truth)
        freq = truth_total / max(total, 1)
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
            "mean_class_accuracy": float(class_acc[has_truth].mean()) if has_truth.any() else 0.0,
            "fw_iou": float((freq[present] * iou[present]).sum()),
            "per_class_iou": {n: float(v) for n, v, p in zip(self.class_names, iou, present) if p},
        }
