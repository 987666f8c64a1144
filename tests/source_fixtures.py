"""Tiny datasets written in the real published formats (VOC, SBD, COCO, SDD, mask folders),
for the source tests. Every writer returns what it wrote, so tests compare against it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image
from pycocotools import mask as mask_utils

from mtl_tf.data.sources.voc import voc_colormap

H, W = 48, 64  # every fixture image is 64 wide, 48 high


def image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_jpeg(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write_palette_png(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(values.astype(np.uint8), mode="P")
    png.putpalette(voc_colormap().ravel().tolist())
    png.save(path)
    return path


# ---------------------------------------------------------------- VOC + SBD

def voc_xml(objects, width: int = W, height: int = H) -> str:
    """objects: (name, xmin, ymin, xmax, ymax, difficult) in VOC's 1-based pixels."""
    body = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{int(d)}</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1, d in objects
    )
    return (f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size><segmented>0</segmented>{body}</annotation>")


def voc_mask(ids: list[int]) -> np.ndarray:
    """A mask with a void border, background, and one block per id (left to right)."""
    mask = np.zeros((H, W), np.uint8)
    for k, value in enumerate(ids):
        mask[10:30, 5 + 20 * k : 20 + 20 * k] = value
    mask[0, :] = 255
    return mask


def write_voc(root: Path, classes=("car", "person")) -> dict:
    """VOC layout: ids 1-3 in Main/train, 2-4 in Segmentation/train. Mask values index
    ['background', *classes]. Returns {id: {'objects': [...], 'mask': array}}."""
    names = ["background", *classes]
    car, person = names.index("car"), names.index("person")
    content = {
        "000001": {"objects": [("car", 11, 5, 40, 30, 0), ("person", 41, 10, 60, 45, 1)]},
        "000002": {"objects": [("person", 1, 1, 64, 48, 0)], "mask": voc_mask([person])},
        "000003": {"objects": [], "mask": voc_mask([car, person])},
        "000004": {"objects": [("car", 3, 3, 9, 9, 0)], "mask": voc_mask([car])},
    }
    for i, (image_id, c) in enumerate(content.items()):
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image(i))
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(c["objects"]))
        if "mask" in c:
            write_palette_png(root / "SegmentationClass" / f"{image_id}.png", c["mask"])
    for folder, ids in (("Main", ["000001", "000002", "000003"]), ("Segmentation", ["000002", "000003", "000004"])):
        (root / "ImageSets" / folder).mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / folder / "train.txt").write_text("\n".join(ids) + "\n")
    return content


def write_sbd(root: Path, image_id: str, mask: np.ndarray, seed: int = 9) -> None:
    """SBD layout: img/<id>.jpg, cls/<id>.mat (GTcls struct), train.txt."""
    write_jpeg(root / "img" / f"{image_id}.jpg", image(seed))
    (root / "cls").mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20, 1), object)  # a cell of sparse boundary maps, one per class
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(mask.shape, dtype=bool)
    gtcls = {"Segmentation": mask.astype(np.uint8), "Boundaries": boundaries,
             "CategoriesPresent": np.unique(mask[mask > 0]).astype(np.uint8)}
    scipy.io.savemat(root / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    (root / "train.txt").write_text(image_id + "\n")


# ---------------------------------------------------------------- COCO

def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [len(flat)]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def write_coco(root: Path) -> dict:
    """3 images: polygon person + RLE car; a dog and a crowd of persons; nothing.
    Returns the regions written (as masks) for checking."""
    car = np.zeros((H, W), np.uint8)
    car[5:15, 40:60] = 1
    crowd = np.zeros((H, W), np.uint8)
    crowd[30:45, 0:20] = 1
    rle = mask_utils.encode(np.asfortranarray(car))
    rle["counts"] = rle["counts"].decode()
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 600.0, "bbox": [10, 10, 20, 30],
             "segmentation": [[10, 10, 30, 10, 30, 40, 10, 40]]},
            {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 200.0, "bbox": [40, 5, 20, 10],
             "segmentation": rle},
            {"id": 12, "image_id": 2, "category_id": 18, "iscrowd": 0, "area": 100.0, "bbox": [40, 20, 10, 10],
             "segmentation": [[40, 20, 50, 20, 50, 30, 40, 30]]},
            {"id": 13, "image_id": 2, "category_id": 1, "iscrowd": 1, "area": 300.0, "bbox": [0, 30, 20, 15],
             "segmentation": uncompressed_rle(crowd)},
        ],
    }
    for i in (1, 2, 3):
        write_jpeg(root / "images" / f"{i:012d}.jpg", image(10 + i))
    (root / "instances.json").write_text(json.dumps(data))
    return {"car": car.astype(bool), "crowd": crowd.astype(bool), "data": data}


