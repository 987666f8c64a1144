"""Trivial baselines of a recipe's dense tasks on its val split, for comparing a run against:
depth = the mean train depth, normals = the mean train normal (normalized), segmentation = class 0
everywhere, binary maps = all background (F at 0.5 is 0; max F, whose lowest threshold takes
every pixel, is the all-positive F).

    PYTHONPATH=. python tests/dense_baselines.py recipes/ubernet.yaml [key=value ...]
"""

import json
import sys

import numpy as np

from mtl_tf.data import pipeline
from mtl_tf.recipe import load_recipe
from mtl_tf.tasks import build_tasks


def baselines(recipe) -> dict:
    tasks = build_tasks(recipe.tasks, recipe.data.image_size)
    train = list(pipeline.ExampleReader(recipe.data.train, tasks, recipe.data.image_size))
    constant = {}
    for name, task in tasks.items():
        labelled = [e[task.key(task.map_key)] for e in train if e[task.has_key]] if hasattr(task, "map_key") else []
        if task.type == "depth":
            constant[name] = np.nanmean(np.stack(labelled))
        elif task.type == "normals":
            mean = np.mean(np.stack(labelled), axis=(0, 1, 2))
            constant[name] = mean / np.linalg.norm(mean)
    evaluators = {name: task.evaluator() for name, task in tasks.items() if task.type != "detection"}
    for example in pipeline.ExampleReader(recipe.data.val, tasks, recipe.data.image_size):
        for name, evaluator in evaluators.items():
            task = tasks[name]
            if not example[task.has_key]:
                continue
            if task.type == "segmentation":
                truth = example[task.key("mask")]
                evaluator.add_image(truth, np.zeros_like(truth))
                continue
            truth = example[task.key(task.map_key)]
            value = constant.get(name, 0.0)
            evaluator.add(truth, np.broadcast_to(value, truth.shape[:2] + np.shape(value)).astype(np.float32))
    return {name: {k: v for k, v in ev.result().items() if not isinstance(v, dict)} for name, ev in evaluators.items()}


if __name__ == "__main__":
    print(json.dumps(baselines(load_recipe(sys.argv[1], sys.argv[2:])), indent=1))
