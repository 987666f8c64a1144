"""`mtl-tf export`: quantized TFLite, in-graph NMS, ONNX, QAT, --verify and the Jetson runner."""

import json
import shutil
import subprocess
import sys
from collections import Counter

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from click.testing import CliRunner

from conftest import ROOT, tiny_task_configs, write_video
from mtl_tf.cli import main

PER_KIND = {"detection_boxes", "detection_scores", "segmentation_logits"}
# full-int8 artifacts leave box decoding to the app (it loses small objects their IoU in int8)
PER_KIND_INT8 = {"detection_box_encodings", "detection_scores", "segmentation_logits"}
WITH_NMS = {"detection_boxes", "detection_scores", "detection_classes", "detection_count", "segmentation_logits"}


def _invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    """Every variant of the tiny run from one CLI call, checked with --verify (max_drop 0.05)."""
    out = tmp_path_factory.mktemp("exports")
    run = _copy_run(tiny_run, tmp_path_factory.mktemp("verified") / "run", {"segmentation": 0.05, "detection": 0.05})
    with pytest.warns(UserWarning, match="calibration on 8 validation images"):
        result = _invoke("export", run, "--out", out, "--int8", "--fp16", "--dynamic", "--onnx",
                         "--qat", "1", "--calibration", "8", "--verify")
    return out, result.output


@pytest.fixture(scope="module")
def int8_input_export(tiny_run, tmp_path_factory):
    """The int8 artifact again, with an int8 image input (same calibration images)."""
    out = tmp_path_factory.mktemp("int8_input")
    with pytest.warns(UserWarning, match="calibration on 8 validation images"):
        _invoke("export", tiny_run, "--out", out, "--int8", "--int8-input", "int8", "--calibration", "8")
    return out / "int8"


