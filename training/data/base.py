# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The adapter interface every benchmark reader implements, and small file helpers they share."""

from __future__ import annotations

import codecs
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from .errors import DataFormatError, LoadReport


class SourceAdapter(ABC):
    """Reads one benchmark, laid out as its owners distribute it, into rows of the Q-Face schema.

    Subclasses set `name` and `splits`, keep every constructor option in `self.options` (it keys the cache) and
    implement `iter_rows` and `fingerprint_inputs`.

    Args:
        root (`str | Path`): the dataset's top folder.
    """

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]

    def __init__(self, root: str | Path):
        self.root = Path(os.path.abspath(root))
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: dataset folder not found: {self.root}")
        self.options: dict = {}

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; expected one of {self.splits}")

    @classmethod
    def known_splits(cls, options: dict) -> tuple[str, ...] | None:
        """The splits this source has with `options`, known without its files (None: only the files tell)."""
        return getattr(cls, "splits", None)

    @classmethod
    def option_problems(cls, options: dict) -> dict[str, str]:
        """`{option: what is wrong with its value}` for the options that can be checked without the files, so a
        recipe fails before any work rather than when the source is read."""
        return {}

    @abstractmethod
    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        """Yields the rows of `split` (see `schema.empty_row`), sending record-level problems to `report`."""

    @abstractmethod
    def fingerprint_inputs(self, split: str) -> list:
        """JSON-able facts that change when the label files of `split` change (paths, sizes, mtimes)."""


def file_stat(path: Path) -> list:
    """`[path, size, mtime_ns]`: enough to notice an edited or replaced label file without reading it."""
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of `candidates` (paths relative to `root`) that exists; FileNotFoundError naming them all."""
    for candidate in candidates:
        path = root / candidate
        if path.exists():
            return path
    tried = ", ".join(str(root / c) for c in candidates)
    raise FileNotFoundError(f"{what} not found; looked for: {tried}")


class TextLines:
    """`(line_no, text)` for the lines of a UTF-8 text file (1-based numbers, a leading BOM dropped), as an iterator.

    Bytes are decoded line by line: a text-mode file would raise a bare `UnicodeDecodeError` for a whole buffered
    chunk, naming neither the file nor the line. A line that is not UTF-8 becomes a `DataFormatError` naming the file,
    the line and the byte offset: raised, or with a `report`, sent to it (`on_error="skip"` drops the line and counts
    it). The first `header_lines` lines always raise: without its header a file cannot be read at all.

    Args:
        path: the text file.
        report: receives the undecodable lines (None: they raise).
        header_lines: how many leading lines are a header.
        raw: yield every line as read, line ending included (for `csv`); by default lines are stripped and blank
            ones left out.

    `skipped` counts the lines dropped so far (for files whose header declares a line count).
    """

    def __init__(self, path: Path, report: LoadReport | None = None, header_lines: int = 0, raw: bool = False):
        self.path, self.report, self.header_lines, self.raw = Path(path), report, header_lines, raw
        self.skipped = 0
        self._lines = self._read()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return self

    def __next__(self) -> tuple[int, str]:
        return next(self._lines)

    def _read(self) -> Iterator[tuple[int, str]]:
        offset = 0
        with open(self.path, "rb") as handle:
            for line_no, data in enumerate(handle, start=1):
                start = len(codecs.BOM_UTF8) if line_no == 1 and data.startswith(codecs.BOM_UTF8) else 0
                try:
                    text = data[start:].decode("utf-8")
                except UnicodeDecodeError as error:
                    self._undecodable(line_no, offset + start + error.start, data[start + error.start])
                    continue
                finally:
                    offset += len(data)
                if self.raw:
                    yield line_no, text
                elif text.strip():
                    yield line_no, text.strip()

    def _undecodable(self, line_no: int, offset: int, byte: int) -> None:
        message = f"not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} of the file (save it as UTF-8)"
        error = DataFormatError(self.path, line_no, message)
        if self.report is None or line_no <= self.header_lines:
            raise error
        self.report.record_error(error)
        self.skipped += 1


def read_lines(path: Path, report: LoadReport | None = None, header_lines: int = 0) -> TextLines:
    """`(line_no, stripped_text)` for the non-blank lines of a UTF-8 text file; see `TextLines` for bad bytes."""
    return TextLines(path, report, header_lines)


def parse_int(text: str, path: Path, line_no: int | None, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataFormatError(path, line_no, f"{field}: expected an integer, got {text!r}") from None
