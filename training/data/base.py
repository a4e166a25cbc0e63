# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The adapter interface every benchmark reader implements, and small file helpers they share."""

from __future__ import annotations

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


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields `(line_no, stripped_text)` for the non-blank lines of a text file (1-based numbers, BOM dropped)."""
    with open(path, encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if text:
                yield line_no, text


def parse_int(text: str, path: Path, line_no: int | None, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataFormatError(path, line_no, f"{field}: expected an integer, got {text!r}") from None
