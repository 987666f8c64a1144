"""The synthetic_shapes source: contract, boxes hugging glyphs, masks agreeing with boxes."""

import numpy as np
import pytest

from mtl_tf.data.shapes import MASK_CLASSES, SHAPE_CLASSES, SyntheticShapesSource, glyph_mask
from mtl_tf.data.sources import SOURCES


def _source(labels="both", n=40, seed=0, size=(96, 128)):
    return SyntheticShapesSource(SyntheticShapesSource.Config(num_images=n, seed=seed, labels=labels), size)


def test_registered_and_deterministic():
    assert SOURCES["synthetic_shapes"] is SyntheticShapesSource
    a, b = _source()[3], _source()[3]
    for key in ("image", "mask", "boxes", "box_classes"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(_source()[4]["image"], a["image"])
    assert not np.array_equal(_source(seed=1)[3]["image"], a["image"])


def test_label_modes():
    boxes_only, masks_only, both = _source("boxes")[0], _source("masks")[0], _source("both")[0]
    assert "boxes" in boxes_only and "mask" not in boxes_only
    assert "mask" in masks_only and "boxes" not in masks_only
    np.testing.assert_array_equal(both["mask"], masks_only["mask"])
    np.testing.assert_array_equal(both["boxes"], boxes_only["boxes"])
    cfg = SyntheticShapesSource.Config(num_images=1, labels="masks")
    assert cfg.class_names("mask") == MASK_CLASSES and cfg.class_names("boxes") == []


def test_contract_boxes_hug_glyphs_and_masks_agree():
    source = _source()
    seen = np.zeros(len(SHAPE_CLASSES), int)
    for i in range(len(source)):
        ex = source[i]
        image, mask, boxes, classes = ex["image"], ex["mask"], ex["boxes"], ex["box_classes"]
        assert image.dtype == np.uint8 and image.shape == (96, 128, 3)
        assert mask.dtype == np.uint8 and mask.shape == (96, 128) and mask.max() <= len(SHAPE_CLASSES)
        assert boxes.dtype == np.float32 and classes.dtype == np.int32 and len(boxes) == len(classes) >= 1
        assert np.all((boxes >= 0) & (boxes <= 1)) and np.all(boxes[:, 2:] > boxes[:, :2])
        covered = np.zeros(mask.shape, bool)
        for (y0, x0, y1, x1), cls in zip(np.rint(boxes * [96, 128, 96, 128]).astype(int), classes):
            inside = mask[y0:y1, x0:x1] == cls + 1
            # tight: the glyph touches all four sides of its box
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert set(np.unique(mask[y0:y1, x0:x1])) <= {0, cls + 1}  # no other glyph inside
            covered[y0:y1, x0:x1] = True
        assert not (mask[~covered] > 0).any()  # every glyph pixel lies in its box
        seen += np.bincount(classes, minlength=len(SHAPE_CLASSES))
    assert seen.min() > 0  # every class occurs


def test_colour_does_not_give_the_class():
    """The mean colour of a class's glyphs is about the same for every class."""
    source = _source(n=80)
    means = [[] for _ in SHAPE_CLASSES]
    for i in range(len(source)):
        ex = source[i]
        for cls in np.unique(ex["mask"])[1:]:
            means[cls - 1].append(ex["image"][ex["mask"] == cls].mean(0))
    per_class = np.array([np.mean(m, 0) for m in means])
    assert np.ptp(per_class, axis=0).max() < 70  # vs a 0..255 range


@pytest.mark.parametrize("kind", SHAPE_CLASSES)
def test_glyphs_differ_by_outline(kind):
    """Same place and size: each glyph covers a different set of pixels than every other."""
    here = glyph_mask(kind, (64, 64), 32, 32, 20, 0.3)
    assert here.sum() > 100
    for other in SHAPE_CLASSES:
        if other != kind:
            assert (here ^ glyph_mask(other, (64, 64), 32, 32, 20, 0.3)).sum() > 40


def test_image_labels_follow_the_glyphs():
    one = SyntheticShapesSource(SyntheticShapesSource.Config(num_images=24, seed=3, labels="none", max_objects=1), (64, 64))
    many = _source(n=24)
    classes_seen = set()
    for i in range(24):
        ex = one[i]
        assert "boxes" not in ex and "mask" not in ex
        full = SyntheticShapesSource(SyntheticShapesSource.Config(num_images=24, seed=3, max_objects=1), (64, 64))[i]
        assert len(full["box_classes"]) == 1 and ex["label"] == full["box_classes"][0]  # the one glyph's class
        classes_seen.add(int(ex["label"]))
        ex = many[i]
        present = np.zeros(len(SHAPE_CLASSES), np.int8)
        present[ex["box_classes"]] = 1
        np.testing.assert_array_equal(ex["labels"], present)
        areas = np.bincount(ex["mask"].ravel(), minlength=len(MASK_CLASSES))[1:]
        assert areas[ex["label"]] == areas.max() > 0
    assert len(classes_seen) >= 5  # the labels vary
    cfg = SyntheticShapesSource.Config(num_images=1, labels="none")
    assert cfg.label_kinds() == ["label", "labels"] and cfg.class_names("label") == SHAPE_CLASSES
