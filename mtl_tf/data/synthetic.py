"""Built-in synthetic top-down "aerial" scenes: no download, deterministic by seed.

Each scene is a textured ground with vegetation patches, sometimes a lake, a few roads and
buildings with shadows, small clutter, and small objects to detect. Surface classes make the
segmentation mask; objects sit on the surface and are boxed for detection. Object classes are
imbalanced on purpose (cars common, buses rare) and objects are a few pixels to a few tens of
pixels across, as in drone footage.

Dense labels (`dense: [depth, normals, boundaries, saliency]`), derived from the same scene
without touching its image, mask or boxes: a height map (buildings 4-14 m with a gabled roof
whose ridge runs where the rendered roof changes shade, vegetation 2-7 m following the trees'
smoothed brightness (`canopy_relief`), objects 1.5-3.2 m on the surface under them; ground,
roads and water 0) seen by a nadir camera `camera_height`
metres above the ground, so `depth` = camera_height - height; `normals` from the height map's
finite differences (x right, y down, z up; unlabelled across height steps); `boundaries` where a pixel's 4-neighbour lies in
another surface region or object box; `saliency` the objects' footprints (their boxes).

Besides boxes and masks, every scene carries two image-level labels derived from them (no extra
drawing, so images, boxes and masks are unchanged): its `scene` class (kind `label`: waterside,
urban or rural, by which surfaces cover it, see `scene_class`) and the presence of each object
class (kind `labels`, see `objects_present`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from mtl_tf.config import SourceSection
from mtl_tf.data.example import empty_boxes, pixel_xyxy_to_rel_yxyx

SURFACE_CLASSES = ["ground", "road", "building", "water", "vegetation"]
OBJECT_CLASSES = ["pedestrian", "cyclist", "car", "bus"]
SCENE_CLASSES = ["rural", "urban", "waterside"]
GROUND, ROAD, BUILDING, WATER, VEGETATION = range(5)
RURAL, URBAN, WATERSIDE = range(3)
# Scene rule: waterside from this share of water pixels; else urban from this share of road and
# building pixels; else rural (about a third each on the built-in scenes).
WATERSIDE_SHARE, URBAN_SHARE = 0.05, 0.28
PEDESTRIAN, CYCLIST, CAR, BUS = range(4)

# Share of each object class among the objects of a scene.
OBJECT_FREQUENCY = np.array([0.30, 0.15, 0.47, 0.08])
# Object size (length, width) as a fraction of the image side, before jitter.
OBJECT_SIZE = {PEDESTRIAN: (0.035, 0.035), CYCLIST: (0.06, 0.03), CAR: (0.09, 0.05), BUS: (0.19, 0.065)}

# Dense labels: the image's short side spans SCENE_METRES; heights in metres.
DENSE_KINDS = ("depth", "normals", "boundaries", "saliency")
SCENE_METRES = 48.0
OBJECT_HEIGHT = np.array([1.8, 1.7, 1.5, 3.2])  # pedestrian, cyclist, car, bus
EAVE_HEIGHT = (4.0, 14.0)
ROOF_PITCH = 0.45  # rise per metre from the eave to the ridge
VEGETATION_HEIGHT = (2.0, 7.0)
# A jump in height between neighbouring pixels above this is a step (no visible surface between):
# above any roof or canopy slope of the built-in scenes, below the lowest object (a car, 1.5 m).
STEP_METRES = 1.2


class SyntheticAerialSource:
    """A source of synthetic aerial scenes, indexable and deterministic by (seed, index)."""

    class Config(SourceSection):
        type: Literal["synthetic_aerial"] = "synthetic_aerial"
        num_images: int = Field(ge=1)
        seed: int = 0
        labels: Literal["both", "boxes", "masks", "none"] = Field(
            "both", description="which of boxes and masks the examples carry (the others are flagged missing; "
            "none: only the image-level and dense labels)"
        )
        max_objects: int = Field(12, ge=0)
        mask: Literal["surface", "objects"] = Field(
            "surface", description="what the mask labels: the surface classes (ground, road, ...), or the "
            "objects' footprints (background, then the object classes, each object's box filled)"
        )
        dense: list[Literal[DENSE_KINDS]] = Field(
            default_factory=list, description="dense label kinds the examples carry too: depth (metres from a "
            "nadir camera at camera_height), normals, boundaries, saliency (see mtl_tf/data/synthetic.py)"
        )
        camera_height: float = Field(30.0, gt=20.0, description="metres above the ground (above the tallest roof)")

        def label_kinds(self) -> list[str]:
            """`labels` picks boxes and masks, `dense` the dense kinds; the image-level ones (scene,
            object presence) are always there (`targets: {label: null}` leaves them unused)."""
            kinds = {"both": ["boxes", "mask"], "boxes": ["boxes"], "masks": ["mask"], "none": []}[self.labels]
            return [*kinds, *(k for k in DENSE_KINDS if k in self.dense), "label", "labels"]

        def class_names(self, kind: str) -> list[str]:
            masks = SURFACE_CLASSES if self.mask == "surface" else ["background", *OBJECT_CLASSES]
            names = {"boxes": OBJECT_CLASSES, "mask": masks, "label": SCENE_CLASSES, "labels": OBJECT_CLASSES}
            return names.get(kind, []) if kind in self.label_kinds() else []

    def __init__(self, config: Config, image_size: tuple[int, int]):
        self.config = config
        self.image_size = tuple(image_size)

    def __len__(self) -> int:
        return self.config.num_images

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.config.seed, index])
        scene = draw_scene(rng, *self.image_size, self.config.max_objects)
        image, mask, boxes, classes = scene.image, scene.mask, scene.boxes, scene.classes
        example = {"image": image}
        kinds = self.config.label_kinds()
        if "boxes" in kinds:
            example.update(boxes=boxes, box_classes=classes)
        if "mask" in kinds:
            example["mask"] = mask if self.config.mask == "surface" else footprints(boxes, classes, self.image_size)
        if self.config.dense:
            # Its own generator: the scene's draws (image, mask, boxes) stay as they were.
            dense_rng = np.random.default_rng([self.config.seed, index, 1])
            example.update(dense_labels(scene, dense_rng, self.config.dense, self.config.camera_height))
        example.update(label=scene_class(mask), labels=objects_present(classes))
        return example

    def describe(self) -> str:
        mask = "" if self.config.mask == "surface" else f", mask={self.config.mask}"
        return f"synthetic_aerial(seed={self.config.seed}, labels={self.config.labels}{mask})"


def scene_class(surface: np.ndarray) -> np.int32:
    """The scene class of a surface mask: waterside, else urban, else rural (see the shares)."""
    shares = np.bincount(surface.ravel(), minlength=len(SURFACE_CLASSES)) / surface.size
    if shares[WATER] >= WATERSIDE_SHARE:
        return np.int32(WATERSIDE)
    return np.int32(URBAN if shares[ROAD] + shares[BUILDING] >= URBAN_SHARE else RURAL)


def objects_present(classes: np.ndarray) -> np.ndarray:
    """int8 [4]: 1 where the scene holds an object of that class, else 0."""
    return (np.bincount(classes, minlength=len(OBJECT_CLASSES)) > 0).astype(np.int8)


def footprints(boxes: np.ndarray, classes: np.ndarray, image_size) -> np.ndarray:
    """A mask of object footprints: 0 background, class + 1 inside each object's box (later
    objects over earlier ones, as they are drawn)."""
    ids = np.concatenate([[0], np.asarray(classes, np.int64) + 1])  # instance i + 1 -> class + 1
    return ids[object_instances(boxes, image_size)].astype(np.uint8)


def object_instances(boxes: np.ndarray, image_size) -> np.ndarray:
    """int32 [H, W]: 0 background, i + 1 inside object i's box (later objects over earlier)."""
    height, width = image_size
    instances = np.zeros((height, width), np.int32)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        rows = slice(int(round(y0 * height)), max(int(round(y1 * height)), int(round(y0 * height)) + 1))
        cols = slice(int(round(x0 * width)), max(int(round(x1 * width)), int(round(x0 * width)) + 1))
        instances[rows, cols] = i + 1
    return instances


