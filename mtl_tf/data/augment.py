"""Training augmentation that moves the image and every task's labels together (the recipe's
`data.augment`).

Order (as in SSD): colour distortion, zoom-out (expand), IoU-constrained crop, resize to the
input size, flips. Expand and crop are composed into one window in the source image's normalized
coordinates (it may reach outside the image), so the image is resampled once: bilinear for the
image (canvas filled with `expand.fill`), and each label map as its task's spec says (nearest or
bilinear, canvas filled with the spec's `fill`: 255 = ignore for masks). Boxes are mapped into the
window, clipped to it, and dropped when nothing (or at most `crop.min_visible` of their area) is
left; the task's per-box keys follow. Flips mirror maps (negating the channels the spec names,
like surface normals' x) and boxes. What moves how comes from the tasks' label specs
(`label_layout`), never from key names. has_<task> flags are never touched.

Randomness is stateless: each example gets its own seed from the pipeline, so a seed fixes the
result even under a parallel map.

Why not Keras 3's box/mask-aware layers (RandomCrop, RandomZoom, RandomFlip, ...): checked with
keras 3.15 in tf.data, RandomCrop keeps boxes that leave the crop (and, unbatched, shifts x by the
vertical offset), RandomZoom pads masks with the image's fill value (0, a real class, not 255),
neither offers SSD's IoU-constrained crop, and their stateful SeedGenerator gives different
results from run to run under a parallel map even with a seed.
"""

from __future__ import annotations

import tensorflow as tf

from dataclasses import dataclass, field

from mtl_tf.data.labels import LabelKey
from mtl_tf.tasks.detection.boxes import iou_matrix

IDENTITY = (0.0, 0.0, 1.0, 1.0)  # a window (ymin, xmin, ymax, xmax) covering the whole image


@dataclass(frozen=True)
class TaskLayout:
    """One task's example keys by geometry: label maps (with their specs), its boxes key and
    the per-box keys that follow it."""

    maps: dict = field(default_factory=dict)  # example key -> LabelKey
    boxes: str | None = None
    per_box: tuple = ()


def label_layout(tasks: dict) -> tuple[TaskLayout, ...]:
    """How each task's example keys move with the image, from the tasks' label specs."""
    layouts = []
    for task in tasks.values():
        spec: dict[str, LabelKey] = task.label_spec()
        boxes = [task.key(k) for k, v in spec.items() if v.geometry == "boxes"]
        layouts.append(TaskLayout(
            maps={task.key(k): v for k, v in spec.items() if v.geometry == "map"},
            boxes=boxes[0] if boxes else None,
            per_box=tuple(task.key(k) for k, v in spec.items() if v.geometry == "per_box"),
        ))
    return tuple(layouts)


def _box_keys(example: dict, layout) -> list[str]:
    return [t.boxes for t in layout if t.boxes is not None and t.boxes in example]


# ---------------------------------------------------------------- flips


def _flip(example: dict, axis: int, layout) -> dict:
    """Mirror the image and every task's maps and boxes together along `axis` (0: upside down,
    1: left-right); map channels the spec names for this axis are negated."""
    out = dict(example)
    out["image"] = tf.reverse(example["image"], axis=[axis])
    for task in layout:
        for key, spec in task.maps.items():
            if key not in example:
                continue
            value = tf.reverse(example[key], axis=[axis])
            channel = spec.negated_channel(axis)
            if channel is not None:
                sign = [1.0] * spec.shape[-1]
                sign[channel] = -1.0
                value = value * tf.constant(sign, value.dtype)
            out[key] = value
    for key in _box_keys(example, layout):
        y0, x0, y1, x1 = tf.unstack(example[key], 4, axis=1)
        flipped = [y0, 1.0 - x1, y1, 1.0 - x0] if axis == 1 else [1.0 - y1, x0, 1.0 - y0, x1]
        out[key] = tf.stack(flipped, axis=1)
    return out


def horizontal_flip(example: dict, layout) -> dict:
    """Mirror the image and the labels `layout` describes left-right together."""
    return _flip(example, 1, layout)


def vertical_flip(example: dict, layout) -> dict:
    """Mirror the image and the labels `layout` describes upside down together."""
    return _flip(example, 0, layout)


def _maybe(flip, example: dict, seed, layout) -> dict:
    return tf.cond(tf.random.stateless_uniform([], seed) < 0.5, lambda: flip(example, layout), lambda: dict(example))


# ---------------------------------------------------------------- colour


