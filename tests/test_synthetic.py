import numpy as np

from mtl_tf.data.synthetic import OBJECT_CLASSES, SURFACE_CLASSES, SyntheticAerialSource


def _source(labels="both", n=8, seed=0, size=(96, 96)):
    return SyntheticAerialSource(SyntheticAerialSource.Config(num_images=n, seed=seed, labels=labels), size)


def test_deterministic_by_seed_and_index():
    a, b = _source()[3], _source()[3]
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    assert not np.array_equal(_source()[4]["image"], a["image"])
    assert not np.array_equal(_source(seed=1)[3]["image"], a["image"])


def test_label_modes_yield_only_their_label_kinds():
    boxes_only = _source("boxes")[0]
    assert "boxes" in boxes_only and "mask" not in boxes_only
    masks_only = _source("masks")[0]
    assert "mask" in masks_only and "boxes" not in masks_only
    assert masks_only["mask"].max() < len(SURFACE_CLASSES)
    both = _source("both")[0]
    np.testing.assert_array_equal(both["mask"], masks_only["mask"])
    np.testing.assert_array_equal(both["boxes"], boxes_only["boxes"])


def test_contract_dtypes_and_valid_boxes():
    source = _source(n=60, size=(64, 128))
    counts = np.zeros(len(OBJECT_CLASSES), int)
    surfaces = np.zeros(len(SURFACE_CLASSES), int)
    for i in range(len(source)):
        ex = source[i]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (64, 128, 3)
        assert ex["mask"].dtype == np.uint8 and ex["mask"].shape == (64, 128)
        b = ex["boxes"]
        assert b.dtype == np.float32 and np.all((b >= 0) & (b <= 1))
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        counts += np.bincount(ex["box_classes"], minlength=len(OBJECT_CLASSES))
        surfaces += np.bincount(ex["mask"].ravel(), minlength=len(SURFACE_CLASSES)) > 0
    # Imbalanced on purpose: cars most common, buses rarest; every surface class occurs.
    assert counts.argmax() == OBJECT_CLASSES.index("car") and counts.argmin() == OBJECT_CLASSES.index("bus")
    assert counts.min() > 0 and np.all(surfaces > 0)


def test_boxes_cover_object_pixels():
    """A box's pixels differ from the surface around it: boxes sit on drawn objects."""
    ex = _source(n=1, size=(160, 160))[0]
    h, w = ex["mask"].shape
    for y0, x0, y1, x1 in ex["boxes"] * [h, w, h, w]:
        patch = ex["image"][int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))].reshape(-1, 3)
        assert patch.std(0).max() > 8 or np.abs(patch.mean(0) - ex["image"].reshape(-1, 3).mean(0)).max() > 20
