"""`mtl-tf bench-engine`: the engine's training-step overhead and the recompute memory saving.

- Step time: the recipe's model trained by Keras' own `train_step` and by the engine (the
  recipe's engine settings), same weights, same batch, timed round-robin in one process
  (A, B, A, B, ...), medians; ratio engine / plain.
- Recompute: one fresh process per setting (none, then each `model.recompute` choice) runs the
  same engine training steps; the training memory is TensorFlow's allocator peak over those steps
  (`tf.config.experimental.get_memory_info`, GPU:0 when there is one, else CPU:0: activations,
  gradients, weights and optimizer state), reset after a first step that builds the graph (not timed),
  with what is held between steps (`resident_mb`: weights, optimizer and engine state, the batch) and
  the step's own share above it (`step_peak_mb`: activations and gradients); the process's peak
  RSS is reported beside it; step times are medians within each process. The probe processes
  run TensorFlow's BFC allocator on the CPU (TF_CPU_ALLOCATOR_USE_BFC=true), the one that keeps
  statistics, whatever the CPU; a probe that cannot measure fails (MeasurementError).
- `--task-counts`: the same probe against the number of tasks (train/task_memory.py).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import keras
import tensorflow as tf
from tqdm import tqdm

from mtl_tf.bench.memory import MeasurementError, own_peak_rss, run_child
from mtl_tf.config import Recipe
from mtl_tf.recipe import recipe_from_dict
from mtl_tf.data import pipeline
from mtl_tf.train.engine import MultitaskEngine
from mtl_tf.train.fit import build_model
from mtl_tf.train.optim import build_optimizer


def _batch(recipe: Recipe, tasks) -> tuple:
    reader = pipeline.ExampleReader(recipe.data.train, tasks, recipe.data.image_size)
    data = pipeline.training_batches(pipeline.examples_dataset(reader), tasks, recipe.data.batch_size, 64, 0)
    return next(iter(data))


def _trainer(recipe: Recipe, engine: bool, weights=None):
    """(model, one-step function) for a fixed batch repeated forever."""
    keras.utils.set_random_seed(recipe.train.seed)
    model = build_model(recipe)
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=build_optimizer(recipe.train.optimizer, 10_000, constant=engine))
    if engine:
        model.engine = MultitaskEngine(model, recipe.train, recipe.data.batch_size, 10_000)
    batch = _batch(recipe, model.tasks)
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    model.make_train_function()
    train_function = model.train_function
    return model, lambda: train_function(iterator)


def _time(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        out = step()
    keras.ops.convert_to_numpy(next(iter(out.values())))  # wait for the last step
    return (time.perf_counter() - start) / n


def step_overhead(recipe: Recipe, rounds: int, steps: int, warmup: int = 3) -> dict:
    plain_model, plain = _trainer(recipe, engine=False)
    _, engine = _trainer(recipe, engine=True, weights=plain_model.get_weights())
    _time(plain, warmup), _time(engine, warmup)
    times = {"plain": [], "engine": []}
    for _ in tqdm(range(rounds), desc="step overhead", unit="round", leave=False):
        times["plain"].append(_time(plain, steps))
        times["engine"].append(_time(engine, steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"plain_ms": 1000 * med["plain"], "engine_ms": 1000 * med["engine"],
            "ratio": med["engine"] / med["plain"], "rounds": rounds, "steps_per_round": steps}


def memory_probe(recipe: Recipe, steps: int, engine: bool = True) -> dict:
    """Train `steps` engine steps (Keras' own steps with `engine=False`) in this process
    (recompute runs in the engine's step); training memory and median step time."""
    _, step = _trainer(recipe, engine=engine)
    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    _time(step, 1)  # builds the graph
    try:
        tf.config.experimental.reset_memory_stats(device)
    except ValueError as err:
        raise MeasurementError(f"TensorFlow keeps no allocator statistics on {device} ({err}); on a CPU, "
                               f"{BFC_ENV}=true must be set before TensorFlow is imported") from None
    # Held between steps (weights, optimizer and engine state, the batch): the peak's floor.
    resident = tf.config.experimental.get_memory_info(device)["current"]
    times = [_time(step, 1) for _ in range(steps)]
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    if peak <= 0:
        raise MeasurementError(f"the {device} allocator reported a peak of {peak} bytes over {steps} training "
                               f"steps: it does not track allocations here (on a CPU, set {BFC_ENV}=true before "
                               "TensorFlow is imported)")
    return {"train_mb": peak / 2**20, "resident_mb": resident / 2**20, "step_peak_mb": (peak - resident) / 2**20,
            "rss_peak_mb": own_peak_rss() / 2**20, "device": device,
            "step_ms": 1000 * statistics.median(times)}


# TensorFlow's CPU allocator keeps statistics only as a BFC allocator: the default on CPUs where
# oneDNN is on (AVX-512), not elsewhere (reset_memory_stats then raises). The probe processes
# always use it, so that every x86 CPU measures the same thing.
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"


def probe_in_child(raw: dict, steps: int, what: str, engine: bool = True) -> dict:
    """`memory_probe` of the recipe `raw` (plain data) in a fresh process."""
    return run_child(["mtl_tf.train.bench", json.dumps(raw), str(steps), "engine" if engine else "plain"],
                     f"training-memory probe ({what})", env={BFC_ENV: "true"})


def recompute_memory(recipe: Recipe, steps: int, choices=((), ("lower",), ("lower", "last_stage"))) -> dict:
    """{setting: memory_probe result}, each in a fresh process."""
    results = {}
    for choice in tqdm(choices, desc="recompute", unit="process", leave=False):
        raw = recipe.to_dict()
        raw["model"]["recompute"] = list(choice)
        name = "+".join(choice) or "none"
        results[name] = probe_in_child(raw, steps, f"recompute {name}")
    base = results["none"]
    for r in results.values():
        r["memory_ratio"] = r["train_mb"] / base["train_mb"] if base["train_mb"] > 0 else float("nan")
        r["time_ratio"] = r["step_ms"] / base["step_ms"]
    return results


def format_report(overhead: dict, memory: dict, device: str) -> str:
    lines = [f"device: {device}",
             f"step time: plain fit {overhead['plain_ms']:.1f} ms, engine {overhead['engine_ms']:.1f} ms "
             f"-> engine/plain {overhead['ratio']:.2f}x (median of {overhead['rounds']} interleaved rounds "
             f"of {overhead['steps_per_round']} steps)"]
    for name, r in memory.items():
        lines.append(f"recompute {name:>17}: training memory {r['train_mb']:7.1f} MB ({r['memory_ratio']:.2f}x, "
                     f"{r['device']} allocator peak), step {r['step_ms']:.1f} ms ({r['time_ratio']:.2f}x), "
                     f"process peak RSS {r['rss_peak_mb']:.0f} MB")
    return "\n".join(lines)


if __name__ == "__main__":  # the memory probe's fresh process
    engine = len(sys.argv) < 4 or sys.argv[3] == "engine"
    print(json.dumps(memory_probe(recipe_from_dict(json.loads(sys.argv[1])), int(sys.argv[2]), engine)))
