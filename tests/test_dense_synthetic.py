"""The synthetic scenes' dense labels (depth, normals, boundaries, saliency): unchanged scenes,
labels consistent with the mask, boxes and each other, flips that move them together, and the
six-task recipe (recipes/ubernet.yaml) through fit and predict."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ROOT
from mtl_tf.data import augment, pipeline
from mtl_tf.data.synthetic import (BUILDING, DENSE_KINDS, EAVE_HEIGHT, GROUND, VEGETATION, VEGETATION_HEIGHT, WATER,
                                   SCENE_METRES, SyntheticAerialSource, normals_from_height, object_instances)
from mtl_tf.recipe import load_recipe
from mtl_tf.tasks import build_tasks

SIZE = 64
SMALL = ["data.image_size=[64, 64]", "data.batch_size=8", "model.backbone.width=8", "train.epochs=1",
         "train.steps_per_epoch=3", "train.num_overlays=1", "tasks.detection.min_scale=0.1",
         "tasks.detection.extra_channels=16", "data.train.0.num_images=24", "data.val.0.num_images=8"]


def _source(dense=DENSE_KINDS, n=12, size=(96, 96), **kwargs):
    return SyntheticAerialSource(SyntheticAerialSource.Config(num_images=n, seed=5, dense=list(dense), **kwargs), size)


def test_dense_labels_leave_the_scenes_as_they_were():
    plain, dense = _source(dense=[]), _source()
    assert dense.config.label_kinds() == ["boxes", "mask", *DENSE_KINDS, "label", "labels"]
    for i in range(len(plain)):
        a, b = plain[i], dense[i]
        assert set(b) - set(a) == set(DENSE_KINDS)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert set(_source(dense=["normals"], labels="boxes")[0]) == {"image", "boxes", "box_classes", "normals", "label", "labels"}


def test_dense_labels_agree_with_the_mask_the_boxes_and_each_other():
    source = _source(n=16)
    camera = source.config.camera_height
    seen = set()
    for i in range(len(source)):
        ex = source[i]
        mask, depth = ex["mask"], ex["depth"][..., 0]
        objects = object_instances(ex["boxes"], mask.shape) > 0
        np.testing.assert_array_equal(ex["saliency"], objects.astype(np.uint8))
        height = camera - depth
        ground = np.isin(mask, [GROUND, WATER]) & ~objects
        assert np.all(height[ground] == 0)
        roofs = (mask == BUILDING) & ~objects
        assert np.all((height[roofs] >= EAVE_HEIGHT[0]) & (height[roofs] <= EAVE_HEIGHT[1] + 0.5 * SCENE_METRES))
        trees = (mask == VEGETATION) & ~objects
        assert np.all((height[trees] >= VEGETATION_HEIGHT[0] - 1e-4) & (height[trees] <= VEGETATION_HEIGHT[1] + 1e-4))
        assert np.all(height[objects] > 0)
        # normals: unit or unlabelled (at height steps), the height map's finite differences
        length = np.linalg.norm(ex["normals"], axis=-1)
        assert np.all((np.abs(length - 1) < 1e-5) | (length == 0)) and 0.6 < (length > 0).mean() < 1
        np.testing.assert_allclose(ex["normals"], normals_from_height(height, SCENE_METRES / 96), atol=1e-5)
        assert np.all(ex["normals"][ground & (length > 0)] == [0, 0, 1])
        # boundaries: every change of surface class or object between 4-neighbours is marked
        change = (mask[:, 1:] != mask[:, :-1]) | (objects[:, 1:] != objects[:, :-1])
        assert np.all(ex["boundaries"][:, 1:][change] == 1) and np.all(ex["boundaries"][:, :-1][change] == 1)
        assert 0 < ex["boundaries"].mean() < 0.5
        seen |= {c for c in (BUILDING, VEGETATION) if (mask == c).any()}
    assert seen == {BUILDING, VEGETATION}


@pytest.mark.parametrize("axis", [1, 0])
def test_flips_negate_the_normals_component_and_keep_every_map_with_the_image(axis):
    recipe = load_recipe(ROOT / "recipes" / "ubernet.yaml", SMALL)
    tasks = build_tasks(recipe.tasks, recipe.data.image_size)
    example = pipeline.ExampleReader(recipe.data.train, tasks, recipe.data.image_size).read(0, 3)
    assert np.abs(example["normals/normals"][..., 1 - axis]).max() > 0.1 and example["saliency/saliency"].any()
    flip = augment.horizontal_flip if axis == 1 else augment.vertical_flip
    out = {k: v.numpy() for k, v in flip({k: tf.constant(v) for k, v in example.items()}, augment.label_layout(tasks)).items()}
    mirror = lambda a: np.flip(a, axis=axis)  # noqa: E731
    for key in ("image", "segmentation/mask", "depth/depth", "saliency/saliency", "boundaries/boundaries"):
        np.testing.assert_array_equal(out[key], mirror(example[key]))
    normals = mirror(example["normals/normals"]) * np.where(np.arange(3) == (0 if axis == 1 else 1), -1, 1)
    np.testing.assert_array_equal(out["normals/normals"], normals)
    # the flipped normals are those of the flipped scene's height map
    height = recipe.data.train[0].camera_height - out["depth/depth"][..., 0]
    np.testing.assert_allclose(out["normals/normals"], normals_from_height(height, SCENE_METRES / SIZE), atol=1e-5)
    # the flipped boxes cover the flipped saliency (object footprints)
    boxes = out["detection/boxes"]
    footprint = object_instances(boxes, (SIZE, SIZE)) > 0
    assert np.mean(footprint == (out["saliency/saliency"] == 1)) > 0.99


def test_ubernet_recipe_trains_every_task_and_predict_writes_each_map(tmp_path):
    from click.testing import CliRunner

    from mtl_tf.cli import main
    from mtl_tf.train.fit import run_fit

    recipe = load_recipe(ROOT / "recipes" / "ubernet.yaml", SMALL)
    assert list(recipe.tasks) == ["detection", "segmentation", "depth", "normals", "boundaries", "saliency"]
    run = run_fit(recipe, tmp_path / "run", verbose=0)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    primary = {"detection": "map50", "segmentation": "miou", "depth": "abs_rel", "normals": "mean_angle",
               "boundaries": "max_f", "saliency": "max_f"}
    for task, metric in primary.items():
        assert np.isfinite(metrics[task][metric]), (task, metrics[task])
    assert 0 < metrics["depth"]["abs_rel"] < 1 and 0 < metrics["normals"]["mean_angle"] < 180
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {f"val_{t}_{m}" for t, m in primary.items()} <= set(history)

    frame = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(frame).save(tmp_path / "frame.png")
    result = CliRunner().invoke(main, ["predict", str(run), str(tmp_path / "frame.png"), "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    read = lambda folder: np.asarray(Image.open(tmp_path / "pred" / folder / "frame.png"))  # noqa: E731
    depth, normals = read("depth_depth"), read("normals_normals")
    assert depth.shape == (40, 56) and depth.dtype == np.uint16 and depth.min() > 0
    assert normals.shape == (40, 56, 3) and normals.dtype == np.uint8
    for task in ("boundaries", "saliency"):
        assert read(f"{task}_{task}").shape == (40, 56) and read(f"{task}_{task}").dtype == np.uint8


def test_normals_are_unlabelled_across_height_steps_and_follow_slopes():
    metres = 0.5
    height = np.zeros((12, 12))
    height[3:9, 3:9] = 6.0 + 0.3 * np.arange(6)[None, :]  # a roof 6 m up, rising 0.3 m per pixel along x
    normals = normals_from_height(height, metres)
    unlabelled = np.linalg.norm(normals, axis=-1) == 0
    ring = np.zeros((12, 12), bool)
    ring[2:10, 2:10] = True
    ring[4:8, 4:8] = False  # both sides of the step (4-neighbours: not the ring's corners)
    ring[[2, 2, 9, 9], [2, 9, 2, 9]] = False
    np.testing.assert_array_equal(unlabelled, ring)
    slope = np.array([-0.3 / metres, 0, 1]) / np.hypot(0.3 / metres, 1)
    np.testing.assert_allclose(normals[4:8, 4:8], np.broadcast_to(slope, (4, 4, 3)), atol=1e-6)
    np.testing.assert_array_equal(normals[0, 0], [0, 0, 1])
