"""Multiply-accumulates (MACs) of a Keras model, counted from its convolution and dense layers.

One MAC is one multiply plus one add (2 FLOPs). Only Conv2D, DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose and Dense count: the bulk of the arithmetic of the backbones and heads here;
batch norm (folded at export), activations, additions and resizing are left out. Each layer counts
once per call in the graph, so a trunk shared by several heads counts once.
"""

from __future__ import annotations

import math

import keras

# Keras names each call of a layer in a graph this way; a model's `_nodes` holds its calls' names.
from keras.src.ops.function import make_node_key


def layer_macs(layer, input_shape, output_shape) -> int:
    """MACs of one call of `layer` for one image (channels-last shapes, batch dimension first)."""
    out_spatial = math.prod(output_shape[1:-1])
    in_channels, out_channels = input_shape[-1], output_shape[-1]
    if isinstance(layer, keras.layers.SeparableConv2D):
        kernel = math.prod(layer.kernel_size)
        depthwise = in_channels * layer.depth_multiplier
        return out_spatial * (depthwise * kernel + depthwise * out_channels)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return out_spatial * out_channels * math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return math.prod(input_shape[1:-1]) * in_channels * math.prod(layer.kernel_size) * out_channels
    if isinstance(layer, keras.layers.Conv2D):
        per_output = math.prod(layer.kernel_size) * in_channels // layer.groups
        return out_spatial * out_channels * per_output
    if isinstance(layer, keras.layers.Dense):
        return math.prod(input_shape[1:-1]) * in_channels * out_channels
    return 0


def count_macs(model: keras.Model) -> int:
    """MACs of one forward pass of `model` for one image, nested models included."""
    total = 0
    for layer in model.layers:
        calls = [node for i, node in enumerate(layer._inbound_nodes) if make_node_key(layer, i) in model._nodes]
        if isinstance(layer, keras.Model):
            total += len(calls) * count_macs(layer)
        else:
            total += sum(
                layer_macs(layer, n.input_tensors[0].shape, n.output_tensors[0].shape)
                for n in calls
                if n.input_tensors  # an InputLayer's node has none
            )
    return total
