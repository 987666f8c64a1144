"""Images + label PNGs with a class table (Okutama, Swiss drone sets, most segmentation exports).

    <images>/<stem>.jpg   (any of .jpg .jpeg .png .bmp .tif .tiff)
    <masks>/<stem><mask_suffix>

The class table maps stored label values (grey / palette index) or RGB colours to class names;
several entries may share a name (merged classes). Large images can be cut into a grid of tiles
(each tile one example), and a class-balanced train/val/test split can be taken by name.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mtl_tf.config import Strict
from mtl_tf.data.example import IGNORE
from mtl_tf.data.sources.common import (
    IMAGE_SUFFIXES, MASK_VALUE, MISSING, SourceConfig, DataProblem, check_same_size, collect, color_code, source_example,
    ignore_table, load_image, load_label_image, map_labels, require_file, unique,
)
from mtl_tf.data.splits import SPLIT_NAMES, balanced_split


class ClassEntry(Strict):
    name: str
    value: int | None = Field(None, ge=0, le=65535, description="stored label value (grey level, palette index)")
    color: tuple[int, int, int] | None = Field(None, description="stored RGB colour")

    @model_validator(mode="after")
    def _one_key(self):
        if (self.value is None) == (self.color is None):
            raise ValueError(f"class '{self.name}' needs exactly one of value or color")
        return self


class MaskFolderConfig(SourceConfig):
    type: Literal["mask_folder"] = "mask_folder"
    images: str = Field(description="folder of images")
    masks: str = Field(description="folder of label maps, named <image stem><mask_suffix>")
    mask_suffix: str = ".png"
    classes: list[ClassEntry] = Field(min_length=1, description="the class table: {name, value} or {name, color}")
    ignore_values: list[int] = Field(default_factory=lambda: [IGNORE], description="stored values that mean 'unlabelled'")
    ignore_colors: list[tuple[int, int, int]] = Field(default_factory=list, description="colours that mean 'unlabelled'")
    tiles: tuple[int, int] = Field((1, 1), description="cut each image into rows x columns tiles")
    split: Literal["train", "val", "test"] | None = Field(None, description="take one class-balanced split")
    split_shares: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if len({e.value is None for e in self.classes}) > 1:
            raise ValueError("the class table mixes value and color entries; use one kind")
        clash = {e.value for e in self.classes} & set(self.ignore_values)
        if clash:
            raise ValueError(f"values {sorted(clash)} are both a class and in ignore_values")
        if min(self.tiles) < 1:
            raise ValueError(f"tiles must be >= 1. Received: {list(self.tiles)}")
        if any(s < 0 for s in self.split_shares) or sum(self.split_shares) <= 0:
            raise ValueError(f"split_shares must be non-negative with a positive sum. Received: {list(self.split_shares)}")
        return self

    def label_kinds(self) -> list[str]:
        return ["mask"]

    def class_names(self, kind: str) -> list[str]:
        return unique(e.name for e in self.classes) if kind == "mask" else []

    def value_table(self) -> dict[int, int]:
        """Stored value (or colour code) -> class id, IGNORE for the ignore values/colours."""
        names = self.class_names("mask")
        table = {(e.value if e.value is not None else int(color_code(e.color))): names.index(e.name) for e in self.classes}
        if self.classes[0].color is not None:
            return ignore_table(table, [int(color_code(c)) for c in self.ignore_colors])
        return ignore_table(table, self.ignore_values)


class MaskFolderSource:
    """Tiles of images with their label maps (see the module docstring)."""

    Config = MaskFolderConfig

    def __init__(self, config: MaskFolderConfig, image_size):
        self.config, self.image_size = config, tuple(image_size)
        self.table = config.value_table()
        self._colors = config.classes[0].color is not None
        folder = Path(config.images)
        if not folder.is_dir():
            raise DataProblem(folder, MISSING, "image folder does not exist")
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataProblem(folder, MISSING, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.records, self.skipped = collect(images, self._pair, config.skip_invalid)
        if config.split is not None:
            presence, self.skipped = self._presence(self.skipped)
            chosen = balanced_split(presence, config.split_shares, config.split_seed) == SPLIT_NAMES.index(config.split)
            self.records = [r for r, keep in zip(self.records, chosen) if keep]

    def _pair(self, image: Path) -> tuple[Path, Path]:
        return image, require_file(Path(self.config.masks) / f"{image.stem}{self.config.mask_suffix}", "label map")

    def _presence(self, skipped: list) -> tuple[np.ndarray, list]:
        """Which classes each image holds (reads every label map once per process)."""
        num_classes = len(self.config.class_names("mask"))
        table = tuple(sorted(self.table.items()))
        rows, more = collect(
            self.records, lambda r: (r, _presence(str(r[1]), r[1].stat().st_mtime, table, self._colors, num_classes)),
            self.config.skip_invalid,
        )
        self.records = [r for r, _ in rows]
        return np.array([p for _, p in rows], bool).reshape(-1, num_classes), skipped + more

    def __len__(self) -> int:
        rows, cols = self.config.tiles
        return len(self.records) * rows * cols

    def __getitem__(self, index: int) -> dict:
        rows, cols = self.config.tiles
        (image_path, mask_path), tile = self.records[index // (rows * cols)], index % (rows * cols)
        image = load_image(image_path)
        raw = load_label_image(mask_path)
        check_same_size(raw, image, mask_path)
        mask = _labels(raw, self.table, self._colors, mask_path)
        window = _tile(image.shape[:2], rows, cols, tile)
        return source_example(image[window], mask[window])

    def file_name(self, index: int) -> str:
        """The image's name, with '#tile<k>' when images are cut into tiles."""
        rows, cols = self.config.tiles
        name = self.records[index // (rows * cols)][0].name
        return name if rows * cols == 1 else f"{name}#tile{index % (rows * cols)}"

    def describe(self) -> str:
        split = f", split={self.config.split}" if self.config.split else ""
        return f"mask_folder({self.config.images}{split})"


def _tile(shape, rows: int, cols: int, tile: int) -> tuple[slice, slice]:
    """Row and column slices of tile number `tile` (row-major) of a rows x cols grid."""
    r, c = divmod(tile, cols)
    height, width = shape
    return slice(r * height // rows, (r + 1) * height // rows), slice(c * width // cols, (c + 1) * width // cols)


def _labels(raw: np.ndarray, table: dict[int, int], colors: bool, path) -> np.ndarray:
    """Class ids of a stored label map through a value table or a colour table."""
    if (raw.ndim == 3) != colors:
        stored, listed = ("RGB colours", "values") if raw.ndim == 3 else ("single values", "colours")
        raise DataProblem(path, MASK_VALUE, f"the label map holds {stored} but the class table lists {listed}")
    return map_labels(raw, table, path)


@lru_cache(maxsize=65536)
def _presence(path: str, mtime: float, table: tuple, colors: bool, num_classes: int) -> np.ndarray:
    """Bool [num_classes]: the classes a label map holds; cached, as the train, val and test
    sources of one folder each need them all."""
    mask = _labels(load_label_image(path), dict(table), colors, path)
    return np.bincount(mask.ravel(), minlength=256)[:num_classes] > 0
