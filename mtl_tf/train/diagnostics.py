"""Why does one task drag the other? Measurements over training (`train.diagnostics_every: N`).

Every N training batches, on one batch drawn from a copy of the training stream (so the cost is
one extra forward pass and one backward pass per task, every N steps), `TrainingDiagnostics`
records per task:
- `loss`: its loss on the batch (unweighted);
- `trunk_grad_norm`: the norm of its gradient over the shared trunk's variables;
- `effective_lr`: learning rate x its weight in the summed loss x its LR multiplier, times its
  trunk gradient norm: how far its loss alone moves the trunk per (SGD-like) step;
and for the whole model:
- `grad_cosine`: the cosine between the first two tasks' gradients over all trunk variables;
- `bn_drift`: the mean relative change of the trunk's BatchNorm moving means since the last
  measurement (statistics that keep moving under mixed partial batches);
- `subset_shift`: at the deepest backbone tap, |mean(boxes-only examples) - mean(masks-only
  examples)| / std, averaged over channels (how differently the two partial subsets look);
- `background_share`: share of labelled mask pixels of class 0.
Gradients are taken in inference mode (moving BatchNorm statistics), so measuring changes
nothing. At the start it also compares the training boxes' sizes with the anchors
(`anchor_fit`: share of boxes whose best anchor IoU reaches the match threshold). Writes
diagnostics.json and diagnostics.png (one panel per quantity) into the run folder at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mtl_tf import atomic

QUANTITIES = ("loss", "trunk_grad_norm", "effective_lr", "grad_cosine", "bn_drift", "subset_shift", "background_share")


class TrainingDiagnostics(keras.callbacks.Callback):
    def __init__(self, batches: tf.data.Dataset, tasks: dict, every: int, folder: Path):
        super().__init__()
        self.iterator = iter(batches)
        self.tasks, self.every, self.folder = tasks, every, Path(folder)
        self.records: list[dict] = []
        self.step = 0
        self.previous_bn = None
        self.static: dict = {}

    def on_train_begin(self, logs=None):
        graph = self.model.engine_graph
        self.trunk_vars = graph.trunk_vars
        self.bn_means = [layer.moving_mean for part in graph.trunk_layers for layer in part._flatten_layers()
                         if isinstance(layer, keras.layers.BatchNormalization)]
        self._gradients = tf.function(self._task_gradients)

    def _task_gradients(self, x, y, w):
        graph = self.model.engine_graph
        with tf.GradientTape(persistent=True) as tape:
            taps = graph.trunk(x, training=False)
            losses = {name: task.loss(y[name], graph.branches[name](taps, training=False), w[name])
                      for name, task in self.tasks.items()}
        grads = {name: tape.gradient(loss, self.trunk_vars) for name, loss in losses.items()}
        del tape
        return losses, grads, taps[-1]

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every and self.step != 1:
            return
        x, y, w = next(self.iterator)
        losses, grads, deepest = self._gradients(x, y, w)
        record = {"step": self.step}
        flat = {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        engine = self.model.engine
        weights = (engine.task_weights().numpy() if engine is not None
                   else [t.config.loss_weight for t in self.tasks.values()])
        for i, (name, task) in enumerate(self.tasks.items()):
            g = grads[name]
            flat[name] = np.concatenate([np.zeros(v.shape).ravel() if gi is None else np.asarray(gi).ravel()
                                         for gi, v in zip(g, self.trunk_vars)])
            norm = float(np.linalg.norm(flat[name]))
            multiplier = float(engine.multiplier[name].numpy()) if engine is not None else 1.0
            if engine is not None:
                lr = float(engine.schedule(engine.step) if callable(engine.schedule) else engine.schedule)
            record[f"{name}/loss"] = float(losses[name])
            record[f"{name}/trunk_grad_norm"] = norm
            record[f"{name}/effective_lr"] = lr * float(weights[i]) * multiplier * norm
        names = list(self.tasks)
        if len(names) >= 2:
            a, b = flat[names[0]], flat[names[1]]
            record["grad_cosine"] = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
        bn = [np.asarray(v.numpy()) for v in self.bn_means]
        if self.previous_bn is not None and bn:
            record["bn_drift"] = float(np.mean([np.abs(n - p).mean() / (np.abs(p).mean() + 1e-6)
                                                for n, p in zip(bn, self.previous_bn)]))
        self.previous_bn = bn
        record.update(self._subset_shift(deepest, w))
        record.update(self._background_share(y, w))
        self.records.append(record)

    def _subset_shift(self, deepest, w) -> dict:
        det = [n for n, t in self.tasks.items() if t.type == "detection"]
        seg = [n for n, t in self.tasks.items() if t.type == "segmentation"]
        if not det or not seg:
            return {}
        has = {n: np.asarray(tf.reshape(w[n], [tf.shape(w[n])[0], -1])).max(1) > 0 for n in (det[0], seg[0])}
        boxes_only, masks_only = has[det[0]] & ~has[seg[0]], has[seg[0]] & ~has[det[0]]
        if not boxes_only.any() or not masks_only.any():
            return {}
        feats = np.asarray(deepest).mean((1, 2))  # [B, C]
        std = feats.std(0) + 1e-6
        return {"subset_shift": float(np.mean(np.abs(feats[boxes_only].mean(0) - feats[masks_only].mean(0)) / std))}

    def _background_share(self, y, w) -> dict:
        out = {}
        for name, task in self.tasks.items():
            if task.type == "segmentation":
                labelled = np.asarray(w[name]) > 0
                if labelled.any():
                    out[f"{name}/background_share"] = float((np.asarray(y[name])[labelled] == 0).mean())
        return out

    def on_train_end(self, logs=None):
        atomic.write_text(self.folder / "diagnostics.json", json.dumps(
            {"every": self.every, "static": self.static, "records": self.records}, indent=1))
        plot_diagnostics(self.records, self.folder / "diagnostics.png", self.static)


def anchor_fit(task, boxes: list[np.ndarray]) -> dict:
    """How the anchors of detection `task` fit the boxes: share of boxes whose best anchor IoU
    reaches match_iou, box sizes (sqrt area, pixels) and anchor sizes."""
    corners = np.asarray(task.anchor_corners, np.float64)
    all_boxes = np.concatenate([b.reshape(-1, 4) for b in boxes]) if boxes else np.zeros((0, 4))
    if not len(all_boxes):
        return {}
    y0 = np.maximum(all_boxes[:, None, 0], corners[None, :, 0])
    x0 = np.maximum(all_boxes[:, None, 1], corners[None, :, 1])
    y1 = np.minimum(all_boxes[:, None, 2], corners[None, :, 2])
    x1 = np.minimum(all_boxes[:, None, 3], corners[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    iou = inter / (area(all_boxes)[:, None] + area(corners)[None, :] - inter)
    side = np.sqrt(task.image_size[0] * task.image_size[1])
    return {"matched_share": float((iou.max(1) >= task.config.match_iou).mean()),
            "box_sizes": (np.sqrt(area(all_boxes)) * side).round(1).tolist(),
            "anchor_sizes": sorted(set((np.sqrt(area(corners)) * side).round(1).tolist()))}


def plot_diagnostics(records: list[dict], path: Path, static: dict | None = None) -> None:
    """One panel per quantity over training steps (a line per task where per task)."""
    from mtl_tf.report.plots import plt

    panels = [q for q in QUANTITIES if any(k == q or k.endswith("/" + q) for r in records for k in r)]
    fits = [(n, f) for n, f in (static or {}).items() if f.get("box_sizes")]
    total = len(panels) + len(fits)
    if not total:
        return
    cols = min(4, total)
    rows = -(-total // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, quantity in zip(axes.ravel(), panels):
        keys = sorted({k for r in records for k in r if k == quantity or k.endswith("/" + quantity)})
        for key in keys:
            steps = [r["step"] for r in records if key in r]
            ax.plot(steps, [r[key] for r in records if key in r], marker=".", label=key.split("/")[0])
        ax.set_title(quantity)
        ax.set_xlabel("training step")
        if quantity in ("loss", "trunk_grad_norm", "effective_lr"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax, (name, fit) in zip(axes.ravel()[len(panels):], fits):
        ax.hist(fit["box_sizes"], bins=30, color="tab:blue", alpha=0.7)
        for size in fit["anchor_sizes"]:
            ax.axvline(size, color="tab:red", lw=0.8)
        ax.set_title(f"{name}: box sizes vs anchors (red), matched {100 * fit['matched_share']:.0f}%")
        ax.set_xlabel("sqrt(area), pixels")
    for ax in axes.ravel()[total:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
