"""The multitask training engine (train/engine.py): accumulation, skipping, balancing, scale."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from engine_support import attach_engine, batches, tiny, weights_of
from mtl_tf.config import PlateauConfig
from mtl_tf.train.callbacks import DWAUpdate, TaskPlateau
from mtl_tf.train.engine import dwa_weights, labelled_count


def _changed(before, variables) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, weights_of(variables)))


def test_accumulation_equals_one_big_batch():
    """Two batches of 4 accumulated to 8 examples = one step of Keras' own train_step on 8."""
    engine_model, plain = tiny(("segmentation",), freeze_bn=True), tiny(("segmentation",), freeze_bn=True)
    plain.set_weights(engine_model.get_weights())
    engine = attach_engine(engine_model, 4, accumulate={"trunk": 8, "segmentation": 8})
    import keras

    plain.compile(optimizer=keras.optimizers.SGD(0.05))
    engine_model.fit(batches(engine_model, 8, 4), epochs=1, verbose=0, shuffle=False)
    plain.fit(batches(plain, 8, 8), epochs=1, verbose=0, shuffle=False)
    assert {g: int(o.iterations.numpy()) for g, o in engine.optimizers.items()} == {"trunk": 1, "segmentation": 1}
    for a, b in zip(weights_of(engine_model.trainable_variables), weights_of(plain.trainable_variables)):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-4)
    assert _changed(weights_of(tiny(("segmentation",)).trainable_variables), plain.trainable_variables)


def test_task_weighted_trunk_equals_keras_own_step_on_partly_labelled_batches():
    """trunk_weighting=tasks, no accumulation: the engine's step is Keras' step on the summed
    masked losses, even when a batch is partly labelled."""
    import keras

    engine_model, plain = tiny(), tiny()
    plain.set_weights(engine_model.get_weights())
    attach_engine(engine_model, 4, trunk_weighting="tasks", accumulate={"detection": 1, "segmentation": 1})
    plain.compile(optimizer=keras.optimizers.SGD(0.05))
    labelled = {"detection": [1, 1, 1, 0], "segmentation": [0, 1, 0, 0]}
    engine_model.fit(batches(engine_model, 4, 4, labelled), epochs=1, verbose=0, shuffle=False)
    plain.fit(batches(plain, 4, 4, labelled), epochs=1, verbose=0, shuffle=False)
    for a, b in zip(weights_of(engine_model.trainable_variables), weights_of(plain.trainable_variables)):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_head_waits_for_its_labelled_examples_and_absent_tasks_never_step():
    model = tiny()
    engine = attach_engine(model, 4, accumulate={"trunk": 4, "detection": 6, "segmentation": 4})
    det_head, seg_head = engine.vars["detection"], engine.vars["segmentation"]
    det_before, seg_before = weights_of(det_head), weights_of(seg_head)
    # 2 of every 4 examples carry boxes; none carries a mask.
    labelled = {"detection": [1, 0, 1, 0] * 3, "segmentation": [0] * 12}
    data = batches(model, 12, 4, labelled)
    model.fit(data.take(2), epochs=1, verbose=0, shuffle=False)  # 4 labelled boxes-examples < 6
    assert int(engine.optimizers["detection"].iterations.numpy()) == 0 and not _changed(det_before, det_head)
    assert int(engine.optimizers["trunk"].iterations.numpy()) == 2  # the trunk steps every 4 examples
    model.fit(data.skip(2), epochs=1, verbose=0, shuffle=False)  # 6 labelled: the head steps
    assert int(engine.optimizers["detection"].iterations.numpy()) == 1 and _changed(det_before, det_head)
    assert int(engine.optimizers["segmentation"].iterations.numpy()) == 0 and not _changed(seg_before, seg_head)
    assert float(engine.count["segmentation"].numpy()) == 0


