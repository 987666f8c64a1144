"""Detector class scores A/B (README Benchmark): softmax over C + 1 logits then the background
dropped (`classification_loss: softmax`) vs one sigmoid per class (`sigmoid`), for the detector,
the naive set and the multitask model, on LiteRT fp32 / int8 and ONNX Runtime. Both variants'
artifacts are the bench's own (cached in OUT like `mtl-tf bench`'s), timed as
`artifacts_ab.compare` does.

    PYTHONPATH=. python docs/bench/scores_ab.py RECIPE OUT RUNS [key=value ...]
"""
import sys
from pathlib import Path

from artifacts_ab import RUNTIMES, THREADS, compare  # beside this script

from mtl_tf.bench import contenders as C
from mtl_tf.bench.timing import configure_tensorflow
from mtl_tf.recipe import load_recipe

VARIANTS = ("softmax", "sigmoid")


def main() -> None:
    recipe_path, out, runs, overrides = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    configure_tensorflow(THREADS)
    folders = {}
    for variant in VARIANTS:
        recipe = load_recipe(recipe_path, [*overrides, f"tasks.detection.classification_loss={variant}"])
        images = C.calibration_images(recipe, 8)
        folders[variant] = C.artifact_folder(recipe, out, len(images))
        C.prepare_artifacts(recipe, folders[variant], list(RUNTIMES), images)
    compare(folders, list(recipe.tasks), images[0], runs, label="scores")


if __name__ == "__main__":
    main()
