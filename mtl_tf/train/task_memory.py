"""`mtl-tf bench-engine --task-counts`: training memory against the number of tasks.

UberNet (Kokkinos 2017) claims its training memory does not grow with the number of tasks: the
heads' backward passes run one at a time, so only one head's activations are alive besides the
trunk's. For each count N the recipe is restricted to its first N tasks (`restrict_tasks`), and
every setting below trains the same batch in its own fresh process (`bench.probe_in_child`:
TensorFlow's allocator peak over the steps after a first, graph-building one; median step time):

- plain: Keras' own `train_step`, every head's backward pass in one joint gradient;
- joint / sequential: the engine with `train.head_backward` joint or sequential;
- joint+lower / sequential+lower: the same with `model.recompute: [lower]` (the engine's trunk
  only: Keras' own step does not recompute, so plain has no recompute setting).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from mtl_tf.config import Recipe
from mtl_tf.recipe import restrict_tasks
from mtl_tf.train.bench import probe_in_child

# name: (engine, train.head_backward, model.recompute)
SETTINGS = {
    "plain": (False, "joint", []),
    "joint": (True, "joint", []),
    "sequential": (True, "sequential", []),
    "joint+lower": (True, "joint", ["lower"]),
    "sequential+lower": (True, "sequential", ["lower"]),
}
DESCRIPTIONS = {
    "plain": "plain Keras step (heads' backward jointly)",
    "joint": "engine, head_backward joint",
    "sequential": "engine, head_backward sequential",
    "joint+lower": "engine joint + recompute lower",
    "sequential+lower": "engine sequential + recompute lower",
}


def check_counts(recipe: Recipe, counts: list[int]) -> list[int]:
    """The counts sorted and unique; each must be between 1 and the recipe's number of tasks."""
    bad = [n for n in counts if not 1 <= n <= len(recipe.tasks)]
    if bad or not counts:
        raise ValueError(f"task counts {counts}: each must be 1..{len(recipe.tasks)} (the recipe's tasks: "
                         f"{', '.join(recipe.tasks)})")
    return sorted(set(counts))


def task_count_memory(recipe: Recipe, counts: list[int], steps: int, settings=tuple(SETTINGS)) -> dict:
    """{"counts", "tasks", "settings": {setting: {"by_count": {N: probe}, "growth_mb", "growth_ratio",
    "per_task_mb"}}}: one fresh process per (count, setting)."""
    counts = check_counts(recipe, counts)
    names = list(recipe.tasks)
    results = {"counts": counts, "tasks": names[: counts[-1]], "steps": steps,
               "settings": {s: {"by_count": {}} for s in settings}}
    jobs = [(n, s) for n in counts for s in settings]
    for n, setting in tqdm(jobs, desc="task-count memory", unit="process", leave=False):
        engine, head_backward, recompute = SETTINGS[setting]
        raw = restrict_tasks(recipe, names[:n]).to_dict()
        raw["train"]["head_backward"] = head_backward
        raw["model"]["recompute"] = recompute
        probe = probe_in_child(raw, steps, f"{n} tasks, {setting}", engine=engine)
        results["settings"][setting]["by_count"][str(n)] = probe
    first, last = str(counts[0]), str(counts[-1])
    for r in results["settings"].values():
        low, high = r["by_count"][first], r["by_count"][last]
        r["growth_mb"], r["growth_ratio"] = high["train_mb"] - low["train_mb"], high["train_mb"] / low["train_mb"]
        r["step_growth_mb"] = high["step_peak_mb"] - low["step_peak_mb"]
        r["per_task_mb"] = r["growth_mb"] / (counts[-1] - counts[0]) if counts[-1] > counts[0] else 0.0
    return results


def markdown(results: dict) -> str:
    """One row per setting: per task count, training memory = resident + the step's share (MB)
    and step time; then the growth from the first count to the last."""
    counts = results["counts"]
    span = f"{counts[0]} -> {counts[-1]}"
    lines = ["| setting | " + " | ".join(f"{n} task{'s' * (n > 1)}" for n in counts)
             + f" | growth {span} | step share growth | per added task |",
             "|---|" + "---|" * (len(counts) + 3)]
    for name, r in results["settings"].items():
        cells = []
        for n in counts:
            p = r["by_count"][str(n)]
            cells.append(f"{p['train_mb']:.1f} = {p['resident_mb']:.1f} + {p['step_peak_mb']:.1f} MB, {p['step_ms']:.0f} ms")
        lines.append(f"| {DESCRIPTIONS.get(name, name)} | " + " | ".join(cells)
                     + f" | {r['growth_mb']:+.1f} MB ({r['growth_ratio']:.2f}x) | {r['step_growth_mb']:+.1f} MB"
                     f" | {r['per_task_mb']:+.1f} MB |")
    return "\n".join(lines)


def plot(results: dict, path: str | Path) -> None:
    """Training memory and step time against the number of tasks, one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = results["counts"]
    panels = [("train_mb", "training memory (MB, allocator peak)"),
              ("step_peak_mb", "step's share above resident state (MB)"), ("step_ms", "step time (ms, median)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    for name, r in results["settings"].items():
        style = "--" if name.endswith("+lower") else "-"
        for ax, (key, _) in zip(axes, panels):
            ax.plot(counts, [r["by_count"][str(n)][key] for n in counts], style, marker="o",
                    label=DESCRIPTIONS.get(name, name))
    for ax, (_, label) in zip(axes, panels):
        ax.set_ylabel(label)
    for ax in axes:
        ax.set_xlabel("tasks")
        ax.set_xticks(counts)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"training memory vs tasks ({', '.join(results['tasks'])})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
