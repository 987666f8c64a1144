"""The browser demo (web_demo/, `mtl-tf demo`) and the web int8 export, end to end in headless
Debian chromium driven by puppeteer-core: the page's decoded results equal the Python Predictor's."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from mtl_tf.cli import main

WEB_DEMO = ROOT / "web_demo"
CHROMIUM = Path("/usr/bin/chromium")
needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("node") is None
    or not (WEB_DEMO / "node_modules" / "puppeteer-core").is_dir()
    or not (WEB_DEMO / "node_modules" / "@litertjs" / "core").is_dir(),
    reason="needs /usr/bin/chromium, node and web_demo/node_modules (apt-get install chromium; npm ci --prefix web_demo)",
)


@pytest.fixture(scope="module")
def web_exports(tiny_run, tmp_path_factory):
    """float32, int8 and web_int8 artifacts of the tiny run, one CLI call."""
    out = tmp_path_factory.mktemp("web_exports")
    with pytest.warns(UserWarning, match="calibration on 8 validation images"):
        result = CliRunner().invoke(main, ["export", str(tiny_run), "--out", str(out), "--int8", "--web", "--calibration", "8"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def scene(tiny_run):
    """Two validation scenes of the tiny recipe (what the model was trained on), uint8 RGB."""
    from mtl_tf.evaluate.job import split_examples
    from mtl_tf.inference import load_predictor

    examples = split_examples(load_predictor(tiny_run), "val").as_numpy_iterator()
    return np.stack([next(examples)["image"] for _ in range(4)])


def test_web_int8_computes_in_int8_with_float_outputs_equal_to_the_int8_artifact(web_exports, scene):
    from mtl_tf.export.tflite import builtin_only, tflite_ops, tflite_signature
    from mtl_tf.inference import load_predictor

    path = web_exports / "web_int8" / "model.tflite"
    meta = json.loads((web_exports / "web_int8" / "metadata.json").read_text())
    assert builtin_only(path) == []
    assert {d for n, d in tflite_ops(path) if n == "CONV_2D"} == {"INT8"}
    inputs, outputs = tflite_signature(path)
    assert inputs["image"]["dtype"] == "uint8" and {o["dtype"] for o in outputs.values()} == {"float32"}
    assert meta["quantization"] == "int8" and meta["outputs_dequantized_in_graph"] is True
    assert set(meta["outputs"]) == set(json.loads((web_exports / "int8" / "metadata.json").read_text())["outputs"])
    assert meta["xnnpack_prepares"] is True  # the 1-epoch model's dead layers no longer stop XNNPACK
    # the same int8 computation: the in-graph DEQUANTIZE gives what the app computes from int8 outputs
    got, want = load_predictor(path).infer(scene), load_predictor(web_exports / "int8" / "model.tflite").infer(scene)
    for task in want:
        for kind in want[task]:
            np.testing.assert_allclose(got[task][kind], want[task][kind], atol=1e-6, err_msg=f"{task} {kind}")


def test_demo_says_how_to_install_the_page_dependencies(web_exports, tmp_path, monkeypatch):
    import mtl_tf.demo

    (tmp_path / "index.html").write_text("<html></html>")
    monkeypatch.setattr(mtl_tf.demo, "WEB_DEMO", tmp_path)
    result = CliRunner().invoke(main, ["demo", str(web_exports), "--port", "0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"npm ci --prefix {tmp_path}" in lines[0] and "node_modules" in lines[0], result.output


def test_demo_errors_name_the_folder(tmp_path):
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "nowhere: no such export folder" in result.output
    result = CliRunner().invoke(main, ["demo", str(tmp_path)])
    assert result.exit_code == 1 and f"{tmp_path}: no TFLite artifact" in result.output


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture
def server(web_exports):
    from mtl_tf.demo import check_web_demo, make_server, start_in_thread

    try:
        check_web_demo()
    except Exception as err:  # noqa: BLE001
        pytest.skip(str(err))
    srv = make_server(web_exports, "127.0.0.1", 0)
    start_in_thread(srv)
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_server_serves_the_page_runtime_and_artifacts_only(server, web_exports):
    srv, url = server
    status, headers, body = _get(url + "models.json")
    models = {m["name"]: m for m in json.loads(body)["models"]}
    assert list(models)[0] == "float32" and models["float32"]["loadable"]
    assert not models["int8"]["loadable"] and "export with --web" in models["int8"]["reason"]
    meta = json.loads((web_exports / "web_int8" / "metadata.json").read_text())
    assert models["web_int8"]["loadable"] and meta["xnnpack_prepares"]
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"  # threads need cross-origin isolation
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    status, headers, body = _get(url + "models/float32/model.tflite")
    assert body == (web_exports / "float32" / "model.tflite").read_bytes()
    assert _get(url + "node_modules/@litertjs/core/wasm/litert_wasm_internal.wasm")[1]["Content-Type"] == "application/wasm"
    for forbidden in ["node_modules/puppeteer-core/package.json", "node_modules/@litertjs/core/../../../../mtl_tf/cli.py",
                      "models/float32/../../README.md", "bench.json/../pyproject.toml"]:
        with pytest.raises(urllib.error.HTTPError, match="404"):
            _get(url + forbidden)


def _iou(a, b):
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _compare(page: dict, predictor, shape):
    """(class map agreement, fraction of the Predictor's detections the page also found, count)
    on the very pixels the page fed its model."""
    pixels = np.asarray(page["input"], np.uint8).reshape(1, *shape)
    want = predictor.predict(pixels)
    mask = np.asarray(page["tasks"]["segmentation"]["mask"]).reshape(shape[:2])
    agreement = float(np.mean(mask == want["segmentation"]["mask"][0]))
    det = want["detection"]
    n = int(det["num_detections"][0])
    boxes, scores, classes = det["boxes"][0][:n], det["scores"][0][:n], det["classes"][0][:n]
    got = page["tasks"]["detection"]
    # at the max_detections cut, near-equal scores may swap in or out: leave that edge out
    edge = scores.min() + 0.02 if n == predictor.tasks["detection"].config.max_detections else -1
    used, matched, counted = set(), 0, 0
    for box, score, cls in zip(boxes, scores, classes):
        if score <= edge:
            continue
        counted += 1
        for j, (b, s, c) in enumerate(zip(got["boxes"], got["scores"], got["classes"])):
            if j not in used and c == cls and _iou(box, b) > 0.9 and abs(s - score) < 0.02:
                used.add(j)
                matched += 1
                break
    return agreement, matched / max(counted, 1), counted, pixels[0]


@needs_browser
def test_the_page_decodes_what_the_python_predictor_does(server, web_exports, scene, tmp_path):
    from mtl_tf.inference import load_predictor

    srv, url = server
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), cv2.cvtColor(scene[0], cv2.COLOR_RGB2BGR))
    video = tmp_path / "clip.webm"  # VP8: what chromium plays (the conftest's mp4v it does not)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"VP80"), 5.0, scene.shape[2:0:-1])
    for frame in scene:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    loadable = [m["name"] for m in json.loads(_get(url + "models.json")[2])["models"] if m["loadable"]]
    assert loadable == ["float32", "web_int8"]
    out, shot = tmp_path / "page.json", tmp_path / "screenshot.png"
    command = ["node", str(WEB_DEMO / "test" / "run_page.mjs"), "--url", url, "--models", ",".join(loadable),
               "--image", str(image), "--video", str(video), "--video-time", "0.3", "--screenshot", str(shot), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    page = json.loads(out.read_text()) if out.is_file() else {}
    assert done.returncode == 0, (done.stderr, page.get("error"), page.get("console"))
    assert page["info"]["accelerator"] in ("wasm", "webgpu") and "FPS" in page["played"]
    assert shot.stat().st_size > 5000 and cv2.imread(str(shot)).shape[:2] == (700, 900)
    # Python runs the same artifact on XNNPACK (x86) as the page does (WASM SIMD): float32 may differ
    # in summation order, int8 by one quantization step where the two builds' kernels round a
    # requantization apart, which flips near-tied argmaxes and moves a score by 1/256 at most.
    # Measured on the 1-epoch model: 100% of the class map and of the detections, both types.
    thresholds = {"float32": (0.99, 0.98), "web_int8": (0.99, 0.98)}
    for name in loadable:
        predictor = load_predictor(web_exports / name / "model.tflite")
        for source in ("image", "video"):
            agreement, found, count, fed = _compare(page["models"][name][source], predictor, scene.shape[1:])
            assert count > 0, f"{name} {source}: no detection to compare"
            mask_min, det_min = thresholds[name]
            assert agreement > mask_min and found >= det_min, (name, source, agreement, found, count)
            if source == "image":  # a model-sized PNG reaches the model untouched
                np.testing.assert_array_equal(fed, scene[0])
            else:  # the frame at 0.3 s (frame 1 at 5 fps), as chromium decoded it
                assert np.mean(np.abs(fed.astype(int) - scene[1].astype(int))) < 12
        times = page["models"][name]["image"]["times"]
        assert set(times) == {"pre", "model", "decode", "draw"} and all(t >= 0 for t in times.values())
