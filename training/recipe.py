# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning recipes (`qface train`): the schema and its checks of data sources and paths.

A recipe (see `configuration/train-tiny.yaml` for a complete one) has the sections `model`, `data`, `augment`,
`train`, `optimizer`, `eval`, `checkpoint`, `logging` and the top-level `output_dir` and `seed`. Every key is
validated before any work: an unknown key, a value of the wrong type, an unknown preset, data source, split or
adapter option (a BP4D `fold` of 4), or a data folder that does not exist raises `RecipeError` naming the file, the
key (`data.train[2].split`), the bad value and the allowed ones. Relative paths are taken from the current
directory, except source roots, which are taken from `data.root` when it is set. Reading, overrides and the error
format are those of every recipe (`modeling_qface.training.recipe_base`).

Test splits never steer training: `data.train` and `data.eval` (what `eval.best_metric` selects on) may not name a
split that holds benchmark test rows (`modeling_qface.training.data.holds_test_rows`) unless `data.allow_test_splits` is true; the
test splits go in `data.test`, which `qface train` never reads and `qface evaluate --config` scores once, at the end.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from modeling_qface.training.data.loading import SOURCES, holds_test_rows, source_problems
from modeling_qface.training.recipe_base import (
    AdamWSection,
    CheckpointSection,
    CropFlipSection,
    GradNorm,
    MixedPrecision,
    RecipeError,
    Section,
    apply_override,
    check_preset,
    check_range,
    parse_override,
    problems_text,
    validate_recipe,
)
from modeling_qface.training.recipe_base import LoggingSection as _LogInterval

# A Hugging Face Hub repository id: "name" or "owner/name".
_HUB_ID = re.compile(r"(?![.~])[\w.-]+(/[\w.-]+)?")


class ModelSection(Section):
    """What to build. Exactly one of `preset`, `config` and `init_from` gives the architecture."""

    preset: str | None = None  # a name from `modeling_qface.PRESET_NAMES`, e.g. "qface-base"
    config: str | None = None  # a QFaceConfig JSON file or a folder holding config.json
    backbone: str | None = None  # a ViT-MAE checkpoint for `QFaceModel.from_pretrained_backbone`
    init_from: str | None = None  # a saved Q-Face model to continue from (weights and config)
    loss_weights: dict[str, float] = Field(default_factory=dict)  # task name -> loss weight (overrides the config)
    # Multilabel task name -> BCE positive weight per label (overrides the config's `pos_weight`): "auto" counts
    # negatives / positives of each label over the training rows that code it (see `modeling_qface.training.label_statistics.POS_WEIGHT_CAP`)
    pos_weight: dict[str, Literal["auto"] | list[float]] = Field(default_factory=dict)
    # Stochastic depth of the encoder in training (`QFaceConfig.drop_path_rate`); None keeps the config's value
    drop_path_rate: float | None = Field(None, ge=0.0, lt=1.0)
    activation_checkpointing: bool = False

    _known_preset = field_validator("preset")(check_preset)

    @model_validator(mode="after")
    def _one_architecture(self):
        given = [key for key in ("preset", "config", "init_from") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of preset, config, init_from (got {given or 'none'})")
        if self.backbone is not None and self.init_from is not None:
            raise ValueError("backbone and init_from exclude each other: init_from already holds an encoder")
        for task, weight in self.loss_weights.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"loss_weights.{task}: expected a finite weight >= 0, got {weight}")
        for task, weights in self.pos_weight.items():
            if weights != "auto" and not all(math.isfinite(w) and w > 0 for w in weights):
                raise ValueError(f"pos_weight.{task}: expected 'auto' or finite weights > 0, got {weights}")
        return self


class SourceSection(Section):
    """One data source: a `modeling_qface.training.data` adapter name, its folder, split and adapter options."""

    name: str
    root: str
    split: str = "train"
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None  # how logs and metrics name this source; defaults to "<name>_<split>"

    @field_validator("name")
    @classmethod
    def _known_source(cls, name: str) -> str:
        if name not in SOURCES:
            raise ValueError(f"unknown data source {name!r}; expected one of {sorted(SOURCES)}")
        return name

    @property
    def display_name(self) -> str:
        return self.label or f"{self.name}_{self.split}"


