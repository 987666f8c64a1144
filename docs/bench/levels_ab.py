"""Where the MobileNet SSDLite detector's head time goes: the single-task detector of
recipes/bench_mobilenet.yaml with 6, 5 and 4 feature levels against the trunk, fp32 and int8
LiteRT, 150 shuffled rounds per quantization (docs/bench/six_tasks.md).

    PYTHONPATH=. python docs/bench/levels_ab.py
"""
import tempfile
from pathlib import Path
from mtl_tf.bench import contenders as C
from mtl_tf.bench.flops import count_macs
from mtl_tf.bench.timing import percentiles, round_robin, tflite_runner
from mtl_tf.export.serving import export_serving_model
from mtl_tf.export.tflite import convert_tflite, export_saved_model
from mtl_tf.recipe import load_recipe
from mtl_tf.train.fit import build_model, single_task_recipe

work = Path(tempfile.mkdtemp())
base = load_recipe("recipes/bench_mobilenet.yaml")
images = C.calibration_images(base, 8)
runners, macs = {}, {}
for levels in (6, 5, 4):
    recipe = load_recipe("recipes/bench_mobilenet.yaml", [f"tasks.detection.feature_levels={levels}"])
    model = build_model(single_task_recipe(recipe, "detection"), name=f"det{levels}")
    macs[levels] = count_macs(model)
    for q in ("float32", "int8"):
        saved = export_serving_model(model, work / f"{levels}{q}", int8_input="uint8" if q == "int8" else None)
        p = work / f"{levels}{q}.tflite"
        p.write_bytes(convert_tflite(saved, q, lambda: (im[None] for im in images)))
        runners[levels, q] = tflite_runner(p, 2, images[0])
models = C.build_models(base)
for q in ("float32", "int8"):
    saved = export_saved_model(models["trunk"], work / f"trunk{q}", "uint8" if q == "int8" else None)
    p = work / f"trunk{q}.tflite"
    p.write_bytes(convert_tflite(saved, q, lambda: (im[None] for im in images)))
    runners["trunk", q] = tflite_runner(p, 2, images[0])
macs["trunk"] = count_macs(models["trunk"])
for q in ("float32", "int8"):
    block = {k: r for k, r in runners.items() if k[1] == q}
    p50 = {k: percentiles(v)["p50"] for k, v in round_robin(block, 150, warmup=10, seed=0).items()}
    t = p50["trunk", q]
    for levels in (6, 5, 4):
        head_ms = p50[levels, q] - t
        head_gmac = (macs[levels] - macs["trunk"]) / 1e9
        print(f"{q} levels={levels}: detector {p50[levels, q]:.2f} ms, head {head_ms:.2f} ms / {head_gmac:.4f} GMAC = {head_ms / head_gmac:.1f} ms/GMAC; trunk {t:.2f} ms ({t / (macs['trunk'] / 1e9):.1f} ms/GMAC)")
