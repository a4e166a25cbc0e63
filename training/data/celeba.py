# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""CelebA attributes (Liu et al., ICCV 2015), as distributed.

Both published layouts are found: the Google Drive one (`Anno/`, `Eval/`, `Img/img_align_celeba/`) and the flat one
torchvision uses (everything in `root`):
    list_attr_celeba.txt     line 1: image count; line 2: the 40 attribute names; then `000001.jpg  -1  1 ...`
                             (1 = present, -1 = absent -> stored as 1 / 0)
    list_eval_partition.txt  `000001.jpg 0` with 0 / 1 / 2 = train / val / test (test has 19,962 images)
    identity_CelebA.txt      optional, `000001.jpg 2880`: fills `subject_id`
    img_align_celeba/        the aligned and cropped JPEGs

The header's attribute names must equal `ATTRIBUTE_NAMES` (same order), otherwise every column would be shifted:
that, and a line count that disagrees with line 1, always raise.
"""

from __future__ import annotations

from collections.abc import Iterator

from modeling_qface.configuration_qface import ATTRIBUTE_NAMES

from .base import SourceAdapter, file_stat, find_file, parse_int, read_lines
from .errors import DataFormatError, LoadReport
from .schema import empty_row

PARTITION_IDS = {"train": "0", "val": "1", "test": "2"}
_ATTRIBUTE_VALUES = {"1": 1, "-1": 0}


class CelebASource(SourceAdapter):
    """CelebA. Options: `image_dir` (relative to root; default: `img_align_celeba` or `Img/img_align_celeba`)."""

    name = "celeba"
    splits = ("train", "val", "test")

    def __init__(self, root, image_dir: str | None = None):
        super().__init__(root)
        self.options = {"image_dir": image_dir}
        self.attr_file = find_file(
            self.root, ["list_attr_celeba.txt", "Anno/list_attr_celeba.txt"], "CelebA attribute file"
        )
        self.partition_file = find_file(
            self.root, ["list_eval_partition.txt", "Eval/list_eval_partition.txt"], "CelebA partition file"
        )
        image_dirs = [image_dir] if image_dir else ["img_align_celeba", "Img/img_align_celeba"]
        self.image_dir = find_file(self.root, image_dirs, "CelebA image folder")
        identity = [self.root / p for p in ("identity_CelebA.txt", "Anno/identity_CelebA.txt")]
        self.identity_file = next((p for p in identity if p.exists()), None)

    def fingerprint_inputs(self, split: str) -> list:
        files = [self.attr_file, self.partition_file] + ([self.identity_file] if self.identity_file else [])
        return [file_stat(p) for p in files]

    def _name_to_field(self, path, report: LoadReport, allowed: set[str] | None = None) -> dict[str, str]:
        """`{file_name: second_field}` of a two-column file (partition or identity); `allowed` limits the values."""
        mapping = {}
        for line_no, text in read_lines(path):
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
        try:
            (count_line, count_text), (names_line, names_text) = next(lines), next(lines)
        except StopIteration:
            raise DataFormatError(self.attr_file, None, "expected a count line and an attribute-name line") from None
        declared = parse_int(count_text, self.attr_file, count_line, "image count")
        names = tuple(names_text.split())
        if names != ATTRIBUTE_NAMES:
            diff = next((i for i, (a, b) in enumerate(zip(names, ATTRIBUTE_NAMES)) if a != b), None)
            detail = (
                f"column {diff + 1} is {names[diff]!r}, expected {ATTRIBUTE_NAMES[diff]!r}"
                if diff is not None
                else f"{len(names)} names, expected {len(ATTRIBUTE_NAMES)}"
            )
            raise DataFormatError(self.attr_file, names_line, f"attribute names differ from ATTRIBUTE_NAMES: {detail}")
        return declared

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
        wanted = PARTITION_IDS[split]
        lines = read_lines(self.attr_file)
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
            except DataFormatError as error:
                report.record_error(error)
                continue
            image = self.image_dir / file_name
            if not image.is_file():
                report.record_error(DataFormatError(self.attr_file, line_no, f"image not found: {image}"))
                continue
            row = empty_row(str(image), self.name, subject_id=identity.get(file_name, ""))
            row["attributes"] = attributes
            yield row
        if seen != declared:
            raise DataFormatError(self.attr_file, 1, f"header declares {declared} images but the file lists {seen}")
