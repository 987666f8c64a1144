"""Training diagnostics (train/diagnostics.py): recorded every N steps, plotted, cheap."""

import json

import numpy as np

from conftest import TINY_RECIPE
from mtl_tf.recipe import load_recipe
from mtl_tf.tasks import build_tasks
from mtl_tf.train.diagnostics import anchor_fit
from mtl_tf.train.fit import run_fit


def test_fit_records_diagnostics_every_n_steps(tmp_path):
    recipe = load_recipe(TINY_RECIPE, ["train.epochs=1", "train.steps_per_epoch=4", "train.diagnostics_every=2",
                                       "train.num_overlays=0", "data.val.0.num_images=4"])
    run = run_fit(recipe, tmp_path / "run", verbose=0)
    report = json.loads((run / "diagnostics.json").read_text())
    assert [r["step"] for r in report["records"]] == [1, 2, 4]
    first, last = report["records"][0], report["records"][-1]
    for task in ("detection", "segmentation"):
        assert first[f"{task}/loss"] > 0 and first[f"{task}/trunk_grad_norm"] > 0 and first[f"{task}/effective_lr"] > 0
    assert -1 <= first["grad_cosine"] <= 1 and 0 <= first["segmentation/background_share"] <= 1
    assert last["bn_drift"] > 0  # moving statistics moved between measurements
    assert 0 <= report["static"]["detection"]["matched_share"] <= 1
    assert (run / "diagnostics.png").stat().st_size > 10_000


def test_anchor_fit_counts_boxes_an_anchor_matches():
    task = build_tasks({"detection": {"classes": ["a"], "min_scale": 0.2, "max_scale": 0.6, "feature_levels": 3}},
                       (64, 64))["detection"]
    anchor = np.clip(task.anchor_corners[0], 0, 1)
    tiny_box = np.array([[0.5, 0.5, 0.51, 0.51]])
    fit = anchor_fit(task, [anchor[None], tiny_box])
    assert fit["matched_share"] == 0.5 and len(fit["box_sizes"]) == 2 and fit["anchor_sizes"]
