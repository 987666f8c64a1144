"""Per-source statistics of a recipe's data (`mtl-tf data inspect`): what each source holds.

Counted on the examples the model sees before augmentation (resized to the input size, class ids
in the task's order, read from the cache when it is complete): images, images labelled per task,
and each task's own label statistics (its type says what: objects per class and box sizes for
detection, pixels per class for segmentation, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from mtl_tf.config import SPLITS


def source_stats(examples, tasks: dict, progress: tqdm | None = None) -> dict:
    """Counts over an iterable of numpy examples: {"images", "labelled": {task: n},
    "tasks": {task: the task type's statistics}}."""
    counters = {name: task.stats_counter() for name, task in tasks.items()}
    stats = {"images": 0, "labelled": {name: 0 for name in tasks}}
    for ex in examples:
        stats["images"] += 1
        for name, task in tasks.items():
            if ex[task.has_key]:
                stats["labelled"][name] += 1
                if counters[name] is not None:
                    task.count_labels(counters[name], task.own(ex))
        if progress is not None:
            progress.update(1)
    stats["tasks"] = {name: task.stats_result(counters[name]) for name, task in tasks.items()
                      if counters[name] is not None}
    return stats


def inspect_recipe(recipe, splits=SPLITS, progress: bool = True) -> list[dict]:
    """One entry per source of the recipe's `splits`: split, source, where it was read, stats."""
    from mtl_tf.data.pipeline import load_sources
    from mtl_tf.data.sources import build_source
    from mtl_tf.tasks import build_tasks

    data = recipe.data
    tasks = build_tasks(recipe.tasks, data.image_size)
    entries = []
    for split in splits:
        configs = getattr(data, split)
        loaded = load_sources(configs, tasks, data.image_size, data.cache, split)
        total = sum(s.count for s in loaded)
        with tqdm(total=total, unit="img", desc=f"inspect {split}", disable=not progress or not total) as bar:
            for config, source in zip(configs, loaded):
                stats = source_stats(source.examples().as_numpy_iterator(), tasks, bar)
                name = build_source(config, data.image_size).describe()
                entries.append({"split": split, "source": name, "read_from": source.kind, **stats})
    return entries


def format_stats(entries: list[dict], tasks: dict) -> str:
    """A readable report: one block per source, each task's statistics as its type words them."""
    lines = []
    for e in entries:
        labelled = ", ".join(f"{task} {n}" for task, n in e["labelled"].items())
        lines.append(f"{e['split']}: {e['source']} [{e['read_from']}]")
        lines.append(f"  images {e['images']}; labelled: {labelled}")
        for name, stats in e.get("tasks", {}).items():
            lines.extend(f"  {name} {line}" for line in tasks[name].stats_lines(stats))
    return "\n".join(lines)


def plot_stats(entries: list[dict], path: Path) -> None:
    """A PNG of the counts: labelled images, then one panel per task statistic (bars for counts
    per name, a step plot for histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{e['split']}:{i} {e['source'].split('(')[0]}" for i, e in enumerate(entries)]
    panels = list(dict.fromkeys((t, k) for e in entries for t, st in e.get("tasks", {}).items() for k in st))
    cols = 2
    rows = (1 + len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 4.2 * rows), squeeze=False)
    axes = axes.ravel()
    _grouped_bars(axes[0], entries, names, lambda e: {"images": e["images"], **e["labelled"]},
                  "images, and images labelled per task")
    for ax, (task, key) in zip(axes[1:], panels):
        values = [e.get("tasks", {}).get(task, {}).get(key, {}) for e in entries]
        if any("histogram" in v for v in values):
            _histograms(ax, values, names, f"{task}: {key}")
        else:
            _grouped_bars(ax, values, names, lambda v: v, f"{task}: {key}")
    for ax in axes[1 + len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _histograms(ax, values: list[dict], names: list[str], title: str) -> None:
    """Step plots of {"bins", "histogram"} statistics (log-spaced bins)."""
    for i, (name, v) in enumerate(zip(names, values)):
        if v.get("count"):
            bins = np.asarray(v["bins"])
            ax.step(np.sqrt(bins[:-1] * bins[1:]), v["histogram"], where="mid", label=name, color=f"C{i}")
    ax.set_xscale("log")
    for mark in values[0].get("marks", []) if values else []:
        ax.axvline(mark, color="grey", ls=":")
    ax.set(title=title, xlabel=values[0].get("unit", "") if values else "", ylabel="count")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _grouped_bars(ax, entries, names, values, title) -> None:
    keys = list(dict.fromkeys(k for e in entries for k in values(e)))
    width = 0.8 / max(len(entries), 1)
    for i, (name, e) in enumerate(zip(names, entries)):
        v = values(e)
        ax.bar(np.arange(len(keys)) + i * width, [v.get(k, 0) for k in keys], width, label=name, color=f"C{i}")
    ax.set_xticks(np.arange(len(keys)) + width * (len(entries) - 1) / 2, keys, rotation=30, ha="right")
    ax.set_title(title)
    ax.legend(fontsize=7)
