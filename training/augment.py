# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Training augmentation for aligned face crops (PIL + numpy): random resized crop, label-aware horizontal flip,
colour jitter.

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
Random resized crop keeps every label: mild scale ranges move and zoom the face but do not rotate it, so the pose
angles stay (to first order) those of the original crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps


def flip_labels(labels: dict) -> dict:
    """The labels of the horizontally mirrored image (see the module docstring); other keys are copied."""
    out = dict(labels)
    pose = labels.get("head_pose")
    if pose is not None:
        yaw, pitch, roll = pose
        out["head_pose"] = [-yaw, pitch, -roll]
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
    """`(image, labels, rng) -> (image, labels)`: crop, flip, then brightness, contrast and saturation jitter.

    Args:
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

    def __call__(self, image: Image.Image, labels: dict, rng: np.random.Generator) -> tuple[Image.Image, dict]:
        image = image.convert("RGB")
        # Draws happen in a fixed order whatever is enabled, so changing one setting does not reshuffle the others.
        box = random_resized_crop_box(image.width, image.height, self.crop_scale, self.crop_ratio, rng)
        do_flip = rng.random() < self.flip
        factors = [rng.uniform(1 - x, 1 + x) for x in (self.brightness, self.contrast, self.saturation)]

        if box != (0, 0, image.width, image.height):
            image = image.crop(box)
        if do_flip:
            image = ImageOps.mirror(image)
            labels = flip_labels(labels)
        for enhancer, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors):
            if factor != 1.0:
                image = enhancer(image).enhance(factor)
        return image, labels


__all__ = ["FaceAugment", "flip_labels", "random_resized_crop_box"]
