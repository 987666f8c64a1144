"""The classification and multilabel task types: metrics cross-checked against scikit-learn,
masked losses (zero loss and zero gradient where a label is missing or unknown), heads,
encoding and predictions."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import (
    accuracy_score, average_precision_score, balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_curve,
    recall_score,
    top_k_accuracy_score,
)

from mtl_tf.evaluate.classification import MultiClassEvaluator, MultiLabelEvaluator, ranking_average_precision
from mtl_tf.tasks import build_tasks

NAMES = [f"c{i}" for i in range(7)]


def _tasks(**extra):
    configs = {"kind": {"type": "classification", "classes": NAMES, **extra.get("kind", {})},
               "tags": {"type": "multilabel", "classes": ["a", "b", "c", "d"], **extra.get("tags", {})}}
    return build_tasks(configs, (64, 64))


def test_multi_class_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 200)  # class 6 never true: left out of the balanced accuracy, as sklearn
    scores = rng.random((200, 7)) + 0.8 * np.eye(7)[truth] * rng.random((200, 1))
    ev = MultiClassEvaluator(NAMES)
    for t, s in zip(truth, scores):
        ev.add_image(t, s)
    res, predicted = ev.result(), scores.argmax(1)
    assert res["top1"] == pytest.approx(accuracy_score(truth, predicted))
    assert res["top5"] == pytest.approx(top_k_accuracy_score(truth, scores, k=5, labels=range(7)))
    with pytest.warns(UserWarning):  # sklearn warns about the class predicted but never true
        assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    recall = recall_score(truth, predicted, labels=range(6), average=None)
    assert [res["per_class_accuracy"][n] for n in NAMES[:6]] == pytest.approx(recall)
    assert "c6" not in res["per_class_accuracy"]
    np.testing.assert_array_equal(ev.matrix, confusion_matrix(truth, predicted, labels=range(7)))
    assert 0 < res["top1"] < res["top5"] < 1


def test_top5_only_with_more_than_five_classes_and_bad_ids_are_errors():
    ev = MultiClassEvaluator(["a", "b", "c"])
    ev.add_image(1, [0.1, 0.8, 0.1])
    assert set(ev.result()) == {"top1", "balanced_accuracy", "per_class_accuracy"}
    with pytest.raises(ValueError, match="class id 3 outside 0..2"):
        ev.add_image(3, [0.1, 0.8, 0.1])


def test_multi_label_metrics_match_scikit_learn_on_known_labels():
    rng = np.random.default_rng(1)
    truth = (rng.random((300, 4)) < [0.2, 0.5, 0.05, 0.7]).astype(np.int8)
    scores = np.clip(0.35 * truth + rng.random((300, 4)) * 0.8, 0, 1)
    truth[rng.random((300, 4)) < 0.3] = -1  # unknown entries
    truth[:, 3] = np.where(truth[:, 3] == 0, -1, truth[:, 3])  # label d: only positives known
    ev = MultiLabelEvaluator(["a", "b", "c", "d"], threshold=0.45)
    for t, s in zip(truth, scores):
        ev.add_image(t, s)
    res = ev.result()
    for c, name in enumerate("abcd"):
        known = truth[:, c] >= 0
        y, s = truth[known, c], scores[known, c]
        assert res["per_label_ap"][name] == pytest.approx(average_precision_score(y, s))
        assert res["per_label_f1"][name] == pytest.approx(f1_score(y, s >= 0.45))
        if name != "d":
            assert res["per_label_balanced_accuracy"][name] == pytest.approx(balanced_accuracy_score(y, s >= 0.45))
    assert res["per_label_balanced_accuracy"]["d"] == pytest.approx(np.mean(scores[truth[:, 3] == 1, 3] >= 0.45))
    assert res["map"] == pytest.approx(np.mean(list(res["per_label_ap"].values())))
    # Unknown entries are left out: making their scores perfect or awful changes nothing.
    flipped = MultiLabelEvaluator(["a", "b", "c", "d"], threshold=0.45)
    for t, s in zip(truth, scores):
        flipped.add_image(t, np.where(t < 0, 1 - s, s))
    assert flipped.result() == res


def test_multi_label_ap_and_curves_count_tied_scores_together_as_scikit_learn():
    rng = np.random.default_rng(2)
    truth = (rng.random((400, 3)) < [0.3, 0.6, 0.1]).astype(np.int8)
    scores = np.round(np.clip(0.3 * truth + rng.random((400, 3)) * 0.7, 0, 1) * 8) / 8  # int8-like: many ties
    truth[rng.random((400, 3)) < 0.2] = -1
    ev = MultiLabelEvaluator(["a", "b", "c"])
    for t, s in zip(truth, scores):
        ev.add_image(t, s)
    curves, ap = ev.curves(), ev.result()["per_label_ap"]
    for c, name in enumerate("abc"):
        known = truth[:, c] >= 0
        y, s = truth[known, c], scores[known, c]
        assert ap[name] == pytest.approx(average_precision_score(y, s))
        precision, recall, _ = precision_recall_curve(y, s)
        np.testing.assert_allclose(curves[name][0], recall[:-1][::-1])
        np.testing.assert_allclose(curves[name][1], precision[:-1][::-1])
        order = rng.permutation(len(y))  # the order of the images changes nothing
        np.testing.assert_allclose(ranking_average_precision(y[order], s[order]), ap[name])


def test_multi_label_rejects_values_other_than_one_zero_unknown():
    ev = MultiLabelEvaluator(["a", "b"])
    with pytest.raises(ValueError, match="1, 0 or -1"):
        ev.add_image([2, 0], [0.5, 0.5])


def _loss_and_gradient(task, target, logits, weight):
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = task.loss(tf.constant(target), logits, tf.constant(weight))
    return float(loss), tape.gradient(loss, logits).numpy()


def test_classification_loss_is_masked_and_smoothed():
    task = _tasks(kind={"label_smoothing": 0.1})["kind"]
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 7)).astype(np.float32)
    target = np.array([3, 0, 6, 0], np.int32)
    weight = np.array([1, 0, 1, 0], np.float32)
    loss, gradient = _loss_and_gradient(task, target, logits, weight)
    keras_ce = tf.keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    expected = keras_ce(tf.one_hot(target[[0, 2]], 7), logits[[0, 2]])
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert np.all(gradient[[1, 3]] == 0) and np.abs(gradient[[0, 2]]).sum() > 0
    # Nothing labelled: zero loss, zero gradient.
    loss, gradient = _loss_and_gradient(task, target, logits, np.zeros(4, np.float32))
    assert loss == 0 and np.all(gradient == 0)


def test_multilabel_unknown_labels_give_no_loss_and_no_gradient():
    task = _tasks()["tags"]
    labels = tf.constant([[1, 0, -1, -1], [-1, -1, -1, -1]], tf.int8)
    target, weight = task.encode({"tags/labels": labels, "has_tags": tf.constant([True, True])[:, None]})
    np.testing.assert_array_equal(weight.numpy(), [[1, 1, 0, 0], [0, 0, 0, 0]])
    logits = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    loss, gradient = _loss_and_gradient(task, target.numpy(), logits, weight.numpy())
    expected = tf.keras.losses.BinaryCrossentropy(from_logits=True)(np.array([[1.0, 0.0]]), logits[:1, :2])
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert np.all(gradient[weight.numpy() == 0] == 0) and np.all(gradient[0, :2] != 0)
    # has_tags false: every entry masked, whatever the labels say.
    _, weight = task.encode({"tags/labels": labels[0], "has_tags": tf.constant(False)})
    assert np.all(weight.numpy() == 0)


def test_classification_encode_masks_unlabelled_examples():
    task = _tasks()["kind"]
    assert [float(task.encode({"kind/label": tf.constant(l), "has_kind": tf.constant(h)})[1])
            for l, h in ((4, True), (4, False), (-1, True))] == [1, 0, 0]


def test_heads_pool_the_configured_taps_and_predict_top_k():
    from mtl_tf.model.multitask import MultitaskModel

    configs = {"kind": {"type": "classification", "classes": NAMES, "taps": ["C4", "C5"], "hidden": 16, "top_k": 3},
               "tags": {"type": "multilabel", "classes": ["a", "b", "c", "d"], "threshold": 0.3}}
    model = MultitaskModel({"name": "tiny", "width": 8}, configs, (64, 64))
    names = {layer.name for layer in model.layers}
    assert {"kind_C4_avg", "kind_C5_max", "kind_hidden", "kind_dropout", "tags_C5_avg"} <= names
    assert "tags_C4_avg" not in names
    images = np.random.default_rng(4).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    raw = model(images, training=False)
    assert raw["kind"].shape == (2, 7) and raw["tags"].shape == (2, 4)
    kind, tags = model.tasks["kind"], model.tasks["tags"]
    predicted = {k: v.numpy() for k, v in kind.postprocess(raw["kind"]).items()}
    probabilities = tf.nn.softmax(raw["kind"]).numpy()
    np.testing.assert_array_equal(predicted["top_classes"], np.argsort(-probabilities, 1)[:, :3])
    exported = kind.postprocess_exported(kind.export_outputs(raw["kind"]))
    np.testing.assert_allclose(exported["top_scores"].numpy(), predicted["top_scores"], rtol=1e-6)
    present = tags.postprocess(raw["tags"])["present"].numpy()
    np.testing.assert_array_equal(present, tf.sigmoid(raw["tags"]).numpy() >= 0.3)
    record = kind.prediction_records(kind.labels_from_prediction(predicted, 1), "x.jpg", (64, 64))[0]
    assert record["label"] == NAMES[predicted["top_classes"][1, 0]] and len(record["top_k"]) == 3


def test_labels_are_remapped_checked_and_counted():
    tasks = _tasks()
    kind, tags = tasks["kind"], tasks["tags"]
    labels = {"label": np.int32(1)}
    assert kind.remap_classes(labels, np.array([4, 2])) is None and labels["label"] == 2
    assert "not in the source's 2 classes" in kind.remap_classes({"label": np.int32(5)}, np.array([4, 2]))
    # A source with labels [c, a] (one blank = NaN): b and d are unknown to it.
    labels = {"labels": np.array([1.0, np.nan])}
    assert tags.remap_classes(labels, np.array([2, 0])) is None
    np.testing.assert_array_equal(labels["labels"], [-1, -1, 1, -1])
    assert labels["labels"].dtype == np.int8 and tags.check_example(labels, None) is None
    bad = {"labels": np.array([1.0, 0.5])}
    tags.remap_classes(bad, np.array([2, 0]))
    assert "label values [0.5] are not 1, 0 or -1" in tags.check_example(bad, None)
    counter = tags.stats_counter()
    tags.count_labels(counter, labels)
    tags.count_labels(counter, {"labels": np.array([0, 1, 1, -1], np.int8)})
    stats = tags.stats_result(counter)
    assert stats["positives"] == {"a": 0, "b": 1, "c": 2, "d": 0} and stats["unknown"]["d"] == 2
