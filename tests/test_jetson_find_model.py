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
    assert summary == {"scene": ["urban"], "objects": ["car", "person"], "land": [0, 16], "roads": [16, 0], "heat": 0.25}
    frame = run.draw(np.zeros((32, 32, 3), np.uint8), results, meta, fps=10.0)
    assert frame.shape == (32, 32, 3) and frame.any()
