import math

import numpy as np
import pytest
import tensorflow as tf

from mtl_tf.tasks.detection import anchors as A
from mtl_tf.tasks.detection.boxes import decode_boxes, encode_boxes, iou_matrix, match_anchors
from mtl_tf.tasks.detection.task import DetectionConfig, DetectionTask


def test_feature_sizes_of_ssd300():
    assert A.feature_sizes((300, 300), 6) == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (2, 2)]


def test_anchor_count_order_and_scales():
    ratios = [[1.0, 2.0, 0.5]] * 4
    anchors = A.generate_anchors((64, 64), 4, 0.1, 0.7, ratios)
    sizes = A.feature_sizes((64, 64), 4)
    assert len(anchors) == sum(h * w * 4 for h, w in sizes)
    # The first location's boxes share the centre of cell (0, 0) of the 8x8 level.
    np.testing.assert_allclose(anchors[:4, :2], [[1 / 16, 1 / 16]] * 4, atol=1e-6)
    # Ratio 1 box at scale s_0, ratio 2 is wider than tall, extra box at sqrt(s0 * s1).
    np.testing.assert_allclose(anchors[0, 2:], [0.1, 0.1], atol=1e-6)
    np.testing.assert_allclose(anchors[1, 2:], [0.1 / math.sqrt(2), 0.1 * math.sqrt(2)], atol=1e-6)
    np.testing.assert_allclose(anchors[3, 2:], [math.sqrt(0.1 * 0.3)] * 2, atol=1e-6)
    # The last level uses s_max, and its extra box sqrt(s_max * 1).
    np.testing.assert_allclose(anchors[-4, 2:], [0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(anchors[-1, 2:], [math.sqrt(0.7)] * 2, atol=1e-6)


def test_anchors_stay_square_on_wide_images():
    anchors = A.generate_anchors((64, 128), 3, 0.2, 0.6, [[1.0]] * 3)
    # Normalized width is half the normalized height: square in pixels.
    np.testing.assert_allclose(anchors[0, 2] * 64, anchors[0, 3] * 128, rtol=1e-6)


def test_iou_matrix_against_hand_values():
    a = tf.constant([[0.0, 0.0, 0.5, 0.5]])
    b = tf.constant([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75], [0.6, 0.6, 1.0, 1.0]])
    np.testing.assert_allclose(iou_matrix(a, b).numpy(), [[1.0, 0.0625 / 0.4375, 0.0]], atol=1e-6)


def test_matching_threshold_and_forced_best_match():
    anchors = tf.constant([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]])
    gt = tf.constant([[0.0, 0.0, 0.45, 0.5], [0.55, 0.55, 0.65, 0.65]])  # 2nd: IoU 0.04 at best
    matched = match_anchors(anchors, gt, 0.5).numpy()
    assert matched.tolist() == [0, 1, -1]  # box 1 claims its best anchor despite IoU < 0.5
    empty = match_anchors(anchors, tf.zeros([0, 4]), 0.5).numpy()
    assert empty.tolist() == [-1, -1, -1]


def test_box_coder_round_trip():
    rng = np.random.default_rng(0)
    anchors = rng.uniform(0.05, 0.5, (50, 4)).astype(np.float32)
    anchors[:, :2] = rng.uniform(0.2, 0.8, (50, 2))
    y0x0 = rng.uniform(0, 0.5, (50, 2))
    boxes = np.concatenate([y0x0, y0x0 + rng.uniform(0.01, 0.5, (50, 2))], 1).astype(np.float32)
    deltas = encode_boxes(tf.constant(boxes), tf.constant(anchors), (0.1, 0.1, 0.2, 0.2))
    decoded = decode_boxes(deltas, tf.constant(anchors), (0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(decoded.numpy(), boxes, atol=1e-5)


def test_box_decode_is_the_ssd_formula_with_no_slicing_or_last_axis_broadcast(tmp_path):
    """Against the SSD decode written out in numpy, with a batch axis and sizes that hit the clip;
    in TFLite it is elementwise ops and one matmul (no STRIDED_SLICE / PACK: XNNPACK runs it all)."""
    from ai_edge_litert.interpreter import Interpreter

    from mtl_tf.export.tflite import tflite_ops
    from mtl_tf.tasks.detection.boxes import MAX_LOG_SCALE

    rng = np.random.default_rng(1)
    anchors = np.concatenate([rng.uniform(0, 1, (64, 2)), rng.uniform(0.02, 0.9, (64, 2))], 1).astype(np.float32)
    deltas = rng.normal(0, 3, (2, 64, 4)).astype(np.float32)
    deltas[0, :4, 2:] = 1e4  # an untrained head's runaway sizes: clipped, never inf or nan
    variance = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    t = deltas * variance
    cy, cx = t[..., 0] * anchors[:, 2] + anchors[:, 0], t[..., 1] * anchors[:, 3] + anchors[:, 1]
    h, w = (np.exp(np.minimum(t[..., 2:], MAX_LOG_SCALE)) * anchors[:, 2:]).transpose(2, 0, 1)
    expected = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1)
    np.testing.assert_allclose(decode_boxes(tf.constant(deltas), anchors, tuple(variance)).numpy(), expected,
                               rtol=1e-6, atol=1e-6)

    serve = tf.function(lambda d: decode_boxes(d, anchors, tuple(variance)), input_signature=[tf.TensorSpec([1, 64, 4])])
    path = tmp_path / "decode.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve).convert())
    ops = {name for name, _ in tflite_ops(path)}
    assert "FULLY_CONNECTED" in ops and not ops & {"STRIDED_SLICE", "PACK", "GATHER"}, ops
    # every constant operand is [64, 4] or a scalar: ONNX Runtime ran [1, A, 4] x [4] products 4x slower
    shapes = {tuple(t["shape"]) for t in Interpreter(str(path)).get_tensor_details()}
    assert shapes <= {(1, 64, 4), (64, 4), (4, 4), ()}, shapes


@pytest.fixture(scope="module")
def task():
    cfg = DetectionConfig(classes=["a", "b", "c"], min_scale=0.1, feature_levels=4)
    return DetectionTask(cfg, (64, 64))


def test_task_targets_decode_to_their_ground_truth(task):
    boxes = np.array([[0.1, 0.1, 0.3, 0.25], [0.5, 0.4, 0.95, 0.9]], np.float32)
    example = {"detection/boxes": boxes, "detection/box_classes": np.array([2, 0], np.int32), "has_detection": True}
    target, weight = task.encode(example)
    target = target.numpy()
    assert target.shape == (task.num_anchors, 5) and float(weight) == 1.0
    cls = target[:, 4].astype(int)
    assert set(np.unique(cls)) == {0, 1, 3}  # background, class 0 + 1, class 2 + 1
    decoded, _ = task.decode(np.concatenate([target[None, :, :4], np.zeros((1, task.num_anchors, 4))], -1))
    decoded = decoded.numpy()[0]
    np.testing.assert_allclose(decoded[cls == 3], np.repeat(boxes[:1], (cls == 3).sum(), 0), atol=1e-5)
    np.testing.assert_allclose(decoded[cls == 1], np.repeat(boxes[1:], (cls == 1).sum(), 0), atol=1e-5)
    assert np.all(target[cls == 0, :4] == 0)


def test_true_negative_image_is_all_background(task):
    example = {"detection/boxes": np.zeros((0, 4), np.float32), "detection/box_classes": np.zeros((0,), np.int32), "has_detection": True}
    target, weight = task.encode(example)
    assert np.all(target.numpy() == 0) and float(weight) == 1.0
