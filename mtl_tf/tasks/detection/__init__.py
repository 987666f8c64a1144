"""Object detection with an SSD head."""

from mtl_tf.tasks.detection.task import DetectionTask

__all__ = ["DetectionTask"]
