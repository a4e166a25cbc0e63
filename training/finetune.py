# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Multi-task fine-tuning of Q-Face with Accelerate: `qface train --config configuration/train-tiny.yaml`.

One script for one CPU, one GPU, several GPUs and several machines (see docs/training.md):

    qface train --config configuration/train-paper.yaml                          # one process
    accelerate launch --multi_gpu --num_processes 8 -m modeling_qface.training.finetune --config configuration/train-paper.yaml
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m modeling_qface.training.finetune --config configuration/train-tiny.yaml
    qface train --config configuration/train-paper.yaml --folds 1,2,3            # the 3-fold BP4D / DISFA protocol

`train.batch_size` is the global batch of one forward pass: with P processes each computes `batch_size / P`
samples of it, so the data, the augmentation and the number of optimizer steps are those of a single process.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs, PartialState
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from modeling_qface import QFaceConfig, QFaceModel, load_preset
from modeling_qface.model.configuration_qface import normalize_task
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.model.model_loading_qface import load_qface_model
from modeling_qface.model.modeling_qface import set_drop_path
from modeling_qface.outputs.writers import strict_json
from modeling_qface.training.augment import FaceAugment
from modeling_qface.training.batching import QFaceBatchTransform
from modeling_qface.training.checkpointing import (
    export_model,
    list_checkpoints,
    load_checkpoint,
    remove_partial_checkpoints,
    resolve_resume,
    save_checkpoint,
    write_run_files,
)
from modeling_qface.training.evaluation import METRIC_SEPARATOR, evaluate_sets
from modeling_qface.training.label_statistics import POS_WEIGHT_CAP, check_age_ranges, resolve_pos_weights
from modeling_qface.training.mixing import (
    MixedBatchCollator,
    MixedBatchSampler,
    MixedSourceDataset,
    ProcessBatchSampler,
    epochs_per_source,
    shares_to_counts,
    steps_per_epoch,
)
from modeling_qface.training.optim import build_optimizer, build_scheduler
from modeling_qface.training.recipe import Recipe, RecipeError, check_test_splits, load_recipe, parse_override
from modeling_qface.training.selection import check_selection_data
from modeling_qface.training.tracking import JSONLTracker, flatten_for_hparams, truncate_jsonl

logger = logging.getLogger(__name__)

TRAIN_LOG = "logs/train.jsonl"
# Folders a run creates in output_dir (removed by --overwrite; nothing else there is touched).
RUN_FOLDERS = ("checkpoints", "logs", "sample_ids", "best", "final")


# ------------------------------------------------------------------------------------------------ building blocks
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


def _gather_mean(accelerator, values: torch.Tensor) -> torch.Tensor:
    """Mean over processes of a 1-D tensor, ignoring NaN (a task absent from one process's batch)."""
    gathered = accelerator.gather(values[None].to(accelerator.device)).reshape(-1, len(values)).float()
    return gathered.nanmean(dim=0).cpu()


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


