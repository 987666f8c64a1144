"""The multitask-vs-single-task study: one command, four runs at the same budget.

Variants: single-task detector, single-task segmenter (each on the examples labelled for it),
plain multitask (Keras' own step, fixed loss weights), multitask with the recipe's engine
settings (when the recipe has any), and `extra` variants (`--variants`): plain multitask with one
or several of the named override sets of `REMEDIES` (issue 17) or `SAMPLING` (task sampling
ratios, issue 15) joined by "+" (e.g. `focal+pcgrad`, `dynamic`). Writes study.md (a table of every task's best and final validation metric, and the gap
to its single-task model), study.png (per-task validation curves of all variants on one figure)
and study.json, beside one run folder per variant.

Two budgets (`budget`):
- "run": every run trains for the recipe's steps;
- "system": the multitask model, which replaces all the single-task models, trains for their
  steps together (one run's steps times the number of tasks): the same images processed as the
  set it replaces. With a batch split evenly between the tasks' sources, each task then also sees
  as many labelled examples as its single-task model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtl_tf.config import Recipe
from mtl_tf.recipe import recipe_from_dict
from mtl_tf.report.plots import plt, read_history
from mtl_tf.tasks import TASKS
from mtl_tf.train.fit import RunFolderError, run_finished, run_fit

PLAIN_TRAIN = {"accumulate": {}, "lr_multipliers": {}, "plateau": None, "balance": {"method": "fixed"}}


BUDGETS = ("run", "system")


def _set_task_key(raw: dict, task_type: str, key: str, value) -> None:
    for name, section in raw["tasks"].items():
        if (section.get("type") or name) == task_type:
            section[key] = value


def _engine(**keys):
    """Engine settings on top of plain multitask; every head steps on every batch it has labels
    in and the trunk takes each task's mean loss, so without `keys` the step is Keras' own."""
    def apply(raw, out):
        raw["train"].update(keys, trunk_weighting="tasks", accumulate={t: 1 for t in raw["tasks"]})
    return apply


# Remedy override sets of issue 17 (applied to the plain multitask recipe); `out`: the study folder.
REMEDIES = {
    "focal": lambda raw, out: _set_task_key(raw, "detection", "classification_loss", "focal"),
    "sigmoid": lambda raw, out: _set_task_key(raw, "detection", "classification_loss", "sigmoid"),
    "sigmoid_focal": lambda raw, out: _set_task_key(raw, "detection", "classification_loss", "sigmoid_focal"),
    "balanced": lambda raw, out: _set_task_key(raw, "segmentation", "loss", "balanced"),
    "ohem": lambda raw, out: _set_task_key(raw, "segmentation", "loss", "ohem"),
    "normalized": _engine(balance={"method": "normalized"}),
    "pcgrad": _engine(gradient_surgery="pcgrad"),
    "cagrad": _engine(gradient_surgery="cagrad"),
    "distill": lambda raw, out: raw["train"].update(teachers={
        t: str(out / f"single_{t}") for t, section in raw["tasks"].items()
        if (section.get("type") or t) in ("detection", "segmentation")}),
}


def _sampling(weights):
    """A task-sampling variant: the recipe's mixing with these `weights` (issue 15's ratios)."""
    def apply(raw, out):
        mixing = raw["data"].get("mixing") or {}
        if mixing.get("mode") not in ("sample", "per_batch_task"):
            raise ValueError(f"study variant weights={weights}: the recipe's data.mixing.mode must be sample or "
                             "per_batch_task (sources drawn by weight)")
        raw["data"]["mixing"] = {**mixing, "weights": weights}
    return apply


# Task-sampling variants (the recipe's own mixing is `multitask_plain`): uniform, by source size,
# annealed from proportional to uniform, dynamic (train/sampling.py).
SAMPLING = {w: _sampling(w) for w in ("uniform", "proportional", "annealed", "dynamic")}
VARIANTS = {**REMEDIES, **SAMPLING}


def remedy_recipe(plain: dict, variant: str, out: Path) -> Recipe:
    """The plain multitask recipe (as data) with the remedies or sampling named in `variant` ("a+b")."""
    raw = json.loads(json.dumps(plain))
    for name in variant.split("+"):
        if name not in VARIANTS:
            raise ValueError(f"unknown study variant {name!r}; choose from {sorted(VARIANTS)} (joined by '+')")
        VARIANTS[name](raw, out)
    return recipe_from_dict(raw)


def study_variants(recipe: Recipe, budget: str = "run", extra=(), out: Path = Path(".")) -> dict[str, Recipe]:
    """{variant name: recipe}: one single-task run per task, plain multitask, engine multitask
    (if the recipe sets engine keys), then `multitask_<v>` for each remedy variant in `extra`."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown study budget {budget!r}; choose one of {list(BUDGETS)}")
    raw = recipe.to_dict()
    single = {**raw, "train": {**raw["train"], **PLAIN_TRAIN, "single_task": None}}
    epochs = raw["train"]["epochs"] * (len(recipe.tasks) if budget == "system" else 1)
    plain = {**single, "train": {**single["train"], "epochs": epochs}}
    variants = {f"single_{t}": recipe_from_dict({**single, "train": {**single["train"], "single_task": t}})
                for t in recipe.tasks}
    variants["multitask_plain"] = recipe_from_dict(plain)
    if recipe.train.engine_enabled() or recipe.model.recompute:
        variants["multitask_engine"] = recipe_from_dict(
            {**raw, "train": {**raw["train"], "single_task": None, "epochs": epochs}})
    for variant in extra:
        variants[f"multitask_{variant}"] = remedy_recipe(plain, variant, out)
    return variants


