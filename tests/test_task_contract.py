"""The task contract: a task type defined only in tests/contract_task.py, used twice under two
names in one recipe, goes through fit, evaluate, predict, export (float and int8) and the Jetson
runner with nothing outside that module knowing it; and the named-task recipe (two segmentation
tasks fed by two mask sources, a detector with its own name) trains and reports per task."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from conftest import ROOT, write_video
from contract_task import HeatScenes, HeatTask
from mtl_tf.cli import main
from mtl_tf.config import RecipeError
from mtl_tf.data import augment, pipeline
from mtl_tf.data.sources import SOURCES
from mtl_tf.recipe import load_recipe, recipe_from_dict
from mtl_tf.tasks import TASKS, build_tasks

SIZE = 64


def _recipe(**tasks_extra):
    return {
        "name": "heat",
        "data": {
            "image_size": [SIZE, SIZE], "batch_size": 4,
            "train": [{"type": "heat_scenes", "num_images": 8, "seed": 1, "surface": "building", "targets": {"heat": "roofs"}},
                      {"type": "heat_scenes", "num_images": 8, "seed": 2, "surface": "water", "targets": {"heat": "lakes"}}],
            "val": [{"type": "heat_scenes", "num_images": 4, "seed": 9, "surface": "building", "targets": {"heat": "roofs"}},
                    {"type": "heat_scenes", "num_images": 4, "seed": 9, "surface": "water", "targets": {"heat": "lakes"}}],
        },
        "model": {"backbone": {"name": "tiny", "width": 8}},
        "tasks": {"roofs": {"type": "heat"}, "lakes": {"type": "heat", "loss_weight": 0.5}, **tasks_extra},
        "train": {"epochs": 2, "num_overlays": 2, "optimizer": {"learning_rate": 0.003}},
        "export": {"calibration_images": 4, "max_drop": {"roofs": 0.2, "lakes": 0.2}},
    }


@pytest.fixture()
def registered(monkeypatch):
    monkeypatch.setitem(TASKS, "heat", HeatTask)
    monkeypatch.setitem(SOURCES, "heat_scenes", HeatScenes)


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_binding_namespacing_and_resizing_follow_the_task_spec(registered):
    recipe = recipe_from_dict(_recipe())
    tasks = build_tasks(recipe.tasks, recipe.data.image_size)
    assert {n: (t.type, t.name) for n, t in tasks.items()} == {"roofs": ("heat", "roofs"), "lakes": ("heat", "lakes")}
    reader = pipeline.ExampleReader(recipe.data.train, tasks, recipe.data.image_size)
    first, second = reader.read(0, 0), reader.read(1, 0)
    assert first["has_roofs"] and not first["has_lakes"] and second["has_lakes"] and not second["has_roofs"]
    assert first["roofs/heat"].shape == (SIZE, SIZE, 1) and first["roofs/heat"].dtype == np.float32
    # Rendered at 128x128 and resized bilinearly (the spec): edge pixels fall between 0 and 1.
    heat = first["roofs/heat"]
    assert heat.max() == 1.0 and ((heat > 0) & (heat < 1)).any()
    assert np.all(first["lakes/heat"] == 0)  # the placeholder of a missing label
    # Flips move the map with the image.
    layout = augment.label_layout(tasks)
    flipped = augment.horizontal_flip({k: tf.constant(v) for k, v in first.items()}, layout)
    np.testing.assert_array_equal(flipped["roofs/heat"].numpy(), heat[:, ::-1])


def test_ambiguous_or_wrong_bindings_are_recipe_errors(registered):
    raw = _recipe()
    del raw["data"]["train"][0]["targets"]
    with pytest.raises(RecipeError, match=r"data.train.0.targets: heat labels could feed tasks roofs, lakes"):
        recipe_from_dict(raw)
    raw = _recipe()
    raw["data"]["train"][0]["targets"] = {"heat": "roofz"}
    with pytest.raises(RecipeError, match=r"heat: 'roofz' is not a task"):
        recipe_from_dict(raw)
    raw = _recipe()
    raw["data"]["train"][0]["targets"] = {"mask": "roofs"}
    with pytest.raises(RecipeError, match=r"this source yields no mask labels"):
        recipe_from_dict(raw)
    for bad in ("image", "trunk", "2d", "a-b"):
        raw = _recipe()
        raw["tasks"][bad] = {"type": "heat"}
        with pytest.raises(RecipeError, match=r"is (reserved|not a task name)"):
            recipe_from_dict(raw)


def test_a_task_type_from_the_tests_goes_through_every_command(registered, tmp_path, monkeypatch):
    recipe_path = tmp_path / "heat.yaml"
    recipe_path.write_text(json.dumps(_recipe()))
    run = tmp_path / "run"
    fitted = _invoke("fit", recipe_path, "--out", run, "--quiet")
    # Each source labels one task: fit trains with the partial-label defaults, through the engine.
    assert "using train.balance.method=normalized" in fitted.output and "engine: accumulate" in fitted.output
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"roofs_loss", "lakes_loss", "val_roofs_mae", "val_lakes_mae", "val_score"} <= set(history)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"roofs", "lakes"} and all(0 <= m["mae"] < 0.5 for m in metrics.values())

    _invoke("evaluate", run, "--json", tmp_path / "eval.json", "--report", tmp_path / "report")
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["roofs"]["mae"] == pytest.approx(metrics["roofs"]["mae"], abs=1e-5)

    frame = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(frame).save(tmp_path / "frame.png")
    _invoke("predict", run, tmp_path / "frame.png", "--out", tmp_path / "pred")
    for task in ("roofs", "lakes"):  # each task's maps in its own folder, at the input's size
        saved = np.asarray(Image.open(tmp_path / "pred" / f"{task}_heat" / "frame.png"))
        assert saved.shape == (40, 56)

    _invoke("export", run, "--int8", "--calibration", "4", "--verify", "--out", tmp_path / "export")
    for variant in ("float32", "int8"):
        meta = json.loads((tmp_path / "export" / variant / "metadata.json").read_text())
        assert {n: (t["name"], t["type"]) for n, t in meta["tasks"].items()} == {"roofs": ("roofs", "heat"),
                                                                                  "lakes": ("lakes", "heat")}
        assert set(meta["outputs"]) == {"roofs_map", "lakes_map"}
    int8 = json.loads((tmp_path / "export" / "int8" / "metadata.json").read_text())["outputs"]
    assert int8["roofs_map"]["dtype"] == "int8" and int8["roofs_map"]["quantization"]["scale"] > 0

    write_video(tmp_path / "clip.mp4", frames=2)
    command = [sys.executable, str(ROOT / "export" / "jetson" / "run.py"), str(tmp_path / "export"), "--backend", "litert",
               "--source", str(tmp_path / "clip.mp4"), "--headless", "--json", str(tmp_path / "jetson.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    frames = json.loads((tmp_path / "jetson.json").read_text())["per_frame"]
    assert len(frames) == 2 and all(0 <= f["roofs"] <= 1 and 0 <= f["lakes"] <= 1 for f in frames)


def test_the_trunk_holds_only_what_some_head_reads(registered):
    from mtl_tf.train.fit import build_model

    model = build_model(recipe_from_dict(_recipe()))
    graph = model.engine_graph
    assert graph.tap_names == ["C4"]  # both heads read C4 alone: C3 and the last stage are unused
    assert len(graph.trunk_layers) == 1
    in_model = {id(v) for v in model.trainable_variables}
    assert graph.trunk_vars and all(id(v) in in_model for v in graph.trunk_vars)
    images = tf.zeros((2, SIZE, SIZE, 3))
    np.testing.assert_allclose(graph.trunk(images, training=False)[0], model.get_layer("tap_C4")(
        model.engine_graph.trunk_layers[0](images, training=False)["C4"]), atol=1e-6)


def test_named_task_recipe_binds_two_mask_sources_and_reports_per_task(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "named_tasks.yaml", [
        "data.image_size=[64, 64]", "data.batch_size=4", "model.backbone.width=8", "train.epochs=1",
        "train.steps_per_epoch=2", "train.num_overlays=0", "tasks.vehicles.min_scale=0.1",
        "data.train.0.num_images=8", "data.train.1.num_images=8", "data.val.0.num_images=4", "data.val.1.num_images=4",
    ])
    tasks = build_tasks(recipe.tasks, recipe.data.image_size)
    reader = pipeline.ExampleReader(recipe.data.train, tasks, recipe.data.image_size)
    surface, objects = reader.read(0, 0), reader.read(1, 0)
    assert surface["has_vehicles"] and surface["has_landcover"] and not surface["has_footprints"]
    assert objects["has_footprints"] and not objects["has_landcover"] and not objects["has_vehicles"]
    assert set(np.unique(objects["footprints/mask"])) <= set(range(5))

    from mtl_tf.train.fit import run_fit

    run = run_fit(recipe, tmp_path / "run", verbose=0)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"vehicles", "landcover", "footprints"}
    for name in ("vehicles_pr_curves.png", "landcover_confusion_matrix.png", "footprints_confusion_matrix.png"):
        assert (run / name).is_file(), name


def test_best_score_plateau_and_study_follow_the_metric_direction(registered):
    from mtl_tf.train.callbacks import TaskPlateau, task_score
    from mtl_tf.train.study import summarize

    recipe = recipe_from_dict(_recipe(seg={"type": "segmentation", "classes": ["a", "b"]}))
    tasks = build_tasks(recipe.tasks, recipe.data.image_size)
    logs = lambda mae, miou: {"val_roofs_mae": mae, "val_lakes_mae": mae, "val_seg_miou": miou}  # noqa: E731
    # A lower error scores higher; at the references (1.0) the score is 1.
    assert task_score(logs(0.1, 0.5), tasks, {}, {}) > task_score(logs(0.2, 0.5), tasks, {}, {})
    assert task_score(logs(0.3, 0.6), tasks, {}, {"roofs": 0.3, "lakes": 0.3, "seg": 0.6}) == pytest.approx(1.0)

    class Engine:  # what TaskPlateau reads and writes
        active = {n: tf.Variable(1.0) for n in tasks}
        multiplier = {n: tf.Variable(1.0) for n in tasks}

    from mtl_tf.config import PlateauConfig

    plateau = TaskPlateau(Engine(), PlateauConfig(patience=1, factor=0.5), tasks)
    for mae in (0.3, 0.2, 0.1):  # improving errors: never a plateau
        plateau.on_epoch_end(0, logs(mae, 0.5))
    assert float(Engine.multiplier["roofs"].numpy()) == 1.0
    plateau.on_epoch_end(0, logs(0.15, 0.5))  # worse: the plateau lowers the LR
    assert float(Engine.multiplier["roofs"].numpy()) == 0.5

    histories = {"single_roofs": {"val_roofs_mae": [0.3, 0.2, 0.25]},
                 "multitask_plain": {"val_roofs_mae": [0.4, 0.1, 0.3]}}
    results = summarize(histories, recipe)
    assert results["single_roofs"]["roofs"]["best"] == 0.2 and results["multitask_plain"]["roofs"]["best"] == 0.1
