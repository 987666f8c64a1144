"""The `bench` job: build/convert the contenders, time them round-robin, measure peak RSS in
fresh processes, and write bench.md, bench.json and bench.png."""

from __future__ import annotations

import json
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from mtl_tf.bench import contenders as C
from mtl_tf.bench.memory import peak_rss
from mtl_tf.bench.report import MB, add_ratios, markdown, plot
from mtl_tf.bench.timing import configure_tensorflow, percentiles, round_robin_by_runtime, runner_for, sequence
from mtl_tf.config import Recipe

WEIGHTS_NOTE = {
    None: "Weights: random init, untrained heads (speed, memory and size do not depend on the weight values).",
    "imagenet": "Weights: ImageNet backbone, untrained heads.",
}


def machine() -> str:
    """CPU model and core count (plus GPUs TensorFlow sees), for labelling timings."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def run_bench(
    recipe: Recipe,
    out: Path,
    runtimes: list[str],
    runs: int = 50,
    warmup: int = 5,
    threads: int = 2,
    calibration: int = 8,
    memory_runs: int = 3,
    command: str | None = None,
    log=print,
) -> dict:
    """Benchmark the recipe's contenders on `runtimes`; returns the results, also written to
    `out` as bench.md, bench.json and bench.png."""
    keras_threads = configure_tensorflow(threads)  # before TensorFlow runs anything
    out = Path(out)
    folder = C.artifact_folder(recipe, out, calibration)
    images = C.calibration_images(recipe, calibration)
    stats = C.prepare_artifacts(recipe, folder, runtimes, images, log=log)
    names = C.contender_names(recipe)

    log(f"loading {len(names) - 1} models on {', '.join(runtimes)}")
    single = _load_runners(recipe, folder, runtimes, threads, images[0])
    runners = {
        (rt, name): sequence([single[rt, m] for m in C.members(recipe, name)]) for rt in runtimes for name in names
    }
    # Within a runtime, each round in its own order: in a fixed one, every contender always ran
    # right after the same one, and whatever that predecessor leaves behind (spinning worker
    # threads, caches) became a bias of that contender instead of noise shared by all.
    samples = round_robin_by_runtime(runners, runs, warmup, seed=0, log=log)

    log("peak RSS, one fresh process per model (two at a time: peak RSS does not depend on CPU load)")
    rss = _measure_rss(recipe, folder, runtimes, threads, memory_runs)

    results = {
        "meta": {**_meta(recipe, threads, runs, warmup, calibration, folder, command), "keras_threads": keras_threads},
        "contenders": {},
        "baseline_rss_mb": {rt: rss[_kind(rt), None]["peak_rss_bytes"] / MB for rt in runtimes},
        "runtimes": {rt: {} for rt in runtimes},
    }
    for name in names:
        parts = C.members(recipe, name)
        results["contenders"][name] = {
            "members": parts,
            "params": sum(stats[m]["params"] for m in parts),
            "macs": sum(stats[m]["macs"] for m in parts),
        }
        for rt in runtimes:
            files = [C.artifact(folder, m, rt) for m in parts]
            row = {f"{k}_ms": v for k, v in percentiles(samples[rt, name]).items()}
            row.update(
                runs=len(samples[rt, name]),
                peak_rss_mb=rss[rt, name]["peak_rss_bytes"] / MB,
                rss_pid=rss[rt, name]["pid"],
                size_mb=sum(f.stat().st_size for f in files) / MB,
            )
            if rt.startswith("tflite"):
                row["delegate"] = ", ".join(sorted({single[rt, m].delegate for m in parts}))
            results["runtimes"][rt][name] = row
    results = add_ratios(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(markdown(results))
    (out / "bench.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "bench.png")
    return results


def _load_runners(recipe: Recipe, folder: Path, runtimes: list[str], threads: int, image) -> dict:
    """{(runtime, model name): runner} for every model (not the naive set, which reuses them)."""
    runners = {}
    for rt in runtimes:
        for name in C.model_names(recipe):
            path = C.artifact(folder, name, rt)
            runners[rt, name] = runner_for(rt, path, threads, image)
    return runners


def _measure_rss(recipe: Recipe, folder: Path, runtimes: list[str], threads: int, runs: int) -> dict:
    """{(runtime, contender): child's report} plus {(kind, None): empty-process baseline}."""
    jobs = {(_kind(rt), None): (_kind(rt), []) for rt in runtimes}
    for rt in runtimes:
        for name in C.contender_names(recipe):
            jobs[rt, name] = (_kind(rt), [C.artifact(folder, m, rt) for m in C.members(recipe, name)])
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(peak_rss, kind, files, threads, runs) for key, (kind, files) in jobs.items()}
        return {key: future.result() for key, future in tqdm(futures.items(), desc="peak RSS", unit="process")}


def _meta(recipe: Recipe, threads: int, runs: int, warmup: int, calibration: int, folder: Path, command) -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    weights = recipe.model.backbone.weights
    return {
        "recipe": recipe.name,
        "backbone": recipe.model.backbone.name,
        "neck": recipe.model.neck.model_dump() if recipe.model.neck else None,
        "image_size": list(recipe.data.image_size),
        "machine": machine(),
        "keras_device": f"GPU ({gpus[0].name})" if gpus else "CPU",
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "calibration_images": calibration,
        "weights_note": WEIGHTS_NOTE.get(weights, f"Weights: backbone {weights}, untrained heads."),
        "versions": {"tensorflow": tf.__version__, "ai_edge_litert": _version("ai-edge-litert"),
                     "onnxruntime": _version("onnxruntime")},
        "macs_note": "multiply-accumulates of Conv2D/DepthwiseConv2D/Dense layers per image (FLOPs = 2 x MACs)",
        "artifacts": str(folder),
        "command": command,
    }


def _kind(runtime: str) -> str:
    """The runtime a child process loads: keras, onnx or tflite (both TFLite runtimes)."""
    return runtime if runtime in ("keras", "onnx") else "tflite"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
