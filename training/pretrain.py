# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""MAE pretraining of Q-Face's encoder on unlabelled face images, with Accelerate (works offline).

    qface pretrain --config pretrain-small --data faces/ --output-dir runs/mae-small --epochs 100
    qface pretrain --config pretrain-tiny --data faces/ --output-dir runs/mae-tiny --set optimizer.lr=3e-3
    accelerate launch -m modeling_qface.training.pretrain --config pretrain-base --source celeba --root /data/CelebA ...

The recipe (`--config`: a path or a name in `configuration/`; flags and `--set KEY=VALUE` replace its values) is a
`PretrainRecipe` (`modeling_qface.training.pretrain_recipe`), validated as every recipe is before any work.

The output folder is a `ViTMAEForPreTraining` checkpoint (safetensors) plus the image processor, ready for
`QFaceModel.from_pretrained_backbone(output_dir, config)`, with `pretrain_config.json` (the recipe, resolved values,
package versions), `train_log.jsonl` (step, loss, lr, images/s) and `reconstruction.png`. It is written to
`<output_dir>.partial` and renamed at the end, so `output_dir` is either complete or absent.

Every `checkpoint.every_steps` (`--save-every`) optimizer steps the run writes a resumable checkpoint to
`<output_dir>.partial/checkpoints/` (`modeling_qface.training.checkpointing`, as `qface train` does). A killed run
continues with `--resume` (the last checkpoint; `--resume auto`: only if there is one; `--resume PATH`: that one) and
ends with the same weights, bit for bit, as an uninterrupted one. A run without `--resume` refuses to start over an
interrupted run's checkpoints unless `--overwrite-output-dir` says to. The checkpoints are deleted once the model is
published.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed

from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.outputs.writers import strict_json

from .checkpointing import (
    TRAINER_STATE,
    check_interrupted_run,
    checkpoint_root,
    load_checkpoint,
    package_versions,
    remove_partial_checkpoints,
    replace_folder,
    resolve_resume,
    save_checkpoint,
)
from .mae_data import (
    BadImageError,
    EpochBatchSampler,
    MaeImageDataset,
    ProcessorCollator,
    RandomResizedCropFlip,
    UnreadableImages,
    check_images,
)
from .mae_figure import reconstruct, reconstruction_images, save_reconstruction_figure
from .mae_model import build_mae_model, encoder_config, open_image_source, pretraining_config, warn_if_decoder_dominates
from .optim import build_optimizer, build_scheduler, warmup_steps
from .pretrain_recipe import RESUME_MAY_CHANGE, PretrainRecipe, build_parser, recipe_from_args
from .recipe_base import flatten
from .tracking import TrainLog, truncate_jsonl

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "pretrain_config.json"
FIGURE_FILE = "reconstruction.png"


@dataclass
class Progress:
    """Where a run stands: optimizer steps done, the epoch, and the micro-batches each process took from it."""

    step: int = 0
    epoch: int = 0
    batches: int = 0


@dataclass
class Run:
    """What the set-up builds: the prepared model, optimizer and data, and the values it resolved."""

    recipe: PretrainRecipe
    accelerator: Accelerator
    processor: object
    source: object
    indices: list[int]
    dataloader: torch.utils.data.DataLoader
    sampler: EpochBatchSampler
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    resolved: dict

    @property
    def total_steps(self) -> int:
        return self.resolved["total_steps"]


