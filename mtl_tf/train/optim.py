"""Optimizer and learning-rate schedule from the recipe."""

from __future__ import annotations

import keras

from mtl_tf.config import OptimizerConfig


def learning_rate(config: OptimizerConfig, total_steps: int):
    """Constant, cosine decay, or the poly schedule lr * (1 - step / total) ** power."""
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
    return keras.optimizers.schedules.PolynomialDecay(
        config.learning_rate, decay_steps=total_steps, end_learning_rate=0.0, power=config.poly_power
    )


def build_optimizer(config: OptimizerConfig, total_steps: int, constant: bool = False) -> keras.optimizers.Optimizer:
    """The recipe's optimizer; `constant`: a plain learning-rate variable that the multitask
    engine sets from the schedule at every step."""
    lr = config.learning_rate if constant else learning_rate(config, total_steps)
    common = {"learning_rate": lr, "clipnorm": config.clipnorm}
    if config.name == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, weight_decay=config.weight_decay or None, **common)
    if config.name == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    return keras.optimizers.Adam(weight_decay=config.weight_decay or None, **common)
