"""SSD multibox loss: smooth-L1 on matched boxes + a classification loss: softmax cross-entropy
with hard negative mining (SSD), softmax focal loss over every anchor, or with one sigmoid per
object class and no background column: binary cross-entropy with the same mining, or RetinaNet's
sigmoid focal loss over every anchor (Lin et al. 2017)."""

from __future__ import annotations

import keras
import tensorflow as tf

_smooth_l1 = keras.losses.Huber(delta=1.0, reduction=None)
_cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


def hard_negatives(
    ce: tf.Tensor,
    positives: tf.Tensor,
    labelled: tf.Tensor,
    neg_pos_ratio: float,
    min_negatives: int,
    ignored: tf.Tensor | None = None,
) -> tf.Tensor:
    """Per image, the `max(ratio * positives, min_negatives)` background anchors with the
    highest classification loss (float mask [B, A]); none for unlabelled images, and never
    an `ignored` anchor."""
    num_anchors = tf.shape(ce)[1]
    num_pos = tf.reduce_sum(positives, axis=1)
    excluded = positives if ignored is None else tf.maximum(positives, ignored)
    wanted = tf.maximum(neg_pos_ratio * num_pos, float(min_negatives))
    num_neg = tf.minimum(wanted, tf.cast(num_anchors, tf.float32) - tf.reduce_sum(excluded, axis=1)) * labelled
    background_loss = tf.where(excluded > 0, -1.0, ce)
    order = tf.argsort(background_loss, axis=1, direction="DESCENDING")
    rank = tf.argsort(order, axis=1)
    return tf.cast(tf.cast(rank, tf.float32) < num_neg[:, None], tf.float32)


def focal_cross_entropy(labels: tf.Tensor, logits: tf.Tensor, gamma: float = 2.0, alpha: float | None = 0.25) -> tf.Tensor:
    """Softmax focal loss per element: -a_t (1 - p_t)^gamma log p_t, p_t the probability of the
    target class; a_t = alpha for object classes (label > 0), 1 - alpha for background (label
    0), 1 everywhere when alpha is None. At gamma 0 and alpha None: the cross-entropy."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    log_pt = tf.gather(log_probs, labels, axis=-1, batch_dims=len(labels.shape))
    loss = -log_pt if gamma == 0 else -tf.pow(1.0 - tf.exp(log_pt), gamma) * log_pt
    if alpha is not None:
        loss = loss * tf.where(labels > 0, alpha, 1.0 - alpha)
    return loss


def sigmoid_focal_cross_entropy(labels: tf.Tensor, logits: tf.Tensor, gamma: float = 2.0,
                                alpha: float | None = 0.25) -> tf.Tensor:
    """RetinaNet's focal loss per anchor, summed over the C object classes: `logits` [..., C] are
    one sigmoid per class, `labels` [...] the target class with 0 = background (every class
    negative). Per class -a (1 - p_t)^gamma log p_t, a = alpha for the target class and 1 - alpha
    for the others (1 when alpha is None)."""
    targets = tf.one_hot(labels - 1, tf.shape(logits)[-1], dtype=logits.dtype)  # background: all 0
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    if gamma:  # skipped at 0: the gradient of (1 - p_t)^0 is NaN where p_t rounds to 1
        p = tf.sigmoid(logits)
        loss = loss * tf.pow(1.0 - (targets * p + (1.0 - targets) * (1.0 - p)), gamma)
    if alpha is not None:
        loss = loss * (targets * alpha + (1.0 - targets) * (1.0 - alpha))
    return tf.reduce_sum(loss, axis=-1)


def ssd_loss(
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    sample_weight: tf.Tensor,
    neg_pos_ratio: float = 3.0,
    min_negatives: int = 0,
    classification: str = "softmax",
    gamma: float = 2.0,
    alpha: float | None = 0.25,
) -> tf.Tensor:
    """Multibox loss summed over the batch and divided by the number of matched boxes.

    y_true [B, A, 5]: encoded box targets and the target class (0 = background, < 0 = ignored:
    the anchor is neither object nor background, e.g. matched to a difficult box).
    y_pred [B, A, 4 + C + 1]: the head's raw output (4 + C for the sigmoid losses: no background).
    sample_weight [B]: 1 for images labelled for detection, 0 for the others; it weights
    every anchor term through Keras' per-element sample weights, so an unlabelled image
    contributes exactly zero loss and zero gradient.
    classification: "softmax" (cross-entropy on positives and 3:1 mined negatives), "focal"
    (`focal_cross_entropy` with `gamma`, `alpha` on every anchor that is not ignored), "sigmoid"
    (binary cross-entropy summed over the classes, mined like "softmax") or "sigmoid_focal"
    (`sigmoid_focal_cross_entropy` on every anchor that is not ignored).
    """
    labelled = tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
    target_class = tf.cast(y_true[..., 4], tf.int32)
    ignored = tf.cast(target_class < 0, tf.float32)
    target_class = tf.maximum(target_class, 0)
    positives = tf.cast(target_class > 0, tf.float32) * labelled[:, None]
    # Huber reduces the 4 coordinates by their mean; SSD sums them.
    box_loss = 4.0 * _smooth_l1(y_true[..., :4], y_pred[..., :4], sample_weight=positives)
    logits = y_pred[..., 4:]
    anchors = labelled[:, None] * (1.0 - ignored)
    if classification == "focal":
        class_loss = focal_cross_entropy(target_class, logits, gamma, alpha) * anchors
    elif classification == "sigmoid_focal":
        class_loss = sigmoid_focal_cross_entropy(target_class, logits, gamma, alpha) * anchors
    elif classification in ("softmax", "sigmoid"):
        per_anchor = (_cross_entropy(target_class, logits) if classification == "softmax"
                      else sigmoid_focal_cross_entropy(target_class, logits, gamma=0.0, alpha=None))
        negatives = hard_negatives(tf.stop_gradient(per_anchor), positives, labelled, neg_pos_ratio, min_negatives,
                                   ignored)
        class_loss = per_anchor * (positives + negatives)
    else:
        raise ValueError(f"unknown classification loss {classification!r}; choose softmax, focal, sigmoid or "
                         "sigmoid_focal")
    normalizer = tf.maximum(tf.reduce_sum(positives), 1.0)
    return (tf.reduce_sum(box_loss) + tf.reduce_sum(class_loss)) / normalizer
