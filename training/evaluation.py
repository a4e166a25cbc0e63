# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Scoring a Q-Face model on benchmark splits: the periodic evaluation of fine-tuning and `qface evaluate`.

Metrics come from `modeling_qface.training.metrics.compute_task_metrics` and are reported per evaluation set as
`<set>/<task>/<metric>` (e.g. `raf_db_test/expression/accuracy`). A task labelled by exactly one evaluation set is
also reported without the prefix (`expression/accuracy`), which is what a recipe's `eval.best_metric` usually names.

    qface evaluate --model runs/qface/final --source raf_db:/data/RAF-DB/basic:test --source aflw2000:/data/AFLW2000
    qface evaluate --model runs/qface/final --config configuration/train-paper.yaml   # the recipe's data.test
    qface evaluate --aggregate-folds fold1.json fold2.json fold3.json --output au-3fold.json   # BP4D / DISFA 3-fold

Every face is scored in the model's own Q-Face crop (`config.face_crop`), prepared as in training. Head pose is
scored in the photo's frame, as the benchmarks label it and the pipeline reports it: predictions and labels are
turned back by each crop's in-plane rotation (`crop_angle`). AFLW2000's `crop: loose` option scores the literature's
protocol crop instead (the loose box of Hopenet / 6DRepNet, no rotation), CelebA's `crop: center` / `resize` the
attribute literature's. The report says which crop each set used and the protocol it was scored under
(`modeling_qface.training.protocols.protocol_name`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from modeling_qface.model.head_pose_qface import rotate_pose_in_plane
from modeling_qface.model.heads_qface import output_fields
from modeling_qface.training.batching import QFaceBatchTransform

METRIC_SEPARATOR = "/"


def _task_output(task: dict) -> str:
    """The output field scored for a task: logits, values or the distribution's expected value."""
    fields = output_fields(task)
    return fields.get("logits") or fields.get("values") or fields["expected"]


@torch.no_grad()
def predict(
    model, dataset, config, image_processor, batch_size: int, device, rank: int = 0, world_size: int = 1, autocast=None
) -> tuple[dict, dict]:
    """Runs `model` over this process's share (`rank::world_size`) of `dataset` (schema rows).

    Returns `(predictions, references)`: per task name, numpy arrays over the rows, in row order of the share; the
    `head_pose` task's in the photo's frame (see the module docstring). Every process runs the same number of equally
    sized batches (a short share is padded with row 0, whose outputs are dropped): sharded models (FSDP) need every
    process in every forward pass.
    """
    transform = QFaceBatchTransform(config, image_processor)
    indices = list(range(rank, len(dataset), world_size))
    real = len(indices)
    indices += [0] * (math.ceil(len(dataset) / world_size) - real)
    predictions = {task["name"]: [] for task in config.tasks}
    references = {task["name"]: [] for task in config.tasks}
    was_training = model.training
    model.eval()
    for start in range(0, len(indices), batch_size):
        rows = dataset[indices[start : start + batch_size]]
        batch = transform(rows)
        pixel_values = batch["pixel_values"].to(device)
        with autocast() if autocast is not None else contextlib.nullcontext():
            output = model(pixel_values=pixel_values)
        angles = rows.get("crop_angle")
        for task in config.tasks:
            predicted = output.field(_task_output(task)).float().cpu().numpy()
            labels = batch[f"{task['name']}_labels"].numpy()
            if task["name"] == "head_pose" and angles is not None:
                predicted, labels = (to_photo_frame(poses, angles) for poses in (predicted, labels))
            predictions[task["name"]].append(predicted)
            references[task["name"]].append(labels)
    model.train(was_training)
    return tuple(
        {name: array[:real] for name, array in _concatenate(arrays).items()} for arrays in (predictions, references)
    )


def to_photo_frame(poses: np.ndarray, crop_angles) -> np.ndarray:
    """Crop-frame `[yaw, pitch, roll]` rows `(B, 3)` -> the photo's frame (rows with a NaN, missing labels, kept)."""
    out = np.array(poses, dtype=np.float32, copy=True)
    angles = np.asarray([0.0 if a is None else a for a in crop_angles], dtype=np.float64)
    known = np.isfinite(out).all(axis=1)
    if known.any():
        out[known] = rotate_pose_in_plane(out[known], -angles[known])
    return out


def describe_crops(dataset) -> str:
    """How a prepared set's faces were cut, e.g. "Q-Face crop from the dataset's landmarks: 1969"."""
    if "crop_method" not in dataset.column_names:
        return "unknown crop"
    names = {
        "landmarks": "Q-Face crop from the dataset's landmarks",
        "detector": "Q-Face crop by the detector",
        "no face found": "no face found: central square as the Q-Face crop",
        "protocol box": "protocol crop (the literature's loose box, no rotation)",
        "protocol resize": "protocol crop (the literature's region resized, no alignment)",
    }
    methods = dataset["crop_method"]
    return ", ".join(f"{names.get(m, m)}: {methods.count(m)}" for m in sorted(set(methods)))


def _concatenate(arrays: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.concatenate(parts) if parts else np.zeros((0,)) for name, parts in arrays.items()}


def labelled_counts(config, references: dict) -> dict[str, int]:
    """Per task, the number of samples carrying at least one label of it (-1 / NaN mark missing labels)."""
    counts = {}
    for task in config.tasks:
        values = np.asarray(references[task["name"]], dtype=np.float64)
        if values.size == 0:
            counts[task["name"]] = 0
            continue
        present = ~np.isnan(values) if task["kind"] in ("regression", "distribution") else values != -1
        counts[task["name"]] = int(present.reshape(len(values), -1).any(axis=1).sum())
    return counts


def score_sets(config, results: dict[str, tuple[dict, dict]], threshold: float = 0.5) -> tuple[dict, dict]:
    """`{set name: (predictions, references)}` -> flat metrics (prefixed per set, plus unprefixed aliases for
    tasks labelled by one set only) and `{set name: {task: labelled samples}}`."""
    from modeling_qface.training.metrics import compute_task_metrics

    metrics, counts = {}, {}
    for name, (predictions, references) in results.items():
        counts[name] = labelled_counts(config, references)
        scores = compute_task_metrics(config.tasks, predictions, references, threshold)
        metrics.update({f"{name}{METRIC_SEPARATOR}{key}": value for key, value in scores.items()})
    for task in config.task_names:
        sets = [name for name, per_task in counts.items() if per_task[task] > 0]
        if len(sets) == 1:
            prefix = f"{sets[0]}{METRIC_SEPARATOR}{task}{METRIC_SEPARATOR}"
            metrics.update(
                {
                    key.removeprefix(f"{sets[0]}{METRIC_SEPARATOR}"): value
                    for key, value in list(metrics.items())
                    if key.startswith(prefix)
                }
            )
    return metrics, counts


def evaluate_sets(
    model, eval_sets: dict, config, image_processor, batch_size: int, accelerator=None, threshold: float = 0.5
) -> tuple[dict, dict]:
    """Scores `model` on every `{name: dataset}`; with an `accelerator`, each process predicts its share and the
    shares are gathered, so every process returns the same metrics."""
    if accelerator is None:
        device = next(model.parameters()).device
        results = {
            name: predict(model, dataset, config, image_processor, batch_size, device)
            for name, dataset in eval_sets.items()
        }
        return score_sets(config, results, threshold)
    from accelerate.utils import gather_object

    results = {}
    for name, dataset in eval_sets.items():
        mine = predict(
            model,
            dataset,
            config,
            image_processor,
            batch_size,
            accelerator.device,
            accelerator.process_index,
            accelerator.num_processes,
            accelerator.autocast,
        )
        shares = gather_object([mine])  # one (predictions, references) per process, in rank order
        results[name] = tuple(
            {
                task: np.concatenate([share[i][task] for share in shares if len(share[i][task])] or [np.zeros((0,))])
                for task in config.task_names
            }
            for i in range(2)
        )
    return score_sets(config, results, threshold)


def evaluate_model(
    model_path: str | Path,
    sources: list[dict],
    batch_size: int = 64,
    device: str | None = None,
    threshold: float = 0.5,
    cache_dir: str | None = None,
) -> dict:
    """Scores a saved Q-Face model on data sources.

    Args:
        model_path: a folder written by `save_pretrained` (e.g. `<output_dir>/final` or `best`).
        sources: dicts `{"name", "root", "split", "options", "label"}` (a recipe's `data.eval` entries).
        batch_size, device, threshold: evaluation batch size, torch device (default: cuda if available), multilabel
            probability threshold.
        cache_dir: Arrow cache of the prepared sources.

    Returns:
        `{"model", "face_crop", "head_pose_frame", "data": [{name, root, split, options, label, num_samples, crop}],
        "metrics": {set: {key: value}}, "aliases": {key: value}, "labelled": {set: {task: count}}}`.
    """
    from modeling_qface.model.face_alignment_qface import FaceCrop
    from modeling_qface.model.image_processing_qface import build_image_processor
    from modeling_qface.model.model_loading_qface import load_qface_model
    from modeling_qface.training.data import load_source
    from modeling_qface.training.protocols import protocol_name

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_qface_model(model_path).to(device).eval()  # safetensors only; weights must match the config
    image_processor = build_image_processor(model.config)
    face_crop = FaceCrop.from_config(model.config)
    eval_sets, data = {}, []
    for source in sources:
        label = source.get("label") or f"{source['name']}_{source.get('split', 'test')}"
        if label in eval_sets:
            raise ValueError(f"two evaluation sources are named {label!r}; give them distinct labels")
        dataset = load_source(
            source["name"],
            source["root"],
            source.get("split", "test"),
            cache_dir=cache_dir,
            face_crop=face_crop,
            **(source.get("options") or {}),
        )
        eval_sets[label] = dataset
        split, options = source.get("split", "test"), source.get("options") or {}
        data.append(
            {
                **{k: source.get(k) for k in ("name", "root", "split", "options")},
                "label": label,
                "protocol": protocol_name(source["name"], split, options),
                "num_samples": len(dataset),
                "crop": describe_crops(dataset),
            }
        )
    metrics, counts = evaluate_sets(model, eval_sets, model.config, image_processor, batch_size, threshold=threshold)
    per_set = {label: {} for label in eval_sets}
    aliases = {}
    for key, value in metrics.items():
        head, _, rest = key.partition(METRIC_SEPARATOR)
        if head in per_set:
            per_set[head][rest] = value
        else:
            aliases[key] = value
    return {
        "model": str(model_path),
        "face_crop": face_crop.to_dict(),
        "head_pose_frame": "photo",
        "data": data,
        "metrics": per_set,
        "aliases": aliases,
        "labelled": counts,
    }


def format_table(report: dict) -> str:
    """The main numbers of an `evaluate_model` report as an aligned text table (per-label scores left out)."""
    rows = [("set", "metric", "value", "labelled")]
    for label, metrics in report["metrics"].items():
        for key, value in metrics.items():
            task, _, metric = key.partition(METRIC_SEPARATOR)
            if METRIC_SEPARATOR in metric:  # per class / per AU / per angle: in the JSON only
                continue
            rows.append(
                (
                    label,
                    key,
                    f"{value:.4f}" if math.isfinite(value) else str(value),
                    str(report["labelled"][label][task]),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_source(text: str) -> dict:
    """`NAME:ROOT[:SPLIT[:KEY=VALUE,...]]` -> a source dict (split defaults to "test"; values read as YAML)."""
    parts = text.split(":", 3)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(f"--source {text!r}: expected NAME:ROOT[:SPLIT[:KEY=VALUE,...]]")
    options = {}
    for item in filter(None, (parts[3] if len(parts) > 3 else "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--source {text!r}: option {item!r} is not KEY=VALUE")
        options[key] = yaml.safe_load(value)
    source = {
        "name": parts[0],
        "root": parts[1],
        "split": parts[2] if len(parts) > 2 and parts[2] else "test",
        "options": options,
    }
    from modeling_qface.training.data.loading import source_problems

    # Checked here, before the model is loaded: an unknown source, split, option or fold names the allowed values.
    problems = source_problems(source["name"], source["split"], options)
    if problems:
        raise argparse.ArgumentTypeError(f"--source {text!r}: " + "; ".join(f"{k}: {m}" for k, m in problems))
    return source


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qface evaluate", description="Score a saved Q-Face model on benchmarks.")
    parser.add_argument(
        "--model", help="folder of a saved model (e.g. <output_dir>/final); required unless --aggregate-folds"
    )
    parser.add_argument(
        "--source",
        action="append",
        type=parse_source,
        default=[],
        metavar="NAME:ROOT[:SPLIT]",
        help="a data source to score on (repeatable), e.g. raf_db:/data/RAF-DB/basic:test; "
        "adapter options after a 4th colon: bp4d:/data/BP4D:test:fold=2",
    )
    parser.add_argument(
        "--config", help="a training recipe: scores its data.test sources (data.eval when it has none; --sets chooses)"
    )
    parser.add_argument(
        "--sets",
        choices=("test", "eval"),
        help="with --config: score data.test (default when the recipe lists any) or data.eval",
    )
    parser.add_argument(
        "--aggregate-folds",
        nargs="+",
        metavar="REPORT.json",
        help="average the BP4D / DISFA reports of folds 1, 2, 3 (see training/folds.py) into --output; no model is run",
    )
    parser.add_argument("--data-root", help="with --config: overrides the recipe's data.root")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--threshold", type=float, default=0.5, help="multilabel probability threshold")
    parser.add_argument("--cache-dir", help="Arrow cache of the prepared sources")
    parser.add_argument("--output", default="eval_results.json", help="where to write the JSON report")
    return parser


def aggregate_main(paths: list[str], output: str) -> int:
    """`--aggregate-folds`: the 3-fold AU numbers of per-fold reports, printed and written to `output`."""
    import json

    from modeling_qface.outputs.writers import strict_json
    from modeling_qface.training.folds import aggregate_fold_reports

    reports = []
    for path in paths:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as error:
            print(f"qface evaluate: --aggregate-folds: cannot read {path}: {error}", file=sys.stderr)
            return 2
    try:
        report = aggregate_fold_reports(reports, paths)
    except ValueError as error:
        print(f"qface evaluate: --aggregate-folds: {error}", file=sys.stderr)
        return 2
    for entry in report["data"]:
        metrics = report["metrics"][entry["label"]]
        per_au = ", ".join(
            f"{key.rsplit('/', 1)[-1]} {value:.4f}" for key, value in metrics.items() if key.count("/") == 2
        )
        print(
            f"{entry['label']} ({entry['protocol']}): au/f1_mean {metrics['au/f1_mean']:.4f}\n"
            f"  per AU, averaged over the folds: {per_au}"
        )
    Path(output).write_text(strict_json(report, indent=1))
    print(f"\nwritten: {output}")
    return 0


def recipe_sources(config: str, data_root: str | None, sets: str | None) -> list[dict]:
    """The sources a recipe asks `qface evaluate` to score: `data.test` (the final numbers) when it lists any, else
    `data.eval`; `sets` ("test" / "eval") chooses explicitly."""
    from modeling_qface.training.recipe import RecipeError, load_recipe

    overrides = [(["data", "root"], data_root)] if data_root else []
    # Only the roots of the scored sources matter here, and their adapters check them; a bad split, option or fold
    # in the recipe raises RecipeError here, before the model is loaded. Scoring a test split is what this is for.
    recipe = load_recipe(config, overrides, check_paths=False, check_splits=False)
    sets = sets or ("test" if recipe.data.test else "eval")
    chosen = getattr(recipe.data, sets)
    if not chosen:
        raise RecipeError(f"{config}: data.{sets} lists no source to score")
    return [
        {**source.model_dump(), "root": str(recipe.source_root(source)), "label": source.display_name}
        for source in chosen
    ]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.aggregate_folds:
        return aggregate_main(args.aggregate_folds, args.output)
    if not args.model:
        print("qface evaluate: give --model (a saved model folder) or --aggregate-folds", file=sys.stderr)
        return 2
    sources = list(args.source)
    if args.config:
        sources += recipe_sources(args.config, args.data_root, args.sets)
    if not sources:
        print(
            "qface evaluate: give at least one --source or a --config with data.test or data.eval sources",
            file=sys.stderr,
        )
        return 2
    report = evaluate_model(args.model, sources, args.batch_size, args.device, args.threshold, args.cache_dir)
    crop = report["face_crop"]
    print(
        f"Faces cut into the model's Q-Face crop ({crop['size']} px, margin {crop['margin']:g}); head pose scored "
        "in the photo's frame."
    )
    for entry in report["data"]:
        print(f"  {entry['label']}: {entry['num_samples']} faces; {entry['crop']}")
    print(format_table(report))
    from modeling_qface.outputs.writers import strict_json

    # Strict JSON: metrics of tasks without labels are NaN, which json.dumps would write as a bare `NaN`.
    Path(args.output).write_text(strict_json(report, indent=1))
    print(f"\nwritten: {args.output}")
    return 0


__all__ = [
    "build_parser",
    "evaluate_model",
    "evaluate_sets",
    "format_table",
    "main",
    "predict",
    "recipe_sources",
    "score_sets",
]
