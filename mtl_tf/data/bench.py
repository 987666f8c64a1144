"""Is the input pipeline the bottleneck? (`mtl-tf data bench RECIPE`)

Four contenders timed round-robin in one process (A, B, C, D, A, B, ...), after a warm-up:
  pipeline     batches drawn from the recipe's training pipeline alone (read, mix, augment,
               encode), from a fresh iterator past its first batches: buffers that filled while
               the model trained would otherwise count as free throughput
  pipeline, no augmentation   the same with data.augment all off (what augmentation costs)
  train        `train_on_batch` of the recipe's model on one fixed batch (no input work)
  train+data   `train_on_batch` on batches drawn from the pipeline, as `fit` does
Each figure is images/s, the median over rounds. pipeline / train > 1 means the pipeline
produces faster than the model consumes; train+data / train shows what feeding it costs when
both share the CPU.
"""

from __future__ import annotations

import time

import numpy as np


def _rate(images: int, seconds: float) -> float:
    return images / max(seconds, 1e-9)


def bench_data(recipe, batches: int = 10, rounds: int = 5, warmup: int = 3, progress: bool = True) -> dict:
    """Run the benchmark described in the module docstring; returns the figures."""
    from tqdm import tqdm

    from mtl_tf.config import AugmentConfig
    from mtl_tf.train.fit import build_model
    from mtl_tf.train.setup import compile_for_training, training_data

    data = recipe.data
    model = build_model(recipe)
    training = training_data(recipe, model.tasks)
    compile_for_training(model, recipe, training.steps * recipe.train.epochs)
    batches_ds = training.batches()
    plain = recipe.model_copy(deep=True)
    plain.data.augment = AugmentConfig(horizontal_flip=False)
    plain_ds = training.batches(recipe=plain)
    stream = iter(batches_ds)

    fixed = next(stream)
    for _ in range(warmup):  # fills caches and shuffle buffers, traces the train step
        model.train_on_batch(*fixed[:2], sample_weight=fixed[2])
        next(stream)

    def pipeline_only(dataset):
        fresh = iter(dataset)
        for _ in range(warmup):  # untimed: shuffle buffers fill, parallelism ramps up
            next(fresh)
        start = time.perf_counter()
        for _ in range(batches):
            next(fresh)
        return time.perf_counter() - start

    def train_only():
        for _ in range(batches):
            model.train_on_batch(fixed[0], fixed[1], sample_weight=fixed[2])

    def train_with_data():
        for _ in range(batches):
            x, y, w = next(stream)
            model.train_on_batch(x, y, sample_weight=w)

    contenders = {
        "pipeline": lambda: pipeline_only(batches_ds),
        "pipeline, no augmentation": lambda: pipeline_only(plain_ds),
        "train": train_only,
        "train+data": train_with_data,
    }
    times = {name: [] for name in contenders}
    for _ in tqdm(range(rounds), desc="bench rounds", disable=not progress):
        for name, run in contenders.items():
            start = time.perf_counter()
            timed = run()
            times[name].append(timed if timed is not None else time.perf_counter() - start)
    images = batches * data.batch_size
    rates = {name: [_rate(images, t) for t in ts] for name, ts in times.items()}
    result = {
        "image_size": list(data.image_size),
        "batch_size": data.batch_size,
        "batches_per_round": batches,
        "rounds": rounds,
        "sources_read_from": sorted({s.kind for s in training.sources}),
        "images_per_s": {name: round(float(np.median(r)), 2) for name, r in rates.items()},
        "spread_p10_p90": {name: [round(float(v), 2) for v in np.percentile(r, [10, 90])] for name, r in rates.items()},
    }
    median = result["images_per_s"]
    result["pipeline_over_train"] = round(median["pipeline"] / median["train"], 2)
    result["train_with_data_over_train"] = round(median["train+data"] / median["train"], 2)
    return result


def format_bench(result: dict) -> str:
    """The benchmark as a small table and a verdict."""
    h, w = result["image_size"]
    lines = [f"input {h}x{w}, batch {result['batch_size']}, {result['batches_per_round']} batches x "
             f"{result['rounds']} rounds, sources read from {', '.join(result['sources_read_from'])}",
             f"{'contender':<28}{'images/s':>10}   p10-p90"]
    for name, rate in result["images_per_s"].items():
        low, high = result["spread_p10_p90"][name]
        lines.append(f"{name:<28}{rate:>10.1f}   {low:.1f}-{high:.1f}")
    ratio = result["pipeline_over_train"]
    verdict = "the pipeline keeps up" if ratio >= 1 else "the pipeline is the bottleneck"
    lines.append(f"pipeline / train = {ratio:.2f}x ({verdict}); "
                 f"train+data / train = {result['train_with_data_over_train']:.2f}")
    return "\n".join(lines)
