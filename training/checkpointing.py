# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Atomic training checkpoints (resumable state) and atomic model exports (the Q-Face export folders).

Layout under `output_dir`:
    checkpoints/step-00000050/   resumable state: `accelerator.save_state` files (model.safetensors, optimizer.bin,
                                 scheduler.bin, random_states_<rank>.pkl), trainer_state.json (step, best metric),
                                 sampler_state.pt (the data mixing sampler), recipe.yaml, versions.json
    best/                        the best model so far: the Q-Face export (`modeling_qface.hub`: weights, config,
                                 model and pipeline code, image processor, model card) + run files + eval_results.json
    final/                       the model at the end of training, same layout (no eval_results.json)

A checkpoint is written to a temporary folder (`checkpoints/.tmp-step-...`), its files are flushed to disk, and only
then is it renamed into place with `os.replace`: a folder named `step-N` is always complete, whenever the run is
killed. Older checkpoints beyond `keep_last` are deleted after the new one is in place.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

import torch

from modeling_qface.outputs.result_file import write_errors
from modeling_qface.outputs.writers import strict_json
from modeling_qface.training.recipe_base import RecipeError

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
SAMPLER_STATE = "sampler_state.pt"
_NAME = re.compile(r"^step-(\d+)$")
_PACKAGES = (
    "qface",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "safetensors",
    "huggingface_hub",
    "evaluate",
    "numpy",
    "pillow",
    "pydantic",
    "pyyaml",
    "tensorboard",
)


def package_versions() -> dict:
    """Python, platform and the versions of the packages a run depends on (None: not installed)."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


def write_run_files(folder: Path, recipe_yaml: str) -> None:
    """`recipe.yaml` (the resolved recipe) and `versions.json` next to a checkpoint or model."""
    (folder / "recipe.yaml").write_text(recipe_yaml)
    (folder / "versions.json").write_text(json.dumps(package_versions(), indent=1))


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """`(step, folder)` of the complete checkpoints, by step (numerically: step-100 after step-99)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """A `--resume` value -> the checkpoint folder to continue: "latest" (one must exist), "auto" (the latest, if
    any) or a checkpoint folder; None when not resuming. `qface train` and `qface pretrain` share it."""
    if resume is None:
        return None
    if resume in ("latest", "auto"):
        found = latest_checkpoint(output_dir)
        if found is None and resume == "latest":
            raise FileNotFoundError(f"--resume: no checkpoint under {checkpoint_root(output_dir)} to resume from")
        return found
    folder = Path(resume)
    if not folder.is_dir():
        raise FileNotFoundError(f"--resume: checkpoint folder not found: {folder}")
    return folder


def check_interrupted_run(folder: str | Path, resume_from: Path | None, overwrite: bool, overwrite_flag: str) -> None:
    """Refuses to start a new run over the checkpoints of an interrupted one (often its only product) unless
    `overwrite` says to; `overwrite_flag` is how the command spells that (`--overwrite`)."""
    checkpoints = list_checkpoints(folder)
    if resume_from is None and checkpoints and not overwrite:
        raise RecipeError(
            f"{folder} already holds checkpoints; pass --resume to continue that run (its last checkpoint is at step "
            f"{checkpoints[-1][0]}) or {overwrite_flag} to delete them and start over"
        )


def remove_partial_checkpoints(output_dir: str | Path) -> list[Path]:
    """Deletes temporary folders left by a run killed while writing; returns what it removed."""
    root = checkpoint_root(output_dir)
    stale = sorted(p for p in root.glob(".tmp-*") if p.is_dir()) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path)
    return stale