def test_a_frozen_task_neither_steps_nor_moves_the_trunk():
    model = tiny()
    engine = attach_engine(model, 4, accumulate={"trunk": 4})
    engine.active["detection"].assign(0.0)
    engine.active["segmentation"].assign(0.0)
    before = weights_of(model.trainable_variables)
    model.fit(batches(model, 4, 4), epochs=1, verbose=0, shuffle=False)
    assert not _changed(before, model.trainable_variables)  # trunk steps, with zero gradient
    assert int(engine.optimizers["trunk"].iterations.numpy()) == 1


def test_labelled_count_reads_per_image_and_per_pixel_weights():
    assert float(labelled_count(tf.constant([1.0, 0.0, 1.0]))) == 2
    pixels = np.zeros((3, 4, 4), np.float32)
    pixels[0, 1, 1] = 1
    assert float(labelled_count(pixels)) == 1


def test_uncertainty_log_variances_get_gradients():
    model = tiny()
    engine = attach_engine(model, 4, lr=0.01, balance={"method": "uncertainty"})
    model.fit(batches(model, 8, 4), epochs=1, verbose=0, shuffle=False)
    s = engine.log_vars.numpy()
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L < 0 for the losses here (> 1): s grows, weight drops.
    assert (s > 0).all()
    np.testing.assert_allclose(engine.task_weights().numpy(), np.exp(-s), rtol=1e-6)


def test_dwa_weights_follow_the_formula():
    previous, before = np.array([1.0, 3.0]), np.array([2.0, 3.0])
    e = np.exp(np.array([0.5, 1.0]) / 2.0)
    np.testing.assert_allclose(dwa_weights(previous, before, 2.0), 2 * e / e.sum())

    model = tiny()
    engine = attach_engine(model, 4, balance={"method": "dwa", "dwa_temperature": 2.0})
    callback = DWAUpdate(engine, 2.0)
    callback.on_epoch_end(0, {"detection_loss": 2.0, "segmentation_loss": 3.0})
    np.testing.assert_array_equal(engine.weights.numpy(), [1, 1])  # two epochs needed
    callback.on_epoch_end(1, {"detection_loss": 1.0, "segmentation_loss": 3.0})
    np.testing.assert_allclose(engine.weights.numpy(), 2 * e / e.sum(), rtol=1e-6)
    assert engine.weights.numpy()[1] > engine.weights.numpy()[0]  # the slower task gains weight


def test_gradnorm_moves_weights_toward_equal_gradient_norms():
    model = tiny()
    engine = attach_engine(model, 4, balance={"method": "gradnorm"})
    # Same training rates: the target is the mean norm 2.5; the task above it loses weight.
    grad = engine._gradnorm_gradient(tf.constant([4.0, 1.0]), tf.constant([2.0, 2.0]), tf.constant([4.0, 4.0]))
    np.testing.assert_allclose(grad.numpy(), [4.0, -1.0])
    # An absent task (no labels in the batch) gets no gradient.
    grad = engine._gradnorm_gradient(tf.constant([4.0, 0.0]), tf.constant([2.0, 0.0]), tf.constant([4.0, 0.0]))
    assert grad.numpy()[1] == 0
    # Training: the weights move (and stay normalized to the number of tasks).
    model.fit(batches(model, 8, 4), epochs=1, verbose=0, shuffle=False)
    w = engine.gn_weights.numpy()
    assert not np.allclose(w, 1.0) and w.sum() == pytest.approx(2.0, rel=1e-5)


