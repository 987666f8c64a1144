"""The `evaluate` job: one code path for a run folder, `.keras`, SavedModel or `.tflite`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtl_tf.data import pipeline
from mtl_tf.evaluate.runner import run_evaluators
from mtl_tf.inference import Predictor
from mtl_tf.report.plots import plot_overlays


class EvaluationError(ValueError):
    """Evaluation cannot run as asked (no recipe, empty split, ...)."""


def split_examples(predictor: Predictor, split: str):
    """The recipe's `split` examples as a dataset, with labels fitted to the predictor's tasks."""
    return pipeline.examples_dataset(split_reader(predictor, split))


def split_reader(predictor: Predictor, split: str) -> pipeline.ExampleReader:
    """The reader of the recipe's `split` sources for the predictor's tasks."""
    if predictor.recipe is None:
        raise EvaluationError(f"{predictor.path}: no recipe found beside the model; pass --recipe")
    sources = getattr(predictor.recipe.data, split)
    if not sources:
        raise EvaluationError(f"the recipe has no '{split}' sources (data.{split} is empty)")
    return pipeline.ExampleReader(sources, predictor.tasks, predictor.image_size)


def run_evaluate(
    predictor: Predictor, split: str = "val", report: Path | None = None, batch_size: int = 16,
    num_overlays: int = 6, progress: bool = True,
) -> dict:
    """{task: metrics} on the recipe's `split`; with `report`, also metrics.json and figures there."""
    examples = split_examples(predictor, split)
    batches = pipeline.evaluation_batches(examples, predictor.tasks, batch_size)
    evaluators = run_evaluators(predictor.infer, predictor.tasks, batches, progress=progress)
    results = {name: ev.result() for name, ev in evaluators.items()}
    if report is not None:
        report = Path(report)
        report.mkdir(parents=True, exist_ok=True)
        (report / "metrics.json").write_text(json.dumps(results, indent=2))
        for name, task in predictor.tasks.items():
            task.write_figures(evaluators[name], report)
        if num_overlays:
            write_prediction_grid(predictor, examples, num_overlays, report / "predictions.png")
    return results


def write_prediction_grid(predictor: Predictor, examples, count: int, path: Path) -> None:
    """Predictions next to ground truth for the first `count` examples."""
    batch = next(pipeline.evaluation_batches(examples.take(count), predictor.tasks, count).as_numpy_iterator())
    predictions = predictor.predict(batch["image"])
    truths, predicted = [], []
    for i in range(len(batch["image"])):
        tasks = predictor.tasks.items()
        truths.append({name: {k: v[i] for k, v in task.own(batch).items()} if batch[task.has_key][i] else None
                       for name, task in tasks})
        predicted.append({name: task.labels_from_prediction(predictions[name], i) for name, task in tasks})
    plot_overlays(batch["image"], truths, predicted, predictor.tasks, path)


def format_results(results: dict) -> str:
    """Scalar metrics per task, one line each."""
    lines = []
    for name, metrics in results.items():
        scalars = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, (float, np.floating)))
        lines.append(f"{name}: {scalars}")
    return "\n".join(lines)
