"""The `mtl-tf` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

import mtl_tf  # noqa: F401  (sets TensorFlow's environment before it is imported)


class _UserError(click.ClickException):
    """A problem with the user's input, shown as one clear message without a traceback."""


def _user_errors():
    from mtl_tf.config import RecipeError
    from mtl_tf.data.pipeline import DataError
    from mtl_tf.evaluate.job import EvaluationError
    from mtl_tf.export.tflite import ExportError
    from mtl_tf.inference import ModelLoadError
    from mtl_tf.predict import InputError
    from mtl_tf.train.callbacks import TrainingDiverged
    from mtl_tf.train.fit import RunFolderError

    return (RecipeError, TrainingDiverged, DataError, RunFolderError, FileNotFoundError, ModelLoadError, EvaluationError,
            InputError, ExportError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtl-tf")
def main():
    """Multitask vision models for real-time embedded deployment."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/<recipe name>).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any recipe key, e.g. --set data.batch_size=8 (repeatable).")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of a progress bar.")
@click.option("--single-task", metavar="TASK",
              help="Train only TASK, on the examples labelled for it, with the same budget (train.single_task).")
def fit(recipe, out, epochs, overrides, quiet, single_task):
    """Train the multitask model described by RECIPE and write a run folder."""
    from mtl_tf.config import load_recipe

    overrides = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
    overrides += [f"train.single_task={single_task}"] if single_task else []
    try:
        config = load_recipe(recipe, overrides)
        from mtl_tf.train.fit import run_fit

        run_fit(config, out, verbose=2 if quiet else "auto")
    except _user_errors() as err:
        raise _UserError(str(err)) from None


def _default_report(predictor, split: str) -> Path:
    folder = predictor.path.parent if predictor.path.suffix else predictor.path
    return folder / f"eval-{split}"


@main.command()
@click.argument("model", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the metrics to this file.")
@click.option("--recipe", type=click.Path(dir_okay=False), help="Recipe for the data (default: the model's own).")
@click.option("--report", type=click.Path(file_okay=False),
              help="Report folder (default: eval-<split> beside the model).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
def evaluate(model, split, json_path, recipe, report, batch_size):
    """Per-task metrics of a run folder, .keras, SavedModel or .tflite on a recipe split."""
    try:
        from mtl_tf.evaluate.job import format_results, run_evaluate
        from mtl_tf.inference import load_predictor

        predictor = load_predictor(model, recipe)
        report = Path(report) if report else _default_report(predictor, split)
        results = run_evaluate(predictor, split, report, batch_size=batch_size)
    except _user_errors() as err:
        raise _UserError(str(err)) from None
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
    click.echo(f"{predictor.kind} model {predictor.path}, split {split}")
    click.echo(format_results(results))
    click.echo(f"report: {report}")


@main.command()
@click.argument("model", metavar="RUN_OR_MODEL", type=click.Path())
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--split", type=click.Choice(["val", "test", "train"]), help="Predict on a recipe split too.")
@click.option("--recipe", type=click.Path(dir_okay=False), help="Recipe for --split (default: the model's own).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Detections below this score are not drawn or listed.")
def predict(model, inputs, out, split, recipe, min_score):
    """Overlays, class-id masks and detections.json for image files, folders, videos or a split."""
    if not inputs and not split:
        raise click.UsageError("give INPUT files/folders/videos, or --split")
    try:
        from mtl_tf.inference import load_predictor
        from mtl_tf.predict import run_predict

        writer = run_predict(load_predictor(model, recipe), list(inputs), Path(out), split, min_score)
    except _user_errors() as err:
        raise _UserError(str(err)) from None
    click.echo(f"{len(writer.detections)} detections; outputs in {out}")


@main.command()
@click.argument("run", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Export folder (default: <run>/export).")
def export(run, out):
    """Export a trained model to TFLite (float32, builtin ops only) with its metadata.json."""
    try:
        from mtl_tf.export.job import export_artifact
        from mtl_tf.inference import load_predictor

        predictor = load_predictor(run)
        if predictor.kind != "keras":
            raise _UserError(f"{run}: export needs a run folder or a .keras file, not a {predictor.kind} artifact")
        model = predictor.model
        folder = Path(out) if out else predictor.path.parent / "export"
        recipe = predictor.recipe.to_dict() if predictor.recipe else None
        path = export_artifact(model, folder, "float32", recipe)
    except _user_errors() as err:
        raise _UserError(str(err)) from None
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.parent / 'metadata.json'}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Study folder (default: runs/<recipe name>-study).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs (the budget of every run).")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), help="Override train.steps_per_epoch.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key (repeatable).")
def study(recipe, out, epochs, steps_per_epoch, overrides):
    """Single-task detector and segmenter, plain multitask and engine multitask on RECIPE, same budget."""
    from mtl_tf.config import load_recipe

    overrides = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
    overrides += [f"train.steps_per_epoch={steps_per_epoch}"] if steps_per_epoch else []
    try:
        config = load_recipe(recipe, overrides)
        from mtl_tf.train.study import run_study

        folder = Path(out) if out else Path("runs") / f"{config.name}-study"
        run_study(config, folder, verbose=2)
    except _user_errors() as err:
        raise _UserError(str(err)) from None
    click.echo((folder / "study.md").read_text())
    click.echo(f"study folder: {folder} (study.md, study.png, one run folder per variant)")


@main.command("bench-engine")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--rounds", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True, help="Steps per round and per memory probe.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the numbers to this file.")
def bench_engine(recipe, rounds, steps, overrides, json_path):
    """Training-step overhead of the engine vs plain fit, and the recompute memory saving."""
    from mtl_tf.config import load_recipe

    try:
        config = load_recipe(recipe, list(overrides))
    except _user_errors() as err:
        raise _UserError(str(err)) from None
    import tensorflow as tf

    from mtl_tf.train.bench import format_report, recompute_memory, step_overhead

    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU ({len(gpus)})" if gpus else f"CPU ({__import__('os').cpu_count()} cores)"
    overhead = step_overhead(config, rounds, steps)
    memory = recompute_memory(config, max(steps, 3))
    click.echo(format_report(overhead, memory, device))
    if json_path:
        Path(json_path).write_text(json.dumps({"device": device, "overhead": overhead, "recompute": memory}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
