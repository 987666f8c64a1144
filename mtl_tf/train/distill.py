"""Distillation from single-task teachers for the missing labels (`train.teachers`, `fit --teacher`).

Before training, each teacher (a finished run folder whose model has the task) predicts once on
the train examples that LACK its task's labels (has_<task> False); those predictions become the
example's labels for that task and its flag turns True. An example with a real label is never
touched. Segmentation: the teacher's class map, pixels where its top probability is below
`train.teacher_min_confidence` set to ignore (255). Detection: the teacher's boxes after NMS
scoring at least `train.teacher_min_score`. The filled examples are kept in memory for the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_tf.config import RecipeError
from mtl_tf.data.example import IGNORE
from mtl_tf.data.pipeline import SourceExamples, example_signature


def teacher_labeller(run: str | Path, task, min_score: float, min_confidence: float):
    """A function images uint8 [B, H, W, 3] -> one plain-named label dict per image, from the
    teacher model of `run` (its output named after `task`)."""
    import keras

    path = Path(run) / "model.keras"
    if not path.exists():
        raise RecipeError(f"train.teachers.{task.name}: {path} not found (a finished run folder is needed)")
    model = keras.models.load_model(path)
    if task.name not in getattr(model, "tasks", {}):
        raise RecipeError(f"train.teachers.{task.name}: the model in {run} has no output {task.name!r}")
    teacher_task = model.tasks[task.name]
    if tuple(model.input_shape[1:3]) != tuple(task.image_size):
        raise RecipeError(f"train.teachers.{task.name}: {run} takes {model.input_shape[1:3]} images, the recipe "
                          f"{task.image_size}")

    def label(images):
        raw = model(images, training=False)[task.name]
        return labels_from_teacher(teacher_task, raw, min_score, min_confidence)

    return label


def labels_from_teacher(task, raw, min_score: float, min_confidence: float) -> list[dict]:
    """A batch of raw teacher outputs -> plain-named labels per image (see the module docstring)."""
    if task.type == "segmentation":
        from mtl_tf.tasks.segmentation import full_resolution

        probs = tf.nn.softmax(full_resolution(raw, task.image_size), axis=-1).numpy()
        masks = probs.argmax(-1).astype(np.uint8)
        masks[probs.max(-1) < min_confidence] = IGNORE
        return [{"mask": m} for m in masks]
    if task.type == "detection":
        out = {k: np.asarray(v) for k, v in task.postprocess(raw).items()}
        labels = []
        for i in range(len(out["scores"])):
            keep = out["scores"][i][: out["num_detections"][i]] >= min_score
            boxes = out["boxes"][i][: len(keep)][keep].astype(np.float32)
            good = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            classes = out["classes"][i][: len(keep)][keep].astype(np.int32)
            labels.append({"boxes": boxes[good], "box_classes": classes[good],
                           "box_difficult": np.zeros(int(good.sum()), bool)})
        return labels
    raise RecipeError(f"train.teachers: no distillation for task type {task.type!r} (detection, segmentation)")


def fill_missing(examples: list[dict], task, labeller, batch_size: int = 32) -> int:
    """Give every example lacking `task`'s labels the labeller's, in place; returns how many."""
    missing = [i for i, ex in enumerate(examples) if not ex[task.has_key]]
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        for i, labels in zip(chunk, labeller(np.stack([examples[i]["image"] for i in chunk]))):
            examples[i].update(task.namespaced(labels))
            examples[i][task.has_key] = True
    return len(missing)


def distilled_sources(sources: list[SourceExamples], tasks: dict, labellers: dict) -> list[SourceExamples]:
    """The sources with the missing labels of each task in `labellers` ({task: labeller}) filled."""
    signature = example_signature(tasks, next(iter(tasks.values())).image_size)
    out = []
    for s, source in enumerate(sources):
        examples = list(source.examples().as_numpy_iterator())
        filled = {name: fill_missing(examples, tasks[name], labeller) for name, labeller in labellers.items()}
        print(f"teachers: source {s}: " + ", ".join(f"{n} labels for {k} of {len(examples)} examples"
                                                    for n, k in filled.items()))
        ds = tf.data.Dataset.from_generator(lambda ex=examples: iter(ex), output_signature=signature)
        out.append(SourceExamples(ds.apply(tf.data.experimental.assert_cardinality(len(examples))).cache(), len(examples)))
    return out
