#!/usr/bin/env python3
"""Run an mtl-tf export on a camera or a video: masks, dense maps, boxes and image labels drawn,
FPS shown. No TensorFlow.

    python3 run.py EXPORT_DIR_OR_MODEL --source 0                # camera 0, in a window
    python3 run.py EXPORT_DIR --source clip.mp4 --output out.mp4 --headless

MODEL is a TensorRT engine (.engine/.plan), an ONNX model or a .tflite file with the
metadata.json written beside it by `mtl-tf export` (input size, output names, quantization,
class names, post-processing parameters). Given an export folder, the runner picks the first
backend that is installed and has an artifact there: TensorRT, then ONNX Runtime, then LiteRT
(`--backend` forces one). Detection outputs are used as exported: already NMSed (`--nms`
exports) or decoded boxes + class scores, then per-class NMS here (OpenCV).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

BACKENDS = ("tensorrt", "onnxruntime", "litert")
SUFFIXES = {"tensorrt": (".engine", ".plan"), "onnxruntime": (".onnx",), "litert": (".tflite",)}
MAX_LOG_SCALE = float(np.log(1000.0 / 16))  # as mtl_tf/tasks/detection/boxes.py


# ------------------------------------------------------------------ backends
def _installed(backend: str) -> bool:
    import importlib.util

    module = {"tensorrt": "tensorrt", "onnxruntime": "onnxruntime", "litert": "ai_edge_litert"}[backend]
    if backend == "litert" and importlib.util.find_spec(module) is None:
        module = "tflite_runtime"
    return importlib.util.find_spec(module) is not None


def find_model(path: Path, backend: str = "auto") -> tuple[Path, str]:
    """(artifact, backend): `path` itself, or the best artifact under an export folder."""
    path = Path(path)
    wanted = BACKENDS if backend == "auto" else (backend,)
    if path.is_file():
        for name in wanted:
            if path.suffix in SUFFIXES[name]:
                return path, name
        sys.exit(f"{path}: not an artifact of backend {'/'.join(wanted)}")
    for name in wanted:
        if not _installed(name):
            continue
        found = [p for s in SUFFIXES[name] for p in path.rglob(f"*{s}") if _usable(p, path)]
        # Full-int8 artifacts first: the fastest on CPUs and edge accelerators.
        found.sort(key=lambda p: ("int8" not in str(p), str(p)))
        if found:
            return found[0], name
    sys.exit(f"{path}: no artifact for an installed backend among {', '.join(wanted)}")


def _usable(artifact: Path, root: Path) -> bool:
    """False for artifacts `mtl-tf export` did not accept: in a `<variant>.rejected` folder
    (refused by --verify) or in a hidden staging / backup folder (`.<variant>.partial`, `.old`)."""
    folders = artifact.relative_to(root).parent.parts
    return not any(f.endswith(".rejected") or f.startswith(".") for f in folders)


class LiteRT:
    """XNNPACK (LiteRT's default CPU delegate), else the builtin kernels: XNNPACK refuses some int8
    graphs when preparing them (tensors whose calibrated range is empty)."""

    def __init__(self, path: Path, meta: dict, threads: int):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            from tflite_runtime.interpreter import Interpreter, OpResolverType
        self.meta = meta
        self.runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner("serve")
        try:
            self._zeros_call()
        except RuntimeError as err:
            if "XNNPACK" not in str(err):
                raise
            builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=builtin)
            self.runner = interpreter.get_signature_runner("serve")
            print(f"{path.name}: XNNPACK failed to prepare; running on LiteRT's builtin kernels", file=sys.stderr)

    def _zeros_call(self):
        spec = self.runner.get_input_details()["image"]
        self.runner(image=np.zeros(spec["shape"], spec["dtype"]))

    def __call__(self, image):
        return dequantize(self.runner(image=quantize_input(image, self.meta)), self.meta)


class OnnxRuntime:
    def __init__(self, path: Path, meta: dict, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in preferred if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, image):
        return dict(zip(self.names, self.session.run(self.names, {"image": image})))


class TensorRT:
    """A deserialized engine with device buffers for every I/O tensor (TensorRT 8.5+ API)."""

    def __init__(self, path: Path, meta: dict, threads: int):
        import tensorrt as trt
        from cuda import cudart

        self.cudart = cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = cudart.cudaStreamCreate()[1]
        self.host, self.device, self.outputs = {}, {}, []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            self.host[name] = np.empty(tuple(self.engine.get_tensor_shape(name)), dtype)
            self.device[name] = cudart.cudaMalloc(self.host[name].nbytes)[1]
            self.context.set_tensor_address(name, int(self.device[name]))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.outputs.append(name)

    def __call__(self, image):
        cudart = self.cudart
        host = np.ascontiguousarray(image, self.host["image"].dtype)
        cudart.cudaMemcpyAsync(self.device["image"], host.ctypes.data, host.nbytes,
                               cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream)
        self.context.execute_async_v3(self.stream)
        for name in self.outputs:
            cudart.cudaMemcpyAsync(self.host[name].ctypes.data, self.device[name], self.host[name].nbytes,
                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream)
        cudart.cudaStreamSynchronize(self.stream)
        return {name: self.host[name].copy() for name in self.outputs}


RUNNERS = {"tensorrt": TensorRT, "onnxruntime": OnnxRuntime, "litert": LiteRT}


def quantize_input(image: np.ndarray, meta: dict) -> np.ndarray:
    """uint8 pixels as the artifact's input: q = round(pixel / scale) + zero_point when
    metadata.json gives the input a quantization (int8 input: pixel - 128)."""
    spec = meta["input"]
    q = spec.get("quantization", {})
    if not q.get("scale"):
        return image
    dtype = np.dtype(spec["dtype"])
    info = np.iinfo(dtype)
    value = np.round(image.astype(np.float32) / q["scale"]) + q["zero_point"]
    return np.clip(value, info.min, info.max).astype(dtype)


def dequantize(outputs: dict, meta: dict) -> dict:
    """int8/uint8 outputs -> float with metadata.json's scale and zero point."""
    out = {}
    for name, value in outputs.items():
        q = meta["outputs"].get(name, {}).get("quantization", {})
        if q.get("scale") and value.dtype in (np.int8, np.uint8):
            value = q["scale"] * (value.astype(np.float32) - q["zero_point"])
        out[name] = value
    return out


# ------------------------------------------------------------------ post-processing
def by_task(outputs: dict, meta: dict) -> dict:
    """{task: {kind: array without the batch axis}} through metadata.json's output table."""
    tasks: dict = {}
    for name, value in outputs.items():
        spec = meta["outputs"][name]
        tasks.setdefault(spec["task"], {})[spec["kind"]] = np.asarray(value)[0]
    return tasks


def detections(kinds: dict, params: dict, min_score: float):
    """(boxes [N, 4] normalized yxyx, scores [N], classes [N]) above `min_score`."""
    if "count" in kinds:  # NMS ran in the graph
        n = int(np.asarray(kinds["count"]).reshape(-1)[0])
        boxes, scores, classes = kinds["boxes"][:n], kinds["scores"][:n], kinds["classes"][:n].astype(int)
    else:  # decoded boxes and class scores: best class per box, then per-class NMS
        boxes = kinds["boxes"] if "boxes" in kinds else decode_boxes(kinds["box_encodings"], params)
        class_scores = kinds["scores"]
        classes, scores = class_scores.argmax(-1), class_scores.max(-1)
        keep = scores > max(params["score_threshold"], min_score)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        xywh = [[float(b[1]), float(b[0]), float(b[3] - b[1]), float(b[2] - b[0])] for b in boxes]
        picked = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), classes.tolist(), 0.0, params["nms_iou"]) \
            if len(xywh) else []
        picked = np.asarray(picked, int).reshape(-1)[: params["max_detections"]]
        boxes, scores, classes = boxes[picked], scores[picked], classes[picked]
    keep = scores >= min_score
    return boxes[keep], scores[keep], classes[keep]


