"""What the file-based sources share: their base config, the problems they report, reading
images and label maps, checking pixel boxes, and the shape of the examples they yield.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np
from PIL import Image
from pydantic import Field

from mtl_tf.config import SourceSection
from mtl_tf.data.example import IGNORE, DataError, pixel_xyxy_to_rel_yxyx

# Kinds of bad input, the keys of the skip summary.
MISSING = "missing file"
UNREADABLE = "unreadable image or video"
UNPARSABLE = "unparsable annotation"
BOX_OUTSIDE = "box outside the image"
EMPTY_BOX = "zero-area box"
UNKNOWN_CLASS = "class not in the class list"
MASK_VALUE = "mask value not in the class table"
SIZE_MISMATCH = "size mismatch"
UNKNOWN_IMAGE = "annotation of an unknown image"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DataProblem(DataError):
    """Bad input in one file: `path`, the `kind` of problem (one of the constants above) and
    a `detail`; the message reads 'path: kind: detail'."""

    def __init__(self, path, kind: str, detail: str):
        self.path, self.kind, self.detail = str(path), kind, detail
        super().__init__(f"{path}: {kind}: {detail}")

    def __reduce__(self):  # picklable, e.g. across worker processes
        return type(self), (self.path, self.kind, self.detail)


class SourceConfig(SourceSection):
    """Options every file-based source has."""

    skip_invalid: bool = Field(
        False,
        description="skip (and count, in a summary) examples with bad input instead of stopping "
        "with an error; every example is then checked once when the source is opened",
    )


class BoxSourceConfig(SourceConfig):
    box_tolerance: float = Field(
        1.0, ge=0, description="pixels a box may stick out of its image before it is an error; "
        "boxes within the tolerance are clipped to the image"
    )
    image_labels: bool = Field(
        False, description="also yield which box classes each image holds (label kind `labels`: 1 present, 0 "
        "absent, in the boxes' class order), for a multilabel task; images without box annotations lack it"
    )

    def with_image_labels(self, kinds: list[str]) -> list[str]:
        """`kinds` plus `labels` when image_labels is on and the source yields boxes."""
        return [*kinds, "labels"] if self.image_labels and "boxes" in kinds else kinds


def add_image_labels(labels: dict, config: BoxSourceConfig) -> dict:
    """`labels` (a source's box labels of one image) with the presence of each box class added
    as kind `labels` when the config asks for it and the image has box annotations."""
    if config.image_labels and "box_classes" in labels:
        present = np.zeros(len(config.class_names("boxes")), np.int8)
        present[np.asarray(labels["box_classes"], np.int64)] = 1
        labels = {**labels, "labels": present}
    return labels


class RecordSource:
    """Base of the sources that index `records` (one per example, read and checked when the
    source is opened) and keep the problems they skipped in `skipped`."""

    records: list
    skipped: list

    def __len__(self) -> int:
        return len(self.records)

    def file_name(self, index: int) -> str:
        """The name of example `index`'s image file (what ground truth files call it)."""
        return self.records[index].image.name


T = TypeVar("T")


def collect(candidates: Iterable, build: Callable[..., T], skip_invalid: bool) -> tuple[list[T], list[DataProblem]]:
    """`build(candidate)` for each candidate; a `DataProblem` stops everything, or, with
    `skip_invalid`, drops that candidate and is returned in the list of skipped problems."""
    records, skipped = [], []
    for candidate in candidates:
        try:
            records.append(build(candidate))
        except DataProblem as problem:
            if not skip_invalid:
                raise
            skipped.append(problem)
    return records, skipped


def read_list(path: Path) -> list[str]:
    """Ids from a list file (first token per line, blank lines skipped)."""
    if not path.is_file():
        raise DataProblem(path, MISSING, "list file does not exist")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def require_file(path: Path, what: str = "file") -> Path:
    if not path.is_file():
        raise DataProblem(path, MISSING, f"{what} does not exist")
    return path


def load_image(path) -> np.ndarray:
    """A whole image file as uint8 RGB [H, W, 3]; a missing, truncated or corrupt file is a
    `DataProblem` naming it."""
    require_file(Path(path), "image")
    try:
        with Image.open(path) as image:
            image.load()  # decodes everything: a truncated file fails here, not later
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise DataProblem(path, UNREADABLE, str(err)) from None


def load_label_image(path) -> np.ndarray:
    """A label map file as stored: [H, W] values (palette index, grey level, 16-bit) or
    [H, W, 3] RGB colours."""
    require_file(Path(path), "label image")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGB", "RGBA"):
                return np.asarray(image.convert("RGB"))
            if image.mode == "LA":
                image = image.getchannel(0)
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise DataProblem(path, UNREADABLE, str(err)) from None


def color_code(rgb) -> np.ndarray | int:
    """RGB colours (..., 3) as single integers, so colour tables are plain value tables."""
    rgb = np.asarray(rgb, np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def map_labels(raw: np.ndarray, table: dict[int, int], path) -> np.ndarray:
    """Class ids [H, W] uint8 from a label map through `table` (stored value -> class id or
    IGNORE; RGB maps are looked up by `color_code`). A value not in the table is a DataProblem."""
    codes = color_code(raw) if raw.ndim == 3 else raw.astype(np.int64)
    values, inverse = np.unique(codes, return_inverse=True)
    ids = np.array([table.get(int(v), -1) for v in values], np.int64)
    if (ids < 0).any():
        bad = values[ids < 0]
        shown = [_show_value(v, raw.ndim == 3) for v in bad[:8]]
        raise DataProblem(path, MASK_VALUE, f"values {', '.join(shown)} are not in the class table")
    return ids[inverse].reshape(codes.shape).astype(np.uint8)


def _show_value(code: int, is_color: bool) -> str:
    return f"({code >> 16}, {(code >> 8) & 255}, {code & 255})" if is_color else str(int(code))


def check_pixel_boxes(boxes, height: int, width: int, path, tolerance: float) -> np.ndarray:
    """Pixel (x0, y0, x1, y1) boxes -> normalized (ymin, xmin, ymax, xmax), clipped to the image.

    A box with no area, or sticking out of the image by more than `tolerance` pixels, is a
    DataProblem naming `path` (the annotation file).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    for x0, y0, x1, y1 in boxes:
        shown = f"({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if x1 <= x0 or y1 <= y0:
            raise DataProblem(path, EMPTY_BOX, f"box (x0, y0, x1, y1) = {shown} has no area")
        if x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
            raise DataProblem(path, BOX_OUTSIDE, f"box (x0, y0, x1, y1) = {shown} is outside the {width}x{height} image")
    clipped = np.clip(boxes, 0, [width, height, width, height])
    if ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])).any():
        raise DataProblem(path, BOX_OUTSIDE, f"a box lies on the border of the {width}x{height} image")
    return pixel_xyxy_to_rel_yxyx(clipped, height, width)


def check_same_size(mask: np.ndarray, image: np.ndarray, path) -> None:
    if mask.shape[:2] != image.shape[:2]:
        raise DataProblem(
            path, SIZE_MISMATCH, f"label map is {mask.shape[1]}x{mask.shape[0]}, its image {image.shape[1]}x{image.shape[0]}"
        )


def source_example(image: np.ndarray, mask: np.ndarray | None = None, **boxes) -> dict:
    """A source's example at the image's own size: the image and the label kinds it has
    (`boxes=`, `box_classes=`, ... for boxes; `mask` for a class map). A kind left out is a
    missing label; the reader fits everything to the recipe's size as the tasks' specs say."""
    example = {"image": image, **boxes}
    if mask is not None:
        example["mask"] = mask
    return example


def ignore_table(table: dict[int, int], values: Iterable[int]) -> dict[int, int]:
    """`table` with `values` mapped to IGNORE."""
    return {**table, **{int(v): IGNORE for v in values}}


def unique(names: Iterable[str]) -> list[str]:
    """Names in first-seen order without repeats."""
    return list(dict.fromkeys(names))
