"""Saliency: a binary map of what stands out (label kind `saliency`: uint8 [H, W], 1 salient,
0 not, 255 ignore); class-balanced cross-entropy, max F-measure (see tasks/dense.py)."""

from __future__ import annotations

from typing import ClassVar

from mtl_tf.tasks.dense import BinaryMapTask


class SaliencyTask(BinaryMapTask):
    type: ClassVar[str] = "saliency"
    source_kind: ClassVar[str] = "saliency"
    map_key: ClassVar[str] = "saliency"
    colour: ClassVar[tuple[int, int, int]] = (255, 220, 40)
