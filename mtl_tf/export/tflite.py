"""Keras model -> SavedModel -> TFLite (builtin ops only), written atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_tf.export.litert import open_tflite, zeros_call  # noqa: F401  (re-exported)

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# Full-int8 artifacts take raw pixels (the model normalizes inside) as uint8 (scale 1, zero point
# 0) or int8 (scale 1, zero point -128: the pixel - 128), and give int8 outputs, each with its own
# scale and zero point (see metadata.json); NMS outputs stay float/int32.
INT8_OUTPUT = tf.int8
# The artifact's input type from the SavedModel's (see `write_serve_signature`): a uint8 image
# stays uint8; a float image (pinned to the 0..255 grid) becomes int8, the pixel - 128.
INT8_INPUT_FOR = {tf.uint8: tf.uint8, tf.float32: tf.int8}
# Ops left in float inside full-int8 artifacts (TFLite's selective quantization), faster and more
# precise there, between a DEQUANTIZE and a QUANTIZE:
# - SOFTMAX (the detector's class scores, classifiers): XNNPACK takes it in float only, so in int8
#   it ran on LiteRT's single-threaded kernel: 0.48 ms for [8552, 21] scores against 0.14 in
#   float; MobileNet SSDLite detector 3.97 -> 3.70 ms (2 threads, docs/bench/six_tasks.md).
FLOAT_OPS_IN_INT8 = ("SOFTMAX",)
# Layers whose ops stay float in full-int8 artifacts, by a part of their ops' output names (their
# ops are MUL, MEAN, ADD, which stay int8 elsewhere):
# - `_l2norm` (SSD's C3/C4 L2 normalizations, `L2Normalization`, written as mean / rsqrt /
#   products): XNNPACK runs them in float, 0.05-0.08 ms per 20x20x512 map; all-int8 the chain is
#   4x further from float; the L2_NORMALIZATION op of the earlier form ran on LiteRT's builtin
#   kernel in either type (float: 0.27 ms; docs/bench/l2norm_int8_ab.py).
FLOAT_LAYERS_IN_INT8 = ("_l2norm",)


class ExportError(RuntimeError):
    """The model could not be converted into the requested artifact."""


def export_saved_model(model, folder: Path, int8_input: str | None = None) -> Path:
    """The model's inference graph as a SavedModel (signature `serve`: image [1, H, W, 3] -> the
    model's own outputs); `int8_input`: for full-int8 conversion (see `write_serve_signature`)."""
    from mtl_tf.export.serving import write_serve_signature

    return write_serve_signature(model, folder, lambda image: model(image, training=False), int8_input)


def convert_tflite(
    saved_model: Path,
    quantization: str = "float32",
    representative: Callable[[], Iterable[np.ndarray]] | None = None,
    float_outputs: bool = False,
) -> bytes:
    """TFLite flatbuffer of a SavedModel's `serve` signature, with builtin ops only: conversion
    fails rather than fall back to Flex (SELECT_TF_OPS), which stock Android LiteRT cannot run.

    quantization: "float32"; "float16" (fp16 weights); "dynamic" (int8 weights, float
    activations); "int8" (full integer: uint8 or int8 image input, by `INT8_INPUT_FOR` the
    SavedModel's input, so write it with `int8_input` set; int8 kernels and activations, int8
    outputs; ops without an int8 kernel, like NMS, and `FLOAT_OPS_IN_INT8` stay float). "int8"
    needs `representative()`, yielding image batches [1, H, W, 3] of 0..255 pixels to calibrate
    the activation ranges on. `float_outputs` (int8 only): the outputs are dequantized in the
    graph and come out float32 (int8 compute all the same), for runtimes that cannot load int8
    outputs, like LiteRT.js ("Element type INT8 is not supported").
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}. Received: {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs a representative dataset (calibration images)")
        dtype = serve_input_dtype(saved_model)
        if dtype not in INT8_INPUT_FOR:
            raise ExportError(f"{saved_model}: int8 conversion takes a uint8 or float32 image input. Received: {dtype.name}")
        converter.representative_dataset = lambda: ([np.asarray(b, dtype.as_numpy_dtype)] for b in representative())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = INT8_INPUT_FOR[dtype]
        converter.inference_output_type = INT8_OUTPUT
    try:
        if quantization == "int8":
            return _int8_keeping_float(converter, FLOAT_OPS_IN_INT8, float_outputs, FLOAT_LAYERS_IN_INT8)
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and others
        raise ExportError(f"TFLite {quantization} conversion with builtin ops only failed: {err}") from None


def serve_input_dtype(saved_model: Path) -> tf.DType:
    """The dtype of the `image` input of a SavedModel's `serve` signature (read from
    saved_model.pb, without loading the model)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    return tf.dtypes.as_dtype(proto.meta_graphs[0].signature_def["serve"].inputs["image"].dtype)


