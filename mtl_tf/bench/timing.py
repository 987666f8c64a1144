"""Latency measured round-robin: every contender once per round, rounds repeated.

Timing each model in a block of its own gave meaningless ratios on a shared CPU (load changes
between blocks); interleaving exposes all contenders to the same load, so ratios stay meaningful.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mtl_tf.export.litert import open_tflite, zeros_call


def percentiles(samples_ms, qs=(10, 50, 90)) -> dict:
    """{"p10", "p50", "p90"} (linear interpolation between order statistics)."""
    values = np.percentile(np.asarray(samples_ms, np.float64), qs)
    return {f"p{q}": float(v) for q, v in zip(qs, values)}


def round_robin(
    runners: dict[str, Callable[[], object]], runs: int, warmup: int = 5, progress: bool = True, seed: int | None = None
) -> dict:
    """Time every runner once per round, `warmup` untimed rounds then `runs` timed ones; with
    `seed`, each round in its own random order (so no runner always follows the same one).

    Returns {key: [milliseconds per run]}.
    """
    times = {key: [] for key in runners}
    keys, rng = list(runners), np.random.default_rng(seed)
    for round_index in tqdm(range(warmup + runs), desc="timing (round-robin)", unit="round", disable=not progress):
        for i in range(len(keys)) if seed is None else rng.permutation(len(keys)):
            key, run = keys[i], runners[keys[i]]
            started = time.perf_counter_ns()
            run()
            elapsed = (time.perf_counter_ns() - started) / 1e6
            if round_index >= warmup:
                times[key].append(elapsed)
    return times


def round_robin_by_runtime(
    runners: dict[tuple, Callable[[], object]], runs: int, warmup: int = 5, seed: int | None = 0, log=None
) -> dict:
    """`round_robin` over the runners keyed (runtime, ...), one runtime after the other.

    Ratios are per runtime, and interleaving runtimes biased them: every contender also met the
    other runtimes' thread pools, still spinning after a run, and ran about 2x slower with a p90
    of 5-10x its p50 (tiny six-task model, fp32 LiteRT). Returns {key: [milliseconds per run]}.
    """
    times = {}
    for runtime in dict.fromkeys(key[0] for key in runners):
        if log:
            log(f"timing {runtime}")
        block = {key: run for key, run in runners.items() if key[0] == runtime}
        times.update(round_robin(block, runs, warmup, seed=seed))
    return times


def sequence(runs: list[Callable[[], object]]) -> Callable[[], None]:
    """One runner that runs `runs` one after the other (the naive set on one image)."""

    def run():
        for r in runs:
            r()

    return run


def configure_tensorflow(threads: int) -> int:
    """`threads` for each op, one op at a time, like LiteRT's interpreter. Only possible before
    TensorFlow starts (else its setting stays); returns the intra-op threads in effect (0: all cores)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialized in this process
        pass
    return tf.config.threading.get_intra_op_parallelism_threads()


def keras_runner(path: Path, image: np.ndarray | None = None) -> Callable[[], object]:
    """A .keras model's forward pass as a tf.function (training=False), outputs fetched to numpy.
    `image`: uint8 [H, W, 3] (default: zeros of the model's input size)."""
    import keras
    import tensorflow as tf

    import mtl_tf.model.multitask  # noqa: F401  (registers the custom classes)

    model = keras.models.load_model(path)
    forward = tf.function(lambda x: model(x, training=False))
    x = tf.constant(image[None] if image is not None else np.zeros(model.input_shape[1:], np.uint8)[None])
    return lambda: tf.nest.map_structure(np.asarray, forward(x))


def onnx_runner(path: Path, threads: int, image: np.ndarray | None = None) -> Callable[[], object]:
    """An .onnx serving graph in ONNX Runtime's CPU provider: `threads` for each op, one op at a
    time (sequential execution), every graph optimization on (the provider's fusions), workers
    that sleep between runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Workers sleep after a run instead of spinning: the naive set's sessions, one per model,
    # would otherwise spin against the next one's run (and the multitask model has one session).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    x = np.ascontiguousarray(image[None] if image is not None else np.zeros(shape, np.uint8))
    feed = {spec.name: x.astype(_ONNX_TYPES[spec.type])}
    names = [o.name for o in session.get_outputs()]
    return lambda: dict(zip(names, session.run(names, feed)))


_ONNX_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32}


def runner_for(runtime: str, path: Path, threads: int, image: np.ndarray | None = None) -> Callable[[], object]:
    """The runner of `runtime` ("keras", "onnx", or a TFLite one) on the artifact `path`."""
    if runtime == "keras":
        return keras_runner(path, image)
    if runtime == "onnx":
        return onnx_runner(path, threads, image)
    return tflite_runner(path, threads, image)


def tflite_runner(path: Path, threads: int, image: np.ndarray | None = None) -> Callable[[], object]:
    """A .tflite's serving signature in LiteRT; `.delegate` names the delegate it runs on."""
    runner, delegate = open_tflite(path, threads)
    x = np.ascontiguousarray(image[None], np.uint8) if image is not None else None

    def run():
        return runner(image=x) if x is not None else zeros_call(runner)

    run.delegate = delegate
    return run
