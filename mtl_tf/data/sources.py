"""The registry of example sources: `type` in a recipe's data section -> source class.

A source class has a pydantic `Config` (with `class_names(task)`), is built from
(config, image_size), and is a sized, indexable sequence of examples (see data/example.py).
"""

from __future__ import annotations

from mtl_tf.data.synthetic import SyntheticAerialSource

SOURCES = {
    "synthetic_aerial": SyntheticAerialSource,
}


def build_source(config, image_size: tuple[int, int]):
    """Instantiate the source a validated source config describes."""
    return SOURCES[config.type](config, image_size)