def _int8_keeping_float(converter, ops, float_outputs: bool = False, layers=()) -> bytes:
    """Full-int8 conversion (calibrated on the converter's representative dataset) with `ops`, and
    every op whose output's name holds one of `layers`, left in float between DEQUANTIZE /
    QUANTIZE: TFLite's selective quantization, as `tf.lite.experimental.QuantizationDebugger`
    does it. The calibrated ranges XNNPACK could not
    take (empty ones) are widened first (see `widen_ranges_for_xnnpack`). `float_outputs`: the
    outputs keep their float type (a DEQUANTIZE ends each); the image input is integer either way
    (uint8 stays uint8; a float image would stay float)."""
    from tensorflow.lite.python.convert import mlir_quantize

    from mtl_tf.export.ranges import widen_ranges_for_xnnpack

    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # the float graph with min/max per tensor
    calibrated, _ = widen_ranges_for_xnnpack(converter.convert())
    return mlir_quantize(calibrated, disable_per_channel=converter._experimental_disable_per_channel,
                         fully_quantize=not float_outputs, denylisted_ops=list(ops),
                         denylisted_nodes=_op_outputs_named(calibrated, layers))


def _op_outputs_named(model: bytes, parts) -> list[str]:
    """The output tensor names (the quantizer's node names) of the ops of a .tflite flatbuffer
    whose output's name holds one of `parts`."""
    graph = _parse_model(model)[1].subgraphs[0]
    names = [graph.tensors[i].name.decode() for op in graph.operators for i in (op.outputs if op.outputs is not None else [])]
    return [name for name in names if any(part in name for part in parts)]


def write_atomic(path: Path, data: bytes) -> None:
    """Write next to `path`, then rename: a failure never leaves a half-written file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an artifact is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_tflite(model, folder: Path, quantization: str = "float32", representative=None) -> Path:
    """`folder/model.tflite` from a Keras multitask model (raw outputs per task); returns its path."""
    work = Path(tempfile.mkdtemp(prefix="mtl_tf_export_"))
    try:
        saved = export_saved_model(model, work / "saved_model", "uint8" if quantization == "int8" else None)
        data = convert_tflite(saved, quantization, representative)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = Path(folder) / "model.tflite"
    write_atomic(path, data)
    return path


def tflite_signature(path: Path) -> tuple[dict, dict]:
    """(inputs, outputs) of the artifact's serving signature: name -> shape, dtype and
    quantization (real = scale * (q - zero_point); scale 0: not quantized)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serve")

    def spec(d):
        return {
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])},
        }

    return ({n: spec(d) for n, d in runner.get_input_details().items()},
            {n: spec(d) for n, d in runner.get_output_details().items()})


def _read_model(path: Path):
    return _parse_model(Path(path).read_bytes())


def _parse_model(buf: bytes):
    """(the flatbuffer schema module, the .tflite model `buf` as its object tree)."""
    from tensorflow.lite.python import schema_py_generated as schema

    return schema, schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))


def builtin_only(path: Path) -> list[str]:
    """The names of custom/Flex ops in a .tflite (empty when everything is a builtin)."""
    schema, model = _read_model(path)
    return [
        (op.customCode or b"").decode()
        for op in model.operatorCodes
        if max(op.builtinCode, op.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM
    ]


def tflite_ops(path: Path) -> list[tuple[str, str]]:
    """(builtin op name, dtype of its first input) for every operator of the main subgraph,
    e.g. ("CONV_2D", "INT8"), to check what a quantized artifact really computes in."""
    schema, model = _read_model(path)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        first = next((i for i in (op.inputs if op.inputs is not None else []) if i >= 0), None)
        ops.append((name, type_names[graph.tensors[first].type] if first is not None else "NONE"))
    return ops


# Input ranges narrower than this are treated as empty (dead activations of an untrained model): the
# converter then widens the bias scale so the bias fits int32, which is not a mismatch.
EMPTY_RANGE = 2e-3


def bias_scale_mismatches(path: Path, tolerance: float = 0.05) -> list[str]:
    """Names of the int8 convolutions whose int32 bias scale is not input scale x kernel scale
    (within `tolerance`: the converter nudges ranges onto the int8 grid, a few 1/255ths).

    LiteRT adds the bias as is, so a mismatch is a wrong bias. The converter makes one when it
    quantizes the bias with a calibrated input range and then gives the input another range
    (seen in QAT graphs: a FakeQuant-less average pool between two FakeQuant ranges).
    """
    schema, model = _read_model(path)
    graph = model.subgraphs[0]
    convs = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D,
             schema.BuiltinOperator.FULLY_CONNECTED}
    wrong = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        inputs = list(op.inputs) if op.inputs is not None else []
        if max(code.builtinCode, code.deprecatedBuiltinCode) not in convs or len(inputs) < 3 or inputs[2] < 0:
            continue
        x, kernel, bias = (graph.tensors[i] for i in inputs[:3])
        if any(t.quantization is None or t.quantization.scale is None for t in (x, kernel, bias)):
            continue  # a float op
        if x.quantization.scale[0] * 255 < EMPTY_RANGE:
            continue  # an input (nearly) zero on all calibration data: the converter rescales the bias
        expected = np.asarray(kernel.quantization.scale) * x.quantization.scale[0]
        if np.max(np.abs(np.asarray(bias.quantization.scale) / expected - 1)) > tolerance:
            wrong.append(kernel.name.decode())
    return wrong
