# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""CelebA attributes (Liu et al., ICCV 2015), as distributed.

Both published layouts are found: the Google Drive one (`Anno/`, `Eval/`, `Img/img_align_celeba/`) and the flat one
torchvision uses (everything in `root`):
    list_attr_celeba.txt     line 1: image count; line 2: the 40 attribute names; then `000001.jpg  -1  1 ...`
                             (1 = present, -1 = absent -> stored as 1 / 0)
    list_eval_partition.txt  `000001.jpg 0` with 0 / 1 / 2 = train / val / test (test has 19,962 images)
    identity_CelebA.txt      optional, `000001.jpg 2880`: fills `subject_id`
    img_align_celeba/        the aligned and cropped JPEGs (178 x 218)
    img_celeba/              optional, the in-the-wild originals (pass `image_dir="Img/img_celeba"` or "img_celeba")

Face hints (optional files, in `Anno/` or `root`; without them the rows carry no hint and the detector runs):
    list_landmarks_align_celeba.txt  for `img_align_celeba`; list_landmarks_celeba.txt for `img_celeba` (chosen by
                             the image folder's name). Line 1: image count; line 2: `lefteye_x lefteye_y righteye_x
                             righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y`; then
                             `000001.jpg 69 109 106 113 77 142 73 152 108 154` -> `face_landmarks` (CelebA's "lefteye"
                             is the image-left one, Q-Face's order)
    list_bbox_celeba.txt     in-the-wild images only: line 1 count, line 2 `image_id x_1 y_1 width height`, then
                             `000001.jpg 95 71 226 313` -> `face_box = [x_1, y_1, x_1 + width, y_1 + height]`

Crops (`crop` option). "qface" (default): the Q-Face crop from the 5 landmarks, like every other source. The
attribute literature instead feeds the aligned 178 x 218 images without re-alignment, in one of two ways:
"center" takes the centred 178 x 178 square (rows 20..197: `CenterCrop(178)`) and resizes it to the input size;
"resize" resizes the whole 178 x 218 image to the square input (`Resize((s, s))`, faces squashed by 178/218 in
height). Both emit `resize_region` (see `schema`) instead of landmarks; they are defined for `img_align_celeba`
only (an `img_celeba` photo's centre is not a face). Train and test with the same crop.

The header's attribute names must equal `ATTRIBUTE_NAMES` (same order), otherwise every column would be shifted:
that, and a line count that disagrees with line 1, always raise; the same holds for the landmark and box files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES

from .base import SourceAdapter, file_stat, find_file, parse_int, read_lines
from .errors import DataFormatError, LoadReport
from .schema import ORIGIN_KEY, empty_row

PARTITION_IDS = {"train": "0", "val": "1", "test": "2"}
_ATTRIBUTE_VALUES = {"1": 1, "-1": 0}
LANDMARK_COLUMNS = (
    "lefteye_x",
    "lefteye_y",
    "righteye_x",
    "righteye_y",
    "nose_x",
    "nose_y",
    "leftmouth_x",
    "leftmouth_y",
    "rightmouth_x",
    "rightmouth_y",
)
BOX_COLUMNS = ("image_id", "x_1", "y_1", "width", "height")
IN_THE_WILD_DIR = "img_celeba"
# crop option -> the `resize_region` hint it emits (None: the Q-Face crop from the landmarks).
CELEBA_CROPS = {"qface": None, "center": "center_square", "resize": "whole"}


def _first_existing(root: Path, candidates: list[str]) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


def _check_header(path: Path, lines: Iterator[tuple[int, str]], expected: tuple[str, ...], what: str) -> int:
    """Validates lines 1-2 (count, column names) of a CelebA list file; returns the declared image count."""
    try:
        (count_line, count_text), (names_line, names_text) = next(lines), next(lines)
    except StopIteration:
        raise DataFormatError(path, None, "expected a count line and a column-name line") from None
    declared = parse_int(count_text, path, count_line, "image count")
    names = tuple(names_text.split())
    if names != expected:
        diff = next((i for i, (a, b) in enumerate(zip(names, expected)) if a != b), None)
        detail = (
            f"column {diff + 1} is {names[diff]!r}, expected {expected[diff]!r}"
            if diff is not None
            else f"{len(names)} names, expected {len(expected)}"
        )
        raise DataFormatError(path, names_line, f"{what}: {detail}")
    return declared


def _check_count(path: Path, declared: int, seen: int) -> None:
    if seen != declared:
        raise DataFormatError(path, 1, f"header declares {declared} images but the file lists {seen}")


def _numbers(path: Path, line_no: int, fields: list[str], names: tuple[str, ...]) -> list[float]:
    """The finite numbers of one list-file line (`fields` without the file name), named by column for errors."""
    if len(fields) != len(names):
        message = f"expected a file name and {len(names)} values, got {len(fields) + 1} fields"
        raise DataFormatError(path, line_no, message)
    values = []
    for name, text in zip(names, fields):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataFormatError(path, line_no, f"{name}: expected a number, got {text!r}")
        values.append(value)
    return values


class CelebASource(SourceAdapter):
    """CelebA. Options: `image_dir` (relative to root; default: `img_align_celeba` or `Img/img_align_celeba`; a
    folder named `img_celeba` holds the in-the-wild images and takes their landmark and box files), `crop`
    ("qface", default; "center" or "resize": the literature's crops of the aligned images, see the module doc)."""

    name = "celeba"
    splits = ("train", "val", "test")

    def __init__(self, root, image_dir: str | None = None, crop: str = "qface"):
        super().__init__(root)
        if problem := self.option_problems({"crop": crop}).get("crop"):
            raise ValueError(f"celeba: crop: {problem}")
        self.options = {"image_dir": image_dir} if crop == "qface" else {"image_dir": image_dir, "crop": crop}
        self.resize_region = CELEBA_CROPS[crop]
        self.attr_file = find_file(
            self.root, ["list_attr_celeba.txt", "Anno/list_attr_celeba.txt"], "CelebA attribute file"
        )
        self.partition_file = find_file(
            self.root, ["list_eval_partition.txt", "Eval/list_eval_partition.txt"], "CelebA partition file"
        )
        image_dirs = [image_dir] if image_dir else ["img_align_celeba", "Img/img_align_celeba"]
        self.image_dir = find_file(self.root, image_dirs, "CelebA image folder")
        self.identity_file = _first_existing(self.root, ["identity_CelebA.txt", "Anno/identity_CelebA.txt"])
        in_the_wild = self.image_dir.name == IN_THE_WILD_DIR
        landmarks = "list_landmarks_celeba.txt" if in_the_wild else "list_landmarks_align_celeba.txt"
        self.landmark_file = _first_existing(self.root, [landmarks, f"Anno/{landmarks}"])
        boxes = ["list_bbox_celeba.txt", "Anno/list_bbox_celeba.txt"]
        self.box_file = _first_existing(self.root, boxes) if in_the_wild else None
        if self.resize_region is not None:
            if in_the_wild:
                raise ValueError(
                    f"celeba: crop {crop!r} is defined for the aligned img_align_celeba images, not {self.image_dir}"
                )
            self.landmark_file = None  # the literature's crops do not align: the landmarks are not read

    @classmethod
    def option_problems(cls, options: dict) -> dict[str, str]:
        crop = options.get("crop", "qface")
        return {} if crop in CELEBA_CROPS else {"crop": f"expected one of {', '.join(CELEBA_CROPS)}, got {crop!r}"}

    def fingerprint_inputs(self, split: str) -> list:
        optional = [self.identity_file, self.landmark_file, self.box_file]
        files = [self.attr_file, self.partition_file] + [p for p in optional if p is not None]
        return [file_stat(p) for p in files]

    def _name_to_field(self, path, report: LoadReport, allowed: set[str] | None = None) -> dict[str, str]:
        """`{file_name: second_field}` of a two-column file (partition or identity); `allowed` limits the values."""
        mapping = {}
        for line_no, text in read_lines(path, report):
            fields = text.split()
            if len(fields) != 2:
                report.record_error(DataFormatError(path, line_no, f"expected '<file_name> <value>', got {text!r}"))
                continue
            if allowed is not None and fields[1] not in allowed:
                report.record_error(
                    DataFormatError(path, line_no, f"value: expected one of {sorted(allowed)}, got {fields[1]!r}")
                )
                continue
            mapping[fields[0]] = fields[1]
        return mapping

    def _check_header(self, lines: Iterator[tuple[int, str]]) -> int:
        """Validates lines 1-2 of the attribute file; returns the declared image count."""
        return _check_header(self.attr_file, lines, ATTRIBUTE_NAMES, "attribute names differ from ATTRIBUTE_NAMES")

    def _hint_table(
        self, path: Path | None, columns: tuple[str, ...], report: LoadReport
    ) -> dict[str, tuple[int, list[str]]]:
        """`{file_name: (line_no, value_fields)}` of a landmark or box file (checked header and count); {} if None."""
        if path is None:
            return {}
        lines = read_lines(path, report, header_lines=2)
        declared = _check_header(path, lines, columns, "column names differ from CelebA's header")
        table, seen = {}, 0
        for line_no, text in lines:
            seen += 1
            file_name, *fields = text.split()
            table[file_name] = (line_no, fields)
        _check_count(path, declared, seen + lines.skipped)  # a line dropped as undecodable was still listed
        return table

    def _hints(self, file_name: str, landmarks: dict, boxes: dict) -> dict:
        """The face hint keys of one image (only those its files give); DataFormatError on a bad line."""
        if self.resize_region is not None:
            return {"resize_region": self.resize_region}
        hints = {}
        if file_name in landmarks:
            line_no, fields = landmarks[file_name]
            values = _numbers(self.landmark_file, line_no, fields, LANDMARK_COLUMNS)
            hints["face_landmarks"] = [values[i : i + 2] for i in range(0, len(values), 2)]
        if file_name in boxes:
            line_no, fields = boxes[file_name]
            x, y, width, height = _numbers(self.box_file, line_no, fields, BOX_COLUMNS[1:])
            if width <= 0 or height <= 0:
                message = f"width, height: expected positive sizes, got {fields[2]!r}, {fields[3]!r}"
                raise DataFormatError(self.box_file, line_no, message)
            hints["face_box"] = [x, y, x + width, y + height]
        return hints

    def _attributes(self, fields: list[str], line_no: int) -> list[int]:
        if len(fields) != 1 + len(ATTRIBUTE_NAMES):
            message = f"expected a file name and {len(ATTRIBUTE_NAMES)} values, got {len(fields)} fields"
            raise DataFormatError(self.attr_file, line_no, message)
        values = []
        for name, text in zip(ATTRIBUTE_NAMES, fields[1:]):
            if text not in _ATTRIBUTE_VALUES:
                raise DataFormatError(self.attr_file, line_no, f"{name}: expected 1 or -1, got {text!r}")
            values.append(_ATTRIBUTE_VALUES[text])
        return values

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        self.check_split(split)
        partition = self._name_to_field(self.partition_file, report, allowed=set(PARTITION_IDS.values()))
        identity = self._name_to_field(self.identity_file, report) if self.identity_file else {}
        landmarks = self._hint_table(self.landmark_file, LANDMARK_COLUMNS, report)
        boxes = self._hint_table(self.box_file, BOX_COLUMNS, report)
        wanted = PARTITION_IDS[split]
        lines = read_lines(self.attr_file, report, header_lines=2)
        declared = self._check_header(lines)
        seen = 0
        for line_no, text in lines:
            seen += 1
            fields = text.split()
            file_name = fields[0]
            part = partition.get(file_name)
            if part is None:
                report.record_error(
                    DataFormatError(self.attr_file, line_no, f"{file_name} is not in {self.partition_file}")
                )
                continue
            if part != wanted:
                continue
            try:
                attributes = self._attributes(fields, line_no)
                hints = self._hints(file_name, landmarks, boxes)
            except DataFormatError as error:
                report.record_error(error)
                continue
            image = self.image_dir / file_name
            if not image.is_file():
                report.record_error(DataFormatError(self.attr_file, line_no, f"image not found: {image}"))
                continue
            row = empty_row(str(image), self.name, subject_id=identity.get(file_name, ""))
            row["attributes"] = attributes
            row[ORIGIN_KEY] = [str(self.attr_file), line_no]
            row.update(hints)
            yield row
        _check_count(self.attr_file, declared, seen + lines.skipped)
