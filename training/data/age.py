# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Age sources: UTKFace (labels in file names) and a generic CSV (MORPH II, CLAP2015/ChaLearn LAP, your own).

UTKFace (Zhang et al., CVPR 2017): every `*.jpg` under `root` (the aligned `UTKFace/` folder, or the in-the-wild
`part1..3`) named `{age}_{gender}_{race}_{date&time}.jpg` (aligned crops: `....jpg.chip.jpg`). Only the age is read:
the leading integer before the first `_`. Some official files have an empty or a missing field
(`53__0_20170116184028385.jpg`, `61_3_20170109150557335.jpg`, `39_1_20170116174525125.jpg.chip.jpg`); their age is
still unambiguous and they are kept. A name without a leading `{age}_`, or with an age above `MAX_AGE`, is an error.

UTKFace face hints: the in-the-wild release's `landmark_list_part1.txt` .. `part3.txt` (any `landmark_list*.txt` directly
under `root`; lines `<file name> x1 y1 x2 y2 ... x68 y68`, 68 iBUG points in that image's pixels) give
`face_landmarks` to the images whose file name they list (see `landmarks.five_points_from_68`); other images get no
hint (the detector runs).

Generic CSV: one row per image, with configurable column names (defaults `file_name,age[,split]`). If the split
column exists, `split` selects its rows; "all" takes every row. For CLAP2015's `train_gt.csv` use
`image_column="image", age_column="mean"`. It carries no face hints: the detector picks the largest face.

Neither UTKFace nor a CSV without a split column has an official split: "train" / "val" / "test" are then carved
deterministically with `split_fractions` (default 0.8 / 0.1 / 0.1) and `seed` (see `splits.carve`), per subject when
`subject_column` is given (subject-exclusive), per image otherwise.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from .base import SourceAdapter, file_stat, find_file, read_lines
from .errors import DataFormatError, LoadReport
from .landmarks import five_points_from_68
from .schema import empty_row
from .splits import carve

MAX_AGE = 120  # years; a larger value is a typo, not a person (UTKFace's oldest is 116)
DEFAULT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))

_UTKFACE_AGE = re.compile(r"^(?P<age>\d+)_")
UTKFACE_LANDMARK_LISTS = "landmark_list*.txt"


def _fractions(split_fractions: Mapping[str, float] | None) -> dict[str, float]:
    fractions = dict(split_fractions) if split_fractions is not None else dict(DEFAULT_FRACTIONS)
    if "all" in fractions:
        raise ValueError("split_fractions: 'all' is reserved for the whole dataset")
    return fractions


def _carved(keys: list[str], split: str, fractions: dict[str, float], seed: int) -> set[str]:
    if split == "all":
        return set(keys)
    if split not in fractions:
        raise ValueError(f"unknown split {split!r}; expected 'all' or one of {sorted(fractions)}")
    return {key for key, part in carve(keys, fractions, seed).items() if part == split}


