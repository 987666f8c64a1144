"""Task sampling: annealing between two arbitrary weight settings, dynamic weights that move to the
task lagging behind its reference (or its own best), their bounds, and the recipe keys."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_RECIPE
from mtl_tf.config import DynamicSamplingConfig, MixingConfig, RecipeError
from mtl_tf.data import mixing
from mtl_tf.recipe import load_recipe, recipe_from_dict
from mtl_tf.tasks import build_tasks
from mtl_tf.train.fit import run_fit
from mtl_tf.train.sampling import DynamicSampling, bounded_shares
from test_mixing import _constant_streams, _draw


def test_annealing_from_one_setting_to_another_follows_its_schedule():
    cfg = MixingConfig.model_validate({"mode": "per_batch_task", "weights": {"from": [0.9, 0.1], "to": [1, 9]},
                                       "anneal_steps": 2000})
    schedule = mixing.weight_schedule(cfg, [10, 10], 2000)
    for step, first in ((0, 0.9), (500, 0.7), (1000, 0.5), (2000, 0.1), (9000, 0.1)):
        np.testing.assert_allclose(schedule(step).numpy(), [first, 1 - first])
    # In the stream: 2 examples a batch, each batch from one source; windows of 400 batches.
    draws = _draw(cfg, [10, 10], 2, 2 * 3000).reshape(3000, 2)[:, 0]
    for start, expected in ((0, 0.82), (800, 0.5), (1600, 0.18), (2400, 0.1)):
        assert abs((draws[start:start + 400] == 0).mean() - expected) < 0.06, start
    assert "weights [0.9, 0.1] -> [0.1, 0.9]" in mixing.describe(cfg, [10, 10], 2)


def test_annealing_settings_by_name_and_their_validation():
    cfg = MixingConfig.model_validate({"mode": "sample", "weights": {"from": "proportional", "to": "uniform"}})
    schedule = mixing.weight_schedule(cfg, [100, 300], 10)
    np.testing.assert_allclose(schedule(0).numpy(), [0.25, 0.75])
    np.testing.assert_allclose(schedule(10).numpy(), [0.5, 0.5])
    raw = {"data": {"train": [{"type": "synthetic_aerial", "num_images": 4}] * 2,
                    "val": [{"type": "synthetic_aerial", "num_images": 4}]},
           "tasks": {"detection": {"classes": ["pedestrian", "cyclist", "car", "bus"]}}}
    raw["data"]["mixing"] = {"mode": "sample", "weights": {"from": [1, 2, 3], "to": "uniform"}}
    with pytest.raises(RecipeError, match=r"mixing.weights.from needs one weight per train source \(2\)"):
        recipe_from_dict(raw)
    raw["data"]["mixing"] = {"mode": "sample", "weights": "dynamic", "anneal_steps": 5}
    with pytest.raises(RecipeError, match="anneal_steps is for weights: annealed or"):
        recipe_from_dict(raw)
    raw["data"]["mixing"] = {"mode": "sample", "weights": "dynamic", "dynamic": {"max_share": 0.4}}
    with pytest.raises(RecipeError, match=r"2 sources cannot have shares within \[0.05, 0.4\]"):
        recipe_from_dict(raw)
    raw["data"]["mixing"] = {"mode": "sample", "weights": {"from": [3, 1], "to": [1, 1]}, "anneal_steps": 9}
    dumped = recipe_from_dict(raw).to_dict()["data"]["mixing"]
    assert dumped["weights"] == {"from": [3.0, 1.0], "to": [1.0, 1.0]}  # the recipe's own keys, so it reloads


def test_bounded_shares_keep_order_sum_and_bounds():
    shares = bounded_shares([1000, 1, 1, 0], 0.05, 0.6)
    assert shares.sum() == pytest.approx(1) and shares.min() >= 0.05 - 1e-12 and shares.max() <= 0.6 + 1e-12
    np.testing.assert_allclose(shares, [0.6, 0.175, 0.175, 0.05])  # the two equal weights share what is left
    np.testing.assert_allclose(bounded_shares([1, 3], 0, 1), [0.25, 0.75])


def _sampler(references=None):
    tasks = build_tasks({"a": {"type": "classification", "classes": ["x", "y"]},
                         "b": {"type": "multilabel", "classes": ["x", "y"]}}, (64, 64))
    return DynamicSampling([["a"], ["b"], []], tasks, DynamicSamplingConfig(temperature=0.1, min_share=0.05,
                                                                             max_share=0.8), references=references)


def test_dynamic_sampling_moves_weight_to_the_task_below_its_reference():
    sampler = _sampler({"a": 0.8, "b": 0.9})
    logs = {"val_a_top1": 0.8, "val_b_map": 0.45}  # a at its reference, b at half of it
    sampler.on_epoch_end(0, logs)
    shares = sampler.probabilities.numpy()
    assert shares[1] == pytest.approx(0.8) and shares[0] == pytest.approx(shares[2]) == pytest.approx(0.1)
    assert logs["sampling_share_1"] == pytest.approx(0.8)
    sampler.on_epoch_end(1, {"val_a_top1": 0.4, "val_b_map": 0.9})  # now a lags
    assert sampler.probabilities.numpy().argmax() == 0


def test_dynamic_sampling_without_references_follows_each_task_s_own_best():
    sampler = _sampler()
    sampler.on_epoch_end(0, {"val_a_top1": 0.5, "val_b_map": 0.5})
    np.testing.assert_allclose(sampler.probabilities.numpy(), [1 / 3] * 3)  # everyone at its best
    sampler.on_epoch_end(1, {"val_a_top1": 0.7, "val_b_map": 0.4})  # b fell 20% below its best
    shares = sampler.probabilities.numpy()
    assert shares[1] > 0.7 and shares[0] == pytest.approx(shares[2])


def test_the_mixing_stream_follows_the_dynamic_variable():
    cfg = MixingConfig(mode="sample", weights="dynamic")
    probabilities = tf.Variable([0.2, 0.8], dtype=tf.float64)
    ds = mixing.mix(_constant_streams(2), cfg, [5, 5], 4, 0, dynamic=probabilities)
    options = tf.data.Options()
    options.autotune.enabled = False  # no injected prefetch: draws happen when read (training lags by the prefetch)
    stream = iter(ds.with_options(options).as_numpy_iterator())
    first = np.array([next(stream) for _ in range(2000)])
    probabilities.assign([0.9, 0.1])
    second = np.array([next(stream) for _ in range(2000)])
    assert abs((first == 0).mean() - 0.2) < 0.04 and abs((second == 0).mean() - 0.9) < 0.04, ((first == 0).mean(), (second == 0).mean())


def test_fit_with_dynamic_weights_logs_the_shares(tmp_path):
    recipe = load_recipe(TINY_RECIPE, ["data.mixing={mode: per_batch_task, weights: dynamic}", "train.epochs=2",
                                       "train.steps_per_epoch=2", "train.num_overlays=0"])
    run = run_fit(recipe, tmp_path / "run", verbose=0)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 2
    for row in rows:
        assert float(row["sampling_share_0"]) + float(row["sampling_share_1"]) == pytest.approx(1)
