"""Raster drawing of predictions on images (PIL): boxes with labels, blended class masks."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mtl_tf.data.example import IGNORE, rel_yxyx_to_pixel_xyxy


def class_colours(n: int) -> np.ndarray:
    """A fixed, distinct uint8 RGB colour per class index."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return (np.array([cmap(i % cmap.N)[:3] for i in range(n)]) * 255).astype(np.uint8)


def blend_mask(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.45) -> np.ndarray:
    """Blend a class-colour layer over the labelled pixels of `image` (IGNORE pixels untouched)."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    out = image.astype(np.float32)
    known = mask != IGNORE
    colours = class_colours(num_classes).astype(np.float32)
    out[known] = (1 - alpha) * out[known] + alpha * colours[mask[known]]
    return out.round().astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes, classes, class_names: list[str], scores=None) -> np.ndarray:
    """Draw normalized yxyx `boxes` with class names (and scores) on a copy of `image`."""
    h, w = image.shape[:2]
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, min(h, w) // 32))
    colours = class_colours(len(class_names))
    width = max(1, round(min(h, w) / 200))
    for j, ((x0, y0, x1, y1), c) in enumerate(zip(rel_yxyx_to_pixel_xyxy(boxes, h, w), classes)):
        colour = tuple(int(v) for v in colours[int(c)])
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        text = class_names[int(c)] + (f" {scores[j]:.2f}" if scores is not None else "")
        tx0, ty0, tx1, ty1 = draw.textbbox((x0, y0), text, font=font)
        draw.rectangle([tx0, ty0 - (ty1 - ty0), tx1, ty0], fill=colour)
        draw.text((x0, y0 - (ty1 - ty0)), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def enlarge(image: np.ndarray, labels: dict, min_side: int) -> tuple[np.ndarray, dict]:
    """`image` and its mask label repeated by a whole factor so the short side reaches
    `min_side` (pixels stay crisp, mask ids stay ids); normalized boxes need no change."""
    factor = int(np.ceil(min_side / min(image.shape[:2])))
    if factor <= 1:
        return image, labels
    grow = lambda a: np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)  # noqa: E731
    if "mask" in labels:
        labels = {**labels, "mask": grow(np.asarray(labels["mask"]))}
    return grow(image), labels


def render_all(image: np.ndarray, labels: dict, tasks: dict, min_side: int = 0) -> np.ndarray:
    """Every task's labels drawn on one image (masks first, boxes on top); small images are
    first enlarged to `min_side` so labels stay legible."""
    image, labels = enlarge(image, labels, min_side)
    ordered = sorted(tasks.values(), key=lambda t: 0 if "mask" in t.example_spec() else 1)
    for task in ordered:
        if labels.get(task.has_key, True):
            image = task.render(image, labels)
    return image
