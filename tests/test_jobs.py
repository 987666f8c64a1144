"""End-to-end: `mtl-tf evaluate`, `predict` and `export` on a trained tiny run."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from conftest import write_video
from source_fixtures import H, W, write_coco
from mtl_tf.cli import main

EVALUATE_KEYS = {
    "segmentation": {"miou", "pixel_accuracy", "mean_class_accuracy", "fw_iou", "per_class_iou"},
    "detection": {"map50", "map50_voc07", "coco_map", "coco_map50", "coco_map75", "per_class_ap50"},
}


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def float_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    _invoke("export", tiny_run, "--out", out)
    return out / "float32"


def test_evaluate_json_has_the_documented_keys_as_fractions(tiny_run, tmp_path):
    _invoke("evaluate", tiny_run, "--json", tmp_path / "m.json", "--report", tmp_path / "report")
    results = json.loads((tmp_path / "m.json").read_text())
    for task, keys in EVALUATE_KEYS.items():
        assert keys <= set(results[task]), task
        for key in keys:
            values = results[task][key]
            values = values.values() if isinstance(values, dict) else [values]
            assert all(0.0 <= v <= 1.0 for v in values), (task, key)
    for name in ["metrics.json", "detection_pr_curves.png", "segmentation_confusion_matrix.png", "predictions.png"]:
        assert (tmp_path / "report" / name).is_file(), name


def test_float_tflite_export_is_builtin_only_with_matching_metadata(tiny_run, float_export):
    from mtl_tf.export.tflite import builtin_only, tflite_signature

    artifact = float_export / "model.tflite"
    assert builtin_only(artifact) == []
    meta = json.loads((float_export / "metadata.json").read_text())
    assert meta["input"]["shape"] == [1, 64, 64, 3] and meta["input"]["dtype"] == "uint8"
    names = {"detection_boxes", "detection_scores", "segmentation_logits"}
    assert set(meta["outputs"]) == names == set(tflite_signature(artifact)[1])
    assert meta["tasks"]["segmentation"]["classes"] == ["ground", "road", "building", "water", "vegetation"]
    assert len(meta["tasks"]["detection"]["anchors_cy_cx_h_w"]) == meta["outputs"]["detection_boxes"]["shape"][1]


def test_keras_and_float_tflite_agree_through_the_same_evaluator(tiny_run, float_export, tmp_path):
    from mtl_tf.inference import load_predictor

    keras_model, tflite_model = load_predictor(tiny_run), load_predictor(float_export / "model.tflite")
    images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    keras_raw, tflite_raw = keras_model.infer(images), tflite_model.infer(images)
    boxes, scores = keras_model.tasks["detection"].decode(keras_raw["detection"])
    np.testing.assert_allclose(tflite_raw["detection"]["boxes"], boxes, atol=1e-4)
    np.testing.assert_allclose(tflite_raw["detection"]["scores"], scores, atol=1e-4)
    np.testing.assert_allclose(tflite_raw["segmentation"]["logits"], keras_raw["segmentation"], atol=1e-3, rtol=1e-3)

    _invoke("evaluate", tiny_run, "--json", tmp_path / "k.json", "--report", tmp_path / "k")
    _invoke("evaluate", float_export / "model.tflite", "--json", tmp_path / "t.json", "--report", tmp_path / "t")
    keras_metrics = json.loads((tmp_path / "k.json").read_text())
    tflite_metrics = json.loads((tmp_path / "t.json").read_text())
    assert tflite_metrics["segmentation"]["miou"] == pytest.approx(keras_metrics["segmentation"]["miou"], abs=1e-3)
    assert tflite_metrics["detection"]["map50"] == pytest.approx(keras_metrics["detection"]["map50"], abs=1e-2)


def test_export_replaces_an_artifact_only_when_complete(tiny_run, tmp_path, monkeypatch):
    from mtl_tf.export import job

    _invoke("export", tiny_run, "--out", tmp_path)
    good = (tmp_path / "float32" / "model.tflite").read_bytes()

    def broken(*args, **kwargs):
        raise job.ExportError("conversion failed on purpose")

    monkeypatch.setattr(job, "convert_tflite", broken)
    result = CliRunner().invoke(main, ["export", str(tiny_run), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "conversion failed on purpose" in result.output
    assert (tmp_path / "float32" / "model.tflite").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["float32"]  # no staging folder left behind


def test_predict_on_images_folders_and_video(tiny_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(inputs / "wide.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(inputs / "square.jpg")
    write_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    _invoke("predict", tiny_run, inputs, tmp_path / "clip.mp4", "--out", out, "--min-score", "0")

    assert (out / "wide.png").is_file() and (out / "square.png").is_file() and (out / "clip.mp4").is_file()
    mask = np.asarray(Image.open(out / "segmentation_mask" / "wide.png"))
    assert mask.shape == (90, 120) and mask.max() < 5  # class ids at the original size
    detections = json.loads((out / "detection_detections.json").read_text())
    assert {d["image"] for d in detections} >= {"wide.png", "square.jpg"}
    for d in detections:
        assert set(d) == {"image", "category", "bbox", "score"}
        assert d["category"] in ["pedestrian", "cyclist", "car", "bus"]
        x, y, w, h = d["bbox"]
        if d["image"] == "wide.png":
            assert 0 <= x and 0 <= y and x + w <= 120.01 and y + h <= 90.01


def test_predict_on_a_split_writes_one_overlay_per_example(tiny_run, tmp_path):
    _invoke("predict", tiny_run, "--split", "val", "--out", tmp_path)
    assert len(list(tmp_path.glob("val_*.png"))) == 12
    assert len(list((tmp_path / "segmentation_mask").glob("*.png"))) == 12


def test_predict_on_a_split_names_records_after_the_source_files(tiny_run, tmp_path):
    write_coco(tmp_path / "coco")
    recipe = yaml.safe_load((tiny_run / "recipe.yaml").read_text())
    recipe["data"]["val"] = [{"type": "coco", "annotations": str(tmp_path / "coco" / "instances.json"),
                              "images": str(tmp_path / "coco" / "images"), "categories": ["person", "car"],
                              "rename": {"person": "pedestrian"}, "masks": False}]
    (tmp_path / "coco.yaml").write_text(yaml.safe_dump(recipe))
    _invoke("predict", tiny_run, "--split", "val", "--recipe", tmp_path / "coco.yaml", "--min-score", "0",
            "--out", tmp_path / "out")
    records = json.loads((tmp_path / "out" / "detection_detections.json").read_text())
    assert {r["image"] for r in records} == {"000000000001.jpg", "000000000002.jpg", "000000000003.jpg"}
    # Boxes in the source images' pixels (W x H), not the model's 64x64 input.
    assert all(0 <= x and 0 <= y and x + w <= W + 0.01 and y + h <= H + 0.01 for x, y, w, h in (r["bbox"] for r in records))


def test_bad_inputs_are_clear_errors(tiny_run, tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = CliRunner().invoke(main, ["predict", str(tiny_run), str(corrupt), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "broken.jpg" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such file or folder" in result.output


def test_tasks_map_predictions_to_the_original_image_size():
    from mtl_tf.tasks import build_tasks

    tasks = build_tasks({"detection": {"classes": ["car", "bus"]}, "segmentation": {"classes": ["a", "b"]}}, (64, 64))
    boxes = {"boxes": np.array([[0.1, 0.2, 0.5, 0.6]]), "box_classes": np.array([1]), "scores": np.array([0.75])}
    [record] = tasks["detection"].prediction_records(boxes, "x.png", (100, 200))
    assert record == {"image": "x.png", "category": "bus", "bbox": [40.0, 10.0, 80.0, 40.0], "score": 0.75}
    assert tasks["detection"].labels_to_size(boxes, (100, 200)) is boxes
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 1
    resized = tasks["segmentation"].labels_to_size({"mask": mask}, (10, 20))["mask"]
    assert resized.shape == (10, 20) and resized[:, :10].max() == 0 and resized[:, 10:].min() == 1
    assert tasks["segmentation"].records_file is None
