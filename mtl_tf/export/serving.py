"""The serving graph of an artifact: uint8 image [1, H, W, 3] -> one output per task and kind.

Every task splits its raw head output into outputs of one kind each (`<task>_<kind>`, e.g.
`detection_boxes` normalized to [0, 1] beside `detection_scores`), so an int8 artifact gets one
sane scale per kind; with `nms`, detection post-processing (decode + per-class NMS) runs in the
graph with builtin TFLite ops.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf


def output_name(task: str, kind: str) -> str:
    return f"{task}_{kind}"


def serving_outputs(model, images, nms: bool = False, integer: bool = False) -> dict:
    """{`<task>_<kind>`: tensor} of a multitask model on uint8 `images`; `integer`: for a
    full-int8 artifact (see `Task.export_outputs`)."""
    raw = model(images, training=False)
    outputs = {}
    for name, task in model.tasks.items():
        for kind, tensor in task.export_outputs(raw[name], nms, integer).items():
            outputs[output_name(name, kind)] = tensor
    return outputs


def export_serving_model(model, folder: Path, nms: bool = False, integer: bool = False) -> Path:
    """SavedModel with signature `serve`: image (uint8 [1, H, W, 3]) -> per-kind outputs."""
    return write_serve_signature(model, folder, lambda image: serving_outputs(model, image, nms, integer))


def write_serve_signature(model, folder: Path, serve) -> Path:
    """SavedModel of `model` with one signature `serve`: `serve(image)` on the model's input with
    a fixed batch of 1, as on the device (with a dynamic batch every Reshape turns into SHAPE /
    STRIDED_SLICE / PACK ops that XNNPACK does not take)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    image = model.inputs[0]
    spec = tf.TensorSpec([1, *image.shape[1:]], image.dtype, name="image")
    archive.add_endpoint("serve", serve, input_signature=[spec])
    archive.write_out(str(folder), verbose=False)
    return Path(folder)