def _fsync_tree(folder: Path) -> None:
    """Flushes every file of `folder` and the folder itself, so a rename that follows never exposes empty files."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_folder(temporary: Path, folder: Path) -> None:
    """Puts the complete folder `temporary` in the place of `folder` with renames. A non-empty folder cannot be
    replaced in one rename: an existing `folder` is moved aside first, then deleted."""
    previous = folder.with_name(f".old-{folder.name}")
    if folder.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(folder, previous)
    os.replace(temporary, folder)
    _fsync_dir(folder.parent)
    if previous.exists():
        shutil.rmtree(previous)


def save_checkpoint(
    accelerator,
    output_dir: str | Path,
    step: int,
    trainer_state: dict,
    sampler_state: dict,
    recipe_yaml: str,
    keep_last: int,
) -> Path:
    """Writes the resumable state of `step` atomically; call on every process (saving is collective).

    `accelerator.save_state` writes the prepared model, optimizer and scheduler and every process's RNG states;
    `trainer_state` (JSON-able) and `sampler_state` (torch-saveable) are written by the main process.
    Returns the checkpoint folder.
    """
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:08d}"
    temporary = root / f".tmp-step-{step:08d}"  # the same name on every process: they write into one folder
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with write_errors(final, "checkpoint"):
        accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with write_errors(final, "checkpoint"):
            (temporary / TRAINER_STATE).write_text(json.dumps({**trainer_state, "step": step}, indent=1))
            torch.save(sampler_state, temporary / SAMPLER_STATE)
            write_run_files(temporary, recipe_yaml)
            _fsync_tree(temporary)
        if final.exists():  # only when resuming from an earlier checkpoint than the newest one
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync_dir(root)
        for _, old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: str | Path) -> tuple[dict, dict]:
    """Restores model, optimizer, scheduler and this process's RNG states from `folder` (a `save_checkpoint`
    folder); returns `(trainer_state, sampler_state)`."""
    folder = Path(folder)
    missing = [name for name in (TRAINER_STATE, SAMPLER_STATE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete Q-Face checkpoint: missing {missing}")
    if not (folder / f"random_states_{accelerator.process_index}.pkl").is_file():
        # Resuming on more processes than the run had: the data continues exactly, the RNG streams cannot.
        logger.warning(f"{folder} has no RNG state for process {accelerator.process_index}; it keeps its seeded RNG")
    accelerator.load_state(str(folder))
    trainer_state = json.loads((folder / TRAINER_STATE).read_text())
    sampler_state = torch.load(folder / SAMPLER_STATE, weights_only=True)
    return trainer_state, sampler_state


def export_model(accelerator, model, image_processor, folder: str | Path, recipe_yaml: str, extra: dict | None = None):
    """The Q-Face export of the (unwrapped) model into `folder`, atomically (replacing an existing folder): weights,
    config with `auto_map` and `custom_pipelines`, model and pipeline code, image processor, the run files
    (`recipe.yaml`, `versions.json`), `extra` as `eval_results.json`, and the model card `README.md` generated from
    them (`modeling_qface.hub.export_model`, the same export `qface push` and `push_to_hub` ship). Call on every
    process: gathering a sharded state dict is collective."""
    from modeling_qface.hub import export_model as write_export

    folder = Path(folder)
    temporary = folder.with_name(f".tmp-{folder.name}")
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
        extra = json.loads(strict_json(extra)) if extra else None  # NaN metrics -> null, as the file has them
        with write_errors(folder, "model export"):
            write_run_files(temporary, recipe_yaml)  # before the card, which reads recipe.yaml
            # The card names the run (the output folder), not `final` / `best` or the temporary folder.
            write_export(
                accelerator.unwrap_model(model),
                temporary,
                image_processor,
                evaluation=extra,
                repo_id=folder.resolve().parent.name,
                state_dict=state_dict,
                save_function=accelerator.save,
            )
            _fsync_tree(temporary)
        replace_folder(temporary, folder)
    accelerator.wait_for_everyone()
    return folder


__all__ = [
    "CHECKPOINT_DIR",
    "check_interrupted_run",
    "checkpoint_root",
    "export_model",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "package_versions",
    "remove_partial_checkpoints",
    "replace_folder",
    "resolve_resume",
    "save_checkpoint",
    "write_run_files",
]
