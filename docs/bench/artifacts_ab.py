"""A/B of two bench artifact folders of the same recipe (e.g. before and after an export change,
ARTIFACT_FORMAT bumped): the detector, the naive set and the multitask model of each, timed
round-robin in one process on LiteRT fp32 / int8 and ONNX Runtime, one runtime after the other.

    PYTHONPATH=. python docs/bench/artifacts_ab.py runs/bench/R/artifacts-OLD runs/bench/R/artifacts-NEW RUNS

The folders are what `mtl-tf bench` leaves in its bench folder; the task models are the
`<name>.keras` files other than trunk and multitask, the detector the one named detection.
"""
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from mtl_tf.bench import contenders as C
from mtl_tf.bench.timing import configure_tensorflow, percentiles, round_robin_by_runtime, runner_for, sequence

RUNTIMES = ("tflite_fp32", "tflite_int8", "onnx")
THREADS = 2


def compare(folders: dict, tasks: list[str], image: np.ndarray, runs: int, label: str = "artifacts") -> None:
    """Time the detector, the naive set of `tasks` and the multitask model of each artifact folder
    in `folders` ({way: folder}) round-robin, one runtime after the other; print a table."""
    runners = {}
    for runtime in RUNTIMES:
        for way, folder in folders.items():
            run = {n: runner_for(runtime, C.artifact(folder, n, runtime), THREADS, image) for n in [*tasks, C.MULTITASK]}
            runners[runtime, way, "detector"] = run["detection"]
            runners[runtime, way, "naive"] = sequence([run[t] for t in tasks])
            runners[runtime, way, "multitask"] = run[C.MULTITASK]
    p50 = {k: percentiles(v)["p50"] for k, v in round_robin_by_runtime(runners, runs, warmup=20, log=print).items()}
    print(f"| runtime | {label} | detector p50 ms | naive p50 ms | multitask p50 ms | naive / multitask |")
    print("|---|---|---:|---:|---:|---:|")
    for runtime in RUNTIMES:
        for way in folders:
            d, n, m = (p50[runtime, way, k] for k in ("detector", "naive", "multitask"))
            print(f"| {runtime} | {way} | {d:.2f} | {n:.2f} | {m:.2f} | {n / m:.3f}x |")


def main() -> None:
    old, new, runs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    configure_tensorflow(THREADS)
    tasks = sorted(p.stem for p in old.glob("*.keras") if p.stem not in (C.TRUNK, C.MULTITASK))
    size = Interpreter(str(C.artifact(old, C.MULTITASK, "tflite_fp32"))).get_input_details()[0]["shape"][1:3]
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    compare({f"A: {old.name}": old, f"B: {new.name}": new}, tasks, image, runs)


if __name__ == "__main__":
    main()
