import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from source_fixtures import H, W, uncompressed_rle, write_coco
from mtl_tf.data.example import IGNORE
from mtl_tf.data.sources import build_source
from mtl_tf.data.sources.coco import CocoConfig
from mtl_tf.data.sources.common import UNKNOWN_IMAGE, DataProblem


def _source(root, **kw):
    kw.setdefault("categories", ["person", "car"])
    return build_source(CocoConfig(annotations=str(root / "instances.json"), images=str(root / "images"), **kw), (H, W))


def test_uncompressed_rle_fixture_matches_pycocotools():
    region = np.zeros((5, 4), np.uint8)
    region[1:3, 2:4] = 1
    rle = mask_utils.frPyObjects(uncompressed_rle(region), 5, 4)
    np.testing.assert_array_equal(mask_utils.decode(rle), region)


def test_boxes_classes_and_rename(tmp_path):
    write_coco(tmp_path)
    source = _source(tmp_path, rename={"car": "vehicle"})
    assert source.config.class_names("boxes") == ["person", "vehicle"]
    assert source.config.class_names("mask") == ["background", "person", "vehicle"]
    assert len(source) == 3
    first = source[0]
    assert "boxes" in first and "mask" in first
    # COCO [x, y, w, h] pixels -> normalized (ymin, xmin, ymax, xmax).
    np.testing.assert_allclose(first["boxes"], [[10 / H, 10 / W, 40 / H, 30 / W], [5 / H, 40 / W, 15 / H, 60 / W]], atol=1e-6)
    assert first["box_classes"].tolist() == [0, 1]
    # Image 2: the dog is not a kept category and the crowd is not a box -> no boxes.
    assert source[1]["boxes"].shape == (0, 4)
    # Image 3 has no annotation at all: a true negative.
    assert "boxes" in source[2] and source[2]["boxes"].shape == (0, 4)
    assert (source[2]["mask"] == 0).all()


def test_masks_from_polygon_rle_and_crowd(tmp_path):
    written = write_coco(tmp_path)
    source = _source(tmp_path)
    mask = source[0]["mask"]
    np.testing.assert_array_equal(mask[written["car"]], 2)  # compressed RLE, exact
    polygon = mask == 1
    assert polygon[12:38, 12:28].all() and not polygon[:8].any() and not polygon[:, 32:].any()
    assert abs(int(polygon.sum()) - 20 * 30) <= 2 * (20 + 30) + 4  # the rasterized edge is within a pixel
    crowd_image = source[1]["mask"]
    np.testing.assert_array_equal(crowd_image[written["crowd"]], IGNORE)  # uncompressed RLE crowd -> ignore
    assert (crowd_image[~written["crowd"]] == 0).all()  # the dog is not a kept category: background


def test_category_subset_and_many_to_one_rename(tmp_path):
    write_coco(tmp_path)
    source = _source(tmp_path, categories=["car", "dog"], rename={"car": "animal_or_car", "dog": "animal_or_car"},
                     masks=False, include_empty=False)
    assert source.config.class_names("boxes") == ["animal_or_car"]
    assert source.config.class_names("mask") == []
    assert len(source) == 2  # image 3 has no kept annotation
    assert [source[i]["box_classes"].tolist() for i in range(2)] == [[0], [0]]
    assert "mask" not in source[0]


def _add_orphan_annotation(root):
    data = json.loads((root / "instances.json").read_text())
    data["annotations"].append({"id": 77, "image_id": 42, "category_id": 1, "iscrowd": 0, "area": 4.0,
                                "bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 3, 1, 3, 3]]})
    (root / "instances.json").write_text(json.dumps(data))


def test_an_annotation_of_an_image_not_in_images_is_an_error_naming_the_file_and_annotation(tmp_path):
    write_coco(tmp_path)
    _add_orphan_annotation(tmp_path)
    with pytest.raises(DataProblem, match=r"instances.json: annotation of an unknown image: annotation 77 has "
                                          r"image_id 42, which is not in 'images'"):
        _source(tmp_path)


def test_with_skip_invalid_an_orphan_annotation_is_skipped_and_counted(tmp_path):
    write_coco(tmp_path)
    _add_orphan_annotation(tmp_path)
    source = _source(tmp_path, skip_invalid=True)
    assert len(source) == 3  # every image is kept
    [problem] = source.skipped
    assert problem.kind == UNKNOWN_IMAGE and "annotation 77" in str(problem)


def test_image_labels_follow_the_kept_boxes(tmp_path):
    write_coco(tmp_path)
    source = _source(tmp_path, rename={"car": "vehicle"}, image_labels=True)
    assert source.config.class_names("labels") == ["person", "vehicle"]
    assert [source[i]["labels"].tolist() for i in range(3)] == [[1, 1], [0, 0], [0, 0]]  # the dog is not kept
    no_boxes = _source(tmp_path, boxes=False, image_labels=True)
    assert no_boxes.config.label_kinds() == ["mask"] and "labels" not in no_boxes[0]
