# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Your own images with labels in a `metadata.jsonl` (the Hugging Face imagefolder convention).

Layout: either one folder per split (`root/train/metadata.jsonl`, `root/test/metadata.jsonl`) or a single
`root/metadata.jsonl` whose rows may carry a `"split"` key (without it, only split "all" exists). Each line is a JSON
object with `file_name` (relative to the metadata file's folder) and any subset of:
    expression   int 0..6 or a name from `EXPRESSION_NAMES` (-1 / null = missing)
    au           15 values 1/0/-1 in `AU_NAMES` order, or `{"AU12": 1, ...}` (absent AUs -1)
    attributes   40 values 1/0/-1 in `ATTRIBUTE_NAMES` order, or `{"Smiling": 1, ...}`
    age          years (null = missing)
    head_pose    [yaw, pitch, roll] in degrees, or `{"yaw": ..., "pitch": ..., "roll": ...}` (null = missing)
    subject_id   str
and, to say where the face is (see `schema`'s "Face hints"; without them the detector picks the largest face):
    landmarks    5 [x, y] pairs in the image's pixels: image-left eye, image-right eye, nose tip, image-left mouth
                 corner, image-right mouth corner (-> `face_landmarks`: the crop is made from them, no detector runs)
    box          [x1, y1, x2, y2] of the labelled face in the image's pixels (-> `face_box`: the detector's face
                 overlapping it most is taken)
(null or absent = no hint; a key listed in `ignore_columns` is not read.)
Any other key is an error (a misspelt column would otherwise silently become "missing"), unless listed in
`ignore_columns`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES, HEAD_POSE_NAMES

from .base import SourceAdapter, file_stat, read_lines
from .errors import DataFormatError, LoadReport
from .landmarks import box, five_points
from .schema import MISSING, ORIGIN_KEY, check_row, empty_row

METADATA_FILE = "metadata.jsonl"
_KNOWN_KEYS = {"file_name", "split", "subject_id", "expression", "au", "attributes", "age", "head_pose"}
# Face hints: metadata key -> (row key, parser); a key listed in `ignore_columns` is not read.
_HINTS = {"landmarks": ("face_landmarks", five_points), "box": ("face_box", box)}


def _binary_vector(value, names: tuple[str, ...], column: str) -> list[int]:
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{column}: unknown label name(s) {unknown}")
        value = [value.get(name, MISSING) for name in names]
    if not isinstance(value, list) or len(value) != len(names):
        raise ValueError(f"{column}: expected {len(names)} values or a {{name: value}} object, got {value!r}")
    vector = [MISSING if v is None else int(v) if isinstance(v, (bool, int)) else v for v in value]
    if any(v not in (-1, 0, 1) or isinstance(v, float) for v in vector):
        raise ValueError(f"{column}: values must be 1, 0 or -1 (or null), got {value!r}")
    return vector


def _expression(value) -> int:
    if value is None:
        return MISSING
    if isinstance(value, str):
        if value not in EXPRESSION_NAMES:
            raise ValueError(f"expression: unknown name {value!r}; expected one of {EXPRESSION_NAMES}")
        return EXPRESSION_NAMES.index(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MISSING <= value < len(EXPRESSION_NAMES):
        raise ValueError(f"expression: expected -1..{len(EXPRESSION_NAMES) - 1} or a name, got {value!r}")
    return value


def _number(value, column: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{column}: expected a finite number, got {value!r}")
    return float(value)


def _head_pose(value) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != set(HEAD_POSE_NAMES):
            raise ValueError(f"head_pose: expected keys {HEAD_POSE_NAMES}, got {sorted(value)}")
        value = [value[name] for name in HEAD_POSE_NAMES]
    if not isinstance(value, list) or len(value) != len(HEAD_POSE_NAMES):
        raise ValueError(f"head_pose: expected [yaw, pitch, roll] in degrees, got {value!r}")
    return [_number(v, "head_pose") for v in value]


class ImageFolderSource(SourceAdapter):
    """Images + `metadata.jsonl`. Options: `source_name` (default "image_folder"), `ignore_columns` (default ())."""

    name = "image_folder"

    def __init__(self, root, source_name: str = "image_folder", ignore_columns: tuple[str, ...] | list[str] = ()):
        super().__init__(root)
        self.options = {"source_name": source_name, "ignore_columns": sorted(ignore_columns)}

    def metadata_file(self, split: str) -> tuple[Path, bool]:
        """The metadata file serving `split`, and whether rows must be filtered by their "split" key."""
        per_split = self.root / split / METADATA_FILE
        if per_split.is_file():
            return per_split, False
        single = self.root / METADATA_FILE
        if single.is_file():
            return single, split != "all"
        raise FileNotFoundError(f"image_folder: neither {per_split} nor {single} exists")

    def fingerprint_inputs(self, split: str) -> list:
        return [file_stat(self.metadata_file(split)[0])]

    def _row(self, record: dict, folder: Path) -> dict:
        """Schema row from one metadata record; ValueError naming the field when a value does not fit."""
        known = _KNOWN_KEYS | set(_HINTS)
        unknown = sorted(set(record) - known - set(self.options["ignore_columns"]))
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; expected {sorted(known)} (or pass ignore_columns)")
        file_name = record.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"file_name: expected a relative image path, got {file_name!r}")
        image = folder / file_name
        if not image.is_file():
            raise ValueError(f"image not found: {image}")
        subject = record.get("subject_id") or ""
        row = empty_row(str(image), self.options["source_name"], subject_id=str(subject))
        row["expression"] = _expression(record.get("expression"))
        if record.get("au") is not None:
            row["au"] = _binary_vector(record["au"], AU_NAMES, "au")
        if record.get("attributes") is not None:
            row["attributes"] = _binary_vector(record["attributes"], ATTRIBUTE_NAMES, "attributes")
        if record.get("age") is not None:
            row["age"] = _number(record["age"], "age")
        row["head_pose"] = _head_pose(record.get("head_pose"))
        if problem := check_row(row):  # belt and braces: nothing outside the schema reaches the Arrow writer
            raise ValueError(problem)
        for key, (row_key, parse) in _HINTS.items():
            if record.get(key) is not None and key not in self.options["ignore_columns"]:
                row[row_key] = parse(record[key], key)
        return row

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        path, filter_by_key = self.metadata_file(split)
        seen_split_key = False
        for line_no, text in read_lines(path, report):
            try:
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(f"not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                seen_split_key |= "split" in record
                if filter_by_key and record.get("split") != split:
                    continue
                row = self._row(record, path.parent)
            except ValueError as error:
                report.record_error(DataFormatError(path, line_no, str(error)))
                continue
            row[ORIGIN_KEY] = [str(path), line_no]
            yield row
        if filter_by_key and not seen_split_key:
            message = f"rows have no 'split' key, so split {split!r} is undefined; use split='all'"
            raise DataFormatError(path, None, message)
