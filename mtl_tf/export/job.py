"""The `export` job: a trained model -> one folder per artifact (model file + metadata.json).

Folders are named after the variant: `float32`, `float16`, `dynamic`, `int8`, `qat_int8`,
`web_int8` (int8 compute, float outputs, for LiteRT.js in browsers), `onnx`, with `_nms` appended when detection post-processing runs in the graph. Each is written
into a staging folder and swapped into place only once complete (and, with `verify`, accepted),
so a failed export never replaces a good artifact; the old folder is kept until the new one is
in place, and the next export puts it back if a kill came between the two renames.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mtl_tf.export.metadata import build_metadata, write_metadata
from mtl_tf.export.serving import export_serving_model
from mtl_tf.export.tflite import ExportError, builtin_only, convert_tflite, tflite_signature, write_atomic
from mtl_tf.export.verify import VerificationError, Verifier, format_report

MIN_CALIBRATION_IMAGES = 100


def replace_folder(staging: Path, final: Path) -> None:
    """Swap a fully written `staging` folder into place; the old `final` waits as `.<name>.old`
    until the new one is there, so an interrupted export never leaves a half-written artifact."""
    old = recover_folder(final)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(final: Path) -> Path:
    """Undo a swap a kill interrupted: `.<name>.old` goes back to `final` when that is missing,
    else it is deleted. Returns the `.old` path."""
    old = final.with_name(f".{final.name}.old")
    if old.exists() and not final.exists():
        old.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return old


def variant_name(kind: str, nms: bool) -> str:
    return f"{kind}_nms" if nms else kind


@dataclass
class Variant:
    """One artifact to write: `quantization` of the TFLite converter, or "onnx"."""

    name: str
    quantization: str
    model: object  # the Keras multitask model it is exported from (the QAT model for qat_int8)
    nms: bool = False
    extra: dict = field(default_factory=dict)  # more metadata (calibration, QAT)
    input_type: str = "uint8"  # the image input of a full-int8 artifact: "uint8" or "int8"
    float_outputs: bool = False  # int8 only: outputs dequantized in the graph (web_int8)


def write_variant(
    variant: Variant, out: Path, saved_model: Path, recipe: dict | None, representative=None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Convert `saved_model` (the variant's serving graph) into `out/<variant>/` atomically;
    `check(artifact)` may reject it (raise) before it replaces anything. Returns the artifact."""
    final = Path(out) / variant.name
    staging = Path(out) / f".{variant.name}.partial"
    recover_folder(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if variant.quantization == "onnx":
            from mtl_tf.export.onnx import convert_onnx, onnx_outputs

            path = staging / "model.onnx"
            write_atomic(path, convert_onnx(saved_model))
            image, outputs = {"dtype": "uint8"}, onnx_outputs(path)
        else:
            path = staging / "model.tflite"
            write_atomic(path, convert_tflite(saved_model, variant.quantization, representative, variant.float_outputs))
            custom = builtin_only(path)
            if custom:
                raise ExportError(f"{path.name} holds non-builtin ops {custom}; stock LiteRT cannot run them")
            inputs, outputs = tflite_signature(path)
            image = inputs["image"]
            if variant.float_outputs:
                variant.extra["xnnpack_prepares"] = xnnpack_prepares(path)
        metadata = build_metadata(
            variant.model, recipe, path.name, outputs, variant.quantization, variant.nms, image, variant.extra
        )
        write_metadata(staging, metadata)
        if check is not None:
            check(path)
        replace_folder(staging, final)
    except VerificationError:
        rejected = Path(out) / f"{variant.name}.rejected"
        shutil.rmtree(rejected, ignore_errors=True)
        staging.rename(rejected)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / path.name


def xnnpack_prepares(path: Path) -> bool:
    """Whether LiteRT's XNNPACK delegate takes the artifact. Should it refuse an int8 graph
    (the empty calibrated ranges of dead layers, which made it refuse barely trained models, are
    widened at conversion: `mtl_tf.export.ranges`), Python's LiteRT runs the builtin kernels, but
    LiteRT.js 2.5.3 returns wrong outputs, so the browser demo refuses such a web_int8."""
    from mtl_tf.export.litert import open_tflite

    prepared = open_tflite(path)[1] == "XNNPACK"
    if not prepared:
        warnings.warn(f"{path}: XNNPACK refuses this int8 graph; LiteRT.js (browser) would return wrong outputs "
                      "for it, so `mtl-tf demo` will not offer it", stacklevel=2)
    return prepared


def export_variants(variants: list[Variant], out: Path, recipe: dict | None, representative=None,
                    check=None, log=print) -> list[Path]:
    """Write every variant, sharing one SavedModel per (model, nms, int8 input); returns the artifacts.
    A variant rejected by `check` does not stop the others; the rejections are raised at the end."""
    work = Path(tempfile.mkdtemp(prefix="mtl_tf_export_"))
    saved: dict = {}
    paths, rejected = [], []
    try:
        for variant in variants:
            key = (id(variant.model), variant.nms, variant.input_type if variant.quantization == "int8" else None)
            if key not in saved:
                saved[key] = export_serving_model(variant.model, work / f"saved_model_{len(saved)}", *key[1:])
            try:
                path = write_variant(variant, out, saved[key], recipe, representative, check)
            except VerificationError as err:
                rejected.append(str(err))
                log(f"rejected {variant.name}: kept in {Path(out) / (variant.name + '.rejected')}")
                continue
            log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
            paths.append(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if rejected:
        raise VerificationError("\n".join(rejected))
    return paths


def export_artifact(model, out: Path, quantization: str = "float32", recipe: dict | None = None,
                    nms: bool = False, representative=None) -> Path:
    """`out/<variant>/model.tflite` + `metadata.json`; returns the artifact's path."""
    variant = Variant(variant_name(quantization, nms), quantization, model, nms)
    return export_variants([variant], out, recipe, representative, log=lambda _: None)[0]


def representative_images(recipe, tasks: dict, image_size, count: int) -> Callable:
    """`representative()` yielding up to `count` uint8 images [1, H, W, 3] of the recipe's
    validation split, the calibration set of full-int8 conversion (warns below 100)."""
    from mtl_tf.data import pipeline

    reader = pipeline.ExampleReader(recipe.data.val, tasks, image_size)
    available = min(count, len(reader))
    if available < MIN_CALIBRATION_IMAGES:
        warnings.warn(
            f"int8 calibration on {available} validation images; use at least {MIN_CALIBRATION_IMAGES} "
            "realistic images (export.calibration_images) for sane activation ranges", stacklevel=2,
        )

    def representative():
        for i, example in enumerate(reader):
            if i >= available:
                return
            yield example["image"][None]

    representative.count = available
    return representative


def run_export(
    model, recipe, out: Path, quantizations=("float32",), nms: bool = False, onnx: bool = False,
    qat_epochs: int = 0, calibration_images: int | None = None, verify: bool = False, log=print,
    int8_input: str = "uint8", web: bool = False,
) -> list[Path]:
    """The `export` command: every requested artifact of `model` in `out`, with --verify checks.

    `recipe` (the run's) supplies calibration images and QAT data; it is required for "int8",
    `qat_epochs`, `web` and `verify`. `int8_input`: the image input type of the full-int8
    artifacts. `web`: also `web_int8`, int8 compute with a uint8 image in and float outputs
    (dequantized in the graph), which LiteRT.js loads (it rejects int8 outputs).
    """
    needs_data = "int8" in quantizations or qat_epochs or verify or web
    if needs_data and recipe is None:
        raise ExportError("int8, --qat and --verify need the run's recipe (recipe.yaml beside the model)")
    variants = [Variant(variant_name(q, nms), q, model, nms, input_type=int8_input if q == "int8" else "uint8")
                for q in quantizations]
    if web:
        variants.append(Variant(variant_name("web_int8", nms), "int8", model, nms,
                                {"outputs_dequantized_in_graph": True}, float_outputs=True))
    representative = None
    if "int8" in quantizations or qat_epochs or web:
        count = calibration_images or recipe.export.calibration_images
        representative = representative_images(recipe, model.tasks, model.image_size, count)
        calibration = {"calibration": {"split": "val", "images": representative.count}}
        for v in variants:
            v.extra.update(calibration if v.quantization == "int8" else {})
    if qat_epochs:
        from mtl_tf.export.qat import qat_finetune

        log(f"quantization-aware fine-tune: {qat_epochs} epochs")
        qat = qat_finetune(model, recipe, qat_epochs)
        extra = {**calibration, "qat": {"epochs": qat_epochs, "learning_rate": recipe.export.qat_learning_rate}}
        variants.append(Variant(variant_name("qat_int8", nms), "int8", qat, nms, extra, int8_input))
    if onnx:
        variants.append(Variant(variant_name("onnx", nms), "onnx", model, nms))
    check = None
    if verify:
        log("evaluating the Keras model on the validation split (the --verify reference)")
        check = Verifier(model, recipe)
    recipe_dict = recipe.to_dict() if recipe is not None else None
    try:
        return export_variants(variants, out, recipe_dict, representative, check, log)
    finally:
        if check is not None:
            for name, report in check.reports.items():
                log(f"verify {name} (artifact vs Keras, validation split):\n{format_report(report)}")
