"""Augmentation moves image, boxes and mask together (data/augment.py)."""

import numpy as np
import tensorflow as tf

from mtl_tf.config import AugmentConfig
from mtl_tf.data import augment
from mtl_tf.data.example import IGNORE
from mtl_tf.tasks import build_tasks
from mtl_tf.tasks.detection.boxes import iou_matrix

SIZE = 64
LAYOUT = augment.label_layout(build_tasks(
    {"detection": {"classes": ["a", "b", "c"], "min_scale": 0.1}, "segmentation": {"classes": ["bg", "object"]}}, (SIZE, SIZE)
))
FULL = AugmentConfig.model_validate(
    {"horizontal_flip": True, "vertical_flip": True, "expand": {"probability": 0.5}, "crop": {"probability": 0.9}}
)


def _scene(rects):
    """A dark image with bright rectangles (pixel y0, x0, y1, x1), mask 1 on them, 0 elsewhere."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for y0, x0, y1, x1 in rects:
        image[y0:y1, x0:x1] = 255
        mask[y0:y1, x0:x1] = 1
    boxes = np.array(rects, np.float32).reshape(-1, 4) / SIZE
    return {
        "image": tf.constant(image), "segmentation/mask": tf.constant(mask), "detection/boxes": tf.constant(boxes),
        "detection/box_classes": tf.constant(np.arange(len(rects)), tf.int32),
        "has_detection": tf.constant(True), "has_segmentation": tf.constant(False),
    }


def _extent(region):
    ys, xs = np.nonzero(region)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def test_boxes_stay_on_the_pixels_they_label_through_flips_expand_and_crop():
    example = _scene([(16, 20, 32, 44)])
    kept = dropped = 0
    for i in range(60):
        out = augment.augment(example, tf.constant([i, 7]), FULL, (SIZE, SIZE), LAYOUT)
        image, mask, boxes = out["image"].numpy(), out["segmentation/mask"].numpy(), out["detection/boxes"].numpy()
        assert image.shape == (SIZE, SIZE, 3) and mask.shape == (SIZE, SIZE)
        assert set(np.unique(mask)) <= {0, 1, IGNORE}
        assert bool(out["has_detection"]) and not bool(out["has_segmentation"])  # flags untouched
        bright = image[..., 0] > 127
        if len(boxes) == 0:
            dropped += 1
            assert not (image[..., 0] > 200).any(), f"seed {i}: object visible but its box was dropped"
            continue
        kept += 1
        assert out["detection/box_classes"].numpy().tolist() == [0]
        box = boxes[0] * SIZE
        # The box hugs the bright pixels and the mask's object pixels, to a pixel.
        np.testing.assert_allclose(_extent(bright), box, atol=1.0, err_msg=f"seed {i}")
        np.testing.assert_allclose(_extent(mask == 1), box, atol=1.0, err_msg=f"seed {i}")
    assert kept > 40  # most crops keep the object (some box must overlap the crop)


def test_expand_pads_the_mask_with_ignore_and_the_image_with_the_fill_colour():
    cfg = AugmentConfig.model_validate({"horizontal_flip": False, "expand": {"probability": 1.0, "max_ratio": 3}})
    out = augment.augment(_scene([(16, 20, 32, 44)]), tf.constant([3, 1]), cfg, (SIZE, SIZE), LAYOUT)
    image, mask = out["image"].numpy(), out["segmentation/mask"].numpy()
    padding = mask == IGNORE
    assert 0.3 < padding.mean() < 0.9  # a canvas of 1x..3x the image: most of it is padding
    assert np.all(image[padding] == [123, 117, 104])
    # Inside the pasted image, the mask keeps the image's labels (background 0, object 1).
    assert (mask == 0).any() and (mask == 1).any()
    np.testing.assert_allclose(_extent(mask == 1), out["detection/boxes"].numpy()[0] * SIZE, atol=1.0)


def test_boxes_outside_the_window_are_dropped_and_boxes_across_it_clipped():
    example = {
        "detection/boxes": tf.constant([[0.1, 0.1, 0.3, 0.3], [0.4, 0.6, 0.8, 0.9], [0.6, 0.6, 0.7, 0.7]]),
        "detection/box_classes": tf.constant([0, 1, 2]),
        "detection/box_difficult": tf.constant([False, True, False]),
    }
    out = augment.clip_boxes(example, tf.constant([0.5, 0.5, 1.0, 1.0]), LAYOUT)
    np.testing.assert_allclose(out["detection/boxes"].numpy(), [[0.0, 0.2, 0.6, 0.8], [0.2, 0.2, 0.4, 0.4]], atol=1e-6)
    assert out["detection/box_classes"].numpy().tolist() == [1, 2]
    assert out["detection/box_difficult"].numpy().tolist() == [True, False]  # every per-box key follows
    # With min_visible, a box keeping 75% of its area is dropped too.
    strict = augment.clip_boxes(example, tf.constant([0.5, 0.5, 1.0, 1.0]), LAYOUT, min_visible=0.8)
    assert strict["detection/box_classes"].numpy().tolist() == [2]


def test_iou_constrained_crop_overlaps_some_box_by_the_drawn_threshold():
    boxes = tf.constant([[0.2, 0.2, 0.5, 0.6]])
    cfg = FULL.crop.model_copy(update={"min_ious": [0.7], "probability": 1.0})
    for i in range(20):
        window = augment.crop_window(tf.constant([i, 0]), boxes, tf.constant(1.0), cfg)
        iou = iou_matrix(window[None], boxes).numpy()[0, 0]
        cropped = not np.allclose(window.numpy(), augment.IDENTITY)
        assert iou >= 0.7 or not cropped
        if cropped:
            h, w = (window[2] - window[0]).numpy(), (window[3] - window[1]).numpy()
            assert 0.3 - 1e-6 <= min(h, w) and 0.5 <= h / w <= 2.0


def test_vertical_flip_moves_boxes_with_pixels():
    out = augment.vertical_flip(_scene([(4, 10, 20, 30)]), LAYOUT)
    np.testing.assert_allclose(_extent(out["image"].numpy()[..., 0] > 0), out["detection/boxes"].numpy()[0] * SIZE)
    np.testing.assert_allclose(_extent(out["segmentation/mask"].numpy() == 1), out["detection/boxes"].numpy()[0] * SIZE)


def test_color_distortion_changes_only_the_image_and_is_seeded():
    cfg = AugmentConfig.model_validate({"horizontal_flip": False, "color": {"probability": 1.0}})
    rng = np.random.default_rng(0)
    example = _scene([(16, 20, 32, 44)])
    example["image"] = tf.constant(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    a = augment.augment(example, tf.constant([5, 5]), cfg, (SIZE, SIZE), LAYOUT)
    b = augment.augment(example, tf.constant([5, 5]), cfg, (SIZE, SIZE), LAYOUT)
    c = augment.augment(example, tf.constant([6, 5]), cfg, (SIZE, SIZE), LAYOUT)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], c["image"]) and not np.array_equal(a["image"], example["image"])
    np.testing.assert_array_equal(a["segmentation/mask"], example["segmentation/mask"])
    np.testing.assert_array_equal(a["detection/boxes"], example["detection/boxes"])


def test_training_batches_with_full_augmentation_are_deterministic_with_a_seed():
    from mtl_tf.config import MixingConfig
    from mtl_tf.data import pipeline
    from mtl_tf.data.synthetic import SyntheticAerialSource
    from test_pipeline import SIZE as TASK_SIZE
    from test_pipeline import _tasks

    tasks = _tasks()
    configs = [SyntheticAerialSource.Config(num_images=6, seed=s, labels=l) for s, l in [(0, "both"), (1, "masks")]]
    cfg = FULL.model_copy(update={"color": AugmentConfig.model_validate({"color": {}}).color})
    sources = pipeline.load_sources(configs, tasks, TASK_SIZE)

    def first_batches(seed):
        ds = pipeline.training_batches(sources, tasks, 4, 6, seed, augment=cfg,
                                       mixing=MixingConfig(mode="sample", weights="uniform"))
        return [(x.numpy(), y["detection"].numpy(), y["segmentation"].numpy()) for x, y, _ in ds.take(2)]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    for batch_a, batch_b in zip(a, b):
        for part_a, part_b in zip(batch_a, batch_b):
            np.testing.assert_array_equal(part_a, part_b)
    assert not np.array_equal(a[0][0], c[0][0])
