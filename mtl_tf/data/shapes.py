"""Built-in synthetic shapes: classes that differ by SHAPE, not colour (no download, deterministic).

Each image is a textured background in random colours (smooth blotches, stripes and small
distractor blobs) with a few glyphs on it: circle, square, triangle, star, cross, ring, hexagon,
arrow, each in a random colour, size and rotation. Colour says nothing about the class; only
the outline does. Glyphs never overlap, so every box is the tight bounding box of its glyph's
drawn pixels and the mask (0 background, class + 1 on the glyph's pixels; a ring's hole is
background) agrees with the boxes pixel for pixel.

Use it like `synthetic_aerial`: `{type: synthetic_shapes, num_images: 512, seed: 1, labels:
boxes}` with `labels: both | boxes | masks | none`.

Every image also carries two image-level labels derived from its glyphs (no extra drawing): the
class of its largest glyph (kind `label`, for a `classification` task; with `max_objects: 1` the
one glyph's class) and the presence of each class (kind `labels`, for a `multilabel` task).
`targets: {label: null}` leaves them unused.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field

from mtl_tf.config import SourceSection
from mtl_tf.data.example import empty_boxes
from mtl_tf.data.synthetic import _smooth_noise

SHAPE_CLASSES = ["circle", "square", "triangle", "star", "cross", "ring", "hexagon", "arrow"]
MASK_CLASSES = ["background", *SHAPE_CLASSES]


class SyntheticShapesSource:
    """A source of synthetic glyph images, indexable and deterministic by (seed, index)."""

    class Config(SourceSection):
        type: Literal["synthetic_shapes"] = "synthetic_shapes"
        num_images: int = Field(ge=1)
        seed: int = 0
        labels: Literal["both", "boxes", "masks", "none"] = Field(
            "both", description="which of boxes and masks the examples carry (the others are flagged missing; "
            "the image-level labels are always there)"
        )
        max_objects: int = Field(5, ge=1, description="glyphs per image: 1 to max_objects")
        min_size: float = Field(0.12, gt=0, le=1, description="glyph diameter, fraction of the short side")
        max_size: float = Field(0.35, gt=0, le=1)

        def label_kinds(self) -> list[str]:
            kinds = {"both": ["boxes", "mask"], "boxes": ["boxes"], "masks": ["mask"], "none": []}[self.labels]
            return [*kinds, "label", "labels"]

        def class_names(self, kind: str) -> list[str]:
            names = {"boxes": SHAPE_CLASSES, "mask": MASK_CLASSES, "label": SHAPE_CLASSES, "labels": SHAPE_CLASSES}
            return names[kind] if kind in self.label_kinds() else []

    def __init__(self, config: Config, image_size: tuple[int, int]):
        if config.min_size > config.max_size:
            raise ValueError(f"synthetic_shapes: min_size {config.min_size} exceeds max_size {config.max_size}")
        self.config = config
        self.image_size = tuple(image_size)

    def __len__(self) -> int:
        return self.config.num_images

    def __getitem__(self, index: int) -> dict:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index, 7])
        image, mask, boxes, classes = draw_shapes(rng, *self.image_size, cfg.max_objects, cfg.min_size, cfg.max_size)
        example = {"image": image}
        if "boxes" in cfg.label_kinds():
            example.update(boxes=boxes, box_classes=classes)
        if "mask" in cfg.label_kinds():
            example["mask"] = mask
        example.update(label=largest_glyph(mask), labels=glyphs_present(classes))
        return example

    def describe(self) -> str:
        return f"synthetic_shapes(seed={self.config.seed}, labels={self.config.labels})"


def largest_glyph(mask: np.ndarray) -> np.int32:
    """The class of the glyph class covering most pixels of `mask` (the lowest class on a tie)."""
    pixels = np.bincount(mask.ravel(), minlength=len(MASK_CLASSES))[1:]
    if not pixels.any():
        raise ValueError("synthetic_shapes: an image without a glyph has no image label")
    return np.int32(np.argmax(pixels))


def glyphs_present(classes: np.ndarray) -> np.ndarray:
    """int8 [8]: 1 where the image holds a glyph of that class, else 0."""
    return (np.bincount(classes, minlength=len(SHAPE_CLASSES)) > 0).astype(np.int8)


def glyph_outline(kind: str, cy: float, cx: float, radius: float, angle: float) -> list | tuple:
    """Vertices [(x, y), ...] of a polygon glyph, or ("ellipse", inner radius share) for round ones."""
    if kind == "circle":
        return ("ellipse", 0.0)
    if kind == "ring":
        return ("ellipse", 0.55)
    if kind == "square":
        pts = [(np.cos(a), np.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]
    elif kind == "triangle":
        pts = [(np.cos(a), np.sin(a)) for a in -np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
    elif kind == "hexagon":
        pts = [(np.cos(a), np.sin(a)) for a in np.arange(6) * np.pi / 3]
    elif kind == "star":
        pts = [(r * np.cos(a), r * np.sin(a))
               for i, a in enumerate(-np.pi / 2 + np.arange(10) * np.pi / 5) for r in [1.0 if i % 2 == 0 else 0.42]]
    elif kind == "cross":
        t = 0.3
        pts = [(t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t), (-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t)]
    elif kind == "arrow":
        pts = [(1, 0), (0.1, 0.75), (0.1, 0.3), (-1, 0.3), (-1, -0.3), (0.1, -0.3), (0.1, -0.75)]
    else:
        raise ValueError(f"unknown glyph {kind!r}; choose one of {SHAPE_CLASSES}")
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + radius * (c * x - s * y), cy + radius * (s * x + c * y)) for x, y in pts]


def glyph_mask(kind: str, shape, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    """bool [H, W]: the pixels of one glyph."""
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    outline = glyph_outline(kind, cy, cx, radius, angle)
    if isinstance(outline, tuple):
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
        inner = outline[1] * radius
        if inner:
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    else:
        draw.polygon(outline, fill=1)
    return np.asarray(canvas, bool)


def _background(rng, height: int, width: int) -> np.ndarray:
    """float [H, W, 3]: two random colours blended by smooth noise, random stripes, speckle and blobs."""
    a, b = rng.uniform(0, 255, (2, 3))
    blend = _smooth_noise(rng, (height, width), cells=int(rng.integers(2, 6)))[..., None]
    image = a * blend + b * (1 - blend)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
    image += rng.uniform(0, 25) * stripes[..., None]
    for _ in range(rng.integers(2, 8)):  # small distractor blobs of glyph-like colours
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(1.0, 0.02 * min(height, width) + 1.5)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return image + rng.normal(0, 6, image.shape)


def _contrasting_colour(rng, around: np.ndarray) -> np.ndarray:
    """A random colour at least 80 (RGB distance) from the mean of `around`."""
    mean = around.reshape(-1, 3).mean(0)
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - mean) > 80:
            return colour
    return 255.0 - mean


def draw_shapes(rng, height: int, width: int, max_objects: int = 5, min_size: float = 0.12, max_size: float = 0.35):
    """One image: (image uint8 [H, W, 3], mask uint8 [H, W], boxes float32 [N, 4] rel yxyx, classes int32 [N])."""
    image = _background(rng, height, width)
    mask = np.zeros((height, width), np.uint8)
    taken = np.zeros((height, width), bool)
    side = min(height, width)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        for _attempt in range(20):  # place it where it overlaps nothing (one pixel of margin)
            radius = rng.uniform(min_size, max_size) * side / 2
            cy, cx = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
            pixels = glyph_mask(SHAPE_CLASSES[cls], (height, width), cy, cx, radius, rng.uniform(0, 2 * np.pi))
            rows, cols = np.nonzero(pixels)
            if rows.size < 6:
                continue
            y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            if taken[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1].any():
                continue
            taken[y0:y1, x0:x1] = True
            colour = _contrasting_colour(rng, image[y0:y1, x0:x1])
            shade = 1 + 0.15 * (_smooth_noise(rng, (y1 - y0, x1 - x0), cells=2) - 0.5)
            patch = image[y0:y1, x0:x1]
            inside = pixels[y0:y1, x0:x1]
            patch[inside] = (colour[None, None, :] * shade[..., None])[inside]
            mask[pixels] = cls + 1
            boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
            classes.append(cls)
            break
    image = np.clip(image, 0, 255).astype(np.uint8)
    if not boxes:
        rel, cls_ids = empty_boxes()
        return image, mask, rel, cls_ids
    return image, mask, np.asarray(boxes, np.float32), np.asarray(classes, np.int32)
