"""COCO instances JSON (and COCO-format exports): boxes, and semantic masks rasterized from the
instance polygons / RLE with pycocotools.

Only the categories named in the config are kept (renamed on the way when asked, several may
share a name); annotations of other categories are dropped, so their pixels are background.
Crowd annotations (iscrowd=1) are not boxes; their pixels become 255 (ignore).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pycocotools.coco import COCO
from pydantic import Field

from mtl_tf.data.example import IGNORE
from mtl_tf.data.sources.common import (
    SIZE_MISMATCH, UNKNOWN_CLASS, UNKNOWN_IMAGE, UNPARSABLE, BoxSourceConfig, DataProblem, RecordSource, add_image_labels,
    check_pixel_boxes, check_same_size, collect, source_example, load_image, require_file, unique,
)


class CocoConfig(BoxSourceConfig):
    type: Literal["coco"] = "coco"
    annotations: str = Field(description="instances JSON file")
    images: str = Field(description="folder holding the images named by file_name")
    categories: list[str] = Field(min_length=1, description="COCO category names to keep")
    rename: dict[str, str] = Field(default_factory=dict, description="COCO name -> class name in the recipe")
    boxes: bool = Field(True, description="yield boxes (label kind boxes)")
    masks: bool = Field(True, description="yield semantic masks (label kind mask)")
    background: str = Field("background", description="class name of mask value 0")
    include_empty: bool = Field(True, description="keep images with no kept annotation, as true negatives")

    def box_names(self) -> list[str]:
        return unique(self.rename.get(n, n) for n in self.categories)

    def label_kinds(self) -> list[str]:
        return self.with_image_labels([kind for kind, on in (("boxes", self.boxes), ("mask", self.masks)) if on])

    def class_names(self, kind: str) -> list[str]:
        if kind in ("boxes", "labels") and kind in self.label_kinds():
            return self.box_names()
        if kind == "mask" and self.masks:
            return [self.background, *self.box_names()]
        return []


@dataclass
class _Record:
    image: Path
    info: dict  # the JSON's image entry
    annotations: list[dict]  # kept annotations, with "_class" = box class id


class CocoSource(RecordSource):
    """The images of a COCO instances file (see the module docstring)."""

    Config = CocoConfig

    def __init__(self, config: CocoConfig, image_size):
        self.config, self.image_size = config, tuple(image_size)
        self.json_path = require_file(Path(config.annotations), "annotations file")
        self.coco = load_coco(self.json_path)
        categories = {c["id"]: c["name"] for c in self.coco.dataset.get("categories", [])}
        missing = sorted(set(config.categories) - set(categories.values()))
        if missing:
            raise DataProblem(self.json_path, UNKNOWN_CLASS, f"categories {missing} are not among {sorted(categories.values())}")
        names = config.box_names()
        self._class_of = {
            cid: names.index(config.rename.get(n, n)) for cid, n in categories.items() if n in config.categories
        }
        self._known = set(categories)
        orphans = [a for a in self.coco.dataset.get("annotations", []) if a.get("image_id") not in self.coco.imgs]
        _, orphaned = collect(orphans, self._orphan, config.skip_invalid)
        self.records, self.skipped = collect(sorted(self.coco.imgs), self._record, config.skip_invalid)
        self.skipped = orphaned + self.skipped
        self.records = [r for r in self.records if config.include_empty or r.annotations]

    def _orphan(self, ann: dict):
        raise DataProblem(self.json_path, UNKNOWN_IMAGE, f"annotation {ann.get('id')} has image_id "
                          f"{ann.get('image_id')}, which is not in 'images'")

    def _record(self, image_id: int) -> _Record:
        info = self.coco.imgs[image_id]
        path = require_file(Path(self.config.images) / info.get("file_name", ""), "image")
        kept = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("category_id") not in self._known:
                raise DataProblem(self.json_path, UNKNOWN_CLASS, f"annotation {ann.get('id')} has category_id "
                                  f"{ann.get('category_id')}, which is not in 'categories'")
            if ann["category_id"] not in self._class_of:
                continue
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise DataProblem(self.json_path, UNPARSABLE, f"annotation {ann.get('id')}: bbox {bbox!r} is not [x, y, w, h]")
            kept.append({**ann, "_class": self._class_of[ann["category_id"]]})
        return _Record(path, info, kept)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = load_image(record.image)
        height, width = image.shape[:2]
        if (record.info.get("height"), record.info.get("width")) != (height, width):
            raise DataProblem(record.image, SIZE_MISMATCH, f"image is {width}x{height}, the JSON says "
                              f"{record.info.get('width')}x{record.info.get('height')}")
        labels, mask = {}, None
        objects = [a for a in record.annotations if not a.get("iscrowd")]
        if self.config.boxes:
            xywh = np.array([a["bbox"] for a in objects], np.float64).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            labels = {
                "boxes": check_pixel_boxes(xyxy, height, width, self.json_path, self.config.box_tolerance),
                "box_classes": np.array([a["_class"] for a in objects], np.int32),
            }
        if self.config.masks:
            mask = self._semantic_mask(record)
            check_same_size(mask, image, self.json_path)
        return source_example(image, mask, **add_image_labels(labels, self.config))

    def _semantic_mask(self, record: _Record) -> np.ndarray:
        """Crowd regions 255, then objects by decreasing area, so small ones stay visible."""
        height, width = record.info["height"], record.info["width"]
        mask = np.zeros((height, width), np.uint8)
        crowd = [a for a in record.annotations if a.get("iscrowd")]
        objects = sorted((a for a in record.annotations if not a.get("iscrowd")), key=lambda a: -a.get("area", 0))
        for ann in crowd + objects:
            try:
                region = self.coco.annToMask(ann).astype(bool)
            except (TypeError, ValueError, IndexError, KeyError) as err:  # malformed polygon / RLE
                raise DataProblem(self.json_path, UNPARSABLE,
                                  f"annotation {ann.get('id')}: segmentation cannot be rasterized ({err!r})") from None
            mask[region] = IGNORE if ann.get("iscrowd") else ann["_class"] + 1
        return mask

    def file_name(self, index: int) -> str:
        return self.records[index].info["file_name"]

    def describe(self) -> str:
        return f"coco({self.config.annotations})"


def load_coco(path: Path) -> COCO:
    """A pycocotools index of an instances JSON; bad JSON is a DataProblem naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataProblem(path, UNPARSABLE, f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataProblem(path, UNPARSABLE, "not a COCO instances file (no 'images' list)")
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
            coco.createIndex()
    except (KeyError, TypeError) as err:
        raise DataProblem(path, UNPARSABLE, f"an image, annotation or category lacks a field ({err!r})") from None
    return coco
