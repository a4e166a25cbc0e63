# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Learning: the tiny recipe, trained on fixture images that show their labels, beats every task's trivial baseline
on held-out data, with activation checkpointing off and on.

The images (`tests/fixtures/signal_images.py`) draw each label so that it survives the training augmentation: a hue
per expression, a disc whose radius is the age, AU and attribute bits as coloured concentric zones, the head's three
axes. A model that learns nothing scores like its trivial baseline, computed here from the training rows:

    expression   accuracy of always answering the training split's majority class
    au           mean per-AU accuracy of answering each AU's training majority (DISFA's 8 labelled AUs)
    attributes   the same over CelebA's 40 attributes
    age          MAE of answering the training mean age
    head_pose    MAE of answering the training mean, per angle (yaw, pitch, roll)

The held-out sets: RAF-DB test, CelebA test, AFLW2000 (the recipe's), DISFA fold 1's test subjects and a UTKFace test
part carved off with `split_fractions` (UTKFace trains on the rest).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.fixtures.train_runs import read_jsonl, run_in_process, train_args
from tests.fixtures.training_data import LEARNING_SIZES, write_training_data

UTKFACE_OPTIONS = {"split_fractions": {"train": 0.75, "test": 0.25}}
DISFA_OPTIONS = {"fold": 1}
# The recipe's sources, with UTKFace training on its "train" part only, and the extra held-out sets.
TRAIN_UTKFACE = {"name": "utkface", "root": "UTKFace", "split": "train", "share": 0.125, "options": UTKFACE_OPTIONS}
EVAL_SOURCES = [
    {"name": "raf_db", "root": "basic", "split": "test"},
    {"name": "celeba", "root": "celeba", "split": "test"},
    {"name": "aflw2000", "root": "AFLW2000", "split": "test"},
    {"name": "disfa", "root": "disfa", "split": "test", "options": DISFA_OPTIONS},
    {"name": "utkface", "root": "UTKFace", "split": "test", "options": UTKFACE_OPTIONS},
]
# (held-out set, logged metric, training source, split, options): what each check compares.
CHECKS = {
    "expression": ("raf_db_test", "expression/accuracy", ("raf_db", "basic", "trainval", {})),
    "au": ("disfa_test", "au/accuracy_mean", ("disfa", "disfa", "train", DISFA_OPTIONS)),
    "attributes": ("celeba_test", "attributes/accuracy_mean", ("celeba", "celeba", "train", {})),
    "age": ("utkface_test", "age/mae", ("utkface", "UTKFace", "train", UTKFACE_OPTIONS)),
    "yaw": ("aflw2000_test", "head_pose/mae/yaw", ("300w_lp", "300W_LP", "train", {})),
    "pitch": ("aflw2000_test", "head_pose/mae/pitch", ("300w_lp", "300W_LP", "train", {})),
    "roll": ("aflw2000_test", "head_pose/mae/roll", ("300w_lp", "300W_LP", "train", {})),
}
# Required margins. Accuracies: at least this far above the baseline's; errors: at most this fraction of it.
# Measured (seeds 0-2 of data and recipe): runs whose decoder learns scored expression 1.0 (baseline 0.11-0.16),
# AU >= 0.94 and attributes >= 0.86 (baselines 0.46-0.52), age MAE <= 0.22 and head pose MAE <= 0.72 x baseline;
# a decoder stuck near its initialisation scored expression <= 0.33, AU and attributes <= 0.14 above baseline and
# head pose 0.98-1.03 x baseline.
ACCURACY_GAIN = {"expression": 0.5, "au": 0.3, "attributes": 0.25}
ERROR_RATIO = {"age": 0.4, "yaw": 0.8, "pitch": 0.8, "roll": 0.8}
# One evaluation, at the end; no checkpoints or TensorBoard: only the learning is under test here.
RUN_SETTINGS = {
    "data__train__3": TRAIN_UTKFACE,
    "data__eval": EVAL_SOURCES,
    "eval__every_steps": None,
    "checkpoint__every_steps": None,
    "logging__tensorboard": False,
}


@pytest.fixture(scope="module")
def signal_data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("signal-data"), sizes=LEARNING_SIZES)["raf_db"].parent


def _rows(data_root, name, root, split, options) -> dict:
    """The prepared rows of one source (read from the cache the training run filled)."""
    from modeling_qface import load_preset
    from modeling_qface.model.face_alignment_qface import FaceCrop
    from modeling_qface.training.data import load_source

    face_crop = FaceCrop.from_config(load_preset("qface-tiny"))
    return load_source(name, data_root / root, split, face_crop=face_crop, crop_format="png", **options)[:]


def _labels(rows: dict, task: str) -> np.ndarray:
    if task in ("yaw", "pitch", "roll"):
        return np.array(rows["head_pose"], dtype=np.float64)[:, ("yaw", "pitch", "roll").index(task)]
    return np.array([np.nan if v is None else v for v in rows[task]], dtype=np.float64)


