"""The recipe schema: typed, strict config sections (unknown keys are errors).

This module only describes recipes; `mtl_tf.recipe` reads a YAML file and validates it, task and
source sections by the config class their module registers (so a new task type or source brings
its own schema, derived from `TaskConfig` / `SourceSection` here).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


SPLITS = ("train", "val", "test")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the key and the problem."""


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _unique_names(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique. Received: {names}")
    return names


# A task's class list: non-empty, no duplicates.
ClassNames = Annotated[list[str], Field(min_length=1), AfterValidator(_unique_names)]

# Names a task cannot take: they name other things in example keys, logs, outputs and files.
RESERVED_TASK_NAMES = frozenset({"trunk", "image", "images", "loss", "total", "score", "val", "all", "model"})
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def task_name_problem(name: str) -> str | None:
    """Why `name` cannot name a task, or None."""
    if not _TASK_NAME.match(str(name)):
        return f"'{name}' is not a task name: use letters, digits and _, starting with a letter"
    if name in RESERVED_TASK_NAMES:
        return f"'{name}' is reserved (reserved names: {', '.join(sorted(RESERVED_TASK_NAMES))})"
    return None


class TaskConfig(Strict):
    """What every task section has; a task type's `Config` derives from it."""

    type: str | None = Field(None, description="the task type (default: the task's name)")
    loss_weight: float = Field(1.0, ge=0)


class ClassTaskConfig(TaskConfig):
    """A task over a list of named classes."""

    classes: ClassNames


class SourceSection(Strict):
    """What every data source section has; a source's `Config` derives from it and says which
    label kinds it yields (`label_kinds`) and their class names (`class_names`)."""

    targets: dict[str, str | None] = Field(
        default_factory=dict,
        description="label kind -> task name it feeds (null: not used), e.g. {boxes: vehicles, mask: "
        "landcover}; a kind not listed feeds the one task whose type takes it",
    )

    def label_kinds(self) -> list[str]:
        """The kinds of labels this source yields (e.g. boxes, mask)."""
        return []

    def class_names(self, kind: str) -> list[str]:
        """Names of the class ids of label kind `kind` (empty for kinds without classes)."""
        return []


# ---------------------------------------------------------------- sections


class BackboneConfig(Strict):
    name: Literal[
        "tiny",
        "resnet50",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "mobilenet_v3_small_minimalistic",
        "mobilenet_v3_large_minimalistic",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "efficientnet_v2_b0",
    ] = "tiny"
    weights: str | None = Field(
        None, description="'imagenet' (downloads), null (random init) or a path to a weights file"
    )
    width: int = Field(16, ge=4, description="channels of the first stage (tiny backbone only)")


class NeckConfig(Strict):
    """A neck shared by every head over the backbone taps (mtl_tf/model/neck.py)."""

    type: Literal["fpn", "bifpn"] = "bifpn"
    channels: int = Field(64, ge=8, description="channels of every output level")
    repeats: int = Field(1, ge=1, description="BiFPN layers stacked (fpn: 1)")

    @model_validator(mode="after")
    def _fpn_once(self):
        if self.type == "fpn" and self.repeats != 1:
            raise ValueError(f"repeats is for type bifpn; an fpn has one top-down pass. Received: repeats={self.repeats}")
        return self


class ModelConfig(Strict):
    backbone: BackboneConfig = BackboneConfig()
    neck: NeckConfig | None = Field(
        None, description="optional FPN / BiFPN shared by every head; the heads read its levels as C3, C4, C5"
    )
    split_last_stage: bool = Field(
        False, description="give every task its own copy of the last backbone stage"
    )
    recompute: list[Literal["lower", "last_stage"]] = Field(
        default_factory=list,
        description="backbone parts trained with gradient checkpointing: each runs as ~sqrt(n) segments "
        "cut between blocks, only the tensors between segments kept for the backward pass",
    )

    @model_validator(mode="after")
    def _neck_needs_one_last_stage(self):
        if self.neck is not None and self.split_last_stage:
            raise ValueError("a neck is shared by every head: it needs one shared last stage (split_last_stage: false)")
        return self


def _ordered_range(value):
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"a range [low, high] needs 0 <= low <= high. Received: {list(value)}")
    return value


# A [low, high] factor range, e.g. a saturation gain.
FactorRange = Annotated[tuple[float, float], AfterValidator(_ordered_range)]


class ExpandConfig(Strict):
    """SSD zoom-out: the image is placed at a random spot of a canvas up to `max_ratio` times
    larger (filled with `fill`, the mask with 255), which makes objects smaller."""

    probability: float = Field(0.5, ge=0, le=1)
    max_ratio: float = Field(4.0, ge=1)
    fill: tuple[int, int, int] = Field((123, 117, 104), description="RGB of the canvas")


