"""Per-source statistics of a recipe's data (`mtl-tf data inspect`): what each source holds.

Counted on the examples the model sees before augmentation (resized to the input size, class ids
in the task's order, read from the cache when it is complete): images, images labelled per task,
objects per class, mask pixels per class (and ignored pixels), and box sizes (sqrt of the box area
in input pixels, with COCO's small / medium / large split at 32 and 96 pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from mtl_tf.config import SPLITS
from mtl_tf.data.example import IGNORE

SIZE_BINS = np.geomspace(1, 1024, 31)  # box sizes in pixels, log-spaced


def source_stats(examples, tasks: dict, image_size, progress: tqdm | None = None) -> dict:
    """Counts over an iterable of numpy examples (see the module docstring for what is counted)."""
    det = next((t for t in tasks.values() if "box_classes" in t.example_spec()), None)
    seg = next((t for t in tasks.values() if "mask" in t.example_spec()), None)
    stats = {"images": 0, "labelled": {name: 0 for name in tasks}}
    objects = np.zeros(len(det.classes) if det else 0, np.int64)
    pixels = np.zeros(256, np.int64)
    sizes = []
    for ex in examples:
        stats["images"] += 1
        for name, task in tasks.items():
            stats["labelled"][name] += int(ex[task.has_key])
        if det is not None and ex[det.has_key]:
            objects += np.bincount(ex["box_classes"], minlength=len(objects))[: len(objects)]
            b = np.asarray(ex["boxes"]).reshape(-1, 4)
            sizes.extend(np.sqrt((b[:, 2] - b[:, 0]) * image_size[0] * (b[:, 3] - b[:, 1]) * image_size[1]))
        if seg is not None and ex[seg.has_key]:
            pixels += np.bincount(np.asarray(ex["mask"]).ravel(), minlength=256)
        if progress is not None:
            progress.update(1)
    if det is not None:
        stats["objects"] = dict(zip(det.classes, objects.tolist()))
        stats["box_sizes"] = _size_summary(np.asarray(sizes, np.float64))
    if seg is not None:
        stats["pixels"] = dict(zip(seg.classes, pixels[: len(seg.classes)].tolist()))
        stats["pixels"]["ignore"] = int(pixels[IGNORE])
    return stats


def _size_summary(sizes: np.ndarray) -> dict:
    summary = {"count": int(len(sizes)), "small": int((sizes < 32).sum()),
               "medium": int(((sizes >= 32) & (sizes < 96)).sum()), "large": int((sizes >= 96).sum()),
               "histogram": np.histogram(sizes, SIZE_BINS)[0].tolist()}
    if len(sizes):
        p = np.percentile(sizes, [0, 10, 50, 90, 100])
        summary.update({k: round(float(v), 1) for k, v in zip(["min", "p10", "median", "p90", "max"], p)})
    return summary


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
                stats = source_stats(source.examples().as_numpy_iterator(), tasks, data.image_size, bar)
                name = build_source(config, data.image_size).describe()
                entries.append({"split": split, "source": name, "read_from": source.kind, **stats})
    return entries


def format_stats(entries: list[dict]) -> str:
    """A readable report: one block per source."""
    lines = []
    for e in entries:
        labelled = ", ".join(f"{task} {n}" for task, n in e["labelled"].items())
        lines.append(f"{e['split']}: {e['source']} [{e['read_from']}]")
        lines.append(f"  images {e['images']}; labelled: {labelled}")
        if e.get("box_sizes", {}).get("count"):
            lines.append("  objects: " + ", ".join(f"{c} {n}" for c, n in e["objects"].items()))
            s = e["box_sizes"]
            lines.append(
                f"  box size (sqrt area, px): min {s['min']} p10 {s['p10']} median {s['median']} "
                f"p90 {s['p90']} max {s['max']}; small {s['small']} medium {s['medium']} large {s['large']}"
            )
        total = sum(e.get("pixels", {}).values())
        if total:
            lines.append("  pixels: " + ", ".join(f"{c} {100 * n / total:.1f}%" for c, n in e["pixels"].items()))
    return "\n".join(lines)


def plot_stats(entries: list[dict], path: Path) -> None:
    """A PNG of the counts: labelled images, objects per class, pixel shares, box sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{e['split']}:{i} {e['source'].split('(')[0]}" for i, e in enumerate(entries)]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    _grouped_bars(axes[0, 0], entries, names, lambda e: {"images": e["images"], **e["labelled"]},
                  "images, and images labelled per task")
    _grouped_bars(axes[0, 1], entries, names, lambda e: e.get("objects", {}), "objects per class")
    _grouped_bars(axes[1, 0], entries, names, _pixel_shares, "share of mask pixels per class (labelled images)")
    ax = axes[1, 1]
    centres = np.sqrt(SIZE_BINS[:-1] * SIZE_BINS[1:])
    for i, (name, e) in enumerate(zip(names, entries)):
        if e.get("box_sizes", {}).get("count"):
            ax.step(centres, e["box_sizes"]["histogram"], where="mid", label=name, color=f"C{i}")
    ax.set_xscale("log")
    ax.axvline(32, color="grey", ls=":")
    ax.axvline(96, color="grey", ls=":")
    ax.set(title="box sizes (sqrt area, input pixels; COCO small | medium | large)", xlabel="pixels", ylabel="boxes")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pixel_shares(entry: dict) -> dict:
    pixels = entry.get("pixels", {})
    total = max(sum(pixels.values()), 1)
    return {c: n / total for c, n in pixels.items()}


def _grouped_bars(ax, entries, names, values, title) -> None:
    keys = list(dict.fromkeys(k for e in entries for k in values(e)))
    width = 0.8 / max(len(entries), 1)
    for i, (name, e) in enumerate(zip(names, entries)):
        v = values(e)
        ax.bar(np.arange(len(keys)) + i * width, [v.get(k, 0) for k in keys], width, label=name, color=f"C{i}")
    ax.set_xticks(np.arange(len(keys)) + width * (len(entries) - 1) / 2, keys, rotation=30, ha="right")
    ax.set_title(title)
    ax.legend(fontsize=7)
