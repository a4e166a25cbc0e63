# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Model selection on validation data only: what a run checks once its sources are prepared.

The recipe check (`modeling_qface.training.recipe.check_test_splits`) already refuses test splits in `data.train` / `data.eval` by
name. This checks the prepared rows themselves: an evaluation set that shares photos with a training set (RAF-DB's
"val" beside "trainval", or a BP4D "val" whose `val_fraction` differs from the training source's) would select the
best checkpoint on images the model trained on.
"""

from __future__ import annotations

import logging

from modeling_qface.training.recipe import Recipe, RecipeError, test_split_sources

logger = logging.getLogger("modeling_qface.training.finetune")
MAX_EXAMPLES = 2


def _photos(dataset) -> set[str]:
    return set(dataset["photo"]) if "photo" in dataset.column_names else set()


def check_selection_data(recipe: Recipe, train_sets: dict, eval_sets: dict) -> None:
    """Raises `RecipeError` naming the sets when an evaluation set shares photos with a training set and
    `eval.best_metric` selects on the evaluation (warns when nothing is selected: the numbers only mislead)."""
    if recipe.data.allow_test_splits:
        for source in test_split_sources(recipe):
            logger.warning(
                f"{source} is a test split, allowed by data.allow_test_splits: its numbers are not "
                "held-out numbers (see docs/training.md, 'Model selection')"
            )
    trained = {name: _photos(dataset) for name, dataset in train_sets.items()}
    for eval_name, dataset in eval_sets.items():
        photos = _photos(dataset)
        for train_name, train_photos in trained.items():
            shared = photos & train_photos
            if not shared:
                continue
            examples = ", ".join(sorted(shared)[:MAX_EXAMPLES])
            message = (
                f"data.eval {eval_name} shares {len(shared)} of its {len(photos)} photos with data.train "
                f"{train_name} (e.g. {examples}): it would score images the model trained on; evaluate on a "
                "split carved out of the training one with the same options (RAF-DB: train + val, not "
                "trainval + val; BP4D / DISFA / 300W-LP: the same val_fraction and seed on both)"
            )
            if recipe.eval.best_metric is not None and not recipe.data.allow_test_splits:
                raise RecipeError(message)
            logger.warning(message)


__all__ = ["check_selection_data"]
