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


def open_writer(path: Path, tasks: list[dict], resume: bool = False, video: bool = False, smoothed: bool = False):
    """The writer of `--output`'s format. `tasks`: the task dicts the run computes (they make the CSV columns);
    `resume`: append to the file, its inputs in the writer's `done`; `video`: the run has videos (a CSV gets the
    `frame`, `timestamp_s` and `track_id` columns; a resumed CSV that has them keeps them); `smoothed`: a CSV also
    gets the `*_smooth` columns (`--smooth`)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # checked before the model loaded: `check_output_file`
    # .parquet: a folder of parts (`parquet.ParquetWriter`), the CSV's columns.
    if path.suffix.lower() in (".csv", ".parquet"):
        from .dataframe import dataframe_columns

        columns = dataframe_columns(tasks, video=video, smoothed=smoothed)
        if resume and not video and _csv_header(path) == dataframe_columns(tasks, video=True, smoothed=smoothed):
            columns = dataframe_columns(tasks, video=True, smoothed=smoothed)  # a file with videos, resumed with photos
        if path.suffix.lower() == ".parquet":
            from .parquet import ParquetWriter

            return ParquetWriter(path, dataframe_columns(tasks, video=video, smoothed=smoothed), resume)
        return CsvWriter(path, columns, resume)
    return JsonLinesWriter(path, resume)


class _ResultWriter:
    """What both writers share: `file` (a `RecordFile`); `done`, the inputs the file holds whole (`resume`); and
    `frames`, the analysed frames of the videos it holds part of: `{video: {frame: [(box, score, track_id)]}}`,
    from which a resumed run continues each video (`VideoAnalyzer` replays them into its tracker)."""

    file: RecordFile
    done: set[str]
    frames: dict[str, dict[int, list[tuple]]]

    def holds(self, source) -> bool:
        """Whether the file has `source`'s results already (`--resume`), its name compared as the file writes it."""
        return portable_text(str(source)) in self.done

    def recorded_results(self, source) -> list:
        """The frames of video `source` the file holds, with their faces (for its summary); `[]` where the format
        has no summary (CSV)."""
        return []

    def frames_of(self, source) -> dict[int, list[tuple]]:
        """The frames of video `source` the file holds (a run that stopped part-way through it), by index."""
        return self.frames.get(portable_text(str(source)), {})

    def close(self) -> None:
        self.file.close()


class JsonLinesWriter(_ResultWriter):
    """One strict-JSON line per image (or failed input), written and flushed as soon as the image is done, so a run
    that dies leaves every finished image in the file. A video has one line per analysed frame (`frame`,
    `timestamp_s`, `faces` with their `track_id`) and, once it is done, a last line with `video` (what the file
    is), `frames` (how many were analysed) and `tracks` (a summary per person). `done`: the inputs the file held
    already (`resume`)."""

    def __init__(self, path: Path, resume: bool = False):
        self.done, self.frames = _resume_jsonl(path) if resume else (set(), {})
        self.file = RecordFile(path, append=resume)

    def add(self, source: Path, faces: list[dict]) -> None:
        self._write({"input": str(source), "faces": _without_arrays(faces)})

    def add_frame(self, source: Path, result) -> None:
        """One analysed frame of a video (a `FrameResult`)."""
        record = {"input": str(source), "frame": result.frame, "timestamp_s": result.timestamp_s}
        self._write({**record, "faces": _without_arrays(result.faces)})

    def add_video_end(self, source: Path, record: dict) -> None:
        """The last line of a video: what it is, how many frames were analysed, and its per-track summary."""
        self._write({"input": str(source), **record})

    def add_failure(self, source: str, reason: str) -> None:
        self._write({"input": str(source), "error": reason})

    def recorded_results(self, source) -> list:
        from types import SimpleNamespace

        key, found = portable_text(str(source)), []
        with self.file.path.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line) if line.strip() else {}
                if record.get("input") == key and "frame" in record:
                    found.append(
                        SimpleNamespace(frame=record["frame"], timestamp_s=record["timestamp_s"], faces=record["faces"])
                    )
        return found

    def _write(self, record: dict) -> None:
        self.file.write(strict_json(record) + "\n")  # one write per image: a kill or a full disk leaves no torn line


def _without_arrays(faces: list[dict]) -> list[dict]:
    return [{k: v for k, v in face.items() if k != "attention"} for face in faces]  # arrays go to figures


