"""The Android demo's model-contract core (android_demo/, plain Java) against the Python decoder.

The Java classes the app uses to read metadata.json, encode the input, dequantize the outputs,
decode SSD boxes, run per-class NMS, take the segmentation argmax, pick image labels and render
dense maps are compiled with javac and run on a desktop JVM over the raw output tensors of LiteRT
artifacts (float32, full int8 with uint8 and int8 inputs, in-graph NMS); what they decode must
equal mtl-tf's Predictor (and export/jetson/run.py's rendering) on the same artifacts.
Skipped where no JDK is installed.
"""

import importlib.util
import json
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
# A model with the image-label and dense task types (the names differ from the types on purpose).
LABEL_AND_MAP_TASKS = {
    "scene": {"type": "classification", "classes": [f"c{i}" for i in range(6)], "top_k": 3},
    "tags": {"type": "multilabel", "classes": list("abcdef"), "threshold": 0.49},
    "depth": {"type": "depth", "output_stride": 4},
    "surface": {"type": "normals", "output_stride": 8},
    "saliency": {"type": "saliency", "output_stride": 4},
    "edges": {"type": "boundaries", "output_stride": 2},
}

pytestmark = pytest.mark.skipif(not (shutil.which("javac") and shutil.which("java")), reason="needs a JDK (javac, java)")


def _floats(path):
    return np.fromfile(path, "<f4")


def _java_detections(frame, task="detection"):
    rows = [line.split() for line in (frame / "java_result.txt").read_text().splitlines()]
    rows = [r[2:] for r in rows if r[0] == "det" and r[1] == task]
    values = np.asarray(rows, np.float64).reshape(-1, 6)
    return values[:, 2:].astype(np.float32), values[:, 1].astype(np.float32), values[:, 0].astype(int)


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    """The core and the harness compiled for Java 11 (the app's language level)."""
    classes = tmp_path_factory.mktemp("android_classes")
    sources = [str(p) for folder in JAVA_SOURCES for p in sorted(folder.rglob("*.java"))]
    subprocess.run(["javac", "--release", "11", "-d", str(classes), *sources], check=True,
                   capture_output=True, text=True)
    return classes


