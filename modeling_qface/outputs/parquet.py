# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`--output rows.parquet`: the face table (the CSV's rows and columns) as a Parquet dataset, a folder of parts.

A Parquet file is only readable once its footer is written, so one growing file would be lost whole by a kill.
Instead the rows go to `part-00000.parquet`, `part-00001.parquet`, ... in the folder, each written to a temporary
name and renamed when complete, so the folder is always a valid dataset (`pandas.read_parquet(folder)`,
`datasets.load_dataset("parquet", data_dir=folder)`). A part is written when `ROWS_PER_PART` rows are waiting, when
`SECONDS_PER_PART` seconds have passed since the last one, and at the end of each input: a kill loses at most those
seconds of work, which `--resume` redoes (it reads the parts for the photos and video frames they hold, as for a
CSV; half-written temporary parts are removed).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pandas as pd

from .result_file import OutputWriteError, portable_text

ROWS_PER_PART = 5000
SECONDS_PER_PART = 10.0
# Column types that must not depend on which rows a part has (a photo-only part has no frame numbers).
NULLABLE_INTEGERS = ("image", "face", "frame", "track_id")


class ParquetWriter:
    """The writer of a Parquet dataset folder: the `CsvWriter` interface (`add`, `add_frame`, `holds`, `frames_of`,
    ...), rows buffered and written as whole parts."""

    def __init__(self, folder: Path, columns: list[str], resume: bool = False):
        self.folder, self.columns = Path(folder), columns
        self.video = "frame" in columns
        self.done, self.frames, self.images = _resume_parts(self.folder, columns) if resume else (set(), {}, {})
        self.next_image = max(self.images.values(), default=-1) + 1
        if not resume:
            for old in self.folder.glob("part-*.parquet"):  # --overwrite: the old parts go
                old.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.next_part = 1 + max((int(p.stem.split("-")[1]) for p in self.folder.glob("part-*.parquet")), default=-1)
        self._pending: list[pd.DataFrame] = []
        self._pending_rows, self._last_write = 0, time.monotonic()

    def holds(self, source) -> bool:
        return portable_text(str(source)) in self.done

    def frames_of(self, source) -> dict[int, list[tuple]]:
        return self.frames.get(portable_text(str(source)), {})

    def recorded_results(self, source) -> list:
        return []  # the per-track summary is in the JSONL; `track_summary` computes it from the rows

    def add(self, source: Path, faces: list[dict]) -> None:
        from .dataframe import results_to_dataframe

        self._buffer(results_to_dataframe([faces], [source]), source)
        self._flush()  # a photo is an input: its rows are written at once

    def add_frame(self, source: Path, result) -> None:
        from .dataframe import video_results_to_dataframe

        self._buffer(video_results_to_dataframe([result], source), source)
        if self._pending_rows >= ROWS_PER_PART or time.monotonic() - self._last_write >= SECONDS_PER_PART:
            self._flush()

    def add_video_end(self, source: Path, record: dict) -> None:
        self._flush()

    def add_failure(self, source: str, reason: str) -> None:
        pass  # as a CSV: analysed inputs only (the summary reports failures)

    def close(self) -> None:
        self._flush()

    def _buffer(self, frame: pd.DataFrame, source) -> None:
        key = portable_text(str(source))
        if key not in self.images:
            self.images[key], self.next_image = self.next_image, self.next_image + 1
        frame = frame.reindex(columns=self.columns).assign(image=self.images[key])
        self._pending.append(frame)
        self._pending_rows += len(frame)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pd.concat(self._pending, ignore_index=True)
        table = table.astype({c: "Int64" for c in NULLABLE_INTEGERS if c in table.columns})
        table = table.astype({c: "float64" for c in table.columns if c not in NULLABLE_INTEGERS and c != "input"})
        path = self.folder / f"part-{self.next_part:05d}.parquet"
        temporary = self.folder / f".{path.name}.tmp"
        try:
            table.to_parquet(temporary, index=False)
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise OutputWriteError(
                error.errno, f"cannot write {path}: {error.strerror or error}", os.fspath(path)
            ) from error
        self.next_part += 1
        self._pending, self._pending_rows, self._last_write = [], 0, time.monotonic()


def check_parquet_output(folder: Path, option: str = "--output", resume: bool = False, overwrite: bool = False):
    """`check_output_file` for a Parquet dataset folder: refused when it is a file, when it holds parts already
    (unless `resume` or `overwrite`), or when it cannot be written."""
    from .result_file import OutputExistsError, check_output_folder

    folder = Path(folder)
    if folder.is_file():
        raise OutputWriteError(
            errno.ENOTDIR, f"{option} {folder}: a Parquet output is a folder of parts, not a file", str(folder)
        )
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if parts and not resume and not overwrite:
        raise OutputExistsError(
            errno.EEXIST,
            f"{option} {folder} already holds results ({len(parts)} parts): --resume continues it, "
            "--overwrite replaces it",
            str(folder),
        )
    check_output_folder(folder, option)


def _resume_parts(folder: Path, columns: list[str]) -> tuple[set[str], dict, dict[str, int]]:
    """What the finished parts hold: the photos, the video frames (boxes, scores, ids) and each input's number."""
    for temporary in folder.glob(".part-*.tmp"):  # a part a kill left half-written
        temporary.unlink()
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return set(), {}, {}
    table = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    if list(table.columns) != columns:
        raise ValueError(f"--resume: {folder} has other columns than this run writes (another model or --tasks?)")
    done, frames, images = set(), {}, {}
    for row in table.to_dict("records"):
        images[row["input"]] = int(row["image"])
        if "frame" not in columns or pd.isna(row["frame"]):
            done.add(row["input"])
            continue
        faces = frames.setdefault(row["input"], {}).setdefault(int(row["frame"]), [])
        if not pd.isna(row["face"]):
            x, y = row["FaceRectX"], row["FaceRectY"]
            box = [x, y, x + row["FaceRectWidth"], y + row["FaceRectHeight"]]
            track = None if pd.isna(row["track_id"]) else int(row["track_id"])
            faces.append((box, None if pd.isna(row["FaceScore"]) else float(row["FaceScore"]), track))
    return done, frames, images


__all__ = ["ParquetWriter", "ROWS_PER_PART", "SECONDS_PER_PART", "check_parquet_output"]
