"""`mtl-tf bench-engine --task-counts` (train/task_memory.py) and `restrict_tasks`."""

import json

import pytest
from click.testing import CliRunner

from conftest import ROOT, TINY_RECIPE
from mtl_tf.cli import main
from mtl_tf.config import RecipeError
from mtl_tf.recipe import load_recipe, restrict_tasks

UBERNET = ROOT / "recipes" / "ubernet.yaml"


def test_restricting_ubernet_drops_the_tasks_their_labels_and_their_keys():
    recipe = load_recipe(UBERNET, ["train.accumulate={trunk: 16, depth: 8, saliency: 4}"])
    two = restrict_tasks(recipe, ["detection", "segmentation"])
    assert list(two.tasks) == ["detection", "segmentation"]
    for source in [*two.data.train, *two.data.val]:
        assert source.targets == {"depth": None, "normals": None, "boundaries": None, "saliency": None}
    assert two.train.best.references == {} and two.train.accumulate == {"trunk": 16}
    four = restrict_tasks(recipe, list(recipe.tasks)[:4])
    assert four.data.train[0].targets == {"boundaries": None, "saliency": None}
    references = recipe.train.best.references  # the recipe's: depth and normals, both kept
    assert set(references) == {"depth", "normals"} and four.train.best.references == references
    assert four.train.accumulate == {"trunk": 16, "depth": 8}
    assert restrict_tasks(recipe, list(recipe.tasks)).to_dict() == recipe.to_dict()
    with pytest.raises(RecipeError, match="cannot keep tasks \\['nope'\\]: the recipe's tasks are detection, segmentation"):
        restrict_tasks(recipe, ["nope"])


def test_a_source_bound_by_name_to_a_dropped_task_feeds_nothing():
    """named_tasks binds its first mask source to `landcover` by name: without it, that mask
    must feed nothing (not the other segmentation task, and no binding error)."""
    from mtl_tf.data import pipeline
    from mtl_tf.tasks import build_tasks

    recipe = load_recipe(ROOT / "recipes" / "named_tasks.yaml", ["data.image_size=[64, 64]"])
    kept = restrict_tasks(recipe, ["vehicles", "footprints"])
    assert [s.targets for s in kept.data.train] == [{"mask": None}, {"mask": "footprints"}]
    tasks = build_tasks(kept.tasks, kept.data.image_size)
    reader = pipeline.ExampleReader(kept.data.train, tasks, kept.data.image_size)
    surface, objects = reader.read(0, 0), reader.read(1, 0)
    assert surface["has_vehicles"] and not surface["has_footprints"] and "landcover/mask" not in surface
    assert objects["has_footprints"] and not objects["has_vehicles"]


def test_task_counts_are_checked_against_the_recipe():
    from mtl_tf.train.task_memory import check_counts

    recipe = load_recipe(TINY_RECIPE)
    assert check_counts(recipe, [2, 1, 2]) == [1, 2]
    with pytest.raises(ValueError, match=r"task counts \[1, 3\]: each must be 1..2"):
        check_counts(recipe, [1, 3])
    result = CliRunner().invoke(main, ["bench-engine", str(TINY_RECIPE), "--task-counts", "1,3"])
    assert result.exit_code != 0 and "each must be 1..2" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["bench-engine", str(TINY_RECIPE), "--task-counts", "1", "--settings", "nope"])
    assert result.exit_code != 0 and "choose from plain,joint,sequential" in result.output


def test_task_count_table_end_to_end(tmp_path):
    """Two task counts, one setting, one fresh process each: JSON, markdown table and plot."""
    out = tmp_path / "memory.json"
    result = CliRunner().invoke(main, [
        "bench-engine", str(TINY_RECIPE), "--task-counts", "2,1", "--settings", "sequential", "--steps", "1",
        "--set", "data.batch_size=2", "--json", str(out), "--plot", str(tmp_path / "memory.png")])
    assert result.exit_code == 0, result.output
    numbers = json.loads(out.read_text())
    assert numbers["counts"] == [1, 2] and numbers["tasks"] == ["detection", "segmentation"]
    [(name, row)] = numbers["settings"].items()
    assert name == "sequential" and set(row["by_count"]) == {"1", "2"}
    one, two = row["by_count"]["1"]["train_mb"], row["by_count"]["2"]["train_mb"]
    assert one > 0 and two > one  # a second head's weights, optimizer state and activations
    assert row["growth_mb"] == pytest.approx(two - one) and row["per_task_mb"] == pytest.approx(two - one)
    assert (tmp_path / "memory.png").stat().st_size > 0
    header, rule, line = [x for x in result.output.splitlines() if x.startswith("|")]
    assert header == "| setting | 1 task | 2 tasks | growth 1 -> 2 | step share growth | per added task |"
    assert line.startswith("| engine, head_backward sequential | ") and f"{two - one:+.1f} MB" in line
    for probe in row["by_count"].values():  # the peak = what stays between steps + the step's own share
        assert probe["resident_mb"] > 0 and probe["step_peak_mb"] > 0
        assert probe["resident_mb"] + probe["step_peak_mb"] == pytest.approx(probe["train_mb"])


@pytest.mark.slow
def test_sequential_head_backward_peaks_no_higher_than_joint():
    """UberNet's six tasks at 128x128, batch 16 (about 2 minutes): one head's activations at a
    time peak lower than the executor's free order (measured: 103-106 vs 115 MB)."""
    from mtl_tf.train.task_memory import task_count_memory

    recipe = load_recipe(UBERNET, ["data.train.0.num_images=16"])
    results = task_count_memory(recipe, [6], 2, ["joint", "sequential"])["settings"]
    joint, sequential = (results[s]["by_count"]["6"]["train_mb"] for s in ("joint", "sequential"))
    assert sequential <= joint, (sequential, joint)
