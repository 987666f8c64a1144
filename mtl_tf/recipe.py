"""Reading recipes: a YAML file (plus `key=value` overrides) validated into a `Recipe`.

A typo anywhere in a recipe is a `RecipeError` naming the key, the allowed keys and the closest
match. The fixed sections are validated by the schema in `mtl_tf.config`; each task section by
the `Config` of its task type (`type`, default: the task's name) and each source section by its
source's `Config`, so their errors carry the same full key path. Every label kind a source yields
is bound to the task it feeds (`data.binding`).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mtl_tf.config import SPLITS, Recipe, RecipeError
from mtl_tf.data.binding import BindingError, bind_targets
from mtl_tf.data.sources import SOURCES
from mtl_tf.tasks import TASKS


def load_recipe(path: str | Path, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override, origin=str(path))
    return recipe_from_dict(raw, origin=str(path))


def recipe_from_dict(raw: dict, origin: str = "<recipe>") -> Recipe:
    """Validate a recipe given as plain data; errors become one readable `RecipeError`.

    The fixed sections are validated first; then each task section by its type's config class
    and each source section by its source's, then every source's label kinds are bound to
    tasks and their class names checked against the tasks' classes.
    """
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(f"{origin}: invalid recipe\n" + _describe(err, Recipe)) from None
    problems = []
    for name in list(recipe.tasks):
        section = recipe.tasks[name] or {}
        if not isinstance(section, dict):
            problems.append(f"  tasks.{name}: a task section is a mapping, got {type(section).__name__}")
            continue
        task_type = section.get("type", name)
        if task_type not in TASKS:
            key = f"tasks.{name}.type" if "type" in section else f"tasks.{name}"
            problems.append(f"  {key}: {_unknown(task_type, list(TASKS), 'task type')}")
            continue
        cfg = _validate_section(TASKS[task_type].Config, {**section, "type": task_type}, f"tasks.{name}", problems)
        recipe.tasks[name] = cfg
    for split in SPLITS:
        sources = getattr(recipe.data, split)
        for i, section in enumerate(sources):
            where = f"data.{split}.{i}"
            kind = section.get("type") if isinstance(section, dict) else None
            if kind not in SOURCES:
                problems.append(f"  {where}.type: {_unknown(kind, list(SOURCES), 'source type')}")
                continue
            sources[i] = _validate_section(SOURCES[kind].Config, section, where, problems)
    for name in recipe.export.max_drop:
        if name not in recipe.tasks:
            problems.append(f"  export.max_drop.{name}: {_unknown(name, list(recipe.tasks), 'task')}")
    if not problems:
        problems = _binding_problems(recipe)
    if problems:
        raise RecipeError(f"{origin}: invalid recipe\n" + "\n".join(problems))
    return recipe


def restrict_tasks(recipe: Recipe, names: typing.Sequence[str]) -> Recipe:
    """The recipe with only the tasks `names` (in the recipe's order): sources bind the label
    kinds of dropped tasks to nothing (`targets: {kind: null}`), and per-task keys of the dropped
    tasks go (accumulate, lr_multipliers, teachers, best, plateau, export.max_drop, single_task)."""
    unknown = [n for n in names if n not in recipe.tasks]
    if unknown or not names:
        raise RecipeError(f"cannot keep tasks {list(names)}: the recipe's tasks are {', '.join(recipe.tasks)}")
    raw, keep = recipe.to_dict(), set(names)
    dropped = set(recipe.tasks) - keep
    raw["tasks"] = {n: t for n, t in raw["tasks"].items() if n in keep}
    for split in SPLITS:
        for section, source in zip(raw["data"][split], getattr(recipe.data, split)):
            bound = bind_targets(source, {n: TASKS[t.type] for n, t in recipe.tasks.items()})
            section["targets"] = {**section.get("targets", {}),
                                  **{kind: None for kind, task in bound.items() if task in dropped}}
    train = raw["train"]
    per_task = [train, train, train, train["best"], train["best"], train["plateau"] or {}, raw["export"]]
    for parent, key in zip(per_task, ["accumulate", "lr_multipliers", "teachers", "metrics", "references",
                                      "metrics", "max_drop"]):
        if key in parent:
            parent[key] = {k: v for k, v in parent[key].items() if k not in dropped}
    if train.get("single_task") in dropped:
        train["single_task"] = None
    return recipe_from_dict(raw, origin=f"{recipe.name} restricted to {', '.join(names)}")


def _validate_section(config_cls, section, where: str, problems: list[str]):
    try:
        return config_cls.model_validate(section)
    except ValidationError as err:
        problems.append(_describe(err, config_cls, prefix=where + "."))
        return None


def _binding_problems(recipe: Recipe) -> list[str]:
    """Every label kind of every source feeds at most one task, and every class it emits is
    listed by that task."""
    task_types = {name: TASKS[cfg.type] for name, cfg in recipe.tasks.items()}
    problems = []
    for split in SPLITS:
        for i, source in enumerate(getattr(recipe.data, split)):
            try:
                bound = bind_targets(source, task_types)
            except BindingError as err:
                problems.append(f"  data.{split}.{i}.targets: {err}")
                continue
            for kind, task in bound.items():
                known = getattr(recipe.tasks[task], "classes", None)
                missing = set(source.class_names(kind)) - set(known or [])
                if known is not None and missing:
                    problems.append(
                        f"  data.{split}.{i}: source '{source.type}' has {kind} classes "
                        f"{sorted(missing)} that are not in tasks.{task}.classes {known}"
                    )
    return problems


def apply_override(raw: dict, override: str, origin: str = "<recipe>") -> None:
    """Set `a.b.0.c=value` inside nested recipe data; the value is parsed as YAML."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise RecipeError(f"{origin}: override must look like key.sub=value. Received: {override!r}")
    node: Any = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(part, node, override, origin)]
        else:
            node = node.setdefault(part, {})
    last = parts[-1]
    parsed = yaml.safe_load(value)
    if isinstance(node, list):
        node[_list_index(last, node, override, origin)] = parsed
    elif isinstance(node, dict):
        node[last] = parsed
    else:
        raise RecipeError(f"{origin}: override {override!r}: '{'.'.join(parts[:-1])}' is not a section")


def _list_index(part: str, node: list, override: str, origin: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise RecipeError(
            f"{origin}: override {override!r}: '{part}' is not an index of a list of {len(node)}"
        )
    return int(part)


def _unknown(name: str, allowed: list[str], kind: str) -> str:
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; allowed: {', '.join(sorted(allowed))}"


def _describe(err: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        where = prefix + ".".join(str(p) for p in e["loc"]) if e["loc"] else prefix.rstrip(".") or "<top>"
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(root, e["loc"][:-1])
            lines.append(f"  {where}: {_unknown(e['loc'][-1], allowed, 'key')}")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if e["type"] == "value_error" else f" (got {e.get('input')!r})"
            lines.append(f"  {where}: {msg}{got}")
    return "\n".join(lines)


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Field names of the config class found by walking `loc` down from `model`."""
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