# ---------------------------------------------------------------- SDD

SDD_ROWS = [
    # track xmin ymin xmax ymax frame lost occluded generated label
    *[(0, 2 + f, 4, 12 + f, 20, f, 0, 0, 0, "Pedestrian") for f in range(10)],
    (1, 30, 30, 40, 40, 0, 1, 0, 0, "Biker"),  # lost: dropped
    (1, 30, 30, 40, 40, 5, 0, 1, 0, "Biker"),
    (2, 44, 10, 60, 30, 5, 0, 0, 1, "Car"),
]


def frame_value(number: int) -> int:
    return 20 * number + 10


def write_sdd(root: Path, frames_folder: Path | None = None, num_frames: int = 10) -> list:
    """annotations/scene1/video0/annotations.txt + videos/scene1/video0/video.avi (frame n is a
    flat grey of frame_value(n)); optionally the frames extracted as JPEGs."""
    ann = root / "annotations" / "scene1" / "video0" / "annotations.txt"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text("".join(" ".join(map(str, r[:9])) + f' "{r[9]}"\n' for r in SDD_ROWS))
    video = root / "videos" / "scene1" / "video0" / "video.avi"
    video.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for n in range(num_frames):
        frame = np.full((H, W, 3), frame_value(n), np.uint8)
        writer.write(frame)
        if frames_folder is not None:
            write_jpeg(frames_folder / "scene1" / "video0" / f"{n:05d}.jpg", frame)
    writer.release()
    return SDD_ROWS


# ---------------------------------------------------------------- mask folders

COLORS = {"building": (128, 0, 0), "road": (128, 64, 128), "tree": (0, 128, 0)}


def write_color_tiles(root: Path, count: int = 2) -> None:
    """Images 48x64 with colour label maps whose 4 quadrants are building, road, tree and the
    ignore colour (0, 0, 0)."""
    for i in range(count):
        write_jpeg(root / "images" / f"img{i}.jpg", image(20 + i))
        labels = np.zeros((H, W, 3), np.uint8)
        labels[: H // 2, : W // 2] = COLORS["building"]
        labels[: H // 2, W // 2 :] = COLORS["road"]
        labels[H // 2 :, : W // 2] = COLORS["tree"]
        (root / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels).save(root / "labels" / f"img{i}.png")


def write_value_masks(root: Path, presence: np.ndarray) -> None:
    """One tiny image per row of `presence` [N, C]: class c painted in column c when present."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(presence):
        write_jpeg(root / "images" / f"{i:04d}.jpg", image(i, 8, 8))
        labels = np.zeros((8, 8), np.uint8)  # value 0 = class 0 everywhere ...
        labels[:] = 255  # ... except that unlabelled pixels are 255
        for c in np.flatnonzero(row):
            labels[:, c] = c
        Image.fromarray(labels, mode="L").save(root / "labels" / f"{i:04d}.png")


# ---------------------------------------------------------------- classification

def write_image_folder(root: Path, counts: dict[str, int], size: int = 16) -> dict[str, list[Path]]:
    """<root>/<class>/<i>.jpg, `counts[class]` images each, every class a distinct flat colour
    plus noise (so a classifier can learn them). Returns the files per class."""
    written = {}
    for c, (name, count) in enumerate(counts.items()):
        colour = np.array([(60 + 90 * c) % 256, (200 - 70 * c) % 256, (30 * c) % 256])
        written[name] = []
        for i in range(count):
            noise = np.random.default_rng([c, i]).integers(-20, 21, (size, size, 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            written[name].append(write_jpeg(root / name / f"{i:03d}.jpg", pixels))
    return written


def write_label_csv(path: Path, rows: list[tuple[str, list[str]]], columns: list[str], image_column: str = "image") -> Path:
    """A CSV with a header (image column, then `columns`) and one (image, cells) row each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join([image_column, *columns])] + [",".join([name, *cells]) for name, cells in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
