"""Image-level labels of the built-in synthetic scenes (scene class, object presence), which
leave images, boxes and masks unchanged, and the three-task recipe built on them."""

import json

import numpy as np

from conftest import ROOT
from mtl_tf.data.synthetic import (
    OBJECT_CLASSES, SCENE_CLASSES, SURFACE_CLASSES, SyntheticAerialSource, objects_present, render_scene, scene_class,
)
from mtl_tf.recipe import load_recipe
from mtl_tf.train.fit import run_fit


def _source(n=60, **extra):
    return SyntheticAerialSource(SyntheticAerialSource.Config(num_images=n, seed=5, **extra), (64, 64))


def test_scene_labels_leave_images_boxes_and_masks_as_rendered():
    source = _source(n=3)
    for i in range(3):
        image, mask, boxes, classes = render_scene(np.random.default_rng([5, i]), 64, 64, 12)
        ex = source[i]
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["mask"], mask)
        np.testing.assert_array_equal(ex["boxes"], boxes)
        assert ex["label"] == scene_class(mask) and ex["label"].dtype == np.int32
        np.testing.assert_array_equal(ex["labels"], [int(c in classes) for c in range(len(OBJECT_CLASSES))])


def test_scene_rule_and_class_names():
    water = np.zeros((10, 10), np.uint8)
    water[:1, :5] = SURFACE_CLASSES.index("water")  # 5% water
    roads = np.zeros((10, 10), np.uint8)
    roads[:3] = SURFACE_CLASSES.index("road")  # 30% road
    assert [SCENE_CLASSES[scene_class(m)] for m in (water, roads, np.zeros((10, 10), np.uint8))] == \
        ["waterside", "urban", "rural"]
    np.testing.assert_array_equal(objects_present(np.array([2, 2, 0], np.int32)), [1, 0, 1, 0])
    config = SyntheticAerialSource.Config(num_images=1, labels="boxes")
    assert config.label_kinds() == ["boxes", "label", "labels"]
    assert config.class_names("label") == SCENE_CLASSES and config.class_names("labels") == OBJECT_CLASSES
    assert config.class_names("mask") == []


def test_every_scene_class_is_common_enough_to_learn():
    counts = np.bincount([int(_source()[i]["label"]) for i in range(60)], minlength=3)
    assert counts.min() >= 10, counts  # about a third each by design


def test_three_tasks_recipe_validates_and_trains_one_short_epoch(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "three_tasks.yaml", [
        "data.image_size=[64, 64]", "data.batch_size=8", "data.train.0.num_images=32", "data.val.0.num_images=16",
        "model.backbone.width=8", "tasks.detection.extra_channels=16", "tasks.detection.feature_levels=4",
        "tasks.detection.min_scale=0.1", "tasks.scene.hidden=16", "train.epochs=1", "train.num_overlays=2",
    ])
    assert recipe.tasks["scene"].type == "classification" and recipe.tasks["scene"].taps == ["C4", "C5"]
    run = run_fit(recipe, tmp_path / "run", verbose=0)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert "top1" in metrics["scene"] and "miou" in metrics["segmentation"] and "map50" in metrics["detection"]
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"val_detection_map50", "val_segmentation_miou", "val_scene_top1", "scene_loss"} <= set(header)
    assert (run / "scene_confusion_matrix.png").is_file()


def test_scene_and_presence_bind_to_classification_and_multilabel_tasks():
    from mtl_tf.data.pipeline import ExampleReader
    from mtl_tf.recipe import recipe_from_dict
    from mtl_tf.tasks import build_tasks

    source = {"type": "synthetic_aerial", "num_images": 4, "seed": 5, "labels": "boxes"}
    recipe = recipe_from_dict({"data": {"image_size": [64, 64], "train": [source], "val": [source]}, "tasks": {
        "scene": {"type": "classification", "classes": ["waterside", "urban", "rural"]},
        "objects": {"type": "multilabel", "classes": ["bus", "car", "cyclist", "pedestrian"]}}})
    reader = ExampleReader(recipe.data.train, build_tasks(recipe.tasks, (64, 64)), (64, 64))
    raw = _source(n=4, labels="boxes")
    for i, ex in enumerate(reader):  # class ids follow the tasks' own orders
        assert ex["has_scene"] and ex["has_objects"]
        assert ["waterside", "urban", "rural"][ex["scene/label"]] == SCENE_CLASSES[raw[i]["label"]]
        np.testing.assert_array_equal(ex["objects/labels"], raw[i]["labels"][::-1])