# ---------------------------------------------------------------- dense labels


def dense_labels(scene: "Scene", rng: np.random.Generator, kinds, camera_height: float) -> dict:
    """The requested dense label kinds of `scene` (see the module docstring)."""
    size = scene.mask.shape
    instances = object_instances(scene.boxes, size)
    out = {}
    if "depth" in kinds or "normals" in kinds:
        height = height_map(scene, instances, rng)
        if "depth" in kinds:
            out["depth"] = (camera_height - height)[..., None].astype(np.float32)
        if "normals" in kinds:
            out["normals"] = normals_from_height(height, SCENE_METRES / min(size))
    if "boundaries" in kinds:
        out["boundaries"] = region_boundaries(scene.mask.astype(np.int64) * (len(scene.boxes) + 1) + instances)
    if "saliency" in kinds:
        out["saliency"] = (instances > 0).astype(np.uint8)
    return out


def height_map(scene: "Scene", instances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heights in metres: vegetation, buildings (drawn in the scene's order, gabled along x like
    their two-shade roofs), then objects standing on the surface under them."""
    mask = scene.mask
    metres = SCENE_METRES / min(mask.shape)
    height = np.zeros(mask.shape, np.float64)
    trees = mask == VEGETATION
    canopy = VEGETATION_HEIGHT[0] + np.ptp(VEGETATION_HEIGHT) * canopy_relief(scene.image, trees & (instances == 0))
    height[trees] = canopy[trees]
    for y0, x0, y1, x1 in scene.buildings:
        eave = rng.uniform(*EAVE_HEIGHT)
        centres = np.arange(x0, x1) + 0.5
        rise = ROOF_PITCH * metres * np.minimum(centres - x0, x1 - centres)
        height[y0:y1, x0:x1] = eave + rise[None, :]
    return height + np.concatenate([[0.0], OBJECT_HEIGHT[scene.classes]])[instances]


def canopy_relief(image: np.ndarray, trees: np.ndarray) -> np.ndarray:
    """[0, 1] per pixel: the trees' brightness smoothed over a few pixels (a normalized Gaussian
    blur of the mean channel over `trees` only), scaled to the scene's darkest and brightest tree
    pixel. Sunlit crowns are high: the canopy's relief is what the image shows, so its depth and
    normals can be learned from the pixels."""
    weight = _gaussian_blur(trees.astype(np.float64), 2.5)
    smooth = _gaussian_blur(image.astype(np.float64).mean(axis=-1) * trees, 2.5) / np.maximum(weight, 1e-6)
    if not trees.any():
        return np.zeros(trees.shape)
    low, high = smooth[trees].min(), smooth[trees].max()
    return np.clip((smooth - low) / max(high - low, 1e-6), 0, 1)


def _gaussian_blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """`values` [H, W] convolved with a Gaussian of `sigma` pixels (separable, edges reflected)."""
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 1, padded, kernel, "valid")
    return np.apply_along_axis(np.convolve, 0, rows, kernel, "valid")


def normals_from_height(height: np.ndarray, metres_per_pixel: float) -> np.ndarray:
    """Unit normals [H, W, 3] (x right, y down, z up) of a height map, by central differences
    (one-sided at the border); zero vectors (unlabelled) on both sides of a height step of more
    than STEP_METRES (an eave, a car's side): the camera looks straight down and sees no wall
    there, and a difference across the step would be a near-horizontal normal of no surface."""
    height = np.asarray(height, np.float64)
    dy, dx = np.gradient(height, metres_per_pixel)
    normals = np.stack([-dx, -dy, np.ones_like(dx)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    step = np.zeros(height.shape, bool)
    vertical = np.abs(np.diff(height, axis=0)) > STEP_METRES
    horizontal = np.abs(np.diff(height, axis=1)) > STEP_METRES
    step[1:] |= vertical
    step[:-1] |= vertical
    step[:, 1:] |= horizontal
    step[:, :-1] |= horizontal
    normals[step] = 0.0
    return normals.astype(np.float32)


def region_boundaries(regions: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: 1 where a 4-neighbour has another region id (both sides of each edge)."""
    edge = np.zeros(regions.shape, bool)
    vertical = regions[1:] != regions[:-1]
    horizontal = regions[:, 1:] != regions[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge.astype(np.uint8)


# ---------------------------------------------------------------- rendering


@dataclass
class Scene:
    """One drawn scene: image uint8 HxWx3, surface mask uint8 HxW, boxes rel yxyx, their classes
    and the buildings' pixel rectangles (y0, x0, y1, x1) in drawing order."""

    image: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    buildings: list


def render_scene(rng: np.random.Generator, height: int, width: int, max_objects: int = 12):
    """Draw one scene. Returns (image uint8 HxWx3, mask uint8 HxW, boxes rel yxyx, classes)."""
    scene = draw_scene(rng, height, width, max_objects)
    return scene.image, scene.mask, scene.boxes, scene.classes


def draw_scene(rng: np.random.Generator, height: int, width: int, max_objects: int = 12) -> Scene:
    """Draw one scene (see `Scene`)."""
    side = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = np.full((height, width), GROUND, np.uint8)
    tint = rng.uniform(-12, 12, 3)
    ground_color = np.array([150, 130, 95]) + tint + rng.uniform(-15, 15)
    image = _textured(rng, (height, width), ground_color, contrast=22)

    # Vegetation patches, then a lake in some scenes (the rarer class).
    veg = _smooth_noise(rng, (height, width), cells=4) > rng.uniform(0.35, 0.75)
    _paint(image, mask, veg, VEGETATION, _textured(rng, (height, width), np.array([60, 110, 45]) + tint, 30))
    if rng.random() < 0.4:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.3) * side
        wobble = (_smooth_noise(rng, (height, width), cells=3) - 0.5) * 0.6 * radius
        lake = np.hypot(yy - cy, xx - cx) < radius + wobble
        _paint(image, mask, lake, WATER, _textured(rng, (height, width), [45, 80, 130], 12))

    roads = _draw_roads(rng, image, mask, yy, xx, side)
    buildings = _draw_buildings(rng, image, mask, side)
    _draw_clutter(rng, image, yy, xx, side)
    boxes = _draw_objects(rng, image, mask, roads, side, max_objects)

    gain = rng.uniform(0.8, 1.15)
    image = image * gain + rng.normal(0, 4, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if boxes:
        pixel, classes = np.array([b[:4] for b in boxes]), np.array([b[4] for b in boxes], np.int32)
        rel = np.clip(pixel_xyxy_to_rel_yxyx(pixel, height, width), 0.0, 1.0)
    else:
        rel, classes = empty_boxes()
    return Scene(image, mask, rel, classes, buildings)


def _smooth_noise(rng, shape, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    up = Image.fromarray(coarse, mode="F").resize((shape[1], shape[0]), Image.BICUBIC)
    field = np.asarray(up)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def _textured(rng, shape, color, contrast: float) -> np.ndarray:
    """A colour field with coarse and fine texture."""
    coarse = _smooth_noise(rng, shape, cells=8) - 0.5
    fine = rng.normal(0, 0.35, shape)
    shade = contrast * (coarse + fine)
    return np.asarray(color, np.float32)[None, None, :] + shade[..., None]


def _paint(image, mask, region, cls, texture) -> None:
    image[region] = texture[region]
    if cls is not None:
        mask[region] = cls


def _draw_roads(rng, image, mask, yy, xx, side) -> list[tuple[str, float, float]]:
    """Horizontal and vertical roads with a dashed centre line; returns (axis, centre, half width)."""
    roads = []
    asphalt = _textured(rng, image.shape[:2], np.array([95, 95, 100]) + rng.uniform(-10, 10), 10)
    for _ in range(rng.integers(1, 4)):
        axis = "h" if rng.random() < 0.5 else "v"
        coord, extent = (yy, image.shape[0]) if axis == "h" else (xx, image.shape[1])
        along = xx if axis == "h" else yy
        centre = rng.uniform(0.15, 0.85) * extent
        half = rng.uniform(0.045, 0.075) * side
        region = np.abs(coord - centre) < half
        _paint(image, mask, region, ROAD, asphalt)
        dashes = (np.abs(coord - centre) < max(0.5, 0.006 * side)) & ((along // (0.05 * side)) % 2 == 0)
        image[dashes] = [215, 210, 190]
        roads.append((axis, centre, half))
    return roads


def _draw_buildings(rng, image, mask, side) -> list[tuple[int, int, int, int]]:
    """Buildings with shadows and two-shade roofs; returns their (y0, x0, y1, x1) in pixels."""
    h, w = mask.shape
    buildings = []
    for _ in range(rng.integers(0, 7)):
        bh, bw = rng.uniform(0.08, 0.25, 2) * side
        y0, x0 = rng.uniform(0, h - bh), rng.uniform(0, w - bw)
        y0i, x0i, y1i, x1i = int(y0), int(x0), int(y0 + bh), int(x0 + bw)
        if (mask[y0i:y1i, x0i:x1i] == ROAD).mean() > 0.1:
            continue  # buildings stand beside roads, not on them
        shadow = max(1, int(0.02 * side))
        image[y0i + shadow : y1i + shadow, x0i + shadow : x1i + shadow] *= 0.55
        roof = np.array([[170, 70, 55], [120, 120, 125], [200, 190, 170], [90, 60, 50]])[rng.integers(4)]
        texture = _textured(rng, (y1i - y0i, x1i - x0i), roof, 14)
        texture[:, : (x1i - x0i) // 2] *= rng.uniform(0.8, 0.95)  # a ridge: two roof halves
        image[y0i:y1i, x0i:x1i] = texture
        mask[y0i:y1i, x0i:x1i] = BUILDING
        buildings.append((y0i, x0i, y1i, x1i))
    return buildings


def _draw_clutter(rng, image, yy, xx, side) -> None:
    """Unlabelled distractors: rocks, bushes and litter specks of object-like size."""
    h, w = image.shape[:2]
    for _ in range(rng.integers(3, 12)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.006, 0.02) * side
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image[blob] = rng.choice([[120, 115, 110], [40, 70, 35], [190, 185, 175]])


def _draw_objects(rng, image, mask, roads, side, max_objects) -> list[tuple]:
    """Objects as (x0, y0, x1, y1, class) in pixels; vehicles drive along roads."""
    h, w = mask.shape
    boxes = []
    count = rng.integers(0, max_objects + 1) if max_objects else 0
    for cls in rng.choice(4, size=count, p=OBJECT_FREQUENCY):
        # At least 3 pixels across, so small renders keep every class.
        length, breadth = np.maximum(np.array(OBJECT_SIZE[cls]) * side * rng.uniform(0.85, 1.2), 3.0)
        vertical = rng.random() < 0.5
        if cls in (CAR, BUS, CYCLIST) and roads and rng.random() < 0.85:
            axis, centre, half = roads[rng.integers(len(roads))]
            vertical = axis == "v"
            offset = centre + rng.uniform(-0.6, 0.6) * max(half - breadth / 2, 0)
            along = rng.uniform(0, (h if vertical else w) - length)
            cy, cx = (along + length / 2, offset) if vertical else (offset, along + length / 2)
        else:
            cy, cx = rng.uniform(length / 2, h - length / 2), rng.uniform(length / 2, w - length / 2)
        bh, bw = (length, breadth) if vertical else (breadth, length)
        x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        _draw_object(rng, image, cls, x0, y0, x1, y1, vertical)
        boxes.append((max(x0, 0), max(y0, 0), min(x1, w), min(y1, h), int(cls)))
    return boxes


def _draw_object(rng, image, cls, x0, y0, x1, y1, vertical) -> None:
    xi0, yi0 = max(int(round(x0)), 0), max(int(round(y0)), 0)
    xi1, yi1 = int(round(x1)), int(round(y1))
    shadow = max(1, (xi1 - xi0) // 5)
    image[yi0 + shadow : yi1 + shadow, xi0 + shadow : xi1 + shadow] *= 0.6
    if cls == PEDESTRIAN:
        cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, (x1 - x0) / 2
        yy, xx = np.mgrid[yi0:yi1, xi0:xi1]
        disc = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
        patch = image[yi0:yi1, xi0:xi1]
        patch[disc[: patch.shape[0], : patch.shape[1]]] = rng.choice([[230, 60, 60], [240, 240, 240], [40, 40, 160], [250, 200, 40]])
        centre = (int(cy), int(cx))
        if 0 <= centre[0] < image.shape[0] and 0 <= centre[1] < image.shape[1]:
            image[centre] = [35, 25, 20]  # a head seen from above
        return
    if cls == CYCLIST:
        image[yi0:yi1, xi0:xi1] = [30, 30, 30]  # the bicycle
        rider = rng.choice([[220, 50, 50], [50, 160, 220], [240, 220, 60]])
        if vertical:
            image[yi0 + (yi1 - yi0) // 3 : yi1 - (yi1 - yi0) // 3, xi0:xi1] = rider
        else:
            image[yi0:yi1, xi0 + (xi1 - xi0) // 3 : xi1 - (xi1 - xi0) // 3] = rider
        return
    palette = [[200, 30, 30], [230, 230, 230], [30, 30, 35], [40, 80, 170], [170, 170, 175]]
    if cls == BUS:
        palette = [[240, 200, 30], [235, 235, 235], [190, 40, 40]]
    image[yi0:yi1, xi0:xi1] = palette[rng.integers(len(palette))]
    # Windscreen: a dark band across the front quarter.
    if vertical:
        q = max(1, (yi1 - yi0) // 4)
        image[yi0 + q // 2 : yi0 + q, xi0 + 1 : xi1 - 1] = [25, 35, 45]
    else:
        q = max(1, (xi1 - xi0) // 4)
        image[yi0 + 1 : yi1 - 1, xi0 + q // 2 : xi0 + q] = [25, 35, 45]
    if cls == BUS:  # roof units
        cy, cx = (yi0 + yi1) // 2, (xi0 + xi1) // 2
        image[cy - 1 : cy + 1, cx - 2 : cx + 2] = [120, 120, 120]
