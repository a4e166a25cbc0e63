# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""BP4D-Spontaneous and DISFA action unit occurrence, as distributed, with the 3-fold subject-exclusive protocol.

Splits: "train" / "test" of `fold` 1..3 (see `splits.py` for the subject partitions and fold numbering), or "all".
With `val_fraction > 0` (e.g. 0.15) also "val": that fraction of the fold's training subjects, chosen by a seeded
SHA-256 of the subject id (`seed`), held out for model selection; "train" then leaves them out (subject-exclusive,
deterministic; `splits.fold_subjects`). The default 0 keeps the protocol's "train" (every training subject).

BP4D (Zhang et al., IVC 2014). Default layout (FERA 2015 release; options change it):
    AUCoding/AU_OCC/F001_T1.csv              one CSV per subject and task T1..T8
    BP4D-training/F001/T1/2440.jpg           frames, named by the 4-digit zero-padded frame number
The CSV header is `<frame column>,1,2,3,...` (AU numbers as column names; the first column holds the frame number,
whatever its header says). Values: 1 present, 0 absent, 9 not coded (-> -1). Q-Face reads BP4D's 12 protocol AUs
(1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24); AU9, AU25 and AU26 stay -1.

DISFA (Mavadati et al., TAC 2013). DISFA ships videos, so frames must be extracted first; the default pattern is
ME-GraphAU's layout (`img/SN001/0.png` for the frame labelled 1):
    ActionUnit_Labels/SN001/SN001_au1.txt    lines `frame,intensity`, frames from 1, intensity 0..5
    img/SN001/0.png                          extracted frames
Occurrence = intensity >= `threshold` (2, the protocol of JAA-Net / ME-GraphAU). Q-Face reads DISFA's 8 protocol AUs
(1, 2, 4, 6, 9, 12, 25, 26); the other 7 stay -1. A frame missing from one AU's file gets -1 for that AU.

`frame_pattern` is a `str.format` pattern relative to `root` with the fields `subject`, `task` (BP4D), `frame` (the
number in the label file) and `frame0` (`frame - 1`, the 0-based index frame extractors usually write).

Face hints: neither adapter emits any (the landmark files some releases include are not read), so the face detector
picks the largest face of each frame (see `schema`'s "Face hints").
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from .base import SourceAdapter, file_stat, parse_int, read_lines
from .errors import DataFormatError, LoadReport
from .schema import ORIGIN_KEY, au_vector, empty_row
from .splits import BP4D_PARTS, DISFA_PARTS, fold_subjects

BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
BP4D_TASKS = tuple(f"T{i}" for i in range(1, 9))
_BP4D_VALUES = {"0": 0, "1": 1, "9": -1}

DISFA_AUS = (1, 2, 4, 6, 9, 12, 25, 26)
DISFA_MAX_INTENSITY = 5


class _FoldedAUSource(SourceAdapter):
    """Shared option handling: the fold, the validation carve and the frame path pattern."""

    splits = ("train", "test", "all")
    parts: tuple[tuple[str, ...], ...]

    def __init__(self, root, fold: int, label_dir: str, frame_pattern: str, val_fraction: float, seed: int):
        super().__init__(root)
        if problem := _check_fold(fold) or _check_val_fraction(val_fraction):
            raise ValueError(f"{self.name}: {problem}")
        try:
            frame_pattern.format(subject="S", task="T1", frame=1, frame0=0)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"{self.name}: frame_pattern {frame_pattern!r} is not a format pattern over "
                f"subject/task/frame/frame0: {error!r}"
            ) from None
        self.options = {
            "fold": fold,
            "label_dir": label_dir,
            "frame_pattern": frame_pattern,
            "val_fraction": val_fraction,
            "seed": seed,
        }
        self.label_dir = self.root / label_dir
        self.splits = self.known_splits(self.options)

    @classmethod
    def known_splits(cls, options: dict) -> tuple[str, ...]:
        return ("train", "val", "test", "all") if options.get("val_fraction") else ("train", "test", "all")

    @classmethod
    def option_problems(cls, options: dict) -> dict[str, str]:
        problems = {}
        fold = options.get("fold", 1)
        if _check_fold(fold):
            problems["fold"] = f"unknown fold {fold!r} (expected one of 1, 2, 3)"
        if problem := _check_val_fraction(options.get("val_fraction", 0.0)):
            problems["val_fraction"] = problem.removeprefix("val_fraction: ")
        return problems

    def subjects(self, split: str) -> tuple[str, ...]:
        self.check_split(split)
        opts = self.options
        return fold_subjects(self.parts, opts["fold"], split, opts["val_fraction"], opts["seed"])

    def frame_path(self, **fields) -> Path:
        return self.root / self.options["frame_pattern"].format(**fields)

    def fingerprint_inputs(self, split: str) -> list:
        return [file_stat(p) if p.exists() else [str(p), None] for p in self.label_files(split)]

    def label_files(self, split: str) -> list[Path]:
        raise NotImplementedError


