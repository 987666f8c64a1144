"""The serving graph of an artifact: image [1, H, W, 3] -> one output per task and kind.

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


def serving_heads(model) -> keras.Model:
    """`model` (same layers and weights) with each task's `serving_head` as its output: e.g. the
    detection head's box encodings and class logits before they are joined into its raw output,
    so the artifact neither joins nor splits them and each gets its own int8 scale."""
    return keras.Model(model.inputs, {name: task.serving_head(model) for name, task in model.tasks.items()})


def serving_outputs(model, images, nms: bool = False, integer: bool = False, heads=None) -> dict:
    """{`<task>_<kind>`: tensor} of a multitask model on uint8 `images`; `integer`: for a
    full-int8 artifact (see `Task.export_outputs`); `heads`: `serving_heads(model)`, if built."""
    computed = (heads or serving_heads(model))(images, training=False)
    outputs = {}
    for name, task in model.tasks.items():
        for kind, tensor in task.export_outputs(computed[name], nms, integer).items():
            outputs[output_name(name, kind)] = tensor
    return outputs


def export_serving_model(model, folder: Path, nms: bool = False, int8_input: str | None = None) -> Path:
    """SavedModel with signature `serve`: image [1, H, W, 3] -> per-kind outputs; `int8_input`
    ("uint8" or "int8"): the graph of a full-int8 artifact (see `write_serve_signature`)."""
    heads = serving_heads(model)
    serve = lambda image: serving_outputs(model, image, nms, integer=int8_input is not None, heads=heads)  # noqa: E731
    return write_serve_signature(model, folder, serve, int8_input)


def write_serve_signature(model, folder: Path, serve, int8_input: str | None = None) -> Path:
    """SavedModel of `model` with one signature `serve`: `serve(image)` on an image batch of 1,
    as on the device (with a dynamic batch every Reshape turns into SHAPE / STRIDED_SLICE / PACK
    ops that XNNPACK does not take).

    The image is uint8 pixels. For full-int8 conversion (`int8_input` set) the model sees them
    pinned to the 0..255 integer grid by a FakeQuant, so the first int8 tensor has scale 1:
    - "uint8": uint8 image -> CAST -> QUANTIZE (float -> int8) in the artifact, measured faster
      in LiteRT than the uint8 -> int8 requantize the converter writes for a float input;
    - "int8": the image input is the model's float input itself, which the converter turns into
      an int8 input (pixel - 128) feeding the first layer with no op at all.
    """
    if int8_input not in (None, "uint8", "int8"):
        raise ValueError(f"int8_input must be None, 'uint8' or 'int8'. Received: {int8_input!r}")
    archive = keras.export.ExportArchive()
    archive.track(model)
    shape = [1, *model.inputs[0].shape[1:]]
    pin = lambda image: tf.quantization.fake_quant_with_min_max_args(image, 0.0, 255.0)  # noqa: E731
    if int8_input == "int8":
        spec, endpoint = tf.TensorSpec(shape, tf.float32, name="image"), lambda image: serve(pin(image))
    elif int8_input == "uint8":
        spec, endpoint = tf.TensorSpec(shape, tf.uint8, name="image"), lambda image: serve(pin(tf.cast(image, tf.float32)))
    else:
        spec, endpoint = tf.TensorSpec(shape, tf.uint8, name="image"), serve
    archive.add_endpoint("serve", endpoint, input_signature=[spec])
    archive.write_out(str(folder), verbose=False)
    return Path(folder)
