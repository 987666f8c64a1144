"""The detection heads: extra stride-2 stages after C5 and per-level box/class predictors.

`ssd`: bottleneck residual extra stages and full 3x3 conv predictors (SSD300 style).
`ssdlite`: the MobileNetV2/V3 SSDLite head, depthwise-separable throughout: extra stages
1x1 conv (half channels) -> 3x3 depthwise stride 2 -> 1x1 conv, and predictors 3x3 depthwise +
BN + ReLU6 -> 1x1 conv; a fraction of the SSD head's MACs, for mobile trunks.
Both give the same raw output [B, A, 4 + num_logits] for the same config.
"""

from __future__ import annotations

import keras

from mtl_tf.model.layers import L2Normalization, conv_bn_relu, depthwise_bn_relu, residual_block

HEADS = ("ssd", "ssdlite")


def build_ssd_head(
    features: dict,
    num_levels: int,
    boxes_per_location: list[int],
    num_logits: int,
    extra_channels: int,
    l2_normalized_levels: int,
    name: str = "detection",
    head: str = "ssd",
    logit_bias: float = 0.0,
):
    """Raw SSD output [B, A, 4 + num_logits]: box regression, then class logits (C + 1 with a
    background column 0 for softmax scores, C for sigmoid scores), their biases initialized to
    `logit_bias`.

    Levels are the taps C3, C4, C5 followed by `num_levels - 3` extra stride-2 stages on C5
    (`head` picks their kind and the predictors'). The first `l2_normalized_levels` levels are
    L2-normalized (SSD).
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={head!r}")
    extra, predict = (_ssd_extra, _ssd_predictor) if head == "ssd" else (_ssdlite_extra, _ssdlite_predictor)
    levels = [features["C3"], features["C4"], features["C5"]][:num_levels]
    x = features["C5"]
    for i in range(num_levels - len(levels)):
        x = extra(x, extra_channels, name=f"{name}_extra{i + 1}")
        levels.append(x)
    boxes, logits = [], []
    for k, (feature, per_location) in enumerate(zip(levels, boxes_per_location)):
        if k < l2_normalized_levels:
            feature = L2Normalization(name=f"{name}_l2norm{k}")(feature)
        loc = predict(feature, per_location * 4, name=f"{name}_box{k}")
        cls = predict(feature, per_location * num_logits, name=f"{name}_cls{k}",
                      bias_initializer=keras.initializers.Constant(logit_bias))
        boxes.append(keras.layers.Reshape((-1, 4), name=f"{name}_box{k}_flat")(loc))
        logits.append(keras.layers.Reshape((-1, num_logits), name=f"{name}_cls{k}_flat")(cls))
    boxes = keras.layers.Concatenate(axis=1, name=f"{name}_boxes")(boxes)
    logits = keras.layers.Concatenate(axis=1, name=f"{name}_logits")(logits)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_raw")([boxes, logits])


def _ssd_extra(x, channels: int, name: str):
    return residual_block(x, channels, 2, name=name, bottleneck=True)


def _ssd_predictor(feature, filters: int, name: str, bias_initializer="zeros"):
    return keras.layers.Conv2D(filters, 3, padding="same", name=name, bias_initializer=bias_initializer)(feature)


def _ssdlite_extra(x, channels: int, name: str):
    x = conv_bn_relu(x, channels // 2, 1, name=f"{name}_a", relu_max=6.0)
    x = depthwise_bn_relu(x, 3, 2, name=f"{name}_b")
    return conv_bn_relu(x, channels, 1, name=f"{name}_c", relu_max=6.0)


def _ssdlite_predictor(feature, filters: int, name: str, bias_initializer="zeros"):
    x = depthwise_bn_relu(feature, 3, name=f"{name}_dw")
    return keras.layers.Conv2D(filters, 1, name=name, bias_initializer=bias_initializer)(x)
