"""Gradient surgery (train/surgery.py) and loss normalization in the engine (issue 17)."""

import numpy as np
import pytest
import tensorflow as tf

from engine_support import attach_engine, batches, tiny, weights_of
from mtl_tf.train.surgery import cagrad, pcgrad


def test_pcgrad_projects_conflicting_gradients_only():
    g1, g2 = [1.0, 0.0], [-1.0, 1.0]  # g1 . g2 = -1 < 0
    # g1 - (-1 / 2) g2 = [0.5, 0.5]; g2 - (-1 / 1) g1 = [0, 1]
    np.testing.assert_allclose(pcgrad(tf.constant([g1, g2])).numpy(), [0.5, 1.5], atol=1e-6)
    # each projected gradient is orthogonal to the other task's gradient
    np.testing.assert_allclose(np.dot([0.5, 0.5], g2), 0.0, atol=1e-6)
    # no conflict: the plain sum
    np.testing.assert_allclose(pcgrad(tf.constant([[1.0, 0.0], [1.0, 1.0]])).numpy(), [2.0, 1.0], atol=1e-6)
    # an absent task (zero gradient) changes nothing
    np.testing.assert_allclose(pcgrad(tf.constant([g1, g2, [0.0, 0.0]])).numpy(), [0.5, 1.5], atol=1e-6)


def test_cagrad_improves_the_worst_task_within_its_ball():
    grads = tf.constant([[1.0, 0.0], [-0.8, 0.3]])
    np.testing.assert_allclose(cagrad(grads, c=0.0).numpy(), grads.numpy().sum(0), atol=1e-6)
    c = 0.5
    d = cagrad(grads, c).numpy() * (1 + c * c) / 2  # undo the rescaling
    g0 = grads.numpy().mean(0)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) + 1e-5
    worst = lambda v: (grads.numpy() @ v).min()  # noqa: E731
    assert worst(d) > worst(g0) + 1e-3
    # the best direction in the ball, by brute force over its boundary, is no better
    angles = np.linspace(0, 2 * np.pi, 3600)
    ring = g0 + c * np.linalg.norm(g0) * np.stack([np.cos(angles), np.sin(angles)], 1)
    assert worst(d) >= max(worst(v) for v in ring) - 2e-3


def _trunk_delta(surgery="none", active=(1.0, 1.0)):
    model = tiny(seed=3)
    engine = attach_engine(model, 4, trunk_weighting="tasks", gradient_surgery=surgery)
    for name, flag in zip(engine.tasks, active):
        engine.active[name].assign(flag)
    before = weights_of(engine.vars["trunk"])
    model.fit(batches(model, 4, 4, seed=5), epochs=1, verbose=0, shuffle=False)
    return [b - a for a, b in zip(before, weights_of(engine.vars["trunk"]))]


def test_engine_pcgrad_steps_the_trunk_with_the_projected_gradients():
    """One SGD step: the trunk moves by -lr * pcgrad(per-task trunk gradients) / batch, each
    task's gradient measured by a run where only that task is active."""
    flat = lambda parts: np.concatenate([p.ravel() for p in parts])  # noqa: E731
    det, seg = flat(_trunk_delta(active=(1.0, 0.0))), flat(_trunk_delta(active=(0.0, 1.0)))
    both, projected = flat(_trunk_delta()), flat(_trunk_delta("pcgrad"))
    # float32 steps of separate runs: sums in another order, a few ulps apart (rtol)
    np.testing.assert_allclose(both, det + seg, rtol=1e-5, atol=1e-6)
    expected = pcgrad(tf.constant(np.stack([det, seg]))).numpy()
    np.testing.assert_allclose(projected, expected, rtol=1e-5, atol=1e-6)
    if np.dot(det, seg) < 0:  # conflicting here: surgery changed the step
        assert np.abs(projected - both).max() > 1e-6


def test_engine_cagrad_runs_and_moves_the_trunk():
    assert np.abs(np.concatenate([d.ravel() for d in _trunk_delta("cagrad")])).max() > 0


def test_normalized_divides_each_loss_by_its_running_mean():
    model = tiny()
    engine = attach_engine(model, 4, balance={"method": "normalized", "normalized_momentum": 0.5})
    history = model.fit(batches(model, 4, 4), epochs=1, verbose=0, shuffle=False)
    first = [history.history[f"{t}_loss"][0] for t in engine.tasks]
    np.testing.assert_allclose(engine.loss_scale.numpy(), first, rtol=1e-5)  # the first loss starts it
    np.testing.assert_allclose(engine.task_weights().numpy(), 1 / np.array(first), rtol=1e-5)
    history = model.fit(batches(model, 4, 4, seed=1), epochs=1, verbose=0, shuffle=False)
    second = [history.history[f"{t}_loss"][0] for t in engine.tasks]
    np.testing.assert_allclose(engine.loss_scale.numpy(), 0.5 * np.array(first) + 0.5 * np.array(second), rtol=1e-5)
    # an absent task keeps its running mean
    kept = engine.loss_scale.numpy().copy()
    model.fit(batches(model, 4, 4, {"segmentation": [0, 0, 0, 0]}, seed=2), epochs=1, verbose=0, shuffle=False)
    assert engine.loss_scale.numpy()[1] == pytest.approx(kept[1]) and engine.loss_scale.numpy()[0] != pytest.approx(kept[0])
    state = engine.state()
    assert any(np.array_equal(s, engine.loss_scale.numpy()) for s in state)  # in the backups
