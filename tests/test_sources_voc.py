import numpy as np
import pytest
from PIL import Image

from source_fixtures import H, W, voc_mask, write_sbd, write_voc
from mtl_tf.data.example import IGNORE
from mtl_tf.data.sources import SOURCES, build_source
from mtl_tf.data.sources.voc import VOC_CLASSES, VocConfig, voc_colormap

CLASSES = ["car", "person"]


def _source(root, size=(H, W), **kw):
    return build_source(VocConfig(root=str(root), classes=CLASSES, **kw), size)


def test_voc_is_registered():
    assert SOURCES["voc"].Config is VocConfig


def test_boxes_classes_difficult_and_flags_follow_the_lists(tmp_path):
    content = write_voc(tmp_path)
    source = _source(tmp_path)  # union of Main (1-3) and Segmentation (2-4)
    assert len(source) == 4
    examples = [source[i] for i in range(4)]
    assert ["boxes" in e for e in examples] == [True, True, True, False]
    assert ["mask" in e for e in examples] == [False, True, True, True]
    first = examples[0]
    # VOC pixels are 1-based: xmin=11 is the edge at 10; (ymin, xmin, ymax, xmax) normalized.
    np.testing.assert_allclose(first["boxes"], [[4 / H, 10 / W, 30 / H, 40 / W], [9 / H, 40 / W, 45 / H, 60 / W]], atol=1e-6)
    assert first["box_classes"].tolist() == [0, 1]
    assert first["box_difficult"].tolist() == [False, True]
    np.testing.assert_allclose(examples[1]["boxes"], [[0, 0, 1, 1]])
    assert examples[2]["boxes"].shape == (0, 4)  # in the Main list with no object: a true negative
    # Masks keep their values (indices into background, car, person) and the 255 void band.
    np.testing.assert_array_equal(examples[2]["mask"], content["000003"]["mask"])
    assert (examples[1]["mask"][0] == IGNORE).all()
    assert examples[0]["image"].shape == (H, W, 3) and examples[0]["image"].dtype == np.uint8


def test_both_labels_subset_is_the_intersection_of_the_lists(tmp_path):
    write_voc(tmp_path)
    both = _source(tmp_path, images="both_labels")
    assert [r.image.stem for r in both.records] == ["000002", "000003"]
    assert all("boxes" in both[i] and "mask" in both[i] for i in range(len(both)))
    assert [r.image.stem for r in _source(tmp_path, images="detection").records] == ["000001", "000002", "000003"]
    assert [r.image.stem for r in _source(tmp_path, images="segmentation").records] == ["000002", "000003", "000004"]


def test_the_reader_resizes_the_image_and_the_mask_as_the_task_spec_says(tmp_path):
    from mtl_tf.data.pipeline import ExampleReader
    from mtl_tf.tasks import build_tasks

    content = write_voc(tmp_path)
    tasks = build_tasks({"detection": {"classes": CLASSES, "min_scale": 0.2},
                         "segmentation": {"classes": ["background", *CLASSES]}}, (24, 32))
    config = VocConfig(root=str(tmp_path), classes=CLASSES, images="both_labels")
    native = build_source(config, (24, 32))[1]
    assert native["image"].shape == (H, W, 3)  # sources yield their own size
    small = ExampleReader([config], tasks, (24, 32)).read(0, 1)
    assert small["image"].shape == (24, 32, 3) and small["segmentation/mask"].shape == (24, 32)
    # Nearest neighbour (the mask's spec) at half size samples the source pixel centres 1, 3, 5, ...
    np.testing.assert_array_equal(small["segmentation/mask"], content["000003"]["mask"][1::2, 1::2])
    assert set(np.unique(small["segmentation/mask"])) <= {0, 1, 2, IGNORE}
    np.testing.assert_allclose(small["detection/boxes"], native["boxes"])  # normalized: unchanged


