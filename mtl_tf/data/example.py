"""The example contract: what every source yields and everything downstream relies on.

One example is a dict:
  image        uint8  [H, W, 3] RGB
  boxes        float32 [N, 4] normalized (ymin, xmin, ymax, xmax) in [0, 1]; the one box format of
               the codebase (conversions happen only at the edges: files, drawing, reports)
  box_classes  int32  [N] index into tasks.detection.classes
  box_difficult bool  [N] VOC "difficult" objects: ignored by training targets (neither object
               nor background) and by the evaluator (neither rewarded nor penalized). Optional
               in what a source yields (absent = none difficult); always present after reading.
               Anything that drops or reorders boxes (crops) must do the same to this key.
  mask         uint8  [H, W] index into tasks.segmentation.classes; IGNORE (255) = unlabelled pixel
  has_<task>   bool   whether the example carries labels for <task>

A missing label is the flag `has_<task>=False`, never an empty annotation: an example with no
boxes and has_detection=True is a true negative. Where a label is missing, its arrays hold a
placeholder of the right shape (no boxes, an all-IGNORE mask) only so that tensors line up.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
BOX_FORMAT = "rel_yxyx"


class DataError(ValueError):
    """An example or a data file that cannot be used; the message names the file or the
    source and example, and the problem."""


def has_key(task: str) -> str:
    """The example key flagging that an example carries labels for `task`."""
    return f"has_{task}"


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    """(boxes [0, 4], box_classes [0]) of an image with no objects."""
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)


def empty_mask(height: int, width: int) -> np.ndarray:
    return np.full((height, width), IGNORE, np.uint8)


def pixel_xyxy_to_rel_yxyx(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel (x0, y0, x1, y1) boxes to the codebase's normalized (y0, x0, y1, x1)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale = np.array([height, width, height, width], np.float32)
    return boxes[:, [1, 0, 3, 2]] / scale


def rel_yxyx_to_pixel_xyxy(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized (y0, x0, y1, x1) boxes to pixel (x0, y0, x1, y1), e.g. for drawing."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], np.float32)
    return boxes[:, [1, 0, 3, 2]] * scale
