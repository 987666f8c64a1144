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
