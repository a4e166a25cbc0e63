# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Per-label accuracy and their mean (the CelebA attribute protocol), skipping missing labels (-1).

A local `evaluate` module: load it offline with `evaluate.load("<repo>/training/metrics/multilabel_accuracy")`.
"""

# One import per line: evaluate's import scanner mis-parses `import a, b`.
import datasets
import evaluate
import numpy as np

MISSING = -1

_DESCRIPTION = """\
Accuracy of each binary label of a multi-label task, computed over the samples where that label is known, and
the mean over labels (the CelebA attribute protocol). References equal to -1 are missing. A label with no known
reference gets NaN and is left out of the mean. Predictions are 0/1 decisions or probabilities, which count as
positive when `>= threshold`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]` of shape `(n, L)`): 0/1 decisions or probabilities in [0, 1] (apply a
        sigmoid to logits first).
    references (`list[list[int]]` of shape `(n, L)`): 1 present, 0 absent, -1 missing.
    threshold (`float`, *optional*, defaults to 0.5): a probability `>= threshold` is a positive prediction.
Returns:
    accuracy (`list[float]`): accuracy per label, in label order; NaN for a label with no known reference.
    accuracy_mean (`float`): mean of the non-NaN per-label accuracies; NaN when there is none.
Examples:
    >>> metric = evaluate.load("training/metrics/multilabel_accuracy")
    >>> metric.compute(predictions=[[0.9, 0.2], [0.7, 0.6], [0.1, 0.3]], references=[[1, -1], [0, -1], [0, -1]])
    {'accuracy': [0.6666666666666666, nan], 'accuracy_mean': 0.6666666666666666}
"""

_CITATION = """\
@inproceedings{liu2015faceattributes,
  title={Deep Learning Face Attributes in the Wild},
  author={Liu, Ziwei and Luo, Ping and Wang, Xiaogang and Tang, Xiaoou},
  booktitle={IEEE International Conference on Computer Vision (ICCV)},
  year={2015}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.Value("float64")),
                    "references": datasets.List(datasets.Value("int64")),
                }
            ),
            reference_urls=["https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"],
        )

    def _compute(self, predictions, references, threshold=0.5):
        predicted, references = _binary_inputs(predictions, references, threshold)
        known = references != MISSING
        correct = (predicted == (references == 1)) & known
        known_count = known.sum(axis=0)
        accuracy = np.full(references.shape[1], np.nan)
        np.divide(correct.sum(axis=0), known_count, out=accuracy, where=known_count > 0)
        return {"accuracy": accuracy.tolist(), "accuracy_mean": _nan_mean(accuracy)}


def _nan_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN values, NaN (without a warning) when there is none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


# Same input checks as multilabel_f1 (an evaluate module must be a single self-contained script).
def _binary_inputs(predictions, references, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Checks `(n, L)` predictions and references; returns boolean decisions and int references (-1 missing)."""
    scores = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.int64)
    if scores.ndim != 2 or scores.shape != references.shape:
        raise ValueError(
            f"expected predictions and references of the same shape (n, L), got {scores.shape} and {references.shape}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a probability in [0, 1], got {threshold!r}")
    if not ((scores >= 0.0) & (scores <= 1.0)).all():  # also catches NaN
        bad = scores[~((scores >= 0.0) & (scores <= 1.0))]
        raise ValueError(
            f"predictions: expected 0/1 decisions or probabilities in [0, 1], got {bad[:5].tolist()}; "
            "apply a sigmoid to logits first"
        )
    bad = ~np.isin(references, (MISSING, 0, 1))
    if bad.any():
        raise ValueError(
            f"references: expected 1 (present), 0 (absent) or -1 (missing), got {references[bad][:5].tolist()}"
        )
    return scores >= threshold, references
