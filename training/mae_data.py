# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Unlabelled images for MAE pretraining: where they come from, a header check, light augmentation, batching.

Three inputs give the same thing, an `ImageSource` (a length, a name per image, and a way to open it):
    an image folder         every image file below it, recursively (`find_image_files`)
    a `save_to_disk` folder a `datasets.Dataset` (or a DatasetDict and a split) with an image column
    a Q-Face data source    `training.data.load_source(name, root, split)`, its faces cut into the encoder's Q-Face
                            crop; its labels are ignored
Images are decoded lazily, one per `__getitem__`, so a dataset larger than memory is fine.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .augment import random_resized_crop_box

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# What PIL raises on an unreadable file: unknown format, truncated data, bad chunk, oversized image.
_PIL_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class BadImageError(ValueError):
    """An image that cannot be read; the message starts with the file (or dataset row) at fault."""


def find_image_files(folder: str | os.PathLike) -> list[Path]:
    """Every file below `folder` (recursively) whose extension is in `IMAGE_EXTENSIONS`, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{folder}: no images found (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return files


class ImageFiles:
    """Image files on disk, named by their path."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        return str(self.paths[index])

    def open(self, index: int) -> Image.Image:
        return Image.open(self.paths[index])


class DatasetImages:
    """The images of one column of a `datasets.Dataset`: an `Image` feature (bytes or path) or a path string.

    The column is read undecoded, so a bad image is named (`origin row i (file)`) instead of failing inside datasets;
    `path_column` names a string column holding each row's file when the images are stored as bytes (a prepared
    Q-Face source's `photo`).
    """

    def __init__(self, dataset: datasets.Dataset, column: str, origin: str, path_column: str | None = None):
        if column not in dataset.column_names:
            raise ValueError(f"{origin}: no image column {column!r}; columns are {dataset.column_names}")
        feature = dataset.features[column]
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
            raise ValueError(f"{origin}: column {column!r} is {feature}, expected an Image feature or file paths")
        if len(dataset) == 0:
            raise ValueError(f"{origin}: the dataset has no rows")
        self.path_column = path_column if path_column in dataset.column_names else None
        self.dataset = dataset.select_columns([column] + ([self.path_column] if self.path_column else []))
        self.column = column
        self.origin = origin

    def __len__(self) -> int:
        return len(self.dataset)

    def _cell(self, index: int) -> tuple[bytes | None, str | None]:
        cell = self.dataset[index][self.column]
        return (cell.get("bytes"), cell.get("path")) if isinstance(cell, dict) else (None, cell)

    def name(self, index: int) -> str:
        path = self._cell(index)[1] or (self.dataset[index][self.path_column] if self.path_column else None)
        return f"{self.origin} row {index}" + (f" ({path})" if path else "")

    def open(self, index: int) -> Image.Image:
        data, path = self._cell(index)
        if data is not None:
            return Image.open(io.BytesIO(data))
        if path is None:
            raise ValueError("the row holds neither image bytes nor a path")
        return Image.open(path)


ImageSource = ImageFiles | DatasetImages


def check_images(
    source: ImageSource, skip_bad_images: bool = False, show_progress: bool = False
) -> tuple[list[int], list[str]]:
    """Opens every image's header (PIL `verify`: format, size, PNG chunk checksums; no full decode).

    Returns the indices of the readable images and one message per unreadable one. Without `skip_bad_images`
    the first unreadable image raises `BadImageError`. A JPEG truncated after its header passes this check and is
    caught when decoded (see `load_rgb`).
    """
    good, bad = [], []
    # A bar only for folders big enough to take a while (about 0.1-1 ms per image).
    for index in tqdm(range(len(source)), desc="checking images", disable=not show_progress or len(source) < 5000):
        try:
            with source.open(index) as image:
                image.verify()
        except _PIL_ERRORS as error:
            message = f"{source.name(index)}: not a readable image ({error})"
            if not skip_bad_images:
                raise BadImageError(f"{message}; pass --skip-bad-images to leave unreadable images out") from None
            bad.append(message)
            continue
        good.append(index)
    if bad:
        logger.warning("skipped %d unreadable image(s) of %d; first: %s", len(bad), len(source), bad[0])
    if not good:
        raise ValueError(f"no readable images left ({len(bad)} unreadable; first: {bad[0]})")
    return good, bad


def load_rgb(source: ImageSource, index: int) -> Image.Image:
    """The image fully decoded as RGB; `BadImageError` naming it when it cannot be decoded."""
    try:
        with source.open(index) as image:
            return image.convert("RGB")
    except _PIL_ERRORS as error:
        raise BadImageError(f"{source.name(index)}: cannot decode image ({error})") from None


@dataclass
class RandomResizedCropFlip:
    """A random crop of `scale` x the image area and aspect ratio in `ratio`, then a horizontal flip with
    probability `flip_prob`; the image processor resizes the crop afterwards.

    The crop is `training.augment.random_resized_crop_box` (torchvision's `RandomResizedCrop` sampling), drawn from
    torch's RNG so `DataLoader` worker seeding makes it reproducible. Faces are pre-aligned crops, so
    the default scale keeps most of the face.
    """

    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in pixels."""
        # Seeded from torch's RNG, so DataLoader worker seeding keeps runs reproducible.
        rng = np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,))))
        return random_resized_crop_box(width, height, self.scale, self.ratio, rng)

    def __call__(self, image: Image.Image) -> Image.Image:
        image = image.crop(self.crop_box(*image.size))
        if torch.rand(1).item() < self.flip_prob:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


class MaeImageDataset(torch.utils.data.Dataset):
    """The images `indices` of `source` as RGB PIL images, augmented when `augment` is given.

    An image that fails to decode raises `BadImageError` naming it; with `skip_bad_images` it is logged and the
    next image in `indices` is returned instead (so batches keep their size).
    """

    def __init__(self, source: ImageSource, indices: Sequence[int], augment=None, skip_bad_images: bool = False):
        self.source = source
        self.indices = list(indices)
        self.augment = augment
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Image.Image:
        for attempt in range(min(len(self.indices), 10)):
            try:
                image = load_rgb(self.source, self.indices[(position + attempt) % len(self.indices)])
                break
            except BadImageError as error:
                if not self.skip_bad_images:
                    raise
                logger.warning("skipping %s", error)
        else:
            name = self.source.name(self.indices[position])
            raise BadImageError(f"{name}: this and the next 9 images are unreadable")
        return self.augment(image) if self.augment is not None else image


class ProcessorCollator:
    """`DataLoader` collate function: PIL images -> `{"pixel_values": (B, 3, H, W) float32}` via the processor."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.image_processor(images, return_tensors="pt")["pixel_values"]}
