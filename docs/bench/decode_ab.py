"""fp32 TFLite A/B (docs/bench/six_tasks.md): detection outputs decoded in the graph (the float
artifact) vs box encodings (the int8 artifact's layout, decoded by the app), for the detector,
the naive set and the multitask model, timed round-robin in one process with LiteRT alone loaded.

    PYTHONPATH=. python docs/bench/decode_ab.py RECIPE RUNS [key=value ...]
"""
import sys
import tempfile
from pathlib import Path

from mtl_tf.bench import contenders as C
from mtl_tf.bench.timing import percentiles, round_robin, sequence, tflite_runner
from mtl_tf.export.serving import serving_outputs, write_serve_signature
from mtl_tf.export.tflite import convert_tflite
from mtl_tf.recipe import load_recipe

WAYS = {"decoded": False, "encodings": True}  # way -> serving_outputs(integer=...)


def serve(model, integer: bool):
    return lambda image: serving_outputs(model, image, False, integer=integer)


def main() -> None:
    recipe = load_recipe(sys.argv[1], sys.argv[3:])
    runs = int(sys.argv[2])
    image = C.calibration_images(recipe, 1)[0]
    work = Path(tempfile.mkdtemp(prefix="decode_ab_"))
    runners = {}
    for name, model in C.build_models(recipe).items():
        if name == C.TRUNK:
            continue
        for way, integer in WAYS.items():
            saved = write_serve_signature(model, work / f"{name}_{way}", serve(model, integer))
            path = work / f"{name}_{way}.tflite"
            path.write_bytes(convert_tflite(saved, "float32", None))
            runners[name, way] = tflite_runner(path, 2, image)
    detector = next(t for t, cfg in recipe.tasks.items() if cfg.type == "detection")
    contenders = {}
    for way in WAYS:
        contenders[f"naive, {way}"] = sequence([runners[t, way] for t in recipe.tasks])
        contenders[f"multitask, {way}"] = runners[C.MULTITASK, way]
        contenders[f"detector, {way}"] = runners[detector, way]
    p50 = {k: percentiles(v)["p50"] for k, v in round_robin(contenders, runs, warmup=20, seed=0).items()}
    for key, value in p50.items():
        print(f"{key}: {value:.3f} ms")
    for way in WAYS:
        print(f"{way}: naive/multitask {p50[f'naive, {way}'] / p50[f'multitask, {way}']:.2f}x")


if __name__ == "__main__":
    main()
