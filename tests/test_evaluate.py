import numpy as np
import pytest

from mtl_tf.evaluate.detection import DetectionEvaluator, average_precision
from mtl_tf.evaluate.segmentation import ConfusionMatrixEvaluator

BOX = [0.1, 0.1, 0.5, 0.5]
OTHER = [0.6, 0.6, 0.9, 0.9]


def test_perfect_detections_score_one():
    ev = DetectionEvaluator(["a", "b"])
    ev.add_image([BOX, OTHER], [0, 1], [BOX, OTHER], [0.9, 0.8], [0, 1])
    assert ev.result()["map50"] == 1.0


def test_duplicate_is_a_false_positive():
    ev = DetectionEvaluator(["a"])
    ev.add_image([BOX], [0], [BOX, BOX], [0.9, 0.8], [0, 0])
    recall, precision, n = ev.class_curve(0)
    assert n == 1 and recall.tolist() == [1.0, 1.0] and precision.tolist() == [1.0, 0.5]
    assert ev.result()["map50"] == 1.0  # the duplicate ranks below the hit: envelope keeps 1


def test_hand_computed_all_point_and_eleven_point():
    # Two objects; detections by score: hit, miss, hit -> P = 1, 1/2, 2/3 at R = .5, .5, 1
    ev = DetectionEvaluator(["a"])
    ev.add_image([BOX, OTHER], [0, 0], [BOX, [0.0, 0.0, 0.05, 0.05], OTHER], [0.9, 0.8, 0.7], [0, 0, 0])
    res = ev.result()
    assert res["map50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # 11-point: recall thresholds 0..0.5 (6 points) -> 1, 0.6..1.0 (5 points) -> 2/3
    assert res["map50_voc07"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_difficult_objects_neither_reward_nor_penalize():
    # OTHER is difficult: the detection on it is ignored, the one on BOX is a hit.
    ev = DetectionEvaluator(["a"])
    ev.add_image([BOX, OTHER], [0, 0], [OTHER, BOX], [0.9, 0.8], [0, 0], gt_difficult=[False, True])
    recall, precision, n = ev.class_curve(0)
    assert n == 1  # the difficult object does not count in recall
    assert recall.tolist() == [0.0, 1.0] and precision[-1] == 1.0  # nor as a false positive
    assert ev.result()["map50"] == 1.0
    # Missing the difficult object costs nothing either.
    ev2 = DetectionEvaluator(["a"])
    ev2.add_image([BOX, OTHER], [0, 0], [BOX], [0.9], [0], gt_difficult=[False, True])
    assert ev2.result()["map50"] == 1.0


def test_low_iou_detection_misses_and_class_without_objects_is_skipped():
    ev = DetectionEvaluator(["a", "b"])
    ev.add_image([BOX], [0], [[0.3, 0.3, 0.7, 0.7]], [0.9], [0])
    res = ev.result()
    assert res["map50"] == 0.0 and list(res["per_class_ap50"]) == ["a"]


def test_average_precision_envelope():
    assert average_precision(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == pytest.approx(1.0)


def test_miou_matches_direct_numpy_computation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (3, 32, 32)).astype(np.uint8)
    truth[:, :4] = 255
    pred = np.where(rng.random((3, 32, 32)) < 0.7, truth, rng.integers(0, 4, (3, 32, 32))).astype(np.uint8)
    ev = ConfusionMatrixEvaluator(["a", "b", "c", "d"])
    for t, p in zip(truth, pred):
        ev.add_image(t, p)
    res = ev.result()
    keep = truth != 255
    ious = []
    for c in range(4):
        inter = np.sum((truth == c) & (pred == c) & keep)
        union = np.sum(((truth == c) | (pred == c)) & keep)
        ious.append(inter / union)
    assert res["miou"] == pytest.approx(np.mean(ious))
    assert res["pixel_accuracy"] == pytest.approx(np.mean(truth[keep] == pred[keep]))
    assert list(res["per_class_iou"].values()) == pytest.approx(ious)


def test_confusion_matrix_rejects_unknown_class_ids():
    ev = ConfusionMatrixEvaluator(["a", "b"])
    with pytest.raises(ValueError, match="class id 5"):
        ev.add_image(np.array([[0, 5]]), np.array([[0, 1]]))


def test_ranking_ap_hand_computed():
    from mtl_tf.evaluate.classification import ranking_average_precision

    # Ranked: pos, neg, pos, neg -> precisions at positives 1/1 and 2/3.
    assert ranking_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(ranking_average_precision([0, 0], [0.1, 0.2]))


def test_multi_label_ap_skips_unknown_labels():
    from mtl_tf.evaluate.classification import MultiLabelEvaluator

    ev = MultiLabelEvaluator(["cat", "dog"])
    ev.add_image([1, 0], [0.9, 0.2])
    ev.add_image([-1, 1], [0.95, 0.8])  # cat unknown: its high score is ignored
    ev.add_image([0, 0], [0.1, 0.9])
    res = ev.result()
    assert res["per_label_ap"]["cat"] == 1.0
    assert res["per_label_ap"]["dog"] == pytest.approx(0.5)  # the negative outranks the positive
    assert res["per_label_balanced_accuracy"]["dog"] == pytest.approx(0.75)  # TPR 1, TNR 1/2


def test_multi_class_accuracy():
    from mtl_tf.evaluate.classification import MultiClassEvaluator

    ev = MultiClassEvaluator(["a", "b", "c"])
    ev.add_image(0, [0.7, 0.2, 0.1])
    ev.add_image(1, [0.5, 0.4, 0.1])
    ev.add_image(2, [0.1, 0.2, 0.7])
    res = ev.result()
    assert res["top1"] == pytest.approx(2 / 3) and res["per_class_accuracy"]["b"] == 0.0
    assert res["balanced_accuracy"] == pytest.approx(2 / 3)


def _random_boxes(rng, n):
    y0x0 = rng.uniform(0, 0.8, (n, 2))
    return np.concatenate([y0x0, y0x0 + rng.uniform(0.05, 0.2, (n, 2))], 1)


def test_map50_matches_pycocotools_ap50_with_coco_interpolation():
    """Cross-check against pycocotools: on images whose objects do not overlap, both match the
    same detections, so our AP at IoU 0.5 with COCO's 101-point interpolation equals its AP50."""
    from mtl_tf.evaluate.detection import average_precision

    rng = np.random.default_rng(0)
    ev = DetectionEvaluator(["a", "b"], image_size=(100, 100))
    for _ in range(20):
        n = 3
        gt = np.array([[0.0, 0.3 * i, 0.25, 0.3 * i + 0.25] for i in range(n)])
        cls = rng.integers(0, 2, n)
        jitter = gt + rng.normal(0, 0.04, gt.shape)
        extra = _random_boxes(rng, 2)
        dets = np.concatenate([jitter, extra])
        ev.add_image(gt, cls, dets, rng.uniform(0, 1, len(dets)), np.concatenate([cls, rng.integers(0, 2, 2)]))
    res = ev.result()
    ours = np.mean([average_precision(r, p, coco_101=True) for r, p in ev.curves().values()])
    assert res["coco_map50"] == pytest.approx(ours, abs=1e-6)
    assert 0.2 < res["coco_map50"] < 1.0  # a non-trivial case
    assert res["coco_map"] <= res["coco_map50"]
