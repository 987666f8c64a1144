#!/usr/bin/env python3
"""Build a TensorRT engine from an mtl-tf ONNX export, on the target (Jetson) itself.

    python3 build_engine.py EXPORT/onnx/model.onnx --fp16
    python3 build_engine.py EXPORT/onnx/model.onnx --int8 --calib-images DIR [--calib-cache FILE]

The engine (model.fp16.engine / model.int8.engine) is written beside model.onnx, so the
metadata.json there describes it too (same input and output names). int8 uses TensorRT's
entropy calibrator (IInt8EntropyCalibrator2) on images from --calib-images (resized to the
model input as raw uint8 RGB, like the runner feeds it); the calibration cache is written once
and reused by later builds (pass only --calib-cache to rebuild without images). Needs the
`tensorrt` Python package (JetPack) and `cuda-python` for device buffers; no TensorFlow.
Equivalent with trtexec: `trtexec --onnx=model.onnx --saveEngine=model.fp16.engine --fp16`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def calibration_batches(folder: Path, size: tuple[int, int], limit: int):
    """uint8 RGB images [1, H, W, 3] from `folder`, resized to the model input."""
    import cv2

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        sys.exit(f"{folder}: no calibration images (.jpg/.png/.bmp)")
    for path in files:
        bgr = cv2.imread(str(path))
        if bgr is not None:
            yield cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size[::-1])[None]


def make_calibrator(trt, batches, cache: Path):
    from cuda import cudart

    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration images to the builder; reads/writes the calibration cache."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batches) if batches is not None else iter(())
            self.device = None

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            batch = np.ascontiguousarray(batch)
            if self.device is None:
                self.device = cudart.cudaMalloc(batch.nbytes)[1]
            cudart.cudaMemcpy(self.device, batch.ctypes.data, batch.nbytes,
                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return Calibrator()


def build(onnx_path: Path, precision: str, calib_images: Path | None, calib_cache: Path,
          calib_limit: int, workspace_mb: int) -> Path:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch is the only mode in TensorRT 10 (flag 0); TensorRT 8 needs the flag.
    flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else \
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        sys.exit(f"{onnx_path}: TensorRT cannot parse it:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if precision == "int8":
        if calib_images is None and not calib_cache.is_file():
            sys.exit("--int8 needs --calib-images (or an existing --calib-cache)")
        meta = json.loads((onnx_path.parent / "metadata.json").read_text())
        size = tuple(meta["input"]["shape"][1:3])
        batches = calibration_batches(calib_images, size, calib_limit) if calib_images else None
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(trt, batches, calib_cache)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        sys.exit("TensorRT failed to build the engine (see the log above)")
    out = onnx_path.with_name(f"{onnx_path.stem}.{precision}.engine")
    out.write_bytes(bytes(engine))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", type=Path, help="model.onnx written by `mtl-tf export --onnx`")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fp16", action="store_const", dest="precision", const="fp16")
    group.add_argument("--int8", action="store_const", dest="precision", const="int8")
    parser.add_argument("--calib-images", type=Path, help="folder of representative images (int8)")
    parser.add_argument("--calib-cache", type=Path, help="calibration cache (default: beside the ONNX)")
    parser.add_argument("--calib-limit", type=int, default=300, help="at most this many calibration images")
    parser.add_argument("--workspace-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    precision = args.precision or "fp32"
    cache = args.calib_cache or args.onnx.with_name(f"{args.onnx.stem}.calib.cache")
    out = build(args.onnx, precision, args.calib_images, cache, args.calib_limit, args.workspace_mb)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
