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
    from mtl_tf.bench.memory import MeasurementError
    from mtl_tf.demo import DemoError
    from mtl_tf.config import RecipeError
    from mtl_tf.data.cache import CacheError
    from mtl_tf.data.example import DataError
    from mtl_tf.evaluate.job import EvaluationError
    from mtl_tf.export.tflite import ExportError
    from mtl_tf.inference import ModelLoadError
    from mtl_tf.predict import InputError
    from mtl_tf.train.callbacks import TrainingDiverged
    from mtl_tf.train.cluster import ClusterError
    from mtl_tf.train.fit import RunFolderError

    return (RecipeError, TrainingDiverged, DataError, RunFolderError, FileNotFoundError, ModelLoadError,
            EvaluationError, InputError, ExportError, CacheError, MeasurementError, ClusterError, DemoError)


def user_error(err: Exception) -> Exception | None:
    """The problem with the user's input behind `err`, or None for a bug: `err` itself when it
    is one of the project's input errors, or the DataError that made TensorFlow raise `err`
    while reading examples (TensorFlow wraps it in an opaque error)."""
    if isinstance(err, _user_errors()):
        return err
    from mtl_tf.data.pipeline import data_error_behind

    return data_error_behind(err)


class _Commands(click.Group):
    """The command group: every command (and sub-group) runs under one error handler that
    shows problems with the user's input as one clear message, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:  # noqa: BLE001  (re-raised unless it is the user's input)
            found = user_error(err)
            if found is None:
                raise
            raise _UserError(str(found)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--teacher", "teachers", multiple=True, metavar="TASK=RUN",
              help="Distillation: RUN's model labels the train examples lacking TASK's labels (train.teachers; repeatable).")
@click.option("--workers", metavar="HOST:PORT,...",
              help="Train across machines: every worker's address, the same list on each (sets TF_CONFIG and "
              "train.strategy=multi_worker).")
@click.option("--worker-index", type=click.IntRange(min=0), help="This machine's index in --workers (0: the chief).")
def fit(recipe, out, epochs, overrides, quiet, single_task, teachers, workers, worker_index):
    """Train the multitask model described by RECIPE and write a run folder."""
    import os

    from mtl_tf.recipe import load_recipe

    overrides = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
    overrides += [f"train.single_task={single_task}"] if single_task else []
    for teacher in teachers:
        task, sep, run = teacher.partition("=")
        if not sep or not task or not run:
            raise click.UsageError(f"--teacher {teacher!r}: expected TASK=RUN_FOLDER")
        overrides.append(f"train.teachers.{task}={run}")
    if (workers is None) != (worker_index is None):
        raise click.UsageError("--workers and --worker-index go together")
    if workers is not None:
        from mtl_tf.train.cluster import cluster_config

        config = cluster_config([w.strip() for w in workers.split(",") if w.strip()], worker_index)
        os.environ["TF_CONFIG"] = json.dumps(config)  # read by MultiWorkerMirroredStrategy
        overrides.append("train.strategy=multi_worker")
    config = load_recipe(recipe, overrides)
    from mtl_tf.train.fit import run_fit

    run_fit(config, out, verbose=2 if quiet else "auto")


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
    from mtl_tf.evaluate.job import format_results, run_evaluate
    from mtl_tf.inference import load_predictor

    predictor = load_predictor(model, recipe)
    report = Path(report) if report else _default_report(predictor, split)
    results = run_evaluate(predictor, split, report, batch_size=batch_size)
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
    from mtl_tf.inference import load_predictor
    from mtl_tf.predict import run_predict

    writer = run_predict(load_predictor(model, recipe), list(inputs), Path(out), split, min_score)
    counts = [f"{len(records)} {name} records in {writer.records_path(name).name}"
              for name, records in writer.records.items()]
    click.echo("; ".join(counts + [f"outputs in {out}"]))


@main.command()
@click.argument("run", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Export folder (default: <run>/export).")
@click.option("--int8", is_flag=True, help="Also full int8 (integer input, int8 outputs), calibrated on val images.")
@click.option("--int8-input", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True,
              help="Image input of the full-int8 artifacts (--int8, --qat): uint8 pixels, or int8 pixel - 128.")
@click.option("--fp16", is_flag=True, help="Also float16 weights.")
@click.option("--dynamic", is_flag=True, help="Also dynamic-range (int8 weights, float activations).")
@click.option("--qat", "qat_epochs", type=click.IntRange(min=1), default=None, metavar="EPOCHS",
              help="Also quantization-aware fine-tune for EPOCHS, then full int8 (qat_int8).")
@click.option("--onnx", is_flag=True, help="Also ONNX (tf2onnx), the input of TensorRT on Jetson.")
@click.option("--nms/--no-nms", default=False, show_default=True,
              help="Detection decode + NMS in the graph (builtin ops), or decoded boxes and scores for the app.")
@click.option("--calibration", "calibration_images", type=click.IntRange(min=1),
              help="int8 calibration images from val (default: the recipe's export.calibration_images).")
@click.option("--verify", is_flag=True,
              help="Evaluate every TFLite artifact with LiteRT on val; exit 1 when a drop exceeds export.max_drop.")
@click.option("--web", is_flag=True,
              help="Also web_int8: int8 compute, uint8 image in, float outputs (LiteRT.js cannot load int8 outputs).")
def export(run, out, int8, int8_input, fp16, dynamic, qat_epochs, onnx, nms, calibration_images, verify, web):
    """Export a trained model: TFLite (builtin ops only), ONNX, each with its metadata.json."""
    from mtl_tf.export.job import run_export
    from mtl_tf.inference import load_predictor

    predictor = load_predictor(run)
    if predictor.kind != "keras":
        raise _UserError(f"{run}: export needs a run folder or a .keras file, not a {predictor.kind} artifact")
    folder = Path(out) if out else predictor.path.parent / "export"
    quantizations = ["float32"] + [q for q, on in [("float16", fp16), ("dynamic", dynamic), ("int8", int8)] if on]
    run_export(predictor.model, predictor.recipe, folder, quantizations, nms, onnx, qat_epochs or 0,
               calibration_images, verify, log=click.echo, int8_input=int8_input, web=web)
    click.echo(f"artifacts and their metadata.json in {folder}")


@main.command()
@click.argument("export_dir", metavar="EXPORT_DIR", type=click.Path())
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 to open the demo from a phone on the same network.")
@click.option("--bench", "bench_dir", type=click.Path(file_okay=False),
              help="An `mtl-tf bench --runtimes tflite_fp32` folder: open /?bench=1 to time its multitask model "
              "against its single-task models in the browser.")
@click.option("--cert", type=click.Path(dir_okay=False), help="PEM certificate: serve HTTPS (camera on a phone).")
@click.option("--key", type=click.Path(dir_okay=False), help="PEM private key of --cert.")
def demo(export_dir, port, host, bench_dir, cert, key):
    """Serve the browser demo (LiteRT.js) on an export: camera, video or image, in any browser."""
    from mtl_tf.demo import make_server, urls

    if key and not cert:
        raise click.UsageError("--key goes with --cert")
    server = make_server(Path(export_dir), host, port, Path(bench_dir) if bench_dir else None, cert, key)
    click.echo(f"artifacts: {', '.join(server.models)}")
    for url in urls(server, https=bool(cert)):
        click.echo(f"open {url}" + (f"  (benchmark: {url}?bench=1)" if bench_dir else ""))
    click.echo("Ctrl-C stops the server")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ---------------------------------------------------------------- data


@main.group("data")
def data_group():
    """Cache, inspect and benchmark a recipe's data."""


