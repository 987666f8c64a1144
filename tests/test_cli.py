"""End-to-end: the `mtl-tf` commands on the tiny recipe."""

import csv
import json

import keras
import numpy as np
import yaml
from click.testing import CliRunner

from conftest import TINY_RECIPE
from mtl_tf.cli import main
from mtl_tf.recipe import recipe_from_dict


def test_fit_writes_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", str(TINY_RECIPE), "--out", str(run), "--quiet", "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    for name in ["recipe.yaml", "model.keras", "history.csv", "metrics.json", "curves.png", "predictions.png"]:
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    assert not (run / "backup").exists()  # removed once training finished

    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for column in ["detection_loss", "segmentation_loss", "val_detection_loss", "val_detection_map50", "val_segmentation_miou"]:
        assert column in rows[0], column
    # Both tasks learn something in two epochs: the training losses go down.
    assert float(rows[1]["detection_loss"]) < float(rows[0]["detection_loss"])
    assert float(rows[1]["segmentation_loss"]) < float(rows[0]["segmentation_loss"])

    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["detection"]["map50"] <= 1 and 0 <= metrics["segmentation"]["miou"] <= 1
    assert metrics["segmentation"]["miou"] == float(rows[-1]["val_segmentation_miou"])

    resolved = recipe_from_dict(yaml.safe_load((run / "recipe.yaml").read_text()))
    assert resolved.train.epochs == 2
    model = keras.models.load_model(run / "model.keras")
    out = model(np.zeros((1, 64, 64, 3), np.uint8))
    assert list(out) == ["detection", "segmentation"]


def test_fit_refuses_to_overwrite_a_finished_run(tmp_path):
    (tmp_path / "model.keras").write_text("x")
    (tmp_path / "metrics.json").write_text("{}")
    result = CliRunner().invoke(main, ["fit", str(TINY_RECIPE), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "already holds a finished run" in result.output


def test_recipe_typo_is_a_clear_error_not_a_traceback(tmp_path):
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["batch_sise"] = 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["fit", str(bad)])
    assert result.exit_code == 1
    assert "data.batch_sise" in result.output and "did you mean 'batch_size'" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_bad_override_is_a_clear_error():
    result = CliRunner().invoke(main, ["fit", str(TINY_RECIPE), "--set", "train.epochs"])
    assert result.exit_code != 0 and "key.sub=value" in result.output
