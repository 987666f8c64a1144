"""The `fit` job: recipe in, run folder out.

A run folder holds: recipe.yaml (resolved), model.keras, history.csv, logs/ (TensorBoard),
metrics.json (final per-task validation metrics), curves.png and predictions.png. Until all of
these are written, backup/ holds the state to resume from after an interruption. Every file is
written under a temporary name and renamed into place whole (mtl_tf/atomic.py), so a run killed
at any moment resumes from its last complete backup.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import tensorflow as tf
import yaml

from mtl_tf import atomic
from mtl_tf.config import Recipe, RecipeError
from mtl_tf.recipe import recipe_from_dict, restrict_tasks
from mtl_tf.data import pipeline
from mtl_tf.data.mixing import describe as mixing_describe
from mtl_tf.evaluate.job import format_results, write_prediction_grid
from mtl_tf.evaluate.runner import keras_infer, run_evaluators
from mtl_tf.inference import keras_predictor
from mtl_tf.model.multitask import MultitaskModel
from mtl_tf.report.plots import plot_curves, read_history
from mtl_tf.train.callbacks import (
    BestCheckpoint, DWAUpdate, HistoryLog, RunBackup, StopOnNaN, TaskEvaluation, TaskPlateau, latest_snapshot,
)
from mtl_tf.train.cluster import Worker, current_worker, remove_scratch, worker_folder
from mtl_tf.train.setup import compile_for_training, partial_label_defaults, training_data, uses_engine
from mtl_tf.train.finetune import finetune_heads
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
        if run_finished(run):
            raise RunFolderError(f"{run} already holds a finished run; choose another --out")
        return run
    run, n = Path(root) / name, 0
    while run_finished(run):
        n += 1
        run = Path(root) / f"{name}-{n}"
    return run


def run_finished(run: Path) -> bool:
    """model.keras and its report are written and no backup is left to resume from."""
    return (run / "model.keras").exists() and (run / "metrics.json").exists() and not (run / BACKUP).exists()


def build_model(recipe: Recipe, name: str | None = None) -> MultitaskModel:
    """The recipe's model, untrained (default name: `<recipe name>_model`)."""
    return MultitaskModel(
        backbone=recipe.model.backbone.model_dump(),
        tasks=recipe.tasks,
        image_size=recipe.data.image_size,
        split_last_stage=recipe.model.split_last_stage,
        recompute=recipe.model.recompute,
        neck=recipe.model.neck.model_dump() if recipe.model.neck else None,
        name=name or f"{recipe.name}_model",
    )