_SPLIT_CHOICE = click.Choice(["train", "val", "test"])
_set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override any recipe key (repeatable).")


@data_group.command("prepare")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--split", "splits", multiple=True, type=_SPLIT_CHOICE, help="Splits to cache (default: all).")
@click.option("--shard-size", type=click.IntRange(min=1), default=512, show_default=True, help="Examples per shard.")
@click.option("--image-format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True,
              help="png is lossless; jpeg (quality 95) is smaller.")
@_set_option
def data_prepare(recipe, splits, shard_size, image_format, overrides):
    """Cache the recipe's sources to sharded TFRecords under data.cache (resumable)."""
    from mtl_tf.recipe import load_recipe
    from mtl_tf.data.prepare import prepare as prepare_cache

    config = load_recipe(recipe, overrides)
    summaries = prepare_cache(config, splits or ("train", "val", "test"), shard_size, image_format)
    for s in summaries:
        note = " (already complete)" if s["already_complete"] else ""
        click.echo(f"{s['split']}: {s['count']} examples in {s['shards']} shards, {s['folder']}{note}")


@data_group.command("inspect")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--split", "splits", multiple=True, type=_SPLIT_CHOICE, help="Splits to inspect (default: all).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="PNG of the counts (default: <recipe name>-data.png).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the counts here.")
@_set_option
def data_inspect(recipe, splits, plot_path, json_path, overrides):
    """Per-source counts: images, images labelled per task, and each task's label statistics."""
    from mtl_tf.recipe import load_recipe
    from mtl_tf.data.stats import format_stats, inspect_recipe, plot_stats

    config = load_recipe(recipe, overrides)
    entries = inspect_recipe(config, splits or ("train", "val", "test"))
    plot_path = Path(plot_path or f"{config.name}-data.png")
    plot_stats(entries, plot_path)
    if json_path:
        Path(json_path).write_text(json.dumps(entries, indent=2))
    from mtl_tf.tasks import build_tasks

    click.echo(format_stats(entries, build_tasks(config.tasks, config.data.image_size)))
    click.echo(f"plot: {plot_path}")


