"""The contenders built from a recipe, and their artifacts cached in the bench folder.

Contenders: `trunk` (the shared part: backbone and neck, image -> C3, C4, C5), one single-task
model per task (what `fit` trains for that task alone: same backbone and neck + that task's head),
and `multitask` (the recipe's model). The naive set is not a
model: it runs the single-task models one after the other. Weights are the recipe's backbone
weights (random init for `weights: null`) and untrained heads: enough for speed, memory and size.

Artifacts live in `<out>/artifacts-<hash>/`, the hash covering everything they depend on, so a
rerun with the same recipe reuses them: `<name>.keras`, `<name>.float32.tflite`, `<name>.int8.tflite`,
`<name>.onnx` (the float serving graph through tf2onnx, as `mtl-tf export --onnx` writes it for
Jetson) and `stats.json` (parameters and MACs per contender).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mtl_tf.config import Recipe

MULTITASK = "multitask"
TRUNK = "trunk"
NAIVE = "naive"
# Runtime -> the artifact file suffix it runs.
RUNTIMES = {"keras": ".keras", "tflite_fp32": ".float32.tflite", "tflite_int8": ".int8.tflite", "onnx": ".onnx"}
_QUANTIZATION = {"tflite_fp32": "float32", "tflite_int8": "int8"}
_CONVERTED = (*_QUANTIZATION, "onnx")  # the runtimes whose artifact is converted from a SavedModel


def contender_names(recipe: Recipe) -> list[str]:
    """Every contender, in table order (the naive set included)."""
    return [TRUNK, *recipe.tasks, NAIVE, MULTITASK]


def model_names(recipe: Recipe) -> list[str]:
    """The contenders that are models: the trunk, one per task and the multitask model."""
    return [TRUNK, *recipe.tasks, MULTITASK]


def members(recipe: Recipe, name: str) -> list[str]:
    """The models a contender runs: the single-task models for the naive set, else itself."""
    return list(recipe.tasks) if name == NAIVE else [name]


def build_models(recipe: Recipe) -> dict:
    """Keras models of the trunk, each single-task model and the multitask model.

    A single-task model is what `fit` builds for that task alone (`train.single_task`): the
    recipe's backbone, neck, ... and one head. The trunk is the multitask model's shared part
    (image -> the taps every head reads: backbone and neck; with `split_last_stage`, without the
    last stage each task copies), so MACs(multitask) = MACs(trunk) + the heads' MACs."""
    import keras

    from mtl_tf.train.fit import build_model, single_task_recipe

    keras.utils.set_random_seed(recipe.train.seed)
    multitask = build_model(recipe, name=MULTITASK)
    graph = multitask.engine_graph
    taps = dict(zip(graph.tap_names, graph.trunk_model.outputs))
    models = {TRUNK: keras.Model(graph.trunk_model.inputs, taps, name=TRUNK)}
    for task in recipe.tasks:
        models[task] = build_model(single_task_recipe(recipe, task), name=task)
    models[MULTITASK] = multitask
    return models


# Bumped whenever the conversion changes, so cached artifacts of an older conversion are not timed.
ARTIFACT_FORMAT = 10  # 2: fixed batch-1 signature; 3: float model input; 4: int8 input CAST + QUANTIZE; 5: float L2 norm;
# 6: multitask and single-task models through export's serving graph (per-kind outputs);
# 7: single-task models and the trunk carry the recipe's neck (ONNX artifacts added without a bump);
# 8: the detector's outputs taken before its raw join, softmax float in int8, box decode without slices
# 9: box decode without operands broadcast along the last axis alone
# 10: SSD L2 norms as mean / rsqrt / products, kept float in int8 (XNNPACK runs them)


def artifact_folder(recipe: Recipe, out: Path, calibration: int) -> Path:
    """`out/artifacts-<hash of the model sections, input size, seed and calibration data>`."""
    import tensorflow as tf

    import mtl_tf

    key = {
        "model": recipe.model.model_dump(mode="json"),
        "tasks": {n: c.model_dump(mode="json") for n, c in recipe.tasks.items()},
        "image_size": list(recipe.data.image_size),
        "seed": recipe.train.seed,
        "calibration": [calibration, [s.model_dump(mode="json") for s in recipe.data.val]],
        "versions": [mtl_tf.__version__, tf.__version__],
        "artifact_format": ARTIFACT_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(out) / f"artifacts-{digest}"


def calibration_images(recipe: Recipe, count: int) -> np.ndarray:
    """The first `count` images of the recipe's validation split, uint8 [count, H, W, 3]."""
    from mtl_tf.data.pipeline import ExampleReader
    from mtl_tf.tasks import build_tasks

    reader = ExampleReader(recipe.data.val, build_tasks(recipe.tasks, recipe.data.image_size), recipe.data.image_size)
    images = []
    for example in reader:
        images.append(example["image"])
        if len(images) == count:
            break
    return np.stack(images)


def prepare_artifacts(recipe: Recipe, folder: Path, runtimes: list[str], images: np.ndarray, log=print) -> dict:
    """Build and convert what `folder` lacks for `runtimes`; returns the stats.json content."""
    from mtl_tf.bench.flops import count_macs
    from mtl_tf.export.onnx import convert_onnx
    from mtl_tf.export.serving import export_serving_model
    from mtl_tf.export.tflite import convert_tflite, export_saved_model, write_atomic
    from mtl_tf.train.fit import save_model

    folder.mkdir(parents=True, exist_ok=True)
    names = model_names(recipe)
    stats_path = folder / "stats.json"
    if stats_path.is_file() and all((folder / f"{n}.keras").is_file() for n in names):
        stats, models = json.loads(stats_path.read_text()), None
    else:
        log(f"building {', '.join(names)} ({recipe.model.backbone.name}, {list(recipe.data.image_size)})")
        models = build_models(recipe)
        stats = {n: {"params": int(m.count_params()), "macs": count_macs(m)} for n, m in models.items()}
        for name, model in models.items():
            save_model(model, folder / f"{name}.keras")
        write_atomic(stats_path, json.dumps(stats, indent=1).encode())

    todo = [(n, r) for n in names for r in runtimes if r in _CONVERTED and not artifact(folder, n, r).is_file()]
    for name in dict.fromkeys(n for n, _ in todo):
        model = models[name] if models else _load(folder / f"{name}.keras")
        work = Path(tempfile.mkdtemp(prefix="mtl_tf_bench_"))
        try:
            for runtime in [r for n, r in todo if n == name]:
                started = time.perf_counter()
                log(f"converting {name} to {runtime} ...")
                quantization = _QUANTIZATION.get(runtime, "float32")
                int8_input = "uint8" if quantization == "int8" else None
                if hasattr(model, "tasks"):  # the very serving graph `mtl-tf export` ships
                    saved = export_serving_model(model, work / runtime, int8_input=int8_input)
                else:  # the trunk: its taps
                    saved = export_saved_model(model, work / runtime, int8_input)
                if runtime == "onnx":
                    data = convert_onnx(saved)
                else:
                    data = convert_tflite(saved, quantization, lambda: (image[None] for image in images))
                write_atomic(artifact(folder, name, runtime), data)
                log(f"  {artifact(folder, name, runtime).name}: {len(data) / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return stats


def artifact(folder: Path, name: str, runtime: str) -> Path:
    return Path(folder) / f"{name}{RUNTIMES[runtime]}"


def _load(path: Path):
    import keras

    import mtl_tf.model.multitask  # noqa: F401  (registers the custom classes)

    return keras.models.load_model(path)
