"""`classification_loss: sigmoid_focal`: one sigmoid per class (RetinaNet), no background logit,
so the exported scores need no softmax over the class axis."""

from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_task_configs
from mtl_tf.tasks.detection.loss import sigmoid_focal_cross_entropy, ssd_loss


def _numpy_sigmoid_focal(labels, logits, gamma, alpha):
    p = 1 / (1 + np.exp(-logits))
    target = np.eye(logits.shape[-1] + 1)[labels][..., 1:]  # class 0 is background: no column
    p_t = np.where(target == 1, p, 1 - p)
    a = np.where(target == 1, alpha, 1 - alpha)
    return (-a * (1 - p_t) ** gamma * np.log(p_t)).sum(-1)


def test_sigmoid_focal_is_retinanets_formula_with_background_all_negative():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 50, 4)).astype(np.float32)
    labels = rng.integers(0, 5, (3, 50))
    got = sigmoid_focal_cross_entropy(tf.constant(labels), tf.constant(logits), gamma=2.0, alpha=0.25).numpy()
    np.testing.assert_allclose(got, _numpy_sigmoid_focal(labels, logits, 2.0, 0.25), rtol=1e-5, atol=1e-6)
    plain = sigmoid_focal_cross_entropy(tf.constant(labels), tf.constant(logits), gamma=0.0, alpha=None).numpy()
    bce = tf.nn.sigmoid_cross_entropy_with_logits(np.eye(5)[labels][..., 1:].astype(np.float32), logits)
    np.testing.assert_allclose(plain, tf.reduce_sum(bce, -1).numpy(), rtol=1e-5, atol=1e-6)


def test_sigmoid_focal_ssd_loss_ignores_unlabelled_images_and_ignored_anchors():
    rng = np.random.default_rng(1)
    target = rng.choice(5, (2, 120), p=[0.9, 0.025, 0.025, 0.025, 0.025]).astype(np.float32)
    target[0, :5] = -1  # ignored anchors (matched to difficult boxes)
    y_true = np.concatenate([rng.normal(0, 1, (2, 120, 4)), target[..., None]], -1).astype(np.float32)
    pred = tf.Variable(rng.normal(0, 2, (2, 120, 4 + 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = ssd_loss(y_true, pred, np.array([1.0, 0.0], np.float32), classification="sigmoid_focal")
    grad = tape.gradient(loss, pred).numpy()
    assert np.abs(grad[1]).max() == 0 and np.abs(grad[0, 5:]).max() > 0
    assert np.abs(grad[0, :5, 4:]).max() == 0  # ignored anchors: no class gradient
    positives = (target[0] > 0).sum()
    class_part = _numpy_sigmoid_focal(target[0, 5:].astype(int), pred.numpy()[0, 5:, 4:], 2.0, 0.25).sum()
    box = tf.keras.losses.Huber(reduction=None)(y_true[0, :, :4], pred.numpy()[0, :, :4]).numpy()
    expected = (4 * (box * (target[0] > 0)).sum() + class_part) / positives
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_mined_sigmoid_loss_takes_positives_and_the_hardest_background_anchors():
    """`sigmoid`: binary cross-entropy summed over the classes, on the positives and, per image,
    the 3 x positives background anchors with the highest loss (SSD's mining)."""
    rng = np.random.default_rng(2)
    target = rng.choice(4, (2, 90), p=[0.9, 0.04, 0.03, 0.03]).astype(np.float32)
    y_true = np.concatenate([np.zeros((2, 90, 4)), target[..., None]], -1).astype(np.float32)
    y_pred = np.concatenate([np.zeros((2, 90, 4)), rng.normal(0, 2, (2, 90, 3))], -1).astype(np.float32)
    loss = float(ssd_loss(y_true, y_pred, np.ones(2, np.float32), classification="sigmoid"))
    bce = _numpy_sigmoid_focal(target.astype(int), y_pred[..., 4:], 0.0, 0.5) * 2  # alpha 0.5 halves it
    expected = 0.0
    for i in range(2):
        positive = target[i] > 0
        hardest = np.sort(bce[i][~positive])[::-1][: 3 * positive.sum()]
        expected += bce[i][positive].sum() + hardest.sum()
    assert loss == pytest.approx(expected / (target > 0).sum(), rel=1e-5)


@pytest.fixture(scope="module")
def sigmoid_model():
    from mtl_tf.model.multitask import MultitaskModel

    tasks = tiny_task_configs()
    tasks["detection"].update(classification_loss="sigmoid_focal", prior_probability=0.02)
    return MultitaskModel({"name": "tiny", "width": 8}, tasks, (64, 64))


def test_sigmoid_head_has_one_logit_per_class_biased_to_the_prior(sigmoid_model):
    task = sigmoid_model.tasks["detection"]
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    raw = sigmoid_model(images, training=False)["detection"]
    assert raw.shape == (2, task.num_anchors, 4 + len(task.classes))
    biases = [layer.bias.numpy() for layer in sigmoid_model.layers if layer.name.startswith("detection_cls")
              and hasattr(layer, "bias") and layer.bias is not None]
    assert biases and all(np.allclose(b, np.log(0.02 / 0.98)) for b in biases)
    boxes, scores = task.decode(raw)
    np.testing.assert_allclose(scores, tf.sigmoid(raw[..., 4:]), rtol=1e-6)
    assert boxes.shape == (2, task.num_anchors, 4)


def test_sigmoid_detector_exports_without_softmax_and_matches_keras(sigmoid_model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mtl_tf.export.serving import export_serving_model
    from mtl_tf.export.tflite import convert_tflite, tflite_ops

    path = tmp_path / "model.tflite"
    path.write_bytes(convert_tflite(export_serving_model(sigmoid_model, tmp_path / "saved"), "float32"))
    names = Counter(name for name, _ in tflite_ops(path))
    assert "SOFTMAX" not in names and names["LOGISTIC"] >= 1, names
    images = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    out = Interpreter(str(path)).get_signature_runner()(image=images)
    _, scores = sigmoid_model.tasks["detection"].decode(sigmoid_model(images.astype(np.float32), training=False)["detection"])
    assert out["detection_scores"].shape == scores.shape
    np.testing.assert_allclose(out["detection_scores"], scores, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_saturated_sigmoids_give_finite_gradients(gamma):
    """A logit far past float32's sigmoid range (p rounds to 0 or 1) must not turn the step NaN."""
    logits = tf.Variable([[40.0, -40.0, 0.0], [-40.0, 40.0, 3.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(sigmoid_focal_cross_entropy(tf.constant([1, 0]), logits, gamma=gamma, alpha=None))
    assert np.isfinite(tape.gradient(loss, logits).numpy()).all() and np.isfinite(float(loss))
