# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The set-up of `qface train` (`modeling_qface.training.finetune`): the model a recipe describes, its data sources,
the accelerator and its trackers, the batch mix and the run's length, the optimizer, the training DataLoader, and the
run's smaller logs; `set_up` puts them together into a `Run`."""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader

from modeling_qface import QFaceConfig, QFaceModel, load_preset
from modeling_qface.model.configuration_qface import normalize_task
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.model.model_loading_qface import load_qface_model
from modeling_qface.model.modeling_qface import set_drop_path
from modeling_qface.training.augment import FaceAugment
from modeling_qface.training.batching import QFaceBatchTransform
from modeling_qface.training.label_statistics import POS_WEIGHT_CAP, check_age_ranges, resolve_pos_weights
from modeling_qface.training.mixing import (
    MixedBatchCollator,
    MixedBatchSampler,
    MixedSourceDataset,
    epochs_per_source,
    shares_to_counts,
    steps_per_epoch,
)
from modeling_qface.training.optim import build_optimizer, build_scheduler
from modeling_qface.training.recipe import Recipe, RecipeError
from modeling_qface.training.selection import check_selection_data
from modeling_qface.training.tracking import JSONLTracker, truncate_jsonl

logger = logging.getLogger(__name__)

TRAIN_LOG = "logs/train.jsonl"


@dataclass
class Run:
    """What the set-up builds, and where the run stands (`step`, the best evaluation so far)."""

    recipe: Recipe
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    image_processor: object
    train_sets: dict
    eval_sets: dict
    counts: list[int]
    max_steps: int
    sampler: MixedBatchSampler
    pos_weights: dict
    step: int = 0
    best: dict = field(default_factory=dict)
    recipe_yaml: str = ""
    last_eval_step: int | None = None

    @property
    def config(self):
        return self.accelerator.unwrap_model(self.model).config

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.output_dir)


def build_model(recipe: Recipe) -> QFaceModel:
    """The model the recipe describes: a preset / config (optionally with a MAE encoder) or a saved Q-Face model,
    with the recipe's `loss_weights`, `drop_path_rate` and explicit `pos_weight` lists applied ("auto" waits for the
    data)."""
    spec = recipe.model
    if spec.init_from is not None:
        # Strict: init_from continues a saved model with its own config (the recipe cannot add tasks to it), so
        # every weight must be in its safetensors file; a pickle is never loaded.
        model = load_qface_model(spec.init_from)
    else:
        if spec.preset is not None:
            config = load_preset(spec.preset)
        elif Path(spec.config).is_file():
            config = QFaceConfig.from_json_file(spec.config)
        else:
            config = QFaceConfig.from_pretrained(spec.config)
        model = QFaceModel.from_pretrained_backbone(spec.backbone, config) if spec.backbone else QFaceModel(config)
    if spec.drop_path_rate is not None:  # saved in the exported config with the rest
        model.config.drop_path_rate = spec.drop_path_rate
        set_drop_path(model.encoder, spec.drop_path_rate)
    for name, weight in spec.loss_weights.items():
        if name not in model.config.task_names:
            tasks = model.config.task_names
            raise RecipeError(f"model.loss_weights.{name}: no such task; this model's tasks are {tasks}")
        model.config.get_task(name)["loss_weight"] = float(weight)
    for name, weights in spec.pos_weight.items():
        task = model.config.get_task(name) if name in model.config.task_names else None
        if task is None or task["kind"] != "multilabel":
            multilabel = [t["name"] for t in model.config.tasks if t["kind"] == "multilabel"]
            raise RecipeError(f"model.pos_weight.{name}: not a multilabel task; this model's are {multilabel}")
        if weights != "auto":  # "auto" is counted on the training data, see `resolve_pos_weights`
            try:
                task["pos_weight"] = normalize_task({**task, "pos_weight": weights})["pos_weight"]
            except ValueError as error:
                raise RecipeError(f"model.pos_weight.{name}: {error}") from None
    return model


def load_sources(recipe: Recipe, sources, face_crop: FaceCrop) -> dict:
    """`{display name: datasets.Dataset}` for recipe source entries, every face cut into the model's Q-Face crop
    (prepared once, then read from the cache)."""
    from modeling_qface.training.data import load_source

    return {
        source.display_name: load_source(
            source.name,
            recipe.source_root(source),
            source.split,
            cache_dir=recipe.data.cache_dir,
            face_crop=face_crop,
            crop_format=recipe.data.crop_format,
            **source.options,
        )
        for source in sources
    }