@pytest.fixture(scope="module")
def nms_exports(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("nms_exports")
    _invoke("export", tiny_run, "--out", out, "--nms", "--onnx")
    return out


@pytest.fixture(scope="module")
def val_images(tiny_run):
    from mtl_tf.evaluate.job import split_examples
    from mtl_tf.inference import load_predictor

    examples = split_examples(load_predictor(tiny_run), "val")
    return np.stack([e["image"] for e in examples.as_numpy_iterator()])


def _signature(path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serve")
    return runner.get_input_details(), runner.get_output_details()


@pytest.mark.parametrize("variant", ["int8", "qat_int8"])
def test_int8_artifacts_are_builtin_only_and_compute_in_int8(exports, variant):
    from mtl_tf.export.tflite import builtin_only, tflite_ops

    path = exports[0] / variant / "model.tflite"
    assert builtin_only(path) == []
    ops = tflite_ops(path)
    convs = [dtype for name, dtype in ops if name == "CONV_2D"]
    assert convs and set(convs) == {"INT8"}
    # Float islands only: the tiny model's two SSD L2 norms, x * rsqrt(mean(x * x) * C + eps) * scale
    # (FLOAT_LAYERS_IN_INT8; in QAT their inner ops carry no fake-quant) and, calibrated, the
    # softmax (FLOAT_OPS_IN_INT8; QAT's fake-quants make it int8).
    islands = {"MEAN": 2, "RSQRT": 2, "ADD": 2, "MUL": 8, **({"SOFTMAX": 1} if variant == "int8" else {})}
    assert Counter(name for name, dtype in ops if dtype == "FLOAT32" and name != "QUANTIZE") == islands
    inputs, outputs = _signature(path)
    assert inputs["image"]["dtype"] == np.uint8
    assert {d["dtype"] for d in outputs.values()} == {np.int8}
    assert all(d["quantization"][0] > 0 for d in outputs.values())


def test_every_artifact_has_per_kind_outputs_described_by_its_metadata(exports, tiny_run):
    from mtl_tf.export.onnx import onnx_outputs
    from mtl_tf.export.tflite import tflite_signature
    from mtl_tf.inference import load_predictor

    model = load_predictor(tiny_run).model
    anchors = model.tasks["detection"].num_anchors
    expected_shapes = {"detection_boxes": [1, anchors, 4], "detection_scores": [1, anchors, 4],
                       "segmentation_logits": [1, 64, 64, 5], "detection_box_encodings": [1, anchors, 4]}
    for variant in ["float32", "float16", "dynamic", "int8", "qat_int8", "onnx"]:
        folder = exports[0] / variant
        meta = json.loads((folder / "metadata.json").read_text())
        artifact = folder / meta["artifact"]
        read_back = onnx_outputs(artifact) if variant == "onnx" else tflite_signature(artifact)[1]
        assert set(meta["outputs"]) == set(read_back) == (PER_KIND_INT8 if "int8" in variant else PER_KIND), variant
        assert meta["outputs"] == {k: {**v, "task": k.split("_")[0], "kind": k.split("_", 1)[1]} for k, v in read_back.items()}
        assert {k: v["shape"] for k, v in meta["outputs"].items()} == {k: expected_shapes[k] for k in read_back}
        assert meta["input"]["shape"] == [1, 64, 64, 3] and meta["input"]["dtype"] == "uint8"
        assert "quantization" not in meta["input"]  # plain pixels in every uint8 artifact
        assert meta["tasks"]["detection"]["classes"] == model.tasks["detection"].classes
        assert meta["tasks"]["segmentation"]["classes"] == model.tasks["segmentation"].classes
        np.testing.assert_allclose(meta["tasks"]["detection"]["anchors_cy_cx_h_w"], model.tasks["detection"].anchors, atol=1e-6)
        assert meta["tasks"]["detection"]["nms_iou"] == model.tasks["detection"].config.nms_iou
        assert meta["nms_in_graph"] is False
    int8 = json.loads((exports[0] / "int8" / "metadata.json").read_text())
    assert int8["calibration"] == {"split": "val", "images": 8}
    assert json.loads((exports[0] / "qat_int8" / "metadata.json").read_text())["qat"]["epochs"] == 1


def test_reduced_precision_artifacts_are_smaller(exports):
    size = {v: (exports[0] / v / "model.tflite").stat().st_size for v in ["float32", "float16", "dynamic", "int8"]}
    assert size["float16"] < 0.7 * size["float32"]
    assert size["dynamic"] < 0.5 * size["float32"] and size["int8"] < 0.5 * size["float32"]


def test_int8_outputs_stay_close_to_the_float_model(exports, tiny_run, val_images):
    from mtl_tf.inference import load_predictor

    keras_model = load_predictor(tiny_run)
    int8 = load_predictor(exports[0] / "int8" / "model.tflite")
    keras_raw, int8_raw = keras_model.infer(val_images), int8.infer(val_images)
    keras_mask = np.argmax(keras_raw["segmentation"], -1)
    assert np.mean(np.argmax(int8_raw["segmentation"]["logits"], -1) == keras_mask) > 0.9
    task = keras_model.tasks["detection"]
    boxes, scores = task.decode(keras_raw["detection"])
    # decoded in float from int8 encodings: well under the 1/255 step of an int8 [0, 1] box (XNNPACK,
    # which rounds its fp32 requantization otherwise than LiteRT's builtin kernels: 0.0020 vs 0.0018)
    assert np.mean(np.abs(task.decode_boxes(int8_raw["detection"]["box_encodings"]) - boxes)) < 0.0025
    assert np.mean(np.abs(int8_raw["detection"]["scores"] - scores)) < 0.02


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_artifacts_never_join_box_encodings_and_logits(exports, tiny_run, variant):
    """The artifact takes the head's box encodings and class logits before the head joins them into
    its raw output [1, A, 4 + C + 1]: joined, they would share one int8 scale (the wider range's),
    and the artifact would copy them twice (the join, then the split into outputs)."""
    from ai_edge_litert.interpreter import Interpreter

    from mtl_tf.inference import load_predictor

    task = load_predictor(tiny_run).tasks["detection"]
    raw_shape = [1, task.num_anchors, 4 + len(task.classes) + 1]
    shapes = [t["shape"].tolist() for t in Interpreter(str(exports[0] / variant / "model.tflite")).get_tensor_details()]
    assert [1, task.num_anchors, 4] in shapes and raw_shape not in shapes


def test_int8_input_artifact_takes_pixel_minus_128_and_computes_the_same(exports, int8_input_export, val_images):
    """--int8-input int8: input int8 with scale 1, zero point -128 and no op converting it; the
    graph and its outputs are those of the uint8-input artifact, bit for bit."""
    from mtl_tf.export.tflite import tflite_ops
    from mtl_tf.inference import load_predictor, quantize_input

    path = int8_input_export / "model.tflite"
    meta = json.loads((int8_input_export / "metadata.json").read_text())
    assert meta["input"]["dtype"] == "int8" and meta["input"]["quantization"] == {"scale": 1.0, "zero_point": -128}
    inputs, _ = _signature(path)
    fed = quantize_input(val_images[:1], inputs["image"])
    np.testing.assert_array_equal(fed.astype(int), val_images[:1].astype(int) - 128)
    ops = [name for name, _ in tflite_ops(path)]
    uint8_ops = [name for name, _ in tflite_ops(exports[0] / "int8" / "model.tflite")]
    assert ops[0] not in ("CAST", "QUANTIZE")  # the int8 image feeds the first layer directly
    assert uint8_ops == ["CAST", "QUANTIZE"] + ops  # uint8 -> float -> int8, the only difference
    got, want = load_predictor(path).infer(val_images), load_predictor(exports[0] / "int8" / "model.tflite").infer(val_images)
    for task in want:
        for kind in want[task]:
            np.testing.assert_array_equal(got[task][kind], want[task][kind], err_msg=f"{task} {kind}")


def test_verify_reports_deltas_and_accepts_within_the_thresholds(exports):
    out, output = exports
    for variant in ["float32", "float16", "dynamic", "int8", "qat_int8"]:
        assert f"verify {variant} (artifact vs Keras" in output
    assert "segmentation: miou" in output and "FAIL" not in output
    assert not list(out.glob("*.rejected")) and not list(out.glob(".*"))


def test_in_graph_nms_matches_the_keras_postprocess(nms_exports, tiny_run, val_images):
    from mtl_tf.export.tflite import builtin_only, tflite_ops
    from mtl_tf.inference import load_predictor

    path = nms_exports / "float32_nms" / "model.tflite"
    assert builtin_only(path) == [] and ("NON_MAX_SUPPRESSION_V5", "FLOAT32") in tflite_ops(path)
    assert set(_signature(path)[1]) == WITH_NMS
    keras_model, artifact = load_predictor(tiny_run), load_predictor(path)
    expected = keras_model.predict(val_images)["detection"]
    got = artifact.predict(val_images)["detection"]
    np.testing.assert_array_equal(got["num_detections"], expected["num_detections"])
    assert expected["num_detections"].sum() > 0
    # The same detections, up to boxes at the IoU boundary: TFLite's NMS kernel rounds IoU unlike
    # TensorFlow's (in TensorFlow, per_class_nms equals combined NMS exactly: test below), and the
    # barely trained test model has hundreds of heavily overlapping boxes near the threshold.
    matched = total = 0
    for i, n in enumerate(expected["num_detections"]):
        np.testing.assert_allclose(got["scores"][i][:10], expected["scores"][i][:10], atol=1e-4)
        for box, score, cls in zip(expected["boxes"][i][:n], expected["scores"][i][:n], expected["classes"][i][:n]):
            same = (np.abs(got["boxes"][i][:n] - box).max(-1) < 1e-4) & (np.abs(got["scores"][i][:n] - score) < 1e-4)
            matched += bool(np.any(same & (got["classes"][i][:n] == cls)))
            total += 1
    assert matched / total > 0.9, (matched, total)


def test_per_class_nms_equals_combined_non_max_suppression():
    from mtl_tf.tasks.detection.task import DetectionConfig, per_class_nms

    rng = np.random.default_rng(0)
    centres, sizes = rng.uniform(0.2, 0.8, (300, 2)), rng.uniform(0.05, 0.3, (300, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    scores = rng.permutation(300 * 3).reshape(300, 3).astype(np.float32) / 900  # distinct scores
    cfg = DetectionConfig(classes=["a", "b", "c"], nms_iou=0.5, score_threshold=0.3, max_detections=40)
    ours = per_class_nms(tf.constant(boxes), tf.constant(scores), cfg)
    ref = tf.image.combined_non_max_suppression(boxes[None, :, None], scores[None], 40, 40, 0.5, 0.3, clip_boxes=False)
    n = int(ref.valid_detections[0])
    assert int(ours["count"]) == n == 40
    np.testing.assert_allclose(ours["scores"].numpy(), ref.nmsed_scores[0].numpy())
    np.testing.assert_allclose(ours["boxes"].numpy(), ref.nmsed_boxes[0].numpy())
    np.testing.assert_array_equal(ours["classes"].numpy(), ref.nmsed_classes[0].numpy().astype(int))


def test_onnx_runs_in_onnxruntime_and_matches_keras(exports, nms_exports, tiny_run, val_images):
    import onnxruntime as ort

    from mtl_tf.inference import load_predictor

    keras_model = load_predictor(tiny_run)
    session = ort.InferenceSession(str(exports[0] / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert set(names) == PER_KIND
    raw = keras_model.infer(val_images[:2])
    boxes, scores = keras_model.tasks["detection"].decode(raw["detection"])
    for i in range(2):
        out = dict(zip(names, session.run(names, {"image": val_images[i:i + 1]})))
        np.testing.assert_allclose(out["segmentation_logits"], raw["segmentation"][i:i + 1], atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(out["detection_boxes"], boxes[i:i + 1], atol=1e-4)
        np.testing.assert_allclose(out["detection_scores"], scores[i:i + 1], atol=1e-4)
    session = ort.InferenceSession(str(nms_exports / "onnx_nms" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = keras_model.predict(val_images[:1])["detection"]
    out = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"image": val_images[:1]}))}
    n = int(expected["num_detections"][0])
    assert int(out["detection_count"][0]) == n
    np.testing.assert_allclose(out["detection_scores"][0][:n], expected["scores"][0][:n], atol=1e-4)


def test_jetson_runner_runs_onnx_and_litert_on_a_video_without_tensorflow(exports, nms_exports, int8_input_export,
                                                                        tmp_path):
    write_video(tmp_path / "clip.mp4", frames=4)
    summaries = {}
    for backend, model in [("onnxruntime", nms_exports / "onnx_nms" / "model.onnx"),
                           ("litert", exports[0] / "float32" / "model.tflite"),
                           ("litert_int8", exports[0] / "int8" / "model.tflite"),
                           ("litert_int8input", int8_input_export / "model.tflite")]:
        command = [sys.executable, str(ROOT / "export" / "jetson" / "run.py"), str(model), "--backend", backend.split("_")[0],
                   "--source", str(tmp_path / "clip.mp4"), "--output", str(tmp_path / f"{backend}.mp4"),
                   "--headless", "--min-score", "0", "--json", str(tmp_path / f"{backend}.json")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summaries[backend] = json.loads((tmp_path / f"{backend}.json").read_text())
        video = cv2.VideoCapture(str(tmp_path / f"{backend}.mp4"))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
        assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 80)
    for backend, summary in summaries.items():
        assert summary["backend"] == backend.split("_")[0] and summary["frames"] == 4 and not summary["tensorflow_loaded"]
        assert all(frame["detection"] > 0 for frame in summary["per_frame"])
    # the int8 model fed pixel - 128 (metadata.json's input quantization): the same frames
    for a, b in zip(summaries["litert_int8"]["per_frame"], summaries["litert_int8input"]["per_frame"]):
        assert {k: v for k, v in a.items() if k != "ms"} == {k: v for k, v in b.items() if k != "ms"}
    # the same float model through both runtimes: (nearly) the same masks
    for a, b in zip(summaries["onnxruntime"]["per_frame"], summaries["litert"]["per_frame"]):
        assert np.abs(np.subtract(a["segmentation"], b["segmentation"])).sum() <= 0.01 * 64 * 64


def test_int8_edge_model_with_ssdlite_head_is_builtin_only_and_computes_in_int8(tmp_path):
    """The edge variant (minimalistic MobileNetV3, SSDLite head) in full int8: builtin ops, every
    conv and depthwise conv int8, no HARD_SWISH (XNNPACK has no int8 kernel for it)."""
    from mtl_tf.export.tflite import builtin_only, export_tflite, tflite_ops
    from mtl_tf.model.multitask import MultitaskModel

    tasks = tiny_task_configs()
    tasks["detection"].update(head="ssdlite", feature_levels=4)
    model = MultitaskModel({"name": "mobilenet_v3_small_minimalistic"}, tasks, (64, 64))
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    path = export_tflite(model, tmp_path, "int8", lambda: (image[None] for image in images))
    assert builtin_only(path) == []
    ops = tflite_ops(path)
    names = Counter(name for name, _ in ops)
    assert names["DEPTHWISE_CONV_2D"] > 0 and "HARD_SWISH" not in names, names
    assert names["MUL"] <= 1, names  # the input rescaling; squeeze-excite gates would add one per block
    assert {dtype for name, dtype in ops if name in ("CONV_2D", "DEPTHWISE_CONV_2D")} == {"INT8"}
    inputs, outputs = _signature(path)
    assert inputs["image"]["dtype"] == np.uint8 and {d["dtype"] for d in outputs.values()} == {np.int8}


def _dead_layer_int8(folder, images):
    """A tiny model whose middle ReLU conv is 0 on every image (bias -50), as in barely trained
    models, converted to int8 with float outputs (web_int8): (Keras model, artifact path)."""
    from mtl_tf.export.serving import write_serve_signature
    from mtl_tf.export.tflite import convert_tflite, write_atomic

    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Rescaling(1 / 255)(image))
    dead = keras.layers.Conv2D(4, 3, padding="same", activation="relu", bias_initializer=keras.initializers.Constant(-50.0))(x)
    out = keras.layers.Add()([keras.layers.Conv2D(4, 1)(x), keras.layers.Conv2D(4, 1)(dead)])
    model = keras.Model(image, out)
    saved = write_serve_signature(model, folder / "saved_model", lambda im: {"out": model(im)}, "uint8")
    path = folder / "model.tflite"
    write_atomic(path, convert_tflite(saved, "int8", lambda: (im[None] for im in images), float_outputs=True))
    return model, path


def test_int8_of_a_model_with_a_dead_layer_is_taken_by_xnnpack(tmp_path, monkeypatch):
    """An all-zero ReLU output calibrates to an empty range; the quantizer would give it scale ~8e-9
    and XNNPACK refuses the conv writing it (input x kernel / output scale >= 256): the export
    widens such ranges, so XNNPACK (and LiteRT.js) run the graph, with the same outputs."""
    import mtl_tf.export.ranges
    from mtl_tf.export.litert import open_tflite

    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    model, path = _dead_layer_int8(tmp_path, images)
    runner, delegate = open_tflite(path)
    assert delegate == "XNNPACK"
    want = model(images.astype(np.float32)).numpy()
    got = np.concatenate([runner(image=im[None])["out"] for im in images])
    assert np.max(np.abs(got - want)) < 0.03 * np.ptp(want)
    # without the widening, XNNPACK refuses the very same graph
    monkeypatch.setattr(mtl_tf.export.ranges, "widen_ranges_for_xnnpack", lambda calibrated: (calibrated, []))
    assert open_tflite(_dead_layer_int8(tmp_path / "plain", images)[1])[1] != "XNNPACK"


def test_fake_quantized_model_follows_the_float_model(tiny_model):
    from mtl_tf.export.qat import leaf_layers, quantize_model

    qat = quantize_model(tiny_model)
    kinds = Counter(type(layer).__name__ for layer in leaf_layers(qat))
    # convs feeding a BatchNorm stay plain (the converter folds and quantizes them), the others not
    original = Counter(type(layer).__name__ for layer in leaf_layers(tiny_model))
    assert kinds["Conv2D"] == original["BatchNormalization"] and kinds["QuantConv2D"] > 0
    assert kinds["Conv2D"] + kinds["QuantConv2D"] == original["Conv2D"]
    assert kinds["FakeQuant"] > 10
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    qat(images, training=True)  # sets the activation ranges (BatchNorm stays frozen)
    ref, got = tiny_model(images), qat(images)
    scale = float(np.ptp(ref["segmentation"]))
    assert np.max(np.abs(got["segmentation"] - ref["segmentation"])) < 0.1 * scale
    assert not np.array_equal(got["segmentation"], ref["segmentation"])  # quantization did happen


def test_converted_qat_model_matches_the_fake_quantized_model(tmp_path):
    """The converter keeps the learned FakeQuant ranges: the int8 artifact computes what the
    fake-quantized Keras model computes, to a couple of quantization steps, with every int32
    bias at input scale x kernel scale (a wrong bias scale cost 8 mIoU points here once)."""
    from ai_edge_litert.interpreter import Interpreter

    from mtl_tf.export.qat import quantize_model
    from mtl_tf.export.serving import export_serving_model, serving_outputs
    from mtl_tf.export.tflite import bias_scale_mismatches, convert_tflite

    from conftest import tiny_task_configs
    from mtl_tf.model.multitask import MultitaskModel

    keras.utils.set_random_seed(0)  # the same weights every run: the bounds below are in steps
    qat = quantize_model(MultitaskModel({"name": "tiny", "width": 8}, tiny_task_configs(), (64, 64)))
    images = np.random.default_rng(1).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    qat(images, training=True)  # the activation ranges
    saved = export_serving_model(qat, tmp_path / "saved_model", int8_input="uint8")
    path = tmp_path / "model.tflite"
    path.write_bytes(convert_tflite(saved, "int8", lambda: (image[None] for image in images)))
    assert bias_scale_mismatches(path) == []
    runner = Interpreter(model_path=str(path)).get_signature_runner("serve")
    scale, zero = runner.get_output_details()["segmentation_logits"]["quantization"]
    for image in images[:2]:
        want = serving_outputs(qat, image[None])["segmentation_logits"].numpy()
        got = scale * (runner(image=image[None])["segmentation_logits"].astype(np.float32) - zero)
        assert np.mean(np.abs(got - want)) < 1.5 * scale
        assert np.max(np.abs(got - want)) < 8 * scale  # rounding through the layers; the bias bug: ~10 on average


def _copy_run(run, folder, max_drop):
    folder.mkdir()
    shutil.copy(run / "model.keras", folder / "model.keras")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"]["max_drop"] = max_drop
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder


def test_verify_rejects_a_degraded_artifact_and_keeps_the_good_one(exports, tiny_run, tmp_path, monkeypatch):
    from mtl_tf.tasks.segmentation import SegmentationTask

    run = _copy_run(tiny_run, tmp_path / "run", {"segmentation": 0.0, "detection": 0.0})
    out = tmp_path / "out"
    shutil.copytree(exports[0] / "float32", out / "float32")  # a good artifact of the same model
    good = (out / "float32" / "model.tflite").read_bytes()

    # a degraded artifact: every pixel moved to the next class
    monkeypatch.setattr(SegmentationTask, "export_outputs", lambda self, raw, nms=False, integer=False: {"logits": tf.roll(raw, 1, -1)})
    result = _invoke("export", run, "--out", out, "--verify", code=1)
    assert "float32: rejected by --verify: segmentation miou dropped" in result.output
    assert (out / "float32.rejected" / "model.tflite").is_file()
    assert (out / "float32" / "model.tflite").read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == ["float32", "float32.rejected"]


def test_a_failed_onnx_conversion_keeps_the_previous_artifact(tmp_path, monkeypatch):
    from mtl_tf.export import job, onnx as onnx_export

    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"good")

    def broken(*args, **kwargs):
        raise onnx_export.ExportError("tf2onnx failed on purpose")

    monkeypatch.setattr(onnx_export, "convert_onnx", broken)
    with pytest.raises(job.ExportError, match="failed on purpose"):
        job.write_variant(job.Variant("onnx", "onnx", model=None), tmp_path, tmp_path / "saved_model", None)
    assert (tmp_path / "onnx" / "model.onnx").read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]


def test_export_errors_are_one_line_messages(exports, tmp_path):
    result = _invoke("export", exports[0] / "int8" / "model.tflite", "--out", tmp_path, code=1)
    assert "export needs a run folder or a .keras file" in result.output and "Traceback" not in result.output


def test_recipe_export_section_is_strict(tmp_path):
    from conftest import TINY_RECIPE
    from mtl_tf.config import RecipeError
    from mtl_tf.recipe import load_recipe

    assert load_recipe(TINY_RECIPE, ["export.max_drop.segmentation=0.01"]).export.max_drop == {"segmentation": 0.01}
    with pytest.raises(RecipeError, match="export.max_drop.segmentaton: unknown task 'segmentaton'"):
        load_recipe(TINY_RECIPE, ["export.max_drop.segmentaton=0.01"])
    with pytest.raises(RecipeError, match="export.calibraton_images"):
        load_recipe(TINY_RECIPE, ["export.calibraton_images=10"])
