"""The fit job with the engine: exact resume, NaN stop, best checkpoint, single-task baselines."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_RECIPE
from mtl_tf.cli import main
from mtl_tf.recipe import load_recipe
from mtl_tf.train.callbacks import TrainingDiverged
from mtl_tf.train.fit import BACKUP, run_fit

SHORT = ["train.steps_per_epoch=2", "train.epochs=2", "train.num_overlays=0", "data.val.0.num_images=4"]
ENGINE = SHORT + [
    "train.accumulate={trunk: 12, detection: 6, segmentation: 6}", "train.balance.method=uncertainty",
]


class _Interrupt(keras.callbacks.Callback):
    """Kills the run at the start of epoch `epoch` (after the previous epoch's backup)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class _PoisonWeights(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            variable = self.model.trainable_variables[0]
            variable.assign(np.full(variable.shape, np.nan, np.float32))


def _weights(path):
    return keras.models.load_model(path).get_weights()


@pytest.mark.slow  # three fits: about 2.5 minutes on 2 free cores, 8 on a busy machine
def test_interrupted_run_resumes_exactly(tmp_path):
    recipe = load_recipe(TINY_RECIPE, ENGINE)
    straight = run_fit(recipe, tmp_path / "straight", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        run_fit(recipe, tmp_path / "resumed", verbose=0, extra_callbacks=[_Interrupt(1)])
    assert (tmp_path / "resumed" / BACKUP / "epoch-0001" / "engine_state.npz").is_file()
    resumed = run_fit(recipe, tmp_path / "resumed", verbose=0)
    for a, b in zip(_weights(straight / "model.keras"), _weights(resumed / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    history = (resumed / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3  # header + one row per epoch, no duplicate


def test_nan_stops_with_a_clear_message_and_keeps_the_last_good_state(tmp_path):
    recipe = load_recipe(TINY_RECIPE, SHORT)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 1.*backup.*best.keras"):
        run_fit(recipe, tmp_path / "run", verbose=0, extra_callbacks=[_PoisonWeights()])
    run = tmp_path / "run"
    assert not (run / "model.keras").exists()
    assert [p.name for p in (run / BACKUP).iterdir()] == ["epoch-0001"]  # the last good epoch only
    meta = json.loads((run / BACKUP / "epoch-0001" / "training_metadata.json").read_text())
    assert meta["epoch"] == 1
    best = keras.models.load_model(run / "best.keras")
    assert all(np.isfinite(w).all() for w in best.get_weights())
    backup = keras.models.load_model(run / "best.keras")
    backup.load_weights(run / BACKUP / "epoch-0001" / "latest.weights.h5")
    assert all(np.isfinite(w).all() for w in backup.get_weights())


def test_single_task_fit_trains_only_that_head_on_its_examples(tmp_path):
    run = tmp_path / "seg"
    args = ["fit", str(TINY_RECIPE), "--out", str(run), "--quiet", "--single-task", "segmentation",
            "--set", "train.epochs=1", "--set", "train.num_overlays=0", "--set", "data.val.0.num_images=4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    # The tiny recipe has 24 both-labelled + 8 boxes-only examples: 24 carry masks; the budget
    # (steps per epoch) is the multitask run's: 32 // 8.
    assert "24 train" in result.output and "1 epochs x 4 steps" in result.output
    model = keras.models.load_model(run / "model.keras")
    assert list(model.tasks) == ["segmentation"] and not any("detection" in v.path for v in model.weights)
    assert list(json.loads((run / "metrics.json").read_text())["metrics"]) == ["segmentation"]


def test_unknown_single_task_is_a_clear_error():
    result = CliRunner().invoke(main, ["fit", str(TINY_RECIPE), "--single-task", "depth"])
    assert result.exit_code == 1 and "train.single_task" in result.output and "Traceback" not in result.output
