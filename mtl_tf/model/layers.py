"""Small custom layers, registered so `.keras` files reload without extra arguments."""

from __future__ import annotations

import keras
from keras import ops

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def image_input(image_size) -> keras.KerasTensor:
    """The image input of every model: float32 [B, H, W, 3] holding 0..255 pixels.

    Float, not uint8: uint8 batches are cast on entry all the same, and an int8-input export
    feeds it from its integer input directly (a uint8 Input would put casts between the
    artifact's input and the first convolution).
    """
    return keras.Input((*image_size, 3), dtype="float32", name="image")


@keras.saving.register_keras_serializable(package="mtl_tf")
class TapCopy(keras.layers.Layer):
    """A backbone tap as the heads see it: a copy (one identity op), so the training engine can
    take each head's gradient with respect to its own inputs, apart from the trunk's paths."""

    def call(self, x):
        return ops.copy(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="mtl_tf")
class ImageNormalization(keras.layers.Layer):
    """uint8 (or float 0..255) RGB images -> the input range a backbone was trained with.

    modes: "tf" scales to [-1, 1]; "caffe" flips to BGR and subtracts the ImageNet mean (ResNet-50);
    "raw" only casts (backbones that normalize inside, like MobileNetV3).
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "caffe", "raw"):
            raise ValueError(f"mode must be 'tf', 'caffe' or 'raw'. Received: mode={mode!r}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, "float32")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_BGR_MEAN, "float32")
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="mtl_tf")
class L2Normalization(keras.layers.Layer):
    """SSD's channel-wise L2 normalization with a learned per-channel scale (init 20)."""

    def __init__(self, scale_init: float = 20.0, **kwargs):
        super().__init__(**kwargs)
        self.scale_init = scale_init

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.scale_init),
        )

    def call(self, x):
        # mean(x * x) * C, not sum(x ** 2): TFLite's converter would fuse the sum form into its
        # L2_NORMALIZATION op, which XNNPACK runs in neither float nor int8; these ops it runs.
        channels = float(x.shape[-1])
        return x * ops.rsqrt(ops.mean(x * x, axis=-1, keepdims=True) * channels + 1e-10) * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale_init": self.scale_init}


def conv_bn_relu(
    x, filters: int, kernel: int, strides: int = 1, name: str = "", relu: bool = True, relu_max: float | None = None
):
    """Conv (no bias) + BatchNorm (+ ReLU, capped at `relu_max` if given: ReLU6 with 6), the
    building block of our own stages and heads."""
    x = keras.layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return _bn_relu(x, name, relu, relu_max)


def depthwise_bn_relu(x, kernel: int = 3, strides: int = 1, name: str = "", relu_max: float | None = 6.0):
    """Depthwise conv (no bias) + BatchNorm + ReLU6 (MobileNetV2 / SSDLite)."""
    x = keras.layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    return _bn_relu(x, name, True, relu_max)


def _bn_relu(x, name: str, relu: bool, relu_max: float | None):
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(max_value=relu_max, name=f"{name}_relu")(x) if relu else x


def residual_block(x, filters: int, strides: int, name: str, bottleneck: bool = False):
    """A ResNet block (basic or bottleneck) with a projection shortcut when the shape changes."""
    shortcut = x
    if strides != 1:
        # ResNet-D shortcut: average-pool, then project. Besides keeping every input pixel, it
        # avoids strided 1x1 convolutions, whose oneDNN backward pass in TensorFlow 2.21 corrupts
        # memory when the batch size changes between calls.
        shortcut = keras.layers.AveragePooling2D(strides, padding="same", name=f"{name}_pool")(shortcut)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn_relu(shortcut, filters, 1, name=f"{name}_proj", relu=False)
    if bottleneck:
        y = conv_bn_relu(x, filters // 4, 1, name=f"{name}_a")
        y = conv_bn_relu(y, filters // 4, 3, strides, name=f"{name}_b")
        y = conv_bn_relu(y, filters, 1, name=f"{name}_c", relu=False)
    else:
        y = conv_bn_relu(x, filters, 3, strides, name=f"{name}_a")
        y = conv_bn_relu(y, filters, 3, name=f"{name}_b", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)