class TrainSourceSection(SourceSection):
    share: float = Field(gt=0.0, le=1.0)  # fraction of every batch drawn from this source


class DataSection(Section):
    root: str | None = None  # base folder of relative source roots
    cache_dir: str | None = None  # Arrow cache of the prepared sources (None: the datasets cache)
    crop_format: Literal["png", "jpeg"] = "png"  # how the prepared Q-Face crops are stored (png: lossless)
    num_workers: int = Field(0, ge=0)  # DataLoader worker processes per training process
    train: list[TrainSourceSection] = Field(min_length=1)
    eval: list[SourceSection] = Field(default_factory=list)  # scored during training: validation splits
    test: list[SourceSection] = Field(default_factory=list)  # never read by `qface train`; `qface evaluate --config`
    # Lets data.train / data.eval name a test split (a smoke test on fixtures without validation splits); never for
    # numbers anyone reports: the best checkpoint would be picked on the test data.
    allow_test_splits: bool = False

    @model_validator(mode="after")
    def _shares_and_labels(self):
        total = sum(source.share for source in self.train)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train: the shares must sum to 1, got {total:g}")
        for what, sources in (("train", self.train), ("eval", self.eval), ("test", self.test)):
            names = [source.display_name for source in sources]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{what}: two sources are named {duplicates}; give them distinct `label`s")
        return self


class AugmentSection(CropFlipSection):
    crop_ratio: tuple[float, float] = (0.9, 1.0 / 0.9)  # aspect ratio (width / height) of the crop
    brightness: float = Field(0.2, ge=0.0, lt=1.0)  # factors drawn from [1 - x, 1 + x]
    contrast: float = Field(0.2, ge=0.0, lt=1.0)
    saturation: float = Field(0.2, ge=0.0, lt=1.0)
    rotation: float = Field(0.0, ge=0.0, le=90.0)  # in-plane rotation drawn from [-x, x] degrees; pose follows

    @model_validator(mode="after")
    def _crop_ratio(self):
        check_range("crop_ratio", self.crop_ratio)
        return self


class TrainSection(Section):
    batch_size: int = Field(gt=0)  # global batch of one forward pass, over all processes
    max_steps: int | None = Field(None, gt=0)  # optimizer steps
    epochs: float | None = Field(None, gt=0)  # alternative to max_steps, see `mixing.steps_per_epoch`
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_grad_norm: GradNorm = 1.0  # None (or 0): no clipping
    mixed_precision: MixedPrecision = "no"

    @model_validator(mode="after")
    def _length(self):
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of max_steps and epochs")
        return self


class OptimizerSection(AdamWSection):
    lr: float = Field(gt=0)  # peak learning rate of the decoder and heads
    layer_decay: float = Field(0.75, gt=0, le=1)  # lr factor per ViT block going down from the top


class EvalSection(Section):
    every_steps: int | None = Field(None, gt=0)  # None: evaluate only at the end
    batch_size: int = Field(64, gt=0)
    best_metric: str | None = None  # e.g. "expression/accuracy" or "raf_db_test/expression/accuracy"
    best_mode: Literal["max", "min"] = "max"
    threshold: float = Field(0.5, gt=0, lt=1)  # probability threshold of multilabel tasks


class LoggingSection(_LogInterval):
    tensorboard: bool = True
    sample_ids: bool = False  # write what each process trained on to <output_dir>/sample_ids/rank<r>.jsonl


class Recipe(Section):
    output_dir: str
    seed: int = 0
    model: ModelSection
    data: DataSection
    augment: AugmentSection = Field(default_factory=AugmentSection)
    train: TrainSection
    optimizer: OptimizerSection
    eval: EvalSection = Field(default_factory=EvalSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)

    @model_validator(mode="after")
    def _best_needs_eval(self):
        if self.eval.best_metric is not None and not self.data.eval:
            raise ValueError("eval.best_metric is set but data.eval lists no source to evaluate on")
        return self

    def source_root(self, source: SourceSection) -> Path:
        """The source's folder: `root` as given when absolute, else under `data.root` (or the current folder)."""
        root = Path(source.root).expanduser()
        if not root.is_absolute() and self.data.root is not None:
            root = Path(self.data.root).expanduser() / root
        return root.resolve()


