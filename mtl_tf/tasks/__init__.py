"""The registry of task types: a task section's `type` (default: its name) -> task class."""

from __future__ import annotations

from mtl_tf.tasks.base import Task
from mtl_tf.tasks.boundaries import BoundariesTask
from mtl_tf.tasks.classification import ClassificationTask
from mtl_tf.tasks.depth import DepthTask
from mtl_tf.tasks.detection import DetectionTask
from mtl_tf.tasks.multilabel import MultilabelTask
from mtl_tf.tasks.normals import NormalsTask
from mtl_tf.tasks.saliency import SaliencyTask
from mtl_tf.tasks.segmentation import SegmentationTask

TASKS: dict[str, type[Task]] = {
    DetectionTask.type: DetectionTask,
    SegmentationTask.type: SegmentationTask,
    DepthTask.type: DepthTask,
    NormalsTask.type: NormalsTask,
    SaliencyTask.type: SaliencyTask,
    BoundariesTask.type: BoundariesTask,
    ClassificationTask.type: ClassificationTask,
    MultilabelTask.type: MultilabelTask,
}


def task_class(name: str, config) -> type[Task]:
    """The task type of the task `name` configured by `config` (a config model or plain dict)."""
    if isinstance(config, dict):
        return TASKS[config.get("type") or name]
    if config.type:
        return TASKS[config.type]
    return next((cls for cls in TASKS.values() if isinstance(config, cls.Config)), TASKS.get(name))


def build_tasks(task_configs: dict, image_size: tuple[int, int]) -> dict[str, Task]:
    """Task objects from validated task configs (or their plain-dict form), in recipe order."""
    tasks = {}
    for name, config in task_configs.items():
        cls = task_class(name, config)
        if isinstance(config, dict):
            config = cls.Config.model_validate({**config, "type": cls.type})
        tasks[name] = cls(config, image_size, name)
    return tasks
