"""Pascal VOC detection AP at an IoU threshold (all-point and 11-point interpolation).

Follows the VOC devkit: detections of a class are sorted by score over the whole set; each is a
true positive when its best-overlapping ground truth (IoU >= threshold) is not yet taken,
a false positive otherwise (duplicates included); detections whose best match is a "difficult"
object are ignored, and difficult objects do not count in recall. Boxes are normalized
(ymin, xmin, ymax, xmax), so areas carry no VOC "+1 pixel" term.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from mtl_tf.evaluate.coco import coco_metrics


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [N, 4] (yxyx)."""
    ih = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iw = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ih * iw
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def average_precision(
    recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False, coco_101: bool = False
) -> float:
    """AP from a precision/recall curve: VOC2010+ all-point area (default), the VOC2007
    11-point mean, or COCO's 101-point mean of the precision envelope."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if eleven_point:
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    if coco_101:
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        index = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in index]))
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    steps = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


class DetectionEvaluator:
    """Accumulates per-image ground truth and detections; `result()` gives VOC AP at
    `iou_threshold` (all-point and 11-point) and, given `image_size`, COCO AP via pycocotools."""

    def __init__(self, class_names: list[str], iou_threshold: float = 0.5, image_size=None):
        self.class_names = list(class_names)
        self.iou_threshold = iou_threshold
        self.image_size = image_size
        self.reset()

    def reset(self) -> None:
        self._gt = []  # per image: (boxes [N,4], classes [N], difficult [N])
        self._dets = defaultdict(list)  # class -> [(score, image index, box)]
        self._records = []  # per image, everything added (for COCO evaluation)

    def add_image(self, gt_boxes, gt_classes, det_boxes, det_scores, det_classes, gt_difficult=None):
        """Record one image. Classes are indices into `class_names`."""
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
        difficult = np.zeros(len(gt_classes), bool) if gt_difficult is None else np.asarray(gt_difficult, bool)
        image = len(self._gt)
        self._gt.append((gt_boxes, gt_classes, difficult))
        det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
        det_scores, det_classes = np.ravel(det_scores), np.ravel(det_classes).astype(np.int64)
        self._records.append({
            "gt_boxes": gt_boxes, "gt_classes": gt_classes, "gt_difficult": difficult,
            "det_boxes": det_boxes, "det_scores": det_scores, "det_classes": det_classes,
        })
        for box, score, cls in zip(det_boxes, det_scores, det_classes):
            self._dets[int(cls)].append((float(score), image, box))

    def class_curve(self, cls: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(recall, precision, number of non-difficult objects) for one class."""
        gt = [(b[c == cls], d[c == cls]) for b, c, d in self._gt]
        num_objects = int(sum((~d).sum() for _, d in gt))
        taken = [np.zeros(len(b), bool) for b, _ in gt]
        dets = sorted(self._dets.get(cls, []), key=lambda d: -d[0])
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for i, (_, image, box) in enumerate(dets):
            boxes, difficult = gt[image]
            if len(boxes) == 0:
                fp[i] = 1
                continue
            ious = box_iou(box, boxes)
            j = int(np.argmax(ious))
            if ious[j] < self.iou_threshold:
                fp[i] = 1
            elif difficult[j]:
                continue  # neither rewarded nor penalized
            elif taken[image][j]:
                fp[i] = 1  # duplicate detection
            else:
                tp[i] = 1
                taken[image][j] = True
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / max(num_objects, 1)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return recall, precision, num_objects

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{class name: (recall, precision)} for the classes that have objects."""
        out = {}
        for cls, name in enumerate(self.class_names):
            recall, precision, num_objects = self.class_curve(cls)
            if num_objects:
                out[name] = (recall, precision)
        return out

    def result(self) -> dict:
        """mAP over the classes that have at least one (non-difficult) object."""
        curves = self.curves()
        per_class = {n: average_precision(r, p) for n, (r, p) in curves.items()}
        per_class_07 = {n: average_precision(r, p, eleven_point=True) for n, (r, p) in curves.items()}
        mean = lambda d: float(np.mean(list(d.values()))) if d else 0.0  # noqa: E731
        result = {"map50": mean(per_class), "map50_voc07": mean(per_class_07), "per_class_ap50": per_class}
        if self.image_size is not None:
            result.update(coco_metrics(self._records, self.class_names, self.image_size))
        return result
