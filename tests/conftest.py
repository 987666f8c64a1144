from pathlib import Path

import pytest

import mtl_tf  # noqa: F401  (sets TensorFlow's environment before any test imports it)

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = Path(__file__).parent / "recipes" / "tiny.yaml"

DET_CLASSES = ["pedestrian", "cyclist", "car", "bus"]
SEG_CLASSES = ["ground", "road", "building", "water", "vegetation"]


def write_video(path, frames: int = 3, size=(96, 80)) -> None:
    """A short MP4 of random frames (width, height = `size`)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, size)
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()


def tiny_task_configs(extra_channels: int = 16) -> dict:
    return {
        "detection": {"classes": DET_CLASSES, "extra_channels": extra_channels, "min_scale": 0.1},
        "segmentation": {"classes": SEG_CLASSES},
    }


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny multitask model on 64x64 inputs, built once for the session."""
    from mtl_tf.model.multitask import MultitaskModel

    return MultitaskModel({"name": "tiny", "width": 8}, tiny_task_configs(), (64, 64))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder trained for one epoch on the tiny recipe, shared by the job tests."""
    from mtl_tf.recipe import load_recipe
    from mtl_tf.train.fit import run_fit

    run = tmp_path_factory.mktemp("tiny") / "run"
    return run_fit(load_recipe(TINY_RECIPE, ["train.epochs=1"]), run, verbose=0)
