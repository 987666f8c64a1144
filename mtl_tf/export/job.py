"""The `export` job: a trained model -> one folder per artifact (model file + metadata.json)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mtl_tf.export.metadata import build_metadata, write_metadata
from mtl_tf.export.tflite import ExportError, builtin_only, export_tflite, tflite_outputs


def replace_folder(staging: Path, final: Path) -> None:
    """Swap a fully written `staging` folder into place; the old `final` goes only once the
    new one is complete, so an interrupted export never leaves a half-written artifact."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def export_artifact(model, out: Path, quantization: str = "float32", recipe: dict | None = None) -> Path:
    """`out/<quantization>/model.tflite` + `metadata.json`; returns the artifact's path."""
    final = Path(out) / quantization
    staging = Path(out) / f".{quantization}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        path = export_tflite(model, staging, quantization)
        custom = builtin_only(path)
        if custom:
            raise ExportError(f"{path.name} holds non-builtin ops {custom}; stock LiteRT cannot run them")
        metadata = build_metadata(model, recipe, path.name, tflite_outputs(path), quantization)
        write_metadata(staging, metadata)
        replace_folder(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / path.name
