# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Errors raised on bad benchmark files, and the report of what a load skipped or filtered out."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "skip")

# How many skipped-record messages a report keeps verbatim (the count is always exact).
MAX_REPORTED_EXAMPLES = 20


class DataFormatError(ValueError):
    """A benchmark file does not hold what its format promises.

    Args:
        path (`str | Path`): the file at fault (a label file, or the image/`.mat` file itself).
        line_no (`int | None`): 1-based line number in `path`, or `None` when the problem is not tied to a line.
        message (`str`): what is wrong, with the expected and the found value.
    """

    def __init__(self, path: str | Path, line_no: int | None, message: str):
        self.path = str(path)
        self.line_no = line_no
        self.message = message
        where = self.path if line_no is None else f"{self.path}, line {line_no}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # keep the three fields when pickled (datasets' worker processes)
        return (type(self), (self.path, self.line_no, self.message))


@dataclass
class LoadReport:
    """What one `(source, split)` load produced, skipped and filtered.

    Record-level problems (a malformed line, an out-of-range label, a missing image) go through
    `record_error`: with `on_error="raise"` they raise at once; with `on_error="skip"` the record is dropped and
    counted here. Problems that make a whole file untrustworthy (a missing label file, a wrong CelebA header,
    a truncated file) always raise. Protocol filters (AFLW2000's angle range) are not errors: they are counted in
    `filtered` by reason.
    """

    source: str
    split: str
    on_error: str = "raise"
    num_rows: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)
    crops: dict[str, int] = field(default_factory=dict)
    no_face_examples: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __post_init__(self):
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error: expected one of {ON_ERROR_CHOICES}, got {self.on_error!r}")

    def record_error(self, error: DataFormatError) -> None:
        """Raises `error` (on_error="raise") or counts it as one skipped record (on_error="skip")."""
        if self.on_error == "raise":
            raise error
        self.skipped += 1
        if len(self.skipped_examples) < MAX_REPORTED_EXAMPLES:
            self.skipped_examples.append(str(error))

    def record_filtered(self, reason: str, count: int = 1) -> None:
        """Counts `count` records left out on purpose by the benchmark's protocol."""
        self.filtered[reason] = self.filtered.get(reason, 0) + count

    def record_crop(self, method: str, path: str) -> None:
        """Counts one face cut into the Q-Face crop by `method` (see `modeling_qface.training.data.face_crops`)."""
        self.crops[method] = self.crops.get(method, 0) + 1
        if method == "no face found" and len(self.no_face_examples) < MAX_REPORTED_EXAMPLES:
            self.no_face_examples.append(str(path))

    def summary(self) -> str:
        text = f"{self.source}/{self.split}: {self.num_rows} rows"
        if self.skipped:
            text += f", {self.skipped} skipped for bad data (first: {self.skipped_examples[0]})"
        for reason, count in sorted(self.filtered.items()):
            text += f", {count} filtered out ({reason})"
        if self.crops:
            text += "; crops: " + ", ".join(f"{count} {method}" for method, count in sorted(self.crops.items()))
        if self.no_face_examples:
            text += f" (the central square taken as the face; first: {self.no_face_examples[0]})"
        return text

    def log(self) -> None:
        """Logs a warning when records were skipped or filtered or faces not found, an info line otherwise."""
        if self.skipped or self.filtered or self.no_face_examples:
            logger.warning(self.summary())
        else:
            logger.info(self.summary())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoadReport:
        return cls(**data)
