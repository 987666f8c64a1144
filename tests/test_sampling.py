"""Task sampling: annealing between two arbitrary weight settings, dynamic weights that move to the
task lagging behind its reference (or its own best), their bounds, and the recipe keys."""

import csv
import json

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


def _sampler(references=None, epochs=3):
    tasks = build_tasks({"a": {"type": "classification", "classes": ["x", "y"]},
                         "b": {"type": "multilabel", "classes": ["x", "y"]}}, (64, 64))
    return DynamicSampling([["a"], ["b"], []], tasks, DynamicSamplingConfig(temperature=0.1, min_share=0.05,
                                                                             max_share=0.8), references=references,
                           epochs=epochs)


def test_dynamic_sampling_moves_weight_to_the_task_below_its_reference():
    logs = {"val_a_top1": 0.8, "val_b_map": 0.45}  # a at its reference, b at half of it
    sampler = _sampler({"a": 0.8, "b": 0.9}, epochs=4)
    sampler.on_epoch_end(0, logs)
    table = sampler.probabilities.numpy()
    np.testing.assert_allclose(table[:2], 1 / 3)  # epochs 0 and 1 were drawn (or prefetched) already
    shares = table[2]
    assert shares[1] == pytest.approx(0.8) and shares[0] == pytest.approx(shares[2]) == pytest.approx(0.1)
    np.testing.assert_array_equal(table[3], shares)  # until a later decision
    assert logs["sampling_share_1"] == pytest.approx(0.8)
    sampler.on_epoch_end(1, {"val_a_top1": 0.4, "val_b_map": 0.9})  # now a lags
    table = sampler.probabilities.numpy()
    np.testing.assert_array_equal(table[2], shares)
    assert table[3].argmax() == 0


def test_dynamic_sampling_without_references_follows_each_task_s_own_best():
    sampler = _sampler(epochs=4)
    sampler.on_epoch_end(0, {"val_a_top1": 0.5, "val_b_map": 0.5})
    np.testing.assert_allclose(sampler.probabilities.numpy(), 1 / 3)  # everyone at its best
    sampler.on_epoch_end(1, {"val_a_top1": 0.7, "val_b_map": 0.4})  # b fell 20% below its best
    shares = sampler.probabilities.numpy()[3]
    assert shares[1] > 0.7 and shares[0] == pytest.approx(shares[2])
    restored = _sampler(epochs=4)
    restored.set_state(json.loads(json.dumps(sampler.state())))  # as the training snapshot keeps it
    np.testing.assert_array_equal(restored.probabilities.numpy(), sampler.probabilities.numpy())
    assert restored.best == {"a": 0.7, "b": 0.5}


def test_the_mixing_stream_follows_the_dynamic_table_row_of_each_epoch():
    cfg = MixingConfig(mode="sample", weights="dynamic")
    table = tf.Variable([[0.2, 0.8], [0.9, 0.1]], dtype=tf.float64)  # epoch 0, epoch 1 (and after)
    per_epoch = 500  # batches of 4 examples
    ds = mixing.mix(_constant_streams(2), cfg, [5, 5], 4, 0, total_steps=2 * per_epoch, dynamic=table)
    draws = np.array(list(ds.take(3 * per_epoch * 4).as_numpy_iterator())).reshape(3, -1)
    assert abs((draws[0] == 0).mean() - 0.2) < 0.04 and abs((draws[1] == 0).mean() - 0.9) < 0.04
    assert abs((draws[2] == 0).mean() - 0.9) < 0.04  # past the last row: the last row
    again = np.array(list(ds.take(3 * per_epoch * 4).as_numpy_iterator())).reshape(3, -1)
    np.testing.assert_array_equal(again, draws)  # the same table: the same stream, whatever the prefetch


def test_fit_with_dynamic_weights_logs_the_shares(tmp_path):
    recipe = load_recipe(TINY_RECIPE, ["data.mixing={mode: per_batch_task, weights: dynamic}", "train.epochs=2",
                                       "train.steps_per_epoch=2", "train.num_overlays=0"])
    run = run_fit(recipe, tmp_path / "run", verbose=0)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 2
    for row in rows:
        assert float(row["sampling_share_0"]) + float(row["sampling_share_1"]) == pytest.approx(1)
