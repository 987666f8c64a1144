"""A fit killed at any moment, even inside a checkpoint write, and rerun with the same --out
ends with the weights, best model and history of an uninterrupted run (bit for bit)."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest

from conftest import TINY_RECIPE
from mtl_tf import atomic
from mtl_tf.recipe import load_recipe
from mtl_tf.train.fit import BACKUP, run_finished, run_fit

# Two epochs of one step, with the engine (its state is part of every backup).
FIT = ["train.epochs=2", "train.steps_per_epoch=1", "data.batch_size=4", "train.num_overlays=0",
       "data.val.0.num_images=4", "train.accumulate={trunk: 8, detection: 4, segmentation: 4}",
       "train.balance.method=uncertainty"]


class Killed(BaseException):
    """Stands for kill -9: not an Exception, so the writer's clean-up leaves its partial file."""


def _fit(recipe, run, kill_at=None) -> list:
    """Fit into `run`; with `kill_at` (1-based), stop at that file event, truncating a file or
    folder caught between written and renamed to half, as a kill mid-write leaves it. Returns
    the (stage, name) events seen."""
    events = []

    def fault(stage, path):
        events.append((stage, path.name))
        if len(events) == kill_at:
            if stage == "written":
                for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
                    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
            raise Killed

    atomic.fault = fault
    try:
        run_fit(recipe, run, verbose=0)
    finally:
        atomic.fault = None
    return events


def _rows(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.reader(f))


def _same_run(run, straight):
    assert run_finished(run) and not list(run.glob(".*partial*"))
    for name in ("model.keras", "best.keras"):
        for a, b in zip(keras.models.load_model(straight / name).get_weights(),
                        keras.models.load_model(run / name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert _rows(run) == _rows(straight)  # one row per epoch, same values


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    recipe = load_recipe(TINY_RECIPE, FIT)
    run = tmp_path_factory.mktemp("straight") / "run"
    events = _fit(recipe, run)
    return recipe, run, events


def _index(events, stage, name, occurrence=1) -> int:
    return [i + 1 for i, e in enumerate(events) if e == (stage, name)][occurrence - 1]


def test_a_kill_inside_a_backup_write_after_the_epochs_history_row_resumes_exactly(straight, tmp_path):
    recipe, reference, events = straight
    run = tmp_path / "run"
    with pytest.raises(Killed):  # epoch 2's row is in history.csv, its backup half written
        _fit(recipe, run, _index(events, "written", ".epoch-0002.partial"))
    assert len(_rows(run)) == 3 and (run / BACKUP / ".epoch-0002.partial").is_dir()
    _fit(recipe, run)
    _same_run(run, reference)


def test_a_damaged_newest_backup_falls_back_to_the_one_before(straight, tmp_path, capsys):
    recipe, reference, events = straight
    run = tmp_path / "run"
    with pytest.raises(Killed):  # model.keras is written, the report is not
        _fit(recipe, run, _index(events, "renamed", "model.keras"))
    assert not run_finished(run)
    weights = run / BACKUP / "epoch-0002" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])  # e.g. a disk error
    capsys.readouterr()
    _fit(recipe, run)
    out = capsys.readouterr().out
    assert f"backup {run / BACKUP / 'epoch-0002'} is incomplete or damaged" in out
    assert f"resuming from {run / BACKUP / 'epoch-0001'} (1 epochs done)" in out
    _same_run(run, reference)


def test_a_model_without_its_report_gets_the_report_not_a_new_training(straight, tmp_path, capsys):
    """A run killed between model.keras and metrics.json by an earlier version (no backup left)."""
    recipe, reference, _ = straight
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "metrics.json").unlink()
    model = (run / "model.keras").read_bytes()
    _fit(recipe, run)
    assert "its report is not: writing the report" in capsys.readouterr().out
    assert (run / "model.keras").read_bytes() == model
    assert json.loads((run / "metrics.json").read_text())["metrics"] == json.loads(
        (reference / "metrics.json").read_text())["metrics"]


@pytest.mark.slow  # one killed fit and its rerun per file event: about 20 x 35 s
def test_a_kill_at_every_file_event_resumes_exactly(straight, tmp_path):
    recipe, reference, events = straight
    assert len(events) >= 14  # recipe, 2 x (best, history, backup), model, metrics: written + renamed
    for k in range(1, len(events) + 1):
        run = tmp_path / f"kill{k}"
        with pytest.raises(Killed):
            _fit(recipe, run, k)
        _fit(recipe, run)
        _same_run(run, reference)


@pytest.mark.slow
def test_a_truncated_backup_of_an_earlier_version_starts_over(straight, tmp_path, capsys):
    """The reported crash: Keras' own backup/latest.weights.h5 cut short by a kill."""
    recipe, reference, _ = straight
    run = tmp_path / "run"
    (run / BACKUP).mkdir(parents=True)
    (run / BACKUP / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (run / BACKUP / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    _fit(recipe, run)
    assert "no complete backup" in capsys.readouterr().out
    _same_run(run, reference)


def test_a_killed_fit_with_dynamic_sampling_resumes_with_its_shares(tmp_path):
    # Shares decided after epoch 0 apply from epoch 2 on (one epoch more than the pipeline's read-ahead).
    recipe = load_recipe(TINY_RECIPE, ["train.epochs=3", "train.steps_per_epoch=10", "data.batch_size=4",
                                       "train.num_overlays=0", "data.val.0.num_images=4",
                                       "data.mixing={mode: per_batch_task, weights: dynamic, dynamic: {temperature: 0.05}}",
                                       "train.best.references={segmentation: 1.0}"])
    straight = tmp_path / "straight"
    events = _fit(recipe, straight)
    shares = [[float(r["sampling_share_0"]), float(r["sampling_share_1"])] for r in csv.DictReader(open(straight / "history.csv"))]
    assert abs(shares[0][0] - shares[0][1]) > 0.05, shares  # the shares epoch 2 draws by moved
    run = tmp_path / "run"
    with pytest.raises(Killed):  # after epoch 1's backup: epoch 2 draws by the shares decided after epoch 0
        _fit(recipe, run, kill_at=_index(events, "renamed", "epoch-0001"))
    _fit(recipe, run)
    _same_run(run, straight)
