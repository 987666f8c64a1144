"""The SSD head: extra residual downsampling stages and per-level box/class predictors."""

from __future__ import annotations

import keras

from mtl_tf.model.layers import L2Normalization, residual_block


def build_ssd_head(
    features: dict,
    num_levels: int,
    boxes_per_location: list[int],
    num_classes: int,
    extra_channels: int,
    l2_normalized_levels: int,
    name: str = "detection",
):
    """Raw SSD output [B, A, 4 + num_classes + 1]: box regression, then class logits (0 = background).

    Levels are the taps C3, C4, C5 followed by `num_levels - 3` extra stride-2 bottleneck
    residual blocks on C5. The first `l2_normalized_levels` levels are L2-normalized (SSD).
    """
    levels = [features["C3"], features["C4"], features["C5"]][:num_levels]
    x = features["C5"]
    for i in range(num_levels - len(levels)):
        x = residual_block(x, extra_channels, 2, name=f"{name}_extra{i + 1}", bottleneck=True)
        levels.append(x)
    boxes, logits = [], []
    for k, (feature, per_location) in enumerate(zip(levels, boxes_per_location)):
        if k < l2_normalized_levels:
            feature = L2Normalization(name=f"{name}_l2norm{k}")(feature)
        loc = keras.layers.Conv2D(per_location * 4, 3, padding="same", name=f"{name}_box{k}")(feature)
        cls = keras.layers.Conv2D(
            per_location * (num_classes + 1), 3, padding="same", name=f"{name}_cls{k}"
        )(feature)
        boxes.append(keras.layers.Reshape((-1, 4), name=f"{name}_box{k}_flat")(loc))
        logits.append(keras.layers.Reshape((-1, num_classes + 1), name=f"{name}_cls{k}_flat")(cls))
    boxes = keras.layers.Concatenate(axis=1, name=f"{name}_boxes")(boxes)
    logits = keras.layers.Concatenate(axis=1, name=f"{name}_logits")(logits)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_raw")([boxes, logits])