def baseline(task: str, train: np.ndarray, test: np.ndarray) -> float:
    """The trivial predictor's score on `test`, fitted on `train` (see the module docstring)."""
    if task == "expression":
        values, counts = np.unique(train[train >= 0], return_counts=True)
        return float(np.mean(test[test >= 0] == values[np.argmax(counts)]))
    if task in ("au", "attributes"):  # (n, labels), -1 missing; only the labels known in both splits count
        scores = []
        for j in range(train.shape[1]):
            known_train, known_test = train[train[:, j] >= 0, j], test[test[:, j] >= 0, j]
            if len(known_train) and len(known_test):
                majority = float(known_train.mean() >= 0.5)
                scores.append(np.mean(known_test == majority))
        return float(np.mean(scores))
    return float(np.mean(np.abs(test - np.mean(train))))


def learning_report(data_root, output) -> dict[str, tuple[float, float]]:
    """`{check: (the run's held-out metric, the trivial baseline)}` from a finished run's last evaluation."""
    evaluations = [r for r in read_jsonl(output / "logs" / "train.jsonl") if "loss" not in r]
    metrics = evaluations[-1]
    report = {}
    for task, (eval_set, metric, (name, root, split, options)) in CHECKS.items():
        eval_source = next(s for s in EVAL_SOURCES if f"{s['name']}_{s['split']}" == eval_set)
        test_rows = _rows(
            data_root, eval_source["name"], eval_source["root"], eval_source["split"], eval_source.get("options", {})
        )
        train_rows = _rows(data_root, name, root, split, options)
        report[task] = (
            metrics[f"eval/{eval_set}/{metric}"],
            baseline(task, _labels(train_rows, task), _labels(test_rows, task)),
        )
    return report


def failures(report: dict[str, tuple[float, float]]) -> list[str]:
    problems = []
    for task, (value, trivial) in report.items():
        if not math.isfinite(value):
            problems.append(f"{task}: {value}")
        elif task in ACCURACY_GAIN and value < trivial + ACCURACY_GAIN[task]:
            problems.append(f"{task}: {value:.3f} < baseline {trivial:.3f} + {ACCURACY_GAIN[task]}")
        elif task in ERROR_RATIO and value > ERROR_RATIO[task] * trivial:
            problems.append(f"{task}: {value:.2f} > {ERROR_RATIO[task]} x baseline {trivial:.2f}")
    return problems


def test_signal_images_follow_their_labels_under_flip_and_rotation():
    """The premise of the fixtures: mirroring an image gives the drawing of the flipped labels and rotating it the
    drawing of the rotated pose (`modeling_qface.training.augment`'s label rules), up to resampling."""
    from PIL import Image

    from modeling_qface.model.head_pose_qface import rotate_pose_in_plane
    from tests.fixtures import signal_images as draw

    rng = np.random.default_rng(0)
    for _ in range(4):
        yaw, pitch, roll = rng.uniform(-45, 45, 3)
        mirrored = draw.pose_image(yaw, pitch, roll)[:, ::-1].astype(int)
        assert np.abs(mirrored - draw.pose_image(-yaw, pitch, -roll)).mean() < 1.0
        degrees = rng.uniform(-15, 15)
        image = Image.fromarray(draw.pose_image(yaw, pitch, roll))
        rotated = np.asarray(image.rotate(degrees, resample=Image.Resampling.BILINEAR), dtype=int)
        expected = draw.pose_image(*rotate_pose_in_plane([yaw, pitch, roll], degrees))
        other = draw.pose_image(*rng.uniform(-45, 45, 3))
        inner = slice(12, 52)  # the rotation's black corners aside
        error = np.abs(rotated[inner, inner] - expected[inner, inner]).mean()
        assert error < 3.0 and error < np.abs(other[inner, inner].astype(int) - expected[inner, inner]).mean() / 3
    for bits in ([1, 0, 1, 1, 0, 0, 1, 0], [0] * 8, [1] * 8):
        pixels = draw.bits_image(bits).astype(int)
        assert np.abs(pixels - pixels[:, ::-1]).mean() < 1.0  # mirrored mark pairs: the drawing has no side
    assert len({draw.expression_image(k).tobytes() for k in range(7)}) == 7
    assert draw.age_radius(90) < draw.SIDE / 2


@pytest.mark.slow  # trains a tiny model for ~30 s
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "activation-checkpointing"])
def test_tiny_recipe_learns_every_task_beyond_its_trivial_baseline(tmp_path, signal_data, checkpointing):
    output = tmp_path / "run"
    run_in_process(train_args(signal_data, output, model__activation_checkpointing=checkpointing, **RUN_SETTINGS))
    report = learning_report(signal_data, output)
    table = "\n".join(f"{task:10s} {value:8.3f}  baseline {trivial:8.3f}" for task, (value, trivial) in report.items())
    print(f"\nheld-out metrics (activation checkpointing {checkpointing}):\n{table}")
    assert not failures(report), f"{failures(report)}\n{table}"
