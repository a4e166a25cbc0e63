# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Unlabelled images for MAE pretraining: where they come from, a header check, light augmentation, batching.

Three inputs give the same thing, an `ImageSource` (a length, a name per image, and a way to open it):
    an image folder         every image file below it, recursively (`find_image_files`)
    a `save_to_disk` folder a `datasets.Dataset` (or a DatasetDict and a split) with an image column
    a Q-Face data source    `modeling_qface.training.data.load_source(name, root, split)`, its faces cut into the encoder's Q-Face
                            crop; its labels are ignored
Images are decoded lazily, one per `__getitem__`, so a dataset larger than memory is fine.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .augment import random_resized_crop_box

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# What PIL raises on an unreadable file: unknown format, truncated data, bad chunk, oversized image.
_PIL_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class BadImageError(ValueError):
    """An image that cannot be read; the message starts with the file (or dataset row) at fault."""


SKIP_HINT = "pass --skip-bad-images to leave unreadable images out"
# How many images in a row `MaeImageDataset` tries before giving up on a draw.
MAX_DRAW_ATTEMPTS = 10


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
    """Opens every image's header (PIL `verify`: format, size, PNG chunk checksums up to the end of the file).

    `verify` does not read JPEG data, so a JPEG that does not end with its end-of-image marker (a truncated file)
    is fully decoded instead: the rare JPEG with bytes after the marker costs a decode, a truncated one is caught
    here rather than when training first draws it. What this cannot see (e.g. corrupt compressed data inside a
    PNG whose checksums match) is caught when decoded (see `MaeImageDataset`).

    Returns the indices of the readable images and one message per unreadable one. Without `skip_bad_images`
    the first unreadable image raises `BadImageError`.
    """
    good, bad = [], []
    # A bar only for folders big enough to take a while (about 0.1-1 ms per image).
    for index in tqdm(range(len(source)), desc="checking images", disable=not show_progress or len(source) < 5000):
        try:
            _check_image(source, index)
        except _PIL_ERRORS as error:
            message = f"{source.name(index)}: not a readable image ({error})"
            if not skip_bad_images:
                raise BadImageError(f"{message}; {SKIP_HINT}") from None
            bad.append(message)
            continue
        good.append(index)
    if bad:
        logger.warning("skipped %d unreadable image(s) of %d; first: %s", len(bad), len(source), bad[0])
    if not good:
        raise ValueError(f"no readable images left ({len(bad)} unreadable; first: {bad[0]})")
    return good, bad


def _check_image(source: ImageSource, index: int) -> None:
    """Raises one of `_PIL_ERRORS` when image `index` is unreadable (see `check_images`)."""
    with source.open(index) as image:
        if image.format == "JPEG" and not _ends_with_jpeg_marker(image.fp):
            image.load()  # a full decode: the only way to tell a truncated JPEG from one with trailing bytes
        else:
            image.verify()


def _ends_with_jpeg_marker(handle) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (FF D9), ignoring zero padding; the position of
    `handle` is kept."""
    position = handle.tell()
    try:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 1024))
        tail = handle.read()
    finally:
        handle.seek(position)
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9")


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

    The crop is `modeling_qface.training.augment.random_resized_crop_box` (torchvision's `RandomResizedCrop` sampling), drawn from
    the `rng` given (`MaeImageDataset` seeds one per sample, so a resumed run augments exactly as an uninterrupted
    one) or, without one, from a generator seeded by torch's RNG. Faces are pre-aligned crops, so the default scale
    keeps most of the face.
    """

    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5

    def crop_box(self, width: int, height: int, rng: np.random.Generator | None = None) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in pixels."""
        rng = rng if rng is not None else _torch_seeded_rng()
        return random_resized_crop_box(width, height, self.scale, self.ratio, rng)

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        rng = rng if rng is not None else _torch_seeded_rng()
        image = image.crop(self.crop_box(*image.size, rng))
        if rng.random() < self.flip_prob:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


def _torch_seeded_rng() -> np.random.Generator:
    # Seeded from torch's RNG, so `torch.manual_seed` (and DataLoader worker seeding) makes the draws reproducible.
    return np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,))))


class EpochBatchSampler:
    """The batches of one epoch, as `DataLoader(batch_sampler=...)`: a seeded permutation of `size` positions per
    epoch, cut into batches of `batch_size` (the last one may be short).

    Each key is `(position, epoch)`: `MaeImageDataset` seeds that sample's augmentation with it. The order depends
    on nothing but `seed` and the epoch, so `start(epoch, skip)` puts a resumed run exactly where a checkpoint was
    taken, without drawing the skipped images. Call `start` before iterating each epoch (Accelerate shards the
    batches among processes: batch i goes to process i % num_processes). There is deliberately no `set_epoch`:
    Accelerate would call it with its own count, which restarts at 0 in a resumed run.
    """

    drop_last = False  # read by Accelerate's BatchSamplerShard

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.skip = 0, 0

    def start(self, epoch: int, skip: int = 0) -> None:
        """The next iteration yields epoch `epoch`'s batches after its first `skip` ones."""
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist()
        for first in range(self.skip * self.batch_size, self.size, self.batch_size):
            yield [(position, self.epoch) for position in order[first : first + self.batch_size]]


