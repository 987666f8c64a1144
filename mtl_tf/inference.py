"""Load anything `evaluate` and `predict` accept: a run folder, a `.keras` file, a SavedModel
folder or a `.tflite` file, behind one interface (`Predictor.infer`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mtl_tf.config import Recipe, RecipeError
from mtl_tf.recipe import load_recipe, recipe_from_dict


class ModelLoadError(ValueError):
    """The given path is not a model mtl-tf can load; the message says why."""


@dataclass
class Predictor:
    kind: str  # "keras" | "saved_model" | "tflite"
    path: Path
    tasks: dict  # name -> Task
    image_size: tuple[int, int]
    # uint8 images [B, H, W, 3] -> {task: raw output}; for an artifact with per-kind outputs,
    # {task: {kind: float array}} (dequantized), which `Task.postprocess_exported` decodes.
    infer: Callable[[np.ndarray], dict]
    recipe: Recipe | None
    model: object = None  # the Keras model, for kind "keras"

    def predict(self, images: np.ndarray) -> dict:
        """{task: post-processed predictions} of a batch of model-sized images."""
        from mtl_tf.evaluate.runner import predict_task

        raw = self.infer(images)
        return {name: predict_task(task, raw[name]) for name, task in self.tasks.items()}


def load_predictor(path: str | Path, recipe: str | Path | None = None) -> Predictor:
    """Open a run folder, `.keras`, SavedModel folder or `.tflite`; `recipe` overrides the
    recipe found beside the model (it supplies the data for evaluation)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "model.keras").is_file():
        return _keras(path / "model.keras", recipe or path / "recipe.yaml")
    if path.suffix == ".keras":
        return _keras(path, recipe or _beside(path, "recipe.yaml"))
    if path.suffix == ".tflite":
        return _from_metadata(path, "tflite", lambda tasks: _tflite_infer(path, tasks), recipe)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return _from_metadata(path / "saved_model.pb", "saved_model", lambda tasks: _saved_model_infer(path, tasks), recipe)
    raise ModelLoadError(
        f"{path}: not a run folder (with model.keras), a .keras file, a SavedModel folder or a .tflite file"
    )


def _beside(path: Path, name: str) -> Path | None:
    for folder in (path.parent, path.parent.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_recipe(recipe) -> Recipe | None:
    if recipe is None:
        return None
    if isinstance(recipe, dict):
        return recipe_from_dict(recipe, origin="metadata.json recipe")
    return load_recipe(recipe)


def keras_predictor(model, path: Path | None = None, recipe: Recipe | None = None) -> Predictor:
    """A Predictor around an in-memory multitask Keras model."""
    from mtl_tf.evaluate.runner import keras_infer

    forward = keras_infer(model)
    infer = lambda images: {k: np.asarray(v) for k, v in forward(images).items()}  # noqa: E731
    return Predictor("keras", path, model.tasks, model.image_size, infer, recipe, model)


def _keras(path: Path, recipe) -> Predictor:
    import keras

    import mtl_tf.model.multitask  # noqa: F401  (registers the classes a .keras file names)

    try:
        model = keras.models.load_model(path)
    except Exception as err:  # zip, h5 and deserialization errors all land here
        raise ModelLoadError(f"{path}: cannot load the Keras model: {err}") from None
    if not hasattr(model, "tasks"):
        raise ModelLoadError(f"{path}: a Keras model, but not an mtl-tf multitask model")
    return keras_predictor(model, path, _load_recipe(recipe))


def _from_metadata(path: Path, kind: str, make_infer, recipe) -> Predictor:
    from mtl_tf.export.metadata import read_metadata
    from mtl_tf.tasks import build_tasks

    meta = read_metadata(path.parent)
    image_size = tuple(meta["input"]["shape"][1:3])
    tasks = build_tasks({n: t["config"] for n, t in meta["tasks"].items()}, image_size)
    try:
        resolved = _load_recipe(recipe) if recipe is not None else _load_recipe(meta.get("recipe"))
    except RecipeError as err:
        raise ModelLoadError(str(err)) from None
    return Predictor(kind, path, tasks, image_size, make_infer(tasks), resolved)


def group_outputs(outputs: dict, tasks) -> dict:
    """Artifact outputs by name -> {task: raw output} (outputs named after a task) or
    {task: {kind: array}} (per-kind outputs `<task>_<kind>`)."""
    from mtl_tf.export.metadata import output_task_kind

    grouped: dict = {}
    for name, value in outputs.items():
        task, kind = output_task_kind(name, tasks)
        grouped.setdefault(task, {})[kind] = value
    return {task: kinds["raw"] if set(kinds) == {"raw"} else kinds for task, kinds in grouped.items()}


def dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    """A LiteRT output as float: real = scale * (q - zero_point) for quantized tensors."""
    scale, zero_point = detail["quantization"]
    if scale == 0 or not np.issubdtype(value.dtype, np.integer) or value.dtype == np.int32:
        return value
    return scale * (value.astype(np.float32) - zero_point)


def quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """uint8 pixels as an artifact's image input: q = round(pixel / scale) + zero_point for a
    quantized input (an int8 input with scale 1, zero point -128 takes pixel - 128)."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale == 0:
        return np.ascontiguousarray(images, dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(images, np.float32) / scale) + zero_point
    return np.ascontiguousarray(np.clip(q, info.min, info.max), dtype)


def _tflite_infer(path: Path, tasks):
    from mtl_tf.export.litert import open_tflite

    try:
        runner, _ = open_tflite(path)
    except Exception as err:
        raise ModelLoadError(f"{path}: cannot open with LiteRT: {err}") from None
    details, image = runner.get_output_details(), runner.get_input_details()["image"]
    fixed_batch = image["shape_signature"][0] == 1

    def run(images):
        out = runner(image=quantize_input(images, image))
        return {k: dequantize(v, details[k]) for k, v in out.items()}

    return _batched_infer(run, fixed_batch, tasks)


def _saved_model_infer(folder: Path, tasks):
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serve"]
    fixed_batch = serve.structured_input_signature[1]["image"].shape[0] == 1

    def run(images):
        return {k: v.numpy() for k, v in serve(image=tf.constant(images, tf.uint8)).items()}

    return _batched_infer(run, fixed_batch, tasks)


def _batched_infer(run, fixed_batch: bool, tasks):
    """`infer` from `run(images) -> {output name: array}`; edge artifacts take one image at a
    time, so a batch is run image by image and the outputs stacked."""

    def infer(images):
        if not fixed_batch:
            return group_outputs(run(images), tasks)
        per_image = [run(image[None]) for image in images]
        return group_outputs({k: np.concatenate([o[k] for o in per_image]) for k in per_image[0]}, tasks)

    return infer
