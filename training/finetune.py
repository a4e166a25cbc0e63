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
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from tqdm.auto import tqdm

from modeling_qface.outputs.writers import strict_json
from modeling_qface.training.checkpointing import (
    check_interrupted_run,
    export_model,
    load_checkpoint,
    remove_partial_checkpoints,
    resolve_resume,
    save_checkpoint,
    write_run_files,
)
from modeling_qface.training.evaluation import METRIC_SEPARATOR, evaluate_sets
from modeling_qface.training.finetune_setup import (
    TRAIN_LOG,
    Run,
    SampleLog,
    build_accelerator,
    build_model,
    build_train_loader,
    epochs_of,
    gather_mean,
    is_better,
    log_pos_weights,
    set_up,
)
from modeling_qface.training.mixing import ProcessBatchSampler
from modeling_qface.training.recipe import Recipe, RecipeError, check_test_splits, load_recipe
from modeling_qface.training.recipe_base import flag_overrides
from modeling_qface.training.tracking import Throughput, flatten_for_hparams, truncate_jsonl

logger = logging.getLogger(__name__)

# Folders a run creates in output_dir (removed by --overwrite; nothing else there is touched).
RUN_FOLDERS = ("checkpoints", "logs", "sample_ids", "best", "final")


# ------------------------------------------------------------------------------------------------ training
def train(recipe: Recipe, resume: str | None = None, overwrite: bool = False) -> dict:
    """Runs the recipe; returns a summary `{steps, final_model, best, wall_time_s, samples_per_s, ...}`."""
    wall_start = time.perf_counter()
    check_test_splits(recipe)  # also for a Recipe built without `load_recipe`; data.test is never loaded here
    output_dir = Path(recipe.output_dir)
    resume_from = resolve_resume(output_dir, resume)
    check_interrupted_run(output_dir, resume_from, overwrite, "--overwrite")
    accelerator = build_accelerator(recipe, output_dir)
    prepare_output_dir(accelerator, output_dir, clear=resume_from is None and overwrite)
    run = set_up(recipe, accelerator)
    start_logs(run, resume_from)
    sample_log = SampleLog(output_dir, accelerator.process_index, run.step, recipe.logging.sample_ids)
    throughput = train_loop(run, sample_log)
    sample_log.close()
    final = export_model(accelerator, run.model, run.image_processor, output_dir / "final", run.recipe_yaml)
    accelerator.end_training()
    summary = run_summary(run, resume_from, final, throughput)
    summary["wall_time_s"] = time.perf_counter() - wall_start
    if accelerator.is_main_process:
        (output_dir / "train_summary.json").write_text(strict_json(summary, indent=1))
    return summary


