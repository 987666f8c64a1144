"""Keras model -> SavedModel -> TFLite (builtin ops only), written atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("float32", "int8")


class ExportError(RuntimeError):
    """The model could not be converted into the requested artifact."""


def export_saved_model(model, folder: Path) -> Path:
    """The model's inference graph as a SavedModel (signature `serve`: image -> task outputs)."""
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def convert_tflite(
    saved_model: Path,
    quantization: str = "float32",
    representative: Callable[[], Iterable[np.ndarray]] | None = None,
) -> bytes:
    """TFLite flatbuffer with builtin ops only: conversion fails rather than fall back to Flex
    (SELECT_TF_OPS), which stock Android LiteRT cannot run.

    "int8" is full-integer quantization calibrated on `representative()`, which yields uint8
    image batches [1, H, W, 3]; the artifact takes uint8 images.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}. Received: {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs representative images to calibrate on")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in representative())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and others
        raise ExportError(f"TFLite conversion with builtin ops only failed: {err}") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write next to `path`, then rename: a failure never leaves a half-written file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_tflite(model, folder: Path, quantization: str = "float32") -> Path:
    """`folder/model.tflite` from a Keras multitask model; returns its path."""
    work = Path(tempfile.mkdtemp(prefix="mtl_tf_export_"))
    try:
        saved = export_saved_model(model, work / "saved_model")
        data = convert_tflite(saved, quantization)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = Path(folder) / "model.tflite"
    write_atomic(path, data)
    return path


def tflite_outputs(path: Path) -> dict:
    """Output name -> shape, dtype and quantization of the artifact's serving signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_signature_runner("serve").get_output_details()
    return {
        name: {
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])},
        }
        for name, d in details.items()
    }


def builtin_only(path: Path) -> list[str]:
    """The names of custom/Flex ops in a .tflite (empty when everything is a builtin)."""
    from tensorflow.lite.python import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    return [
        (op.customCode or b"").decode()
        for op in model.operatorCodes
        if max(op.builtinCode, op.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM
    ]
