"""Images sorted into one sub-folder per class (the layout of Keras' image_dataset_from_directory):

    <root>/<class name>/<any name>.jpg   (any of .jpg .jpeg .png .bmp .tif .tiff)

Yields label kind `label` (the class id). The classes are the sub-folder names, sorted, or those
listed in `classes` (in that order; other sub-folders are left out). A class-balanced
train/val/test split can be taken by name, as in mask_folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from mtl_tf.data.sources.common import (
    IMAGE_SUFFIXES, MISSING, DataProblem, RecordSource, SourceConfig, load_image, source_example,
)
from mtl_tf.data.splits import SPLIT_NAMES, balanced_split


class ImageFolderConfig(SourceConfig):
    type: Literal["image_folder"] = "image_folder"
    root: str = Field(description="folder holding one sub-folder of images per class")
    classes: list[str] | None = Field(None, min_length=1, description="sub-folders to read, in class-id order "
                                      "(default: every sub-folder, sorted by name)")
    split: Literal["train", "val", "test"] | None = Field(None, description="take one class-balanced split")
    split_shares: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0

    def label_kinds(self) -> list[str]:
        return ["label"]

    def class_names(self, kind: str) -> list[str]:
        if kind != "label":
            return []
        if self.classes is not None:
            return list(self.classes)
        root = Path(self.root)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


class ImageFolderSource(RecordSource):
    """(image file, class id) records, read from the class sub-folders when opened."""

    Config = ImageFolderConfig

    def __init__(self, config: ImageFolderConfig, image_size):
        self.config, self.image_size = config, tuple(image_size)
        root = Path(config.root)
        if not root.is_dir():
            raise DataProblem(root, MISSING, "image folder does not exist")
        names = config.class_names("label")
        if not names:
            raise DataProblem(root, MISSING, "no class sub-folders in this folder")
        self.records = [(path, c) for c, name in enumerate(names) for path in self._images(root / name)]
        self.skipped = []
        if config.split is not None:
            presence = np.eye(len(names), dtype=bool)[[c for _, c in self.records]].reshape(-1, len(names))
            chosen = balanced_split(presence, config.split_shares, config.split_seed) == SPLIT_NAMES.index(config.split)
            self.records = [r for r, keep in zip(self.records, chosen) if keep]

    @staticmethod
    def _images(folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise DataProblem(folder, MISSING, "class sub-folder does not exist")
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def __getitem__(self, index: int) -> dict:
        path, label = self.records[index]
        return source_example(load_image(path), label=np.int32(label))

    def describe(self) -> str:
        split = f", split={self.config.split}" if self.config.split else ""
        return f"image_folder({self.config.root}{split})"
