"""Learning curves per task on one figure, and prediction-vs-truth overlays."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_history(path: str | Path) -> dict[str, list[float]]:
    """history.csv (Keras CSVLogger) -> {column: values}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else []
    return {c: [float(r[c]) if r[c] not in ("", None) else np.nan for r in rows] for c in columns}


def plot_curves(history: dict[str, list[float]], tasks: dict, path: str | Path) -> None:
    """One column per task: its train/val loss on top, its validation metrics below, so the
    different learning paces of the tasks can be compared at a glance."""
    names = list(tasks)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6), squeeze=False)
    epochs = np.arange(1, len(history.get("epoch", [])) + 1)
    for col, name in enumerate(names):
        loss_ax, metric_ax = axes[0, col], axes[1, col]
        for key, style in ((f"{name}_loss", "-"), (f"val_{name}_loss", "--")):
            if key in history:
                loss_ax.plot(epochs, history[key], style, marker=".", label=key)
        loss_ax.set_title(f"{name}: loss")
        loss_ax.set_yscale("log")
        prefix = f"val_{name}_"
        for key, values in history.items():
            if key.startswith(prefix) and key != f"val_{name}_loss":
                metric_ax.plot(epochs, values, marker=".", label=key.removeprefix(prefix))
        metric_ax.set_title(f"{name}: validation metrics")
        shown = np.concatenate([line.get_ydata() for line in metric_ax.lines]) if metric_ax.lines else np.zeros(1)
        if np.nanmin(shown, initial=0) >= 0 and np.nanmax(shown, initial=0) <= 1:
            metric_ax.set_ylim(0, 1)  # rates and scores; errors (lower is better) keep their own scale
        metric_ax.set_xlabel("epoch")
        for ax in (loss_ax, metric_ax):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_overlays(images, truths: list[dict], predictions: list[dict], tasks: dict, path: str | Path) -> None:
    """A grid: one row per image, prediction then ground truth for each task. `truths` and
    `predictions` hold one {task: plain-named labels, or None where the task has no label} per
    image."""
    from mtl_tf.report.render import render_all

    rows, cols = len(images), 2 * len(tasks)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for r, image in enumerate(images):
        for t, (name, task) in enumerate(tasks.items()):
            for c, (labels, kind) in enumerate(((predictions[r], "prediction"), (truths[r], "truth"))):
                ax = axes[r, 2 * t + c]
                ax.imshow(render_all(image, labels, {name: task}, min_side=256))
                if labels.get(name) is None:
                    ax.text(0.5, 0.5, "no label", transform=ax.transAxes, ha="center", color="white")
                ax.set_axis_off()
                if r == 0:
                    ax.set_title(f"{name}: {kind}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pr_curves(curves: dict, ap: dict, path: str | Path, title: str = "precision-recall (IoU 0.5)") -> None:
    """One precision-recall curve per class, AP in the legend."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, (recall, precision) in curves.items():
        envelope = np.maximum.accumulate(np.asarray(precision)[::-1])[::-1] if len(precision) else precision
        ax.plot(recall, envelope, label=f"{name} (AP {ap.get(name, float('nan')):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str | None = None) -> None:
    """Row-normalized confusion matrix (truth rows, predicted columns), percentages annotated."""
    m = np.asarray(matrix, np.float64)
    rows = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1 + 0.55 * n))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    if title:
        ax.set_title(title, fontsize=9)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{100 * rows[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if rows[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
