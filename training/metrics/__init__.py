# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Q-Face evaluation metrics as local `evaluate` modules, and one call that scores every task of a model.

`evaluate.load("accuracy")` needs the Hugging Face Hub, so the metrics live here, one folder per module
(`<name>/<name>.py`), and load offline by path. Missing labels are left out everywhere: -1 for class ids and
binary labels, NaN for regression targets.
"""

import functools
from pathlib import Path

import evaluate
import numpy as np

METRICS_DIR = Path(__file__).resolve().parent

__all__ = ["METRICS_DIR", "available_metrics", "compute_task_metrics", "load_metric"]


def available_metrics() -> list[str]:
    """Names of the metric modules in `METRICS_DIR`."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """Loads the metric module `name` (e.g. `"multilabel_f1"`) from `METRICS_DIR`, offline.

    Returns a new module each call, so batches added to one (`add_batch`) never leak into another. `kwargs` go
    to `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id=...`).
    """
    if not (METRICS_DIR / name / f"{name}.py").is_file():
        raise ValueError(f"unknown metric {name!r}; available in {METRICS_DIR}: {available_metrics()}")
    return evaluate.load(str(METRICS_DIR / name), **kwargs)


@functools.cache
def _shared_metric(name: str) -> evaluate.EvaluationModule:
    # For `compute_task_metrics` only: it calls `compute` with all inputs at once, which never keeps state.
    return load_metric(name, keep_in_memory=True)


def compute_task_metrics(tasks: list[dict], predictions: dict, references: dict, threshold: float = 0.5) -> dict:
    """Scores every task with a labelled sample; returns a flat `{"<task>/<metric>[/<label>]": float}` dict.

    Args:
        tasks (`list[dict]`): task descriptions `{"name", "kind", "labels", ...}` as in `QFaceConfig.tasks`.
        predictions (`dict[str, np.ndarray]`): per task name, the model outputs for `n` samples:
            multiclass logits `(n, C)`; multilabel logits `(n, L)` (sigmoid, then `>= threshold`);
            regression values `(n, K)` (or `(n,)` when K = 1); distribution expected values `(n,)` or `(n, 1)`.
        references (`dict[str, np.ndarray]`): per task name, the labels: class ids `(n,)` with -1 missing;
            0/1 `(n, L)` with -1 missing; values `(n, K)` / `(n,)` with NaN missing. A task absent from
            `references` counts as fully missing.
        threshold (`float`, defaults to 0.5): probability threshold of multilabel tasks.

    Returns:
        `dict[str, float]`, e.g. `expression/accuracy`, `expression/mean_class_accuracy`,
        `expression/class_accuracy/happiness`, `au/f1_mean`, `au/f1/AU12`, `au/accuracy_mean`, `au/accuracy/AU12`,
        `age/mae`, `head_pose/mae_mean`, `head_pose/mae/yaw`. A task with no labelled sample has no key, and neither
        has a label or class with no labelled sample, so nothing is reported as 0 for lack of data.
    """
    names = [task["name"] for task in tasks]
    for what, given in (("predictions", predictions), ("references", references)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"{what}: unknown task(s) {unknown}; the tasks are {names}")

    results = {}
    for task in tasks:
        name, kind, labels = task["name"], task["kind"], list(task["labels"])
        if kind not in _TASK_SCORERS:
            raise ValueError(f"task {name!r}: unknown kind {kind!r}; expected one of {sorted(_TASK_SCORERS)}")
        if name not in references or not _has_label(kind, references[name]):
            continue
        if name not in predictions:
            raise ValueError(f"predictions: task {name!r} has labelled samples but no predictions")
        scores = _TASK_SCORERS[kind](labels, np.asarray(predictions[name]), np.asarray(references[name]), threshold)
        results.update({f"{name}/{key}": value for key, value in scores.items()})
    return results


def _has_label(kind: str, references) -> bool:
    """Whether a task's references hold at least one known label (-1 / NaN mark missing ones)."""
    references = np.asarray(references, dtype=np.float64)
    if kind in ("regression", "distribution"):
        return bool((~np.isnan(references)).any())
    return bool((references != -1).any())


def _check_rows(labels: list[str], predictions: np.ndarray, references: np.ndarray, width: int) -> None:
    """Checks that predictions have shape `(n, width)` and references `n` rows."""
    if predictions.ndim != 2 or predictions.shape[1] != width or len(references) != len(predictions):
        raise ValueError(
            f"expected predictions of shape (n, {width}) for labels {labels} and n references, "
            f"got predictions {predictions.shape} and references {references.shape}"
        )


def _score_multiclass(labels, logits, references, threshold) -> dict:
    _check_rows(labels, logits, references, len(labels))
    out = _shared_metric("multiclass_accuracy").compute(
        predictions=logits.astype(np.float64), references=references.astype(np.int64), label_names=labels
    )
    scores = {"accuracy": out["accuracy"], "mean_class_accuracy": out["mean_class_accuracy"]}
    scores.update(_per_label("class_accuracy", out["class_accuracy"]))
    return scores


def _score_multilabel(labels, logits, references, threshold) -> dict:
    _check_rows(labels, logits, references, len(labels))
    # sigmoid(x) = exp(-log(1 + exp(-x))), computed without overflow for large |x|.
    probabilities = np.exp(-np.logaddexp(0.0, -logits.astype(np.float64)))
    inputs = {"predictions": probabilities, "references": references.astype(np.int64), "threshold": threshold}
    f1 = _shared_metric("multilabel_f1").compute(**inputs)
    accuracy = _shared_metric("multilabel_accuracy").compute(**inputs)
    return {
        "f1_mean": f1["f1_mean"],
        **_per_label("f1", dict(zip(labels, f1["f1"]))),
        "accuracy_mean": accuracy["accuracy_mean"],
        **_per_label("accuracy", dict(zip(labels, accuracy["accuracy"]))),
    }


def _score_regression(labels, values, references, threshold) -> dict:
    if len(labels) == 1:  # one value per sample: (n,) and (n, 1) mean the same
        values, references = _as_column(values), _as_column(references)
    _check_rows(labels, values, references, len(labels))
    if references.shape != values.shape:
        raise ValueError(f"expected references of shape {values.shape} for labels {labels}, got {references.shape}")
    out = _shared_metric("regression_mae").compute(
        predictions=values.astype(np.float64), references=references.astype(np.float64)
    )
    if len(labels) == 1:
        return {"mae": out["mae"][0]}
    return {"mae_mean": out["mae_mean"], **_per_label("mae", dict(zip(labels, out["mae"])))}


def _score_distribution(labels, expected_values, references, threshold) -> dict:
    if expected_values.ndim == 2 and expected_values.shape[1] != 1:
        raise ValueError(
            f"distribution task {labels}: expected the expected values (n,) or (n, 1), got shape "
            f"{expected_values.shape}; pass the expectation of the predicted distribution, not its bins"
        )
    return _score_regression(labels, expected_values, references, threshold)


def _as_column(values: np.ndarray) -> np.ndarray:
    """`(n,)` -> `(n, 1)`; anything else unchanged (and checked by the caller)."""
    return values[:, None] if values.ndim == 1 else values


def _per_label(metric: str, values: dict) -> dict:
    """`{"<metric>/<label>": value}` for the labels with a value (NaN = no labelled sample: no key)."""
    return {f"{metric}/{label}": value for label, value in values.items() if not np.isnan(value)}


_TASK_SCORERS = {
    "multiclass": _score_multiclass,
    "multilabel": _score_multilabel,
    "regression": _score_regression,
    "distribution": _score_distribution,
}
