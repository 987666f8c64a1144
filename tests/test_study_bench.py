"""`mtl-tf study` and `mtl-tf bench-engine`: report logic, and end to end on the tiny recipe."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_RECIPE
from mtl_tf.cli import main
from mtl_tf.recipe import load_recipe
from mtl_tf.train.study import markdown_table, single_task_references, study_variants, summarize

ROOT = Path(__file__).resolve().parents[1]

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
    recipe = load_recipe(TINY_RECIPE, ["train.epochs=3", "train.balance.method=dwa"])
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
    assert all(r["train_mb"] > 0 for r in numbers["recompute"].values())
    assert "engine/plain" in result.output and "recompute" in result.output


def test_memory_probe_measures_on_a_cpu_without_onednn(monkeypatch):
    """TF_ENABLE_ONEDNN_OPTS=0 is what CPUs without AVX-512 run by default: TensorFlow's default CPU
    allocator then keeps no statistics, and the probe must still measure (its BFC allocator)."""
    from mtl_tf.train import bench

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    recipe = load_recipe(TINY_RECIPE, ["data.batch_size=2"])
    [result] = bench.recompute_memory(recipe, 1, choices=((),)).values()
    assert result["train_mb"] > 0 and result["memory_ratio"] == 1.0


def test_a_probe_that_cannot_measure_fails_with_one_clear_line(monkeypatch):
    from mtl_tf.bench.memory import MeasurementError
    from mtl_tf.train import bench

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.delenv(bench.BFC_ENV, raising=False)
    monkeypatch.setattr(bench, "BFC_ENV", "MTL_TF_TEST_UNUSED")  # the child runs without the BFC allocator
    recipe = load_recipe(TINY_RECIPE, ["data.batch_size=2"])
    with pytest.raises(MeasurementError) as raised:
        bench.recompute_memory(recipe, 1, choices=((),))
    message = str(raised.value)
    assert message.startswith("training-memory probe (recompute none) failed: MeasurementError: TensorFlow keeps "
                              "no allocator statistics on CPU:0 (Cannot reset memory stats for device 'CPU:0')")
    assert "\n" not in message and "TF_CPU_ALLOCATOR_USE_BFC=true" in message


def test_a_zero_allocator_peak_is_a_failure_not_a_figure(monkeypatch):
    from mtl_tf.bench.memory import MeasurementError
    from mtl_tf.train import bench

    monkeypatch.setattr(bench.tf.config.experimental, "reset_memory_stats", lambda device: None)
    monkeypatch.setattr(bench.tf.config.experimental, "get_memory_info", lambda device: {"current": 0, "peak": 0})
    with pytest.raises(MeasurementError, match="allocator reported a peak of 0 bytes"):
        bench.memory_probe(load_recipe(TINY_RECIPE, ["data.batch_size=2"]), 1)


def test_the_last_meaningful_stderr_line_skips_tensorflow_logs():
    from mtl_tf.bench.memory import last_error_line

    stderr = ("Traceback (most recent call last):\n  File \"x.py\", line 1\nmtl_tf.bench.memory.MeasurementError: "
              "no figure\nE0000 00:00:1796358036.117807    3664 cuda_platform.cc:52] failed call to cuInit\n"
              "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n\n")
    assert last_error_line(stderr) == "MeasurementError: no figure"
    assert last_error_line("") == ""


def test_a_study_folder_of_another_budget_is_not_reused(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"budget": "run", "variants": {}}))
    result = CliRunner().invoke(main, ["study", str(TINY_RECIPE), "--out", str(tmp_path), "--budget", "system"])
    assert result.exit_code != 0 and "another budget" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "single_detection").exists()


def test_remedy_variants_change_only_their_settings(tmp_path):
    recipe = load_recipe(TINY_RECIPE, ["train.epochs=2"])
    variants = study_variants(recipe, "system", ["focal", "sigmoid", "pcgrad", "balanced+normalized+distill"],
                              tmp_path)
    assert "multitask_engine" not in variants  # the recipe sets no engine key: it would be plain again
    plain, focal, pcgrad = variants["multitask_plain"], variants["multitask_focal"], variants["multitask_pcgrad"]
    assert focal.tasks["detection"].classification_loss == "focal" and plain.tasks["detection"].classification_loss == "softmax"
    assert variants["multitask_sigmoid"].tasks["detection"].classification_loss == "sigmoid"
    assert focal.train.epochs == plain.train.epochs == 4 and not focal.train.engine_enabled()
    assert pcgrad.train.gradient_surgery == "pcgrad" and pcgrad.train.accumulate == {"detection": 1, "segmentation": 1}
    combo = variants["multitask_balanced+normalized+distill"]
    assert combo.tasks["segmentation"].loss == "balanced" and combo.train.balance.method == "normalized"
    assert combo.train.teachers == {t: str(tmp_path / f"single_{t}") for t in ("detection", "segmentation")}
    with pytest.raises(ValueError, match="unknown study variant 'nope'"):
        study_variants(recipe, "run", ["focal+nope"])


def test_sampling_variants_change_only_the_mixing_weights(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "sampling_study.yaml", ["train.epochs=2"])
    variants = study_variants(recipe, "system", ["uniform", "proportional", "annealed", "dynamic+normalized"], tmp_path)
    assert sorted(n for n in variants if n.startswith("single_")) == ["single_objects", "single_scene", "single_vehicles"]
    plain = variants["multitask_plain"]
    assert plain.data.mixing.weights == [0.5, 0.15, 0.35] and plain.train.epochs == 6
    for name, weights in [("uniform", "uniform"), ("proportional", "proportional"), ("annealed", "annealed")]:
        variant = variants[f"multitask_{name}"]
        assert variant.data.mixing.weights == weights and variant.data.mixing.mode == "per_batch_task"
        assert variant.train == plain.train and variant.tasks == plain.tasks and variant.data.train == plain.data.train
    combo = variants["multitask_dynamic+normalized"]
    assert combo.data.mixing.weights == "dynamic" and combo.train.balance.method == "normalized"
    with pytest.raises(ValueError, match="mixing.mode must be sample or per_batch_task"):
        study_variants(load_recipe(TINY_RECIPE), "run", ["uniform"])


def test_dynamic_sampling_in_a_study_measures_shortfalls_against_the_single_task_runs():
    recipe = load_recipe(ROOT / "recipes" / "sampling_study.yaml", ["train.best.references={objects: 0.9}"])
    variants = study_variants(recipe, "run", ["dynamic", "uniform"])
    histories = {"single_vehicles": {"val_vehicles_map50": [0.1, 0.3, 0.2]},
                 "single_scene": {"val_scene_top1": [0.5, 0.7]}}
    dynamic = single_task_references(variants["multitask_dynamic"], histories, recipe)
    assert dynamic.train.best.references == {"vehicles": 0.3, "scene": 0.7, "objects": 0.9}  # the recipe's own kept
    assert single_task_references(variants["multitask_uniform"], histories, recipe) is variants["multitask_uniform"]


def test_a_single_task_run_leaves_the_other_tasks_targets_unused():
    from mtl_tf.train.fit import single_task_recipe

    recipe = load_recipe(ROOT / "recipes" / "sampling_study.yaml", ["train.single_task=scene"])
    single = single_task_recipe(recipe)
    assert list(single.tasks) == ["scene"]
    assert [s.targets.get("label") for s in single.data.train] == [None, "scene", None]
    assert [s.targets.get("boxes", "auto") for s in single.data.train] == [None, "auto", "auto"]  # the detector's
    assert single.data.val[0].targets == {"label": "scene", "labels": None, "boxes": None}