@data_group.command("bench")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--batches", type=click.IntRange(min=1), default=10, show_default=True, help="Batches per round.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True,
              help="Untimed batches before timing (and before each pipeline round).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures here.")
@_set_option
def data_bench(recipe, batches, rounds, warmup, json_path, overrides):
    """Input-pipeline throughput beside the model's training step, timed round-robin."""
    from mtl_tf.recipe import load_recipe
    from mtl_tf.data.bench import bench_data, format_bench

    result = bench_data(load_recipe(recipe, overrides), batches=batches, rounds=rounds, warmup=warmup)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    click.echo(format_bench(result))


_BENCH_RUNTIMES = ("keras", "tflite_fp32", "tflite_int8", "onnx")
_DEFAULT_BENCH_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "bench_resnet50.yaml"


def _runtime_list(ctx, param, value):
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in _BENCH_RUNTIMES]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {','.join(_BENCH_RUNTIMES)}. Received: {value!r}")
    return chosen


@main.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the results to this file.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Timed runs per contender.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed rounds first.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU threads for Keras (intra-op), LiteRT and ONNX Runtime.")
@click.option("--runtimes", default=",".join(_BENCH_RUNTIMES), show_default=True, callback=_runtime_list,
              help="Comma-separated runtimes.")
@click.option("--calibration", type=click.IntRange(min=1), default=8, show_default=True,
              help="Validation images to calibrate the int8 models on.")
@click.option("--out", type=click.Path(file_okay=False), help="Bench folder (default: runs/bench/<recipe name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key (repeatable).")
def bench(recipe, json_path, runs, warmup, threads, runtimes, calibration, out, overrides):
    """Trunk, single-task models, the naive set and the multitask model side by side:
    latency, peak RSS, size, parameters and MACs per runtime (default recipe: bench_resnet50)."""
    from mtl_tf.recipe import load_recipe

    recipe = recipe or _DEFAULT_BENCH_RECIPE
    config = load_recipe(recipe, list(overrides))
    from mtl_tf.bench.job import run_bench
    from mtl_tf.bench.report import markdown

    folder = Path(out) if out else Path("runs") / "bench" / config.name
    command = " ".join(["mtl-tf", *sys.argv[1:]]) if sys.argv[0].endswith("mtl-tf") else None
    results = run_bench(config, folder, runtimes, runs=runs, warmup=warmup, threads=threads,
                        calibration=calibration, command=command, log=click.echo)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
    click.echo(markdown(results))
    click.echo(f"wrote {folder / 'bench.md'}, {folder / 'bench.json'}, {folder / 'bench.png'}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Study folder (default: runs/<recipe name>-study, -study-system for --budget system).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs (the budget of every run).")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), help="Override train.steps_per_epoch.")
