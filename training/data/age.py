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

UTKFace protocols. The published UTKFace MAEs that Q-Face is compared with (CORAL 5.47, DLDL-v2 4.42, MWR 4.37,
Faceptor 4.10) follow CORAL (Cao, Mirjalili & Raschka, "Rank consistent ordinal regression for neural networks with
application to age estimation", Pattern Recognition Letters 2020): the aligned `UTKFace/` images aged 21..60 (16,434
images), 80 % for training and 20 % for testing, no validation split. `protocol: coral` selects exactly that age
range and those proportions. The 80/20 cut is then Q-Face's own (a seeded SHA-256 carve of the 21..60 images'
relative paths, `seed` 0 by default), so its images differ from CORAL's. CORAL published its file lists
(`datasets/train-test-csv/utk_train.csv` and `utk_test.csv` of github.com/Raschka-research-group/coral-cnn, columns
`,file,age` with `age` = years - 21): copy them into the UTKFace folder and add
`split_lists: {train: utk_train.csv, test: utk_test.csv}` to evaluate on CORAL's very images. Whether each later
paper used these lists or a cut of its own is not stated in every paper.

`age_range: [youngest, oldest]` (whole years, inclusive) keeps only the images in that range, in every split; the
others are counted in the load report as filtered, never carved. `split_lists: {split: CSV}` (CSV files relative to
`root`, with a `file` column of image file names) replaces the carve: each split holds the listed images (a listed
name that is not under `root` is an error naming the list's line); "all" stays every image in the age range.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from .base import SourceAdapter, TextLines, file_stat, find_file, read_lines
from .errors import DataFormatError, LoadReport
from .landmarks import five_points_from_68
from .schema import ORIGIN_KEY, empty_row
from .splits import carve

MAX_AGE = 120  # years; a larger value is a typo, not a person (UTKFace's oldest is 116)
DEFAULT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))

# Named UTKFace protocols (see the module docstring): the age range and split fractions each one fixes.
UTKFACE_PROTOCOLS = {
    "coral": {"age_range": (21, 60), "split_fractions": {"train": 0.8, "test": 0.2}},  # Cao et al. 2020
}

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


def _age_range(value) -> tuple[int, int] | None:
    if value is None:
        return None
    whole = isinstance(value, (list, tuple)) and len(value) == 2
    whole = whole and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not whole or not 0 <= value[0] <= value[1] <= MAX_AGE:
        raise ValueError(f"age_range: expected [youngest, oldest], whole years within 0..{MAX_AGE}, got {value!r}")
    return (value[0], value[1])


def _split_lists(value) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value or not all(isinstance(v, str) and v for v in value.values()):
        raise ValueError(f"split_lists: expected {{split name: CSV file with a `file` column}}, got {value!r}")
    if "all" in value:
        raise ValueError("split_lists: 'all' is reserved for every image in the age range")
    return dict(value)


def utkface_settings(options: Mapping) -> dict:
    """`{age_range, fractions, split_lists}` of UTKFace's options, a protocol expanded into the values it fixes.

    Raises `ValueError("<option>: <problem>")` for a bad value, an unknown protocol, or an option that a protocol
    fixes given beside it (`protocol: coral` with `split_fractions` would silently not be CORAL's protocol)."""
    protocol = options.get("protocol")
    age_range, fractions = options.get("age_range"), options.get("split_fractions")
    if protocol is not None:
        if protocol not in UTKFACE_PROTOCOLS:
            raise ValueError(f"protocol: expected one of {sorted(UTKFACE_PROTOCOLS)} or null, got {protocol!r}")
        given = [key for key, value in (("age_range", age_range), ("split_fractions", fractions)) if value is not None]
        if given:
            raise ValueError(f"{given[0]}: protocol {protocol!r} fixes it; drop one of the two options")
        age_range, fractions = UTKFACE_PROTOCOLS[protocol]["age_range"], UTKFACE_PROTOCOLS[protocol]["split_fractions"]
    lists = _split_lists(options.get("split_lists"))
    if lists is not None and options.get("split_fractions") is not None:
        raise ValueError("split_fractions: split_lists already give the splits; drop one of the two options")
    return {"age_range": _age_range(age_range), "fractions": _fractions(fractions), "split_lists": lists}


def _problems(options: Mapping) -> dict[str, str]:
    """`{option: problem}` of `utkface_settings` (empty when the options are fine)."""
    try:
        utkface_settings(options)
    except (TypeError, ValueError) as error:
        key, _, message = str(error).partition(": ")
        return {key if message else "split_fractions": message or key}
    return {}