def build_accelerator(recipe: Recipe, output_dir: Path) -> Accelerator:
    return Accelerator(
        mixed_precision=recipe.train.mixed_precision,
        gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
        log_with=build_trackers(recipe, output_dir),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # Our sampler already splits each global batch among processes: the scheduler must step once per step.
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        # Every head gets a (zero-weight) gradient in every batch, so DDP needs no unused-parameter search.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )


def build_trackers(recipe: Recipe, output_dir: Path) -> list:
    trackers = [JSONLTracker(output_dir / TRAIN_LOG)]
    if recipe.logging.tensorboard:
        try:
            import tensorboard  # noqa: F401

            trackers.append("tensorboard")
        except ImportError:
            print("qface train: tensorboard is not installed; logging to JSONL only", file=sys.stderr)
    return trackers


def build_train_loader(recipe: Recipe, train_sets: dict, batch_sampler, config, image_processor, device) -> DataLoader:
    """An endless DataLoader of this process's share of each mixed batch, augmented, in model-input form."""
    augment = FaceAugment(**recipe.augment.model_dump(exclude={"enabled"})) if recipe.augment.enabled else None
    return DataLoader(
        MixedSourceDataset(list(train_sets.values()), list(train_sets), augment, recipe.seed),
        batch_sampler=batch_sampler,
        collate_fn=MixedBatchCollator(QFaceBatchTransform(config, image_processor)),
        num_workers=recipe.data.num_workers,
        pin_memory=device.type == "cuda",
        # Its own generator: creating the iterator must not draw from the global RNG restored on resume.
        generator=torch.Generator().manual_seed(recipe.seed),
    )


class SampleLog:
    """What this process trained on, one line per micro-batch: `{step, micro, slots, ids}` (`logging.sample_ids`)."""

    def __init__(self, output_dir: Path, rank: int, resume_step: int, enabled: bool):
        self.handle = None
        if enabled:
            path = output_dir / "sample_ids" / f"rank{rank}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            truncate_jsonl(path, resume_step)
            self.handle = open(path, "a", buffering=1)

    def write(self, step: int, micro: int, slots: list, ids: list) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps({"step": step, "micro": micro, "slots": slots, "ids": ids}) + "\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def warn_uneven_split(names: list[str], counts: list[int], num_processes: int) -> None:
    # DDP averages per-process losses; a task whose samples are split unevenly among processes gets another weight.
    uneven = [f"{name}: {count}" for name, count in zip(names, counts) if count % num_processes]
    if uneven:
        logger.warning(
            f"per-batch sample counts not divisible by the {num_processes} processes ({', '.join(uneven)}): their "
            "tasks' losses are averaged over unequal shares; see docs/training.md, 'Several processes'"
        )


def log_pos_weights(accelerator, config, pos_weights: dict[str, list[float]]) -> None:
    """The computed `pos_weight: auto` weights, as a step-0 record of the training log (`pos_weight/au/AU1`, ...)."""
    record = {
        f"pos_weight/{name}/{label}": weight
        for name, weights in pos_weights.items()
        for label, weight in zip(config.get_task(name)["labels"], weights)
    }
    accelerator.log(record, step=0)
    if accelerator.is_main_process:
        for name, weights in pos_weights.items():
            shown = ", ".join(f"{label} {w:.2f}" for label, w in zip(config.get_task(name)["labels"], weights))
            logger.info(f"pos_weight: auto for {name} (negatives / positives, capped at {POS_WEIGHT_CAP:g}): {shown}")


def gather_mean(accelerator, values: torch.Tensor) -> torch.Tensor:
    """Mean over processes of a 1-D tensor, ignoring NaN (a task absent from one process's batch)."""
    gathered = accelerator.gather(values[None].to(accelerator.device)).reshape(-1, len(values)).float()
    return gathered.nanmean(dim=0).cpu()


def is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def set_up(recipe: Recipe, accelerator: Accelerator) -> Run:
    """The model, the data sources (checked), the batch mix and the run's length, the optimizer and schedule."""
    set_seed(recipe.seed)
    model = build_model(recipe)
    if recipe.model.activation_checkpointing:
        model.activation_checkpointing_enable()
    config, image_processor = model.config, build_image_processor(model.config)
    with accelerator.main_process_first():  # the main process builds the Arrow caches, the others read them
        face_crop = FaceCrop.from_config(config)
        train_sets = load_sources(recipe, recipe.data.train, face_crop)
        eval_sets = load_sources(recipe, recipe.data.eval, face_crop)
    check_age_ranges(config, train_sets, eval_sets)
    check_selection_data(recipe, train_sets, eval_sets)
    # Before `prepare`: the loss reads the weights from the config, and the exports save that config.
    pos_weights = resolve_pos_weights(model, recipe, train_sets)

    names, sizes = list(train_sets), [len(dataset) for dataset in train_sets.values()]
    counts = shares_to_counts([s.share for s in recipe.data.train], recipe.train.batch_size, names)
    if accelerator.is_main_process:
        warn_uneven_split(names, counts, accelerator.num_processes)
    max_steps = run_length(recipe, sizes, counts)
    optimizer = build_optimizer(model, recipe.optimizer)
    scheduler = build_scheduler(optimizer, recipe.optimizer, max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    sampler = MixedBatchSampler(sizes, counts, recipe.seed)
    parts = (model, optimizer, scheduler, image_processor, train_sets, eval_sets, counts, max_steps, sampler)
    run = Run(recipe, accelerator, *parts, pos_weights, recipe_yaml=recipe.to_yaml())
    run.best = {"metric": recipe.eval.best_metric, "value": None, "step": None}
    if accelerator.is_main_process:
        shown = zip(epochs_of(run).items(), sizes, counts)
        text = ", ".join(f"{name} {value:.1f} ({size} rows, {count} per batch)" for (name, value), size, count in shown)
        logger.info(f"epochs per source in this run: {text}")
    return run


def run_length(recipe: Recipe, sizes: list[int], counts: list[int]) -> int:
    """Optimizer steps: `train.max_steps`, or `train.epochs` of the mix (see `mixing.steps_per_epoch`)."""
    if recipe.train.max_steps is not None:
        return recipe.train.max_steps
    accumulation = recipe.train.gradient_accumulation_steps
    return max(1, math.ceil(recipe.train.epochs * steps_per_epoch(sizes, counts, accumulation)))


def epochs_of(run: Run) -> dict[str, float]:
    """How many times the run goes over each training source."""
    sizes = [len(dataset) for dataset in run.train_sets.values()]
    accumulation = run.recipe.train.gradient_accumulation_steps
    return dict(zip(run.train_sets, epochs_per_source(sizes, run.counts, run.max_steps, accumulation)))
