# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""A video's results as an OpenFace 2 `FeatureExtraction` CSV (`qface analyze --openface-csv FILE`), for the
pipelines that parse exactly that (openFaceR, FACSvatar, lab scripts).

Columns, as OpenFace names and writes them (`", "` between fields, a row per face per frame, a row with
`success` 0 for a frame without a face):

| column | Q-Face source | convention |
|---|---|---|
| `frame` | the frame's index + 1 | 1-based, as OpenFace counts |
| `face_id` | `track_id` | one per person (0 for a frame without a face, as OpenFace) |
| `timestamp` | `timestamp_s` | seconds, from the frame's PTS |
| `confidence` | the detector's score | 0..1 |
| `success` | 1 when a face was found | 0/1 |
| `pose_Rx`, `pose_Ry`, `pose_Rz` | `-pitch`, `yaw`, `roll` in radians | OpenFace's camera axes (x right, y down, z away from the camera): head up is negative `pose_Rx`, the head turned to the person's right is positive `pose_Ry`, a clockwise tilt in the image is positive `pose_Rz` |
| `AUxx_c` | AU probability >= the AU threshold | presence 0/1, for the model's AUs |

Columns that cannot be filled are left out rather than faked: `gaze_*` (no gaze model), `pose_T*` (no 3-D head
position: no camera calibration), the 68 `x_*` / `y_*` / `X_*` landmarks and `p_*` shape parameters (the model has
5 points), and `AUxx_r` intensities (0-5): Q-Face's AU heads give probabilities of presence, not intensities.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..outputs.dataframe import au_column
from ..outputs.result_file import RecordFile
from ..outputs.writers import cut_partial_line

SEPARATOR = ", "  # OpenFace's own


def openface_columns(au_names: list[str]) -> list[str]:
    columns = ["frame", "face_id", "timestamp", "confidence", "success", "pose_Rx", "pose_Ry", "pose_Rz"]
    return columns + [f"{au_column(name)}_c" for name in au_names]


class OpenFaceWriter:
    """Writes one video's `FrameResult`s as OpenFace rows, each frame's in one write (`RecordFile`). `resume`:
    continue a file, skipping the frames it holds (it is written before the main results file, so it holds every
    frame that one does)."""

    def __init__(self, path: Path, au_names: list[str], au_threshold: dict | None = None, resume: bool = False):
        self.path, self.au_names = Path(path), list(au_names)
        self.au_threshold = au_threshold or dict.fromkeys(self.au_names, 0.5)
        self.columns = openface_columns(self.au_names)
        self.last_frame = _last_frame(self.path, self.columns) if resume else -1
        fresh = not (resume and self.path.is_file() and self.path.stat().st_size)
        self.file = RecordFile(self.path, append=not fresh)
        if fresh:
            self.file.write(SEPARATOR.join(self.columns) + "\n")

    def add(self, result) -> None:
        if result.frame <= self.last_frame:
            return
        rows = [self._row(result, face) for face in result.faces] or [self._row(result, None)]
        self.file.write("".join(SEPARATOR.join(row) + "\n" for row in rows))
        self.last_frame = result.frame

    def _row(self, result, face: dict | None) -> list[str]:
        row = [str(result.frame + 1), "0", f"{result.timestamp_s:.3f}"]
        if face is None:
            return row + ["0", "0"] + ["0"] * (len(self.columns) - 5)
        track_id = face.get("track_id")
        row[1] = str(track_id if track_id is not None else 0)
        row += [_number(face.get("score")), "1"]
        pose = face.get("head_pose")
        if pose:
            row += [_number(math.radians(v), 3) for v in (-pose["pitch"], pose["yaw"], pose["roll"])]
        else:
            row += ["0", "0", "0"]
        au = face.get("au", {})
        row += [str(int(au.get(name, 0.0) >= self.au_threshold[name])) if name in au else "0" for name in self.au_names]
        return row

    def close(self) -> None:
        self.file.close()


def _number(value, digits: int = 3) -> str:
    return "0" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _last_frame(path: Path, columns: list[str]) -> int:
    """The 0-based index of the last frame a file holds (a torn last line cut off first); -1 for none."""
    lines = cut_partial_line(path)[0].splitlines()
    if lines and lines[0].split(SEPARATOR) != columns:
        raise ValueError(f"--resume: {path} has other columns than this run's OpenFace table (another model?)")
    return int(lines[-1].split(SEPARATOR)[0]) - 1 if len(lines) > 1 else -1


__all__ = ["OpenFaceWriter", "openface_columns"]
