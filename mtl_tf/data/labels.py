"""Label specs: how each label key of a task type is stored and follows the image's geometry.

A task type declares its keys as `LabelKey`s (`Task.label_spec`); everything that moves or
stores examples (resizing in the reader, augmentation, the TFRecord cache, batching, the
placeholder of a missing label) asks the spec instead of switching on key names.

Geometry kinds:
  map     a per-pixel map [H, W] or [H, W, C] that is resampled with the image (`resize`:
          nearest or bilinear), filled with `fill` outside it (crop padding, zoom-out canvas),
          mirrored by flips, with channel `negate_on_flip[axis]` negated (surface normals' x)
  boxes   normalized (ymin, xmin, ymax, xmax) [N, 4]: mapped into crops, clipped, dropped
          when nothing is left, mirrored by flips
  per_box one value per box [N]: follows what happens to the task's boxes (drops)
  image   image-level values (a class id, per-label flags): untouched by geometry
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

Geometry = Literal["map", "boxes", "per_box", "image"]


@dataclass(frozen=True)
class LabelKey:
    """One label key of a task type (see the module docstring)."""

    dtype: str  # numpy / TensorFlow dtype name: "uint8", "float32", "int32", "bool"
    shape: tuple  # per example; None where it varies (the map's H, W; the number of boxes)
    geometry: Geometry = "image"
    resize: Literal["nearest", "bilinear"] = "nearest"
    fill: float = 0  # map: value outside the image; every kind: the placeholder value
    pad: float = 0  # value that pads the key when examples are batched (per_box: the padding rows)
    negate_on_flip: tuple = field(default=())  # (axis, channel) pairs: axis 0 vertical, 1 horizontal

    def placeholder(self, image_size) -> np.ndarray:
        """The value of this key in an example that lacks the task's labels."""
        if self.geometry == "map":
            shape = (*image_size, *self.shape[2:])
        elif self.geometry in ("boxes", "per_box"):
            shape = (0, *self.shape[1:])
        else:
            shape = self.shape
        return np.full(shape, self.fill, np.dtype(self.dtype))

    def negated_channel(self, axis: int) -> int | None:
        return dict(self.negate_on_flip).get(axis)


def resize_map(array: np.ndarray, size, method: str) -> np.ndarray:
    """A label map [H, W] or [H, W, C] resized to `size` (height, width) by `method`."""
    array = np.asarray(array)
    height, width = size
    if array.shape[:2] == (height, width):
        return np.ascontiguousarray(array)
    if array.dtype == np.uint8 and (array.ndim == 2 or array.shape[2] in (3, 4)):
        resample = Image.NEAREST if method == "nearest" else Image.BILINEAR
        return np.asarray(Image.fromarray(array).resize((width, height), resample))
    import cv2

    interpolation = cv2.INTER_NEAREST if method == "nearest" else cv2.INTER_LINEAR
    resized = cv2.resize(array, (width, height), interpolation=interpolation)
    return resized.reshape(height, width, *array.shape[2:])


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """An RGB image resized bilinearly to `size` (height, width)."""
    return resize_map(image, size, "bilinear")
