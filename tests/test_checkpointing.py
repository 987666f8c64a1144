"""Gradient checkpointing by segments (model/checkpointing.py)."""

import math
import re

import numpy as np
import tensorflow as tf

from mtl_tf.model.backbones import build_backbone
from mtl_tf.model.checkpointing import CheckpointedModel, cut_points, graph_nodes


def _producer(model, tensor_id):
    return next(n.operation.name for n in graph_nodes(model) if any(id(t) == tensor_id for t in n.outputs))


def test_resnet50_is_cut_only_between_residual_blocks_into_about_sqrt_n_segments():
    lower = build_backbone("resnet50", (64, 64)).lower
    cuts = cut_points(lower)
    producers = {_producer(lower, t) for t in cuts.values()}
    # after every block of stages 2-4 (the last block's output is the model's end, not a cut)
    blocks = {f"conv{s}_block{b}_out" for s, n in ((2, 3), (3, 4), (4, 6)) for b in range(1, n + 1)}
    assert blocks - {"conv4_block6_out"} <= producers
    # never inside a block, where the shortcut and the residual branch are both live
    assert not any(re.search(r"_block\d+_\d_", p) for p in producers)
    checkpointed = CheckpointedModel(lower)
    assert len(checkpointed.segments) == math.ceil(math.sqrt(len(graph_nodes(lower))))
    assert sum(len(s) for s in checkpointed.segments) == len(graph_nodes(lower))


def test_checkpointed_model_gives_the_models_outputs_and_gradients():
    lower = build_backbone("tiny", (64, 64), width=8).lower
    checkpointed = CheckpointedModel(lower, segments=3)
    assert len(checkpointed.segments) == 3
    x = tf.constant(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8))

    def grads(fn):
        with tf.GradientTape() as tape:
            out = fn(x, training=True)
            loss = tf.add_n([tf.reduce_sum(out[k] ** 2) for k in ("C3", "C4")])
        return out, tape.gradient(loss, lower.trainable_variables)

    (out_a, grads_a), (out_b, grads_b) = grads(lower), grads(checkpointed)
    for k in ("C3", "C4"):
        np.testing.assert_allclose(out_a[k].numpy(), out_b[k].numpy(), atol=1e-5)
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3)


def test_segments_hold_similar_shares_of_the_activations():
    from mtl_tf.model.checkpointing import activation_sizes

    lower = build_backbone("resnet50", (64, 64)).lower
    checkpointed = CheckpointedModel(lower, segments=4)
    shares = [activation_sizes(s).sum() for s in checkpointed.segments]
    total = activation_sizes(graph_nodes(lower)).sum()
    # ResNet's high-resolution first stages hold most activations per layer: short segments there
    assert len(checkpointed.segments[0]) < len(checkpointed.segments[-1])
    assert max(shares) < 0.45 * total  # vs 1.0 for one segment, 0.25 for a perfect split
