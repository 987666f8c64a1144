"""Gradient checkpointing of a functional Keras model, segment by segment.

Recomputing a whole network as one `tf.recompute_grad` segment saves nothing at the peak: its
backward pass rematerializes every activation of the segment at once. Chen et al. (2016) split
the network into about sqrt(n) segments and keep only the tensors between segments, so the
backward pass holds one segment's activations at a time. `CheckpointedModel` does that for any
functional model: it cuts the model's graph where a single tensor carries everything later layers
need (between residual blocks, never inside one), and runs each segment under `tf.recompute_grad`.

BatchNorm layers in training mode update their moving statistics again when a segment is
recomputed (the same batch statistics are applied twice per step).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import tree


def graph_nodes(model: keras.Model) -> list:
    """The model's layer calls in an order that computes every input before its use."""
    depths = sorted(model._nodes_by_depth, reverse=True)
    return [n for d in depths for n in model._nodes_by_depth[d] if n.operation and not n.is_input]


def cut_points(model: keras.Model) -> dict[int, int]:
    """{i: id of the carried tensor} for every index i into `graph_nodes` after which exactly one
    tensor is still needed by later nodes. Model outputs produced before i are handed out by
    their segment and do not block a cut."""
    nodes = graph_nodes(model)
    produced = {id(t): -1 for t in model.inputs}
    last_use = {}
    for i, node in enumerate(nodes):
        for t in node.input_tensors:
            last_use[id(t)] = i
        for t in node.outputs:
            produced[id(t)] = i
    cuts = {}
    for i in range(len(nodes) - 1):
        live = [t for t, p in produced.items() if p <= i < last_use.get(t, -1)]
        if len(live) == 1:
            cuts[i] = live[0]
    return cuts


def activation_sizes(nodes: list) -> np.ndarray:
    """Elements per example of each node's outputs (what the backward pass would keep)."""
    return np.array([sum(math.prod(d or 1 for d in t.shape[1:]) for t in n.outputs) for n in nodes], float)


def balanced_cuts(nodes: list, cuts: list[int], segments: int) -> list[int]:
    """Up to `segments - 1` of the valid `cuts`, chosen so that the segments hold about equal
    shares of the activations (early high-resolution layers get short segments)."""
    if segments < 2 or not cuts:
        return []
    cumulative = np.cumsum(activation_sizes(nodes))
    at = cumulative[cuts]
    targets = cumulative[-1] * np.arange(1, segments) / segments
    return sorted({cuts[int(np.argmin(np.abs(at - t)))] for t in targets})


class CheckpointedModel:
    """Calls a single-input functional `model` as about sqrt(n) segments, each under
    `tf.recompute_grad`, and returns its outputs in the model's own structure.

    `segments` caps the count (default: ceil(sqrt(number of layer calls))); the cuts balance
    the activations held per segment (`balanced_cuts`).
    """

    def __init__(self, model: keras.Model, segments: int | None = None):
        if len(model.inputs) != 1:
            raise ValueError(f"{model.name}: checkpointing needs a single-input model")
        self.model = model
        nodes = graph_nodes(model)
        cuts = cut_points(model)
        chosen = balanced_cuts(nodes, sorted(cuts), segments or math.ceil(math.sqrt(len(nodes))))
        bounds = [-1, *chosen, len(nodes) - 1]
        self.segments = [nodes[a + 1 : b + 1] for a, b in zip(bounds, bounds[1:])]
        self.carried = [id(model.inputs[0])] + [cuts[i] for i in chosen]  # each segment's input
        output_ids = {id(t) for t in model.outputs}
        self.returned = []  # per segment: the tensors it hands out (model outputs, next carry)
        for k, seg in enumerate(self.segments):
            keep = output_ids | set(self.carried[k + 1 : k + 2])
            self.returned.append([t for n in seg for t in n.outputs if id(t) in keep])

    def __call__(self, inputs, training: bool = True):
        values = {self.carried[0]: tree.flatten(inputs)[0]}
        for seg, carried, returned in zip(self.segments, self.carried, self.returned):

            def run(x, seg=seg, carried=carried, returned=returned):
                local = {carried: x}
                for node in seg:
                    args, kwargs = node.arguments.fill_in(local)
                    if "training" in getattr(node.operation, "_call_context_args", {}):
                        kwargs["training"] = training
                    for ref, y in zip(node.outputs, tree.flatten(node.operation(*args, **kwargs))):
                        local[id(ref)] = y
                return [local[id(t)] for t in returned]

            results = (tf.recompute_grad(run) if training else run)(values[carried])
            values.update({id(t): y for t, y in zip(returned, results)})
        return tree.pack_sequence_as(self.model._outputs_struct, [values[id(t)] for t in self.model.outputs])
