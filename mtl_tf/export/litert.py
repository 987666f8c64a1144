"""Opening a .tflite in LiteRT, without TensorFlow: what the bench's memory child processes and
the exported-model predictor import (TensorFlow alone adds ~600 MB to a process's RSS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def open_tflite(path: Path, threads: int | None = None):
    """(serving signature runner, delegate name) of a .tflite in LiteRT, prepared and run once.

    LiteRT applies XNNPACK, its default CPU delegate. XNNPACK refuses some int8 graphs at prepare
    time (e.g. tensors whose calibrated range is empty); those run on the builtin kernels, and
    the delegate name says so.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner("serve")
        zeros_call(runner)
        return runner, "XNNPACK"
    except RuntimeError as err:
        if "XNNPACK" not in str(err):
            raise
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    runner = interpreter.get_signature_runner("serve")
    zeros_call(runner)
    return runner, "builtin kernels (XNNPACK failed to prepare)"


def zeros_call(runner):
    spec = runner.get_input_details()["image"]
    return runner(image=np.zeros(spec["shape"], spec["dtype"]))
