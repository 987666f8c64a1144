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


def enlarge(image: np.ndarray, labels: dict, tasks: dict, min_side: int) -> tuple[np.ndarray, dict]:
    """`image` and its per-task label maps repeated by a whole factor so the short side reaches
    `min_side` (pixels stay crisp, ids stay ids); normalized boxes need no change."""
    factor = int(np.ceil(min_side / min(image.shape[:2])))
    if factor <= 1:
        return image, labels
    grow = lambda a: np.repeat(np.repeat(np.asarray(a), factor, axis=0), factor, axis=1)  # noqa: E731
    grown = {}
    for name, own in labels.items():
        spec = tasks[name].label_spec() if name in tasks else {}
        grown[name] = None if own is None else {
            k: grow(v) if k in spec and spec[k].geometry == "map" else v for k, v in own.items()
        }
    return grow(image), grown


def render_all(image: np.ndarray, labels: dict, tasks: dict, min_side: int = 0) -> np.ndarray:
    """Every task's labels drawn on one image, in the tasks' `draw_order` (dense maps first,
    boxes on top). `labels`: {task: plain-named labels, or None where the task has no label};
    small images are first enlarged to `min_side` so labels stay legible."""
    image, labels = enlarge(image, labels, tasks, min_side)
    for name, task in sorted(tasks.items(), key=lambda item: item[1].draw_order):
        if labels.get(name) is not None:
            image = task.render(image, labels[name])
    return image
