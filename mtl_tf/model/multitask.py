"""The multitask model: one backbone, one head per task, outputs named after the tasks."""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_tf.model.backbones import build_backbone
from mtl_tf.model.checkpointing import CheckpointedModel
from mtl_tf.model.layers import TapCopy, image_input
from mtl_tf.model.neck import build_neck
from mtl_tf.tasks import build_tasks


@keras.saving.register_keras_serializable(package="mtl_tf")
class MultitaskModel(keras.Model):
    """A functional Keras model: uint8 image [B, H, W, 3] -> {task name: raw head output}.

    Args:
        backbone: backbone arguments (`name`, `weights`, `width`), see `build_backbone`.
        tasks: {task name: task config (model or plain dict)}, in output order.
        image_size: (height, width) of the input.
        split_last_stage: give every task its own copy of the backbone's last stage.
        neck: optional neck arguments (`type`, `channels`, `repeats`, see model/neck.py): a FPN /
            BiFPN shared by every head, part of the trunk; heads read its levels as C3, C4, C5.

    `compute_loss` sums the tasks' masked losses weighted by their `loss_weight`, and tracks
    each task's loss as `<task>_loss`. `predict_step` returns post-processed predictions.
    """

    def __init__(
        self, backbone: dict, tasks: dict, image_size, split_last_stage: bool = False, recompute=(), neck=None,
        **kwargs
    ):
        image_size = tuple(image_size)
        task_objects = build_tasks(tasks, image_size)
        recompute = list(recompute)
        trunk = build_backbone(image_size=image_size, **backbone)
        image = image_input(image_size)
        lower = trunk.lower(image)
        shared_last = None if split_last_stage else trunk.last_stage()
        taps = {"C3": lower["C3"], "C4": lower["C4"]}
        if shared_last is not None:
            taps["C5"] = shared_last(lower["C4"])
        neck_model = None
        if neck:
            if shared_last is None:
                raise ValueError("a neck needs one shared last stage (split_last_stage=False)")
            neck_model = build_neck(trunk.channels, image_size, neck["type"], neck["channels"], neck.get("repeats", 1))
            taps = neck_model(taps)
        copies = {k: TapCopy(name=f"tap_{k}") for k in taps}
        taps = {k: copies[k](v) for k, v in taps.items()}
        outputs = {}
        for name, task in task_objects.items():
            c5 = taps["C5"] if shared_last is not None else trunk.last_stage()(taps["C4"])
            raw = task.build_head({"C3": taps["C3"], "C4": taps["C4"], "C5": c5})
            outputs[name] = keras.layers.Identity(name=name)(raw)
        kwargs.setdefault("name", "multitask")
        super().__init__(inputs=image, outputs=outputs, **kwargs)
        # Only what some head reaches is part of the model: a shared last stage (or a tap) that no
        # head reads has no variables in it, so the engine must not treat them as the trunk's.
        present = {id(layer) for layer in self.layers}
        taps = {k: v for k, v in taps.items() if id(copies[k]) in present}
        if shared_last is not None and id(shared_last) not in present:
            shared_last = None
        trunk_layers = [trunk.lower] + ([shared_last] if shared_last is not None else [])
        # A plain object: Keras neither tracks nor saves it (the layers it reaches are the model's).
        self.engine_graph = EngineGraph(image, taps, outputs, trunk_layers, recompute, neck_model)
        self.engine = None
        self.recompute = recompute

        self.backbone_args = dict(backbone)
        self.task_configs = {n: t.config for n, t in task_objects.items()}
        self.image_size = image_size
        self.split_last_stage = split_last_stage
        self.neck = dict(neck) if neck else None
        self.tasks = task_objects
        self.task_loss_trackers = {n: keras.metrics.Mean(name=f"{n}_loss") for n in task_objects}

    # -- training -----------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras builds the optimizer and metrics from a first batch taken off the training
        iterator (one batch the epoch then lacks) and averaged across replicas with
        `strategy.reduce`; across workers that is a collective op on uint8 images, which fails
        (Keras 3.15). Shapes are all the build needs: zeros shaped like the dataset's batches
        give them, and every batch stays for training."""
        if iterator is not None and self._in_multi_worker_mode():
            spec = iterator.data_adapter.get_tf_dataset().element_spec
            data_batch = tf.nest.map_structure(lambda s: tf.zeros([d or 1 for d in s.shape], s.dtype), spec)
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        """Keras' own step, or the multitask engine's when `fit` attached one (train/engine.py)."""
        logs = super().train_step(data) if self.engine is None else self.engine.train_step(data)
        return self._reducible(logs)

    def test_step(self, data):
        return self._reducible(super().test_step(data))

    def _reducible(self, logs: dict) -> dict:
        """Across workers Keras averages each log with `strategy.reduce("MEAN", value, axis=0)`,
        which fails on a scalar (Keras 3.15): there, logs travel as [1] vectors and arrive as
        scalars; anywhere else they are left alone."""
        if not self._in_multi_worker_mode():
            return logs
        return {k: tf.reshape(v, [1]) if v.shape.rank == 0 else v for k, v in logs.items()}

    def _in_multi_worker_mode(self) -> bool:
        strategy = self._distribute_strategy
        return strategy is not None and strategy.extended._in_multi_worker_mode()

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
            "recompute": list(self.recompute),
            "neck": self.neck,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class EngineGraph:
    """What the training engine needs to see inside the model: the trunk (image -> backbone taps)
    and each task's branch (taps -> raw output) as functional models over the model's own layers,
    and which trainable variables are the trunk's (the neck's included) and which each branch's."""

    def __init__(self, image, taps: dict, outputs: dict, trunk_layers: list, recompute=(), neck=None):
        self.tap_names = list(taps)
        self.trunk_model = keras.Model(image, [taps[k] for k in self.tap_names])
        self.recompute = {"lower": "lower" in recompute, "last_stage": "last_stage" in recompute}
        lower, *last = trunk_layers
        self.checkpointed = {"lower": CheckpointedModel(lower) if self.recompute["lower"] else None,
                             "last_stage": CheckpointedModel(last[0]) if last and self.recompute["last_stage"] else None}
        self.branches = {name: keras.Model([taps[k] for k in self.tap_names], out) for name, out in outputs.items()}
        self.trunk_layers = trunk_layers
        self.neck = neck

    def trunk(self, images, training: bool = True) -> list:
        """The backbone taps (in `tap_names` order). Parts named in `recompute` run as
        checkpointed segments (model/checkpointing.py): only the tensors between segments are
        kept for the backward pass, the rest is recomputed one segment at a time."""
        if not (training and any(self.recompute.values())):
            taps = self.trunk_model(images, training=training)
            return list(taps) if isinstance(taps, (list, tuple)) else [taps]
        lower, *last = self.trunk_layers
        features = (self.checkpointed["lower"] or lower)(images, training=training)
        levels = {"C3": features["C3"], "C4": features["C4"]}
        if last:
            levels["C5"] = (self.checkpointed["last_stage"] or last[0])(levels["C4"], training=training)
        if self.neck is not None:
            levels = self.neck(levels, training=training)
        return [tf.identity(levels[k]) for k in self.tap_names]  # as the TapCopy layers

    @property
    def trunk_vars(self) -> list:
        layers = self.trunk_layers + ([self.neck] if self.neck is not None else [])
        return [v for layer in layers for v in layer.trainable_variables]

    @property
    def head_vars(self) -> dict[str, list]:
        trunk_ids = {id(v) for v in self.trunk_vars}
        return {
            name: [v for v in branch.trainable_variables if id(v) not in trunk_ids]
            for name, branch in self.branches.items()
        }
