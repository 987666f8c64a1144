"""Load anything `evaluate` and `predict` accept: a run folder, a `.keras` file, a SavedModel
folder or a `.tflite` file, behind one interface (`Predictor.infer`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mtl_tf.config import Recipe, RecipeError, load_recipe, recipe_from_dict


class ModelLoadError(ValueError):
    """The given path is not a model mtl-tf can load; the message says why."""


@dataclass
class Predictor:
    kind: str  # "keras" | "saved_model" | "tflite"
    path: Path
    tasks: dict  # name -> Task
    image_size: tuple[int, int]
    infer: Callable[[np.ndarray], dict]  # uint8 images [B, H, W, 3] -> {task: raw output}
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
        return _from_metadata(path, "tflite", _tflite_infer(path), recipe)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return _from_metadata(path / "saved_model.pb", "saved_model", _saved_model_infer(path), recipe)
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


def _from_metadata(path: Path, kind: str, infer, recipe) -> Predictor:
    from mtl_tf.export.metadata import read_metadata
    from mtl_tf.tasks import build_tasks

    meta = read_metadata(path.parent)
    image_size = tuple(meta["input"]["shape"][1:3])
    tasks = build_tasks({n: t["config"] for n, t in meta["tasks"].items()}, image_size)
    try:
        resolved = _load_recipe(recipe) if recipe is not None else _load_recipe(meta.get("recipe"))
    except RecipeError as err:
        raise ModelLoadError(str(err)) from None
    return Predictor(kind, path, tasks, image_size, infer, resolved)


def _tflite_infer(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    try:
        runner = Interpreter(model_path=str(path)).get_signature_runner("serve")
    except Exception as err:
        raise ModelLoadError(f"{path}: cannot open with LiteRT: {err}") from None
    return lambda images: runner(image=np.ascontiguousarray(images, np.uint8))


def _saved_model_infer(folder: Path):
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serve"]
    return lambda images: {k: v.numpy() for k, v in serve(image=tf.constant(images, tf.uint8)).items()}
