"""The Android demo's model-contract core (android_demo/, plain Java) against the Python decoder.

The Java classes the app uses to read metadata.json, encode the input, dequantize the outputs,
decode SSD boxes, run per-class NMS and take the segmentation argmax are compiled with javac and
run on a desktop JVM over the raw output tensors of LiteRT artifacts (float32, full int8 with
uint8 and int8 inputs, in-graph NMS); what they decode must equal mtl-tf's Predictor on the same artifacts.
Skipped where no JDK is installed.
"""

import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT

JAVA_SOURCES = [ROOT / "android_demo" / "app" / "src" / "main" / "java" / "dev" / "mtltf" / "demo" / "core",
                ROOT / "android_demo" / "core-test" / "src"]
# name: (quantization, NMS in the graph, image input type)
VARIANTS = {"float32": ("float32", False, "uint8"), "int8": ("int8", False, "uint8"),
            "int8_input_int8": ("int8", False, "int8"), "float32_nms": ("float32", True, "uint8")}
NUM_IMAGES = 3

pytestmark = pytest.mark.skipif(not (shutil.which("javac") and shutil.which("java")), reason="needs a JDK (javac, java)")


def _floats(path):
    return np.fromfile(path, "<f4")


def _java_detections(frame, task="detection"):
    rows = [line.split() for line in (frame / "java_result.txt").read_text().splitlines()]
    rows = [r[2:] for r in rows if r[0] == "det" and r[1] == task]
    values = np.asarray(rows, np.float64).reshape(-1, 6)
    return values[:, 2:].astype(np.float32), values[:, 1].astype(np.float32), values[:, 0].astype(int)


@pytest.fixture(scope="module")
def decoded(tiny_model, tmp_path_factory):
    """{variant: (frame folders, Python predictions)}: artifacts exported, run in LiteRT, their raw
    outputs dumped and decoded by the Java core (one JVM for everything)."""
    from mtl_tf.export.job import Variant, export_variants
    from mtl_tf.export.tflite import open_tflite
    from mtl_tf.inference import dequantize, load_predictor, quantize_input

    work = tmp_path_factory.mktemp("android_core")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (NUM_IMAGES, *tiny_model.image_size, 3), dtype=np.uint8)
    calibration = rng.integers(0, 256, (4, *tiny_model.image_size, 3), dtype=np.uint8)
    variants = [Variant(v, q, tiny_model, nms, input_type=t) for v, (q, nms, t) in VARIANTS.items()]
    paths = export_variants(variants, work / "export", None,
                            lambda: (c[None] for c in calibration), log=lambda _: None)
    raw_detection = np.asarray(tiny_model(images, training=False)["detection"], np.float32)

    command = ["java", "-cp", str(work / "classes"), "dev.mtltf.demo.coretest.DecodeHarness"]
    out = {}
    for variant, path in zip(VARIANTS, paths):
        runner, _ = open_tflite(path)
        details, image_detail = runner.get_output_details(), runner.get_input_details()["image"]
        frames = []
        for i, image in enumerate(images):
            frame = work / variant / str(i)
            frame.mkdir(parents=True)
            fed = quantize_input(image[None], image_detail)
            fed.tofile(frame / "py_input.bin")
            outputs = runner(image=fed)
            for name, value in outputs.items():
                value.tofile(frame / f"{name}.bin")  # little endian on every machine LiteRT runs on here
                dequantize(value, details[name]).astype("<f4").tofile(frame / f"py_dequant_{name}.bin")
            image.tofile(frame / "image.rgb")
            raw_detection[i].astype("<f4").tofile(frame / "raw_detection.bin")
            frames.append(frame)
        out[variant] = frames, load_predictor(path).predict(images)
        command += ["--metadata", str(path.parent / "metadata.json"), *map(str, frames)]

    sources = [str(p) for folder in JAVA_SOURCES for p in sorted(folder.rglob("*.java"))]
    subprocess.run(["javac", "--release", "11", "-d", str(work / "classes"), *sources], check=True,
                   capture_output=True, text=True)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_java_reads_inputs_and_outputs_like_python(decoded, variant):
    frames, expected = decoded[variant]
    for i, frame in enumerate(frames):
        # Input tensor from ARGB pixels: what Python feeds (uint8: the RGB image; int8: pixel - 128).
        assert (frame / "java_input.bin").read_bytes() == (frame / "py_input.bin").read_bytes()
        if VARIANTS[variant][2] == "uint8":
            assert (frame / "py_input.bin").read_bytes() == (frame / "image.rgb").read_bytes()
        # Dequantization with metadata.json's scale and zero point, bit for bit.
        for py in frame.glob("py_dequant_*.bin"):
            java = frame / py.name.replace("py_", "java_")
            np.testing.assert_array_equal(_floats(java), _floats(py), err_msg=py.name)
        # Segmentation: the argmax class map, pixel for pixel.
        mask = np.fromfile(frame / "java_mask_segmentation.bin", np.uint8)
        np.testing.assert_array_equal(mask, expected["segmentation"]["mask"][i].reshape(-1))