def load_recipe(
    path: str | Path | None = None,
    overrides: list[tuple[list[str], Any]] = (),
    raw: dict | None = None,
    check_paths: bool = True,
    check_splits: bool = True,
) -> Recipe:
    """Reads and validates a recipe.

    Args:
        path: the YAML file or the name of a recipe in `configuration/` (or None with `raw`).
        overrides: `(key path, value)` pairs applied before validation (command-line flags).
        raw: the recipe as a dict instead of a file.
        check_paths: also check that every data source's root folder (and local model paths) exist.
        check_splits: refuse test splits in `data.train` / `data.eval` (`check_test_splits`); off for
            `qface evaluate`, which only scores.
    """
    recipe, where = validate_recipe(Recipe, path, overrides, raw)
    check_recipe_sources(recipe, where)
    if check_splits:
        check_test_splits(recipe, where)
    if check_paths:
        check_recipe_paths(recipe, where)
    return recipe


def check_recipe_sources(recipe: Recipe, where: str = "recipe") -> None:
    """Raises `RecipeError` naming every source split or adapter option that the source does not have (checked
    without reading a file, so a typo fails now rather than when its source is loaded, after the model is built)."""
    problems = []
    for section in ("train", "eval", "test"):
        for i, source in enumerate(getattr(recipe.data, section)):
            for key, message in source_problems(source.name, source.split, source.options):
                problems.append(f"data.{section}[{i}].{key}: {message}")
    if problems:
        raise RecipeError(problems_text(where, problems))


def test_split_sources(recipe: Recipe) -> list[str]:
    """`data.train[i] (name)` / `data.eval[i] (name)` of every training or evaluation source that holds benchmark
    test rows (see the module docstring)."""
    return [
        f"data.{section}[{i}] ({source.display_name})"
        for section in ("train", "eval")
        for i, source in enumerate(getattr(recipe.data, section))
        if holds_test_rows(source.name, source.split, source.options)
    ]


def check_test_splits(recipe: Recipe, where: str = "recipe") -> None:
    """Raises `RecipeError` naming every `data.train` / `data.eval` source on a test split, unless
    `data.allow_test_splits` is true: training and model selection use train / validation splits only."""
    if recipe.data.allow_test_splits:
        return
    problems = [
        f"{source}: a test split; train and select the best model on train / validation splits (e.g. raf_db val, "
        "celeba val, bp4d / disfa / 300w_lp val with options.val_fraction) and list test splits under data.test, "
        "which `qface evaluate --config` scores at the end (data.allow_test_splits: true overrides this)"
        for source in test_split_sources(recipe)
    ]
    if problems:
        raise RecipeError(problems_text(where, problems))


def check_recipe_paths(recipe: Recipe, where: str = "recipe") -> None:
    """Raises `RecipeError` naming every source root and local model path that does not exist."""
    problems = []
    for section in ("train", "eval", "test"):
        for i, source in enumerate(getattr(recipe.data, section)):
            root = recipe.source_root(source)
            if not root.is_dir():
                problems.append(f"data.{section}[{i}].root: folder not found: {root}")
    for key in ("config", "backbone", "init_from"):
        value = getattr(recipe.model, key)
        if value is None or Path(value).expanduser().exists():
            continue
        # backbone / init_from may name a Hub repository ("facebook/vit-mae-base") on a machine with network.
        if key != "config" and _HUB_ID.fullmatch(value):
            continue
        problems.append(f"model.{key}: not found: {value}")
    if problems:
        raise RecipeError(problems_text(where, problems))


__all__ = [
    "Recipe",
    "RecipeError",
    "apply_override",
    "check_recipe_paths",
    "check_recipe_sources",
    "check_test_splits",
    "load_recipe",
    "parse_override",
    "test_split_sources",
]