# ------------------------------------------------------------------------------------------------ the run
def pretrain(recipe: PretrainRecipe, resume: str | None = None, overwrite: bool = False) -> Path:
    """Runs MAE pretraining as `recipe` says and returns the output folder (see the module docstring)."""
    output_dir = Path(recipe.output_dir).absolute()
    check_output_dir(output_dir, overwrite)
    staging = staging_dir(output_dir)
    resume_from = resolve_resume(staging, resume)
    check_interrupted_run(staging, resume_from, overwrite, "--overwrite-output-dir")
    saved_state = read_checkpoint_state(resume_from, recipe) if resume_from is not None else None
    run = set_up(recipe, resume_from, saved_state)
    if run.accelerator.is_main_process:
        prepare_staging(staging, resume_from, saved_state["step"] if saved_state else 0)
    run.accelerator.wait_for_everyone()
    progress, drawn = Progress(), UnreadableImages()
    if resume_from is not None:
        trainer_state, position = load_checkpoint(run.accelerator, resume_from)
        progress = Progress(step=trainer_state["step"], **position)
        drawn = UnreadableImages(trainer_state["unreadable"])
        logger.info("resumed from %s: step %d, epoch %d", resume_from, progress.step, progress.epoch)

    started = time.perf_counter()
    log = TrainLog(run.accelerator, staging / LOG_FILE, run.total_steps, recipe.logging.every_steps, progress.step)
    try:
        final_loss = train_loop(run, log, progress, drawn, checkpointer(run, staging, drawn))
    finally:
        log.close()
    result = {
        "steps": run.total_steps,
        "final_loss": final_loss,
        "train_seconds": round(time.perf_counter() - started, 3),
        "resumed_from": str(resume_from) if resume_from else None,
    }
    count_unreadable(run.resolved, result, gather_unreadable(run.accelerator, drawn))
    finish(run, staging, output_dir, result)
    return output_dir


def set_up(recipe: PretrainRecipe, resume_from: Path | None, saved_state: dict | None) -> Run:
    """The accelerator, the images (checked), the data order, the MAE, its optimizer and schedule."""
    on_gpu = torch.cuda.is_available() and not recipe.train.cpu
    mixed_precision = recipe.train.mixed_precision
    if mixed_precision == "auto":  # bf16 autocast is 10x slower than fp32 on this project's CPUs
        mixed_precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
        cpu=recipe.train.cpu,
    )
    set_seed(recipe.seed)

    config = encoder_config(recipe.model)
    processor = build_image_processor(config)
    with accelerator.main_process_first():  # the first process builds a source's Arrow cache, the others reuse it
        source = open_image_source(recipe.data, FaceCrop.from_config(config))
    indices, unreadable = check_images(source, recipe.data.skip_bad_images, accelerator.is_local_main_process)
    if saved_state is not None:
        check_same_images(saved_state, len(indices), resume_from)
    dataloader, sampler = build_dataloader(recipe, source, indices, processor, on_gpu)
    model = build_mae_model(pretraining_config(config, recipe.model))
    warn_if_decoder_dominates(model)

    train = recipe.train
    effective_batch = train.batch_size * train.gradient_accumulation_steps * accelerator.num_processes
    learning_rate = recipe.optimizer.lr
    if learning_rate is None:  # MAE's linear scaling rule
        learning_rate = recipe.optimizer.base_lr * effective_batch / 256
    optimizer = build_optimizer(model, recipe.optimizer, learning_rate)
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    steps_per_epoch = math.ceil(len(dataloader) / train.gradient_accumulation_steps)
    total_steps = train.max_steps or (train.epochs or 1) * steps_per_epoch
    # Stepped once per optimizer step by every process, so not handed to `prepare` (which steps it per process);
    # registered so that checkpoints hold it.
    scheduler = build_scheduler(optimizer, recipe.optimizer, total_steps)
    accelerator.register_for_checkpointing(scheduler)
    resolved = {
        "learning_rate": learning_rate,
        "effective_batch_size": effective_batch,
        "total_steps": total_steps,
        "warmup_steps": warmup_steps(recipe.optimizer, total_steps),
        "steps_per_epoch": steps_per_epoch,
        "num_images": len(indices),
        "unreadable_images": len(unreadable),
        "unreadable_examples": unreadable[:20],
        "mixed_precision": mixed_precision,
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "num_workers": dataloader.num_workers,
    }
    logger.info("MAE pretraining: %s", json.dumps(resolved))
    parts = (accelerator, processor, source, indices, dataloader, sampler, model, optimizer, scheduler, resolved)
    return Run(recipe, *parts)