@click.option("--budget", type=click.Choice(["run", "system"]), default="run", show_default=True,
              help="run: every run trains the recipe's steps; system: the multitask runs train the steps of "
              "all single-task runs together (the set they replace).")
@click.option("--variants", default="", metavar="V1,V2+V3,...",
              help="Variants of plain multitask to add, each a '+'-joined set of remedies (focal, sigmoid, "
              "sigmoid_focal, balanced, ohem, normalized, pcgrad, cagrad, distill: teachers are the study's "
              "single-task runs) or task sampling weights (uniform, proportional, annealed, dynamic: needs mixing "
              "mode sample or per_batch_task).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key (repeatable).")
def study(recipe, out, epochs, steps_per_epoch, budget, variants, overrides):
    """Each task's single-task model, plain multitask, engine multitask and the --variants on RECIPE, same budget."""
    from mtl_tf.recipe import load_recipe

    overrides = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
    overrides += [f"train.steps_per_epoch={steps_per_epoch}"] if steps_per_epoch else []
    config = load_recipe(recipe, overrides)
    from mtl_tf.train.study import run_study

    folder = Path(out) if out else Path("runs") / f"{config.name}-study{'-system' if budget == 'system' else ''}"
    extra = [v.strip() for v in variants.split(",") if v.strip()]
    try:
        from mtl_tf.train.study import study_variants

        study_variants(config, budget, extra, folder)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    run_study(config, folder, budget=budget, verbose=2, extra=extra)
    click.echo((folder / "study.md").read_text())
    click.echo(f"study folder: {folder} (study.md, study.png, one run folder per variant)")


def _task_counts(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"a comma-separated list of task counts, e.g. 2,4,6. Received: {value!r}") from None


def _bench_task_counts(config, counts, settings, steps, device, json_path, plot_path):
    from mtl_tf.train.task_memory import SETTINGS, markdown, plot, task_count_memory

    chosen = [s.strip() for s in (settings or ",".join(SETTINGS)).split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SETTINGS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {','.join(SETTINGS)}. Received: {settings!r}", param_hint="--settings")
    try:
        results = task_count_memory(config, counts, steps, chosen)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    results["device"] = device
    click.echo(f"device: {device}; tasks in order: {', '.join(results['tasks'])}; training memory = allocator "
               f"peak over {steps} steps after a first one, step time = median, one fresh process per cell")
    click.echo(markdown(results))
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    if plot_path:
        plot(results, plot_path)
        click.echo(f"plot: {plot_path}")


@main.command("bench-engine")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--rounds", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True, help="Steps per round and per memory probe.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the numbers to this file.")
@click.option("--task-counts", callback=_task_counts, metavar="N,N,...",
              help="Instead: training memory of the recipe's first N tasks for each N (e.g. 2,4,6), plain step "
                   "vs engine joint / sequential head backward, with and without recompute lower.")
@click.option("--settings", "settings", metavar="S,S,...", help="--task-counts: only these settings (default: "
              "plain,joint,sequential,joint+lower,sequential+lower).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="--task-counts: also plot it (PNG).")
def bench_engine(recipe, rounds, steps, overrides, json_path, task_counts, settings, plot_path):
    """Training-step overhead of the engine vs plain fit, and the recompute memory saving
    (or, with --task-counts, training memory against the number of tasks)."""
    from mtl_tf.recipe import load_recipe

    config = load_recipe(recipe, list(overrides))
    import tensorflow as tf

    from mtl_tf.train.bench import format_report, recompute_memory, step_overhead

    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU ({len(gpus)})" if gpus else f"CPU ({__import__('os').cpu_count()} cores)"
    if task_counts:
        _bench_task_counts(config, task_counts, settings, max(steps, 3), device, json_path, plot_path)
        return
    if plot_path or settings:
        raise click.UsageError("--plot and --settings are for --task-counts")
    overhead = step_overhead(config, rounds, steps)
    memory = recompute_memory(config, max(steps, 3))
    click.echo(format_report(overhead, memory, device))
    if json_path:
        Path(json_path).write_text(json.dumps({"device": device, "overhead": overhead, "recompute": memory}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