def _export_and_decode(model, variants, work, classes, seed, raw_outputs=()):
    """{variant: (frame folders, Python predictions)}: `variants` ({name: Variant}) of `model`
    exported (calibrated on random images), run in LiteRT on NUM_IMAGES random images, their raw
    outputs dumped and decoded by the Java core (one JVM for everything). `raw_outputs`: tasks
    whose Keras raw output is dumped too."""
    from mtl_tf.export.job import export_variants
    from mtl_tf.export.tflite import open_tflite
    from mtl_tf.inference import dequantize, load_predictor, quantize_input

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (NUM_IMAGES, *model.image_size, 3), dtype=np.uint8)
    calibration = rng.integers(0, 256, (4, *model.image_size, 3), dtype=np.uint8)
    paths = export_variants(list(variants.values()), work / "export", None,
                            lambda: (c[None] for c in calibration), log=lambda _: None)
    raw = {task: np.asarray(model(images, training=False)[task], np.float32) for task in raw_outputs}

    command = ["java", "-cp", str(classes), "dev.mtltf.demo.coretest.DecodeHarness"]
    out = {}
    for variant, path in zip(variants, paths):
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
            for task, value in raw.items():
                value[i].astype("<f4").tofile(frame / f"raw_{task}.bin")
            frames.append(frame)
        out[variant] = frames, load_predictor(path).predict(images)
        command += ["--metadata", str(path.parent / "metadata.json"), *map(str, frames)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def decoded(tiny_model, java_classes, tmp_path_factory):
    """The detection + segmentation model's artifacts (VARIANTS), decoded (see _export_and_decode)."""
    from mtl_tf.export.job import Variant

    variants = {v: Variant(v, q, tiny_model, nms, input_type=t) for v, (q, nms, t) in VARIANTS.items()}
    return _export_and_decode(tiny_model, variants, tmp_path_factory.mktemp("android_core"), java_classes, seed=3,
                              raw_outputs=("detection",))


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
        # Detections of equal score may come in either order: compare each side sorted by
        # (score, class, box), which is the same list whatever the order of ties.
        ours, theirs = _by_value(scores, classes, boxes), _by_value(det["scores"][i][:n], det["classes"][i][:n], det["boxes"][i][:n])
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def _by_value(scores, classes, boxes) -> np.ndarray:
    """Rows (score, class, box) sorted by score (to 1e-5), class, then box coordinates."""
    rows = np.column_stack([np.asarray(scores, np.float64), np.asarray(classes, np.float64), np.asarray(boxes, np.float64)])
    keys = [rows[:, k] for k in range(rows.shape[1] - 1, 1, -1)] + [rows[:, 1], np.round(rows[:, 0], 5)]
    return rows[np.lexsort(keys)]


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


# ------------------------------------------------------------------ image labels and dense maps
def _jetson_runner():
    spec = importlib.util.spec_from_file_location("jetson_run", ROOT / "export" / "jetson" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def labels_and_maps(java_classes, tmp_path_factory):
    """A tiny model with classification, multilabel, depth, normals, saliency and boundaries
    tasks (seeded weights), exported to float32 and full int8, decoded (see _export_and_decode)."""
    import keras

    from mtl_tf.export.job import Variant
    from mtl_tf.model.multitask import MultitaskModel

    keras.utils.set_random_seed(5)  # multilabel probabilities on both sides of 0.49 and of 0.5
    model = MultitaskModel({"name": "tiny", "width": 8}, LABEL_AND_MAP_TASKS, (64, 64))
    variants = {v: Variant(v, v, model) for v in ("float32", "int8")}
    return _export_and_decode(model, variants, tmp_path_factory.mktemp("android_labels"), java_classes, seed=3)


def _java_lines(frame, kind):
    return [line.split()[1:] for line in (frame / "java_result.txt").read_text().splitlines() if line.startswith(kind)]


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_java_image_labels_equal_python(labels_and_maps, variant):
    """Classification: the config's top_k classes, best first, equal probabilities in class order
    (tf.math.top_k, as the Predictor); multilabel: the labels at or above metadata.json's
    threshold (0.49, not the default 0.5), with their probabilities; both as the Jetson runner."""
    frames, expected = labels_and_maps[variant]
    run = _jetson_runner()
    meta = json.loads((frames[0].parent.parent / "export" / variant / "metadata.json").read_text())
    threshold_matters = False
    for i, frame in enumerate(frames):
        lines = _java_lines(frame, "label ")
        got = {task: [(int(c), np.float32(p)) for t, c, p in lines if t == task] for task in ("scene", "tags")}
        scene, tags = expected["scene"], expected["tags"]
        assert got["scene"] == list(zip(scene["top_classes"][i].tolist(), scene["top_scores"][i]))
        present = np.flatnonzero(tags["present"][i])
        assert got["tags"] == list(zip(present.tolist(), tags["probabilities"][i][present]))
        threshold_matters |= not np.array_equal(present, np.flatnonzero(tags["probabilities"][i] >= 0.5))
        outputs = {p.stem[len("py_dequant_"):]: _floats(p)[None] for p in frame.glob("py_dequant_*.bin")}
        runner = run.analyse({k: v.reshape(meta["outputs"][k]["shape"]) for k, v in outputs.items()}, meta, 0.3)
        assert [c for c, _ in got["scene"]] == runner["scene"]["labels"]
        assert [c for c, _ in got["tags"]] == runner["tags"]["labels"]
    assert threshold_matters


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_java_dense_maps_equal_the_jetson_rendering(labels_and_maps, variant):
    """Each dense task's map, rendered by the Java core at the output's resolution from the
    dequantized output, equals export/jetson/run.py's `dense_rgb` pixel for pixel (both compute
    the colours in float32 / float64 term for term and round half up), and is opaque."""
    frames, _ = labels_and_maps[variant]
    run = _jetson_runner()
    meta = json.loads((frames[0].parent.parent / "export" / variant / "metadata.json").read_text())
    dense = {t: c["type"] for t, c in LABEL_AND_MAP_TASKS.items() if c["type"] not in ("classification", "multilabel")}
    for frame in frames:
        sizes = {task: (int(h), int(w)) for task, h, w in _java_lines(frame, "map ")}
        assert sizes.keys() == dense.keys()
        for task, task_type in dense.items():
            name, spec = next((n, o) for n, o in meta["outputs"].items() if o["task"] == task)
            value = _floats(frame / f"py_dequant_{name}.bin").reshape(spec["shape"])[0]
            assert sizes[task] == value.shape[:2] == (64 // LABEL_AND_MAP_TASKS[task]["output_stride"],) * 2
            argb = np.fromfile(frame / f"java_map_{task}.argb", np.uint8).reshape(*value.shape[:2], 4)
            assert (argb[..., 0] == 255).all()
            want = run.dense_rgb(value, task_type)
            np.testing.assert_array_equal(argb[..., 1:], want, err_msg=f"{variant} {task}")
            assert len(np.unique(want.reshape(-1, 3), axis=0)) > 1, task  # not a flat map


def test_java_multilabel_threshold_is_inclusive(labels_and_maps, java_classes, tmp_path):
    """A label whose probability equals the threshold is present: the int8 artifact's metadata
    rewritten with the threshold set to a probability one of its frames gives."""
    frames, _ = labels_and_maps["int8"]
    meta = json.loads((frames[0].parent.parent / "export" / "int8" / "metadata.json").read_text())
    probabilities = np.stack([_floats(f / "py_dequant_tags_probabilities.bin") for f in frames])
    threshold = float(np.sort(probabilities[0])[3])  # one of its values
    meta["tasks"]["tags"]["threshold"] = threshold
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    copies = [shutil.copytree(f, tmp_path / f.name) for f in frames]
    done = subprocess.run(["java", "-cp", str(java_classes), "dev.mtltf.demo.coretest.DecodeHarness",
                           "--metadata", str(tmp_path / "metadata.json"), *map(str, copies)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = [[int(c) for t, c, _ in _java_lines(frame, "label ") if t == "tags"] for frame in copies]
    assert got == [np.flatnonzero(p >= np.float32(threshold)).tolist() for p in probabilities]
    assert threshold in probabilities[0][got[0]]  # the label at the threshold is among them
