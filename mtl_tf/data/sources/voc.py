"""Pascal VOC 2007/2012 layout (and VOC-format exports), with SBD masks as an option.

    <root>/JPEGImages/<id>.jpg
    <root>/Annotations/<id>.xml               boxes (1-based pixels), name, difficult flag
    <root>/SegmentationClass/<id>.png         palette indices (or VOC palette colours), 255 void
    <root>/ImageSets/Main/<split>.txt         ids labelled with boxes
    <root>/ImageSets/Segmentation/<split>.txt ids labelled with masks
    <sbd_root>/cls/<id>.mat, <sbd_root>/<sbd_split>.txt, <sbd_root>/img/<id>.jpg   (SBD)

Which labels an image has follows the lists: boxes when it is in the Main list, a mask when it is
in the Segmentation list (or the SBD list). Files that exist for other splits are never read,
so validation labels cannot leak into training.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.io
from pydantic import Field

from mtl_tf.data.example import IGNORE
from mtl_tf.data.sources.common import (
    MISSING, UNKNOWN_CLASS, UNPARSABLE, BoxSourceConfig, DataProblem, RecordSource, add_image_labels, check_pixel_boxes,
    check_same_size, collect, color_code, source_example, load_image, load_label_image, map_labels, read_list,
    require_file,
)

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]


@lru_cache(maxsize=1)
def voc_colormap() -> np.ndarray:
    """The VOC palette [256, 3]: colour of label value i (bits of i spread over r, g, b)."""
    cmap = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        cmap[i] = rgb
    return cmap


class VocConfig(BoxSourceConfig):
    type: Literal["voc"] = "voc"
    root: str = Field(description="the VOC folder holding JPEGImages/, Annotations/, ImageSets/ (e.g. VOCdevkit/VOC2012)")
    split: str = Field("train", description="list name: ImageSets/{Main,Segmentation}/<split>.txt")
    images: Literal["detection", "segmentation", "union", "both_labels"] = Field(
        "union", description="images of the Main list, the Segmentation (+SBD) list, either, or both "
        "(the reference 'both labels' subset)"
    )
    classes: list[str] = Field(default_factory=lambda: list(VOC_CLASSES), min_length=1,
                               description="object names in the XML files")
    segmentation_classes: list[str] | None = Field(
        None, description="name of each mask value 0, 1, ... (default: background, then classes)"
    )
    ignore_classes: list[str] = Field(
        default_factory=list, description="names whose boxes are dropped and whose mask pixels become 255"
    )
    sbd_root: str | None = Field(None, description="SBD dataset folder (cls/, img/, train.txt, val.txt)")
    sbd_split: str | None = Field(None, description="SBD list name (default: split)")

    def mask_names(self) -> list[str]:
        return list(self.segmentation_classes or ["background", *self.classes])

    def label_kinds(self) -> list[str]:
        return self.with_image_labels(["boxes", "mask"])

    def class_names(self, kind: str) -> list[str]:
        kind = "boxes" if kind == "labels" and self.image_labels else kind
        names = {"boxes": self.classes, "mask": self.mask_names()}.get(kind, [])
        return [n for n in names if n not in self.ignore_classes]


@dataclass
class _Record:
    image: Path
    annotation: Path | None = None  # the XML, when the image has boxes
    boxes: np.ndarray | None = None  # pixel x0, y0, x1, y1
    classes: np.ndarray | None = None
    difficult: np.ndarray | None = None
    mask: Path | None = None  # PNG or SBD .mat, when the image has a mask


class VocSource(RecordSource):
    """Images of a VOC split with their boxes and/or masks (see the module docstring)."""

    Config = VocConfig

    def __init__(self, config: VocConfig, image_size):
        self.config, self.image_size = config, tuple(image_size)
        root = Path(config.root)
        mode = config.images
        self._box_ids = self._ids(root / "ImageSets" / "Main" / f"{config.split}.txt",
                                  required=mode in ("detection", "both_labels"))
        seg_ids = self._ids(root / "ImageSets" / "Segmentation" / f"{config.split}.txt",
                            required=mode in ("segmentation", "both_labels") and not config.sbd_root)
        sbd_ids = {}
        if config.sbd_root:
            sbd_ids = self._ids(Path(config.sbd_root) / f"{config.sbd_split or config.split}.txt", required=True)
        # An id in both mask lists takes its VOC PNG (finer, with the void band) over SBD's .mat.
        self._mask_ids = {**{i: "mat" for i in sbd_ids}, **{i: "png" for i in seg_ids}}
        ids = self._select(list(self._box_ids), list(dict.fromkeys([*seg_ids, *sbd_ids])))
        if not ids:
            raise DataProblem(root, MISSING, f"no images in the '{config.split}' lists for images={config.images}")
        self._box_names = {n: i for i, n in enumerate(config.class_names("boxes"))}
        self._value_table, self._color_table = self._value_tables()
        self.records, self.skipped = collect(ids, self._record, config.skip_invalid)

    @staticmethod
    def _ids(path: Path, required: bool) -> dict[str, None]:
        """The ids of a list file, ordered; none for an absent list that is not required."""
        if not path.is_file() and not required:
            return {}
        return dict.fromkeys(read_list(path))

    def _select(self, box_ids: list[str], mask_ids: list[str]) -> list[str]:
        mode = self.config.images
        if mode == "detection":
            return box_ids
        if mode == "segmentation":
            return mask_ids
        if mode == "both_labels":
            masks = set(mask_ids)
            return [i for i in box_ids if i in masks]
        return list(dict.fromkeys([*box_ids, *mask_ids]))

    def _value_tables(self) -> tuple[dict[int, int], dict[int, int]]:
        """Stored mask value -> class id or IGNORE, for palette/grey PNGs and for RGB PNGs in the
        VOC palette (keyed by colour code)."""
        kept = self.config.class_names("mask")
        values = {IGNORE: IGNORE}
        for value, name in enumerate(self.config.mask_names()):
            values[value] = kept.index(name) if name in kept else IGNORE
        colors = {int(color_code(voc_colormap()[value])): cls for value, cls in values.items()}
        return values, colors

    def _record(self, image_id: str) -> _Record:
        cfg = self.config
        root = Path(cfg.root)
        image = root / "JPEGImages" / f"{image_id}.jpg"
        if not image.is_file() and cfg.sbd_root and (Path(cfg.sbd_root) / "img" / f"{image_id}.jpg").is_file():
            image = Path(cfg.sbd_root) / "img" / f"{image_id}.jpg"
        record = _Record(image=require_file(image, "image"))
        if image_id in self._box_ids:
            record.annotation = require_file(root / "Annotations" / f"{image_id}.xml", "annotation")
            record.boxes, record.classes, record.difficult = parse_voc_xml(
                record.annotation, self._box_names, set(cfg.ignore_classes)
            )
        kind = self._mask_ids.get(image_id)
        if kind == "png":
            record.mask = require_file(root / "SegmentationClass" / f"{image_id}.png", "mask")
        elif kind == "mat":
            record.mask = require_file(Path(cfg.sbd_root) / "cls" / f"{image_id}.mat", "SBD mask")
        return record

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = load_image(record.image)
        height, width = image.shape[:2]
        labels = {}
        if record.annotation is not None:
            labels = {
                "boxes": check_pixel_boxes(record.boxes, height, width, record.annotation, self.config.box_tolerance),
                "box_classes": record.classes,
                "box_difficult": record.difficult,
            }
        mask = None
        if record.mask is not None:
            raw = load_sbd_mask(record.mask) if record.mask.suffix == ".mat" else load_label_image(record.mask)
            check_same_size(raw, image, record.mask)
            mask = map_labels(raw, self._color_table if raw.ndim == 3 else self._value_table, record.mask)
        return source_example(image, mask, **add_image_labels(labels, self.config))

    def describe(self) -> str:
        return f"voc({self.config.root}, split={self.config.split}, images={self.config.images})"


def parse_voc_xml(path: Path, class_ids: dict[str, int], ignored: set[str] = frozenset()):
    """(pixel boxes [N, 4] x0 y0 x1 y1, class ids [N], difficult [N]) of a VOC XML file.

    VOC pixel indices are 1-based and inclusive, so xmin - 1 and xmax are the box's edges (as in
    Detectron2). Objects named in `ignored` are left out; any other name not in `class_ids` is a
    DataProblem.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataProblem(path, UNPARSABLE, f"not valid XML ({err})") from None
    boxes, classes, difficult = [], [], []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name in ignored:
            continue
        if name not in class_ids:
            raise DataProblem(path, UNKNOWN_CLASS, f"object '{name}' is not one of {list(class_ids)}")
        try:
            x0, y0, x1, y1 = (float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise DataProblem(path, UNPARSABLE, f"object '{name}' has no numeric bndbox xmin/ymin/xmax/ymax") from None
        boxes.append((x0 - 1, y0 - 1, x1, y1))
        classes.append(class_ids[name])
        difficult.append((obj.findtext("difficult") or "0").strip() in ("1", "true", "True"))
    return (
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(classes, np.int32),
        np.array(difficult, bool),
    )


def load_sbd_mask(path: Path) -> np.ndarray:
    """The class map of an SBD `cls/<id>.mat` file (GTcls.Segmentation, values 0..20)."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        return np.asarray(mat["GTcls"].Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise DataProblem(path, UNPARSABLE, f"not an SBD GTcls file with a Segmentation field ({err})") from None
