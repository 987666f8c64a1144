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
import tensorflow as tf
import yaml

from mtl_tf.config import Recipe, RecipeError
from mtl_tf.recipe import recipe_from_dict
from mtl_tf.data import pipeline
from mtl_tf.data.mixing import describe as mixing_describe
from mtl_tf.evaluate.job import format_results, write_prediction_grid
from mtl_tf.evaluate.runner import keras_infer, run_evaluators
from mtl_tf.inference import keras_predictor
from mtl_tf.model.multitask import MultitaskModel
from mtl_tf.report.plots import plot_curves, read_history
from mtl_tf.train.callbacks import (
    BestCheckpoint, DWAUpdate, EngineBackup, StopOnNaN, TaskEvaluation, TaskPlateau,
)
from mtl_tf.train.engine import MultitaskEngine
from mtl_tf.train.finetune import finetune_heads
from mtl_tf.train.optim import build_optimizer
from mtl_tf.train.sampling import DynamicSampling

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
        recompute=recipe.model.recompute,
        name=f"{recipe.name}_model",
    )


def run_fit(recipe: Recipe, out: str | Path | None = None, verbose="auto", extra_callbacks=()) -> Path:
    """Train the recipe's model and write its run folder; returns the folder.

    `train.single_task` trains that task alone on the examples labelled for it, with the
    multitask run's number of steps and batch size (the same budget).
    """
    started = time.perf_counter()
    if recipe.train.single_task:
        recipe = single_task_recipe(recipe)
    run = resolve_run_dir(out, recipe.name)
    resuming = (run / BACKUP).exists()
    run.mkdir(parents=True, exist_ok=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    keras.utils.set_random_seed(recipe.train.seed)
    data, train = recipe.data, recipe.train
    strategy = build_strategy(train.strategy)

    with strategy.scope():
        model = build_model(recipe)
    tasks = model.tasks
    train_sources = pipeline.load_sources(data.train, tasks, data.image_size, data.cache, "train")
    val_sources = pipeline.load_sources(data.val, tasks, data.image_size, data.cache, "val")
    val_examples = pipeline.concatenated_examples(val_sources)
    sizes = [s.count for s in train_sources]
    # The budget is the multitask run's: steps from every train example, also for a single task.
    steps = train.steps_per_epoch or pipeline.steps_per_epoch(sum(sizes), data.batch_size)
    epochs = train.epochs
    if train.single_task:
        train_sources = [labelled_only(pipeline.concatenated_examples(train_sources), tasks[train.single_task])]
        val_examples = labelled_only(val_examples, tasks[train.single_task]).records
        sizes = [train_sources[0].count]
    cached = sum(s.kind != "memory" for s in train_sources + val_sources)
    print(
        f"run {run}{' (resuming)' if resuming else ''}: {sum(sizes)} train / {sum(s.count for s in val_sources)} "
        f"val examples ({cached} of {len(train_sources) + len(val_sources)} sources from the cache), "
        f"tasks {', '.join(tasks)}, {model.count_params():,} parameters, {epochs} epochs x {steps} steps; "
        f"batches: {mixing_describe(data.mixing, sizes, data.batch_size)}"
        + (f"; engine: {engine_summary(train, data.batch_size, tasks)}" if train.engine_enabled() else "")
        + (f"; recompute: {'+'.join(recipe.model.recompute)}" if recipe.model.recompute else "")
    )

    engine = None
    use_engine = train.engine_enabled() or bool(recipe.model.recompute)  # recompute runs in the engine's step
    with strategy.scope():
        model.compile(optimizer=build_optimizer(train.optimizer, steps * epochs, constant=use_engine))
        if use_engine:
            engine = model.engine = MultitaskEngine(model, train, data.batch_size, steps * epochs)
    evaluation = TaskEvaluation(tasks, pipeline.evaluation_batches(val_examples, tasks, data.batch_size))
    callbacks = [
        evaluation,  # first: it adds val_<task>_<metric> to the logs the others record
        StopOnNaN(run),  # before anything that saves weights
        BestCheckpoint(run / BEST, tasks, train.best.metrics, train.best.references, save_model),
    ]
    plateau = None
    if engine is not None:
        if train.plateau:
            plateau = TaskPlateau(engine, train.plateau, tasks)
            callbacks.append(plateau)
        if train.balance.method == "dwa":
            callbacks.append(DWAUpdate(engine, train.balance.dwa_temperature))
    callbacks += [
        keras.callbacks.CSVLogger(str(run / "history.csv"), append=resuming),
        keras.callbacks.TensorBoard(str(run / "logs"), profile_batch=0),
        keras.callbacks.BackupAndRestore(str(run / BACKUP)),
    ]
    if engine is not None:
        callbacks.append(EngineBackup(engine, run / BACKUP, plateau))
    callbacks += list(extra_callbacks)
    sampling = DynamicSampling.for_recipe(recipe, tasks)  # None unless data.mixing.weights: dynamic
    if sampling is not None:
        callbacks.insert(1, sampling)  # right after TaskEvaluation, whose metrics it reads
    batches = pipeline.recipe_training_batches(recipe, tasks, train_sources, steps,
                                               sampling.probabilities if sampling else None)
    # Resuming: skip the batches the finished epochs consumed, so the data order is the one an
    # uninterrupted run sees.
    batches = batches.skip(resumed_epochs(run / BACKUP) * steps)
    model.fit(
        batches,
        epochs=epochs,
        steps_per_epoch=steps,
        validation_data=pipeline.validation_batches(val_examples, tasks, data.batch_size),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles
    )
    finetune_heads(model, recipe, batches, steps, pipeline.validation_batches(val_examples, tasks, data.batch_size),
                   [evaluation, keras.callbacks.CSVLogger(str(run / "finetune_history.csv"))], verbose)
    save_model(model, run / "model.keras")
    evaluators = evaluation.last_evaluators or run_evaluators(
        keras_infer(model), tasks, pipeline.evaluation_batches(val_examples, tasks, data.batch_size)
    )
    write_report(run, model, evaluators, val_examples, recipe, time.perf_counter() - started)
    return run


BEST = "best.keras"


def build_strategy(name: str) -> tf.distribute.Strategy:
    """The recipe's tf.distribute strategy ('none': TensorFlow's default, one device)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def single_task_recipe(recipe: Recipe) -> Recipe:
    """The recipe with only its `train.single_task` task (engine keys of the others dropped)."""
    name = recipe.train.single_task
    raw = recipe.to_dict()
    raw["tasks"] = {name: raw["tasks"][name]}
    raw["data"]["mixing"] = None  # one shuffled stream of the examples labelled for the task
    for key in ("accumulate", "lr_multipliers"):
        raw["train"][key] = {k: v for k, v in raw["train"][key].items() if k in (name, "trunk")}
    for section in (raw["train"]["best"], raw["train"]["plateau"] or {}):
        for key in ("metrics", "references"):
            if key in section:
                section[key] = {k: v for k, v in section[key].items() if k == name}
    return recipe_from_dict(raw)


def labelled_only(examples, task) -> pipeline.SourceExamples:
    """The examples labelled for `task`, counted (one pass over the cache)."""
    kept = examples.filter(lambda ex: ex[task.has_key])
    count = int(kept.reduce(0, lambda n, _: n + 1))
    if count == 0:
        raise RecipeError(f"train.single_task: no example is labelled for {task.name}")
    return pipeline.SourceExamples(kept.apply(tf.data.experimental.assert_cardinality(count)), count)


def resumed_epochs(backup: Path) -> int:
    """Epochs finished by the interrupted run whose backup is in `backup` (0 if none)."""
    meta = backup / "training_metadata.json"
    return int(json.loads(meta.read_text())["epoch"]) if meta.exists() else 0


def engine_summary(train, batch_size: int, tasks: dict) -> str:
    sizes = ", ".join(f"{g} {train.accumulate.get(g, batch_size)}" for g in ["trunk", *tasks])
    return f"accumulate {sizes}; balance {train.balance.method}"


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
