"""SSD default boxes: one set per feature level, scales linear in the level index."""

from __future__ import annotations

import math

import numpy as np

# Strides of the backbone taps the detector reads; extra levels each halve the previous one.
TAP_STRIDES = (8, 16, 32)


def feature_sizes(image_size: tuple[int, int], num_levels: int) -> list[tuple[int, int]]:
    """(height, width) of every prediction level for an input of `image_size` ('same' padding)."""
    h, w = image_size
    sizes = [(math.ceil(h / s), math.ceil(w / s)) for s in TAP_STRIDES]
    while len(sizes) < num_levels:
        ph, pw = sizes[-1]
        sizes.append((math.ceil(ph / 2), math.ceil(pw / 2)))
    return sizes[:num_levels]


def level_scales(num_levels: int, min_scale: float, max_scale: float) -> list[float]:
    """SSD scales s_k = s_min + (s_max - s_min) k / (m - 1), plus s_m = 1 for the last extra box."""
    if num_levels == 1:
        return [min_scale, 1.0]
    step = (max_scale - min_scale) / (num_levels - 1)
    return [min_scale + step * k for k in range(num_levels)] + [1.0]


def boxes_per_location(aspect_ratios: list[float]) -> int:
    """One box per aspect ratio plus SSD's extra ratio-1 box at scale sqrt(s_k s_k+1)."""
    return len(aspect_ratios) + 1


def generate_anchors(
    image_size: tuple[int, int],
    num_levels: int,
    min_scale: float,
    max_scale: float,
    aspect_ratios: list[list[float]],
) -> np.ndarray:
    """Anchors as normalized (cy, cx, h, w), float32 [A, 4].

    Order matches the head's reshape: level, then row, then column, then box within a location.
    Scales are fractions of the shorter image side, so anchors stay square on non-square inputs.
    """
    h, w = image_size
    side = min(h, w)
    scales = level_scales(num_levels, min_scale, max_scale)
    out = []
    for k, (fh, fw) in enumerate(feature_sizes(image_size, num_levels)):
        shapes = [(scales[k] / math.sqrt(r), scales[k] * math.sqrt(r)) for r in aspect_ratios[k]]
        extra = math.sqrt(scales[k] * scales[k + 1])
        shapes.append((extra, extra))
        shapes = np.array(shapes, np.float32) * np.array([side / h, side / w], np.float32)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        centres = np.stack([cy, cx], -1).reshape(-1, 1, 2)
        centres = np.broadcast_to(centres, (fh * fw, len(shapes), 2))
        sizes = np.broadcast_to(shapes[None], (fh * fw, len(shapes), 2))
        out.append(np.concatenate([centres, sizes], -1).reshape(-1, 4))
    return np.concatenate(out, 0).astype(np.float32)


def centre_to_corners(anchors: np.ndarray) -> np.ndarray:
    """(cy, cx, h, w) -> (ymin, xmin, ymax, xmax)."""
    cy, cx, h, w = np.split(anchors, 4, axis=-1)
    return np.concatenate([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1)
