"""An optional neck shared by every head (`model.neck`): FPN or BiFPN over the backbone taps.

The neck maps {C3, C4, C5} to levels of `channels` channels at the same strides (8, 16, 32) and
the heads read those under the same names, so a head needs no change to sit on a neck. It is
part of the shared trunk (the training engine steps it with the backbone).

- `fpn` (Lin et al. 2017): 1x1 laterals, top-down nearest 2x upsampling and sums, a 3x3 conv
  + BN + ReLU on each level.
- `bifpn` (EfficientDet, Tan et al. 2020): 1x1 + BN projections, then `repeats` BiFPN layers
  (top-down then bottom-up paths, fast normalized fusion of each node's inputs with learned
  non-negative weights, a depthwise-separable 3x3 conv + BN + ReLU after each fusion; 3x3 max
  pooling to go down, nearest 2x upsampling to go up). ReLU rather than swish keeps int8 kernels.
"""

from __future__ import annotations

import keras
from keras import ops

from mtl_tf.model.layers import conv_bn_relu

LEVELS = ("C3", "C4", "C5")


@keras.saving.register_keras_serializable(package="mtl_tf")
class WeightedFusion(keras.layers.Layer):
    """EfficientDet's fast normalized fusion: sum(relu(w_i) x_i) / (sum(relu(w_i)) + epsilon)."""

    def __init__(self, epsilon: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.fusion = self.add_weight(name="fusion", shape=(len(input_shape),), initializer="ones")

    def call(self, inputs):
        weights = ops.relu(self.fusion)
        weights = weights / (ops.sum(weights) + self.epsilon)
        return sum(weights[i] * x for i, x in enumerate(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def build_neck(channels_in: dict, size: tuple[int, int], kind: str, channels: int, repeats: int = 1) -> keras.Model:
    """A model {C3, C4, C5} -> {C3, C4, C5} (`channels` each, same sizes); `channels_in`: the taps'
    channels, `size`: the input image's (height, width)."""
    inputs = {tap: keras.Input((-(-size[0] // s), -(-size[1] // s), channels_in[tap]), name=tap)
              for tap, s in zip(LEVELS, (8, 16, 32))}
    if kind == "fpn":
        outputs = _fpn(inputs, channels)
    elif kind == "bifpn":
        outputs = _bifpn(inputs, channels, repeats)
    else:
        raise ValueError(f"unknown neck type {kind!r}; choose fpn or bifpn")
    return keras.Model(inputs, outputs, name=f"{kind}_neck")


def _up(x, like, name: str):
    return keras.layers.Resizing(*like.shape[1:3], interpolation="nearest", name=name)(x)


def _down(x, name: str):
    return keras.layers.MaxPooling2D(3, 2, padding="same", name=name)(x)


def _fpn(inputs: dict, channels: int) -> dict:
    outputs, above = {}, None
    for tap in reversed(LEVELS):
        x = keras.layers.Conv2D(channels, 1, name=f"fpn_lateral_{tap}")(inputs[tap])
        if above is not None:
            x = keras.layers.Add(name=f"fpn_add_{tap}")([x, _up(above, x, f"fpn_up_{tap}")])
        above = x
        outputs[tap] = conv_bn_relu(x, channels, 3, name=f"fpn_out_{tap}")
    return {tap: outputs[tap] for tap in LEVELS}


def _fuse(parts: list, channels: int, name: str):
    x = WeightedFusion(name=f"{name}_fusion")(parts)
    x = keras.layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_sepconv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _bifpn(inputs: dict, channels: int, repeats: int) -> dict:
    p3, p4, p5 = (conv_bn_relu(inputs[t], channels, 1, name=f"bifpn_in_{t}", relu=False) for t in LEVELS)
    for r in range(repeats):
        n = f"bifpn{r}"
        p4_td = _fuse([p4, _up(p5, p4, f"{n}_up5")], channels, f"{n}_p4_td")
        p3 = _fuse([p3, _up(p4_td, p3, f"{n}_up4")], channels, f"{n}_p3_out")
        p4 = _fuse([p4, p4_td, _down(p3, f"{n}_down3")], channels, f"{n}_p4_out")
        p5 = _fuse([p5, _down(p4, f"{n}_down4")], channels, f"{n}_p5_out")
    return {"C3": p3, "C4": p4, "C5": p5}
