"""Mixing train sources into batches (data/mixing.py) and the recipe's mixing section."""

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import ROOT, TINY_RECIPE
from mtl_tf.config import MixingConfig, RecipeError
from mtl_tf.recipe import load_recipe, recipe_from_dict
from mtl_tf.data import mixing, pipeline
from mtl_tf.data.synthetic import SyntheticAerialSource
from test_pipeline import SIZE, _tasks


def _constant_streams(n):
    return [tf.data.Dataset.from_tensors(tf.constant(i, tf.int64)).repeat() for i in range(n)]


def _draw(cfg, sizes, batch_size, count, total_steps=None, seed=0):
    ds = mixing.mix(_constant_streams(len(sizes)), cfg, sizes, batch_size, seed, total_steps)
    return np.fromiter(ds.take(count).as_numpy_iterator(), np.int64)


def test_interleave_gives_exactly_k_examples_of_each_source_per_batch():
    cfg = MixingConfig(mode="interleave", per_batch=[2, 5, 1])
    batches = _draw(cfg, [10, 10, 10], 8, 8 * 50).reshape(50, 8)
    for batch in batches:
        assert np.bincount(batch, minlength=3).tolist() == [2, 5, 1]
    # Without per_batch, the batch is split evenly.
    assert mixing.per_batch_counts(MixingConfig(mode="interleave"), 3, 8) == [3, 3, 2]


@pytest.mark.parametrize("weights, expected", [
    ([0.2, 0.8], [0.2, 0.8]),
    ("proportional", [0.25, 0.75]),
    ("uniform", [0.5, 0.5]),
])
def test_sample_approaches_the_weights(weights, expected):
    draws = _draw(MixingConfig(mode="sample", weights=weights), [100, 300], 4, 6000)
    np.testing.assert_allclose(np.bincount(draws, minlength=2) / len(draws), expected, atol=0.025)


def test_annealed_weights_go_from_proportional_to_uniform():
    sizes = [100, 900]
    np.testing.assert_allclose(mixing.annealed_weights(0, sizes, 1000).numpy(), [0.1, 0.9])
    np.testing.assert_allclose(mixing.annealed_weights(500, sizes, 1000).numpy(), [0.25, 0.75])  # sqrt
    np.testing.assert_allclose(mixing.annealed_weights(5000, sizes, 1000).numpy(), [0.5, 0.5])
    # In the stream, steps are batches: 4 examples each, annealed over 500 batches = 2000 draws.
    draws = _draw(MixingConfig(mode="sample", weights="annealed"), sizes, 4, 6000, total_steps=500)
    early, late = draws[:300], draws[2000:]
    assert abs((early == 0).mean() - 0.11) < 0.05
    assert abs((late == 0).mean() - 0.5) < 0.03


def test_per_batch_task_batches_come_from_one_source_with_the_weights():
    cfg = MixingConfig(mode="per_batch_task", weights=[1, 3])
    batches = _draw(cfg, [50, 50], 6, 6 * 1000).reshape(1000, 6)
    assert np.all(batches == batches[:, :1])  # one source per batch
    assert abs((batches[:, 0] == 1).mean() - 0.75) < 0.04


def test_mixing_is_seeded():
    cfg = MixingConfig(mode="sample", weights="uniform")
    np.testing.assert_array_equal(_draw(cfg, [5, 5], 4, 200, seed=3), _draw(cfg, [5, 5], 4, 200, seed=3))
    assert not np.array_equal(_draw(cfg, [5, 5], 4, 200, seed=3), _draw(cfg, [5, 5], 4, 200, seed=4))


def test_interleaved_training_batches_mix_a_boxes_only_and_a_masks_only_source():
    tasks = _tasks()
    configs = [SyntheticAerialSource.Config(num_images=6, seed=s, labels=l) for s, l in [(0, "boxes"), (1, "masks")]]
    sources = pipeline.load_sources(configs, tasks, SIZE)
    batches = pipeline.training_batches(
        sources, tasks, 4, 8, seed=1, mixing=MixingConfig(mode="interleave", per_batch=[1, 3])
    )
    for _, _, weights in batches.take(5):
        assert weights["detection"].numpy().tolist() == [1, 0, 0, 0]
        assert weights["segmentation"].numpy().reshape(4, -1).max(axis=1).tolist() == [0, 1, 1, 1]


def _recipe_with(mixing_section, train_sources=2):
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["train"] = raw["data"]["train"][:train_sources]
    raw["data"]["mixing"] = mixing_section
    return raw


def test_recipe_mixing_section_is_validated_against_the_sources():
    recipe = recipe_from_dict(_recipe_with({"mode": "interleave", "per_batch": [6, 2]}))
    assert recipe.data.mixing.per_batch == [6, 2]
    bad = [
        ({"mode": "interleave", "per_batch": [4, 2]}, "summing to batch_size"),
        ({"mode": "interleave", "weights": [1, 2]}, "interleave takes mixing.per_batch"),
        ({"mode": "sample", "weights": [1, 2, 3]}, "one weight per train source"),
        ({"mode": "sample", "weights": "annealed", "anneal_step": 3}, "did you mean 'anneal_steps'"),
        ({"mode": "shuffle"}, "data.mixing.mode"),
    ]
    for section, message in bad:
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict(_recipe_with(section))


def test_resolved_recipe_with_mixing_and_augmentation_round_trips():
    recipe = load_recipe(ROOT / "recipes" / "aerial_mix.yaml")
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict())))
    assert again.data.mixing == recipe.data.mixing and again.data.augment == recipe.data.augment
    assert again.data.augment.crop.min_ious == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]