# ------------------------------------------------------------------------------------------------ training
def train(recipe: Recipe, resume: str | None = None, overwrite: bool = False) -> dict:
    """Runs the recipe; returns a summary `{steps, final_model, best, wall_time_s, samples_per_s, ...}`."""
    wall_start = time.perf_counter()
    check_test_splits(recipe)  # also for a Recipe built without `load_recipe`; data.test is never loaded here
    output_dir = Path(recipe.output_dir)
    resume_from = resolve_resume(output_dir, resume)
    if resume_from is None and list_checkpoints(output_dir) and not overwrite:
        raise RecipeError(
            f"{output_dir} already holds checkpoints; pass --resume to continue that run or --overwrite to start over"
        )
    accelerator = build_accelerator(recipe, output_dir)
    if accelerator.is_main_process:
        if resume_from is None and overwrite:
            for folder in RUN_FOLDERS:
                shutil.rmtree(output_dir / folder, ignore_errors=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_checkpoints(output_dir)
    accelerator.wait_for_everyone()

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
    accumulation = recipe.train.gradient_accumulation_steps
    max_steps = recipe.train.max_steps
    if max_steps is None:
        max_steps = max(1, math.ceil(recipe.train.epochs * steps_per_epoch(sizes, counts, accumulation)))
    epochs = dict(zip(names, epochs_per_source(sizes, counts, max_steps, accumulation)))
    if accelerator.is_main_process:
        logger.info(
            "epochs per source in this run: "
            + ", ".join(
                f"{name} {value:.1f} ({size} rows, {count} per batch)"
                for (name, value), size, count in zip(epochs.items(), sizes, counts)
            )
        )

    optimizer = build_optimizer(model, recipe.optimizer)
    scheduler = build_scheduler(optimizer, recipe.optimizer, max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    sampler = MixedBatchSampler(sizes, counts, recipe.seed)

    step, best = 0, {"metric": recipe.eval.best_metric, "value": None, "step": None}
    if resume_from is not None:
        trainer_state, sampler_state = load_checkpoint(accelerator, resume_from)
        sampler.load_state_dict(sampler_state)
        step = trainer_state["step"]
        if trainer_state["best"]["metric"] == best["metric"]:  # a changed best_metric starts a new comparison
            best = trainer_state["best"]
    recipe_yaml = recipe.to_yaml()
    if accelerator.is_main_process:
        write_run_files(output_dir, recipe_yaml)
        truncate_jsonl(output_dir / TRAIN_LOG, step)
    accelerator.init_trackers(
        "qface",
        config=flatten_for_hparams(recipe.model_dump(mode="json")),
        # After a resume, TensorBoard drops the events the killed run wrote past the checkpoint.
        init_kwargs={"tensorboard": {"purge_step": step + 1}} if resume_from is not None else {},
    )
    sample_log = SampleLog(output_dir, accelerator.process_index, step, recipe.logging.sample_ids)
    if pos_weights and step == 0:  # a resumed run computed the same weights and logged them at step 0 already
        log_pos_weights(accelerator, config, pos_weights)

    batch_sampler = ProcessBatchSampler(sampler, accelerator.process_index, accelerator.num_processes)
    loader = build_train_loader(recipe, train_sets, batch_sampler, config, image_processor, accelerator.device)

    def run_eval() -> dict:
        metrics, labelled = evaluate_sets(
            model, eval_sets, config, image_processor, recipe.eval.batch_size, accelerator, recipe.eval.threshold
        )
        accelerator.log({f"eval/{key}": value for key, value in metrics.items()}, step=step)
        key = recipe.eval.best_metric
        if key is not None:
            if key not in metrics:
                available = sorted(k for k in metrics if k.count(METRIC_SEPARATOR) <= 2)
                raise RecipeError(f"eval.best_metric: {key!r} is not among the evaluation metrics {available}")
            if _is_better(metrics[key], best["value"], recipe.eval.best_mode):
                best.update(value=float(metrics[key]), step=step)
                export_model(
                    accelerator,
                    model,
                    image_processor,
                    output_dir / "best",
                    recipe_yaml,
                    {"step": step, "metrics": metrics, "labelled": labelled},
                )
        return metrics

    task_names = config.task_names
    global_batch = recipe.train.batch_size * accumulation
    progress = tqdm(total=max_steps, initial=step, desc="train", disable=not accelerator.is_local_main_process)
    batches = iter(loader)
    model.train()
    # Throughput windows run from one log line to the next, minus the time spent evaluating and checkpointing.
    window_start, window_paused, window_steps, train_seconds, trained_steps = time.perf_counter(), 0.0, 0, 0.0, 0
    sampler_state, grad_norm, last_eval_step = sampler.state_dict(), None, None
    while step < max_steps:
        # Kept on the device until a log line needs them: a `.cpu()` per micro-batch would sync a GPU every step.
        losses = torch.zeros(accumulation, device=accelerator.device)
        task_losses = torch.full((accumulation, len(task_names)), float("nan"), device=accelerator.device)
        for micro in range(accumulation):
            batch = next(batches)
            sampler_state = batch_sampler.pop_consumed_state()
            sample_log.write(step + 1, micro, batch.pop("slots"), batch.pop("sample_ids"))
            inputs = {key: value.to(accelerator.device) for key, value in batch.items()}
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    output = model(**inputs)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients and recipe.train.max_grad_norm is not None:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), recipe.train.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses[micro] = output.loss.detach().float()
            for i, name in enumerate(task_names):
                if name in output.task_losses:
                    task_losses[micro, i] = output.task_losses[name].detach().float()
        if not accelerator.sync_gradients:
            raise RuntimeError("gradient accumulation went out of step with the optimizer steps")
        step += 1
        window_steps += 1
        progress.update(1)

        if step % recipe.logging.every_steps == 0 or step == max_steps:
            local = torch.cat([losses.mean()[None], task_losses.nanmean(dim=0)])
            mean = _gather_mean(accelerator, local)
            elapsed = time.perf_counter() - window_start - window_paused
            train_seconds += elapsed
            trained_steps += window_steps
            samples_per_s = window_steps * global_batch / elapsed
            record = {"loss": mean[0].item(), "lr": max(scheduler.get_last_lr()), "samples_per_s": samples_per_s}
            record.update({f"loss/{name}": mean[i + 1].item() for i, name in enumerate(task_names)})
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            accelerator.log(record, step=step)
            progress.set_postfix(loss=f"{record['loss']:.4f}", samples_per_s=f"{samples_per_s:.1f}")
            window_start, window_paused, window_steps = time.perf_counter(), 0.0, 0

        eval_every = recipe.eval.every_steps
        evaluate_now = eval_sets and (step == max_steps or (eval_every and step % eval_every == 0))
        pause_start = time.perf_counter()
        if evaluate_now:
            run_eval()
            last_eval_step = step
        checkpoint_every = recipe.checkpoint.every_steps
        if checkpoint_every and (step % checkpoint_every == 0 or step == max_steps):
            save_checkpoint(
                accelerator,
                output_dir,
                step,
                {"best": best, "max_steps": max_steps},
                sampler_state,
                recipe_yaml,
                recipe.checkpoint.keep_last,
            )
        window_paused += time.perf_counter() - pause_start
    progress.close()
    sample_log.close()

    final = export_model(accelerator, model, image_processor, output_dir / "final", recipe_yaml)
    accelerator.end_training()
    summary = {
        "steps": step,
        "max_steps": max_steps,
        "resumed_from": str(resume_from) if resume_from else None,
        "final_model": str(final),
        "best": best,
        "last_eval_step": last_eval_step,
        "num_processes": accelerator.num_processes,
        "global_batch": global_batch,
        "per_source_batch": dict(zip(names, counts)),
        "per_source_rows": dict(zip(names, sizes)),
        "epochs_per_source": epochs,
        "pos_weight": {name: dict(zip(config.get_task(name)["labels"], w)) for name, w in pos_weights.items()},
        "wall_time_s": time.perf_counter() - wall_start,
        "samples_per_s": trained_steps * global_batch / train_seconds if train_seconds else None,
        # The test splits are scored once, now, by `qface evaluate` (data.test of the run's resolved recipe).
        "test_command": (
            f"qface evaluate --model {final} --config {output_dir / 'recipe.yaml'} --output "
            f"{output_dir / 'test_results.json'}"
        )
        if recipe.data.test
        else None,
    }
    if accelerator.is_main_process:
        (output_dir / "train_summary.json").write_text(strict_json(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qface train", description="Multi-task fine-tuning of Q-Face (Accelerate).")
    parser.add_argument("--config", required=True, help="the recipe YAML, e.g. configuration/train-tiny.yaml")
    parser.add_argument("--output-dir", help="overrides output_dir")
    parser.add_argument("--max-steps", type=int, help="overrides train.max_steps (and clears train.epochs)")
    parser.add_argument("--epochs", type=float, help="overrides train.epochs (and clears train.max_steps)")
    parser.add_argument("--batch-size", type=int, help="overrides train.batch_size (global, all processes)")
    parser.add_argument("--seed", type=int, help="overrides seed")
    parser.add_argument("--data-root", help="overrides data.root (the base of relative source roots)")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), help="overrides train.mixed_precision")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="overrides any recipe key, e.g. --set optimizer.lr=3e-4 --set data.train.0.share=0.5",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="latest|auto|PATH",
        help="continue from the last checkpoint in output_dir (auto: only if there is one) or from PATH",
    )
    parser.add_argument("--overwrite", action="store_true", help="start over in an output_dir that has checkpoints")
    parser.add_argument(
        "--folds",
        metavar="1,2,3",
        help="the 3-fold BP4D / DISFA protocol: one run per fold into <output_dir>/fold-<k>, every bp4d / disfa "
        "source's options.fold set to k (see training/folds.py)",
    )
    return parser


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    overrides = []
    for flag, key in (
        ("output_dir", "output_dir"),
        ("batch_size", "train.batch_size"),
        ("seed", "seed"),
        ("data_root", "data.root"),
        ("mixed_precision", "train.mixed_precision"),
    ):
        if getattr(args, flag) is not None:
            overrides.append((key.split("."), getattr(args, flag)))
    if args.max_steps is not None:
        overrides += [(["train", "max_steps"], args.max_steps), (["train", "epochs"], None)]
    if args.epochs is not None:
        overrides += [(["train", "epochs"], args.epochs), (["train", "max_steps"], None)]
    overrides += [parse_override(text) for text in args.set]
    return load_recipe(args.config, overrides)


