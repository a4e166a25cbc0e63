# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Q-Face metrics (`training/metrics`): cross-checked against scikit-learn on random data with missing labels.

tests/conftest.py makes the session offline (HF_HUB_OFFLINE=1) with a private HF_HOME.
"""

import evaluate
import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    recall_score,
)

from modeling_qface.model.configuration_qface import AU_NAMES, EXPRESSION_NAMES, HEAD_POSE_NAMES, default_tasks
from modeling_qface.training.metrics import METRICS_DIR, available_metrics, compute_task_metrics, load_metric

SEEDS = [0, 1, 2, 3]
METRIC_CLASSES = {
    "multiclass_accuracy": "MulticlassAccuracy",
    "multilabel_f1": "MultilabelF1",
    "multilabel_accuracy": "MultilabelAccuracy",
    "regression_mae": "RegressionMae",
}


@pytest.fixture(scope="module")
def metric():
    loaded = {name: load_metric(name, keep_in_memory=True) for name in METRIC_CLASSES}
    return loaded.__getitem__


def _with_missing(rng, labels: np.ndarray, rate: float = 0.3, missing=-1) -> np.ndarray:
    """A copy of `labels` with about `rate` of its entries replaced by `missing`."""
    labels = labels.astype(np.float64 if isinstance(missing, float) else labels.dtype, copy=True)
    labels[rng.random(labels.shape) < rate] = missing
    return labels


# ---------------------------------------------------------------------------------------------------------------
# Loading


def test_metrics_load_offline_by_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)  # any Hub access would now raise
    assert available_metrics() == sorted(METRIC_CLASSES)
    for name, class_name in METRIC_CLASSES.items():
        module = evaluate.load(str(METRICS_DIR / name))
        assert type(module).__name__ == class_name
        assert module.name == name
        assert module.citation.startswith("@") and module.description.strip()
        formats = module.features if isinstance(module.features, list) else [module.features]
        assert all(set(features) == {"predictions", "references"} for features in formats)
    with pytest.raises(ValueError, match="unknown metric 'accuracy'.*multilabel_f1"):
        load_metric("accuracy")


# ---------------------------------------------------------------------------------------------------------------
# multiclass_accuracy


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_accuracy_matches_sklearn(metric, seed):
    rng = np.random.default_rng(seed)
    n, num_classes = 300, len(EXPRESSION_NAMES)
    logits = rng.normal(size=(n, num_classes))
    references = _with_missing(rng, rng.integers(0, num_classes, n))
    references[references == 2] = -1  # a class absent from the labelled references: no recall for it
    labelled = references != -1
    predicted = logits.argmax(axis=1)
    y_true, y_pred = references[labelled], predicted[labelled]

    out = metric("multiclass_accuracy").compute(predictions=logits, references=references, label_names=EXPRESSION_NAMES)

    assert out["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert out["mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    recall = recall_score(y_true, y_pred, labels=range(num_classes), average=None, zero_division=np.nan)
    assert list(out["class_accuracy"]) == list(EXPRESSION_NAMES)
    np.testing.assert_allclose(list(out["class_accuracy"].values()), recall, atol=1e-12)
    assert np.isnan(out["class_accuracy"]["disgust"])
    # Class ids give the same numbers as the scores they come from.
    from_ids = metric("multiclass_accuracy").compute(predictions=predicted, references=references)
    assert from_ids == {"accuracy": out["accuracy"], "mean_class_accuracy": out["mean_class_accuracy"]}


def test_multiclass_accuracy_edge_cases(metric):
    accuracy = metric("multiclass_accuracy")
    perfect = accuracy.compute(predictions=[3, 0, 3, 1], references=[3, 0, 3, 1])
    assert perfect == {"accuracy": 1.0, "mean_class_accuracy": 1.0}
    # Mean class accuracy does not favour the frequent class: class 0 is 3/3 right, class 1 is 0/1 right.
    assert accuracy.compute(predictions=[0, 0, 0, 0, 5], references=[0, 0, 0, 1, -1]) == {
        "accuracy": 0.75,
        "mean_class_accuracy": 0.5,
    }
    none_labelled = accuracy.compute(predictions=[0, 1], references=[-1, -1], label_names=["a", "b"])
    assert all(np.isnan(v) for v in (none_labelled["accuracy"], none_labelled["mean_class_accuracy"]))
    assert all(np.isnan(v) for v in none_labelled["class_accuracy"].values())


def test_multiclass_accuracy_rejects_bad_ids(metric):
    accuracy = metric("multiclass_accuracy")
    with pytest.raises(ValueError, match=r"references: expected class ids in \[0, 2\) or -1"):
        accuracy.compute(predictions=[0, 1], references=[0, 2], label_names=["a", "b"])
    with pytest.raises(ValueError, match=r"predictions: expected class ids in \[0, 2\)"):
        accuracy.compute(predictions=[0, 2], references=[0, 1], label_names=["a", "b"])
    with pytest.raises(ValueError, match=r"predictions: expected scores for 3 classes, got shape \(2, 2\)"):
        accuracy.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[0, 1], label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="references: expected class ids"):
        accuracy.compute(predictions=[0, 1], references=[-2, 1])


# ---------------------------------------------------------------------------------------------------------------
# multilabel_f1 and multilabel_accuracy


def _random_multilabel(seed: int, n: int = 200, num_labels: int = 15):
    """Probabilities, references with ~30 % missing, and one label (index 4) missing everywhere."""
    rng = np.random.default_rng(seed)
    probabilities = rng.random((n, num_labels))
    # Positives more likely where the probability is high, so F1 is far from both 0 and 1.
    references = (rng.random((n, num_labels)) < 0.3 + 0.4 * probabilities).astype(np.int64)
    references = _with_missing(rng, references)
    references[:, 4] = -1
    return probabilities, references, [0.5, 0.3, 0.7, 0.5][seed % 4]


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_f1_matches_sklearn(metric, seed):
    probabilities, references, threshold = _random_multilabel(seed)
    predicted = (probabilities >= threshold).astype(np.int64)

    out = metric("multilabel_f1").compute(predictions=probabilities, references=references, threshold=threshold)

    expected = []
    for j in range(references.shape[1]):
        known = references[:, j] != -1
        expected.append(f1_score(references[known, j], predicted[known, j]) if known.any() else np.nan)
    np.testing.assert_allclose(out["f1"], expected, atol=1e-12)
    assert np.isnan(out["f1"][4])
    assert out["f1_mean"] == pytest.approx(np.nanmean(expected), abs=1e-12)
    # With every label known the per-label F1 is sklearn's multilabel `average=None`.
    full = np.where(references == -1, 0, references)
    full_out = metric("multilabel_f1").compute(predictions=probabilities, references=full, threshold=threshold)
    np.testing.assert_allclose(full_out["f1"], f1_score(full, predicted, average=None, zero_division=0.0), atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_accuracy_matches_sklearn(metric, seed):
    probabilities, references, threshold = _random_multilabel(seed, num_labels=40)
    predicted = (probabilities >= threshold).astype(np.int64)

    out = metric("multilabel_accuracy").compute(predictions=probabilities, references=references, threshold=threshold)

    expected = []
    for j in range(references.shape[1]):
        known = references[:, j] != -1
        expected.append(accuracy_score(references[known, j], predicted[known, j]) if known.any() else np.nan)
    np.testing.assert_allclose(out["accuracy"], expected, atol=1e-12)
    assert np.isnan(out["accuracy"][4])
    assert out["accuracy_mean"] == pytest.approx(np.nanmean(expected), abs=1e-12)


def test_multilabel_edge_cases(metric):
    f1, accuracy = metric("multilabel_f1"), metric("multilabel_accuracy")
    references = np.array([[1, 0, -1], [0, 1, -1], [1, 1, -1]])
    perfect = f1.compute(predictions=np.clip(references, 0, 1), references=references)
    assert perfect["f1"][:2] == [1.0, 1.0] and np.isnan(perfect["f1"][2]) and perfect["f1_mean"] == 1.0
    perfect = accuracy.compute(predictions=np.clip(references, 0, 1), references=references)
    assert perfect["accuracy"][:2] == [1.0, 1.0] and np.isnan(perfect["accuracy"][2])
    assert perfect["accuracy_mean"] == 1.0

    # A probability equal to the threshold is a positive prediction.
    at_threshold = {"predictions": [[0.5, 0.3], [0.2, 0.3]], "references": [[1, 1], [0, 0]], "threshold": 0.5}
    assert f1.compute(**at_threshold)["f1"] == [1.0, 0.0]
    assert accuracy.compute(**at_threshold)["accuracy"] == [1.0, 0.5]

    all_missing = f1.compute(predictions=[[1, 0], [0, 1]], references=[[-1, -1], [-1, -1]])
    assert np.isnan(all_missing["f1"]).all() and np.isnan(all_missing["f1_mean"])

    # Label 0 is known but never positive nor predicted (F1 = 0/0): sklearn's zero_division, NaN leaves the mean.
    predictions, references = [[0, 1], [0, 0]], [[0, 1], [0, 0]]
    for zero_division in (0.0, 1.0):
        out = f1.compute(predictions=predictions, references=references, zero_division=zero_division)
        expected = f1_score(references, predictions, average=None, zero_division=zero_division)
        assert out["f1"] == expected.tolist() and out["f1_mean"] == expected.mean()
    out = f1.compute(predictions=predictions, references=references, zero_division=float("nan"))
    assert np.isnan(out["f1"][0]) and out["f1_mean"] == 1.0


def test_multilabel_rejects_logits_and_bad_references(metric):
    for name in ("multilabel_f1", "multilabel_accuracy"):
        with pytest.raises(ValueError, match="apply a sigmoid to logits first"):
            metric(name).compute(predictions=[[2.3, -1.0]], references=[[1, 0]])
        with pytest.raises(ValueError, match=r"references: expected 1 \(present\), 0 \(absent\) or -1 .*got \[2\]"):
            metric(name).compute(predictions=[[1, 0]], references=[[2, 0]])
        with pytest.raises(ValueError, match=r"same shape \(n, L\), got \(1, 2\) and \(1, 3\)"):
            metric(name).compute(predictions=[[1, 0]], references=[[1, 0, 1]])


# ---------------------------------------------------------------------------------------------------------------
# regression_mae


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_mae_matches_sklearn(metric, seed):
    rng = np.random.default_rng(seed)
    predictions = rng.normal(scale=30.0, size=(250, 3))
    references = _with_missing(rng, rng.normal(scale=30.0, size=(250, 3)), missing=np.nan)
    references[:, 1] = np.nan  # a column with no known reference

    out = metric("regression_mae").compute(predictions=predictions, references=references)

    expected = []
    for j in range(3):
        known = ~np.isnan(references[:, j])
        expected.append(mean_absolute_error(references[known, j], predictions[known, j]) if known.any() else np.nan)
    np.testing.assert_allclose(out["mae"], expected, atol=1e-9)
    assert np.isnan(out["mae"][1])
    assert out["mae_mean"] == pytest.approx(np.nanmean(expected), abs=1e-9)
    # One value per sample, given as (n,).
    single = metric("regression_mae").compute(predictions=predictions[:, 0], references=references[:, 0])
    assert single["mae"] == pytest.approx([expected[0]], abs=1e-9) and single["mae_mean"] == pytest.approx(expected[0])


def test_regression_mae_edge_cases(metric):
    mae = metric("regression_mae")
    values = np.array([[30.5, -12.0, 3.25], [0.0, 89.0, -45.0]])
    assert mae.compute(predictions=values, references=values) == {"mae": [0.0, 0.0, 0.0], "mae_mean": 0.0}
    all_missing = mae.compute(predictions=[1.0, 2.0], references=[float("nan"), float("nan")])
    assert np.isnan(all_missing["mae"][0]) and np.isnan(all_missing["mae_mean"])
    # A NaN prediction where the reference is missing is ignored; where it is known it is an error.
    out = mae.compute(predictions=[float("nan"), 2.0], references=[float("nan"), 5.0])
    assert out == {"mae": [3.0], "mae_mean": 3.0}
    with pytest.raises(ValueError, match="predictions: NaN or infinite value where the reference is known"):
        mae.compute(predictions=[float("nan"), 2.0], references=[1.0, 5.0])


# ---------------------------------------------------------------------------------------------------------------
# compute_task_metrics


def _random_task_batch(seed: int, n: int = 120):
    """Model-like outputs and labels for the five default tasks, with missing labels."""
    rng = np.random.default_rng(seed)
    predictions = {
        "expression": rng.normal(size=(n, 7)),
        "au": rng.normal(size=(n, 15)),
        "attributes": rng.normal(size=(n, 40)),
        "age": rng.uniform(0, 90, size=n),
        "head_pose": rng.normal(scale=30.0, size=(n, 3)),
    }
    references = {
        "expression": _with_missing(rng, rng.integers(0, 7, n)),
        "au": _with_missing(rng, rng.integers(0, 2, (n, 15))),
        "attributes": rng.integers(0, 2, (n, 40)),
        "age": _with_missing(rng, rng.uniform(0, 90, size=n), missing=np.nan),
        "head_pose": _with_missing(rng, rng.normal(scale=30.0, size=(n, 3)), missing=np.nan),
    }
    references["au"][:, AU_NAMES.index("AU9")] = -1  # e.g. a BP4D batch: DISFA's AU9 is not coded
    return predictions, references


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_compute_task_metrics_matches_sklearn(seed):
    predictions, references = _random_task_batch(seed)
    out = compute_task_metrics(default_tasks(), predictions, references)

    expression = references["expression"] != -1
    y_true, y_pred = references["expression"][expression], predictions["expression"][expression].argmax(axis=1)
    assert out["expression/accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert out["expression/mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    recall = recall_score(y_true, y_pred, labels=range(7), average=None)
    assert [out[f"expression/class_accuracy/{name}"] for name in EXPRESSION_NAMES] == pytest.approx(recall)

    au_f1 = {}
    for j, name in enumerate(AU_NAMES):
        known = references["au"][:, j] != -1
        if known.any():
            au_f1[name] = f1_score(references["au"][known, j], predictions["au"][known, j] > 0)  # sigmoid >= 0.5
    assert "au/f1/AU9" not in out and "au/accuracy/AU9" not in out
    reported_f1 = {key.removeprefix("au/f1/"): value for key, value in out.items() if key.startswith("au/f1/")}
    assert reported_f1 == pytest.approx(au_f1)
    assert out["au/f1_mean"] == pytest.approx(np.mean(list(au_f1.values())))
    attribute_accuracy = (references["attributes"] == (predictions["attributes"] > 0)).mean(axis=0)
    assert out["attributes/accuracy/Smiling"] == pytest.approx(attribute_accuracy[31])
    assert out["attributes/accuracy_mean"] == pytest.approx(attribute_accuracy.mean())

    age = ~np.isnan(references["age"])
    assert out["age/mae"] == pytest.approx(mean_absolute_error(references["age"][age], predictions["age"][age]))
    pose_mae = []
    for j, name in enumerate(HEAD_POSE_NAMES):
        known = ~np.isnan(references["head_pose"][:, j])
        pose_mae.append(mean_absolute_error(references["head_pose"][known, j], predictions["head_pose"][known, j]))
        assert out[f"head_pose/mae/{name}"] == pytest.approx(pose_mae[-1])
    assert out["head_pose/mae_mean"] == pytest.approx(np.mean(pose_mae))

    expected_keys = (
        {"expression/accuracy", "expression/mean_class_accuracy", "age/mae", "head_pose/mae_mean"}
        | {f"expression/class_accuracy/{name}" for name in EXPRESSION_NAMES}
        | {f"au/{m}" for m in ("f1_mean", "accuracy_mean")}
        | {f"au/{m}/{name}" for m in ("f1", "accuracy") for name in au_f1}
        | {f"attributes/{m}" for m in ("f1_mean", "accuracy_mean")}
        | {f"attributes/{m}/{name}" for m in ("f1", "accuracy") for name in default_tasks()[2]["labels"]}
        | {f"head_pose/mae/{name}" for name in HEAD_POSE_NAMES}
    )
    assert set(out) == expected_keys
    assert all(isinstance(v, float) for v in out.values())


def test_compute_task_metrics_skips_unlabelled_tasks():
    predictions, references = _random_task_batch(0)
    references["expression"][:] = -1
    references["age"][:] = np.nan
    del references["head_pose"]  # no labels at all for this task in the batch
    out = compute_task_metrics(default_tasks(), predictions, references)
    assert {key.split("/")[0] for key in out} == {"au", "attributes"}

    perfect = {
        "expression": np.eye(7)[[3, 6]] * 5.0,
        "au": np.array([[9.0, -9.0] * 7 + [9.0]] * 2),
        "age": np.array([31.0, 64.0]),
    }
    labels = {
        "expression": np.array([3, 6]),
        "au": (perfect["au"] > 0).astype(int),
        "age": np.array([[31.0], [64.0]]),
    }
    out = compute_task_metrics([t for t in default_tasks() if t["name"] in perfect], perfect, labels)
    assert out["expression/accuracy"] == out["expression/mean_class_accuracy"] == 1.0
    assert out["au/accuracy_mean"] == 1.0 and out["age/mae"] == 0.0
    # AUs that are never positive (0/0) get F1 0 like sklearn; the positive ones are perfect.
    assert out["au/f1/AU1"] == 1.0 and out["au/f1/AU2"] == 0.0


def test_compute_task_metrics_rejects_bad_input():
    tasks = default_tasks()
    predictions, references = _random_task_batch(1, n=8)
    with pytest.raises(ValueError, match=r"references: unknown task\(s\) \['expresion'\]"):
        compute_task_metrics(tasks, predictions, {"expresion": references["expression"]})
    with pytest.raises(ValueError, match=r"predictions: task 'au' has labelled samples but no predictions"):
        compute_task_metrics(tasks, {"expression": predictions["expression"]}, references)
    with pytest.raises(ValueError, match=r"expected predictions of shape \(n, 15\).*got predictions \(8, 14\)"):
        compute_task_metrics(tasks, {**predictions, "au": predictions["au"][:, :14]}, references)
    with pytest.raises(ValueError, match=r"expected references of shape \(8, 3\).*got \(8,\)"):
        compute_task_metrics(tasks, predictions, {**references, "head_pose": references["head_pose"][:, 0]})
    with pytest.raises(ValueError, match="pass the expectation of the predicted distribution, not its bins"):
        compute_task_metrics(tasks, {**predictions, "age": np.zeros((8, 101))}, references)
    with pytest.raises(ValueError, match="unknown kind 'ordinal'"):
        compute_task_metrics([{"name": "x", "kind": "ordinal", "labels": ["a"]}], {}, {"x": np.zeros(2)})