class CropConfig(Strict):
    """SSD IoU-constrained random crop, resized back to the input size."""

    probability: float = Field(0.9, ge=0, le=1, description="chance to crop at all")
    min_ious: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        [0.0, 0.1, 0.3, 0.5, 0.7, 0.9], min_length=1,
        description="one drawn per image: some box must overlap the crop by this IoU (0: any crop)",
    )
    min_scale: float = Field(0.3, gt=0, le=1, description="smallest crop side, fraction of the image side")
    max_aspect: float = Field(2.0, ge=1, description="largest crop height/width (or width/height)")
    trials: int = Field(50, ge=1, description="candidate crops drawn; none valid = no crop")
    min_visible: float = Field(
        0.0, ge=0, lt=1, description="boxes keeping at most this share of their area are dropped"
    )


class ColorConfig(Strict):
    """HSV colour distortion (and contrast), applied to the image only."""

    probability: float = Field(0.5, ge=0, le=1)
    hue: float = Field(0.05, ge=0, le=0.5, description="largest hue shift, fraction of the colour circle")
    saturation: FactorRange = (0.5, 1.5)
    value: FactorRange = Field((0.6, 1.4), description="brightness gain")
    contrast: FactorRange = (0.5, 1.5)


class AugmentConfig(Strict):
    """Training augmentation: image, boxes and mask move together (data/augment.py)."""

    horizontal_flip: bool = True
    vertical_flip: bool = False
    expand: ExpandConfig | None = None
    crop: CropConfig | None = None
    color: ColorConfig | None = None


# Source probabilities: by name, or one weight per train source.
SourceWeights = Literal["uniform", "proportional"] | list[Annotated[float, Field(ge=0)]]


