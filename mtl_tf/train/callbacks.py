"""Callbacks of the training job."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from mtl_tf import atomic
from mtl_tf.evaluate.runner import keras_infer, run_evaluators, scalar_metrics


class TaskEvaluation(keras.callbacks.Callback):
    """After every epoch, run the tasks' evaluators on the validation examples.

    Scalar metrics are added to the epoch logs as `val_<task>_<metric>` so that the CSV log,
    TensorBoard and History record them; list this callback before those.
    """

    def __init__(self, tasks: dict, batches):
        super().__init__()
        self.tasks = tasks
        self.batches = batches
        self.last_evaluators: dict = {}  # task -> evaluator of the latest epoch
        self._infer = None

    def on_train_begin(self, logs=None):
        self._infer = keras_infer(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.last_evaluators = run_evaluators(self._infer, self.tasks, self.batches)
        results = {name: ev.result() for name, ev in self.last_evaluators.items()}
        scalars = {f"val_{k}": v for k, v in scalar_metrics(results).items()}
        if logs is not None:
            logs.update(scalars)


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message says where the last good state is."""


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first batch whose loss is not finite, before anything saves the bad weights.

    List it before BackupAndRestore and the checkpoint callbacks: they then keep the last good
    epoch (backup/ to resume from, best.keras). Raises `TrainingDiverged`.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True
            raise TrainingDiverged(
                f"training diverged: the loss is {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}. "
                f"The last good state (end of epoch {self._epoch}) is kept in {self.run_dir}/backup and "
                f"the best model so far in {self.run_dir}/best.keras; lower train.optimizer.learning_rate "
                "(or set train.optimizer.clipnorm) and run fit again with the same --out to resume."
            )


def relative_score(value: float, reference: float, higher_is_better: bool) -> float:
    """`value` relative to `reference`, 1 at the reference and larger when better whatever
    the metric's direction: value / reference, or 2 - value / reference for errors (so a
    task 10% better than its reference scores 1.1 either way, as in the Delta-m measure)."""
    ratio = float(value) / reference
    return ratio if higher_is_better else 2.0 - ratio


def task_score(logs: dict, tasks: dict, metrics: dict, references: dict) -> float | None:
    """Mean over tasks of `relative_score` of val_<task>_<metric> (metric default: the task's
    primary; reference default 1), higher is better."""
    values = []
    for name, task in tasks.items():
        metric = metrics.get(name, task.primary_metric)
        value = logs.get(f"val_{name}_{metric}")
        if value is None:
            return None
        values.append(relative_score(value, references.get(name, 1.0), task.higher_is_better(metric)))
    return float(np.mean(values))


class BestCheckpoint(keras.callbacks.Callback):
    """Keep `best.keras`: the model of the epoch with the highest `task_score` (after TaskEvaluation)."""

    def __init__(self, path, tasks: dict, metrics: dict, references: dict, save):
        super().__init__()
        self.path, self.tasks, self.metrics, self.references, self.save = path, tasks, metrics, references, save
        self.best = -np.inf

    def on_epoch_end(self, epoch, logs=None):
        score = task_score(logs or {}, self.tasks, self.metrics, self.references)
        if score is None:
            return
        logs["val_score"] = score
        if score > self.best:
            self.best = score
            self.save(self.model, self.path)


class TaskPlateau(keras.callbacks.Callback):
    """Per-task plateau handling for the multitask engine.

    Watches each task's validation metric (val_<task>_<metric>, in the metric's direction); after
    `patience` epochs without an improvement above `min_delta`, either multiplies that task's
    learning-rate multiplier by `factor` (lower_lr) or freezes the task (freeze): its head stops
    stepping and it sends no more gradient into the trunk, so a task that has peaked cannot
    overfit the shared layers while the others still learn. Its `<task>_lr_mult` / `<task>_active`
    go into the epoch logs.
    """

    def __init__(self, engine, config, tasks: dict):
        super().__init__()
        self.engine, self.config, self.tasks = engine, config, tasks
        self.best = {name: -np.inf for name in tasks}
        self.wait = {name: 0 for name in tasks}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for name, task in self.tasks.items():
            metric = self.config.metrics.get(name, task.primary_metric)
            value = logs.get(f"val_{name}_{metric}")
            if value is None or not float(self.engine.active[name].numpy()):
                continue
            # Kept as "higher is better" internally: errors are negated.
            value = float(value) if task.higher_is_better(metric) else -float(value)
            if value > self.best[name] + self.config.min_delta:
                self.best[name], self.wait[name] = value, 0
            else:
                self.wait[name] += 1
            if self.wait[name] >= self.config.patience:
                self.wait[name] = 0
                if self.config.action == "freeze":
                    self.engine.active[name].assign(0.0)
                else:
                    mult = self.engine.multiplier[name]
                    mult.assign(float(mult.numpy()) * self.config.factor)
        for name in self.tasks:
            logs[f"{name}_lr_mult"] = float(self.engine.multiplier[name].numpy())
            logs[f"{name}_active"] = float(self.engine.active[name].numpy())


class DWAUpdate(keras.callbacks.Callback):
    """Dynamic weight average: after each epoch, set the task weights from the last two epochs'
    mean training losses (`<task>_loss`); weights stay at the recipe's until two epochs are in."""

    def __init__(self, engine, temperature: float):
        super().__init__()
        self.engine, self.temperature = engine, temperature
        self.base = np.array([engine.model.tasks[t].config.loss_weight for t in engine.tasks], np.float32)

    def on_epoch_end(self, epoch, logs=None):
        from mtl_tf.train.engine import dwa_weights

        engine = self.engine
        current = np.array([float((logs or {}).get(f"{t}_loss", np.nan)) for t in engine.tasks], np.float32)
        history = engine.dwa_history.numpy()
        engine.dwa_history.assign(np.stack([history[1], current]))
        engine.dwa_epochs.assign_add(1)
        if int(engine.dwa_epochs.numpy()) >= 2:
            engine.weights.assign((self.base * dwa_weights(current, history[1], self.temperature)).astype(np.float32))


