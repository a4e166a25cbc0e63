# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""What every training recipe shares: finding, reading and validating it, command-line overrides, one-line errors,
and the section types whose keys mean the same in `qface pretrain` and `qface train`.

A recipe is a YAML file (read with `yaml.safe_load`) validated by a pydantic schema: `Recipe`
(`modeling_qface.training.recipe`, fine-tuning) or `PretrainRecipe` (`modeling_qface.training.pretrain_recipe`).
`--config` takes a path or the name of a recipe in `configuration/` (`train-tiny`, `pretrain-small`). Values are
replaced, in this order, by the command line's flags (each flag is one key; a flag for one of two keys that name
the same thing drops the recipe's value of the other, e.g. `--max-steps` drops `train.epochs`) and by
`--set KEY=VALUE`. Every problem is reported as a `RecipeError` naming the file and the key path
(`optimizer.weight_decy: unknown key`), one line per problem.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from modeling_qface.configuration import PRESET_DIR, PRESET_NAMES


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the offending key."""


class Section(BaseModel):
    # Unknown keys are errors: a misspelt `weight_decy` would otherwise silently keep its default.
    model_config = ConfigDict(extra="forbid", validate_default=True)

    def to_yaml(self) -> str:
        """The resolved recipe (every key, defaults included), as `recipe.yaml` next to checkpoints and models."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


Schema = TypeVar("Schema", bound=Section)


# ------------------------------------------------------------------------------------------------ shared values
def _yaml_no(value):
    # YAML 1.1 reads an unquoted `no` as False.
    return "no" if value is False else value


def _zero_is_none(value):
    return None if value == 0 and not isinstance(value, bool) else value


# "no" (quoted or not) or "bf16" ("auto" as well where a recipe allows it).
MixedPrecision = Annotated[Literal["no", "bf16"], BeforeValidator(_yaml_no)]
AutoMixedPrecision = Annotated[Literal["auto", "no", "bf16"], BeforeValidator(_yaml_no)]
# A gradient-clipping norm; 0 or null: no clipping.
GradNorm = Annotated[Annotated[float, Field(gt=0)] | None, BeforeValidator(_zero_is_none)]
# A step interval; 0 or null: never.
StepInterval = Annotated[Annotated[int, Field(gt=0)] | None, BeforeValidator(_zero_is_none)]


def check_preset(preset: str | None) -> str | None:
    if preset is not None and preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r} (expected one of {', '.join(PRESET_NAMES)})")
    return preset


def check_range(name: str, pair: tuple[float, float], upper: float = math.inf) -> None:
    low, high = pair
    if not 0.0 < low <= high <= upper:
        bound = " <= 1" if upper == 1.0 else ""
        raise ValueError(f"{name}: expected 0 < low <= high{bound}, got {list(pair)}")


# ------------------------------------------------------------------------------------------------ shared sections
class CropFlipSection(Section):
    """Random resized crop and horizontal flip of a training image (`augment`)."""

    enabled: bool = True
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area fraction of the random resized crop
    flip: float = Field(0.5, ge=0.0, le=1.0)  # probability of a horizontal flip

    @model_validator(mode="after")
    def _crop_scale(self):
        check_range("crop_scale", self.crop_scale, upper=1.0)
        return self


class AdamWSection(Section):
    """AdamW and its warmup (`optimizer`); the learning rate is each recipe's own."""

    weight_decay: float = Field(0.05, ge=0)  # on matrices only (see `modeling_qface.training.optim`)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int | None = Field(None, ge=0)  # linear warmup in steps ...
    warmup_ratio: float | None = Field(None, ge=0, lt=1)  # ... or as a fraction of the run
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine floor, as a fraction of each group's peak lr

    @model_validator(mode="after")
    def _warmup(self):
        given = {"warmup_steps", "warmup_ratio"} & self.model_fields_set
        if len(given) == 2 and self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("give at most one of warmup_steps and warmup_ratio")
        if self.warmup_steps is not None and "warmup_ratio" not in given:
            self.warmup_ratio = None  # a default ratio gives way to steps (and the resolved recipe validates again)
        return self


class CheckpointSection(Section):
    every_steps: StepInterval = None  # optimizer steps between resumable checkpoints; 0 / None: none
    keep_last: int = Field(2, gt=0)  # checkpoints kept (the newest)


class LoggingSection(Section):
    every_steps: int = Field(10, gt=0)  # optimizer steps per line of the training log


