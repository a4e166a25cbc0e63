# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Loading a saved Q-Face model: safetensors only, every weight accounted for, one clear line when it cannot be.

Every place the package and its training code load Q-Face weights goes through `load_qface_model`:

- Only `model.safetensors` (or a sharded `model.safetensors.index.json`) is read. A pickled `pytorch_model.bin`
  can run code when it is unpickled, so it is never loaded, even when it is the only weights file.
- A checkpoint that does not match its `config.json` (missing, unexpected or wrongly shaped weights) is refused:
  `from_pretrained` would otherwise initialise the missing tensors at random and only print a table, and the
  model would answer with noise.
- A damaged `config.json` or weights file (truncated download, garbage bytes) becomes one line naming the file.

All of these raise `ModelLoadError`, a `ValueError`, so the CLIs print it and exit 2 without a traceback.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open

from .modeling_qface import CheckpointError, QFaceModel

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
# Weights formats that are pickles (torch.save): named in the error so the user knows why they were ignored.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# "owner/name" of a Hub repository (used only when no local path of that name exists).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_MAX_LISTED_KEYS = 8

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A saved Q-Face model that cannot be loaded as it is; the message is one line naming the folder or file."""


def load_qface_model(path: str | Path, *, strict: bool = True, model_class: type = QFaceModel) -> QFaceModel:
    """Loads a Q-Face model saved with `save_pretrained` from its safetensors weights.

    Args:
        path: the model folder (`config.json` + `model.safetensors`), or an `owner/name` Hub repository when no
            local path of that name exists (then only its safetensors weights are downloaded).
        strict: refuse a checkpoint whose weights do not match its config (missing, unexpected or wrongly shaped
            tensors). `False` logs them instead and keeps the initialised values of missing tensors.
        model_class: `QFaceModel` or a subclass.

    Raises:
        ModelLoadError: no such folder, no safetensors weights (a pickle is never loaded), a corrupt `config.json`
            or weights file, or (strict) weights that do not match the config.
    """
    name = str(path)
    local = Path(path).expanduser()
    if local.exists():
        where = f"model folder {local}"
        if local.is_file():
            raise ModelLoadError(_file_instead_of_folder(local))
        config = _check_folder(local, where, model_class)
        source = str(local)
    elif _HUB_ID.fullmatch(name):
        where, config, source = f"model {name}", None, name
    else:
        raise ModelLoadError(f"model folder {local}: not found")

    try:
        model, info = model_class.from_pretrained(
            source,
            config=config,
            # Never fall back to `pytorch_model.bin`; wrong shapes are reported in `info` (and refused below)
            # instead of as a RuntimeError that does not name them.
            use_safetensors=True,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            allow_missing_weights=True,  # reported below, by name, or (strict=False) logged
        )
    except (OSError, ValueError, RuntimeError, TypeError, SafetensorError, CheckpointError) as error:
        raise ModelLoadError(f"{where}: could not be loaded: {_one_line(error)}") from error
    problems = _weight_problems(info)
    if problems:
        message = f"{where}: {'; '.join(problems)} (the checkpoint does not match its {CONFIG_NAME})"
        if strict:
            raise ModelLoadError(message)
        logger.warning(message)
    return model


def read_config_json(folder: Path, where: str, expected: str = "a Q-Face model saved with save_pretrained") -> dict:
    """The folder's `config.json` as a dict; a `ModelLoadError` naming `where` when it is missing, not JSON or not an
    object (`expected` says what kind of folder was looked for)."""
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise ModelLoadError(f"{where}: no {CONFIG_NAME} (expected {expected})")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{where}: {CONFIG_NAME} is not valid JSON ({_one_line(error)})") from error
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{where}: {CONFIG_NAME} is not a JSON object")
    return raw


def _check_folder(folder: Path, where: str, model_class: type):
    """The folder's config (parsed here so that a bad one is named), after checking its weights files."""
    read_config_json(folder, where)
    for weights in _safetensors_files(folder, where):
        try:
            with safe_open(weights, framework="pt"):
                pass  # reads and checks the header: a truncated or garbage file fails here
        except (SafetensorError, OSError) as error:
            raise ModelLoadError(f"{where}: {weights.name} is corrupt or truncated ({_one_line(error)})") from error
    try:
        return model_class.config_class.from_pretrained(folder)
    except Exception as error:  # strict dataclass validation errors are not ValueErrors: any failure names the file
        raise ModelLoadError(f"{where}: {CONFIG_NAME} is not a valid Q-Face config ({_one_line(error)})") from error


def _safetensors_files(folder: Path, where: str) -> list[Path]:
    """`model.safetensors`, or the shards a `model.safetensors.index.json` names (each must be there)."""
    single, index = folder / SAFE_WEIGHTS_NAME, folder / SAFE_WEIGHTS_INDEX_NAME
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ModelLoadError(f"{where}: {index.name} is not a valid shard index ({_one_line(error)})") from error
        missing = [shard for shard in shards if not (folder / shard).is_file()]
        if missing:
            raise ModelLoadError(f"{where}: {index.name} names missing shards: {_listed(missing)}")
        return [folder / shard for shard in shards]
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        what = "is a pickle file" if len(pickles) == 1 else "are pickle files"
        raise ModelLoadError(
            f"{where}: no {SAFE_WEIGHTS_NAME}; {', '.join(pickles)} {what}, never loaded (unpickling "
            f"can run code): save the model as safetensors"
        )
    raise ModelLoadError(f"{where}: no {SAFE_WEIGHTS_NAME} (expected a Q-Face model saved with save_pretrained)")


def _file_instead_of_folder(path: Path) -> str:
    if path.suffix in PICKLE_SUFFIXES:
        return (
            f"model {path}: a pickle file, never loaded (unpickling can run code); give the model folder with "
            f"{CONFIG_NAME} and {SAFE_WEIGHTS_NAME}"
        )
    return f"model {path}: a file; give the model folder with {CONFIG_NAME} and {SAFE_WEIGHTS_NAME}"


def _weight_problems(info: dict) -> list[str]:
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing weights: {_listed(sorted(info['missing_keys']))}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected weights: {_listed(sorted(info['unexpected_keys']))}")
    if info.get("mismatched_keys"):
        shapes = [
            f"{key} {list(saved)} in the checkpoint, {list(expected)} in the model"
            for key, saved, expected in sorted(info["mismatched_keys"])
        ]
        problems.append(f"wrong shapes: {_listed(shapes)}")
    if info.get("error_msgs"):
        problems.append(f"errors: {_listed([_one_line(message) for message in info['error_msgs']])}")
    return problems


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    return shown + (f" and {len(items) - _MAX_LISTED_KEYS} more" if len(items) > _MAX_LISTED_KEYS else "")


def _one_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(error).__name__


__all__ = ["ModelLoadError", "load_qface_model"]
