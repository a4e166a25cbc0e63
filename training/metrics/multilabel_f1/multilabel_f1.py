# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Per-label F1 of the positive class and their mean (the AU occurrence protocol), skipping missing labels (-1).

A local `evaluate` module: load it offline with `evaluate.load("<repo>/training/metrics/multilabel_f1")`.
"""

# One import per line: evaluate's import scanner mis-parses `import a, b`.
import datasets
import evaluate
import numpy as np

MISSING = -1

_DESCRIPTION = """\
F1 score of the positive class for each label of a multi-label task, computed over the samples where that label
is known, and the mean over labels (the BP4D / DISFA action unit protocol). References equal to -1 are missing.
A label with no known reference gets NaN and is left out of the mean. Predictions are 0/1 decisions or
probabilities, which count as positive when `>= threshold`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]` of shape `(n, L)`): 0/1 decisions or probabilities in [0, 1] (apply a
        sigmoid to logits first).
    references (`list[list[int]]` of shape `(n, L)`): 1 present, 0 absent, -1 missing.
    threshold (`float`, *optional*, defaults to 0.5): a probability `>= threshold` is a positive prediction.
    zero_division (`float`, *optional*, defaults to 0.0): F1 of a label whose known references hold no positive
        and whose predictions hold none either (0/0); 0.0 like sklearn's default, or 1.0, or NaN to leave the label
        out of the mean.
Returns:
    f1 (`list[float]`): F1 per label, in label order; NaN for a label with no known reference.
    f1_mean (`float`): mean of the non-NaN per-label F1; NaN when there is none.
Examples:
    >>> metric = evaluate.load("training/metrics/multilabel_f1")
    >>> metric.compute(predictions=[[1, 0], [1, 1], [0, 0]], references=[[1, -1], [0, -1], [1, -1]])
    {'f1': [0.5, nan], 'f1_mean': 0.5}
"""

_CITATION = """\
@article{zhang2014bp4d,
  title={BP4D-Spontaneous: a high-resolution spontaneous 3D dynamic facial expression database},
  author={Zhang, Xing and Yin, Lijun and Cohn, Jeffrey F. and Canavan, Shaun and Reale, Michael and Horowitz, Andy and Liu, Peng and Girard, Jeffrey M.},
  journal={Image and Vision Computing},
  volume={32},
  number={10},
  pages={692--706},
  year={2014}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelF1(evaluate.Metric):
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
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, threshold=0.5, zero_division=0.0):
        predicted, references = _binary_inputs(predictions, references, threshold)
        known = references != MISSING
        positive = references == 1
        true_pos = (predicted & positive).sum(axis=0)
        false_pos = (predicted & known & ~positive).sum(axis=0)
        false_neg = (~predicted & positive).sum(axis=0)

        # F1 = 2 TP / (2 TP + FP + FN); the denominator is 0 only when nothing is positive on either side.
        denominator = 2 * true_pos + false_pos + false_neg
        f1 = np.full(references.shape[1], float(zero_division))
        np.divide(2 * true_pos, denominator, out=f1, where=denominator > 0)
        f1[~known.any(axis=0)] = np.nan
        return {"f1": f1.tolist(), "f1_mean": _nan_mean(f1)}


def _nan_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN values, NaN (without a warning) when there is none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


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
