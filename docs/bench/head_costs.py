"""Where the multitask model's time goes: each head's marginal time against its MACs (README, Benchmark).

    PYTHONPATH=. python docs/bench/head_costs.py RECIPE [--set key=value ...] [--threads 2] [--runs 200]

Times, round-robin in one process, one runtime after the other, each round in a random order,
on TFLite fp32 and int8 (LiteRT, XNNPACK) and Keras: the bench's
contenders (trunk, single-task models, the naive set, the multitask model; cached artifacts of
`mtl-tf bench` are reused) and, for each task, the multitask model without that task. A head's
marginal time is multitask - multitask without it; the trunk in place is multitask - the heads'
marginal times. Printed per runtime: each part's ms, GMACs and ms per GMAC, and naive/multitask
beside the FLOP-ideal and the time-weighted ideal (n x trunk in place + heads) / multitask.
"""
import argparse
import tempfile
from pathlib import Path

from mtl_tf.bench import contenders as C
from mtl_tf.bench.flops import count_macs
from mtl_tf.bench.timing import configure_tensorflow, percentiles, round_robin_by_runtime, runner_for, sequence
from mtl_tf.export.serving import export_serving_model
from mtl_tf.export.tflite import convert_tflite
from mtl_tf.recipe import load_recipe

RUNTIMES = ["keras", "tflite_fp32", "tflite_int8"]


def without(recipe, task: str):
    """The recipe's multitask model minus `task` (the bench's own build path)."""
    from mtl_tf.train.fit import build_model

    rest = {name: config for name, config in recipe.tasks.items() if name != task}
    return build_model(recipe.model_copy(update={"tasks": rest}), name=f"without_{task}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default="runs/bench/head_costs")
    args = parser.parse_args()
    configure_tensorflow(args.threads)
    recipe = load_recipe(args.recipe, args.overrides)
    images = C.calibration_images(recipe, 8)
    folder = C.artifact_folder(recipe, Path(args.out), 8)
    stats = C.prepare_artifacts(recipe, folder, RUNTIMES[1:], images)
    tasks = list(recipe.tasks)
    paths = {(rt, name): C.artifact(folder, name, rt) for rt in RUNTIMES for name in C.model_names(recipe)}
    work = Path(tempfile.mkdtemp(prefix="head_costs_"))
    for task in tasks:
        model = without(recipe, task)
        stats[f"-{task}"] = {"macs": count_macs(model)}
        model.save(work / f"-{task}.keras")
        paths["keras", f"-{task}"] = work / f"-{task}.keras"
        for rt, quantization in (("tflite_fp32", "float32"), ("tflite_int8", "int8")):
            saved = export_serving_model(model, work / f"{task}_{rt}", int8_input="uint8" if rt == "tflite_int8" else None)
            path = work / f"-{task}{C.RUNTIMES[rt]}"
            path.write_bytes(convert_tflite(saved, quantization, lambda: (image[None] for image in images)))
            paths[rt, f"-{task}"] = path
    runners = {key: runner_for(key[0], p, args.threads, images[0]) for key, p in paths.items()}
    for rt in RUNTIMES:
        runners[rt, C.NAIVE] = sequence([runners[rt, t] for t in tasks])
    p50 = {key: percentiles(v)["p50"] for key, v in round_robin_by_runtime(runners, args.runs, warmup=20).items()}

    multi_macs, trunk_macs = stats[C.MULTITASK]["macs"], stats[C.TRUNK]["macs"]
    naive_macs = sum(stats[t]["macs"] for t in tasks)
    print(f"{recipe.name}: {recipe.model.backbone.name} {list(recipe.data.image_size)}, {args.threads} threads, "
          f"{args.runs} shuffled rounds; p50 ms (GMACs, ms/GMAC)")
    for rt in RUNTIMES:
        multi = p50[rt, C.MULTITASK]
        heads = {t: multi - p50[rt, f"-{t}"] for t in tasks}
        head_macs = {t: multi_macs - stats[f"-{t}"]["macs"] for t in tasks}
        trunk = multi - sum(heads.values())
        parts = [f"trunk contender {p50[rt, C.TRUNK]:.2f}", f"trunk in place {trunk:.2f} ({trunk_macs / 1e9:.3g}, "
                 f"{trunk / (trunk_macs / 1e9):.1f})"]
        parts += [f"{t} {heads[t]:.2f} ({head_macs[t] / 1e9:.3g}, {heads[t] / max(head_macs[t] / 1e9, 1e-9):.1f})"
                  for t in tasks]
        naive = p50[rt, C.NAIVE]
        weighted = (len(tasks) * trunk + sum(heads.values())) / multi
        print(f"{rt}: multitask {multi:.2f}, naive {naive:.2f}, singles " + ", ".join(
            f"{t} {p50[rt, t]:.2f}" for t in tasks))
        print("   " + "; ".join(parts))
        print(f"   naive/multitask {naive / multi:.2f}x; FLOP-ideal {naive_macs / multi_macs:.2f}x "
              f"({naive / multi / (naive_macs / multi_macs):.2f} of it); time-weighted ideal {weighted:.2f}x")


if __name__ == "__main__":
    main()
