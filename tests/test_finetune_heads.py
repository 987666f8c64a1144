"""train.finetune_heads: a last stage that trains every head with the shared trunk frozen."""

import csv

import keras
import numpy as np
import pytest

from conftest import TINY_RECIPE
from mtl_tf.config import RecipeError
from mtl_tf.recipe import load_recipe
from mtl_tf.train.fit import run_fit


class WeightsAtMainEnd(keras.callbacks.Callback):
    """Every weight of the model (trunk and heads, BatchNorm statistics included) when the main
    training ends."""

    def on_train_end(self, logs=None):
        self.weights = {v.path: np.array(v) for v in self.model.weights}
        self.trunk = {v.path for layer in self.model.engine_graph.trunk_layers for v in layer.weights}


def test_finetune_heads_changes_the_heads_and_not_the_trunk(tmp_path):
    recipe = load_recipe(TINY_RECIPE, ["train.epochs=1", "train.steps_per_epoch=3", "train.num_overlays=0",
                                       "train.finetune_heads={epochs: 1, learning_rate: 0.01}"])
    snapshot = WeightsAtMainEnd()
    run = run_fit(recipe, tmp_path / "run", verbose=0, extra_callbacks=[snapshot])
    model = keras.saving.load_model(run / "model.keras")
    after = {v.path: np.array(v) for v in model.weights}
    assert set(after) == set(snapshot.weights) and len(snapshot.trunk) > 20
    changed = {path for path in after if not np.array_equal(after[path], snapshot.weights[path])}
    assert not changed & snapshot.trunk  # kernels and BatchNorm statistics alike
    heads = set(after) - snapshot.trunk
    for task in ("detection", "segmentation"):
        assert any(path.startswith(task) for path in changed), task
    assert len(changed) > len(heads) / 3
    # The saved model is trainable again, and the stage continues the epoch count.
    assert all(layer.trainable for layer in model.layers)
    rows = list(csv.DictReader(open(run / "finetune_history.csv")))
    assert [row["epoch"] for row in rows] == ["1"] and "val_segmentation_miou" in rows[0]


def test_finetune_heads_needs_epochs():
    with pytest.raises(RecipeError, match="train.finetune_heads.epochs"):
        load_recipe(TINY_RECIPE, ["train.finetune_heads={learning_rate: 0.01}"])
