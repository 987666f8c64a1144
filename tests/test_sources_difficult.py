"""VOC 'difficult' boxes: ignored by the SSD targets and loss, and by the evaluator."""

import numpy as np
import tensorflow as tf

from mtl_tf.tasks import build_tasks
from mtl_tf.tasks.detection.loss import hard_negatives


def _detection():
    return build_tasks({"detection": {"classes": ["car", "person"], "min_scale": 0.1}}, (64, 64))["detection"]


def test_anchors_matched_to_a_difficult_box_are_ignored_in_the_targets():
    task = _detection()
    boxes = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]], np.float32)
    example = {"detection/boxes": boxes, "detection/box_classes": np.array([0, 1], np.int32), "has_detection": True}
    plain, _ = task.encode({**example, "detection/box_difficult": np.array([False, False])})
    flagged, _ = task.encode({**example, "detection/box_difficult": np.array([False, True])})
    plain_cls, flagged_cls = plain.numpy()[:, 4], flagged.numpy()[:, 4]
    assert (plain_cls == 2).any() and not (flagged_cls == 2).any()  # person anchors ...
    np.testing.assert_array_equal(flagged_cls == -1, plain_cls == 2)  # ... are now ignored (-1)
    np.testing.assert_array_equal(flagged_cls[plain_cls != 2], plain_cls[plain_cls != 2])


def test_ignored_anchors_are_never_mined_as_negatives():
    ce = tf.constant([[5.0, 4.0, 1.0, 0.5, 0.2]])
    positives = tf.constant([[0.0, 0.0, 0.0, 0.0, 1.0]])
    ignored = tf.constant([[1.0, 0.0, 0.0, 0.0, 0.0]])
    mined = hard_negatives(ce, positives, tf.constant([1.0]), neg_pos_ratio=2, min_negatives=0, ignored=ignored)
    np.testing.assert_array_equal(mined.numpy(), [[0, 1, 1, 0, 0]])  # not anchor 0, the hardest


def test_the_evaluator_gets_the_difficult_flags():
    task = _detection()
    batch = {
        "has_detection": np.array([True]),
        "detection/boxes": np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]]], np.float32),
        "detection/box_classes": np.array([[0, 0, -1]], np.int32),  # the last row is padding
        "detection/box_difficult": np.array([[False, True, False]]),
    }
    predictions = {  # only the non-difficult car is found
        "boxes": np.array([[[0.1, 0.1, 0.4, 0.4]]], np.float32), "scores": np.array([[0.9]], np.float32),
        "classes": np.array([[0]], np.int32), "num_detections": np.array([1]),
    }
    evaluator = task.evaluator()
    task.update_evaluator(evaluator, batch, predictions)
    assert evaluator.result()["per_class_ap50"]["car"] == 1.0  # the missed difficult car does not count
    batch["detection/box_difficult"][:] = False
    evaluator = task.evaluator()
    task.update_evaluator(evaluator, batch, predictions)
    assert evaluator.result()["per_class_ap50"]["car"] == 0.5
