"""Detector class scores A/B (README Benchmark): softmax over C + 1 logits then the background
dropped (`classification_loss: softmax`) vs one sigmoid per class (`sigmoid_focal`), for the
detector, the naive set and the multitask model, on LiteRT fp32 / int8 and ONNX Runtime. Both
variants' artifacts are the bench's own (cached in OUT like `mtl-tf bench`'s), timed round-robin
in one process, one runtime after the other.

    PYTHONPATH=. python docs/bench/scores_ab.py RECIPE OUT RUNS [key=value ...]
"""
import sys
from pathlib import Path

from mtl_tf.bench import contenders as C
from mtl_tf.bench.timing import configure_tensorflow, percentiles, round_robin_by_runtime, runner_for, sequence
from mtl_tf.recipe import load_recipe

VARIANTS = ("softmax", "sigmoid")
RUNTIMES = ("tflite_fp32", "tflite_int8", "onnx")
THREADS = 2


def main() -> None:
    recipe_path, out, runs, overrides = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    configure_tensorflow(THREADS)
    runners = {}
    for variant in VARIANTS:
        recipe = load_recipe(recipe_path, [*overrides, f"tasks.detection.classification_loss={variant}"])
        images = C.calibration_images(recipe, 8)
        folder = C.artifact_folder(recipe, out, len(images))
        C.prepare_artifacts(recipe, folder, list(RUNTIMES), images)
        for runtime in RUNTIMES:
            run = {n: runner_for(runtime, C.artifact(folder, n, runtime), THREADS, images[0]) for n in C.model_names(recipe)}
            runners[runtime, variant, "detector"] = run["detection"]
            runners[runtime, variant, "naive"] = sequence([run[t] for t in recipe.tasks])
            runners[runtime, variant, "multitask"] = run[C.MULTITASK]
    p50 = {k: percentiles(v)["p50"] for k, v in round_robin_by_runtime(runners, runs, warmup=20, log=print).items()}
    print("| runtime | scores | detector p50 ms | naive p50 ms | multitask p50 ms | naive / multitask |")
    print("|---|---|---:|---:|---:|---:|")
    for runtime in RUNTIMES:
        for variant in VARIANTS:
            d, n, m = (p50[runtime, variant, k] for k in ("detector", "naive", "multitask"))
            print(f"| {runtime} | {variant} | {d:.2f} | {n:.2f} | {m:.2f} | {n / m:.3f}x |")


if __name__ == "__main__":
    main()
