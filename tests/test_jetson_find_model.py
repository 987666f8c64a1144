"""The Jetson runner's choice of artifact in an export folder (export/jetson/run.py)."""

import importlib.util

from conftest import ROOT


def _runner():
    spec = importlib.util.spec_from_file_location("jetson_run", ROOT / "export" / "jetson" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._installed = lambda backend: True  # the choice, not the runtimes, is under test
    return module


def test_rejected_staging_and_old_artifacts_are_never_picked(tmp_path):
    run = _runner()
    for folder in ["int8.rejected", "qat_int8.rejected", ".int8.partial", ".int8.old", "float32"]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.tflite").write_bytes(b"")
    assert run.find_model(tmp_path, "litert") == (tmp_path / "float32" / "model.tflite", "litert")
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "model.tflite").write_bytes(b"")
    assert run.find_model(tmp_path, "litert")[0] == tmp_path / "int8" / "model.tflite"  # full int8 first


def test_an_export_folder_under_a_dotted_path_still_works(tmp_path):
    root = tmp_path / ".cache" / "exports.partial"
    (root / "float32").mkdir(parents=True)
    (root / "float32" / "model.tflite").write_bytes(b"")
    assert _runner().find_model(root, "litert")[0] == root / "float32" / "model.tflite"


def test_the_runner_dispatches_on_each_tasks_type():
    """Two tasks of one type under their own names, image labels drawn as text, a dense output of
    a type the runner does not know shown as a map, all from metadata.json alone."""
    import numpy as np

    run = _runner()
    meta = {
        "tasks": {"scene": {"type": "classification", "classes": ["rural", "urban", "waterside"]},
                  "objects": {"type": "multilabel", "classes": ["car", "bus", "person"]},
                  "land": {"type": "segmentation", "classes": ["a", "b"]},
                  "roads": {"type": "segmentation", "classes": ["x", "road"]},
                  "heat": {"type": "heat", "classes": []}},
        "outputs": {f"{t}_{k}": {"task": t, "kind": k} for t, k in
                    [("scene", "probabilities"), ("objects", "probabilities"), ("land", "logits"), ("roads", "logits"),
                     ("heat", "map")]},
    }
    logits = np.zeros((1, 4, 4, 2), np.float32)
    logits[..., 1] = 1.0
    outputs = {"scene_probabilities": np.array([[0.1, 0.7, 0.2]]), "objects_probabilities": np.array([[0.9, 0.2, 0.6]]),
               "land_logits": logits, "roads_logits": -logits, "heat_map": np.full((1, 4, 4, 1), 0.25, np.float32)}
    results = run.analyse(outputs, meta, min_score=0.3)
    summary = {task: run.summarize(r, meta["tasks"][task]) for task, r in results.items()}
    # classification: the top_k (5 by default) classes, best first
    assert summary == {"scene": ["urban", "waterside", "rural"], "objects": ["car", "person"], "land": [0, 16],
                       "roads": [16, 0], "heat": 0.25}
    frame = run.draw(np.zeros((32, 32, 3), np.uint8), results, meta, fps=10.0)
    assert frame.shape == (32, 32, 3) and frame.any()


def test_image_labels_follow_top_k_ties_and_the_threshold_of_metadata():
    import numpy as np

    run = _runner()
    meta = {"tasks": {"scene": {"type": "classification", "classes": list("abcd"), "config": {"top_k": 3}},
                      "tags": {"type": "multilabel", "classes": list("xyz"), "threshold": 0.25}},
            "outputs": {"scene_p": {"task": "scene", "kind": "probabilities"},
                        "tags_p": {"task": "tags", "kind": "probabilities"}}}
    outputs = {"scene_p": np.float32([[0.2, 0.3, 0.2, 0.3]]), "tags_p": np.float32([[0.25, 0.2, 0.5]])}
    results = run.analyse(outputs, meta, min_score=0.3)
    assert results["scene"]["labels"] == [1, 3, 0]  # equal probabilities: the lower index first
    assert results["tags"]["labels"] == [0, 2]  # at or above the threshold


def test_dense_maps_are_coloured_per_type():
    """Hand-computed colours: jet's ends and middle, normals after normalization, probabilities
    over 0..1, depth (and unknown types) over the map's own min..max, non-finite values black."""
    import numpy as np

    run = _runner()
    blue, green, red = [0, 0, 128], [128, 255, 128], [128, 0, 0]
    assert run.jet(np.float32([-1, 0, 0.5, 1, 2])).tolist() == [blue, blue, green, red, red]
    normals = np.float32([[[0, 0, 2], [3, 0, 0]], [[0, -1, 0], [0, 0, 0]]])
    assert run.dense_rgb(normals, "normals").tolist() == [[[128, 128, 255], [255, 128, 128]],
                                                          [[128, 0, 128], [128, 128, 128]]]
    probability = np.float32([[0.5, 1.0]])[..., None]
    assert run.dense_rgb(probability, "saliency").tolist() == [[green, red]]
    for kind in ("depth", "heat"):
        assert run.dense_rgb(probability, kind).tolist() == [[blue, red]]
    depth = np.float32([[2.0, np.nan, 4.0, 3.0]])[..., None]
    assert run.dense_rgb(depth, "depth").tolist() == [[blue, [0, 0, 0], red, green]]
