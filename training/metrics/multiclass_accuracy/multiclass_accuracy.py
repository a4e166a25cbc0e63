# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Multiclass accuracy and mean per-class accuracy (balanced accuracy), skipping references marked missing (-1).

A local `evaluate` module: load it offline with `evaluate.load("<repo>/training/metrics/multiclass_accuracy")`.
"""

# One import per line: evaluate's import scanner mis-parses `import a, b`.
import datasets
import evaluate
import numpy as np

MISSING = -1

_DESCRIPTION = """\
Accuracy of single-label classification (the RAF-DB expression protocol) and the mean over classes of each
class's accuracy (its recall), which does not favour frequent classes. References equal to -1 are missing labels
and are left out of both. Predictions are class ids, or per-class scores (logits or probabilities) whose argmax is
the predicted class.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]` of shape `(n,)`, or `list[list[float]]` of shape `(n, C)`):
        predicted class ids, or per-class scores whose argmax is the predicted class.
    references (`list[int]` of shape `(n,)`): true class ids, -1 for a missing label.
    label_names (`list[str]`, *optional*): the class names in class-id order. When given, every id must be
        below `len(label_names)` and the result also holds `class_accuracy`.
Returns:
    accuracy (`float`): share of the labelled samples whose prediction is right; NaN when none is labelled.
    mean_class_accuracy (`float`): mean, over the classes present in the labelled references, of the share of
        that class's samples predicted right (sklearn's `balanced_accuracy_score`); NaN when none is labelled.
    class_accuracy (`dict[str, float]`, only with `label_names`): that share per class, NaN for a class absent
        from the labelled references.
Examples:
    >>> metric = evaluate.load("training/metrics/multiclass_accuracy")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, -1])
    {'accuracy': 0.6666666666666666, 'mean_class_accuracy': 0.75}
"""

_CITATION = """\
@inproceedings{li2017reliable,
  title={Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression Recognition in the Wild},
  author={Li, Shan and Deng, Weihong and Du, JunPing},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MulticlassAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # The first format whose encoding accepts the first example is used: scores, then ids.
            features=[
                datasets.Features(
                    {"predictions": datasets.List(datasets.Value("float64")), "references": datasets.Value("int64")}
                ),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#balanced-accuracy-score"],
        )

    def _compute(self, predictions, references, label_names=None):
        num_classes = None if label_names is None else len(label_names)
        predicted = _predicted_class_ids(predictions, num_classes)
        references = _reference_class_ids(references, num_classes)
        if len(predicted) != len(references):
            raise ValueError(f"got {len(predicted)} predictions but {len(references)} references")

        labelled = references != MISSING
        predicted, references = predicted[labelled], references[labelled]
        size = max(num_classes or 0, int(references.max(initial=-1)) + 1)
        # Per class: how many labelled samples it has, and how many of them are predicted right.
        class_counts = np.bincount(references, minlength=size)
        class_hits = np.bincount(references[predicted == references], minlength=size)
        present = class_counts > 0
        class_accuracy = np.full(size, np.nan)
        class_accuracy[present] = class_hits[present] / class_counts[present]

        result = {
            "accuracy": float(np.mean(predicted == references)) if len(references) else float("nan"),
            "mean_class_accuracy": float(np.mean(class_accuracy[present])) if present.any() else float("nan"),
        }
        if label_names is not None:
            result["class_accuracy"] = {str(name): float(class_accuracy[i]) for i, name in enumerate(label_names)}
        return result


def _predicted_class_ids(predictions, num_classes: int | None) -> np.ndarray:
    """Class ids `(n,)` from ids `(n,)` or scores `(n, C)`, checked against `num_classes`."""
    array = np.asarray(predictions, dtype=np.float64)
    if array.ndim == 2:
        if num_classes is not None and array.shape[1] != num_classes:
            raise ValueError(f"predictions: expected scores for {num_classes} classes, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("predictions: the class scores hold NaN or infinite values")
        return array.argmax(axis=1) if array.shape[0] else np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"predictions: expected class ids (n,) or class scores (n, C), got shape {array.shape}")
    ids = array.astype(np.int64)
    high = num_classes if num_classes is not None else np.inf
    bad = (ids < 0) | (ids >= high) | (ids != array)
    if bad.any():
        raise ValueError(f"predictions: expected class ids in [0, {high}), got {array[bad][:5].tolist()}")
    return ids


def _reference_class_ids(references, num_classes: int | None) -> np.ndarray:
    """Class ids `(n,)` with -1 for a missing label, checked against `num_classes`."""
    ids = np.asarray(references, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"references: expected class ids of shape (n,), got shape {ids.shape}")
    high = num_classes if num_classes is not None else np.inf
    bad = (ids < MISSING) | (ids >= high)
    if bad.any():
        raise ValueError(f"references: expected class ids in [0, {high}) or -1 (missing), got {ids[bad][:5].tolist()}")
    return ids
