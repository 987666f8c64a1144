"""Backbones by name, all with one contract: taps C3, C4, C5 at strides 8, 16, 32.

A `Backbone` is split before its last stage: `lower` maps uint8 images to {"C3", "C4"} and
`last_stage()` returns a model C4 -> C5. Tasks share one last stage, or each gets its own copy
(`split_last_stage`), copies starting from the same weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras

from mtl_tf.model.layers import ImageNormalization, conv_bn_relu, image_input, residual_block

TAP_STRIDES = {"C3": 8, "C4": 16, "C5": 32}

# keras.applications layer names of the ResNet-50 taps (res3d, res4f, res5c in Caffe naming).
_RESNET50_TAPS = {"C3": "conv3_block4_out", "C4": "conv4_block6_out", "C5": "conv5_block3_out"}


@dataclass
class Backbone:
    lower: keras.Model  # image -> {"C3", "C4"}
    _last: keras.Model  # C4 -> C5
    _copies: int = 0

    def last_stage(self) -> keras.Model:
        """The last stage: the original on first call, then fresh copies with the same weights."""
        self._copies += 1
        if self._copies == 1:
            return self._last
        copy = keras.models.clone_model(self._last)
        copy.set_weights(self._last.get_weights())
        copy.name = f"{self._last.name}_{self._copies}"
        return copy

    @property
    def channels(self) -> dict[str, int]:
        return {
            "C3": self.lower.output["C3"].shape[-1],
            "C4": self.lower.output["C4"].shape[-1],
            "C5": self._last.output.shape[-1],
        }


# keras.applications EfficientNets by backbone name.
EFFICIENTNETS = {
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_b1": "EfficientNetB1",
    "efficientnet_b2": "EfficientNetB2",
    "efficientnet_b3": "EfficientNetB3",
    "efficientnet_v2_b0": "EfficientNetV2B0",
}


def build_backbone(name: str, image_size: tuple[int, int], weights: str | None = None, width: int = 16) -> Backbone:
    """Build a backbone by name: tiny | resnet50 | mobilenet_v3_small | mobilenet_v3_large |
    mobilenet_v3_small_minimalistic | mobilenet_v3_large_minimalistic | efficientnet_b0..b3 |
    efficientnet_v2_b0."""
    builders = {
        "tiny": lambda image: _tiny(image, width),
        "resnet50": lambda image: _resnet50(image, weights),
        "mobilenet_v3_small": lambda image: _mobilenet_v3(image, weights, large=False),
        "mobilenet_v3_large": lambda image: _mobilenet_v3(image, weights, large=True),
        "mobilenet_v3_small_minimalistic": lambda image: _mobilenet_v3(image, weights, large=False, minimalistic=True),
        "mobilenet_v3_large_minimalistic": lambda image: _mobilenet_v3(image, weights, large=True, minimalistic=True),
        **{n: (lambda image, cls=cls: _efficientnet(image, weights, cls)) for n, cls in EFFICIENTNETS.items()},
    }
    if name not in builders:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(builders)}")
    if name == "tiny" and weights not in (None, "none") and not Path(weights).exists():
        raise ValueError(f"the tiny backbone has no pretrained weights; use weights: null or a file path. Received: {weights!r}")
    image = image_input(image_size)
    taps = builders[name](image)
    full = keras.Model(image, taps, name=f"{name}_backbone")
    if weights not in (None, "none", "imagenet"):
        _load_weights(full, weights)
    lower = keras.Model(image, {"C3": taps["C3"], "C4": taps["C4"]}, name=f"{name}_lower")
    last = keras.Model(taps["C4"], taps["C5"], name=f"{name}_last_stage")
    return Backbone(lower, last)


def _load_weights(model: keras.Model, path: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        model.load_weights(path)
    except Exception as err:  # Keras raises several types for mismatched files
        raise ValueError(f"{path}: cannot load into backbone {model.name}: {err}") from None


# ---------------------------------------------------------------- architectures


def _tiny(image, width: int) -> dict:
    """A small ResNet-like network for tests and quick CPU runs (stages of basic blocks)."""
    x = ImageNormalization("tf", name="normalize")(image)
    x = conv_bn_relu(x, width, 3, 2, name="stem")  # stride 2
    x = residual_block(x, width, 2, name="stage2")  # 4
    c3 = residual_block(x, 2 * width, 2, name="stage3")  # 8
    c4 = residual_block(c3, 4 * width, 2, name="stage4")  # 16
    c5 = residual_block(c4, 8 * width, 2, name="stage5")  # 32
    return {"C3": c3, "C4": c4, "C5": c5}


def _resnet50(image, weights) -> dict:
    x = ImageNormalization("caffe", name="normalize")(image)
    net = keras.applications.ResNet50(
        include_top=False, weights="imagenet" if weights == "imagenet" else None, input_tensor=x
    )
    return {tap: net.get_layer(layer).output for tap, layer in _RESNET50_TAPS.items()}


def _mobilenet_v3(image, weights, large: bool, minimalistic: bool = False) -> dict:
    """MobileNetV3 taps: the last activation at strides 8 and 16 (as SSDLite taps the expansion
    of the next block), and the network's final feature map at stride 32.

    `minimalistic` (keras.applications' variant, ImageNet weights too): ReLU instead of
    hard-swish, no squeeze-excite, 3x3 depthwise kernels only; for int8 edge runtimes, where
    hard-swish and SE's hard-sigmoid/multiply often have no fast integer kernel (XNNPACK)."""
    x = ImageNormalization("raw", name="normalize")(image)
    cls = keras.applications.MobileNetV3Large if large else keras.applications.MobileNetV3Small
    net = cls(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_tensor=x,
        include_preprocessing=True,
        minimalistic=minimalistic,
    )
    height = image.shape[1]
    taps = {}
    for tap, stride in (("C3", 8), ("C4", 16)):
        size = -(-height // stride)
        candidates = [
            layer
            for layer in net.layers
            if len(layer.output.shape) == 4
            and layer.output.shape[1] == size
            and "squeeze_excite" not in layer.name
            and "pad" not in layer.name
        ]
        taps[tap] = candidates[-1].output
    taps["C5"] = net.output
    return taps


_BLOCK_OUTPUT = re.compile(r"^block\d+[a-z]_(add|project_bn)$")


def _efficientnet(image, weights, cls_name: str) -> dict:
    """EfficientNet / EfficientNetV2 taps: the output of the last block at strides 8 and 16 (the
    end of block 3 and of block 5, as EfficientDet's P3 and P4) and the network's final feature
    map (top conv) at stride 32. The networks normalize 0..255 pixels inside."""
    x = ImageNormalization("raw", name="normalize")(image)
    net = getattr(keras.applications, cls_name)(
        include_top=False, weights="imagenet" if weights == "imagenet" else None, input_tensor=x
    )
    taps = {}
    for tap in ("C3", "C4"):
        size = -(-image.shape[1] // TAP_STRIDES[tap])
        blocks = [layer for layer in net.layers if _BLOCK_OUTPUT.match(layer.name) and layer.output.shape[1] == size]
        taps[tap] = blocks[-1].output
    taps["C5"] = net.output
    return taps
