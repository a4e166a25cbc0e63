# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""MAE pretraining recipes (`qface pretrain`): the schema, and the command line that fills it.

A recipe (see `configuration/pretrain-tiny.yaml`) has the sections `model` (the encoder and the MAE decoder),
`data` (the unlabelled images), `augment`, `train`, `optimizer`, `checkpoint`, `logging` and the top-level
`output_dir` and `seed`. It is read, overridden and validated as every recipe is (`modeling_qface.training.
recipe_base`): `--config NAME|PATH`, then the flags (each is one key: `--batch-size` is `train.batch_size`), then
`--set KEY=VALUE`; an unknown key or a bad value is a `RecipeError` naming the file and the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from modeling_qface.training.data.loading import SOURCES
from modeling_qface.training.recipe_base import (
    AdamWSection,
    AutoMixedPrecision,
    CheckpointSection,
    CropFlipSection,
    GradNorm,
    LoggingSection,
    Section,
    StepInterval,
    check_preset,
    flag_overrides,
    key_default,
    validate_recipe,
)

DEFAULT_PRESET = "qface-small"
DECODER_FIELDS = (
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_num_attention_heads",
    "decoder_intermediate_size",
)


class PretrainModelSection(Section):
    """The encoder (of `preset` or of `config`, a Q-Face or ViTMAE config JSON; default qface-small) and the MAE."""

    preset: str | None = None
    config: str | None = None
    mask_ratio: float = Field(0.75, gt=0.0, lt=1.0)  # share of patches hidden from the encoder
    norm_pix_loss: bool = True  # regress per-patch normalised pixels
    decoder_hidden_size: int | None = Field(None, gt=0)  # the MAE decoder; None: the config's
    decoder_num_hidden_layers: int | None = Field(None, gt=0)
    decoder_num_attention_heads: int | None = Field(None, gt=0)
    decoder_intermediate_size: int | None = Field(None, gt=0)

    _known_preset = field_validator("preset")(check_preset)

    @model_validator(mode="after")
    def _one_encoder(self):
        if self.preset is not None and self.config is not None:
            raise ValueError("give preset or config, not both")
        return self


class PretrainDataSection(Section):
    """Exactly one input: `folder` (an image folder, searched recursively, or a `save_to_disk` folder), or `source`
    (a `modeling_qface.training.data` adapter; its labels are ignored) with its `root`."""

    folder: str | None = None
    source: str | None = None
    root: str | None = None
    split: str = "train"  # split of the source, or of a saved DatasetDict
    image_column: str = "image"  # image column of a saved dataset
    skip_bad_images: bool = False  # leave unreadable images out (counted) instead of stopping
    num_workers: int | None = Field(None, ge=0)  # DataLoader workers; None: 0 on CPU, min(8, cores) on GPU

    @field_validator("source")
    @classmethod
    def _known_source(cls, name: str | None) -> str | None:
        if name is not None and name not in SOURCES:
            raise ValueError(f"unknown data source {name!r}; expected one of {sorted(SOURCES)}")
        return name

    @model_validator(mode="after")
    def _one_input(self):
        if (self.folder is None) == (self.source is None):
            raise ValueError(
                "give exactly one input: folder (--data DIR: an image folder or save_to_disk dataset) or source and "
                "root (--source NAME --root DIR)"
            )
        if self.source is not None and self.root is None:
            raise ValueError(f"source {self.source}: needs root (--root DIR, the dataset's top folder)")
        return self


class PretrainAugmentSection(CropFlipSection):
    crop_scale: tuple[float, float] = (0.6, 1.0)  # face crops: milder than MAE's ImageNet (0.2, 1.0)


class PretrainTrainSection(Section):
    batch_size: int = Field(64, gt=0)  # images per device per forward pass
    max_steps: int | None = Field(None, gt=0)  # optimizer steps ...
    epochs: int | None = Field(None, gt=0)  # ... or passes over the images (neither: one epoch)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_grad_norm: GradNorm = 1.0  # None (or 0): no clipping
    mixed_precision: AutoMixedPrecision = "auto"  # auto: bf16 on a bf16 GPU, no on CPU
    cpu: bool = False  # train on CPU even when a GPU is present

    @model_validator(mode="after")
    def _length(self):
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give at most one of max_steps and epochs")
        return self