def run_fit(recipe: Recipe, out: str | Path | None = None, verbose="auto", extra_callbacks=()) -> Path:
    """Train the recipe's model and write its run folder; returns the folder.

    `train.single_task` trains that task alone on the examples labelled for it, with the
    multitask run's number of steps and batch size (the same budget).
    """
    started = time.perf_counter()
    if recipe.train.single_task:
        recipe = single_task_recipe(recipe)
    recipe, note = partial_label_defaults(recipe)
    data, train = recipe.data, recipe.train
    worker = current_worker() if train.strategy in MULTI_WORKER else Worker()
    run = resolve_run_dir(out, recipe.name) if worker.is_chief else Path(out or Path("runs") / recipe.name)
    own = worker_folder(run, worker)  # what this worker writes: the run folder, or a scratch folder
    use_engine = uses_engine(recipe)
    snapshot = latest_snapshot(run / BACKUP, engine=use_engine)  # the chief's, for every worker
    resuming = snapshot is not None
    done = snapshot.epoch if resuming else 0
    atomic.write_text(own / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    keras.utils.set_random_seed(recipe.train.seed)
    strategy = build_strategy(train.strategy)

    with strategy.scope():
        model = build_model(recipe)
    tasks = model.tasks
    training = training_data(recipe, tasks)
    train_sources = training.sources
    val_sources = pipeline.load_sources(data.val, tasks, data.image_size, data.cache, "val")
    val_examples = pipeline.concatenated_examples(val_sources)
    sizes = [s.count for s in train_sources]
    # The budget is the multitask run's: steps from every train example, also for a single task.
    steps = training.steps
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
    if note:
        print(note)
    if worker.count > 1:
        print(f"worker {worker.index} of {worker.count} ({'chief, writes the run folder' if worker.is_chief else f'writes {own}'})")
    if not resuming and worker.is_chief and (run / "model.keras").exists():  # trained, but killed before its report
        print(f"{run / 'model.keras'} is complete and its report is not: writing the report")
        model.load_weights(run / "model.keras")
        evaluators = run_evaluators(keras_infer(model), tasks, pipeline.evaluation_batches(val_examples, tasks, data.batch_size))
        write_report(run, model, evaluators, val_examples, recipe, time.perf_counter() - started)
        return run

    with strategy.scope():
        engine = compile_for_training(model, recipe, steps * epochs)
    evaluation = TaskEvaluation(tasks, pipeline.evaluation_batches(val_examples, tasks, data.batch_size))
    sampling = DynamicSampling.for_recipe(recipe, tasks)  # None unless data.mixing.weights: dynamic
    if sampling is not None and snapshot is not None and "sampling" in snapshot.metadata:
        sampling.set_state(snapshot.metadata["sampling"])  # before the stream below draws a batch
    best = BestCheckpoint(own / BEST, tasks, train.best.metrics, train.best.references, save_model)
    callbacks = [
        evaluation,  # first: it adds val_<task>_<metric> to the logs the others record
        StopOnNaN(own),  # before anything that saves weights
        best,
    ]
    plateau = None
    if engine is not None:
        if train.plateau:
            plateau = TaskPlateau(engine, train.plateau, tasks)
            callbacks.append(plateau)
        if train.balance.method == "dwa":
            callbacks.append(DWAUpdate(engine, train.balance.dwa_temperature))
    callbacks += [
        HistoryLog(own / "history.csv", done),
        keras.callbacks.TensorBoard(str(own / "logs"), profile_batch=0),
        RunBackup(own / BACKUP, snapshot, engine, plateau, best, sampling),
        *extra_callbacks,
    ]
    if sampling is not None:
        callbacks.insert(1, sampling)  # right after TaskEvaluation, whose metrics it reads
    batches = training.batches(train_sources, dynamic=sampling.probabilities if sampling else None)
    if train.diagnostics_every and worker.is_chief:
        callbacks.append(diagnostics_callback(training, train_sources, tasks, train.diagnostics_every, own))
    # Resuming: skip the batches the finished epochs consumed, so the data order is the one an
    # uninterrupted run sees.
    batches = batches.skip(done * steps)
    model.fit(
        batches,
        initial_epoch=done,
        epochs=epochs,
        steps_per_epoch=steps,
        validation_data=pipeline.validation_batches(val_examples, tasks, data.batch_size),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles
    )
    finetune_heads(model, recipe, batches, steps, pipeline.validation_batches(val_examples, tasks, data.batch_size),
                   [evaluation, keras.callbacks.CSVLogger(str(own / "finetune_history.csv"))], verbose)
    save_model(model, own / "model.keras")  # every worker saves (it may involve collective ops)
    if not worker.is_chief:
        remove_scratch(run, worker)
        return run
    evaluators = evaluation.last_evaluators or run_evaluators(
        keras_infer(model), tasks, pipeline.evaluation_batches(val_examples, tasks, data.batch_size)
    )
    write_report(run, model, evaluators, val_examples, recipe, time.perf_counter() - started)
    atomic.retire(run / BACKUP)  # last: until here a rerun resumes and finishes the report
    remove_scratch(run, worker)
    return run


def diagnostics_callback(training, sources, tasks: dict, every: int, folder: Path):
    """`TrainingDiagnostics` on a copy of the training stream, with the anchors' fit to the
    training boxes (of up to 500 examples) measured once."""
    from mtl_tf.train.diagnostics import TrainingDiagnostics, anchor_fit

    callback = TrainingDiagnostics(training.batches(sources).repeat(), tasks, every, folder)
    examples = pipeline.concatenated_examples(sources).take(500).as_numpy_iterator()
    boxes = {n: [] for n, t in tasks.items() if t.type == "detection"}
    for example in examples:
        for name in boxes:
            if example[tasks[name].has_key]:
                boxes[name].append(example[tasks[name].key("boxes")])
    callback.static = {name: anchor_fit(tasks[name], found) for name, found in boxes.items()}
    return callback


BEST = "best.keras"
MULTI_WORKER = ("multi_worker", "multi_worker_mirrored")


def build_strategy(name: str) -> tf.distribute.Strategy:
    """The recipe's tf.distribute strategy ('none': TensorFlow's default, one device)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name in MULTI_WORKER:
        return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def single_task_recipe(recipe: Recipe, task: str | None = None) -> Recipe:
    """The recipe with only `task` (default: its `train.single_task`; see `restrict_tasks`), its
    examples in one shuffled stream and no teachers; everything else (backbone, neck, ...) as it is."""
    name = task or recipe.train.single_task
    raw = restrict_tasks(recipe, [name]).to_dict()
    raw["train"].update(single_task=name, teachers={})
    raw["data"]["mixing"] = None  # one shuffled stream of the examples labelled for the task
    return recipe_from_dict(raw)


def labelled_only(examples, task) -> pipeline.SourceExamples:
    """The examples labelled for `task`, counted (one pass over the cache)."""
    kept = examples.filter(lambda ex: ex[task.has_key])
    count = int(kept.reduce(0, lambda n, _: n + 1))
    if count == 0:
        raise RecipeError(f"train.single_task: no example is labelled for {task.name}")
    return pipeline.SourceExamples(kept.apply(tf.data.experimental.assert_cardinality(count)), count)


def engine_summary(train, batch_size: int, tasks: dict) -> str:
    sizes = ", ".join(f"{g} {train.accumulate.get(g, batch_size)}" for g in ["trunk", *tasks])
    return f"accumulate {sizes}; balance {train.balance.method}"


def save_model(model: keras.Model, path: Path) -> None:
    """Write to a temporary file first, so an interrupted save never replaces a good model."""
    with atomic.replacing(path) as tmp:
        model.save(tmp)


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
    plot_curves(read_history(run / "history.csv"), model.tasks, run / "curves.png")
    if recipe.train.num_overlays:
        predictor = keras_predictor(model, run / "model.keras", recipe)
        write_prediction_grid(predictor, val_examples, recipe.train.num_overlays, run / "predictions.png")
    atomic.write_text(run / "metrics.json", json.dumps(summary, indent=2))  # last: the report is complete
    print(f"final validation metrics\n{format_results(results)}\nrun folder: {run}")