def build_dataloader(recipe: PretrainRecipe, source, indices: list[int], processor, on_gpu: bool):
    """Batches `{"pixel_values": (B, 3, H, W), "unreadable", "error"}` in a seeded order per epoch, augmented
    when `augment.enabled`; returns the DataLoader and its `EpochBatchSampler` (which says where an epoch starts)."""
    augment, data, seed = recipe.augment, recipe.data, recipe.seed
    crop_flip = RandomResizedCropFlip(augment.crop_scale, flip_prob=augment.flip) if augment.enabled else None
    num_workers = data.num_workers
    if num_workers is None:  # on CPU, workers would compete with the model for the few cores
        num_workers = min(8, os.cpu_count() or 1) if on_gpu else 0
    sampler = EpochBatchSampler(len(indices), recipe.train.batch_size, seed)
    loader = torch.utils.data.DataLoader(
        MaeImageDataset(source, indices, crop_flip, data.skip_bad_images, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=ProcessorCollator(processor),
        # Its own generator: starting an epoch must not draw from the global RNG, which a checkpoint restores.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
        pin_memory=on_gpu,
    )
    return loader, sampler


def train_loop(run: Run, log: TrainLog, progress: Progress, unreadable: UnreadableImages, checkpoint) -> float:
    """Runs optimizer steps from `progress` (updated as it goes) to the last, calling `checkpoint(progress)` every
    `checkpoint.every_steps` steps; returns the last logged loss."""
    accelerator, every = run.accelerator, run.recipe.checkpoint.every_steps
    run.model.train()
    while progress.step < run.total_steps:
        # A resumed epoch skips what its processes took before the checkpoint (empty when that ended the epoch).
        run.sampler.start(progress.epoch, progress.batches * accelerator.num_processes)
        for batch in run.dataloader:
            progress.batches += 1
            grad_norm = train_pass(run, batch, log, unreadable)
            if not accelerator.sync_gradients:
                continue
            learning_rate = run.scheduler.get_last_lr()[0]  # the rate this step used
            run.scheduler.step()
            progress.step += 1
            log.end_step(progress.step, progress.epoch, learning_rate, grad_norm)
            if progress.step == run.total_steps:
                return log.last_loss
            if every and progress.step % every == 0:
                checkpoint(progress)
        progress.epoch, progress.batches = progress.epoch + 1, 0
    return log.last_loss


def train_pass(run: Run, batch: dict, log: TrainLog, unreadable: UnreadableImages):
    """One forward and backward pass (an optimizer step at the end of an accumulation window); the gradient norm
    when it clipped."""
    if batch["error"] is not None:
        raise BadImageError(batch["error"])
    unreadable.add(batch["unreadable"])
    accelerator, model, max_norm = run.accelerator, run.model, run.recipe.train.max_grad_norm
    grad_norm = None
    with accelerator.accumulate(model):
        loss = model(pixel_values=batch["pixel_values"]).loss
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_norm is not None:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
        run.optimizer.step()  # the prepared optimizer steps only at the end of an accumulation window
        run.optimizer.zero_grad()
    log.add_pass(loss, len(batch["pixel_values"]))
    return grad_norm


def checkpointer(run: Run, staging: Path, drawn: UnreadableImages):
    """`checkpoint(progress)`: the resumable state (collective: every process calls it)."""
    recipe_yaml = run.recipe.to_yaml()
    state = {"recipe": recipe_record(run.recipe), "num_images": len(run.indices), "total_steps": run.total_steps}

    def checkpoint(progress: Progress) -> None:
        trainer_state = {**state, "unreadable": gather_unreadable(run.accelerator, drawn)}
        position = {"epoch": progress.epoch, "batches": progress.batches}
        keep = run.recipe.checkpoint.keep_last
        save_checkpoint(run.accelerator, staging, progress.step, trainer_state, position, recipe_yaml, keep)

    return checkpoint


def finish(run: Run, staging: Path, output_dir: Path, result: dict) -> None:
    """Writes the outputs into the staging folder, drops its checkpoints and publishes it as `output_dir`."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(run.model).eval()
        figure = reconstruction_images(run.source, run.indices, run.recipe.logging.num_reconstructions)
        write_outputs(staging, model, run.processor, figure, run.recipe, {"resolved": run.resolved, "result": result})
        shutil.rmtree(checkpoint_root(staging), ignore_errors=True)  # the published model supersedes them
        replace_folder(staging, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()


# ------------------------------------------------------------------------------------------------ images
def gather_unreadable(accelerator: Accelerator, unreadable: UnreadableImages) -> dict[str, str]:
    """Every process's images that failed to decode, by name (collective: call on every process)."""
    merged = {}
    for found in gather_object([unreadable.found]):
        merged.update(found)
    return dict(sorted(merged.items()))


def count_unreadable(resolved: dict, result: dict, found: dict[str, str]) -> None:
    """Adds the images that passed the up-front check but failed to decode to the record's counts, once each."""
    result["unreadable_when_decoded"] = len(found)
    if found:
        resolved["unreadable_images"] += len(found)
        resolved["unreadable_examples"] = (resolved["unreadable_examples"] + list(found.values()))[:20]
        logger.warning(
            "%d image(s) could not be decoded during training and were skipped (listed in %s)", len(found), CONFIG_FILE
        )


# ------------------------------------------------------------------------------------------------ output folder
def staging_dir(output_dir: Path) -> Path:
    """Where the run writes until it is complete."""
    return output_dir.with_name(output_dir.name + ".partial")


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir {output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output_dir {output_dir} exists and is not empty; pass --overwrite-output-dir to replace it"
        )


def prepare_staging(staging: Path, resume_from: Path | None, step: int) -> None:
    """A resumed run keeps its folder (less unfinished checkpoint folders and log lines past `step`); a new run
    starts from an empty one, saying what it removes."""
    if resume_from is not None:
        remove_partial_checkpoints(staging)
        truncate_jsonl(staging / LOG_FILE, step)
        return
    if staging.exists():
        logger.warning("removing %s, left by an earlier run that did not finish", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)


def write_outputs(folder: Path, model, processor, figure_images: list, recipe: PretrainRecipe, record: dict) -> None:
    """The checkpoint, the processor, `reconstruction.png` (of `figure_images`, if any) and `pretrain_config.json`."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if figure_images:
        pixel_values = processor(figure_images, return_tensors="pt")["pixel_values"].to(model.device)
        panels, figure_loss = reconstruct(model, pixel_values, processor.image_mean, processor.image_std, recipe.seed)
        save_reconstruction_figure(panels, folder / FIGURE_FILE)
        record["result"]["figure_loss"] = figure_loss
    record = {"recipe": recipe_record(recipe), **record, "versions": package_versions()}
    (folder / CONFIG_FILE).write_text(strict_json(record, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------ resuming
def recipe_record(recipe: PretrainRecipe) -> dict:
    """The recipe as JSON values (tuples as lists), as `pretrain_config.json` and the checkpoints hold it."""
    return recipe.model_dump(mode="json")


def read_checkpoint_state(folder: Path, recipe: PretrainRecipe) -> dict:
    """The checkpoint's trainer state, once its run's recipe is known to be this run's (bar the keys that change
    where and how it runs, not what it computes): another batch size or seed would not continue that run."""
    path = folder / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {folder} is not a complete pretraining checkpoint (no {TRAINER_STATE})")
    state = json.loads(path.read_text())
    saved, current = flatten(state.get("recipe", {})), flatten(recipe_record(recipe))
    changed = [key for key in current if key not in RESUME_MAY_CHANGE and saved.get(key) != current[key]]
    if changed:
        differences = ", ".join(f"{key} {saved.get(key)!r} (now {current[key]!r})" for key in changed)
        raise ValueError(f"--resume {folder}: the run that wrote it had another recipe: {differences}")
    return state


def check_same_images(state: dict, num_images: int, folder: Path) -> None:
    """The data order a checkpoint continues is a permutation of the readable images: their number must match."""
    if state["num_images"] != num_images:
        raise ValueError(
            f"--resume {folder}: that run trained on {state['num_images']} readable images, this one finds "
            f"{num_images}; resume on the same images (or start over with --overwrite-output-dir)"
        )


# ------------------------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    """`qface pretrain`: prints the output folder; a bad recipe or input ends with a one-line error and status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        output_dir = pretrain(recipe_from_args(args), resume=args.resume, overwrite=args.overwrite_output_dir)
    except (ValueError, OSError) as error:  # a RecipeError, bad data (a DataFormatError) or output folder
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
