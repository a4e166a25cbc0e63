# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""RAF-DB basic emotion subset (Li et al., CVPR 2017), as distributed.

Layout (`root` is the `basic/` folder or its parent):
    EmoLabel/list_patition_label.txt    lines `train_00001.jpg 5` (label ids 1..7, RAF-DB's spelling of the name)
    Image/aligned/train_00001_aligned.jpg
    Image/original/train_00001.jpg
    Annotation/manual/train_00001_manu_attri.txt    optional: lines 1-5 `x y` (tab-separated) of the 5 manually
        placed landmarks on the original image (left eye, right eye, nose tip, left and right mouth corner; image-left
        first), then the gender / race / age codes

Face hints: with `aligned=False` (the original images) the manual 5 points become `face_landmarks`; an image without
its annotation file gets no hint (the detector runs). The aligned 100x100 faces get no hint either.

Label id k (1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral) becomes class index k - 1,
which is `EXPRESSION_NAMES` order. The official split is the file-name prefix: 12,271 `train_` and 3,068 `test_`
images.

Splits:
    "trainval": the official training set (train + val). Train on it for numbers comparable to papers.
    "train" / "val": the official training set cut in two, deterministically: `val_fraction` of the training
        images (ordered by a SHA-256 of `seed` and the file name, see `splits.carve`) form "val".
    "test": the official test set (3,068).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from modeling_qface.model.configuration_qface import EXPRESSION_NAMES

from .base import SourceAdapter, file_stat, find_file, read_lines
from .errors import DataFormatError, LoadReport
from .landmarks import five_points
from .schema import ORIGIN_KEY, empty_row
from .splits import carve

LABEL_FILE = "EmoLabel/list_patition_label.txt"
MANUAL_SUFFIX = "_manu_attri.txt"
_NAME = re.compile(r"^(train|test)_\d+\.jpg$")


class RafDbSource(SourceAdapter):
    """RAF-DB basic. Options: `aligned` (bool, default True: the 100x100 aligned faces), `val_fraction`
    (default 0.1), `seed` (default 0)."""

    name = "raf_db"
    splits = ("train", "val", "trainval", "test")

    def __init__(self, root, aligned: bool = True, val_fraction: float = 0.1, seed: int = 0):
        super().__init__(root)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"raf_db: val_fraction must be in [0, 1), got {val_fraction!r}")
        self.options = {"aligned": aligned, "val_fraction": val_fraction, "seed": seed}
        self.label_file = find_file(self.root, [LABEL_FILE, f"basic/{LABEL_FILE}"], "RAF-DB label file")
        self.image_root = self.label_file.parent.parent / "Image"
        self.manual_dir = self.label_file.parent.parent / "Annotation" / "manual"

    def image_path(self, file_name: str) -> Path:
        if self.options["aligned"]:
            return self.image_root / "aligned" / file_name.replace(".jpg", "_aligned.jpg")
        return self.image_root / "original" / file_name

    def manual_file(self, file_name: str) -> Path:
        return self.manual_dir / file_name.replace(".jpg", MANUAL_SUFFIX)

    def fingerprint_inputs(self, split: str) -> list:
        inputs = [file_stat(self.label_file)]
        if not self.options["aligned"] and self.manual_dir.is_dir():
            inputs += [file_stat(p) for p in sorted(self.manual_dir.glob(f"*{MANUAL_SUFFIX}"))]
        return inputs

    def manual_landmarks(self, file_name: str) -> list[list[float]] | None:
        """The 5 manual landmarks of an original image, None without its annotation file; DataFormatError if bad."""
        path = self.manual_file(file_name)
        if not path.is_file():
            return None
        points = []
        for line_no, text in read_lines(path):
            if len(points) == 5:
                break
            try:
                x, y = (float(v) for v in text.split())
            except ValueError:
                message = f"landmark {len(points) + 1}: expected 'x y' (two numbers), got {text!r}"
                raise DataFormatError(path, line_no, message) from None
            points.append([x, y])
        try:
            return five_points(points, "landmarks (lines 1-5)")
        except ValueError as error:
            raise DataFormatError(path, None, str(error)) from None

    def _records(self, report: LoadReport) -> list[tuple[int, str, int]]:
        """All well-formed `(line_no, file_name, class_index)` records, in file order."""
        records, seen = [], set()
        for line_no, text in read_lines(self.label_file, report):
            fields = text.split()
            try:
                if len(fields) != 2:
                    raise DataFormatError(self.label_file, line_no, f"expected '<file_name> <label>', got {text!r}")
                file_name, label = fields
                if not _NAME.match(file_name):
                    raise DataFormatError(
                        self.label_file, line_no, f"file name {file_name!r} is not 'train_<n>.jpg' or 'test_<n>.jpg'"
                    )
                if file_name in seen:
                    raise DataFormatError(self.label_file, line_no, f"{file_name} is listed twice")
                if label not in {str(k) for k in range(1, len(EXPRESSION_NAMES) + 1)}:
                    raise DataFormatError(
                        self.label_file, line_no, f"label: expected 1..{len(EXPRESSION_NAMES)}, got {label!r}"
                    )
            except DataFormatError as error:
                report.record_error(error)
                continue
            seen.add(file_name)
            records.append((line_no, file_name, int(label) - 1))
        return records

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        self.check_split(split)
        records = self._records(report)
        if split == "test":
            wanted = {name for _, name, _ in records if name.startswith("test_")}
        else:
            train_names = [name for _, name, _ in records if name.startswith("train_")]
            if split == "trainval":
                wanted = set(train_names)
            else:
                fraction = self.options["val_fraction"]
                assignment = carve(train_names, {"train": 1.0 - fraction, "val": fraction}, self.options["seed"])
                wanted = {name for name, part in assignment.items() if part == split}
        for line_no, file_name, class_index in records:
            if file_name not in wanted:
                continue
            image = self.image_path(file_name)
            try:
                if not image.is_file():
                    raise DataFormatError(self.label_file, line_no, f"image not found: {image}")
                landmarks = None if self.options["aligned"] else self.manual_landmarks(file_name)
            except DataFormatError as error:
                report.record_error(error)
                continue
            row = empty_row(str(image), self.name)
            row["expression"] = class_index
            row[ORIGIN_KEY] = [str(self.label_file), line_no]
            if landmarks is not None:
                row["face_landmarks"] = landmarks
            yield row