class PretrainOptimizerSection(AdamWSection):
    lr: float | None = Field(None, gt=0)  # peak learning rate; None: base_lr x effective batch / 256 (MAE's rule)
    base_lr: float = Field(1.5e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float | None = Field(0.05, ge=0, lt=1)


class PretrainCheckpointSection(CheckpointSection):
    every_steps: StepInterval = 500


class PretrainLoggingSection(LoggingSection):
    num_reconstructions: int = Field(4, ge=0)  # images in reconstruction.png (0: no figure)


class PretrainRecipe(Section):
    output_dir: str
    seed: int = 0  # of weights, masks, shuffling and augmentation
    model: PretrainModelSection = Field(default_factory=PretrainModelSection)
    data: PretrainDataSection = Field(default_factory=dict)  # validated: an input is required
    augment: PretrainAugmentSection = Field(default_factory=PretrainAugmentSection)
    train: PretrainTrainSection = Field(default_factory=PretrainTrainSection)
    optimizer: PretrainOptimizerSection = Field(default_factory=PretrainOptimizerSection)
    checkpoint: PretrainCheckpointSection = Field(default_factory=PretrainCheckpointSection)
    logging: PretrainLoggingSection = Field(default_factory=PretrainLoggingSection)


# Keys a resumed run may change: where and how it runs, not what it computes.
RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir",
        "checkpoint.every_steps",
        "checkpoint.keep_last",
        "data.num_workers",
        "data.skip_bad_images",
        "train.cpu",
        "train.mixed_precision",
        "logging.every_steps",
        "logging.num_reconstructions",
    }
)


def load_pretrain_recipe(
    path: str | Path | None = None, overrides: list[tuple[list[str], Any]] = (), raw: dict | None = None
) -> PretrainRecipe:
    """Reads and validates a pretraining recipe: a YAML file or recipe name (or `raw`), with `overrides`."""
    return validate_recipe(PretrainRecipe, path, overrides, raw)[0]


# ------------------------------------------------------------------------------------------------ command line
# flag -> (recipe key, help); every flag that is given replaces its key.
FLAGS = {
    "--output-dir": ("output_dir", "folder for the pretrained model (written atomically)"),
    "--data": ("data.folder", "image folder (searched recursively) or a datasets folder written by save_to_disk"),
    "--source": ("data.source", "a Q-Face data source (modeling_qface.training.data.SOURCES), e.g. celeba"),
    "--root": ("data.root", "the --source dataset's top folder"),
    "--split": ("data.split", "split of --source, or of a saved DatasetDict"),
    "--image-column": ("data.image_column", "image column of a saved dataset"),
    "--skip-bad-images": ("data.skip_bad_images", "leave unreadable images out (counted) instead of stopping"),
    "--num-workers": ("data.num_workers", "DataLoader workers (default: 0 on CPU, min(8, cores) on GPU)"),
    "--save-every": ("checkpoint.every_steps", "optimizer steps between resumable checkpoints (0 = none)"),
    "--preset": ("model.preset", f"encoder geometry of a preset (default without --model-config: {DEFAULT_PRESET})"),
    "--model-config": ("model.config", "encoder geometry from a Q-Face or ViTMAE config JSON"),
    "--mask-ratio": ("model.mask_ratio", "share of patches hidden from the encoder"),
    "--norm-pix-loss": ("model.norm_pix_loss", "regress per-patch normalised pixels"),
    **{f"--{name.replace('_', '-')}": (f"model.{name}", f"MAE {name.replace('_', ' ')}") for name in DECODER_FIELDS},
    "--epochs": ("train.epochs", "passes over the images (replaces --max-steps)"),
    "--max-steps": ("train.max_steps", "optimizer steps to run (replaces --epochs)"),
    "--batch-size": ("train.batch_size", "images per device per forward pass"),
    "--gradient-accumulation-steps": ("train.gradient_accumulation_steps", "forward passes per optimizer step"),
    "--max-grad-norm": ("train.max_grad_norm", "gradient clipping norm (0 = no clipping)"),
    "--mixed-precision": ("train.mixed_precision", "auto = bf16 on a bf16 GPU, no on CPU"),
    "--cpu": ("train.cpu", "train on CPU even when a GPU is present"),
    "--learning-rate": ("optimizer.lr", "peak learning rate (default: base lr x effective batch / 256)"),
    "--base-learning-rate": ("optimizer.base_lr", "MAE's base learning rate for an effective batch of 256"),
    "--weight-decay": ("optimizer.weight_decay", "AdamW weight decay (not on biases, norms, tokens, positions)"),
    "--adam-betas": ("optimizer.betas", "AdamW betas"),
    "--warmup-ratio": ("optimizer.warmup_ratio", "share of the steps with linear warmup (replaces --warmup-steps)"),
    "--warmup-steps": ("optimizer.warmup_steps", "warmup steps (replaces --warmup-ratio)"),
    "--seed": ("seed", "seed of weights, masks, shuffling and augmentation"),
    "--augment": ("augment.enabled", "random resized crop + horizontal flip"),
    "--crop-scale": ("augment.crop_scale", "crop area range, share of the image"),
    "--hflip-prob": ("augment.flip", "probability of a horizontal flip"),
    "--log-every": ("logging.every_steps", "optimizer steps per train_log.jsonl line"),
    "--num-reconstructions": ("logging.num_reconstructions", "images in reconstruction.png (0 = no figure)"),
}
# A flag for one key of a pair drops the recipe's value of the other.
EXCLUSIVE_KEYS = (
    ("data.folder", "data.source"),
    ("data.folder", "data.root"),
    ("model.preset", "model.config"),
    ("train.max_steps", "train.epochs"),
    ("optimizer.warmup_steps", "optimizer.warmup_ratio"),
)
_KINDS = {
    "--mixed-precision": {"choices": ("auto", "no", "bf16")},
    "--adam-betas": {"type": float, "nargs": 2, "metavar": ("BETA1", "BETA2")},
    "--crop-scale": {"type": float, "nargs": 2, "metavar": ("MIN", "MAX")},
}