def test_default_class_list_is_voc20_and_rgb_masks_use_the_voc_palette(tmp_path):
    write_voc(tmp_path, classes=VOC_CLASSES)
    # The same labels stored as RGB colours instead of palette indices.
    png = tmp_path / "SegmentationClass" / "000003.png"
    values = np.asarray(Image.open(png))
    Image.fromarray(voc_colormap()[values]).save(png)
    source = build_source(VocConfig(root=str(tmp_path)), (H, W))
    assert source.config.class_names("boxes") == VOC_CLASSES
    assert source.config.class_names("mask") == ["background", *VOC_CLASSES]
    example = source[2]
    np.testing.assert_array_equal(example["mask"], values)
    assert source[0]["box_classes"].tolist() == [VOC_CLASSES.index("car"), VOC_CLASSES.index("person")]


def test_ignore_classes_drop_boxes_and_void_mask_pixels(tmp_path):
    write_voc(tmp_path)
    source = _source(tmp_path, ignore_classes=["person"])
    assert source.config.class_names("boxes") == ["car"]
    assert source.config.class_names("mask") == ["background", "car"]
    assert source[0]["box_classes"].tolist() == [0]
    mask = source[2]["mask"]
    assert (mask[10:30, 25:40] == IGNORE).all() and (mask[10:30, 5:20] == 1).all()


def test_sbd_mat_masks_join_the_segmentation_images(tmp_path):
    write_voc(tmp_path / "voc")
    sbd_mask = voc_mask([1, 2])[1:].copy()  # SBD has no void band
    sbd_mask = np.pad(sbd_mask, ((1, 0), (0, 0)))
    write_sbd(tmp_path / "sbd", "000005", sbd_mask)
    source = _source(tmp_path / "voc", images="segmentation", sbd_root=str(tmp_path / "sbd"))
    assert [r.image.stem for r in source.records] == ["000002", "000003", "000004", "000005"]
    assert source.records[-1].image == tmp_path / "sbd" / "img" / "000005.jpg"
    example = source[3]
    assert "mask" in example and "boxes" not in example
    np.testing.assert_array_equal(example["mask"], sbd_mask)


def test_recipe_class_check_sees_the_voc_class_list():
    from mtl_tf.config import RecipeError
    from mtl_tf.recipe import recipe_from_dict

    recipe = {
        "data": {"image_size": [64, 64], "train": [{"type": "voc", "root": "x", "classes": CLASSES}],
                 "val": [{"type": "voc", "root": "x", "classes": ["car", "bus"]}]},
        "tasks": {"detection": {"classes": CLASSES}},
    }
    with pytest.raises(RecipeError, match=r"data.val.0: source 'voc' has boxes classes \['bus'\]"):
        recipe_from_dict(recipe)


def test_image_labels_from_the_boxes_feed_a_multilabel_task(tmp_path):
    from mtl_tf.data.pipeline import ExampleReader
    from mtl_tf.tasks import build_tasks

    write_voc(tmp_path)
    source = _source(tmp_path, image_labels=True)
    assert source.config.label_kinds() == ["boxes", "mask", "labels"] and source.config.class_names("labels") == CLASSES
    examples = [source[i] for i in range(4)]
    for example in examples[:3]:  # present = some box of the class, difficult or not
        expected = np.zeros(2, np.int8)
        expected[example["box_classes"]] = 1
        np.testing.assert_array_equal(example["labels"], expected)
    assert examples[0]["labels"].tolist() == [1, 1] and examples[2]["labels"].tolist() == [0, 0]  # a true negative
    assert "labels" not in examples[3]  # no annotation file: unknown, not absent
    assert "labels" not in _source(tmp_path)[0]  # off by default
    # The reader maps them to the task's label order; a label the source lacks is unknown (-1).
    tasks = build_tasks({"objects": {"type": "multilabel", "classes": ["person", "bus", "car"]}}, (24, 32))
    config = VocConfig(root=str(tmp_path), classes=CLASSES, image_labels=True, targets={"boxes": None, "mask": None})
    reader = ExampleReader([config], tasks, (24, 32))
    assert reader.read(0, 0)["objects/labels"].tolist() == [1, -1, 1]
    assert reader.read(0, 2)["objects/labels"].tolist() == [0, -1, 0] and not reader.read(0, 3)["has_objects"]
