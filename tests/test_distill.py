"""Distillation from single-task teachers (train/distill.py): targets only where labels are missing."""

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from conftest import tiny_task_configs
from mtl_tf.data import pipeline
from mtl_tf.data.example import IGNORE
from mtl_tf.data.shapes import SyntheticShapesSource
from mtl_tf.tasks import build_tasks
from mtl_tf.train.distill import distilled_sources, fill_missing, labels_from_teacher

SIZE = (64, 64)


def _tasks():
    configs = tiny_task_configs()
    configs["detection"]["classes"] = ["circle", "square", "triangle", "star", "cross", "ring", "hexagon", "arrow"]
    configs["segmentation"]["classes"] = ["background", *configs["detection"]["classes"]]
    return build_tasks(configs, SIZE)


def _sources(tasks):
    cfg = SyntheticShapesSource.Config
    return pipeline.load_sources([cfg(num_images=6, seed=1, labels="boxes"), cfg(num_images=6, seed=2, labels="masks")],
                                 tasks, SIZE)


def _fake_mask_teacher(images):
    return [{"mask": np.full(SIZE, 7, np.uint8)} for _ in images]


def test_teacher_labels_only_the_examples_missing_the_task():
    tasks = _tasks()
    seg = tasks["segmentation"]
    examples = [dict(ex) for ex in pipeline.concatenated_examples(_sources(tasks)).as_numpy_iterator()]
    real = {i: ex["segmentation/mask"].copy() for i, ex in enumerate(examples) if ex[seg.has_key]}
    assert 0 < len(real) < len(examples)
    assert fill_missing(examples, seg, _fake_mask_teacher) == len(examples) - len(real)
    for i, ex in enumerate(examples):
        assert ex[seg.has_key]
        if i in real:  # a real label is never overridden
            np.testing.assert_array_equal(ex["segmentation/mask"], real[i])
            assert not (ex["segmentation/mask"] == 7).all()
        else:
            assert (ex["segmentation/mask"] == 7).all()


def test_distilled_sources_feed_the_pipeline():
    tasks = _tasks()
    box_teacher = lambda images: [{"boxes": np.array([[0.1, 0.1, 0.5, 0.5]], np.float32),  # noqa: E731
                                   "box_classes": np.array([3], np.int32), "box_difficult": np.zeros(1, bool)}
                                  for _ in images]
    sources = distilled_sources(_sources(tasks), tasks, {"segmentation": _fake_mask_teacher, "detection": box_teacher})
    boxes_source, masks_source = [list(s.examples().as_numpy_iterator()) for s in sources]
    assert all(ex["has_detection"] and ex["has_segmentation"] for ex in boxes_source + masks_source)
    assert all((ex["segmentation/mask"] == 7).all() for ex in boxes_source)  # filled
    assert not any((ex["segmentation/mask"] == 7).all() for ex in masks_source)  # real
    assert all(ex["detection/box_classes"].tolist() == [3] for ex in masks_source)
    assert not any(ex["detection/box_classes"].tolist() == [3] and len(ex["detection/boxes"]) == 1
                   and np.allclose(ex["detection/boxes"], [[0.1, 0.1, 0.5, 0.5]]) for ex in boxes_source)
    target, weight = tasks["segmentation"].encode(boxes_source[0])
    assert float(tf.reduce_min(weight)) == 1.0  # the distilled mask now trains the task


def test_segmentation_teacher_ignores_unsure_pixels():
    seg = _tasks()["segmentation"]
    logits = np.zeros((1, *SIZE, 9), np.float32)
    logits[0, :32, :, 4] = 5.0  # sure: class 4 in the top half; the bottom half is uniform
    mask = labels_from_teacher(seg, tf.constant(logits), 0.5, 0.5)[0]["mask"]
    assert (mask[:32] == 4).all() and (mask[32:] == IGNORE).all()


def test_detection_teacher_keeps_confident_boxes():
    det = _tasks()["detection"]
    raw = np.zeros((1, det.num_anchors, 4 + 9), np.float32)
    raw[0, :, 4] = 6.0  # background everywhere...
    raw[0, 10, 4:] = 0.0
    raw[0, 10, 4 + 1 + 2] = 8.0  # ...but anchor 10: triangle, sure
    raw[0, 20, 4:] = 0.0
    raw[0, 20, 4 + 1 + 5] = 1.0  # anchor 20: ring, unsure (p ~ 0.25)
    labels = labels_from_teacher(det, tf.constant(raw), 0.5, 0.5)[0]
    assert labels["box_classes"].tolist() == [2]
    np.testing.assert_allclose(labels["boxes"][0], np.clip(det.anchor_corners[10], 0, 1), atol=1e-5)


def test_cli_teacher_option_is_checked():
    from mtl_tf.cli import main

    result = CliRunner().invoke(main, ["fit", "recipes/partial_shapes.yaml", "--teacher", "segmentation"])
    assert result.exit_code != 0 and "TASK=RUN" in result.output
    result = CliRunner().invoke(main, ["fit", "recipes/partial_shapes.yaml", "--teacher", "nope=runs/x"])
    assert result.exit_code != 0 and "teachers" in result.output


def test_fit_picks_normalized_balancing_for_partial_labels_unless_the_recipe_chooses():
    from conftest import TINY_RECIPE
    from mtl_tf.recipe import load_recipe
    from mtl_tf.train.setup import partial_label_defaults

    recipe = load_recipe("recipes/partial_shapes.yaml")
    chosen, note = partial_label_defaults(recipe)
    assert note.startswith("partial labels") and "normalized" in note
    assert chosen.train.balance.method == "normalized" and chosen.train.trunk_weighting == "tasks"
    assert chosen.train.accumulate == {"detection": 1, "segmentation": 1} and chosen.train.engine_enabled()
    assert chosen.data == recipe.data and chosen.tasks == recipe.tasks  # nothing else changes
    kept, note = partial_label_defaults(load_recipe("recipes/partial_shapes.yaml", ["train.balance.method=uncertainty"]))
    assert kept.train.balance.method == "uncertainty" and "keeping the recipe's" in note
    assert partial_label_defaults(chosen)[0].to_dict() == chosen.to_dict()  # a resumed run: the same recipe
    both = load_recipe("recipes/partial_shapes.yaml", ["data.train.0.labels=both"])
    assert partial_label_defaults(both) == (both, None)
    tiny = load_recipe(TINY_RECIPE)
    assert partial_label_defaults(tiny) == (tiny, None)
    single = load_recipe("recipes/partial_shapes.yaml", ["train.single_task=detection"])
    assert partial_label_defaults(single) == (single, None)
