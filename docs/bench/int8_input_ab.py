"""A/B of the image input of a full-int8 artifact, timed interleaved in one process (README, Export).

    python docs/bench/int8_input_ab.py [RECIPE] [--threads 2] [--runs 300]

Converts the recipe's trunk three ways and prints p10/p50/p90 ms of each:
- uint8, CAST + QUANTIZE: what `mtl-tf export --int8` writes (uint8 signature, cast, FakeQuant);
- uint8, requantize: a float signature converted with a uint8 input type, which the converter
  turns into a uint8 -> int8 QUANTIZE (requantize) op;
- int8, no op: `--int8-input int8` (the pixel - 128 feeds the first layer).
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_tf.bench.contenders import TRUNK, build_models, calibration_images
from mtl_tf.bench.timing import percentiles, round_robin, tflite_runner
from mtl_tf.recipe import load_recipe
from mtl_tf.export.tflite import convert_tflite, export_saved_model, tflite_ops


def requantize_variant(saved: Path, images: np.ndarray) -> bytes:
    """A float-input SavedModel converted with a uint8 input: uint8 -> int8 QUANTIZE at the start."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serve"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type, converter.inference_output_type = tf.uint8, tf.int8
    return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/bench_mobilenet.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    images = calibration_images(recipe, 16)
    trunk = build_models(recipe)[TRUNK]
    work = Path(tempfile.mkdtemp(prefix="int8_input_ab_"))
    calibration = lambda: (image[None] for image in images)  # noqa: E731
    variants = {
        "uint8, CAST + QUANTIZE": convert_tflite(export_saved_model(trunk, work / "u", "uint8"), "int8", calibration),
        "uint8, requantize": requantize_variant(export_saved_model(trunk, work / "r", "int8"), images),
        "int8, no op": convert_tflite(export_saved_model(trunk, work / "i", "int8"), "int8", calibration),
    }
    runners = {}
    for name, data in variants.items():
        path = work / f"{len(runners)}.tflite"
        path.write_bytes(data)
        print(f"{name}: first ops {[op for op, _ in tflite_ops(path)][:3]}")
        runners[name] = tflite_runner(path, args.threads)
    times = round_robin(runners, args.runs, warmup=20)
    for name, samples in times.items():
        print(f"{name:24s}", "  ".join(f"{q} {v:.3f} ms" for q, v in percentiles(samples).items()))


if __name__ == "__main__":
    main()