class UTKFaceSource(SourceAdapter):
    """UTKFace. Options: `protocol` (None or "coral": ages 21..60, train 0.8 / test 0.2), `age_range` ([youngest,
    oldest] years kept, default all), `split_fractions` (dict, default train 0.8 / val 0.1 / test 0.1), `seed`
    (default 0), `split_lists` ({split: CSV of file names}, e.g. CORAL's published lists). See the module docstring."""

    name = "utkface"

    def __init__(
        self,
        root,
        split_fractions: Mapping[str, float] | None = None,
        seed: int = 0,
        protocol: str | None = None,
        age_range: tuple[int, int] | None = None,
        split_lists: Mapping[str, str] | None = None,
    ):
        super().__init__(root)
        options = {
            "protocol": protocol,
            "age_range": age_range,
            "split_fractions": split_fractions,
            "split_lists": split_lists,
        }
        settings = utkface_settings(options)
        self.age_range, self.fractions = settings["age_range"], settings["fractions"]
        self.split_lists = settings["split_lists"]
        if self.split_lists is not None:  # a missing list fails now, not after other sources were prepared
            self.list_paths = {s: find_file(self.root, [f], "UTKFace split list") for s, f in self.split_lists.items()}
        self.splits = ("all", *(self.split_lists or self.fractions))
        self.options = {
            "split_fractions": self.fractions,
            "seed": seed,
            "protocol": protocol,
            "age_range": self.age_range,
            "split_lists": self.split_lists,
        }

    @classmethod
    def known_splits(cls, options: dict) -> tuple[str, ...] | None:
        try:
            settings = utkface_settings(options)
        except (TypeError, ValueError):  # named by option_problems
            return None
        return ("all", *(settings["split_lists"] or settings["fractions"]))

    @classmethod
    def option_problems(cls, options: dict) -> dict[str, str]:
        return _problems(options)

    def _images(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.jpg") if p.is_file())

    def _landmark_lists(self) -> list[Path]:
        return sorted(p for p in self.root.glob(UTKFACE_LANDMARK_LISTS) if p.is_file())

    def fingerprint_inputs(self, split: str) -> list:
        # The labels are the file names, so the listing is the label file.
        lists = [file_stat(p) for p in self._landmark_lists()]
        split_lists = [file_stat(p) for p in getattr(self, "list_paths", {}).values()]
        return [str(p.relative_to(self.root)) for p in self._images()] + lists + split_lists

    def _landmark_lines(self, report: LoadReport) -> dict[str, tuple[Path, int, list[str]]]:
        """`{file_name: (list_file, line_no, coordinate_fields)}` of every landmark list (parsed when used)."""
        lines = {}
        for path in self._landmark_lists():
            for line_no, text in read_lines(path, report):
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

    def _in_range(self, age: int | None, report: LoadReport) -> bool:
        """False (counted as filtered) for a well-formed age outside `age_range`; a malformed one is kept, so that
        it is reported as an error rather than dropped silently."""
        if self.age_range is None or age is None or age > MAX_AGE:
            return True
        youngest, oldest = self.age_range
        if youngest <= age <= oldest:
            return True
        report.record_filtered(f"age outside [{youngest}, {oldest}] years")
        return False

    def _listed(self, split: str, images: list[Path], report: LoadReport) -> set[Path]:
        """The images of `split`'s list that are kept; a listed name not under `root` is an error at its line."""
        path = self.list_paths[split]
        lines = list(TextLines(path, report, header_lines=1, raw=True))
        reader = csv.DictReader(text for _, text in lines)
        if "file" not in (reader.fieldnames or []):
            header = reader.fieldnames
            raise DataFormatError(path, 1, f"expected a `file` column of image names, the header has {header}")
        kept = {image.name: image for image in images}
        present = {image.name for image in self._images()}
        wanted = set()
        for row in reader:
            name = row["file"] or ""
            if name in kept:
                wanted.add(kept[name])
            elif name not in present:  # (a present image outside age_range was already counted as filtered)
                report.record_error(DataFormatError(path, lines[reader.line_num - 1][0], f"image not found: {name!r}"))
        return wanted

    def _members(self, split: str, images: list[Path], report: LoadReport) -> set[Path]:
        """The kept images that belong to `split`: all of them, the listed ones, or a seeded carve."""
        if self.split_lists is not None and split != "all":
            return self._listed(split, images, report)
        keys = {str(image.relative_to(self.root)): image for image in images}
        return {keys[key] for key in _carved(list(keys), split, self.fractions, self.options["seed"])}

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        self.check_split(split)
        ages = {image: _utkface_age(image.name) for image in self._images()}
        # The age range is applied before carving, so the fractions are those of the images in the range (CORAL's
        # 80/20 is of its 21..60 images).
        images = [image for image, age in ages.items() if self._in_range(age, report)]
        wanted = self._members(split, images, report)
        landmark_lines = self._landmark_lines(report)
        for image in images:
            if image not in wanted:
                continue
            age = ages[image]
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


def _utkface_age(file_name: str) -> int | None:
    """The leading `{age}_` of a UTKFace file name; None when there is none."""
    match = _UTKFACE_AGE.match(file_name)
    return int(match["age"]) if match else None


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
            "csv_file": csv_file,
            "image_dir": image_dir,
            "image_column": image_column,
            "age_column": age_column,
            "split_column": split_column,
            "subject_column": subject_column,
            "source_name": source_name,
            "split_fractions": self.fractions,
            "seed": seed,
        }

    def fingerprint_inputs(self, split: str) -> list:
        return [file_stat(self.csv_path)]

    def _read(self, report: LoadReport) -> tuple[list[str], list[tuple[int, dict]]]:
        """The header and `(line_no, row)` pairs, rows as `{column: text}` (undecodable lines go to `report`)."""
        lines = list(TextLines(self.csv_path, report, header_lines=1, raw=True))
        reader = csv.DictReader(text for _, text in lines)
        header = list(reader.fieldnames or [])
        required = [self.options["image_column"], self.options["age_column"]]
        if self.options["subject_column"]:
            required.append(self.options["subject_column"])
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(self.csv_path, 1, f"missing column(s) {missing}; the header has {header}")
        # `line_num` after a read counts the lines the record took: its last one, exact for one-line records.
        return header, [(lines[reader.line_num - 1][0], row) for row in reader]

    def _age(self, text: str | None, line_no: int) -> float:
        try:
            age = float(text)
        except (TypeError, ValueError):
            raise DataFormatError(self.csv_path, line_no, f"age: expected a number of years, got {text!r}") from None
        if not math.isfinite(age) or not 0 <= age <= MAX_AGE:
            raise DataFormatError(self.csv_path, line_no, f"age: expected 0..{MAX_AGE} years, got {text!r}")
        return age

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        header, rows = self._read(report)
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
            row_out[ORIGIN_KEY] = [str(self.csv_path), line_no]
            yield row_out
