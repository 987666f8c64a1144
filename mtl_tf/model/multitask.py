"""The multitask model: one backbone, one head per task, outputs named after the tasks."""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_tf.model.backbones import build_backbone
from mtl_tf.tasks import build_tasks


@keras.saving.register_keras_serializable(package="mtl_tf")
class MultitaskModel(keras.Model):
    """A functional Keras model: uint8 image [B, H, W, 3] -> {task name: raw head output}.

    Args:
        backbone: backbone arguments (`name`, `weights`, `width`), see `build_backbone`.
        tasks: {task name: task config (model or plain dict)}, in output order.
        image_size: (height, width) of the input.
        split_last_stage: give every task its own copy of the backbone's last stage.

    `compute_loss` sums the tasks' masked losses weighted by their `loss_weight`, and tracks
    each task's loss as `<task>_loss`. `predict_step` returns post-processed predictions.
    """

    def __init__(self, backbone: dict, tasks: dict, image_size, split_last_stage: bool = False, **kwargs):
        image_size = tuple(image_size)
        task_objects = build_tasks(tasks, image_size)
        trunk = build_backbone(image_size=image_size, **backbone)
        image = keras.Input((*image_size, 3), dtype="uint8", name="image")
        lower = trunk.lower(image)
        shared_c5 = None if split_last_stage else trunk.last_stage()(lower["C4"])
        outputs = {}
        for name, task in task_objects.items():
            c5 = trunk.last_stage()(lower["C4"]) if split_last_stage else shared_c5
            raw = task.build_head({"C3": lower["C3"], "C4": lower["C4"], "C5": c5})
            outputs[name] = keras.layers.Identity(name=name)(raw)
        kwargs.setdefault("name", "multitask")
        super().__init__(inputs=image, outputs=outputs, **kwargs)

        self.backbone_args = dict(backbone)
        self.task_configs = {n: t.config for n, t in task_objects.items()}
        self.image_size = image_size
        self.split_last_stage = split_last_stage
        self.tasks = task_objects
        self.task_loss_trackers = {n: keras.metrics.Mean(name=f"{n}_loss") for n in task_objects}

    # -- training -----------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = tf.constant(0.0)
        for name, task in self.tasks.items():
            weight = None if sample_weight is None else sample_weight[name]
            task_loss = task.loss(y[name], y_pred[name], weight)
            self.task_loss_trackers[name].update_state(task_loss)
            total = total + task.config.loss_weight * task_loss
        if self.losses:
            total = total + tf.add_n(self.losses)
        return total

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.postprocess(self(x, training=False))

    def postprocess(self, raw_outputs: dict) -> dict:
        """{task: raw output} -> {task: decoded predictions} (boxes after NMS, class maps, ...)."""
        return {name: task.postprocess(raw_outputs[name]) for name, task in self.tasks.items()}

    # -- serialization ------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            # Weights come from the saved file, never from a download at load time.
            "backbone": {**self.backbone_args, "weights": None},
            "tasks": {n: c.model_dump(mode="json") for n, c in self.task_configs.items()},
            "image_size": list(self.image_size),
            "split_last_stage": self.split_last_stage,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