class AnnealedWeights(Strict):
    """Weights going linearly from `from` to `to` over anneal_steps (each normalized first)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)
    start: SourceWeights = Field(alias="from")
    end: SourceWeights = Field(alias="to")


class DynamicSamplingConfig(Strict):
    """weights: dynamic. After every epoch each task's validation metric (train.best.metrics,
    default the primary) is divided by its reference (train.best.references) or, without one, by
    its own best so far; a source's need is the largest shortfall (1 - that ratio) of the tasks it
    labels, and its probability is proportional to exp(need / temperature), kept within
    [min_share, max_share]. Shares decided after epoch e apply from epoch e + 2 (train/sampling.py)."""

    temperature: float = Field(0.1, gt=0)
    min_share: float = Field(0.05, ge=0, lt=1)
    max_share: float = Field(0.95, gt=0, le=1)


class MixingConfig(Strict):
    """How the training sources are mixed into batches (data/mixing.py)."""

    mode: Literal["interleave", "sample", "per_batch_task"] = Field(
        description="interleave: a fixed count per source in every batch; sample: each example "
        "drawn from a source by weight; per_batch_task: each batch drawn whole from one source"
    )
    per_batch: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="interleave: examples of each train source per batch (sum = batch_size; "
        "default: an even split)"
    )
    weights: Literal["uniform", "proportional", "annealed", "dynamic"] | list[Annotated[float, Field(ge=0)]] \
        | AnnealedWeights | None = Field(
            None, description="sample / per_batch_task: source probabilities (default: proportional); "
            "annealed goes from proportional to uniform over anneal_steps, {from: w0, to: w1} from w0 to "
            "w1; dynamic follows the tasks' validation metrics (see `dynamic`)"
        )
    anneal_steps: int | None = Field(None, ge=1, description="default: all training steps")
    dynamic: DynamicSamplingConfig | None = Field(None, description="weights: dynamic: its settings")

    def annealing(self) -> bool:
        return self.weights == "annealed" or isinstance(self.weights, AnnealedWeights)


class DataConfig(Strict):
    image_size: tuple[int, int] = Field((160, 160), description="model input (height, width)")
    batch_size: int = Field(16, ge=1)
    shuffle_buffer: int = Field(1024, ge=1)
    augment: AugmentConfig = AugmentConfig()
    mixing: MixingConfig | None = Field(None, description="default: one shuffled stream of all train sources")
    cache: str | None = Field(
        None, description="folder of TFRecord shards written by `mtl-tf data prepare`; read when complete"
    )
    deterministic: bool = Field(True, description="same seed, same batches (parallel map keeps order)")
    train: list[Any] = Field(min_length=1, description="sources of training examples")
    val: list[Any] = Field(min_length=1, description="sources of validation examples")
    test: list[Any] = Field(default_factory=list, description="sources of test examples (optional)")

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, size):
        if any(s < 32 or s % 32 for s in size):
            raise ValueError(f"each side must be a multiple of 32 and >= 32. Received: {list(size)}")
        return size

    @model_validator(mode="after")
    def _mixing_fits_sources(self):
        mixing, n = self.mixing, len(self.train)
        if mixing is None:
            return self
        if mixing.mode == "interleave":
            if mixing.weights is not None or mixing.anneal_steps is not None:
                raise ValueError("mixing.weights / anneal_steps are for modes sample and per_batch_task; "
                                 "interleave takes mixing.per_batch")
            if mixing.per_batch is not None and (len(mixing.per_batch) != n or sum(mixing.per_batch) != self.batch_size):
                raise ValueError(f"mixing.per_batch needs one count per train source ({n}) summing to "
                                 f"batch_size ({self.batch_size}). Received: {mixing.per_batch}")
            if mixing.per_batch is None and self.batch_size < n:
                raise ValueError(f"interleave needs batch_size >= the {n} train sources")
            return self
        if mixing.per_batch is not None:
            raise ValueError("mixing.per_batch is for mode interleave")
        lists = {"weights": mixing.weights}
        if isinstance(mixing.weights, AnnealedWeights):
            lists = {"weights.from": mixing.weights.start, "weights.to": mixing.weights.end}
        for key, weights in lists.items():
            if isinstance(weights, list) and (len(weights) != n or sum(weights) <= 0):
                raise ValueError(f"mixing.{key} needs one weight per train source ({n}), not all zero. "
                                 f"Received: {weights}")
        if mixing.anneal_steps is not None and not mixing.annealing():
            raise ValueError("mixing.anneal_steps is for weights: annealed or {from: ..., to: ...}")
        if mixing.dynamic is not None and mixing.weights != "dynamic":
            raise ValueError("mixing.dynamic is for weights: dynamic")
        bounds = mixing.dynamic or DynamicSamplingConfig()
        if mixing.weights == "dynamic" and not bounds.min_share * n <= 1 <= bounds.max_share * n:
            raise ValueError(f"mixing.dynamic: {n} sources cannot have shares within [{bounds.min_share}, "
                             f"{bounds.max_share}] (need min_share * {n} <= 1 <= max_share * {n})")
        return self


class OptimizerConfig(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    schedule: Literal["constant", "cosine", "poly"] = "cosine"
    poly_power: float = Field(0.9, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    clipnorm: float | None = Field(None, gt=0)


class BalanceConfig(Strict):
    method: Literal["fixed", "uncertainty", "gradnorm", "dwa", "normalized"] = Field(
        "fixed", description="fixed (tasks.<t>.loss_weight), uncertainty (Kendall 2018), gradnorm "
        "(Chen 2018), dwa (dynamic weight average, Liu 2019), normalized (each task's loss divided "
        "by a running mean of its own magnitude, so every task's loss is about 1)"
    )
    normalized_momentum: float = Field(0.9, ge=0, lt=1, description="normalized: momentum of the running mean")
    gradnorm_alpha: float = Field(1.5, ge=0)
    gradnorm_learning_rate: float = Field(0.025, gt=0)
    dwa_temperature: float = Field(2.0, gt=0)


class PlateauConfig(Strict):
    patience: int = Field(3, ge=1, description="epochs without improvement of the task's metric")
    action: Literal["lower_lr", "freeze"] = "lower_lr"
    factor: float = Field(0.1, gt=0, lt=1, description="lower_lr: the task's LR multiplier is scaled by this")
    min_delta: float = Field(0.0, ge=0)
    metrics: dict[str, str] = Field(default_factory=dict, description="task -> metric (default: primary)")


class BestConfig(Strict):
    metrics: dict[str, str] = Field(default_factory=dict, description="task -> metric (default: primary)")
    references: dict[str, float] = Field(
        default_factory=dict, description="task -> single-task reference value the metric is divided by"
    )


class FinetuneHeadsConfig(Strict):
    """A last stage after the main training: the shared trunk frozen, every head trained."""

    epochs: int = Field(ge=1)
    learning_rate: float | None = Field(None, gt=0, description="default: train.optimizer.learning_rate")


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int | None = Field(
        None, ge=1, description="batches per epoch (the training stream is endless; an epoch is the period "
        "of validation, logs and backups). Default: (examples in all train sources) // batch_size, "
        "whatever the mixing",
    )
    optimizer: OptimizerConfig = OptimizerConfig()
    seed: int = 0
    num_overlays: int = Field(6, ge=0, description="prediction overlays written after training")
    # -- the multitask engine (train/engine.py); all off by default
    accumulate: dict[str, int] = Field(
        default_factory=dict,
        description="examples per step: 'trunk' and per task (labelled examples); default data.batch_size",
    )
    trunk_weighting: Literal["examples", "tasks"] = Field(
        "examples",
        description="examples: a task weighs on the trunk by its labelled examples (UberNet); tasks: "
        "each task present in a batch weighs fully (its mean loss, as Keras' summed losses)",
    )
    balance: BalanceConfig = BalanceConfig()
    lr_multipliers: dict[str, float] = Field(default_factory=dict, description="'trunk' or task -> LR factor")
    gradient_surgery: Literal["none", "pcgrad", "cagrad"] = Field(
        "none", description="combine the tasks' trunk gradients with PCGrad (Yu 2020) or CAGrad (Liu 2021) "
        "instead of summing them (train/surgery.py); one trunk backward pass per task"
    )
    cagrad_c: float = Field(0.5, ge=0, description="CAGrad's radius c")
    head_backward: Literal["joint", "sequential"] = Field(
        "joint", description="joint: the heads' forward and backward passes may run concurrently (the executor's "
        "choice); sequential: head i+1's forward pass starts only after head i's backward pass is done, so at "
        "most one head's activations are alive besides the trunk's (UberNet); same numbers either way"
    )
    diagnostics_every: int | None = Field(
        None, ge=1, description="every N batches record per-task loss, trunk gradient norm and cosine, effective "
        "LR, BatchNorm drift, subset shift, background share (train/diagnostics.py): diagnostics.json/.png"
    )
    teachers: dict[str, str] = Field(
        default_factory=dict, description="task -> finished run folder whose model labels the train examples "
        "lacking that task's labels (train/distill.py); ignored by single-task runs"
    )
    teacher_min_score: float = Field(0.5, ge=0, le=1, description="teacher boxes scoring below are dropped")
    teacher_min_confidence: float = Field(0.5, ge=0, le=1, description="teacher mask pixels below are ignored")
    plateau: PlateauConfig | None = None
    best: BestConfig = BestConfig()
    single_task: str | None = Field(None, description="train only this task, on the examples labelled for it")
    strategy: Literal["none", "mirrored", "multi_worker", "multi_worker_mirrored", "tpu"] = Field(
        "none", description="none: one device; mirrored: every local GPU; multi_worker (alias "
        "multi_worker_mirrored): several machines, cluster from TF_CONFIG or fit --workers (train/cluster.py); "
        "tpu: a Cloud TPU (TPUStrategy)",
    )
    finetune_heads: FinetuneHeadsConfig | None = Field(
        None, description="after the main epochs, train the heads with the shared trunk frozen (train/finetune.py)"
    )

    def engine_enabled(self) -> bool:
        """Whether the custom multitask step is needed (plain Keras `fit` otherwise)."""
        return bool(self.accumulate or self.lr_multipliers or self.plateau or self.balance.method != "fixed"
                    or self.trunk_weighting != "examples" or self.gradient_surgery != "none"
                    or self.head_backward != "joint")


class ExportConfig(Strict):
    calibration_images: int = Field(
        200, ge=1, description="validation images that calibrate full-int8 ranges (warning below 100)"
    )
    max_drop: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="per task, the largest drop of its primary metric (a fraction: 0.01 = 1 point) "
        "that `mtl-tf export --verify` accepts; tasks not listed default to 0.02",
    )
    qat_learning_rate: float = Field(1e-4, gt=0, description="learning rate of the --qat fine-tune")


class Recipe(Strict):
    name: str = "run"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    tasks: dict[str, Any] = Field(min_length=1)
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _engine_keys_name_tasks(self):
        for name in self.tasks:
            problem = task_name_problem(name)
            if problem:
                raise ValueError(f"tasks: {problem}")
        train, names = self.train, set(self.tasks)
        for field, keys, extra in (
            ("accumulate", train.accumulate, {"trunk"}),
            ("lr_multipliers", train.lr_multipliers, {"trunk"}),
            ("teachers", train.teachers, set()),
            ("best.metrics", train.best.metrics, set()),
            ("best.references", train.best.references, set()),
            ("plateau.metrics", train.plateau.metrics if train.plateau else {}, set()),
        ):
            unknown = set(keys) - names - extra
            if unknown:
                raise ValueError(f"train.{field}: unknown keys {sorted(unknown)}; allowed: {sorted(names | extra)}")
        if any(v < 1 for v in train.accumulate.values()):
            raise ValueError(f"train.accumulate: sizes must be >= 1. Received: {train.accumulate}")
        if any(v < 0 for v in train.lr_multipliers.values()):
            raise ValueError(f"train.lr_multipliers: must be >= 0. Received: {train.lr_multipliers}")
        if train.single_task is not None and train.single_task not in names:
            raise ValueError(f"train.single_task: '{train.single_task}' is not a task; allowed: {sorted(names)}")
        return self

    def to_dict(self) -> dict:
        """The resolved recipe as plain data (what `fit` writes into the run folder)."""
        return self.model_dump(mode="json", serialize_as_any=True)