class MaeSample(NamedTuple):
    """What `MaeImageDataset` gives for one draw.

    image: the (augmented) RGB image, None when the draw failed.
    unreadable: `(name, message)` of each image that failed to decode in this draw (found for the first time in
        this process; the DataLoader worker that found it skips it without decoding from then on).
    error: why the draw failed (an unreadable image without `skip_bad_images`, or too many in a row), else None.
    """

    image: Image.Image | None
    unreadable: tuple[tuple[str, str], ...] = ()
    error: str | None = None


class MaeImageDataset(torch.utils.data.Dataset):
    """The images `indices` of `source` as RGB PIL images, augmented when `augment` is given.

    A key is a position in `indices`, or `(position, epoch)` as `EpochBatchSampler` yields them; the augmentation
    of a key is seeded by `(seed, epoch, position)`. Problems are returned, not raised (see `MaeSample`): raised in
    a DataLoader worker, an error would reach the training loop wrapped in a worker traceback. An image that fails
    to decode is reported; with `skip_bad_images` the next image in `indices` is taken instead (so batches keep
    their size), without it the draw fails naming the image.
    """

    def __init__(
        self, source: ImageSource, indices: Sequence[int], augment=None, skip_bad_images: bool = False, seed: int = 0
    ):
        self.source = source
        self.indices = list(indices)
        self.augment = augment
        self.skip_bad_images = skip_bad_images
        self.seed = seed
        self.known_bad: set[int] = set()  # this process's unreadable images: reported once, never decoded again

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> MaeSample:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        found = []
        for attempt in range(min(len(self.indices), MAX_DRAW_ATTEMPTS)):
            index = self.indices[(position + attempt) % len(self.indices)]
            if index in self.known_bad:
                continue
            try:
                image = load_rgb(self.source, index)
            except BadImageError as error:
                self.known_bad.add(index)
                found.append((self.source.name(index), str(error)))
                if not self.skip_bad_images:
                    return MaeSample(None, tuple(found), f"{error}; {SKIP_HINT}")
                continue
            if self.augment is not None:
                image = self.augment(image, np.random.default_rng([self.seed, epoch, position]))
            return MaeSample(image, tuple(found))
        name = self.source.name(self.indices[position])
        return MaeSample(None, tuple(found), f"{name}: this and the next {MAX_DRAW_ATTEMPTS - 1} images are unreadable")


class ProcessorCollator:
    """`DataLoader` collate function: `MaeSample`s -> `{"pixel_values": (B, 3, H, W) float32, "unreadable": [(name,
    message), ...], "error": str | None}` via the processor; `pixel_values` is None when a draw failed."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, samples: list[MaeSample]) -> dict:
        unreadable = [problem for sample in samples for problem in sample.unreadable]
        error = next((sample.error for sample in samples if sample.error is not None), None)
        pixel_values = None
        if error is None:
            images = [sample.image for sample in samples]
            pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "unreadable": unreadable, "error": error}


class UnreadableImages:
    """The images that failed to decode during training, by name: each is warned about and counted once, however
    often it is drawn, by however many DataLoader workers."""

    def __init__(self, known: dict[str, str] | None = None):
        self.found: dict[str, str] = dict(known or {})

    def add(self, problems) -> None:
        """Takes a batch's `unreadable` pairs; logs a warning for each image not seen before."""
        for name, message in problems:
            if name not in self.found:
                self.found[name] = message
                logger.warning("skipping an unreadable image (reported once, skipped whenever drawn): %s", message)