class UTKFaceSource(SourceAdapter):
    """UTKFace. Options: `split_fractions` (dict, default train 0.8 / val 0.1 / test 0.1), `seed` (default 0)."""

    name = "utkface"

    def __init__(self, root, split_fractions: Mapping[str, float] | None = None, seed: int = 0):
        super().__init__(root)
        self.fractions = _fractions(split_fractions)
        self.splits = ("all", *self.fractions)
        self.options = {"split_fractions": self.fractions, "seed": seed}

    def _images(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.jpg") if p.is_file())

    def _landmark_lists(self) -> list[Path]:
        return sorted(p for p in self.root.glob(UTKFACE_LANDMARK_LISTS) if p.is_file())

    def fingerprint_inputs(self, split: str) -> list:
        # The labels are the file names, so the listing is the label file.
        lists = [file_stat(p) for p in self._landmark_lists()]
        return [str(p.relative_to(self.root)) for p in self._images()] + lists

    def _landmark_lines(self) -> dict[str, tuple[Path, int, list[str]]]:
        """`{file_name: (list_file, line_no, coordinate_fields)}` of every landmark list (parsed when used)."""
        lines = {}
        for path in self._landmark_lists():
            for line_no, text in read_lines(path):
                file_name, *fields = text.split()
                lines[file_name] = (path, line_no, fields)
        return lines

    @staticmethod
    def _landmarks(path: Path, line_no: int, fields: list[str]) -> list[list[float]]:
        """The 5 points of one landmark-list line; DataFormatError naming the file and line when it is not 68 x, y."""
        values = []
        for index, text in enumerate(fields, start=1):
            try:
                values.append(float(text))
            except ValueError:
                raise DataFormatError(path, line_no, f"coordinate {index}: expected a number, got {text!r}") from None
        if len(values) != 2 * 68:
            message = f"expected a file name and 136 coordinates (68 x, y pairs), got {len(values)} coordinates"
            raise DataFormatError(path, line_no, message)
        try:
            return five_points_from_68([values[i : i + 2] for i in range(0, len(values), 2)])
        except ValueError as error:
            raise DataFormatError(path, line_no, f"landmarks: {error}") from None

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        self.check_split(split)
        images = self._images()
        keys = {image: str(image.relative_to(self.root)) for image in images}
        wanted = _carved(list(keys.values()), split, self.fractions, self.options["seed"])
        landmark_lines = self._landmark_lines()
        for image in images:
            if keys[image] not in wanted:
                continue
            match = _UTKFACE_AGE.match(image.name)
            age = int(match["age"]) if match else None
            try:
                if age is None or age > MAX_AGE:
                    expected = f"'{{age}}_{{gender}}_{{race}}_{{date&time}}.jpg' with age 0..{MAX_AGE}"
                    raise DataFormatError(image, None, f"file name is not {expected}")
                listed = landmark_lines.get(image.name)
                landmarks = self._landmarks(*listed) if listed else None
            except DataFormatError as error:
                report.record_error(error)
                continue
            row = empty_row(str(image), self.name)
            row["age"] = float(age)
            if landmarks is not None:
                row["face_landmarks"] = landmarks
            yield row


class AgeCsvSource(SourceAdapter):
    """Ages from a CSV. Options: `csv_file` (relative to root, default "labels.csv"), `image_dir` (relative to root,
    default "."), `image_column` ("file_name"), `age_column` ("age"), `split_column` ("split"; used when present),
    `subject_column` (None), `source_name` ("age_csv", written to the `source` column), `split_fractions`, `seed`.
    Rows carry no face hints (MORPH II, CLAP2015 ship none): the detector picks the largest face."""

    name = "age_csv"

    def __init__(
        self,
        root,
        csv_file: str = "labels.csv",
        image_dir: str = ".",
        image_column: str = "file_name",
        age_column: str = "age",
        split_column: str = "split",
        subject_column: str | None = None,
        source_name: str = "age_csv",
        split_fractions: Mapping[str, float] | None = None,
        seed: int = 0,
    ):
        super().__init__(root)
        self.csv_path = find_file(self.root, [csv_file], "age CSV")
        self.image_dir = self.root / image_dir
        self.fractions = _fractions(split_fractions)
        self.options = {
            "csv_file": csv_file, "image_dir": image_dir, "image_column": image_column, "age_column": age_column,
            "split_column": split_column, "subject_column": subject_column, "source_name": source_name,
            "split_fractions": self.fractions, "seed": seed,
        }  # fmt: skip

    def fingerprint_inputs(self, split: str) -> list:
        return [file_stat(self.csv_path)]

    def _read(self) -> tuple[list[str], list[tuple[int, dict]]]:
        """The header and `(line_no, row)` pairs, rows as `{column: text}`."""
        with open(self.csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            required = [self.options["image_column"], self.options["age_column"]]
            if self.options["subject_column"]:
                required.append(self.options["subject_column"])
            missing = [c for c in required if c not in header]
            if missing:
                raise DataFormatError(self.csv_path, 1, f"missing column(s) {missing}; the header has {header}")
            # `line_num` after a read is the record's last line: exact for the usual one-line records.
            return header, [(reader.line_num, row) for row in reader]

    def _age(self, text: str | None, line_no: int) -> float:
        try:
            age = float(text)
        except (TypeError, ValueError):
            raise DataFormatError(self.csv_path, line_no, f"age: expected a number of years, got {text!r}") from None
        if not math.isfinite(age) or not 0 <= age <= MAX_AGE:
            raise DataFormatError(self.csv_path, line_no, f"age: expected 0..{MAX_AGE} years, got {text!r}")
        return age

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        header, rows = self._read()
        opts = self.options
        if opts["split_column"] in header:
            splits = {row[opts["split_column"]] or "" for _, row in rows}
            if split != "all" and split not in splits:
                raise ValueError(f"{self.name}: unknown split {split!r}; the CSV's split column has {sorted(splits)}")
            keep = lambda row: split == "all" or row[opts["split_column"]] == split  # noqa: E731
        else:
            group = opts["subject_column"] or opts["image_column"]
            wanted = _carved([row[group] or "" for _, row in rows], split, self.fractions, opts["seed"])
            keep = lambda row: (row[group] or "") in wanted  # noqa: E731
        for line_no, row in rows:
            if not keep(row):
                continue
            try:
                if None in row or any(row[c] is None for c in header):
                    raise DataFormatError(self.csv_path, line_no, f"expected {len(header)} columns")
                age = self._age(row[opts["age_column"]], line_no)
                image = self.image_dir / row[opts["image_column"]]
                if not image.is_file():
                    raise DataFormatError(self.csv_path, line_no, f"image not found: {image}")
            except DataFormatError as error:
                report.record_error(error)
                continue
            subject = row[opts["subject_column"]] if opts["subject_column"] else ""
            row_out = empty_row(str(image), opts["source_name"], subject_id=subject)
            row_out["age"] = age
            yield row_out