def run_study(recipe: Recipe, out: Path, budget: str = "run", verbose="auto", extra=()) -> dict:
    """Train every variant into out/<variant> (finished runs are reused) and write the report."""
    previous = out / "study.json"
    if previous.exists() and json.loads(previous.read_text()).get("budget", "run") != budget:
        raise RunFolderError(f"{out} holds a study with another budget; its runs would be reused. Choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    histories = {}
    variants = study_variants(recipe, budget, extra, out)
    for name, variant in variants.items():  # the single-task runs first
        run = out / name
        if not run_finished(run):
            print(f"== study: {name}")
            run_fit(single_task_references(variant, histories, recipe), run, verbose=verbose)
        histories[name] = read_history(run / "history.csv")
    results = summarize(histories, recipe)
    (out / "study.json").write_text(json.dumps({"budget": budget, "variants": results}, indent=2))
    figures = [f"- {name}: [{name}/diagnostics.png]({name}/diagnostics.png)" for name in variants
               if (out / name / "diagnostics.png").exists()]
    (out / "study.md").write_text(markdown_table(results, recipe, budget)
                                  + ("\nDiagnostics over training (train.diagnostics_every):\n" + "\n".join(figures) + "\n"
                                     if figures else ""))
    plot_study(histories, variants, out / "study.png")
    return results


def single_task_references(variant: Recipe, histories: dict, recipe: Recipe) -> Recipe:
    """`variant`, and when it samples tasks dynamically, each task's expected accuracy (the
    reference its shortfall is measured against) set to its single-task model's best value in
    this study, unless the recipe gives one: the thesis' "furthest below its expected accuracy"."""
    mixing = variant.data.mixing
    if mixing is None or mixing.weights != "dynamic" or variant.train.single_task:
        return variant
    bests = summarize({n: h for n, h in histories.items() if n.startswith("single_")}, recipe)
    found = {t: bests[f"single_{t}"][t]["best"] for t in variant.tasks if t in bests.get(f"single_{t}", {})}
    raw = variant.to_dict()
    raw["train"]["best"]["references"] = {**found, **raw["train"]["best"]["references"]}
    return recipe_from_dict(raw)


def _metric(recipe: Recipe, task: str) -> tuple[str, bool]:
    """(the task's chosen validation metric, whether higher is better)."""
    cls = TASKS[recipe.tasks[task].type]
    metric = recipe.train.best.metrics.get(task, cls.primary_metric)
    return metric, metric not in cls.lower_is_better


def _metric_key(recipe: Recipe, task: str) -> str:
    return f"val_{task}_{_metric(recipe, task)[0]}"


def summarize(histories: dict, recipe: Recipe) -> dict:
    """{variant: {task: {"best", "final"}}} of each task's chosen validation metric (best in the
    metric's direction), and each multitask variant's "delta_m": the mean relative change of
    its tasks' best values against their single-task models, in % (Vandenhende et al. 2021;
    positive = better than single-task)."""
    results = {}
    for name, history in histories.items():
        results[name] = {}
        for task in recipe.tasks:
            values = history.get(_metric_key(recipe, task))
            if values:
                best = np.nanmax(values) if _metric(recipe, task)[1] else np.nanmin(values)
                results[name][task] = {"best": float(best), "final": float(values[-1])}
    for name, per_task in results.items():
        if name.startswith("single_"):
            continue
        changes = []
        for task, values in per_task.items():
            single = results.get(f"single_{task}", {}).get(task)
            if single and single["best"]:
                sign = 1.0 if _metric(recipe, task)[1] else -1.0
                changes.append(sign * (values["best"] - single["best"]) / abs(single["best"]))
        if changes and len(changes) == len(recipe.tasks):
            per_task["delta_m"] = round(100 * float(np.mean(changes)), 2)
    return results


def markdown_table(results: dict, recipe: Recipe, budget: str = "run") -> str:
    tasks = list(recipe.tasks)
    head = "| variant | " + " | ".join(f"{t} {_metric_key(recipe, t)[len(t) + 5:]} best / final (gap to single)" for t in tasks)
    lines = [head + " | Δm vs single |", "|---" * (len(tasks) + 2) + "|"]
    for name, per_task in results.items():
        cells = []
        for t in tasks:
            if t not in per_task:
                cells.append("-")
                continue
            single = results.get(f"single_{t}", {}).get(t)
            gap = f" ({100 * (per_task[t]['best'] - single['best']):+.1f} pts)" if single and not name.startswith("single") else ""
            cells.append(f"{100 * per_task[t]['best']:.1f} / {100 * per_task[t]['final']:.1f}{gap}")
        delta = per_task.get("delta_m")
        cells.append(f"{delta:+.2f}%" if delta is not None else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    per_run = f"{recipe.train.epochs} epochs x {recipe.train.steps_per_epoch or 'one pass'} steps, batch {recipe.data.batch_size}"
    if budget == "system":
        per_run += f"; multitask runs x{len(tasks)} (budget 'system': the steps of the single-task set they replace)"
    return "\n".join(lines) + (f"\n\nValues in points (x100). Δm: mean relative change of each task's best "
                                "value against its single-task model (positive = better). "
                                f"Budget per run: {per_run}.\n")


def plot_study(histories: dict, variants: dict[str, Recipe], path: Path) -> None:
    """One panel per task: its validation metric for every variant that has it, against the
    training images processed (against epochs when the recipe leaves steps_per_epoch open)."""
    recipe = next(iter(variants.values()))
    tasks = list(recipe.tasks)
    by_images = recipe.train.steps_per_epoch is not None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        key = _metric_key(recipe, task)
        for name, history in histories.items():
            if key in history:
                epochs = np.arange(1, len(history[key]) + 1)
                train = variants[name].train
                x = epochs * train.steps_per_epoch * variants[name].data.batch_size / 1000 if by_images else epochs
                ax.plot(x, history[key], marker=".", label=name)
        ax.set_title(key.removeprefix("val_"))
        ax.set_xlabel("training images processed (thousands)" if by_images else "epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