@pytest.mark.parametrize("variant", ["float32", "float32_nms"])
def test_java_detections_equal_python_on_float_artifacts(decoded, variant):
    """NMS in the Java core (float32), or the in-graph NMS outputs read back (float32_nms)."""
    frames, expected = decoded[variant]
    det = expected["detection"]
    for i, frame in enumerate(frames):
        n = int(det["num_detections"][i])
        boxes, scores, classes = _java_detections(frame)
        assert n > 0 and len(scores) == n
        np.testing.assert_array_equal(classes, det["classes"][i][:n])
        np.testing.assert_allclose(scores, det["scores"][i][:n], rtol=0, atol=1e-6)
        np.testing.assert_allclose(boxes, det["boxes"][i][:n], rtol=0, atol=1e-6)


def _iou(boxes, i, j):
    """IoU in float32 arithmetic, term for term as the Java core (and TensorFlow's kernel)."""
    yi0, yi1 = sorted((boxes[i, 0], boxes[i, 2]))
    xi0, xi1 = sorted((boxes[i, 1], boxes[i, 3]))
    yj0, yj1 = sorted((boxes[j, 0], boxes[j, 2]))
    xj0, xj1 = sorted((boxes[j, 1], boxes[j, 3]))
    area_i, area_j = (yi1 - yi0) * (xi1 - xi0), (yj1 - yj0) * (xj1 - xj0)
    if area_i <= 0 or area_j <= 0:
        return np.float32(0)
    inter = max(min(yi1, yj1) - max(yi0, yj0), np.float32(0)) * max(min(xi1, xj1) - max(xi0, xj0), np.float32(0))
    return inter / (area_i + area_j - inter)


def _reference_nms(boxes, scores, cfg):
    """The app's NMS contract in NumPy: per class, greedy in descending score with equal scores
    in anchor order, then all classes merged by score (stable), the top max_detections."""
    iou_threshold, score_threshold = np.float32(cfg.nms_iou), np.float32(cfg.score_threshold)
    found = []
    for c in range(scores.shape[1]):
        candidates = np.flatnonzero(scores[:, c] > score_threshold)
        kept = []
        for a in candidates[np.argsort(-scores[candidates, c], kind="stable")]:
            if len(kept) == cfg.max_detections:
                break
            if all(_iou(boxes, a, k) <= iou_threshold for k in kept):
                kept.append(a)
                found.append((scores[a, c], c, boxes[a]))
    found.sort(key=lambda d: -d[0])
    found = [d for d in found if d[0] > 0][:cfg.max_detections]
    return (np.asarray([d[2] for d in found], np.float32).reshape(-1, 4), np.asarray([d[0] for d in found], np.float32),
            np.asarray([d[1] for d in found], int))


@pytest.mark.parametrize("variant", ["int8", "int8_input_int8"])
def test_java_nms_on_the_int8_artifact_follows_its_contract(decoded, tiny_model, variant):
    """int8 scores take few distinct values, so many boxes tie. The Java core takes equal scores
    in anchor order: its detections equal a NumPy reference of that contract exactly, on the
    boxes it decoded from the box encodings and the scores Python dequantized."""
    frames, _ = decoded[variant]
    task = tiny_model.tasks["detection"]
    for frame in frames:
        boxes = _floats(frame / "java_boxes_detection.bin").reshape(-1, 4)
        scores = _floats(frame / "py_dequant_detection_scores.bin").reshape(len(boxes), -1)
        want_boxes, want_scores, want_classes = _reference_nms(boxes, scores, task.config)
        got_boxes, got_scores, got_classes = _java_detections(frame)
        assert len(want_scores) > 0
        np.testing.assert_array_equal(got_classes, want_classes)
        np.testing.assert_array_equal(got_scores, want_scores)
        np.testing.assert_array_equal(got_boxes, want_boxes)


@pytest.mark.parametrize("variant", ["int8", "int8_input_int8"])
def test_java_nms_agrees_with_tensorflow_on_the_int8_artifact(decoded, variant):
    """TensorFlow's combined NMS orders equal scores arbitrarily (a heap), so which of two tied
    boxes suppresses the other may differ from the Java core: nearly every detection of each is
    found in the other's list."""
    frames, expected = decoded[variant]
    det = expected["detection"]
    found = {"python in java": [0, 0], "java in python": [0, 0]}

    def count(key, queries, pool):
        for box, score, cls in zip(*queries):
            same = (np.abs(pool[0] - box).max(-1) < 1e-6) & (np.abs(pool[1] - score) < 1e-6) & (pool[2] == cls)
            found[key][0] += bool(same.any())
            found[key][1] += 1

    for i, frame in enumerate(frames):
        n = int(det["num_detections"][i])
        python = det["boxes"][i][:n], det["scores"][i][:n], det["classes"][i][:n]
        java = _java_detections(frame)
        count("python in java", python, java)
        count("java in python", java, python)
    for key, (matched, total) in found.items():
        assert total > 0 and matched / total > 0.9, (key, matched, total)


def test_java_ssd_decode_equals_the_decode_in_the_graph(decoded, tiny_model):
    """The raw head output decoded in Java with metadata.json's anchors and box_variance gives the
    artifact's detection_boxes / detection_scores (anchors are stored to 6 decimals)."""
    frames, _ = decoded["float32"]
    classes = len(tiny_model.tasks["detection"].classes)
    for frame in frames:
        np.testing.assert_allclose(_floats(frame / "java_raw_detection_boxes.bin"),
                                   _floats(frame / "detection_boxes.bin"), rtol=0, atol=2e-5)
        np.testing.assert_allclose(_floats(frame / "java_raw_detection_scores.bin").reshape(-1, classes),
                                   _floats(frame / "detection_scores.bin").reshape(-1, classes), rtol=0, atol=2e-5)
