# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Face augmentation: flips and rotations carry the pose with them, crops stay in range, everything is seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from modeling_qface.model.head_pose_qface import rotate_pose_in_plane
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.training.augment import FaceAugment, flip_labels, random_resized_crop_box, rotate_labels

AU = [1, 0, -1, 1, 0, 0, 1, -1, 0, 1, 0, 0, 1, 1, 0]
ATTRIBUTES = [1, 0] * 20
LABELS = {"expression": 3, "au": AU, "attributes": ATTRIBUTES, "age": 37.5, "head_pose": [12.5, -7.25, 30.0]}


def face(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def no_jitter(**overrides) -> FaceAugment:
    settings = {
        "crop_scale": (1.0, 1.0),
        "crop_ratio": (0.1, 10.0),
        "flip": 0.0,
        "brightness": 0.0,
        "contrast": 0.0,
        "saturation": 0.0,
    }
    return FaceAugment(**{**settings, **overrides})


def test_flip_negates_yaw_and_roll_and_keeps_every_other_label():
    flipped = flip_labels(LABELS)
    assert flipped["head_pose"] == [-12.5, -7.25, -30.0]  # yaw, pitch, roll: pitch keeps its sign
    assert flipped["expression"] == 3 and flipped["au"] == AU and flipped["attributes"] == ATTRIBUTES
    assert flipped["age"] == 37.5
    assert LABELS["head_pose"] == [12.5, -7.25, 30.0]  # the input is not modified
    assert flip_labels(flipped) == LABELS
    assert flip_labels({**LABELS, "head_pose": None})["head_pose"] is None  # no pose label: nothing to flip


def test_flipped_sample_is_the_mirror_image_with_flipped_labels():
    image = face()
    out, labels = no_jitter(flip=1.0)(image, LABELS, np.random.default_rng(0))
    assert np.array_equal(np.asarray(out), np.asarray(ImageOps.mirror(image)))
    assert labels["head_pose"] == [-12.5, -7.25, -30.0] and labels["au"] == AU
    same, labels = no_jitter(flip=0.0)(image, LABELS, np.random.default_rng(0))
    assert np.array_equal(np.asarray(same), np.asarray(image)) and labels == LABELS


def test_flip_probability_is_respected():
    augment = no_jitter(flip=0.5)
    flips = sum(augment(face(8, 8), LABELS, np.random.default_rng(seed))[1]["head_pose"][0] < 0 for seed in range(400))
    assert 160 < flips < 240


@pytest.mark.parametrize("size", [(48, 40), (40, 48), (100, 100)])
def test_random_resized_crop_boxes_stay_inside_with_the_requested_area_and_ratio(size):
    width, height = size
    rng = np.random.default_rng(1)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(width, height, (0.7, 0.9), (0.8, 1.25), rng)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        w, h = right - left, bottom - top
        # Rounding to whole pixels moves the area and ratio by at most about one pixel's worth.
        assert 0.7 - 2.5 / min(size) <= w * h / (width * height) <= 0.9 + 2.5 / min(size)
        assert 0.8 - 1.5 / h <= w / h <= 1.25 + 1.5 / h


def test_random_resized_crop_falls_back_to_a_centred_box_of_an_allowed_ratio():
    # A full-area crop of ratio >= 2 cannot fit in a square: the fallback is the centred 2:1 box.
    assert random_resized_crop_box(40, 40, (1.0, 1.0), (2.0, 3.0), np.random.default_rng(0)) == (0, 10, 40, 30)
    assert random_resized_crop_box(40, 40, (1.0, 1.0), (1.0, 1.0), np.random.default_rng(0)) == (0, 0, 40, 40)


def test_colour_jitter_changes_brightness_within_its_range():
    image = Image.new("RGB", (16, 16), (100, 120, 140))
    means = []
    for seed in range(50):
        out, _ = no_jitter(brightness=0.3)(image, LABELS, np.random.default_rng(seed))
        means.append(np.asarray(out, dtype=np.float64).mean())
    base = np.asarray(image, dtype=np.float64).mean()
    assert min(means) >= base * 0.7 - 1 and max(means) <= base * 1.3 + 1
    assert max(means) - min(means) > base * 0.2  # it does vary


def test_augmentation_is_a_function_of_the_seed_and_feeds_the_inference_processor(tiny_config):
    augment = FaceAugment()
    image = face(60, 52)
    first = augment(image, LABELS, np.random.default_rng([0, 5, 3]))
    again = augment(image, LABELS, np.random.default_rng([0, 5, 3]))
    other = augment(image, LABELS, np.random.default_rng([0, 5, 4]))
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0])) and first[1] == again[1]
    assert first[0].size != other[0].size or not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))
    pixels = build_image_processor(tiny_config)([first[0]], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32) and math.isfinite(pixels.abs().max().item())


def test_rotation_turns_the_image_and_the_pose_label_by_the_same_rotation():
    # A bright dot right of the centre: after an anticlockwise rotation by a it sits at angle a above the x axis.
    image = np.zeros((65, 65, 3), np.uint8)
    image[31:34, 51:54] = 255
    augment = no_jitter(rotation=40.0)
    seen = set()
    for seed in range(6):
        rotated, labels = augment(Image.fromarray(image), LABELS, np.random.default_rng(seed))
        _, frontal = augment(Image.fromarray(image), {"head_pose": [0.0, 0.0, 0.0]}, np.random.default_rng(seed))
        degrees = -frontal["head_pose"][2]  # a frontal face's roll changes by minus the rotation
        assert abs(degrees) <= 40.0 and frontal["head_pose"][:2] == pytest.approx([0.0, 0.0], abs=1e-9)
        seen.add(round(degrees))
        rows, cols = np.nonzero(np.asarray(rotated)[..., 0] > 128)
        angle = math.degrees(math.atan2(-(rows.mean() + 0.5 - 32.5), cols.mean() + 0.5 - 32.5))
        assert angle == pytest.approx(degrees, abs=2.0)
        assert labels["head_pose"] == pytest.approx(rotate_pose_in_plane(LABELS["head_pose"], degrees).tolist())
        assert {k: v for k, v in labels.items() if k != "head_pose"} == {
            k: v for k, v in LABELS.items() if k != "head_pose"
        }
    assert len(seen) == 6  # different seeds, different angles
    # The label follows exactly: rotating back and forth gives the label back, and no pose stays no pose.
    there = rotate_labels(LABELS, 25.0)
    assert rotate_labels(there, -25.0)["head_pose"] == pytest.approx(LABELS["head_pose"])
    assert rotate_labels({**LABELS, "head_pose": None}, 25.0)["head_pose"] is None
