"""Calibrated activation ranges widened where XNNPACK could not take the int8 graph.

Calibration records each tensor's min/max over the representative images. A tensor that is 0 on
all of them (a dead ReLU, common in barely trained models) gets an empty range, which TFLite's
quantizer widens to only 2e-6 (scale 7.8e-9). XNNPACK rejects an int8 op whose rescale factor is
out of its kernels' range (convolution, fully connected: input scale x kernel scale / output scale
< 256, which a dead conv output breaks; add: each input scale / output scale in [2^-10, 2^8) and
multiply: the product / output scale < 256 in XNNPACK's operator checks, kept for builds that have
them), and one rejected op fails the whole delegate: LiteRT then runs its builtin kernels,
LiteRT.js returns wrong outputs. Widening such a range loses nothing: an output scale finer than the accumulator's step
(input scale x kernel scale) cannot hold more information, and a dead tensor stays at its zero
point either way. Live tensors keep their calibrated ranges.
"""

from __future__ import annotations

import numpy as np

# Kernel (input 1) layouts whose per-channel scale the quantizer takes: the largest one counts.
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Stay this far inside XNNPACK's limits: the quantizer nudges ranges onto the int8 grid and makes
# some ops (concatenation, reshape) share one scale, so the final scales differ a little from ours.
MARGIN = 16
MAX_PASSES = 10  # widening a tensor can tighten the ops that read it: repeat until nothing changes


def widen_ranges_for_xnnpack(calibrated: bytes) -> tuple[bytes, list[str]]:
    """(the calibrated model with the ranges XNNPACK needs, names of the widened tensors).
    `calibrated`: a TFLite model with min/max statistics per tensor (calibration only)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    graph = _Graph(model)
    widened: set[int] = set()
    for _ in range(MAX_PASSES):
        changed = {t for op in model.subgraphs[0].operators for t in graph.apply_rules(op)}
        if not changed:
            break
        widened |= changed
    if not widened:
        return calibrated, []
    names = sorted(model.subgraphs[0].tensors[i].name.decode() for i in widened)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), names


class _Graph:
    """The main subgraph's calibrated ranges, constants and operator names."""

    def __init__(self, model):
        from tensorflow.lite.python import schema_py_generated as schema

        self.model, self.tensors = model, model.subgraphs[0].tensors
        op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.op_names = [op_names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]
        self.float32 = schema.TensorType.FLOAT32

    def stats(self, i: int):
        q = self.tensors[i].quantization
        return q if q is not None and q.min is not None and q.max is not None and len(q.min) == 1 else None

    def scale(self, i: int) -> float | None:
        """The int8 scale of a calibrated tensor's range (which always holds 0), or of a constant's
        largest magnitude (symmetric, as the quantizer takes weights)."""
        q = self.stats(i)
        if q is not None:
            return (max(float(q.max[0]), 0.0) - min(float(q.min[0]), 0.0)) / 255
        t = self.tensors[i]
        data = self.model.buffers[t.buffer].data
        if t.type != self.float32 or data is None or len(data) == 0:
            return None
        return float(np.max(np.abs(np.frombuffer(bytes(data), np.float32)))) / 127

    def at_least(self, i: int, scale: float) -> bool:
        """Widen tensor i's range (upwards) to at least 255 x `scale`; whether it changed."""
        q = self.stats(i)
        low = min(float(q.min[0]), 0.0) if q is not None else 0.0
        if q is None or max(float(q.max[0]), 0.0) - low >= 255 * scale * (1 - 1e-6):
            return False
        q.max = [np.float32(low + 255 * scale)]
        return True

    def apply_rules(self, op) -> list[int]:
        """Widen the ranges around one op so its rescale factors fit XNNPACK; the tensors changed."""
        name = self.op_names[op.opcodeIndex]
        inputs = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        out = int(op.outputs[0]) if op.outputs is not None and len(op.outputs) else None
        if out is None or self.stats(out) is None or len(inputs) < 2:
            return []
        scales = [self.scale(i) for i in inputs[:2]]
        if None in scales:
            return []
        changed = []
        if name in CONV_OPS or name == "MUL":  # input x kernel (or the other factor) / output < 256
            if self.at_least(out, scales[0] * scales[1] * MARGIN / 256):
                changed.append(out)
        elif name in ("ADD", "SUB"):  # each input / output in [2^-10, 2^8)
            if self.at_least(out, max(scales) * MARGIN / 256):
                changed.append(out)
            for i in inputs[:2]:
                if self.at_least(i, self.scale(out) * MARGIN / 1024):
                    changed.append(i)
        return changed