# ------------------------------------------------------------------------------------------------ errors
def key_path(loc: tuple) -> str:
    """pydantic's `('data', 'train', 2, 'root')` -> `data.train[2].root`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_errors(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        key = key_path(item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        shown = "" if item["type"] in ("missing", "value_error") else f" (got {item['input']!r})"
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{key}: {message}{shown}")
    return problems_text(where, lines)


def problems_text(where: str, problems: list[str]) -> str:
    """One problem on one line (`file: key: message`), several as a block under `file: invalid recipe`."""
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where}: invalid recipe\n" + "\n".join(f"  {problem}" for problem in problems)


# ------------------------------------------------------------------------------------------------ overrides
class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()  # an override value that removes the key from the recipe (its default applies)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"optimizer.lr=3e-4"` -> `(["optimizer", "lr"], 0.0003)`; the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. optimizer.lr=3e-4")
    parsed = yaml.safe_load(value) if value else None
    # YAML 1.1 reads 3e-4 (no dot) as a string; a number is what every such key wants.
    if isinstance(parsed, str):
        with contextlib.suppress(ValueError):
            parsed = float(parsed) if any(c in parsed for c in ".eE") else parsed
    return key.split("."), parsed


def apply_override(raw: dict, path: list[str], value: Any) -> None:
    """Sets `raw[path[0]][path[1]]...` (list items by index), creating missing mapping levels; `DROP` removes it."""
    node = raw
    for depth, part in enumerate(path[:-1]):
        child = node[int(part)] if isinstance(node, list) else node.get(part)
        if child is None:
            if value is DROP:
                return
            child = {}
            node[part] = child
        if not isinstance(child, (dict, list)):
            raise RecipeError(f"--set {'.'.join(path)}: {'.'.join(path[: depth + 1])} is not a section")
        node = child
    last = path[-1]
    if value is DROP:
        if isinstance(node, dict):
            node.pop(last, None)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def flag_overrides(
    args, keys: dict[str, str], exclusive: tuple[tuple[str, str], ...] = ()
) -> list[tuple[list[str], Any]]:
    """The overrides of the command-line flags given: `keys` maps a flag's argparse `dest` to its recipe key (a flag
    is given when `args` has it and it is not None). A flag for one key of an `exclusive` pair drops the recipe's
    value of the other (unless that one is given too). `--set KEY=VALUE` items (`args.set`) come last."""
    given = {keys[dest]: value for dest in keys if (value := getattr(args, dest, None)) is not None}
    overrides = [
        (other.split("."), DROP)
        for pair in exclusive
        for key, other in (pair, pair[::-1])
        if key in given and other not in given
    ]
    overrides += [(key.split("."), value) for key, value in given.items()]
    return overrides + [parse_override(text) for text in getattr(args, "set", None) or ()]


# ------------------------------------------------------------------------------------------------ loading
def recipe_file(path_or_name: str | Path) -> Path:
    """A recipe's file: the path given, or the recipe of that name in `configuration/` (`pretrain-tiny`)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    named = PRESET_DIR / f"{path_or_name}.yaml"
    bare = path.name == str(path_or_name) and not path.suffix
    if bare and named.is_file():
        return named
    hint = ""
    if bare:
        hint = f" (nor a recipe of configuration/: {', '.join(sorted(p.stem for p in PRESET_DIR.glob('*.yaml')))})"
    raise RecipeError(f"recipe file not found: {path_or_name}{hint}")


def read_recipe_file(path: str | Path) -> tuple[dict, str]:
    """`(raw recipe, its file's name for messages)` of a path or recipe name."""
    path = recipe_file(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    return raw, str(path)


def validate_recipe(
    schema: type[Schema],
    path: str | Path | None = None,
    overrides: list[tuple[list[str], Any]] = (),
    raw: dict | None = None,
) -> tuple[Schema, str]:
    """`(recipe, where)`: the file at `path` (or `raw`), with `overrides` applied, validated by `schema`; `where`
    names the file (or "recipe") in later messages."""
    where = "recipe"
    if raw is None and path is not None:
        raw, where = read_recipe_file(path)
    elif path is not None:
        where = str(path)
    raw = {} if raw is None and path is None else raw
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for key, value in overrides:
        apply_override(raw, key, value)
    try:
        return schema.model_validate(raw), where
    except ValidationError as error:
        raise RecipeError(format_errors(error, where)) from None


def flatten(values: dict, prefix: str = "") -> dict:
    """A nested recipe dict -> `{"optimizer.lr": 0.001, ...}` (lists and other values kept as they are)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def key_default(schema: type[Section], key: str):
    """The default of a dotted recipe key (None where it has none)."""
    *sections, name = key.split(".")
    for section in sections:
        schema = schema.model_fields[section].annotation
    field = schema.model_fields[name]
    return None if field.is_required() else field.get_default(call_default_factory=True)


__all__ = [
    "DROP",
    "AdamWSection",
    "AutoMixedPrecision",
    "CheckpointSection",
    "CropFlipSection",
    "GradNorm",
    "LoggingSection",
    "MixedPrecision",
    "RecipeError",
    "Section",
    "StepInterval",
    "apply_override",
    "check_preset",
    "check_range",
    "flag_overrides",
    "flatten",
    "format_errors",
    "key_default",
    "parse_override",
    "problems_text",
    "read_recipe_file",
    "recipe_file",
    "validate_recipe",
]