class HistoryLog(keras.callbacks.Callback):
    """history.csv as Keras' CSVLogger writes it (epoch, then the sorted log keys), rewritten whole
    at every epoch end (temporary file + rename). Resuming after `epochs_done` epochs, it keeps
    only their rows: a kill between an epoch's row and its backup leaves no duplicate."""

    def __init__(self, path, epochs_done: int = 0):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] = []
        if epochs_done and self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) < epochs_done]
        self.keys = [k for k in self.rows[0] if k != "epoch"] if self.rows else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.keys = self.keys or sorted(logs)
        self.rows.append({"epoch": epoch, **{k: _csv_value(logs.get(k, "NA")) for k in self.keys}})
        with atomic.replacing(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, ["epoch", *self.keys])
            writer.writeheader()
            writer.writerows(self.rows)


def _csv_value(value):
    array = np.asarray(value)
    return value if isinstance(value, str) or array.ndim == 0 else f"[{', '.join(map(str, array.ravel()))}]"


class RunBackup(keras.callbacks.Callback):
    """The state to resume from: at every epoch end a snapshot `<folder>/epoch-NNNN/` (model and
    optimizer weights, epoch, best score so far, and the engine's state: accumulators, counters,
    balancer, head optimizers, plateau state) is written in a staging folder and renamed into
    place whole; older snapshots go once it is there (the newest `keep` stay). `restore` (a
    `Snapshot`, see `latest_snapshot`) is loaded at train begin, so a resumed run is exact."""

    def __init__(self, folder, restore=None, engine=None, plateau=None, best=None, sampling=None, keep: int = 2):
        super().__init__()
        self.folder, self.restore, self.keep = Path(folder), restore, keep
        self.engine, self.plateau, self.best, self.sampling = engine, plateau, best, sampling

    def on_train_begin(self, logs=None):
        if self.restore is None:
            return
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.restore.path / WEIGHTS)
        meta = self.restore.metadata
        if self.best is not None and meta.get("best") is not None:
            self.best.best = meta["best"]
        if self.engine is not None:
            with np.load(self.restore.path / ENGINE_STATE, allow_pickle=False) as data:
                self.engine.set_state([data[f"a{i}"] for i in range(len(data.files) - 1)])
                if self.plateau is not None:
                    best, wait = json.loads(str(data["plateau"]))
                    self.plateau.best.update(best)
                    self.plateau.wait.update(wait)

    def on_epoch_end(self, epoch, logs=None):
        meta = {"epoch": epoch + 1, "best": float(self.best.best) if self.best is not None else None}
        if self.sampling is not None:
            meta["sampling"] = self.sampling.state()
        with atomic.replacing(self.folder / f"epoch-{epoch + 1:04d}") as tmp:
            tmp.mkdir()
            self.model.save_weights(tmp / WEIGHTS)
            (tmp / METADATA).write_text(json.dumps(meta))
            if self.engine is not None:
                plateau = [self.plateau.best, self.plateau.wait] if self.plateau is not None else [{}, {}]
                arrays = {f"a{i}": a for i, a in enumerate(self.engine.state())}
                np.savez(tmp / ENGINE_STATE, plateau=np.array(json.dumps(plateau)), **arrays)
        for old in snapshot_folders(self.folder)[self.keep:]:
            atomic.retire(old)


WEIGHTS, METADATA, ENGINE_STATE = "latest.weights.h5", "training_metadata.json", "engine_state.npz"


@dataclass
class Snapshot:
    path: Path
    metadata: dict  # {"epoch": epochs done, "best": best score so far, "sampling": dynamic sampling state}

    @property
    def epoch(self) -> int:
        return int(self.metadata["epoch"])


def snapshot_folders(folder: Path) -> list[Path]:
    """The complete snapshots in `folder`, newest first."""
    found = [p for p in Path(folder).glob("epoch-*") if p.is_dir() and p.name[6:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[6:]), reverse=True)


def latest_snapshot(folder, engine: bool, log=print) -> Snapshot | None:
    """The newest snapshot in `folder` that reads back whole (an older one when the newest is
    damaged; Keras' own single-file backup of earlier versions counts as the oldest), saying
    which; None when there is none."""
    folder = Path(folder)
    candidates = snapshot_folders(folder) + ([folder] if (folder / WEIGHTS).exists() else [])
    for path in candidates:
        try:
            snapshot = _read_snapshot(path, engine)
        except (OSError, ValueError, KeyError, TypeError) as err:  # unreadable, truncated, missing
            log(f"backup {path} is incomplete or damaged ({str(err).splitlines()[0][:200]}); trying an older one")
            continue
        log(f"resuming from {path} ({snapshot.epoch} epochs done)")
        return snapshot
    if folder.exists():
        log(f"no complete backup in {folder}: starting over")
    return None


def _read_snapshot(path: Path, engine: bool) -> Snapshot:
    import h5py

    metadata = json.loads((path / METADATA).read_text())
    int(metadata["epoch"])
    with h5py.File(path / WEIGHTS, "r"):
        pass
    if engine:
        with np.load(path / ENGINE_STATE, allow_pickle=False) as data:
            [data[name] for name in data.files]
    return Snapshot(path, metadata)
