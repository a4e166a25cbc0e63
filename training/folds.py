# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The 3-fold subject-exclusive AU protocol of BP4D and DISFA: one training run per fold, and the fold average.

    qface train --config configuration/train-paper.yaml --folds 1,2,3       # runs/qface-base/fold-1, fold-2, fold-3
    qface evaluate --model runs/qface-base/fold-1/final --config runs/qface-base/fold-1/recipe.yaml --output fold1.json
    ... (folds 2, 3)
    qface evaluate --aggregate-folds fold1.json fold2.json fold3.json --output au-3fold.json

`fold_recipes` copies a recipe once per fold, setting `options.fold` of every BP4D / DISFA source (train, eval and
test alike, so each fold's validation subjects are carved from its own training subjects) and `output_dir` to
`<output_dir>/fold-<k>`. `aggregate_fold_reports` averages the folds' `qface evaluate` reports as ME-GraphAU (and
JAA-Net before it) reports BP4D / DISFA: each fold's F1 per AU is computed on that fold's test subjects alone (frames
are not pooled across folds), the per-AU F1 is averaged over the three folds, and the headline number is the mean of
those per-AU averages over the AUs the dataset codes. When every AU has an F1 in every fold, this equals the mean of
the three folds' `au/f1_mean`; an AU without a labelled positive-or-negative frame in a fold (NaN there) is averaged
over the folds that score it, and the report says over how many.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from modeling_qface.training.protocols import FOLDED_SOURCES, fold_mean_name
from modeling_qface.training.recipe import Recipe, RecipeError, check_recipe_sources

PROTOCOL_FOLDS = (1, 2, 3)
F1_PREFIX = "au/f1/"
F1_MEAN = "au/f1_mean"


# ------------------------------------------------------------------------------------------------ training
def parse_folds(text: str) -> list[int]:
    """`"1,2,3"` -> `[1, 2, 3]`; `RecipeError` for another fold or a repeated one."""
    try:
        folds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise RecipeError(f"--folds {text!r}: expected fold numbers separated by commas, e.g. 1,2,3") from None
    if not folds or any(fold not in PROTOCOL_FOLDS for fold in folds) or len(set(folds)) != len(folds):
        raise RecipeError(f"--folds {text!r}: expected distinct folds among 1, 2, 3")
    return folds


def fold_recipes(recipe: Recipe, folds: Sequence[int], where: str = "recipe") -> dict[int, Recipe]:
    """`{fold: the recipe of that fold}` (see the module docstring); `RecipeError` when no source has folds."""
    folded = [
        s
        for section in (recipe.data.train, recipe.data.eval, recipe.data.test)
        for s in section
        if s.name in FOLDED_SOURCES
    ]
    if not folded:
        raise RecipeError(f"{where}: --folds: no {' or '.join(FOLDED_SOURCES)} source in data.train / eval / test")
    recipes = {}
    for fold in folds:
        copy = recipe.model_copy(deep=True)
        copy.output_dir = f"{recipe.output_dir.rstrip('/')}/fold-{fold}"
        for section in (copy.data.train, copy.data.eval, copy.data.test):
            for source in section:
                if source.name in FOLDED_SOURCES:
                    source.options = {**source.options, "fold": fold}
        check_recipe_sources(copy, f"{where} (fold {fold})")
        recipes[fold] = copy
    return recipes


# ------------------------------------------------------------------------------------------------ the fold average
def _fold_of(entry: dict) -> int:
    return int((entry.get("options") or {}).get("fold", 1))


def aggregate_fold_reports(reports: Sequence[dict], names: Sequence[str]) -> dict:
    """The 3-fold AU numbers of `qface evaluate` reports, one per fold (`names`: their files, for messages).

    Every BP4D / DISFA set (by label) must be in every report, scored on folds 1, 2 and 3 once each. Returns a report
    in `qface evaluate`'s shape (`data`, `metrics`, so the model card reads it) plus `per_fold` (each fold's values,
    in fold order) and `folds_scored` (per AU, the folds that gave it an F1).
    """
    if len(reports) != len(names):
        raise ValueError(f"{len(reports)} reports but {len(names)} names")
    sets = {}
    for report, name in zip(reports, names):
        for entry in report.get("data") or []:
            if entry.get("name") in FOLDED_SOURCES:
                sets.setdefault(entry["label"], []).append((_fold_of(entry), name, entry, report))
    if not sets:
        raise ValueError(f"no {' or '.join(FOLDED_SOURCES)} set in {', '.join(names)}: nothing to average")
    data, metrics, per_fold, scored = [], {}, {}, {}
    for label, runs in sets.items():
        folds = sorted(fold for fold, *_ in runs)
        if folds != list(PROTOCOL_FOLDS):
            seen = ", ".join(f"fold {fold} ({name})" for fold, name, *_ in sorted(runs, key=lambda run: run[0]))
            raise ValueError(f"{label}: the 3-fold protocol needs folds 1, 2 and 3 once each; got {seen}")
        runs = sorted(runs, key=lambda run: run[0])
        values = [run[3]["metrics"].get(label, {}) for run in runs]
        aus = list(dict.fromkeys(key for fold in values for key in fold if key.startswith(F1_PREFIX)))
        averaged, fold_values, fold_counts = {}, {}, {}
        for key in aus:
            finite = [fold[key] for fold in values if _finite(fold.get(key))]
            fold_values[key] = [fold.get(key) if _finite(fold.get(key)) else None for fold in values]
            if finite:
                averaged[key] = sum(finite) / len(finite)
                fold_counts[key.removeprefix(F1_PREFIX)] = len(finite)
        if not averaged:
            raise ValueError(f"{label}: no report has a per-AU F1 ({F1_PREFIX}<AU>) for this set")
        averaged[F1_MEAN] = sum(averaged.values()) / len(averaged)
        fold_values[F1_MEAN] = [fold.get(F1_MEAN) for fold in values]
        name = runs[0][2]["name"]
        metrics[label], per_fold[label], scored[label] = averaged, fold_values, fold_counts
        data.append(
            {
                "label": label,
                "name": name,
                "split": "test",
                "protocol": fold_mean_name(name),
                "folds": list(PROTOCOL_FOLDS),
                "num_samples": sum(run[2].get("num_samples", 0) for run in runs),
                "reports": [run[1] for run in runs],
            }
        )
    return {
        "protocol": "per-AU F1 of each fold's test subjects, averaged over folds 1-3; au/f1_mean = the mean of "
        "those averages over the AUs the dataset codes (ME-GraphAU / JAA-Net)",
        "data": data,
        "metrics": metrics,
        "per_fold": per_fold,
        "folds_scored": scored,
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["PROTOCOL_FOLDS", "aggregate_fold_reports", "fold_recipes", "parse_folds"]
