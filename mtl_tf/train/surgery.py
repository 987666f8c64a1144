"""Gradient surgery on per-task gradients of the shared trunk (`train.gradient_surgery`).

Each function takes the tasks' flattened trunk gradients `grads` [T, D] (a task absent from the
batch has a zero row) and returns the one gradient [D] the trunk steps with, on the scale of
their sum (what the engine uses without surgery).
"""

from __future__ import annotations

import tensorflow as tf

EPS = 1e-12


def pcgrad(grads: tf.Tensor) -> tf.Tensor:
    """PCGrad (Yu et al. 2020): each task's gradient g_i, for every other task j (in index
    order) with g_i . g_j < 0, loses its component along g_j: g_i -= (g_i . g_j) / |g_j|^2 g_j;
    the projected gradients are summed. Non-conflicting gradients are left alone."""
    rows = tf.unstack(grads)
    out = []
    for i, g in enumerate(rows):
        for j, other in enumerate(rows):
            if i == j:
                continue
            dot = tf.reduce_sum(g * other)
            g = g - tf.minimum(dot, 0.0) / tf.maximum(tf.reduce_sum(other * other), EPS) * other
        out.append(g)
    return tf.add_n(out)


def cagrad_weights(gram: tf.Tensor, c: float, iterations: int = 100, rate: float = 0.5) -> tf.Tensor:
    """argmin over the simplex of w^T G 1/T + c sqrt(1^T G 1 / T^2) sqrt(w^T G w) (CAGrad's dual),
    by exponentiated gradient descent on G scaled to unit mean (the minimizer is scale-free)."""
    t = gram.shape[0]
    g = gram / tf.maximum(tf.reduce_mean(gram), EPS)
    b = tf.fill([t], 1.0 / t)
    w = b
    for _ in range(iterations):
        gw = tf.linalg.matvec(g, w)
        grad = tf.linalg.matvec(g, b) + c * gw / tf.sqrt(tf.maximum(tf.reduce_sum(w * gw), EPS))
        w = w * tf.exp(-rate * (grad - tf.reduce_max(grad)))
        w = w / tf.reduce_sum(w)
    return w


def cagrad(grads: tf.Tensor, c: float = 0.5) -> tf.Tensor:
    """CAGrad (Liu et al. 2021): the direction d = g0 + c |g0| g_w / |g_w| (g0 the mean gradient,
    g_w = sum_i w_i g_i with w from `cagrad_weights`) maximizes the worst task's improvement
    min_i g_i . d within |d - g0| <= c |g0|; returned as T d / (1 + c^2) (the official rescaling,
    times T for the scale of a sum). At c = 0: the sum of the gradients."""
    t = grads.shape[0]
    g0 = tf.reduce_mean(grads, axis=0)
    if c == 0:
        return t * g0
    w = cagrad_weights(tf.matmul(grads, grads, transpose_b=True), c)
    gw = tf.linalg.matvec(grads, w, transpose_a=True)
    d = g0 + c * tf.norm(g0) / tf.maximum(tf.norm(gw), EPS) * gw
    return t * d / (1.0 + c * c)


SURGERY = {"pcgrad": pcgrad, "cagrad": cagrad}


def combine(per_task: list[list], method: str, c: float = 0.5) -> list:
    """Per-task gradient lists (one tensor per trunk variable, same shapes) -> the combined list."""
    template = per_task[0]
    stacked = tf.stack([tf.concat([tf.reshape(g, [-1]) for g in grads], 0) for grads in per_task])
    merged = pcgrad(stacked) if method == "pcgrad" else cagrad(stacked, c)
    sizes = [g.shape.num_elements() for g in template]
    return [tf.reshape(part, g.shape) for part, g in zip(tf.split(merged, sizes), template)]
