"""SSD's L2 normalization in a full-int8 artifact, four ways (README Benchmark): an int8 predictor
conv (3x3, 63 outputs) on a 20x20x512 map (ResNet-50's C3 at 160x160) alone, and after the L2
norm as `L2_NORMALIZATION` kept float (the form before ARTIFACT_FORMAT 10: LiteRT's builtin
kernel), written with MEAN / RSQRT / MUL all in int8, and the same kept float (XNNPACK takes it;
the form `L2Normalization` and `FLOAT_LAYERS_IN_INT8` now give). Prints each graph's
ops, its mean relative error against the float graph, and p50 latency (LiteRT, 2 threads,
round-robin, 250 timed rounds).

    PYTHONPATH=. python docs/bench/l2norm_int8_ab.py
"""
import time

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from mtl_tf.export.tflite import _int8_keeping_float, tflite_ops

SHAPE = (1, 20, 20, 512)
rng = np.random.default_rng(0)
CALIBRATION = [rng.gamma(1.0, 1.0, SHAPE).astype(np.float32) for _ in range(8)]  # ReLU-like features
KERNEL = tf.constant(rng.normal(0, 0.05, (3, 3, 512, 63)).astype(np.float32))
SCALE = tf.constant(np.full(512, 20.0, np.float32))


def fused(x):  # the converter fuses this into L2_NORMALIZATION
    return x * tf.math.rsqrt(tf.reduce_sum(tf.square(x), -1, keepdims=True) + 1e-10) * SCALE


def via_mean(x):  # MUL, MEAN, MUL, ADD, RSQRT, MUL: no fusion
    return (x * SCALE) * tf.math.rsqrt(tf.reduce_mean(x * x, -1, keepdims=True) * float(SHAPE[-1]) + 1e-10)


VARIANTS = {  # name: (graph before the conv, ops kept float)
    "conv alone": (lambda x: x, ()),
    "L2_NORMALIZATION float (before)": (fused, ("L2_NORMALIZATION",)),
    "mean form, int8": (via_mean, ()),
    "mean form, float (shipped)": (via_mean, ("MEAN", "RSQRT", "MUL", "ADD")),
}


def int8_model(norm, float_ops) -> bytes:
    fn = tf.function(lambda x: tf.nn.conv2d(norm(x), KERNEL, 1, "SAME"), input_signature=[tf.TensorSpec(SHAPE)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image] for image in CALIBRATION)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return _int8_keeping_float(converter, float_ops)


def main() -> None:
    interpreters = {}
    for name, (norm, float_ops) in VARIANTS.items():
        data = int8_model(norm, float_ops)
        interpreter = Interpreter(model_content=data, num_threads=2)
        interpreter.allocate_tensors()
        given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        scale, zero = given["quantization"]
        interpreter.set_tensor(given["index"], np.clip(np.round(CALIBRATION[0] / scale + zero), -128, 127).astype(np.int8))
        interpreter.invoke()
        scale, zero = taken["quantization"]
        got = (interpreter.get_tensor(taken["index"]).astype(np.float32) - zero) * scale
        expected = tf.nn.conv2d(norm(tf.constant(CALIBRATION[0])), KERNEL, 1, "SAME").numpy()
        ops = sorted({f"{op} {dtype}" for op, dtype in _ops(data)})
        print(f"{name}: relative error {np.abs(got - expected).mean() / np.abs(expected).mean():.3f}; ops {ops}")
        interpreters[name] = interpreter
    times = {name: [] for name in interpreters}
    for _ in range(300):
        for name in rng.permutation(list(interpreters)):
            started = time.perf_counter()
            interpreters[name].invoke()
            times[name].append((time.perf_counter() - started) * 1e3)
    for name, samples in times.items():
        print(f"{name}: p50 {np.median(samples[50:]):.3f} ms")


def _ops(data: bytes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(data)
        return tflite_ops(path)


if __name__ == "__main__":
    main()
