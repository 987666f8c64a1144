"""COCO box AP through pycocotools (AP@[.5:.95], AP50, AP75, small/medium/large, per class)."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from mtl_tf.data.example import rel_yxyx_to_pixel_xyxy


def _xywh(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    xyxy = rel_yxyx_to_pixel_xyxy(boxes, height, width).astype(np.float64)
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def coco_metrics(images: list[dict], class_names: list[str], image_size: tuple[int, int]) -> dict:
    """COCO metrics of per-image records {gt_boxes, gt_classes, gt_difficult, det_boxes,
    det_scores, det_classes} with normalized yxyx boxes, measured in pixels of `image_size`.

    Difficult objects become COCO "crowd" regions: matching them is neither rewarded nor
    penalized, the closest COCO has to VOC's difficult flag.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    height, width = image_size
    gt_annotations, detections = [], []
    for image_id, rec in enumerate(images):
        for box, cls, crowd in zip(_xywh(rec["gt_boxes"], height, width), rec["gt_classes"], rec["gt_difficult"]):
            gt_annotations.append({
                "id": len(gt_annotations) + 1, "image_id": image_id, "category_id": int(cls),
                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": int(crowd),
            })
        for box, score, cls in zip(_xywh(rec["det_boxes"], height, width), rec["det_scores"], rec["det_classes"]):
            detections.append({"image_id": image_id, "category_id": int(cls), "bbox": box.tolist(), "score": float(score)})
    empty = {"coco_map": 0.0, "coco_map50": 0.0, "coco_map75": 0.0, "coco_map_small": None,
             "coco_map_medium": None, "coco_map_large": None, "per_class_coco_map": {}}
    if not gt_annotations or not detections:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i, "height": height, "width": width} for i in range(len(images))],
            "annotations": gt_annotations,
            "categories": [{"id": i, "name": n} for i, n in enumerate(class_names)],
        }
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # -1 means "no objects in that size range": reported as None, not as a zero AP.
    stats = [float(s) if s >= 0 else None for s in evaluation.stats]
    precision = evaluation.eval["precision"]  # [iou, recall, class, area, max dets]
    per_class = {}
    for k, cat in enumerate(evaluation.params.catIds):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            per_class[class_names[cat]] = float(p[p > -1].mean())
    return {
        "coco_map": stats[0], "coco_map50": stats[1], "coco_map75": stats[2],
        "coco_map_small": stats[3], "coco_map_medium": stats[4], "coco_map_large": stats[5],
        "per_class_coco_map": per_class,
    }
