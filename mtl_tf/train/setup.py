"""The one path from a recipe to training: its train sources, the steps of an epoch, the
augmented and mixed batches, and a model compiled for them (with the multitask engine when the
recipe asks for it). `fit`, the QAT fine-tune and `mtl-tf data bench` all train through it, so
they read the same data the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtl_tf.config import Recipe
from mtl_tf.data import pipeline
from mtl_tf.train.engine import MultitaskEngine
from mtl_tf.train.optim import build_optimizer


@dataclass
class TrainingData:
    """A recipe's train sources (`SourceExamples`) and the steps of one epoch: every train
    example once per epoch at the recipe's batch size, unless train.steps_per_epoch says."""

    recipe: Recipe
    tasks: dict
    sources: list
    steps: int

    def batches(self, sources=None, recipe: Recipe | None = None, dynamic=None):
        """Endless training batches of `sources` (default: all), as `recipe` (default: this
        one) configures augmentation and mixing; `dynamic`: the variable holding dynamic
        sampling shares (train/sampling.py)."""
        return pipeline.recipe_training_batches(recipe or self.recipe, self.tasks, sources or self.sources, self.steps,
                                                dynamic)


def training_data(recipe: Recipe, tasks: dict) -> TrainingData:
    """The recipe's train sources (from the cache when complete) and its steps per epoch."""
    data = recipe.data
    sources = pipeline.load_sources(data.train, tasks, data.image_size, data.cache, "train")
    train = recipe.train
    if train.teachers and not train.single_task:
        from mtl_tf.train.distill import distilled_sources, teacher_labeller

        labellers = {name: teacher_labeller(run, tasks[name], train.teacher_min_score, train.teacher_min_confidence)
                     for name, run in train.teachers.items()}
        sources = distilled_sources(sources, tasks, labellers)
    steps = recipe.train.steps_per_epoch or pipeline.steps_per_epoch(sum(s.count for s in sources), data.batch_size)
    return TrainingData(recipe, tasks, sources, steps)


# What `fit` uses when the training sources are partially labelled and the recipe sets no
# train.balance: the study remedy "normalized" (train/study.py), which won every study here.
PARTIAL_LABEL_TRAIN = {"balance": {"method": "normalized"}, "trunk_weighting": "tasks"}


def partial_labels(recipe: Recipe) -> bool:
    """Whether no train source labels every task of the (multitask) recipe."""
    from mtl_tf.data.binding import bind_targets
    from mtl_tf.tasks import TASKS

    types = {name: TASKS[cfg.type] for name, cfg in recipe.tasks.items()}
    if len(types) < 2 or recipe.train.single_task:
        return False
    return not any(set(bind_targets(cfg, types).values()) >= set(types) for cfg in recipe.data.train)


def partial_label_defaults(recipe: Recipe) -> tuple[Recipe, str | None]:
    """(the recipe to train, a line for `fit` or None). On partially-labelled sources and a recipe
    that leaves train.balance out, normalized loss balancing with each task's mean loss on the
    trunk and every head stepping on every batch it has labels in (PARTIAL_LABEL_TRAIN): it put
    multitask above the single-task models on every task of docs/study/partial_aerial_normalized.md
    and partial_shapes_system*.md. A recipe that sets train.balance keeps it."""
    from mtl_tf.recipe import recipe_from_dict

    if not partial_labels(recipe):
        return recipe, None
    if "balance" in recipe.train.model_fields_set:
        return recipe, (f"partial labels: no train source labels every task; keeping the recipe's "
                        f"train.balance.method={recipe.train.balance.method} (normalized won every study here, "
                        "docs/study/partial_aerial_normalized.md)")
    raw = recipe.to_dict()
    raw["train"].update(PARTIAL_LABEL_TRAIN)
    raw["train"]["accumulate"] = {**{t: 1 for t in recipe.tasks}, **raw["train"]["accumulate"]}
    chosen = recipe_from_dict(raw, origin=f"{recipe.name} with the partial-label defaults")
    return chosen, ("partial labels: no train source labels every task; using train.balance.method=normalized "
                    "with trunk_weighting=tasks (best in every study here, docs/study/partial_aerial_normalized.md; "
                    "set train.balance in the recipe to choose another)")


def uses_engine(recipe: Recipe) -> bool:
    """Whether training runs the multitask engine's step (engine settings, or recompute)."""
    return recipe.train.engine_enabled() or bool(recipe.model.recompute)


def compile_for_training(model, recipe: Recipe, total_steps: int) -> MultitaskEngine | None:
    """Compile `model` with the recipe's optimizer and learning-rate schedule over `total_steps`
    (call inside the distribution strategy's scope); returns the engine when the recipe uses one
    (the engine applies the schedule itself, so the optimizer's rate stays constant)."""
    engine = uses_engine(recipe)
    model.compile(optimizer=build_optimizer(recipe.train.optimizer, total_steps, constant=engine))
    if not engine:
        return None
    model.engine = MultitaskEngine(model, recipe.train, recipe.data.batch_size, total_steps)
    return model.engine
