"""The registry of example sources: `type` in a recipe's data section -> source class.

A source class has a pydantic `Config` (with `class_names(task)`), is built from
(config, image_size), and is a sized, indexable sequence of examples (see data/example.py)
with a `describe()` naming it in messages. Sources of real files (voc, coco, sdd, mask_folder,
image_folder, csv) check their annotations when built and raise `DataProblem` (a `DataError`
naming the file and the problem); with `skip_invalid: true` the bad examples are dropped and
listed in `skipped`.
"""

from __future__ import annotations

from mtl_tf.data.sources.coco import CocoSource
from mtl_tf.data.sources.csv_labels import CsvSource
from mtl_tf.data.sources.image_folder import ImageFolderSource
from mtl_tf.data.sources.mask_folder import MaskFolderSource
from mtl_tf.data.sources.sdd import SddSource
from mtl_tf.data.sources.voc import VocSource
from mtl_tf.data.shapes import SyntheticShapesSource
from mtl_tf.data.synthetic import SyntheticAerialSource

SOURCES = {
    "synthetic_aerial": SyntheticAerialSource,
    "synthetic_shapes": SyntheticShapesSource,
    "voc": VocSource,
    "coco": CocoSource,
    "sdd": SddSource,
    "mask_folder": MaskFolderSource,
    "image_folder": ImageFolderSource,
    "csv": CsvSource,
}


def build_source(config, image_size: tuple[int, int]):
    """Instantiate the source a validated source config describes."""
    return SOURCES[config.type](config, image_size)
