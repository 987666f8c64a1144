"""`mtl-tf study` and `mtl-tf bench-engine`: report logic, and end to end on the tiny recipe."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_RECIPE
from mtl_tf.cli import main
from mtl_tf.recipe import load_recipe
from mtl_tf.train.study import markdown_table, study_variants, summarize

TINY = ["--set", "train.num_overlays=0", "--set", "data.val.0.num_images=4"]


def test_study_variants_share_the_budget_and_differ_only_where_they_should():
    recipe = load_recipe(TINY_RECIPE, ["train.accumulate={trunk: 16}", "train.balance.method=dwa", "train.steps_per_epoch=3"])
    variants = study_variants(recipe)
    assert list(variants) == ["single_detection", "single_segmentation", "multitask_plain", "multitask_engine"]
    assert {v.train.steps_per_epoch for v in variants.values()} == {3}
    assert {v.train.epochs for v in variants.values()} == {recipe.train.epochs}
    assert variants["single_segmentation"].train.single_task == "segmentation"
    assert not variants["multitask_plain"].train.engine_enabled()
    assert variants["multitask_engine"].train.accumulate == {"trunk": 16}


def test_system_budget_gives_multitask_runs_the_steps_of_the_single_task_set():
    recipe = load_recipe(TINY_RECIPE, ["train.epochs=3"])
    variants = study_variants(recipe, budget="system")
    assert variants["single_detection"].train.epochs == 3
    assert variants["multitask_plain"].train.epochs == variants["multitask_engine"].train.epochs == 3 * len(recipe.tasks)
    with pytest.raises(ValueError, match="budget"):
        study_variants(recipe, budget="epochs")


def test_study_table_reports_best_final_and_gap_to_single_task():
    recipe = load_recipe(TINY_RECIPE)
    histories = {
        "single_detection": {"val_detection_map50": [0.2, 0.5, 0.4]},
        "single_segmentation": {"val_segmentation_miou": [0.6, 0.7]},
        "multitask_engine": {"val_detection_map50": [0.3, 0.49], "val_segmentation_miou": [0.5, np.nan, 0.72]},
    }
    results = summarize(histories, recipe)
    assert results["single_detection"]["detection"] == {"best": 0.5, "final": 0.4}
    table = markdown_table(results, recipe)
    row = next(line for line in table.splitlines() if line.startswith("| multitask_engine"))
    assert "49.0 / 49.0 (-1.0 pts)" in row and "72.0 / 72.0 (+2.0 pts)" in row


def test_study_command_end_to_end(tmp_path):
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["study", str(TINY_RECIPE), "--out", str(out), "--epochs", "1",
                                       "--steps-per-epoch", "1", "--set", "train.accumulate={trunk: 16}", *TINY])
    assert result.exit_code == 0, result.output
    for name in ["study.md", "study.png", "study.json", "single_detection/model.keras", "multitask_engine/history.csv"]:
        assert (out / name).is_file(), name
    study = json.loads((out / "study.json").read_text())
    assert study["budget"] == "run"
    results = study["variants"]
    assert set(results["single_segmentation"]) == {"segmentation"} and set(results["multitask_plain"]) == {"detection", "segmentation"}


def test_bench_engine_command_end_to_end(tmp_path):
    result = CliRunner().invoke(main, ["bench-engine", str(TINY_RECIPE), "--rounds", "1", "--steps", "1",
                                       "--json", str(tmp_path / "b.json"), "--set", "train.accumulate={trunk: 16}"])
    assert result.exit_code == 0, result.output
    numbers = json.loads((tmp_path / "b.json").read_text())
    assert numbers["overhead"]["ratio"] > 0 and set(numbers["recompute"]) == {"none", "lower", "lower+last_stage"}
    assert "engine/plain" in result.output and "recompute" in result.output


def test_a_study_folder_of_another_budget_is_not_reused(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"budget": "run", "variants": {}}))
    result = CliRunner().invoke(main, ["study", str(TINY_RECIPE), "--out", str(tmp_path), "--budget", "system"])
    assert result.exit_code != 0 and "another budget" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "single_detection").exists()
