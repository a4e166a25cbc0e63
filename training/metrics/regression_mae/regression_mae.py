# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Per-column mean absolute error and their mean (age in years, head pose in degrees), skipping NaN references.

A local `evaluate` module: load it offline with `evaluate.load("<repo>/training/metrics/regression_mae")`.
"""

# One import per line: evaluate's import scanner mis-parses `import a, b`.
import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Mean absolute error of each output column of a regression task, computed over the samples where that column's
reference is known, and the mean over columns (age MAE in years; head pose MAE per angle and its mean, the
AFLW2000 protocol). NaN references are missing. A column with no known reference gets NaN and is left out of
the mean. Values are in the task's units; nothing is rescaled.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]` of shape `(n, K)`, or `list[float]` of shape `(n,)` for K = 1):
        predicted values; must be finite where the reference is known.
    references (same shape as `predictions`): true values, NaN for a missing one.
Returns:
    mae (`list[float]`): MAE per column, in column order; NaN for a column with no known reference.
    mae_mean (`float`): mean of the non-NaN per-column MAE; NaN when there is none.
Examples:
    >>> metric = evaluate.load("training/metrics/regression_mae")
    >>> metric.compute(predictions=[[10.0, 1.0], [20.0, 2.0]], references=[[12.0, float("nan")], [21.0, 5.0]])
    {'mae': [1.5, 3.0], 'mae_mean': 2.25}
"""

_CITATION = """\
@inproceedings{zhu2016face,
  title={Face Alignment Across Large Poses: A 3D Solution},
  author={Zhu, Xiangyu and Lei, Zhen and Liu, Xiaoming and Shi, Hailin and Li, Stan Z.},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2016}
}
@inproceedings{zhang2017age,
  title={Age Progression/Regression by Conditional Adversarial Autoencoder},
  author={Zhang, Zhifei and Song, Yang and Qi, Hairong},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RegressionMae(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # The first format whose encoding accepts the first example is used: (n, K), then (n,).
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.List(datasets.Value("float64")),
                        "references": datasets.List(datasets.Value("float64")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            ],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_absolute_error.html"
            ],
        )

    def _compute(self, predictions, references):
        # Arrow hands a null back as None; float64 turns it into NaN, i.e. missing.
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        if predictions.shape != references.shape or predictions.ndim not in (1, 2):
            raise ValueError(
                f"expected predictions and references of the same shape (n, K) or (n,), "
                f"got {predictions.shape} and {references.shape}"
            )
        if predictions.ndim == 1:
            predictions, references = predictions[:, None], references[:, None]
        if np.isinf(references).any():
            raise ValueError("references: expected finite values or NaN (missing), got an infinite value")
        known = ~np.isnan(references)
        if not np.isfinite(predictions[known]).all():
            raise ValueError("predictions: NaN or infinite value where the reference is known")

        errors = np.where(known, np.abs(predictions - np.nan_to_num(references)), 0.0)
        known_count = known.sum(axis=0)
        mae = np.full(references.shape[1], np.nan)
        np.divide(errors.sum(axis=0), known_count, out=mae, where=known_count > 0)
        known_mae = mae[~np.isnan(mae)]
        return {"mae": mae.tolist(), "mae_mean": float(known_mae.mean()) if known_mae.size else float("nan")}
