"""End to end: `mtl-tf fit` on a recipe mixing a VOC-format and a COCO-format dataset."""

import json

import yaml
from click.testing import CliRunner

from source_fixtures import write_coco, write_voc
from mtl_tf.cli import main

CLASSES = ["car", "person"]


def test_fit_mixes_a_voc_and_a_coco_dataset(tmp_path):
    write_voc(tmp_path / "voc")
    write_coco(tmp_path / "coco")
    coco = {"type": "coco", "annotations": str(tmp_path / "coco" / "instances.json"),
            "images": str(tmp_path / "coco" / "images"), "categories": CLASSES}
    voc = {"type": "voc", "root": str(tmp_path / "voc"), "classes": CLASSES}
    recipe = {
        "name": "mixed",
        "data": {
            "image_size": [64, 64],
            "batch_size": 4,
            "train": [voc, coco],
            "val": [voc, coco],  # VOC image 000001 holds a difficult box: padded through evaluation
        },
        "model": {"backbone": {"name": "tiny", "width": 8}},
        "tasks": {
            "detection": {"classes": CLASSES, "extra_channels": 8, "min_scale": 0.1},
            "segmentation": {"classes": ["background", *CLASSES]},
        },
        "train": {"epochs": 1, "num_overlays": 0},
    }
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(main, ["fit", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "7 train / 7 val examples" in result.output  # 4 VOC + 3 COCO images
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["detection"]["map50"] <= 1 and 0 <= metrics["segmentation"]["miou"] <= 1
    assert set(metrics["segmentation"]["per_class_iou"]) == {"background", *CLASSES}
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert [s["type"] for s in saved["data"]["train"]] == ["voc", "coco"]
    assert saved["data"]["train"][0]["images"] == "union" and saved["data"]["train"][1]["skip_invalid"] is False
