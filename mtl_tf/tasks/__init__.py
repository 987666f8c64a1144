"""The registry of tasks: the recipe's `tasks:` keys -> task classes."""

from __future__ import annotations

from mtl_tf.tasks.base import Task
from mtl_tf.tasks.detection import DetectionTask
from mtl_tf.tasks.segmentation import SegmentationTask

TASKS: dict[str, type[Task]] = {
    DetectionTask.name: DetectionTask,
    SegmentationTask.name: SegmentationTask,
}


def build_tasks(task_configs: dict, image_size: tuple[int, int]) -> dict[str, Task]:
    """Task objects from validated task configs (or their plain-dict form), in recipe order."""
    tasks = {}
    for name, config in task_configs.items():
        cls = TASKS[name]
        if isinstance(config, dict):
            config = cls.Config.model_validate(config)
        tasks[name] = cls(config, image_size)
    return tasks