def run_folds(recipes: dict, resume: str | None, overwrite: bool) -> dict:
    """Trains the recipe of each fold in turn (`modeling_qface.training.folds.fold_recipes`); `{fold: summary}`.

    With `--resume`, each fold continues from its own newest checkpoint ("auto": a fold not started yet starts), and
    a fold whose `train_summary.json` says it ran all its steps is not run again."""
    summaries = {}
    for fold, recipe in recipes.items():
        summary_file = Path(recipe.output_dir) / "train_summary.json"
        if resume is not None and summary_file.is_file():
            done = json.loads(summary_file.read_text())
            if done.get("steps") == done.get("max_steps"):
                logger.info(f"fold {fold}: finished already ({summary_file}); not run again")
                summaries[fold] = done
                continue
        logger.info(f"fold {fold}: training into {recipe.output_dir}")
        summaries[fold] = train(recipe, resume="auto" if resume is not None else None, overwrite=overwrite)
    return summaries


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        recipe = recipe_from_args(args)
        if args.folds is not None:
            from modeling_qface.training.folds import fold_recipes, parse_folds

            if args.resume not in (None, "latest", "auto"):
                raise RecipeError("--folds: --resume takes no checkpoint path (each fold resumes its own)")
            recipes = fold_recipes(recipe, parse_folds(args.folds), args.config)
    except RecipeError as error:
        print(f"qface train: {error}", file=sys.stderr)
        return 2
    if args.folds is not None:
        summary = run_folds(recipes, args.resume, args.overwrite)
    else:
        summary = train(recipe, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
