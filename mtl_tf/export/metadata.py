"""metadata.json: the contract an artifact's users (evaluator, demo apps) read beside it."""

from __future__ import annotations

import json
from pathlib import Path

from mtl_tf.export.tflite import write_atomic

METADATA = "metadata.json"
FORMAT_VERSION = 3  # 3: each task records its name and type


def output_task_kind(name: str, tasks) -> tuple[str, str]:
    """(task, kind) of an artifact output: `<task>_<kind>`, or a task's raw output named `<task>`."""
    if name in tasks:
        return name, "raw"
    for task in sorted(tasks, key=len, reverse=True):
        if name.startswith(f"{task}_"):
            return task, name[len(task) + 1:]
    raise ValueError(f"artifact output '{name}' belongs to none of the tasks {list(tasks)}")


def build_metadata(
    model, recipe: dict | None, artifact: str, outputs: dict, quantization: str,
    nms: bool = False, image: dict | None = None, extra: dict | None = None,
) -> dict:
    """Everything needed to feed the artifact and decode its outputs.

    `outputs`: {name: {"shape", "dtype", "quantization"}} as read back from the artifact; each
    gets its "task" and "kind". A quantized output reads real = scale * (q - zero_point).
    `image`: the input's {"dtype", "quantization"} as read back (default: plain uint8); a
    quantized input takes q = round(pixel / scale) + zero_point.
    """
    tasks = {}
    for name, task in model.tasks.items():
        tasks[name] = {
            "name": name,
            "type": task.type,
            "classes": task.classes,
            "config": task.config.model_dump(mode="json"),
            **task.export_parameters(),
        }
    outputs = {
        name: {**spec, **dict(zip(("task", "kind"), output_task_kind(name, model.tasks)))}
        for name, spec in outputs.items()
    }
    return {
        "format_version": FORMAT_VERSION,
        "artifact": artifact,
        "quantization": quantization,
        "nms_in_graph": nms,
        "input": _input_spec(model.image_size, image or {"dtype": "uint8"}),
        "outputs": outputs,
        "tasks": tasks,
        "box_format": "normalized [ymin, xmin, ymax, xmax]",
        "model": {"backbone": model.backbone_args, "split_last_stage": model.split_last_stage},
        **(extra or {}),
        "recipe": recipe,
    }


def _input_spec(image_size, image: dict) -> dict:
    spec = {
        "name": "image",
        "shape": [1, *image_size, 3],
        "dtype": image["dtype"],
        "layout": "NHWC",
        "color": "RGB",
        "normalization": "none: raw 0..255 pixels, the model normalizes inside",
    }
    quantization = image.get("quantization") or {}
    if quantization.get("scale"):
        spec["quantization"] = quantization
        spec["normalization"] = "none: raw 0..255 pixels as q = round(pixel / scale) + zero_point"
    return spec


def write_metadata(folder: Path, metadata: dict) -> Path:
    path = Path(folder) / METADATA
    write_atomic(path, json.dumps(metadata, indent=1).encode())
    return path


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metadata.json beside the artifact; export it with mtl-tf export")
    return json.loads(path.read_text())