def decode_boxes(encodings: np.ndarray, params: dict) -> np.ndarray:
    """SSD box encodings [A, 4] (full-int8 artifacts leave decoding to the app) -> normalized yxyx
    boxes, with metadata.json's anchors and box_variance (mtl_tf/tasks/detection/boxes.py)."""
    anchors = np.asarray(params["anchors_cy_cx_h_w"], np.float32)
    t = encodings.astype(np.float32) * np.asarray(params["box_variance"], np.float32)
    cy, cx = t[:, 0] * anchors[:, 2] + anchors[:, 0], t[:, 1] * anchors[:, 3] + anchors[:, 1]
    h, w = np.exp(np.minimum(t[:, 2:], MAX_LOG_SCALE)).T * anchors[:, 2:].T
    return np.clip(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1), 0.0, 1.0)


# Dense task types whose map is a probability: drawn over 0..1 (others over their own min..max).
PROBABILITY_MAPS = ("saliency", "boundaries")


def jet(t: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] of `t` (clipped to [0, 1]) in a jet colour map: channel k of red, green,
    blue = clip(1.5 - |4t - k|, 0, 1) for k = 3, 2, 1, times 255, rounded half up (the web demo's
    formula); in float32, term for term as the Android app's (android_demo/.../core/DenseMap.java)."""
    t = np.clip(np.asarray(t, np.float32), 0, 1)
    levels = [np.clip(np.float32(1.5) - np.abs(np.float32(4) * t - np.float32(k)), 0, 1) for k in (3, 2, 1)]
    return np.floor(np.stack(levels, -1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)


def dense_rgb(value: np.ndarray, task_type: str) -> np.ndarray:
    """uint8 RGB [h, w, 3] of a dense output [h, w, C] at its own resolution: normals as
    (n / |n| + 1) / 2 (zero vectors mid-grey); saliency and boundaries (probabilities) over 0..1
    in `jet`; depth and any other type its first channel over its finite min..max in `jet`.
    Non-finite values are black."""
    value = np.asarray(value, np.float32)
    if task_type == "normals" and value.shape[-1] >= 3:
        x, y, z = (value[..., k].astype(np.float64) for k in range(3))
        length = np.sqrt(x * x + y * y + z * z)
        finite = np.isfinite(length)
        safe = np.where(finite & (length > 0), length, 1.0)
        units = [np.where(length > 0, c / safe, 0.0) for c in (x, y, z)]
        rgb = np.clip(np.floor((np.stack(units, -1) + 1) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    else:
        first = value[..., 0]
        finite = np.isfinite(first)
        low, high = np.float32(0), np.float32(1)
        if task_type not in PROBABILITY_MAPS and finite.any():
            low, high = first[finite].min(), first[finite].max()
        span = np.maximum(high - low, np.float32(1e-6))
        rgb = jet((np.where(finite, first, low) - low) / span)
    rgb[~finite] = 0
    return rgb


def colours(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(40, 256, (n, 3), dtype=np.uint8)


def draw(frame: np.ndarray, results: dict, meta: dict, fps: float) -> np.ndarray:
    """BGR `frame` with masks blended and boxes drawn, FPS in the corner."""
    h, w = frame.shape[:2]
    out = frame.copy()
    for task, r in results.items():
        if "map" in r:  # dense outputs (depth, normals, ...) as colours (dense_rgb), scaled to the frame
            rgb = dense_rgb(r["map"], r["type"])
            heat = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (w, h), interpolation=cv2.INTER_LINEAR)
            out = cv2.addWeighted(out, 0.6, heat, 0.4, 0)
    for task, r in results.items():
        names = meta["tasks"][task]["classes"]
        if "mask" in r:
            mask = cv2.resize(r["mask"].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            out = cv2.addWeighted(out, 0.55, colours(len(names))[mask], 0.45, 0)
    for task, r in results.items():
        names = meta["tasks"][task]["classes"]
        for box, score, cls in zip(*r.get("detections", ((), (), ()))):
            y0, x0, y1, x1 = (box * [h, w, h, w]).astype(int)
            colour = tuple(int(c) for c in colours(len(names))[cls])
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, 2)
            cv2.putText(out, f"{names[cls]} {score:.2f}", (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    line = 40
    for task, r in results.items():
        if "labels" in r:  # image labels, one line per task under the FPS
            names = meta["tasks"][task]["classes"]
            text = ", ".join(f"{names[i]} {float(r['scores'][i]):.2f}" for i in r["labels"]) or "-"
            cv2.putText(out, f"{task}: {text}", (8, line), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            line += 18
    cv2.putText(out, f"{fps:.1f} FPS", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return out


def task_type(meta: dict, task: str) -> str:
    """A task's type from metadata.json (format 3+); older files name tasks after their type."""
    return meta["tasks"][task].get("type", task)


def top_k(probabilities: np.ndarray, k: int) -> list[int]:
    """The indices of the k largest probabilities, largest first; equal ones in index order
    (tf.math.top_k's rule, as mtl-tf's Predictor)."""
    return np.argsort(-np.asarray(probabilities), kind="stable")[:k].tolist()


# What each task type's outputs become: {"mask": class ids}, {"detections": (boxes, scores,
# classes)} or {"labels": class indices, "scores": every class's probability}.
ANALYSERS = {
    "segmentation": lambda kinds, params, min_score: {"mask": kinds["logits"].argmax(-1)},
    "detection": lambda kinds, params, min_score: {"detections": detections(kinds, params, min_score)},
    # Image labels: the config's top_k classes, or every label at or above the task's threshold
    # (metadata.json; the task configs' defaults where absent).
    "classification": lambda kinds, params, min_score: {
        "labels": top_k(kinds["probabilities"], params.get("config", {}).get("top_k", 5)),
        "scores": kinds["probabilities"]},
    "multilabel": lambda kinds, params, min_score: {
        "labels": np.flatnonzero(kinds["probabilities"] >= params.get("threshold", 0.5)).tolist(),
        "scores": kinds["probabilities"]},
}


def analyse(outputs: dict, meta: dict, min_score: float) -> dict:
    """{task: its type's results} (see ANALYSERS); a task of another type whose one output is
    a map gives {"map", "type"} (drawn by `dense_rgb`); other tasks are left out, with a warning once."""
    results = {}
    for task, kinds in by_task(outputs, meta).items():
        kind = task_type(meta, task)
        if kind in ANALYSERS:
            results[task] = ANALYSERS[kind](kinds, meta["tasks"][task], min_score)
        elif len(kinds) == 1 and next(iter(kinds.values())).ndim == 3:
            results[task] = {"map": next(iter(kinds.values())), "type": kind}  # a dense map (see dense_rgb)
        elif kind not in _WARNED:
            _WARNED.add(kind)
            print(f"warning: task {task} has type {kind}, which this runner does not draw", file=sys.stderr)
    return results


_WARNED: set = set()


def summarize(result: dict, params: dict):
    """One task's result of a frame for --json: a mask's class histogram, the number of
    detections, or a map's mean value."""
    if "mask" in result:
        return np.bincount(result["mask"].reshape(-1), minlength=len(params["classes"])).tolist()
    if "detections" in result:
        return len(result["detections"][0])
    if "labels" in result:
        return [params["classes"][i] for i in result["labels"]]
    return round(float(np.mean(result["map"])), 5)


# ------------------------------------------------------------------ main loop
def open_source(source: str):
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        sys.exit(f"{source}: cannot open camera or video")
    return capture


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="export folder, or a .engine/.plan/.onnx/.tflite file")
    parser.add_argument("--source", default="0", help="camera index or video file (default: camera 0)")
    parser.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument("--headless", action="store_true", help="no window (for a board without display)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    parser.add_argument("--min-score", type=float, default=0.3, help="detections drawn above this score")
    parser.add_argument("--threads", type=int, default=4, help="CPU threads (LiteRT, ONNX Runtime)")
    parser.add_argument("--json", type=Path, help="write a per-frame summary (detections, mask histogram, FPS)")
    args = parser.parse_args(argv)

    path, backend = find_model(args.model, args.backend)
    meta = json.loads((path.parent / "metadata.json").read_text())
    model = RUNNERS[backend](path, meta, args.threads)
    height, width = meta["input"]["shape"][1:3]
    capture = open_source(args.source)
    writer, fps, frames, summary = None, 0.0, 0, []
    print(f"{backend}: {path}")
    while not args.max_frames or frames < args.max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        started = time.perf_counter()
        rgb = cv2.cvtColor(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        results = analyse(model(np.ascontiguousarray(rgb[None], np.uint8)), meta, args.min_score)
        elapsed = time.perf_counter() - started
        fps = 1.0 / elapsed if not frames else 0.9 * fps + 0.1 / elapsed
        shown = draw(frame, results, meta, fps)
        frames += 1
        summary.append({
            task: summarize(r, meta["tasks"][task]) for task, r in results.items()
        } | {"ms": round(elapsed * 1000, 2)})
        if args.output:
            if writer is None:
                args.output.parent.mkdir(parents=True, exist_ok=True)
                rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
                writer = cv2.VideoWriter(str(args.output), cv2.VideoWriter_fourcc(*"mp4v"), rate,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(shown)
        if not args.headless:
            cv2.imshow("mtl-tf", shown)
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                break
    capture.release()
    if writer is not None:
        writer.release()
    print(f"{frames} frames, {fps:.1f} FPS (smoothed, model + post-processing)")
    if args.json:
        args.json.write_text(json.dumps({
            "backend": backend, "model": str(path), "frames": frames, "fps": fps,
            "tensorflow_loaded": "tensorflow" in sys.modules, "per_frame": summary,
        }, indent=1))


if __name__ == "__main__":
    main()
