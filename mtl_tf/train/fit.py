"""The `fit` job: recipe in, run folder out.

A run folder holds: recipe.yaml (resolved), model.keras, history.csv, logs/ (TensorBoard),
metrics.json (final per-task validation metrics), curves.png and predictions.png. While
training, backup/ holds the state to resume from after an interruption.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import yaml

from mtl_tf.config import Recipe
from mtl_tf.data import pipeline
from mtl_tf.data.mixing import describe as mixing_describe
from mtl_tf.evaluate.job import format_results, write_prediction_grid
from mtl_tf.evaluate.runner import keras_infer, run_evaluators
from mtl_tf.inference import keras_predictor
from mtl_tf.model.multitask import MultitaskModel
from mtl_tf.report.plots import plot_curves, read_history
from mtl_tf.train.callbacks import TaskEvaluation
from mtl_tf.train.optim import build_optimizer

BACKUP = "backup"


class RunFolderError(ValueError):
    """The chosen run folder cannot be used."""


def resolve_run_dir(out: str | Path | None, name: str, root: str | Path = "runs") -> Path:
    """`out` if given; else runs/<name>, or runs/<name>-N when earlier runs finished there.

    A folder holding an unfinished run (a backup/ inside) is reused, which resumes it; an
    explicit `out` holding a finished run is refused rather than overwritten.
    """
    if out is not None:
        run = Path(out)
        if (run / "model.keras").exists() and not (run / BACKUP).exists():
            raise RunFolderError(f"{run} already holds a finished run; choose another --out")
        return run
    run, n = Path(root) / name, 0
    while (run / "model.keras").exists() and not (run / BACKUP).exists():
        n += 1
        run = Path(root) / f"{name}-{n}"
    return run


def build_model(recipe: Recipe) -> MultitaskModel:
    return MultitaskModel(
        backbone=recipe.model.backbone.model_dump(),
        tasks=recipe.tasks,
        image_size=recipe.data.image_size,
        split_last_stage=recipe.model.split_last_stage,
        name=f"{recipe.name}_model",
    )


def run_fit(recipe: Recipe, out: str | Path | None = None, verbose="auto") -> Path:
    """Train the recipe's model and write its run folder; returns the folder."""
    started = time.perf_counter()
    run = resolve_run_dir(out, recipe.name)
    resuming = (run / BACKUP).exists()
    run.mkdir(parents=True, exist_ok=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    keras.utils.set_random_seed(recipe.train.seed)
    data = recipe.data

    model = build_model(recipe)
    tasks = model.tasks
    train_sources = pipeline.load_sources(data.train, tasks, data.image_size, data.cache, "train")
    val_sources = pipeline.load_sources(data.val, tasks, data.image_size, data.cache, "val")
    val_examples = pipeline.concatenated_examples(val_sources)
    sizes = [s.count for s in train_sources]
    steps = recipe.train.steps_per_epoch or pipeline.steps_per_epoch(sum(sizes), data.batch_size)
    epochs = recipe.train.epochs
    cached = sum(s.kind != "memory" for s in train_sources + val_sources)
    print(
        f"run {run}{' (resuming)' if resuming else ''}: {sum(sizes)} train / {sum(s.count for s in val_sources)} "
        f"val examples ({cached} of {len(train_sources) + len(val_sources)} sources from the cache), "
        f"tasks {', '.join(tasks)}, {model.count_params():,} parameters, {epochs} epochs x {steps} steps; "
        f"batches: {mixing_describe(data.mixing, sizes, data.batch_size)}"
    )

    model.compile(optimizer=build_optimizer(recipe.train.optimizer, steps * epochs))
    evaluation = TaskEvaluation(tasks, pipeline.evaluation_batches(val_examples, data.batch_size))
    callbacks = [
        evaluation,  # first: it adds val_<task>_<metric> to the logs the others record
        keras.callbacks.CSVLogger(str(run / "history.csv"), append=resuming),
        keras.callbacks.TensorBoard(str(run / "logs"), profile_batch=0),
        keras.callbacks.BackupAndRestore(str(run / BACKUP)),
    ]
    model.fit(
        pipeline.recipe_training_batches(recipe, tasks, train_sources, steps),
        epochs=epochs,
        steps_per_epoch=steps,
        validation_data=pipeline.validation_batches(val_examples, tasks, data.batch_size),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles
    )
    save_model(model, run / "model.keras")
    evaluators = evaluation.last_evaluators or run_evaluators(
        keras_infer(model), tasks, pipeline.evaluation_batches(val_examples, data.batch_size)
    )
    write_report(run, model, evaluators, val_examples, recipe, time.perf_counter() - started)
    return run


def save_model(model: keras.Model, path: Path) -> None:
    """Write to a temporary file first, so an interrupted save never replaces a good model."""
    tmp = path.with_name(path.stem + ".partial.keras")
    model.save(tmp)
    os.replace(tmp, path)


def write_report(run: Path, model, evaluators: dict, val_examples, recipe: Recipe, wall_time: float) -> None:
    """metrics.json, curves.png, predictions.png and each task's figures of a finished run."""
    results = {name: ev.result() for name, ev in evaluators.items()}
    for name, task in model.tasks.items():
        task.write_figures(evaluators[name], run)
    summary = {
        "recipe": recipe.name,
        "wall_time_s": round(wall_time, 1),
        "epochs": recipe.train.epochs,
        "parameters": int(model.count_params()),
        "metrics": results,
    }
    (run / "metrics.json").write_text(json.dumps(summary, indent=2))
    plot_curves(read_history(run / "history.csv"), model.tasks, run / "curves.png")
    if recipe.train.num_overlays:
        predictor = keras_predictor(model, run / "model.keras", recipe)
        write_prediction_grid(predictor, val_examples, recipe.train.num_overlays, run / "predictions.png")
    print(f"final validation metrics\n{format_results(results)}\nrun folder: {run}")