class CsvWriter(_ResultWriter):
    """One row per face, and one row per image without a face (its `input` and `image`, every other column empty,
    `face` included): the header first, then each image's rows, written and flushed as soon as the image is done.
    A video has one row per face per analysed frame (and one per frame without a face), with `frame`,
    `timestamp_s` and `track_id`, written as each frame is done.

    The columns are fixed up front (`dataframe_columns` of the computed tasks: only their columns), so a file cut
    short is still a valid table. `image` numbers the analysed inputs in order (a resumed file's numbers continue).
    Failed inputs have no rows (the summary reports them; `--resume` tries them again). `done`: the photos the file
    held already, face-less images included; `frames`: the frames of the videos it holds (a CSV does not say
    whether a video was finished: a resumed run reads such a video to its end, analysing only the frames after the
    last one here).
    """

    def __init__(self, path: Path, columns: list[str], resume: bool = False):
        self.columns = columns
        self.video = "frame" in columns
        self.done, self.frames, self.images = _resume_csv(path, columns) if resume else (set(), {}, {})
        self.next_image = max(self.images.values(), default=-1) + 1
        fresh = not (resume and path.is_file() and path.stat().st_size)
        self.file = RecordFile(path, append=not fresh)
        if fresh:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(columns)
            self.file.write(header.getvalue())

    def add(self, source: Path, faces: list[dict]) -> None:
        from .dataframe import results_to_dataframe

        self._write(results_to_dataframe([faces], [source]), self._image(source))  # [[]]: one face-less row

    def add_frame(self, source: Path, result) -> None:
        """One analysed frame of a video (a `FrameResult`): its rows."""
        from .dataframe import video_results_to_dataframe

        self._write(video_results_to_dataframe([result], source), self._image(source))

    def add_video_end(self, source: Path, record: dict) -> None:
        pass  # the per-track summary is in the JSONL; for a CSV, `track_summary` computes it from the rows

    def add_failure(self, source: str, reason: str) -> None:
        pass  # a CSV holds analysed images only (the summary reports failures)

    def _image(self, source) -> int:
        key = portable_text(str(source))
        if key not in self.images:
            self.images[key], self.next_image = self.next_image, self.next_image + 1
        return self.images[key]

    def _write(self, frame, image: int) -> None:
        unexpected = [c for c in frame.columns if c not in self.columns and frame[c].notna().any()]
        if unexpected:  # a bug in dataframe_columns: better stop than drop numbers silently
            raise RuntimeError(f"CSV columns {sorted(unexpected)} were not derived from the model's tasks")
        frame = frame.reindex(columns=self.columns).assign(image=image)
        self.file.write(frame.to_csv(header=False, index=False, lineterminator="\n"))  # one write per record


def _resume_jsonl(path: Path) -> tuple[set[str], dict]:
    """The inputs a JSON Lines output holds whole, and the frames of the videos it holds part of (a line cut short
    by a kill is cut off first)."""
    text, _ = cut_partial_line(path)
    done, frames = set(), {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            source = record["input"]
            if "frame" in record:
                faces = [(face["box"], face.get("score"), face.get("track_id")) for face in record["faces"]]
                frames.setdefault(source, {})[int(record["frame"])] = faces
            else:
                done.add(source)  # a photo, a failed input, or the last line of a finished video
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"--resume: {path} line {number} is not a qface analyze result ({error})") from error
    return done, {source: found for source, found in frames.items() if source not in done}


def _csv_header(path: Path) -> list[str] | None:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError):
        return None


def _resume_csv(path: Path, columns: list[str]) -> tuple[set[str], dict, dict[str, int]]:
    """The photos a CSV output holds (those with faces and the face-less ones, which have one row each), the frames
    of its videos, and each input's `image` number. A kill while a record's rows were being written can leave some
    of them: that record's rows (one image, or one frame of a video) are all dropped, so it is analysed again."""
    text, cut = cut_partial_line(path)
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return set(), {}, {}
    if rows[0] != columns:
        raise ValueError(f"--resume: {path} has other columns than this run writes (another model or --tasks?)")
    body, source, image = rows[1:], columns.index("input"), columns.index("image")
    frame = columns.index("frame") if "frame" in columns else None
    record = (lambda row: (row[source], row[frame])) if frame is not None else (lambda row: row[source])
    if cut and body:
        last = record(body[-1])
        while body and record(body[-1]) == last:
            body.pop()
        temporary = path.with_name(path.name + ".resume")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([columns, *body])
        os.replace(temporary, path)
    done, frames, images = set(), {}, {}
    box = [columns.index(c) for c in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight")]
    score, face, track = (
        columns.index("FaceScore"),
        columns.index("face"),
        columns.index("track_id") if frame is not None else None,
    )
    for row in body:
        images[row[source]] = int(row[image])
        if frame is None or row[frame] == "":
            done.add(row[source])
            continue
        faces = frames.setdefault(row[source], {}).setdefault(int(row[frame]), [])
        if row[face] != "":
            x, y, width, height = (float(row[i]) for i in box)
            faces.append(([x, y, x + width, y + height], _number(row[score]), _number(row[track], int)))
    return done, frames, images


def _number(text: str, kind=float):
    return kind(float(text)) if text not in ("", "nan", "NaN") else None


def cut_partial_line(path: Path) -> tuple[str, bool]:
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


__all__ = ["CsvWriter", "JsonLinesWriter", "cut_partial_line", "open_writer", "strict_json"]
