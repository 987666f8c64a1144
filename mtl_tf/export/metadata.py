"""metadata.json: the contract an artifact's users (evaluator, demo apps) read beside it."""

from __future__ import annotations

import json
from pathlib import Path

METADATA = "metadata.json"
FORMAT_VERSION = 1


def build_metadata(model, recipe: dict | None, artifact: str, outputs: dict, quantization: str) -> dict:
    """Everything needed to feed the artifact and decode its outputs.

    `outputs`: {name: {"shape", "dtype", "quantization"}} as read back from the artifact.
    """
    tasks = {}
    for name, task in model.tasks.items():
        entry = {"classes": task.classes, "config": task.config.model_dump(mode="json")}
        if hasattr(task, "anchors"):
            entry["anchors_cy_cx_h_w"] = task.anchors.round(6).tolist()
        tasks[name] = entry
    return {
        "format_version": FORMAT_VERSION,
        "artifact": artifact,
        "quantization": quantization,
        "input": {
            "name": "image",
            "shape": [1, *model.image_size, 3],
            "dtype": "uint8",
            "layout": "NHWC",
            "color": "RGB",
            "normalization": "none: raw 0..255 pixels, the model normalizes inside",
        },
        "outputs": outputs,
        "tasks": tasks,
        "box_format": "normalized [ymin, xmin, ymax, xmax]",
        "model": {"backbone": model.backbone_args, "split_last_stage": model.split_last_stage},
        "recipe": recipe,
    }


def write_metadata(folder: Path, metadata: dict) -> Path:
    path = Path(folder) / METADATA
    path.write_text(json.dumps(metadata, indent=1))
    return path


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metadata.json beside the artifact; export it with mtl-tf export")
    return json.loads(path.read_text())