def prepare_output_dir(accelerator: Accelerator, output_dir: Path, clear: bool) -> None:
    """Creates `output_dir` (first deleting the run folders of an earlier run when `clear`) and removes the
    temporary folders of a checkpoint a killed run did not finish."""
    if accelerator.is_main_process:
        if clear:
            for folder in RUN_FOLDERS:
                shutil.rmtree(output_dir / folder, ignore_errors=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_checkpoints(output_dir)
    accelerator.wait_for_everyone()


def start_logs(run: Run, resume_from: Path | None) -> None:
    """Restores a checkpoint (`resume_from`), writes the run files, cuts the log back to the resumed step and
    starts the trackers."""
    accelerator = run.accelerator
    if resume_from is not None:
        trainer_state, sampler_state = load_checkpoint(accelerator, resume_from)
        run.sampler.load_state_dict(sampler_state)
        run.step = trainer_state["step"]
        if trainer_state["best"]["metric"] == run.best["metric"]:  # a changed best_metric starts a new comparison
            run.best = trainer_state["best"]
    if accelerator.is_main_process:
        write_run_files(run.output_dir, run.recipe_yaml)
        truncate_jsonl(run.output_dir / TRAIN_LOG, run.step)
    accelerator.init_trackers(
        "qface",
        config=flatten_for_hparams(run.recipe.model_dump(mode="json")),
        # After a resume, TensorBoard drops the events the killed run wrote past the checkpoint.
        init_kwargs={"tensorboard": {"purge_step": run.step + 1}} if resume_from is not None else {},
    )
    if run.pos_weights and run.step == 0:  # a resumed run computed the same weights and logged them at step 0 already
        log_pos_weights(accelerator, run.config, run.pos_weights)


def train_loop(run: Run, sample_log: SampleLog) -> Throughput:
    """Optimizer steps from `run.step` to `run.max_steps`: step, log, evaluate, checkpoint."""
    recipe, accelerator = run.recipe, run.accelerator
    batch_sampler = ProcessBatchSampler(run.sampler, accelerator.process_index, accelerator.num_processes)
    loader = build_train_loader(
        recipe, run.train_sets, batch_sampler, run.config, run.image_processor, accelerator.device
    )
    throughput = Throughput(recipe.train.batch_size * recipe.train.gradient_accumulation_steps)
    progress = tqdm(total=run.max_steps, initial=run.step, desc="train", disable=not accelerator.is_local_main_process)
    batches, grad_norm = iter(loader), None
    run.model.train()
    while run.step < run.max_steps:
        losses, task_losses, grad_norm, sampler_state = train_step(run, batches, batch_sampler, sample_log, grad_norm)
        run.step += 1
        throughput.steps += 1
        progress.update(1)
        if run.step % recipe.logging.every_steps == 0 or run.step == run.max_steps:
            record = log_step(run, losses, task_losses, grad_norm, throughput.lap())
            progress.set_postfix(loss=f"{record['loss']:.4f}", samples_per_s=f"{record['samples_per_s']:.1f}")
        with throughput.paused():
            evaluate_when_due(run)
            checkpoint_when_due(run, sampler_state)
    progress.close()
    return throughput


def train_step(run: Run, batches, batch_sampler, sample_log: SampleLog, grad_norm):
    """One optimizer step over `gradient_accumulation_steps` micro-batches: `(losses, task_losses, grad_norm,
    sampler_state)`, the losses kept on the device (a `.cpu()` per micro-batch would sync a GPU every step)."""
    accelerator, model, task_names = run.accelerator, run.model, run.config.task_names
    accumulation, max_norm = run.recipe.train.gradient_accumulation_steps, run.recipe.train.max_grad_norm
    losses = torch.zeros(accumulation, device=accelerator.device)
    task_losses = torch.full((accumulation, len(task_names)), float("nan"), device=accelerator.device)
    for micro in range(accumulation):
        batch = next(batches)
        sampler_state = batch_sampler.pop_consumed_state()
        sample_log.write(run.step + 1, micro, batch.pop("slots"), batch.pop("sample_ids"))
        inputs = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.accumulate(model):
            with accelerator.autocast():
                output = model(**inputs)
            accelerator.backward(output.loss)
            if accelerator.sync_gradients and max_norm is not None:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad()
        losses[micro] = output.loss.detach().float()
        for i, name in enumerate(task_names):
            if name in output.task_losses:
                task_losses[micro, i] = output.task_losses[name].detach().float()
    if not accelerator.sync_gradients:
        raise RuntimeError("gradient accumulation went out of step with the optimizer steps")
    return losses, task_losses, grad_norm, sampler_state


def log_step(run: Run, losses, task_losses, grad_norm, samples_per_s: float) -> dict:
    """One training-log record: the losses since the last one (mean over processes), lr, samples/s, grad norm."""
    task_names = run.config.task_names
    mean = gather_mean(run.accelerator, torch.cat([losses.mean()[None], task_losses.nanmean(dim=0)]))
    record = {"loss": mean[0].item(), "lr": max(run.scheduler.get_last_lr()), "samples_per_s": samples_per_s}
    record.update({f"loss/{name}": mean[i + 1].item() for i, name in enumerate(task_names)})
    if grad_norm is not None:
        record["grad_norm"] = float(grad_norm)
    run.accelerator.log(record, step=run.step)
    return record


def evaluate_when_due(run: Run) -> None:
    """Scores `data.eval` every `eval.every_steps` and at the end; exports `best/` when `eval.best_metric` improves."""
    every = run.recipe.eval.every_steps
    if not run.eval_sets or not (run.step == run.max_steps or (every and run.step % every == 0)):
        return
    settings, accelerator = run.recipe.eval, run.accelerator
    metrics, labelled = evaluate_sets(
        run.model, run.eval_sets, run.config, run.image_processor, settings.batch_size, accelerator, settings.threshold
    )
    accelerator.log({f"eval/{key}": value for key, value in metrics.items()}, step=run.step)
    run.last_eval_step = run.step
    key = settings.best_metric
    if key is None:
        return
    if key not in metrics:
        available = sorted(k for k in metrics if k.count(METRIC_SEPARATOR) <= 2)
        raise RecipeError(f"eval.best_metric: {key!r} is not among the evaluation metrics {available}")
    if is_better(metrics[key], run.best["value"], settings.best_mode):
        run.best.update(value=float(metrics[key]), step=run.step)
        results = {"step": run.step, "metrics": metrics, "labelled": labelled}
        export_model(accelerator, run.model, run.image_processor, run.output_dir / "best", run.recipe_yaml, results)


def checkpoint_when_due(run: Run, sampler_state: dict) -> None:
    """The resumable state every `checkpoint.every_steps` steps and at the end."""
    every = run.recipe.checkpoint.every_steps
    if every and (run.step % every == 0 or run.step == run.max_steps):
        state = {"best": run.best, "max_steps": run.max_steps}
        keep = run.recipe.checkpoint.keep_last
        save_checkpoint(run.accelerator, run.output_dir, run.step, state, sampler_state, run.recipe_yaml, keep)


def run_summary(run: Run, resume_from: Path | None, final: Path, throughput: Throughput) -> dict:
    names, config, output_dir = list(run.train_sets), run.config, run.output_dir
    return {
        "steps": run.step,
        "max_steps": run.max_steps,
        "resumed_from": str(resume_from) if resume_from else None,
        "final_model": str(final),
        "best": run.best,
        "last_eval_step": run.last_eval_step,
        "num_processes": run.accelerator.num_processes,
        "global_batch": throughput.global_batch,
        "per_source_batch": dict(zip(names, run.counts)),
        "per_source_rows": {name: len(dataset) for name, dataset in run.train_sets.items()},
        "epochs_per_source": epochs_of(run),
        "pos_weight": {name: dict(zip(config.get_task(name)["labels"], w)) for name, w in run.pos_weights.items()},
        "wall_time_s": None,
        "samples_per_s": throughput.samples_per_s,
        # The test splits are scored once, now, by `qface evaluate` (data.test of the run's resolved recipe).
        "test_command": (
            f"qface evaluate --model {final} --config {output_dir / 'recipe.yaml'} --output "
            f"{output_dir / 'test_results.json'}"
        )
        if run.recipe.data.test
        else None,
    }


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


# flag -> recipe key; `--max-steps` and `--epochs` each drop the recipe's value of the other.
FLAG_KEYS = {
    "output_dir": "output_dir",
    "max_steps": "train.max_steps",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "seed": "seed",
    "data_root": "data.root",
    "mixed_precision": "train.mixed_precision",
}


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe of `--config` with the flags given, then `--set KEY=VALUE`, applied."""
    return load_recipe(args.config, flag_overrides(args, FLAG_KEYS, (("train.max_steps", "train.epochs"),)))


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


# `build_model` is the set-up's (`finetune_setup`), kept here where callers have always found it.
__all__ = ["build_model", "build_parser", "main", "recipe_from_args", "resolve_resume", "run_folds", "train"]


if __name__ == "__main__":
    sys.exit(main())