def distort_color(image: tf.Tensor, seed, cfg) -> tf.Tensor:
    """With probability cfg.probability: hue shift, saturation and value gains (in HSV), then
    contrast. uint8 in, uint8 out."""
    s = tf.random.experimental.stateless_split(seed, 5)

    def distort():
        hsv = tf.image.rgb_to_hsv(tf.cast(image, tf.float32) / 255.0)
        h, sat, val = tf.unstack(hsv, axis=-1)
        h = tf.math.floormod(h + tf.random.stateless_uniform([], s[1], -cfg.hue, cfg.hue), 1.0)
        sat = tf.clip_by_value(sat * tf.random.stateless_uniform([], s[2], *cfg.saturation), 0.0, 1.0)
        val = tf.clip_by_value(val * tf.random.stateless_uniform([], s[3], *cfg.value), 0.0, 1.0)
        rgb = tf.image.hsv_to_rgb(tf.stack([h, sat, val], axis=-1))
        mean = tf.reduce_mean(rgb, axis=[0, 1], keepdims=True)
        rgb = (rgb - mean) * tf.random.stateless_uniform([], s[4], *cfg.contrast) + mean
        return tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), tf.uint8)

    apply = tf.random.stateless_uniform([], s[0]) < cfg.probability
    return tf.cond(apply, distort, lambda: tf.identity(image))


# ---------------------------------------------------------------- windows