def _check_fold(fold) -> str | None:
    if isinstance(fold, bool) or fold not in (1, 2, 3):
        return f"fold: expected 1, 2 or 3, got {fold!r}"
    return None


def _check_val_fraction(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        return f"val_fraction: expected a fraction in [0, 1) of the fold's training subjects, got {value!r}"
    return None


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataFormatError(path, None, "label file not found (the whole subject/task would be missing)")
    return path


class BP4DSource(_FoldedAUSource):
    """BP4D. Options: `fold` (1..3, default 1), `label_dir` (default "AUCoding/AU_OCC"), `frame_pattern`
    (default "BP4D-training/{subject}/{task}/{frame:04d}.jpg"), `val_fraction` (default 0: no "val" split) and
    `seed` (default 0) of the validation carve."""

    name = "bp4d"
    parts = BP4D_PARTS

    def __init__(
        self,
        root,
        fold: int = 1,
        label_dir: str = "AUCoding/AU_OCC",
        frame_pattern: str = "BP4D-training/{subject}/{task}/{frame:04d}.jpg",
        val_fraction: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(root, fold, label_dir, frame_pattern, val_fraction, seed)

    def label_files(self, split: str) -> list[Path]:
        return [self.label_dir / f"{s}_{t}.csv" for s in self.subjects(split) for t in BP4D_TASKS]

    def _columns(self, header: list[str], path: Path, line_no: int) -> dict[int, int]:
        """AU number -> column index, for the protocol AUs."""
        columns = {}
        for index, name in enumerate(header[1:], start=1):
            try:
                columns[int(name)] = index
            except ValueError:
                message = f"header column {index + 1}: expected an AU number, got {name!r}"
                raise DataFormatError(path, line_no, message) from None
        missing = [au for au in BP4D_AUS if au not in columns]
        if missing:
            raise DataFormatError(path, line_no, f"header lacks the columns of AU {missing}")
        return {au: columns[au] for au in BP4D_AUS}

    def _rows_of_file(self, path: Path, subject: str, task: str, report: LoadReport) -> Iterator[dict]:
        # Line by line (one record per line), so that a line that is not UTF-8 is named and skipped on its own.
        lines = read_lines(_require(path), report, header_lines=1)
        header_line, header_text = next(lines, (1, ""))
        header = next(csv.reader([header_text]), None)
        if not header:
            raise DataFormatError(path, 1, "empty file, expected a header 'Frame,1,2,...'")
        columns = self._columns(header, path, header_line)
        for line_no, text in lines:
            cells = next(csv.reader([text]))
            try:
                if len(cells) != len(header):
                    raise DataFormatError(path, line_no, f"expected {len(header)} columns, got {len(cells)}")
                frame = parse_int(cells[0].strip(), path, line_no, "frame")
                coded = {}
                for au, index in columns.items():
                    value = cells[index].strip()
                    if value not in _BP4D_VALUES:
                        raise DataFormatError(path, line_no, f"AU{au}: expected 0, 1 or 9, got {value!r}")
                    coded[au] = _BP4D_VALUES[value]
                image = self.frame_path(subject=subject, task=task, frame=frame, frame0=frame - 1)
                if not image.is_file():
                    raise DataFormatError(path, line_no, f"image not found: {image}")
            except DataFormatError as error:
                report.record_error(error)
                continue
            row = empty_row(str(image), self.name, subject_id=subject)
            row["au"] = au_vector(coded)
            row[ORIGIN_KEY] = [str(path), line_no]
            yield row

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        for subject in self.subjects(split):
            for task in BP4D_TASKS:
                yield from self._rows_of_file(self.label_dir / f"{subject}_{task}.csv", subject, task, report)


class DISFASource(_FoldedAUSource):
    """DISFA. Options: `fold` (1..3, default 1), `label_dir` (default "ActionUnit_Labels"), `frame_pattern`
    (default "img/{subject}/{frame0}.png"), `threshold` (default 2), `val_fraction` (default 0: no "val" split) and
    `seed` (default 0) of the validation carve."""

    name = "disfa"
    parts = DISFA_PARTS

    def __init__(
        self,
        root,
        fold: int = 1,
        label_dir: str = "ActionUnit_Labels",
        frame_pattern: str = "img/{subject}/{frame0}.png",
        threshold: int = 2,
        val_fraction: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(root, fold, label_dir, frame_pattern, val_fraction, seed)
        if not 1 <= threshold <= DISFA_MAX_INTENSITY:
            raise ValueError(f"disfa: threshold must be in 1..{DISFA_MAX_INTENSITY}, got {threshold!r}")
        self.options["threshold"] = threshold

    def label_file(self, subject: str, au: int) -> Path:
        return self.label_dir / subject / f"{subject}_au{au}.txt"

    def label_files(self, split: str) -> list[Path]:
        return [self.label_file(s, au) for s in self.subjects(split) for au in DISFA_AUS]

    def _intensities(self, path: Path, report: LoadReport, bad_frames: set[int]) -> dict[int, tuple[int, int]]:
        """`{frame: (intensity, line_no)}` of one AU file; frames of malformed lines go to `bad_frames`."""
        values = {}
        for line_no, text in read_lines(_require(path), report):
            fields = text.split(",")
            try:
                if len(fields) != 2:
                    raise DataFormatError(path, line_no, f"expected 'frame,intensity', got {text!r}")
                frame = parse_int(fields[0].strip(), path, line_no, "frame")
                if frame < 1:
                    raise DataFormatError(path, line_no, f"frame: expected a number >= 1, got {frame}")
                if frame in values:
                    raise DataFormatError(path, line_no, f"frame {frame} is listed twice")
                intensity = parse_int(fields[1].strip(), path, line_no, "intensity")
                if not 0 <= intensity <= DISFA_MAX_INTENSITY:
                    message = f"intensity: expected 0..{DISFA_MAX_INTENSITY}, got {intensity}"
                    raise DataFormatError(path, line_no, message)
            except DataFormatError as error:
                report.record_error(error)
                first = fields[0].strip()
                if first.isdigit():  # the frame is known, its label is not: drop the frame, not the whole file
                    bad_frames.add(int(first))
                continue
            values[frame] = (intensity, line_no)
        return values

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        threshold = self.options["threshold"]
        for subject in self.subjects(split):
            bad_frames: set[int] = set()
            per_au = {au: self._intensities(self.label_file(subject, au), report, bad_frames) for au in DISFA_AUS}
            frames = sorted(set().union(*per_au.values()) - bad_frames)
            for frame in frames:
                image = self.frame_path(subject=subject, frame=frame, frame0=frame - 1)
                au, (_, line_no) = next((au, v[frame]) for au, v in per_au.items() if frame in v)
                if not image.is_file():
                    error = DataFormatError(self.label_file(subject, au), line_no, f"image not found: {image}")
                    report.record_error(error)
                    continue
                coded = {au: int(v[frame][0] >= threshold) for au, v in per_au.items() if frame in v}
                row = empty_row(str(image), self.name, subject_id=subject)
                row["au"] = au_vector(coded)
                row[ORIGIN_KEY] = [str(self.label_file(subject, au)), line_no]
                yield row
