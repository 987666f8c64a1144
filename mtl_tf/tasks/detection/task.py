"""The detection task: SSD or SSDLite head, anchor matching, multibox loss, decode + NMS, VOC mAP."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import tensorflow as tf
from pydantic import Field, model_validator

from mtl_tf.config import ClassTaskConfig
from mtl_tf.data.labels import LabelKey
from mtl_tf.evaluate.detection import DetectionEvaluator
from mtl_tf.tasks.base import Task
from mtl_tf.tasks.detection import anchors as anchor_lib
from mtl_tf.tasks.detection.boxes import decode_boxes, encode_boxes, match_anchors
from mtl_tf.tasks.detection.head import build_ssd_head
from mtl_tf.tasks.detection.loss import ssd_loss


SIZE_BINS = np.geomspace(1, 1024, 31)  # box sizes in pixels, log-spaced (data inspect)


class DetectionConfig(ClassTaskConfig):
    head: Literal["ssd", "ssdlite"] = Field(
        "ssd",
        description="ssd: residual extra stages, 3x3 conv predictors; ssdlite: depthwise-separable "
        "extra stages and predictors (MobileNet SSDLite)",
    )
    feature_levels: int = Field(6, ge=3, le=8, description="C3, C4, C5 + extra downsampling stages")
    extra_channels: int = Field(128, ge=8)
    l2_normalized_levels: int | None = Field(
        None, ge=0, description="levels L2-normalized before the predictors; default 2 (ssd), 0 (ssdlite)"
    )
    min_scale: float = Field(0.1, gt=0, lt=1)
    max_scale: float = Field(0.9, gt=0, le=1)
    aspect_ratios: list[float] | list[list[float]] = Field(
        [1.0, 2.0, 0.5], description="one list for every level, or one list per level"
    )
    match_iou: float = Field(0.5, gt=0, le=1)
    neg_pos_ratio: float = Field(3.0, gt=0)
    min_negatives: int = Field(0, ge=0, description="hard negatives per labelled image with no object")
    classification_loss: Literal["softmax", "focal", "sigmoid", "sigmoid_focal"] = Field(
        "softmax", description="softmax: cross-entropy with hard negative mining (SSD); focal: softmax focal "
        "loss on every anchor (Lin et al. 2017), no mining. One sigmoid per class and no background logit "
        "(the scores need no softmax at inference): sigmoid: binary cross-entropy with SSD's mining; "
        "sigmoid_focal: sigmoid focal loss on every anchor (RetinaNet)"
    )
    prior_probability: float = Field(0.01, gt=0, lt=1, description="sigmoid losses: every class's score at "
                                      "initialization (RetinaNet's prior; keeps the background anchors' "
                                      "loss from swamping the first steps)")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss focusing exponent (0: cross-entropy)")
    focal_alpha: float | None = Field(0.25, gt=0, lt=1, description="focal weight of object classes "
                                      "(background: 1 - alpha); null: no class weighting")
    box_variance: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    nms_iou: float = Field(0.45, gt=0, le=1)
    score_threshold: float = Field(0.01, ge=0, lt=1)
    max_detections: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _levels(self):
        if self.min_scale >= self.max_scale:
            raise ValueError(f"min_scale ({self.min_scale}) must be below max_scale ({self.max_scale})")
        if self.l2_normalized_levels is None:
            self.l2_normalized_levels = 2 if self.head == "ssd" else 0
        if self.l2_normalized_levels > self.feature_levels:
            raise ValueError("l2_normalized_levels cannot exceed feature_levels")
        ratios = self.aspect_ratios
        if ratios and isinstance(ratios[0], list) and len(ratios) != self.feature_levels:
            raise ValueError(
                f"aspect_ratios has {len(ratios)} per-level lists but feature_levels is {self.feature_levels}"
            )
        return self

    @property
    def background_logit(self) -> bool:
        """Whether the class logits have a background column 0 (softmax losses) or not (sigmoid)."""
        return self.classification_loss not in ("sigmoid", "sigmoid_focal")

    def per_level_ratios(self) -> list[list[float]]:
        if self.aspect_ratios and isinstance(self.aspect_ratios[0], list):
            return [list(r) for r in self.aspect_ratios]
        return [list(self.aspect_ratios)] * self.feature_levels


class DetectionTask(Task):
    """Boxes of `classes`; raw output [B, A, 4 + C + 1] (box deltas, then logits, 0 = background),
    or [B, A, 4 + C] with a sigmoid `classification_loss` (one sigmoid per class)."""

    type: ClassVar[str] = "detection"
    Config: ClassVar = DetectionConfig
    source_kind: ClassVar[str] = "boxes"
    primary_metric: ClassVar[str] = "map50"
    taps: ClassVar[tuple[str, ...]] = ("C3", "C4", "C5")
    draw_order: ClassVar[int] = 1
    records_file: ClassVar[str] = "detections.json"

    def __init__(self, config: DetectionConfig, image_size, name: str | None = None):
        super().__init__(config, image_size, name)
        ratios = config.per_level_ratios()
        self.anchors = anchor_lib.generate_anchors(
            self.image_size, config.feature_levels, config.min_scale, config.max_scale, ratios
        )
        self.anchor_corners = anchor_lib.centre_to_corners(self.anchors)
        self.boxes_per_location = [anchor_lib.boxes_per_location(r) for r in ratios]

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    # -- data side --------------------------------------------------------------------
    @classmethod
    def label_spec(cls):
        """boxes: normalized yxyx [N, 4]; box_classes: class ids [N] (-1 pads batches);
        box_difficult: VOC difficult flags [N] (absent in a source = none difficult)."""
        return {
            "boxes": LabelKey("float32", (None, 4), "boxes"),
            "box_classes": LabelKey("int32", (None,), "per_box", pad=-1),
            "box_difficult": LabelKey("bool", (None,), "per_box", pad=False),
        }

    def from_source(self, raw):
        labels = super().from_source(raw)
        if "box_difficult" not in raw:
            labels["box_difficult"] = np.zeros(np.size(labels["box_classes"]), bool)
        return labels

    def remap_classes(self, example, lookup):
        """Class ids from the source's list to the task's."""
        classes = np.asarray(example["box_classes"], np.int64).reshape(-1)
        unknown = classes[(classes < 0) | (classes >= len(lookup))]
        if unknown.size:
            return f"box class ids {sorted(set(unknown.tolist()))} are not in the source's {len(lookup)} classes"
        example["box_classes"] = lookup[classes].astype(np.int32)
        return None

    def check_example(self, example, image):
        boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
        classes = np.asarray(example["box_classes"]).reshape(-1)
        if len(boxes) != len(classes) or len(classes) != np.size(example["box_difficult"]):
            return f"{len(boxes)} boxes, {len(classes)} box classes, {np.size(example['box_difficult'])} difficult flags"
        if len(boxes) and ((boxes < 0).any() or (boxes > 1).any()):
            return "box coordinates outside [0, 1] (boxes are normalized ymin, xmin, ymax, xmax)"
        if len(boxes) and ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            return "a box with zero or negative area"
        if len(classes) and (classes.min() < 0 or classes.max() >= len(self.classes)):
            return f"box class id {int(classes.max())} outside 0..{len(self.classes) - 1}"
        return None

    def encode(self, example):
        """Targets [A, 5] (encoded deltas, class with 0 = background, -1 = ignored: matched to a
        difficult box, like the evaluator) and weight has_detection."""
        labels = self.own(example)
        boxes = tf.reshape(tf.cast(labels["boxes"], tf.float32), [-1, 4])
        classes = tf.cast(tf.reshape(labels["box_classes"], [-1]), tf.int32)
        if "box_difficult" in labels:
            classes = tf.where(tf.reshape(labels["box_difficult"], [-1]), -2, classes)
        matched = match_anchors(tf.constant(self.anchor_corners), boxes, self.config.match_iou)
        # Unmatched anchors point at a dummy row appended after the real boxes (which may be none).
        index = tf.where(matched >= 0, matched, tf.shape(boxes)[0])
        gt = tf.gather(tf.concat([boxes, [[0.0, 0.0, 1.0, 1.0]]], 0), index)
        deltas = encode_boxes(gt, tf.constant(self.anchors), self.config.box_variance)
        deltas = tf.where(matched[:, None] >= 0, deltas, 0.0)
        target_class = tf.gather(tf.concat([classes + 1, [0]], 0), index)
        target = tf.concat([deltas, tf.cast(target_class, tf.float32)[:, None]], axis=-1)
        return target, tf.cast(example[self.has_key], tf.float32)

    # -- model side -------------------------------------------------------------------
    def build_head(self, features):
        expected = anchor_lib.feature_sizes(self.image_size, 3)
        got = [tuple(features[t].shape[1:3]) for t in self.taps]
        if got != expected:
            raise ValueError(f"backbone taps have sizes {got}, the anchors assume {expected}")
        cfg = self.config
        prior = cfg.prior_probability
        return build_ssd_head(
            features,
            num_levels=cfg.feature_levels,
            boxes_per_location=self.boxes_per_location,
            num_logits=len(self.classes) + cfg.background_logit,
            extra_channels=cfg.extra_channels,
            l2_normalized_levels=cfg.l2_normalized_levels,
            name=self.name,
            head=cfg.head,
            logit_bias=0.0 if cfg.background_logit else float(np.log(prior / (1 - prior))),
        )

    def loss(self, y_true, y_pred, sample_weight):
        cfg = self.config
        return ssd_loss(y_true, y_pred, sample_weight, cfg.neg_pos_ratio, cfg.min_negatives,
                        cfg.classification_loss, cfg.focal_gamma, cfg.focal_alpha)

    def decode(self, raw):
        """Raw output (or `serving_head`'s parts) -> (boxes [B, A, 4] normalized yxyx, class
        scores [B, A, C]: softmax probabilities without the background's, or sigmoids)."""
        encodings, logits = _encodings_and_logits(raw)
        if self.config.background_logit:
            scores = tf.nn.softmax(logits, axis=-1)[..., 1:]
        else:
            scores = tf.sigmoid(logits)
        return self.decode_boxes(encodings), scores

    def decode_boxes(self, encodings):
        """Box encodings [B, A, 4] -> boxes [B, A, 4] normalized yxyx, clipped to [0, 1]."""
        encodings = tf.convert_to_tensor(encodings, tf.float32)
        boxes = decode_boxes(encodings, self.anchors, self.config.box_variance)
        return tf.clip_by_value(boxes, 0.0, 1.0)

    def postprocess(self, raw):
        """Per-class NMS -> boxes [B, K, 4], scores [B, K], classes [B, K], num_detections [B]."""
        return self.nms(*self.decode(raw))

    def nms(self, boxes, scores):
        """Per-class NMS of decoded boxes [B, A, 4] with class scores [B, A, C] (no background)."""
        cfg = self.config
        nms = tf.image.combined_non_max_suppression(
            tf.convert_to_tensor(boxes, tf.float32)[:, :, None, :],
            tf.convert_to_tensor(scores, tf.float32),
            max_output_size_per_class=cfg.max_detections,
            max_total_size=cfg.max_detections,
            iou_threshold=cfg.nms_iou,
            score_threshold=cfg.score_threshold,
            clip_boxes=False,
        )
        return {
            "boxes": nms.nmsed_boxes,
            "scores": nms.nmsed_scores,
            "classes": tf.cast(nms.nmsed_classes, tf.int32),
            "num_detections": nms.valid_detections,
        }

    # -- export -----------------------------------------------------------------------
    def serving_head(self, model):
        """The box encodings [B, A, 4] and class logits [B, A, C (+ 1)] the head joins into its raw
        output: joined, they would share one int8 scale (the logits' range, too coarse for the
        encodings), and the artifact would copy them twice (the join, then the split)."""
        encodings, logits = model.get_layer(f"{self.name}_raw").input
        return {"encodings": encodings, "logits": logits}

    def export_outputs(self, raw, nms=False, integer=False):
        """Without `nms`: boxes [B, A, 4] (decoded, normalized yxyx) and class scores [B, A, C]
        (`decode`'s); for an `integer` artifact the undecoded `box_encodings`
        [B, A, 4] instead of boxes (decoded in int8, a box moves by up to a quantization step of
        the [0, 1] range, ~1/255 of the image, which costs small objects their IoU: 4.6 mAP
        points on the quickstart; the encodings keep their precision and the app decodes them
        with the anchors and box_variance of metadata.json). With `nms` (batch 1 only): the same
        as `postprocess` (boxes [1, K, 4], scores [1, K], classes [1, K] int32, count [1] int32),
        computed with builtin TFLite ops only. `raw`: the raw output, or `serving_head`'s parts."""
        boxes, scores = self.decode(raw)
        if not nms:
            if integer:
                return {"box_encodings": _encodings_and_logits(raw)[0], "scores": scores}
            return {"boxes": boxes, "scores": scores}
        if boxes.shape[0] != 1:
            raise ValueError(f"in-graph NMS needs a batch of 1. Received: batch={boxes.shape[0]}")
        out = per_class_nms(boxes[0], scores[0], self.config)
        return {k: v[None] for k, v in out.items()}

    def postprocess_exported(self, outputs):
        if "count" in outputs:  # NMS ran in the graph
            return {
                "boxes": outputs["boxes"],
                "scores": outputs["scores"],
                "classes": np.asarray(outputs["classes"]).astype(np.int32),
                "num_detections": np.asarray(outputs["count"]).astype(np.int32),
            }
        if "box_encodings" in outputs:  # a full-int8 artifact: decoded here, in float
            return self.nms(self.decode_boxes(outputs["box_encodings"]), outputs["scores"])
        return self.nms(outputs["boxes"], outputs["scores"])

    def export_parameters(self):
        cfg = self.config
        return {
            "anchors_cy_cx_h_w": self.anchors.round(6).tolist(),
            "box_variance": list(cfg.box_variance),
            "nms_iou": cfg.nms_iou,
            "score_threshold": cfg.score_threshold,
            "max_detections": cfg.max_detections,
            "nms": "per class (greedy, IoU > nms_iou suppressed), then the top max_detections by score",
        }

    # -- evaluation and reports -------------------------------------------------------
    def evaluator(self):
        return DetectionEvaluator(self.classes, iou_threshold=0.5, image_size=self.image_size)

    def update_evaluator(self, evaluator, batch, predictions):
        labels = self.own(batch)
        for i in np.flatnonzero(batch[self.has_key]):
            keep = labels["box_classes"][i] >= 0  # padding rows have class -1
            n = int(predictions["num_detections"][i])
            evaluator.add_image(
                labels["boxes"][i][keep],
                labels["box_classes"][i][keep],
                predictions["boxes"][i][:n],
                predictions["scores"][i][:n],
                predictions["classes"][i][:n],
                gt_difficult=labels["box_difficult"][i][keep],
            )

    def write_figures(self, evaluator, folder):
        from mtl_tf.report.plots import plot_pr_curves

        name = f"{self.name}_pr_curves.png"
        plot_pr_curves(evaluator.curves(), evaluator.result()["per_class_ap50"], Path(folder) / name,
                       title=f"{self.name}: precision-recall (IoU 0.5)")
        return [name]

    # -- statistics -------------------------------------------------------------------
    def stats_counter(self):
        return {"objects": np.zeros(len(self.classes), np.int64), "sizes": []}

    def count_labels(self, counter, labels):
        counter["objects"] += np.bincount(labels["box_classes"], minlength=len(self.classes))[: len(self.classes)]
        b = np.asarray(labels["boxes"]).reshape(-1, 4)
        h, w = self.image_size
        counter["sizes"].extend(np.sqrt((b[:, 2] - b[:, 0]) * h * (b[:, 3] - b[:, 1]) * w))

    def stats_result(self, counter):
        """Objects per class; box sizes (sqrt of the area in input pixels) with COCO's small /
        medium / large split at 32 and 96 pixels and a log-spaced histogram."""
        sizes = np.asarray(counter["sizes"], np.float64)
        summary = {"count": int(len(sizes)), "small": int((sizes < 32).sum()),
                   "medium": int(((sizes >= 32) & (sizes < 96)).sum()), "large": int((sizes >= 96).sum()),
                   "histogram": np.histogram(sizes, SIZE_BINS)[0].tolist(), "bins": SIZE_BINS.round(3).tolist(),
                   "marks": [32, 96], "unit": "sqrt box area, input pixels"}
        if len(sizes):
            p = np.percentile(sizes, [0, 10, 50, 90, 100])
            summary.update({k: round(float(v), 1) for k, v in zip(["min", "p10", "median", "p90", "max"], p)})
        return {"objects": dict(zip(self.classes, counter["objects"].tolist())), "box_sizes": summary}

    def stats_lines(self, stats):
        lines = ["objects: " + ", ".join(f"{c} {n}" for c, n in stats["objects"].items())]
        s = stats["box_sizes"]
        if s["count"]:
            lines.append(f"box size (sqrt area, px): min {s['min']} p10 {s['p10']} median {s['median']} "
                         f"p90 {s['p90']} max {s['max']}; small {s['small']} medium {s['medium']} large {s['large']}")
        return lines

    def labels_from_prediction(self, prediction, index, min_score: float = 0.3):
        n = int(prediction["num_detections"][index])
        keep = prediction["scores"][index][:n] >= min_score
        return {
            "boxes": prediction["boxes"][index][:n][keep],
            "box_classes": prediction["classes"][index][:n][keep],
            "scores": prediction["scores"][index][:n][keep],
        }

    def prediction_records(self, labels, source, size):
        """COCO-style results: image, category name, bbox [x, y, width, height] in pixels, score."""
        h, w = size
        return [
            {
                "image": source,
                "category": self.classes[int(c)],
                "bbox": [round(float(x0 * w), 2), round(float(y0 * h), 2),
                         round(float((x1 - x0) * w), 2), round(float((y1 - y0) * h), 2)],
                "score": round(float(s), 5),
            }
            for (y0, x0, y1, x1), c, s in zip(labels["boxes"], labels["box_classes"], labels["scores"])
        ]

    def render(self, image, labels):
        from mtl_tf.report.render import draw_boxes

        keep = np.asarray(labels["box_classes"]) >= 0
        scores = labels.get("scores")
        return draw_boxes(
            image,
            np.asarray(labels["boxes"])[keep],
            np.asarray(labels["box_classes"])[keep],
            self.classes,
            None if scores is None else np.asarray(scores)[keep],
        )


def _encodings_and_logits(raw):
    """(box encodings [B, A, 4], class logits [B, A, C (+ 1)]) of the head's raw output, or of the
    parts `DetectionTask.serving_head` takes before the head joins them."""
    if isinstance(raw, dict):
        return raw["encodings"], raw["logits"]
    raw = tf.convert_to_tensor(raw, tf.float32)
    return raw[..., :4], raw[..., 4:]


def per_class_nms(boxes, scores, cfg: DetectionConfig) -> dict:
    """`combined_non_max_suppression` for one image with ops TFLite has as builtins
    (NON_MAX_SUPPRESSION_V5 per class, then TOPK_V2): boxes [A, 4], scores [A, C] ->
    boxes [K, 4], scores [K], classes [K] (int32), count [] (int32), zero-padded to K."""
    k = cfg.max_detections
    picked_boxes, picked_scores, picked_classes = [], [], []
    for c in range(scores.shape[-1]):
        index, score, _ = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores[:, c], max_output_size=k, iou_threshold=cfg.nms_iou,
            score_threshold=cfg.score_threshold, soft_nms_sigma=0.0, pad_to_max_output_size=True,
        )
        picked_boxes.append(tf.gather(boxes, index))
        picked_scores.append(score)
        picked_classes.append(tf.fill([k], c))
    scores_all = tf.concat(picked_scores, 0)
    top, order = tf.math.top_k(scores_all, k=min(k, int(scores_all.shape[0])))
    valid = top > cfg.score_threshold
    count = tf.reduce_sum(tf.cast(valid, tf.int32))
    pad = k - int(top.shape[0])
    boxes_out = tf.where(valid[:, None], tf.gather(tf.concat(picked_boxes, 0), order), 0.0)
    classes_out = tf.where(valid, tf.gather(tf.concat(picked_classes, 0), order), 0)
    return {
        "boxes": tf.pad(boxes_out, [[0, pad], [0, 0]]),
        "scores": tf.pad(tf.where(valid, top, 0.0), [[0, pad]]),
        "classes": tf.pad(classes_out, [[0, pad]]),
        "count": count,
    }