def boxes_in_window(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Boxes (normalized to the image) in the normalized coordinates of `window`."""
    offset = tf.stack([window[0], window[1], window[0], window[1]])
    scale = tf.stack([window[2] - window[0], window[3] - window[1]] * 2)
    return (boxes - offset) / scale


def compose(outer: tf.Tensor, inner: tf.Tensor) -> tf.Tensor:
    """The window `inner` (in `outer`'s normalized coordinates) in the image's coordinates."""
    size = tf.stack([outer[2] - outer[0], outer[3] - outer[1]] * 2)
    return tf.stack([outer[0], outer[1], outer[0], outer[1]]) + inner * size


def expand_window(seed, cfg) -> tf.Tensor:
    """SSD zoom-out: a canvas `ratio` times the image (ratio ~ U(1, max_ratio)) with the image at a
    random spot, as a window in the image's coordinates (it reaches outside [0, 1])."""
    s = tf.random.experimental.stateless_split(seed, 3)
    ratio = tf.random.stateless_uniform([], s[1], 1.0, cfg.max_ratio)
    top, left = tf.unstack(tf.random.stateless_uniform([2], s[2]) * (ratio - 1.0))
    window = tf.stack([-top, -left, ratio - top, ratio - left])
    apply = tf.random.stateless_uniform([], s[0]) < cfg.probability
    return tf.where(apply, window, tf.constant(IDENTITY))


def crop_window(seed, boxes: tf.Tensor, aspect: tf.Tensor, cfg) -> tf.Tensor:
    """SSD IoU-constrained crop as a window in the current canvas' normalized coordinates.

    A threshold t is drawn from cfg.min_ious; of cfg.trials candidates (sides in
    [min_scale, 1], pixel aspect within max_aspect), the first is kept in which some box has
    IoU >= t with the crop and some box centre lies inside. Without boxes any candidate does;
    with no valid candidate (or with probability 1 - cfg.probability) the canvas is kept whole.
    `aspect` is the canvas' height / width in pixels.
    """
    s = tf.random.experimental.stateless_split(seed, 4)
    thresholds = tf.constant(cfg.min_ious, tf.float32)
    t = thresholds[tf.random.stateless_uniform([], s[1], 0, len(cfg.min_ious), dtype=tf.int32)]
    size = tf.random.stateless_uniform([cfg.trials, 2], s[2], cfg.min_scale, 1.0)
    corner = tf.random.stateless_uniform([cfg.trials, 2], s[3]) * (1.0 - size)
    windows = tf.concat([corner, corner + size], axis=1)
    pixel_aspect = size[:, 0] / size[:, 1] * aspect
    valid = (pixel_aspect <= cfg.max_aspect) & (pixel_aspect >= 1.0 / cfg.max_aspect)

    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    inside = tf.reduce_all(
        (centres[None] >= windows[:, None, :2]) & (centres[None] <= windows[:, None, 2:]), axis=-1
    )
    overlap = tf.reduce_any(iou_matrix(windows, boxes) >= t, axis=1) & tf.reduce_any(inside, axis=1)
    valid &= overlap | (tf.shape(boxes)[0] == 0)
    found = tf.reduce_any(valid) & (tf.random.stateless_uniform([], s[0]) < cfg.probability)
    first = tf.argmax(tf.cast(valid, tf.int32))
    return tf.where(found, windows[first], tf.constant(IDENTITY))


def clip_boxes(example: dict, window: tf.Tensor, layout, min_visible: float = 0.0) -> dict:
    """Every task's boxes mapped into `window`, clipped to it; boxes left with no area (or at
    most `min_visible` of it) are dropped together with the task's per-box keys."""
    out = dict(example)
    for task in layout:
        if task.boxes is None or task.boxes not in example:
            continue
        boxes = boxes_in_window(example[task.boxes], window)
        clipped = tf.clip_by_value(boxes, 0.0, 1.0)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        kept_h, kept_w = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
        keep = (kept_h > 0) & (kept_w > 0) & (kept_h * kept_w > min_visible * area)
        out[task.boxes] = tf.boolean_mask(clipped, keep)
        for key in task.per_box:
            if key in example:
                out[key] = tf.boolean_mask(example[key], keep)
    return out


# ---------------------------------------------------------------- resampling


def _crop_and_resize_box(window: tf.Tensor, source_size, out_size) -> tf.Tensor:
    """`window` (pixel-edge convention: 0 and 1 are the outer edges of the image) as the box of
    tf.image.crop_and_resize (which maps box corners to the first and last pixel centres), so
    that output pixel centres sample the window at their true positions (half-pixel centres)."""
    corners = []
    for axis in (0, 1):
        n_in, n_out = tf.cast(source_size[axis], tf.float32), float(out_size[axis])
        step = (window[axis + 2] - window[axis]) * n_in / n_out
        first = window[axis] * n_in + 0.5 * step - 0.5
        corners.append((first / (n_in - 1.0), (first + step * (n_out - 1.0)) / (n_in - 1.0)))
    (y0, y1), (x0, x1) = corners
    return tf.stack([y0, x0, y1, x1])[None]


def resample(example: dict, window: tf.Tensor, out_size, fill, layout) -> dict:
    """Image (bilinear, outside = `fill`) and every task's label maps (as their spec says,
    outside = the spec's fill) cut to `window` and resized to `out_size`."""
    out = dict(example)
    image = example["image"]
    box = _crop_and_resize_box(window, tf.shape(image)[:2], out_size)
    fill = tf.constant(fill, tf.float32)
    shifted = tf.cast(image, tf.float32)[None] - fill  # the canvas becomes `fill`, not a scalar
    resized = tf.image.crop_and_resize(shifted, box, [0], out_size, extrapolation_value=0.0)[0] + fill
    out["image"] = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
    for task in layout:
        for key, spec in task.maps.items():
            if key in example:
                out[key] = _resample_map(example[key], spec, box, out_size)
    return out


def _resample_map(value: tf.Tensor, spec: LabelKey, box: tf.Tensor, out_size) -> tf.Tensor:
    """A label map [H, W] or [H, W, C] through tf.image.crop_and_resize, back in its dtype."""
    planar = len(spec.shape) == 2
    stacked = tf.cast(value, tf.float32)[None, ..., None] if planar else tf.cast(value, tf.float32)[None]
    method = "nearest" if spec.resize == "nearest" else "bilinear"
    resized = tf.image.crop_and_resize(stacked, box, [0], out_size, method=method, extrapolation_value=float(spec.fill))[0]
    resized = resized[..., 0] if planar else resized
    dtype = tf.as_dtype(spec.dtype)
    if dtype.is_integer:
        return tf.cast(tf.round(tf.clip_by_value(resized, dtype.min, dtype.max)), dtype)
    if dtype == tf.bool:
        return resized > 0.5
    return tf.cast(resized, dtype)


# ---------------------------------------------------------------- all together


def augment(example: dict, seed: tf.Tensor, cfg, out_size, layout) -> dict:
    """One example augmented as `cfg` (the recipe's data.augment) says, resized to `out_size`;
    `layout` (see `label_layout`) says how the tasks' labels move."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    example = dict(example)
    if cfg.color is not None:
        example["image"] = distort_color(example["image"], seeds[0], cfg.color)
    if cfg.expand is not None or cfg.crop is not None:
        window = tf.constant(IDENTITY)
        if cfg.expand is not None:
            window = expand_window(seeds[1], cfg.expand)
        min_visible = 0.0
        if cfg.crop is not None:
            keys = _box_keys(example, layout)
            all_boxes = tf.concat([tf.reshape(example[k], [-1, 4]) for k in keys], 0) if keys else tf.zeros([0, 4])
            boxes = boxes_in_window(all_boxes, window)
            image_shape = tf.cast(tf.shape(example["image"])[:2], tf.float32)
            aspect = image_shape[0] * (window[2] - window[0]) / (image_shape[1] * (window[3] - window[1]))
            window = compose(window, crop_window(seeds[2], boxes, aspect, cfg.crop))
            min_visible = cfg.crop.min_visible
        fill = cfg.expand.fill if cfg.expand is not None else (0, 0, 0)
        example = resample(example, window, out_size, fill, layout)
        example = clip_boxes(example, window, layout, min_visible)
    if cfg.horizontal_flip:
        example = _maybe(horizontal_flip, example, seeds[3], layout)
    if cfg.vertical_flip:
        example = _maybe(vertical_flip, example, seeds[4], layout)
    return example