def _flag_kind(flag: str, key: str) -> dict:
    """argparse keywords of a flag, from its key's type in the schema."""
    if flag in _KINDS:
        return _KINDS[flag]
    *sections, name = key.split(".")
    schema = PretrainRecipe
    for section in sections:
        schema = schema.model_fields[section].annotation
    annotation = str(schema.model_fields[name].annotation)
    if "bool" in annotation:
        return {"action": argparse.BooleanOptionalAction}
    for text, kind in (("int", int), ("float", float)):
        if text in annotation:
            return {"type": kind}
    return {}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `qface pretrain` arguments, added to `parser` or to a new one. Flags default to None (not given)."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="qface pretrain", description="MAE pretraining of Q-Face's encoder.")
    parser.add_argument("--config", help="the recipe: a YAML path, or a name in configuration/ such as pretrain-tiny")
    for flag, (key, help_text) in FLAGS.items():
        default = key_default(PretrainRecipe, key)
        shown = f" (default: {default})" if default is not None else ""
        parser.add_argument(
            flag, dest=_dest(flag), help=f"{help_text}; recipe key {key}{shown}", **_flag_kind(flag, key)
        )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe key, e.g. --set optimizer.lr=1e-3"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="latest|auto|PATH",
        help="continue from the last checkpoint (auto: only if there is one) or from the checkpoint folder PATH",
    )
    parser.add_argument(
        "--overwrite-output-dir",
        "--overwrite",
        action="store_true",
        help="replace an existing output folder, or an interrupted run's checkpoints",
    )
    return parser


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def recipe_from_args(args: argparse.Namespace) -> PretrainRecipe:
    """The recipe of `args.config` (none: every default) with the flags given and `--set` applied."""
    keys = {_dest(flag): key for flag, (key, _) in FLAGS.items()}
    overrides = flag_overrides(args, keys, EXCLUSIVE_KEYS)
    if args.config is None:
        return validate_recipe(PretrainRecipe, "command line", overrides, raw={})[0]
    return load_pretrain_recipe(args.config, overrides)


__all__ = [
    "PretrainRecipe",
    "RESUME_MAY_CHANGE",
    "build_parser",
    "load_pretrain_recipe",
    "recipe_from_args",
]
