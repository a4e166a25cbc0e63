# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""What the training labels say before a run starts: BCE positive weights that balance rare labels (`pos_weight:
auto`), and a check that every distribution task's labels lie in its bins."""

from __future__ import annotations

import logging
import math

import numpy as np

from modeling_qface.training.batching import schema_positions
from modeling_qface.training.recipe import Recipe, RecipeError

logger = logging.getLogger(__name__)

# `pos_weight: auto` clips each label's negatives / positives to [1 / POS_WEIGHT_CAP, POS_WEIGHT_CAP]: an AU with a
# handful of positives among 100k frames would otherwise weigh 10^4 times a negative, and the few batches holding
# one would swamp every other loss. The floor keeps an AU that is never negative in the data from losing its
# positives' loss entirely (a weight of 0).
POS_WEIGHT_CAP = 10.0


def _column(dataset, name: str) -> np.ndarray:
    """One label column as an array (rows x labels for list columns, NaN for a missing number), images unread."""
    return dataset.select_columns([name]).with_format("numpy")[:][name]


def label_counts(task: dict, datasets) -> tuple[np.ndarray, np.ndarray]:
    """`(positives, negatives)` per label of a multilabel task, over the rows of `datasets` that code the label
    (1 / 0; -1, not coded, counts for neither). The task's labels are read from its schema column by name."""
    positions = schema_positions(task)
    positives, negatives = np.zeros(len(task["labels"]), np.int64), np.zeros(len(task["labels"]), np.int64)
    for dataset in datasets:
        if task["name"] not in dataset.column_names or len(dataset) == 0:
            continue
        values = _column(dataset, task["name"])
        values = values if positions is None else values[:, positions]
        positives += (values == 1).sum(axis=0)
        negatives += (values == 0).sum(axis=0)
    return positives, negatives


def auto_pos_weight(task: dict, datasets, cap: float = POS_WEIGHT_CAP) -> list[float]:
    """BCE positive weights that balance each label's positives against its negatives: negatives / positives over
    the rows that code the label, clipped to `[1 / cap, cap]`. A label no row codes gets 1.0: no data says how rare
    it is, and its loss is never computed in this run anyway."""
    positives, negatives = label_counts(task, datasets)
    weights = []
    for pos, neg in zip(positives.tolist(), negatives.tolist()):
        if pos + neg == 0:
            weights.append(1.0)
        else:
            weights.append(float(min(cap, max(1.0 / cap, neg / pos if pos else math.inf))))
    return weights


def resolve_pos_weights(model, recipe: Recipe, train_sets: dict) -> dict[str, list[float]]:
    """Computes the recipe's `pos_weight: auto` tasks from the training sets and writes them into the model's
    config (so the exported model's config.json holds the weights it was trained with); returns `{task: weights}`."""
    resolved = {}
    for name, weights in recipe.model.pos_weight.items():
        if weights == "auto":
            task = model.config.get_task(name)
            task["pos_weight"] = auto_pos_weight(task, train_sets.values())
            resolved[name] = task["pos_weight"]
    return resolved


def check_age_ranges(config, train_sets: dict, eval_sets: dict) -> None:
    """Every distribution task's labels must lie in its bins `min_value..max_value`: the loss clamps a target
    outside them (a 116-year-old is learnt as 100) while the metric does not, so the run would optimise one thing
    and report another. A training source with such labels is a `RecipeError`; an evaluation source is warned
    about (its MAE counts the full distance, which the model cannot close)."""
    for task in config.tasks:
        if task["kind"] != "distribution":
            continue
        low, high = task["min_value"], task["max_value"]
        for section, sets in (("data.train", train_sets), ("data.eval", eval_sets)):
            for source, dataset in sets.items():
                if task["name"] not in dataset.column_names or len(dataset) == 0:
                    continue
                values = _column(dataset, task["name"]).astype(float)
                outside = values[~np.isnan(values) & ((values < low) | (values > high))]
                if not len(outside):
                    continue
                message = (
                    f"{section} {source}: {len(outside)} {task['name']} labels lie outside the {task['name']} task's "
                    f"bins {low}..{high} (e.g. {outside[0]:g}); restrict the source (UTKFace: options "
                    f"{{age_range: [{low}, {high}]}} or {{protocol: coral}}) or use a config whose task covers them"
                )
                if section == "data.train":
                    raise RecipeError(message)
                logger.warning(message)


__all__ = ["POS_WEIGHT_CAP", "auto_pos_weight", "check_age_ranges", "label_counts", "resolve_pos_weights"]
