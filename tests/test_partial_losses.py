"""Issue 17 losses: focal loss of the SSD classifier, balanced / OHEM segmentation losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_tf.tasks.detection.loss import focal_cross_entropy, ssd_loss
from mtl_tf.tasks.segmentation import pixel_loss

_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


def _detection_case(seed=0, batch=2, anchors=200, classes=4):
    rng = np.random.default_rng(seed)
    target = rng.choice(classes + 1, (batch, anchors), p=[0.9] + [0.1 / classes] * classes).astype(np.float32)
    target[0, :3] = -1  # ignored anchors
    y_true = np.concatenate([rng.normal(0, 1, (batch, anchors, 4)), target[..., None]], -1).astype(np.float32)
    y_pred = rng.normal(0, 2, (batch, anchors, 4 + classes + 1)).astype(np.float32)
    return y_true, y_pred, target


def test_focal_equals_cross_entropy_at_gamma_zero_without_alpha():
    _, logits, target = _detection_case()
    labels = np.maximum(target, 0).astype(np.int32)
    np.testing.assert_allclose(focal_cross_entropy(labels, logits[..., 4:], gamma=0.0, alpha=None),
                               _ce(labels, logits[..., 4:]), rtol=1e-5, atol=1e-6)


def test_focal_down_weights_easy_anchors_and_applies_alpha():
    labels = tf.constant([0, 0, 1])
    logits = tf.constant([[8.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # easy background, hard background, object
    ce = _ce(labels, logits).numpy()
    focal = focal_cross_entropy(labels, logits, gamma=2.0, alpha=None).numpy()
    assert focal[0] / ce[0] < 1e-6 and focal[1] / ce[1] == pytest.approx(0.25)
    weighted = focal_cross_entropy(labels, logits, gamma=2.0, alpha=0.25).numpy()
    np.testing.assert_allclose(weighted, focal * [0.75, 0.75, 0.25], rtol=1e-6)


def test_ssd_focal_at_gamma_zero_is_cross_entropy_over_every_anchor():
    """No mining: every non-ignored anchor of a labelled image, divided by the matched boxes."""
    y_true, y_pred, target = _detection_case()
    weight = np.array([1.0, 0.0], np.float32)  # the second image is unlabelled
    focal = float(ssd_loss(y_true, y_pred, weight, classification="focal", gamma=0.0, alpha=None))
    labels = np.maximum(target, 0).astype(np.int32)
    keep = (target >= 0) * weight[:, None]
    positives = (target > 0) * weight[:, None]
    box = 4 * keras.losses.Huber(reduction=None)(y_true[..., :4], y_pred[..., :4]).numpy() * positives
    expected = (box.sum() + (_ce(labels, y_pred[..., 4:]).numpy() * keep).sum()) / positives.sum()
    assert focal == pytest.approx(expected, rel=1e-5)
    softmax = float(ssd_loss(y_true, y_pred, weight))
    assert softmax < focal  # mining keeps fewer negatives


def test_ssd_focal_unlabelled_image_gives_zero_gradient():
    y_true, y_pred, _ = _detection_case()
    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        loss = ssd_loss(y_true, pred, np.array([1.0, 0.0], np.float32), classification="focal")
    grad = tape.gradient(loss, pred).numpy()
    assert np.abs(grad[1]).max() == 0 and np.abs(grad[0]).max() > 0


def _segmentation_case():
    labels = np.zeros((1, 4, 4), np.int32)
    labels[0, :1] = 1  # class 1: 4 pixels, class 0: 12
    ce = np.random.default_rng(0).uniform(0.1, 3.0, (1, 4, 4)).astype(np.float32)
    weights = np.ones((1, 4, 4), np.float32)
    weights[0, 3, 3] = 0.0  # an ignored pixel
    return ce, labels, weights


def test_segmentation_ce_is_the_weighted_mean():
    ce, labels, weights = _segmentation_case()
    assert float(pixel_loss(ce, labels, weights, 3)) == pytest.approx((ce * weights).sum() / weights.sum(), rel=1e-6)


def test_balanced_is_the_mean_of_class_means():
    ce, labels, weights = _segmentation_case()
    means = [ce[(labels == c) & (weights > 0)].mean() for c in (0, 1)]
    assert float(pixel_loss(ce, labels, weights, 3, "balanced")) == pytest.approx(np.mean(means), rel=1e-5)
    even = np.zeros((1, 4, 4), np.int32)
    even[0, 2:] = 1
    full = np.ones_like(weights)
    assert float(pixel_loss(ce, even, full, 3, "balanced")) == pytest.approx(float(pixel_loss(ce, even, full, 3)), rel=1e-6)


def test_ohem_keeps_the_hardest_labelled_pixels():
    ce, labels, weights = _segmentation_case()
    assert float(pixel_loss(ce, labels, weights, 3, "ohem", keep=1.0)) == pytest.approx(float(pixel_loss(ce, labels, weights, 3)), rel=1e-6)
    hard = np.sort(ce[weights > 0])[::-1][: int(np.ceil(0.25 * 15))]
    assert float(pixel_loss(ce, labels, weights, 3, "ohem", keep=0.25)) == pytest.approx(hard.mean(), rel=1e-6)
    ce_ignored_hardest = ce.copy()
    ce_ignored_hardest[0, 3, 3] = 100.0  # an ignored pixel is never picked
    assert float(pixel_loss(ce_ignored_hardest, labels, weights, 3, "ohem", keep=0.25)) == pytest.approx(hard.mean(), rel=1e-6)
    assert float(pixel_loss(ce, labels, np.zeros_like(weights), 3, "ohem")) == 0.0
