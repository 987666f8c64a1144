"""Dense task types (depth, normals, saliency, boundaries): losses and metrics on hand-computed
cases, zero gradient from unlabelled pixels and images, and a full-int8 export with builtin ops."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mtl_tf.data.example import IGNORE
from mtl_tf.evaluate.dense import BinaryMapEvaluator, DepthEvaluator, NormalsEvaluator
from mtl_tf.tasks import TASKS

NAN = math.nan


def _task(kind, size=(2, 2), **config):
    cls = TASKS[kind]
    return cls(cls.Config(output_stride=1, **config), size, name="t")


def _encode(task, label, has=True):
    """Encode one example, returned as a batch of one (target, weight)."""
    target, weight = task.encode({task.key(task.map_key): tf.constant(label), task.has_key: tf.constant(has)})
    return target[None], weight[None]


def _loss_and_gradient(task, raw, label, has=True):
    target, weight = _encode(task, label, has)
    raw = tf.Variable(np.asarray(raw, np.float32)[None])
    with tf.GradientTape() as tape:
        loss = task.loss(target, raw, weight)
    return float(loss), tape.gradient(loss, raw).numpy()[0]


DEPTH = np.array([[2.0, 4.0], [NAN, 1.0]], np.float32)[..., None]
PRED_DEPTH = np.array([[1.0, 4.0], [3.0, 2.0]], np.float32)[..., None]


def test_depth_l1_and_silog_on_hand_computed_cases_ignore_pixels_without_depth():
    task = _task("depth", depth_scale=1.0)
    loss, grad = _loss_and_gradient(task, np.log(PRED_DEPTH), DEPTH)
    assert loss == pytest.approx((1 + 0 + 1) / 3, rel=1e-5)
    assert grad[1, 0, 0] == 0 and np.all(np.isfinite(grad)) and grad[0, 0, 0] < 0 < grad[1, 1, 0]
    # silog: log errors -ln2, 0, ln2 -> mean 0, mean square 2 ln2^2 / 3
    loss, grad = _loss_and_gradient(_task("depth", depth_scale=1.0, loss="silog"), np.log(PRED_DEPTH), DEPTH)
    assert loss == pytest.approx(2 * math.log(2) ** 2 / 3, rel=1e-5) and grad[1, 0, 0] == 0
    # the same log errors shifted by a constant cost only (1 - lambda) * shift^2
    loss, _ = _loss_and_gradient(_task("depth", depth_scale=1.0, loss="silog"), np.log(PRED_DEPTH) + 0.3, DEPTH)
    assert loss == pytest.approx(2 * math.log(2) ** 2 / 3 + 0.5 * 0.09, rel=1e-5)
    # invalid: zero also drops zeros; NaN never counts
    zero = np.where(np.isnan(DEPTH), 0.0, DEPTH).astype(np.float32)
    loss, grad = _loss_and_gradient(_task("depth", depth_scale=1.0, invalid="zero"), np.log(PRED_DEPTH), zero)
    assert loss == pytest.approx(2 / 3, rel=1e-5) and grad[1, 0, 0] == 0


@pytest.mark.parametrize("kind, raw, label", [
    ("depth", np.log(PRED_DEPTH), DEPTH),
    ("normals", np.ones((2, 2, 3)), np.tile(np.float32([0, 0, 1]), (2, 2, 1))),
    ("saliency", np.ones((2, 2, 1)), np.array([[1, 0], [0, IGNORE]], np.uint8)),
    ("boundaries", -np.ones((2, 2, 1)), np.array([[1, 0], [0, 1]], np.uint8)),
])
def test_unlabelled_images_give_zero_loss_and_zero_gradient(kind, raw, label):
    task = _task(kind)
    loss, grad = _loss_and_gradient(task, raw, label)
    assert loss > 0 and np.abs(grad).sum() > 0
    loss, grad = _loss_and_gradient(task, raw, label, has=False)
    assert loss == 0 and np.all(grad == 0)


def test_normals_losses_ignore_zero_vectors_and_flips_negate_x_and_y():
    truth = np.array([[[0, 0, 1], [0, 0, 1]], [[1, 0, 0], [0, 0, 0]]], np.float32)
    raw = np.array([[[1, 0, 0], [2, 0, 2]], [[5, 0, 0], [3, 1, 0]]], np.float32)
    # cos: 0, 1/sqrt(2), 1 (scale does not matter); the zero vector is unlabelled
    loss, grad = _loss_and_gradient(_task("normals", loss="cosine"), raw, truth)
    assert loss == pytest.approx((1 + (1 - 1 / math.sqrt(2)) + 0) / 3, rel=1e-5)
    assert np.all(grad[1, 1] == 0)
    # angular (the default): 90, 45 and 0 degrees, in radians
    task = _task("normals")
    loss, grad = _loss_and_gradient(task, raw, truth)
    assert loss == pytest.approx((math.pi / 2 + math.pi / 4 + 0) / 3, abs=1e-3)  # the clip: 0.0014 at 0
    assert np.all(grad[1, 1] == 0) and np.all(np.isfinite(grad))
    assert dict(task.label_spec()["normals"].negate_on_flip) == {1: 0, 0: 1}


def test_the_angular_loss_keeps_its_pull_as_the_error_shrinks():
    truth = np.tile(np.float32([0, 0, 1]), (1, 1, 1))
    pulls = {}
    for loss_name in ("angular", "cosine"):
        task = _task("normals", loss=loss_name)
        pulls[loss_name] = [np.linalg.norm(_loss_and_gradient(task, [[[math.sin(a), 0, math.cos(a)]]], truth)[1])
                            for a in (0.2, 0.02)]
    assert pulls["angular"][1] == pytest.approx(pulls["angular"][0], rel=0.05)  # |d angle / d raw| = 1
    assert pulls["cosine"][1] < 0.15 * pulls["cosine"][0]  # sin(angle): ten times weaker at a tenth


def test_an_untrained_normals_head_starts_facing_the_camera():
    import keras

    from mtl_tf.tasks.dense import build_dense_head

    features = {tap: keras.Input((16 // s, 16 // s, 4)) for tap, s in (("C3", 2), ("C4", 4), ("C5", 8))}
    head = keras.Model(features, build_dense_head(features, 3, (16, 16), "n", 4, 8, _task("normals").output_bias))
    out = head.predict({k: np.zeros((1, *v.shape[1:]), np.float32) for k, v in features.items()}, verbose=0)
    np.testing.assert_allclose(out[..., 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[..., :2], 0.0, atol=1e-6)


def test_balanced_cross_entropy_weighs_positives_by_the_negative_share():
    task = _task("saliency")
    label = np.array([[1, 0], [0, IGNORE]], np.uint8)
    loss, grad = _loss_and_gradient(task, np.zeros((2, 2, 1)), label)
    # ln2 per labelled pixel; beta = 2/3 negatives: (2/3 + 1/3 + 1/3) ln2 over 3 labelled pixels
    assert loss == pytest.approx(4 * math.log(2) / 9, rel=1e-5)
    assert grad[1, 1, 0] == 0
    # the positive's gradient is twice a negative's (weights 2/3 vs 1/3), opposite signs
    assert grad[0, 0, 0] == pytest.approx(-2 * grad[0, 1, 0], rel=1e-5) and grad[0, 1, 0] > 0


def test_depth_metrics_on_a_hand_computed_case():
    evaluator = DepthEvaluator()
    evaluator.add(np.array([1.0, 2.0, 4.0, NAN]), np.array([1.1, 3.0, 4.0, 100.0]))
    result = evaluator.result()
    assert result["abs_rel"] == pytest.approx((0.1 + 0.5 + 0) / 3)
    assert result["rmse"] == pytest.approx(math.sqrt((0.01 + 1) / 3))
    assert (result["delta1"], result["delta2"], result["delta3"]) == pytest.approx((2 / 3, 1, 1))
    zero = DepthEvaluator("zero")
    zero.add(np.array([0.0, 2.0]), np.array([5.0, 2.0]))
    assert zero.result()["rmse"] == 0 and zero.result()["abs_rel"] == 0


def test_normals_metrics_on_hand_computed_angles():
    angles = np.radians([0.0, 10.0, 20.0, 45.0, 90.0])
    truth = np.tile([0.0, 0.0, 1.0], (6, 1))
    truth[5] = 0  # unlabelled
    prediction = np.stack([np.sin(np.r_[angles, 1.0]), np.zeros(6), np.cos(np.r_[angles, 1.0])], axis=1) * 3
    evaluator = NormalsEvaluator()
    evaluator.add(truth, prediction)
    result = evaluator.result()
    assert result["mean_angle"] == pytest.approx(33.0)
    assert result["median_angle"] == pytest.approx(20.0, abs=0.01)
    assert (result["within_11_25"], result["within_22_5"], result["within_30"]) == pytest.approx((0.4, 0.6, 0.6))


def test_f_measures_on_a_hand_computed_case():
    evaluator = BinaryMapEvaluator()
    evaluator.add(np.array([1, 1, 0, 0, IGNORE], np.uint8), np.array([0.9, 0.4, 0.6, 0.1, 0.99]))
    result = evaluator.result()
    # at 0.5: TP 1, FP 1, FN 1 -> F 0.5; at any threshold in (0.1, 0.4]: TP 2, FP 1 -> F 0.8
    assert result["f_at_0_5"] == pytest.approx(0.5) and result["max_f"] == pytest.approx(0.8)
    assert 0.1 < result["best_threshold"] <= 0.4


def test_dense_tasks_export_to_full_int8_with_builtin_ops_only(tmp_path):
    from mtl_tf.export.serving import export_serving_model
    from mtl_tf.export.tflite import builtin_only, convert_tflite, tflite_signature
    from mtl_tf.model.multitask import MultitaskModel

    tasks = {"depth": {"depth_scale": 20.0}, "normals": {}, "saliency": {"output_stride": 8},
             "edges": {"type": "boundaries", "output_stride": 2}}
    model = MultitaskModel({"name": "tiny", "width": 8}, tasks, (64, 64))
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    saved = export_serving_model(model, tmp_path / "saved", int8_input="uint8")
    path = tmp_path / "model.tflite"
    path.write_bytes(convert_tflite(saved, "int8", lambda: (image[None] for image in images)))
    assert builtin_only(path) == []
    _, outputs = tflite_signature(path)
    assert {k: v["shape"] for k, v in outputs.items()} == {
        "depth_depth": [1, 16, 16, 1], "normals_normals": [1, 16, 16, 3],
        "saliency_probability": [1, 8, 8, 1], "edges_probability": [1, 32, 32, 1]}
    assert all(v["dtype"] == "int8" and v["quantization"]["scale"] > 0 for v in outputs.values())
    # the int8 maps follow the float model's decoded outputs (depth in metres, unit normals)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serve")
    got = runner(image=images[:1])
    raw = model(images[:1].astype(np.float32), training=False)
    for name, kind, tolerance in (("depth", "depth", 0.05), ("normals", "normals", 0.1), ("edges", "probability", 0.05)):
        expected = model.tasks[name].export_outputs(raw[name])[kind].numpy()
        q = outputs[f"{name}_{kind}"]["quantization"]
        value = (got[f"{name}_{kind}"].astype(np.float32) - q["zero_point"]) * q["scale"]
        assert np.abs(value - expected).mean() < tolerance * np.abs(expected).mean(), name
