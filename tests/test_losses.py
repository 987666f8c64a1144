import numpy as np
import tensorflow as tf

from mtl_tf.data.example import IGNORE
from mtl_tf.tasks.detection.loss import hard_negatives, ssd_loss


def _detection_batch(tiny_model, rng):
    task = tiny_model.tasks["detection"]
    targets = []
    for _ in range(2):
        boxes = np.array([[0.1, 0.1, 0.4, 0.3], [0.5, 0.5, 0.9, 0.8]], np.float32)
        t, _ = task.encode({"detection/boxes": boxes, "detection/box_classes": np.array([1, 2], np.int32), "has_detection": True})
        targets.append(t)
    images = rng.integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    return images, tf.stack(targets)


def _head_gradients(model, images, target, weight, task="detection"):
    head = [v for v in model.trainable_variables if v.path.startswith(task)]
    with tf.GradientTape() as tape:
        out = model(images, training=False)
        loss = model.tasks[task].loss(target, out[task], weight)
    return loss, tape.gradient(loss, head)


def test_unlabelled_sample_gives_zero_detection_loss_and_gradient(tiny_model):
    images, target = _detection_batch(tiny_model, np.random.default_rng(0))
    loss, grads = _head_gradients(tiny_model, images[1:], target[1:], tf.constant([0.0]))
    assert float(loss) == 0.0
    assert all(float(tf.reduce_max(tf.abs(g))) == 0.0 for g in grads if g is not None)
    # The same sample, labelled, does move the head: the check above can fail.
    loss, grads = _head_gradients(tiny_model, images[1:], target[1:], tf.constant([1.0]))
    assert float(loss) > 0 and max(float(tf.reduce_max(tf.abs(g))) for g in grads if g is not None) > 0


def test_unlabelled_sample_does_not_change_batch_loss(tiny_model):
    images, target = _detection_batch(tiny_model, np.random.default_rng(1))
    out = tiny_model(images, training=False)["detection"]
    task = tiny_model.tasks["detection"]
    both = task.loss(target, out, tf.constant([1.0, 0.0]))
    first = task.loss(target[:1], out[:1], tf.constant([1.0]))
    np.testing.assert_allclose(float(both), float(first), rtol=1e-6)


def test_hard_negative_mining_keeps_three_per_positive():
    ce = tf.constant([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 9.0, 0.1]])
    positives = tf.constant([[0, 0, 0, 0, 0, 0, 1, 0]], tf.float32)
    negatives = hard_negatives(ce, positives, tf.constant([1.0]), 3.0, 0).numpy()
    assert negatives.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]  # the 3 highest background losses
    none = hard_negatives(ce, positives, tf.constant([0.0]), 3.0, 0).numpy()
    assert none.sum() == 0


def test_ssd_loss_is_normalized_by_matched_boxes():
    # One anchor matched with a perfect box prediction: loss is the class CE terms / 1.
    logits = np.zeros((1, 4, 3), np.float32)
    y_true = np.zeros((1, 4, 5), np.float32)
    y_true[0, 0, 4] = 1
    y_pred = np.concatenate([np.zeros((1, 4, 4), np.float32), logits], -1)
    loss = float(ssd_loss(y_true, y_pred, np.ones(1, np.float32), neg_pos_ratio=3.0))
    # 1 positive + 3 negatives, each CE = log(3) with uniform logits.
    np.testing.assert_allclose(loss, 4 * np.log(3), rtol=1e-5)


def test_segmentation_ignore_pixels_contribute_nothing(tiny_model):
    task = tiny_model.tasks["segmentation"]
    rng = np.random.default_rng(2)
    mask = rng.integers(0, 5, (64, 64)).astype(np.uint8)
    mask[:20] = IGNORE
    target, weight = task.encode({"segmentation/mask": mask, "has_segmentation": True})
    logits = tf.Variable(rng.normal(size=(1, 64, 64, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = task.loss(target[None], logits, weight[None])
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(grad[0, :20] == 0) and np.abs(grad[0, 20:]).max() > 0
    # Equal to the mean cross-entropy over labelled pixels, computed directly.
    z = logits.numpy()[0, 20:]
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, mask[20:, :, None].astype(int), -1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_segmentation_unlabelled_example_has_zero_weight(tiny_model):
    task = tiny_model.tasks["segmentation"]
    _, weight = task.encode({"segmentation/mask": np.zeros((64, 64), np.uint8), "has_segmentation": False})
    assert float(tf.reduce_sum(weight)) == 0.0


def test_model_loss_masks_each_task_per_sample(tiny_model):
    """Through the model's compute_loss: a masks-only sample gives no detection gradient."""
    rng = np.random.default_rng(3)
    images, det_target = _detection_batch(tiny_model, rng)
    seg_target = tf.constant(rng.integers(0, 5, (2, 64, 64)), tf.int32)
    y = {"detection": det_target, "segmentation": seg_target}
    sw = {"detection": tf.constant([0.0, 0.0]), "segmentation": tf.ones((2, 64, 64))}
    det_head = [v for v in tiny_model.trainable_variables if v.path.startswith("detection")]
    seg_head = [v for v in tiny_model.trainable_variables if v.path.startswith("segmentation")]
    with tf.GradientTape() as tape:
        out = tiny_model(images, training=False)
        total = tiny_model.compute_loss(images, y, out, sw)
    det_grads, seg_grads = tape.gradient(total, [det_head, seg_head])
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for g in det_grads)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in seg_grads if g is not None) > 0