def test_plateau_lowers_the_lr_or_freezes_the_task():
    model = tiny()
    engine = attach_engine(model, 4, lr_multipliers={"detection": 2.0})
    lower = TaskPlateau(engine, PlateauConfig(patience=2, action="lower_lr", factor=0.5), model.tasks)
    for epoch, (det, seg) in enumerate([(0.1, 0.5), (0.2, 0.4), (0.3, 0.45)]):
        logs = {"val_detection_map50": det, "val_segmentation_miou": seg}
        lower.on_epoch_end(epoch, logs)
    assert float(engine.multiplier["segmentation"].numpy()) == 0.5  # 2 epochs below its best
    assert float(engine.multiplier["detection"].numpy()) == 2.0  # still improving
    assert logs["segmentation_lr_mult"] == 0.5

    freeze = TaskPlateau(engine, PlateauConfig(patience=1, action="freeze"), model.tasks)
    freeze.on_epoch_end(0, {"val_detection_map50": 0.5, "val_segmentation_miou": 0.5})
    freeze.on_epoch_end(1, {"val_detection_map50": 0.6, "val_segmentation_miou": 0.5})
    assert float(engine.active["segmentation"].numpy()) == 0 and float(engine.active["detection"].numpy()) == 1


def test_engine_state_round_trips():
    model = tiny()
    engine = attach_engine(model, 4, accumulate={"trunk": 8}, balance={"method": "uncertainty"})
    model.fit(batches(model, 4, 4), epochs=1, verbose=0, shuffle=False)  # half an accumulation
    state = engine.state()
    assert float(engine.count["trunk"].numpy()) == 4
    other = attach_engine(tiny(), 4, accumulate={"trunk": 8}, balance={"method": "uncertainty"})
    other.set_state(state)
    for a, b in zip(state, other.state()):
        np.testing.assert_array_equal(a, b)


def test_distributed_step_matches_single_device_accumulation():
    """MirroredStrategy over 2 logical CPUs with global batches of 8 = one device with batches
    of 4 accumulated to 8 (partly labelled batches, both tasks), in a fresh process."""
    tests = Path(__file__).parent
    env = {**__import__("os").environ, "PYTHONPATH": str(tests.parent)}
    out = subprocess.run([sys.executable, str(tests / "distributed_step.py"), str(tests)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["iterations"] == result["iterations_single"] == {"trunk": 2, "detection": 2, "segmentation": 2}
    assert result["max_update"] > 1e-3 and result["max_abs_diff"] < 1e-5


def test_recompute_gives_the_same_gradients():
    from conftest import tiny_task_configs
    from mtl_tf.model.multitask import MultitaskModel

    plain = MultitaskModel({"name": "tiny", "width": 8}, tiny_task_configs(), (64, 64))
    remat = MultitaskModel({"name": "tiny", "width": 8}, tiny_task_configs(), (64, 64), recompute=["lower", "last_stage"])
    remat.set_weights(plain.get_weights())
    assert remat.get_config()["recompute"] == ["lower", "last_stage"]
    x = tf.constant(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8))

    def grads(model):
        graph = model.engine_graph

        @tf.function
        def run():
            with tf.GradientTape() as tape:
                taps = graph.trunk(x, training=True)
                loss = tf.add_n([tf.reduce_sum(t ** 2) for t in taps])
            return tape.gradient(loss, graph.trunk_vars)

        return run()

    for a, b in zip(grads(plain), grads(remat)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3)


def test_sequential_head_backward_changes_no_number():
    """head_backward sequential only orders the heads' branches: after two steps on partly
    labelled batches (a branch skipped), weights and engine state equal the joint step's."""
    labelled = {"detection": [1, 1, 0, 1, 0, 1, 1, 1], "segmentation": [1, 0, 1, 1, 0, 0, 1, 1]}
    results = {}
    for setting in ("joint", "sequential"):
        model = tiny()
        engine = attach_engine(model, 4, head_backward=setting, balance={"method": "uncertainty"})
        assert engine.sequential == (setting == "sequential")
        model.fit(batches(model, 8, 4, labelled), epochs=1, verbose=0, shuffle=False)
        results[setting] = weights_of(model.trainable_variables) + engine.state()
    assert _changed(weights_of(tiny().trainable_variables), model.trainable_variables)
    for a, b in zip(*results.values()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
