# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Durable result files of `qface analyze`: JSON Lines or CSV, each image's results written as soon as it is done,
in one piece (`result_file.RecordFile`), so a run that dies, or a disk that fills up, leaves a valid file with every
finished image; `resume` continues such a file. Strict JSON throughout: NaN and infinities are written as null.
File names that are not UTF-8 are written with `\\xNN` for each odd byte (`result_file.portable_text`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .result_file import RecordFile, portable_text


def strict_json(value, **kwargs) -> str:
    """`json.dumps` with NaN and infinities written as null: bare `NaN` / `Infinity` are not JSON, and strict
    parsers (JavaScript's JSON.parse, jq, Go, ...) refuse the whole document for one of them."""
    return json.dumps(_portable(value), allow_nan=False, **kwargs)


def _portable(value):
    """NaN and infinities as None, text as valid UTF-8 (`portable_text`: a JSON string with a lone surrogate is
    valid JSON that jq, node and Go cannot map back to bytes)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return portable_text(value)
    if isinstance(value, dict):
        return {portable_text(str(key)): _portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(item) for item in value]
    return value


def open_writer(path: Path, tasks: list[dict], resume: bool = False):
    """The writer of `--output`'s format. `tasks`: the task dicts the run computes (they make the CSV columns);
    `resume`: append to the file, its inputs in the writer's `done`."""
    path.parent.mkdir(parents=True, exist_ok=True)  # checked before the model loaded: `check_output_file`
    if path.suffix.lower() == ".csv":
        from .dataframe import dataframe_columns

        return CsvWriter(path, dataframe_columns(tasks), resume)
    return JsonLinesWriter(path, resume)


class _ResultWriter:
    """What both writers share: `file` (a `RecordFile`) and `done`, the inputs the file held already (`resume`)."""

    file: RecordFile
    done: set[str]

    def holds(self, source) -> bool:
        """Whether the file has `source`'s results already (`--resume`), its name compared as the file writes it."""
        return portable_text(str(source)) in self.done

    def close(self) -> None:
        self.file.close()


class JsonLinesWriter(_ResultWriter):
    """One strict-JSON line per image (or failed input), written and flushed as soon as the image is done, so a run
    that dies leaves every finished image in the file. `done`: the inputs the file held already (`resume`)."""

    def __init__(self, path: Path, resume: bool = False):
        self.done = _resume_jsonl(path) if resume else set()
        self.file = RecordFile(path, append=resume)

    def add(self, source: Path, faces: list[dict]) -> None:
        faces = [{k: v for k, v in face.items() if k != "attention"} for face in faces]  # arrays go to figures
        self._write({"input": str(source), "faces": faces})

    def add_failure(self, source: str, reason: str) -> None:
        self._write({"input": str(source), "error": reason})

    def _write(self, record: dict) -> None:
        self.file.write(strict_json(record) + "\n")  # one write per image: a kill or a full disk leaves no torn line


class CsvWriter(_ResultWriter):
    """One row per face, and one row per image without a face (its `input` and `image`, every other column empty,
    `face` included): the header first, then each image's rows, written and flushed as soon as the image is done.

    The columns are fixed up front (`dataframe_columns` of the computed tasks: only their columns), so a file cut
    short is still a valid table. `image` numbers the analysed images in order (a resumed file's numbers continue).
    Failed inputs have no rows (the summary reports them; `--resume` tries them again). `done`: the inputs the file
    held already, face-less images included.
    """

    def __init__(self, path: Path, columns: list[str], resume: bool = False):
        self.columns = columns
        self.done, self.next_image = _resume_csv(path, columns) if resume else (set(), 0)
        fresh = not (resume and path.is_file() and path.stat().st_size)
        self.file = RecordFile(path, append=not fresh)
        if fresh:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(columns)
            self.file.write(header.getvalue())

    def add(self, source: Path, faces: list[dict]) -> None:
        from .dataframe import results_to_dataframe

        frame = results_to_dataframe([faces], [source])  # [[]]: the image's one face-less row
        unexpected = [c for c in frame.columns if c not in self.columns and frame[c].notna().any()]
        if unexpected:  # a bug in dataframe_columns: better stop than drop numbers silently
            raise RuntimeError(f"CSV columns {sorted(unexpected)} were not derived from the model's tasks")
        frame = frame.reindex(columns=self.columns).assign(image=self.next_image)
        self.file.write(frame.to_csv(header=False, index=False, lineterminator="\n"))  # one write per image
        self.next_image += 1

    def add_failure(self, source: str, reason: str) -> None:
        pass  # a CSV holds analysed images only (the summary reports failures)


def _resume_jsonl(path: Path) -> set[str]:
    """The inputs a JSON Lines output holds (a line cut short by a kill is cut off first)."""
    text, _ = _cut_partial_line(path)
    done = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            done.add(json.loads(line)["input"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"--resume: {path} line {number} is not a qface analyze result ({error})") from error
    return done


def _resume_csv(path: Path, columns: list[str]) -> tuple[set[str], int]:
    """The inputs a CSV output holds (those with faces and the face-less ones, which have one row each) and the
    next image number. A kill while an image's rows were being written can leave some of them: that image's rows are
    all dropped, so it is analysed again, whole."""
    text, cut = _cut_partial_line(path)
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return set(), 0
    if rows[0] != columns:
        raise ValueError(f"--resume: {path} has other columns than this run writes (another model or --tasks?)")
    body, source, image = rows[1:], columns.index("input"), columns.index("image")
    if cut and body:
        last = body[-1][source]
        while body and body[-1][source] == last:
            body.pop()
        temporary = path.with_name(path.name + ".resume")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([columns, *body])
        os.replace(temporary, path)
    return {row[source] for row in body}, max((int(row[image]) for row in body), default=-1) + 1


def _cut_partial_line(path: Path) -> tuple[str, bool]:
    """The text of `path` up to its last newline, the file truncated there, and whether anything was cut: a kill
    while a line was being written leaves the start of it."""
    if not path.is_file():
        return "", False
    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) < len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(keep))
    return keep.decode("utf-8"), len(keep) < len(data)


__all__ = ["CsvWriter", "JsonLinesWriter", "open_writer", "strict_json"]
