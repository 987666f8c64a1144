"""Boundaries: a binary map of object and region edges (label kind `boundaries`: uint8 [H, W],
1 boundary, 0 not, 255 ignore); class-balanced cross-entropy (HED), max F-measure (ODS, pixel
exact: no matching tolerance), see tasks/dense.py."""

from __future__ import annotations

from typing import ClassVar

from mtl_tf.tasks.dense import BinaryMapTask


class BoundariesTask(BinaryMapTask):
    type: ClassVar[str] = "boundaries"
    source_kind: ClassVar[str] = "boundaries"
    map_key: ClassVar[str] = "boundaries"
    colour: ClassVar[tuple[int, int, int]] = (255, 40, 200)
