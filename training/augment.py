# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Training augmentation for Q-Face crops (PIL + numpy): in-plane rotation and horizontal flip with the labels
following, random resized crop, colour jitter.

The output is a PIL image of any size: the model's image processor (`build_image_processor`, the same one used at
inference) then resizes it to the encoder's input size and normalises it.

Horizontal flip and the labels (the mirror image of a face is another valid face; only labels with a side change):
    head_pose   [yaw, pitch, roll] in degrees -> [-yaw, pitch, -roll]. Turning left becomes turning right and a
                clockwise tilt becomes anticlockwise; looking up or down does not change.
    expression  unchanged: the seven basic expressions have no side.
    au          unchanged: BP4D and DISFA code each AU for the whole face (AU12 = lip corner puller on either side),
                not per side, so a mirrored face shows the same AUs.
    attributes  unchanged: none of CelebA's 40 attributes names a side (no "left eye closed").
    age         unchanged.
In-plane rotation by `a` degrees (anticlockwise as seen) about the crop's centre changes only the pose, and exactly:
    head_pose   rotated as a rotation, `head_pose_qface.rotate_pose_in_plane(pose, a)` (a turned head's yaw and pitch
                change too, not just its roll); the corners the rotation uncovers are black, as outside a photo.
Random resized crop keeps every label: it moves and zooms the face without rotating it, and a head's rotation does
not depend on where it sits in the frame (the datasets' weak-perspective labels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from modeling_qface.model.head_pose_qface import rotate_pose_in_plane


def flip_labels(labels: dict) -> dict:
    """The labels of the horizontally mirrored image (see the module docstring); other keys are copied."""
    out = dict(labels)
    pose = labels.get("head_pose")
    if pose is not None:
        yaw, pitch, roll = pose
        out["head_pose"] = [-yaw, pitch, -roll]
    return out


def rotate_labels(labels: dict, degrees: float) -> dict:
    """The labels of the image rotated anticlockwise (as seen) by `degrees`; other keys are copied."""
    out = dict(labels)
    pose = labels.get("head_pose")
    if pose is not None:
        out["head_pose"] = [float(v) for v in rotate_pose_in_plane(pose, degrees)]
    return out


def random_resized_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A crop box `(left, top, right, bottom)` covering a `scale` fraction of the area with aspect ratio
    (width / height) in `ratio` (log-uniform), at a uniform position. Falls back to the largest centred box of a
    ratio within range when ten draws do not fit (as torchvision's `RandomResizedCrop` does)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    w, h = width, height
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


@dataclass
class FaceAugment:
    """`(image, labels, rng) -> (image, labels)`: rotate, crop, flip, then brightness, contrast and saturation jitter.

    Args:
        rotation: in-plane rotation angles are drawn uniformly from `[-rotation, rotation]` degrees; 0 disables it.
        crop_scale: area fraction range of the random resized crop; `(1, 1)` disables cropping.
        crop_ratio: aspect ratio range of the crop.
        flip: probability of a horizontal flip (labels follow, see `flip_labels`).
        brightness, contrast, saturation: each factor is drawn from `[1 - x, 1 + x]`; 0 disables it.
    """

    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.0 / 0.9)
    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    rotation: float = 0.0

    def __call__(self, image: Image.Image, labels: dict, rng: np.random.Generator) -> tuple[Image.Image, dict]:
        image = image.convert("RGB")
        # Draws happen in a fixed order whatever is enabled, so changing one setting does not reshuffle the others.
        box = random_resized_crop_box(image.width, image.height, self.crop_scale, self.crop_ratio, rng)
        do_flip = rng.random() < self.flip
        factors = [rng.uniform(1 - x, 1 + x) for x in (self.brightness, self.contrast, self.saturation)]
        degrees = rng.uniform(-self.rotation, self.rotation)  # drawn last: older settings keep their draws

        if degrees:
            image = image.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
            labels = rotate_labels(labels, degrees)
        if box != (0, 0, image.width, image.height):
            image = image.crop(box)
        if do_flip:
            image = ImageOps.mirror(image)
            labels = flip_labels(labels)
        for enhancer, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors):
            if factor != 1.0:
                image = enhancer(image).enhance(factor)
        return image, labels


__all__ = ["FaceAugment", "flip_labels", "random_resized_crop_box", "rotate_labels"]
