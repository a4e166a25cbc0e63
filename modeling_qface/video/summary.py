# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Per-person summaries of a video: when each `track_id` was seen, in how many frames, and the mean and spread of
every task's numbers over those frames (the time share of each top expression, mean AU and attribute
probabilities, mean age, mean and spread of the head pose).

`TrackSummaries` accumulates them frame by frame (a video of any length: sums, not rows); `track_summary` computes
the same table from a results table (`video_results_to_dataframe`, or a `qface analyze` CSV read with pandas).
"""

from __future__ import annotations

import math

import pandas as pd

from ..outputs.dataframe import FACE_COLUMNS, ID_COLUMNS, LANDMARK_COLUMNS, VIDEO_COLUMNS, video_results_to_dataframe

_NOT_SUMMARISED = {*ID_COLUMNS, *VIDEO_COLUMNS, *FACE_COLUMNS, *LANDMARK_COLUMNS}


class TrackSummaries:
    """Running per-track statistics of one video.

    Args:
        expression_labels (`list[str]`, *optional*): the columns whose largest value is a frame's top expression
            (the time share of each is reported); None: no shares.
    """

    def __init__(self, expression_labels: list[str] | None = None):
        self.expression_labels = list(expression_labels or [])
        self._tracks: dict[int, dict] = {}

    def add_rows(self, rows: pd.DataFrame) -> None:
        """Adds one frame's rows (or any rows of the video) to the statistics of their tracks."""
        for row in rows.to_dict("records"):
            track_id = row.get("track_id")
            if track_id is None or track_id is pd.NA or (isinstance(track_id, float) and math.isnan(track_id)):
                continue  # a frame without a face, or an untracked face
            track = self._tracks.setdefault(
                int(track_id), {"first_s": row["timestamp_s"], "frames": 0, "sums": {}, "squares": {}, "top": {}}
            )
            track["last_s"], track["frames"] = row["timestamp_s"], track["frames"] + 1
            for column, value in row.items():
                if column in _NOT_SUMMARISED or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                if math.isfinite(value):
                    track["sums"][column] = track["sums"].get(column, 0.0) + value
                    track["squares"][column] = track["squares"].get(column, 0.0) + value * value
            scores = {label: row[label] for label in self.expression_labels if _finite(row.get(label))}
            if scores:
                top = max(scores, key=scores.get)
                track["top"][top] = track["top"].get(top, 0) + 1

    def add(self, result, tasks=None) -> None:
        """Adds one `FrameResult`."""
        self.add_rows(video_results_to_dataframe([result], tasks=tasks))

    def records(self) -> list[dict]:
        """One JSON-ready dict per track, by `track_id`: `track_id`, `first_s`, `last_s`, `frames`, `mean` and
        `std` ({column: value}, the column names of the results table) and `expression_share` ({label: share of
        the track's frames where it was the top expression})."""
        records = []
        for track_id in sorted(self._tracks):
            track, count = self._tracks[track_id], self._tracks[track_id]["frames"]
            mean = {c: s / count for c, s in track["sums"].items()}
            std = {c: math.sqrt(max(track["squares"][c] / count - mean[c] ** 2, 0.0)) for c in mean}
            record = {"track_id": track_id, "first_s": track["first_s"], "last_s": track["last_s"], "frames": count}
            record.update(mean=mean, std=std)
            if self.expression_labels:
                record["expression_share"] = {
                    label: track["top"].get(label, 0) / count for label in self.expression_labels
                }
            records.append(record)
        return records

    def to_dataframe(self) -> pd.DataFrame:
        """`records` as a table: one row per track; columns `track_id`, `first_s`, `last_s`, `frames`, then
        `{column}_mean` and `{column}_std` for each summarised column, then `{label}_share`."""
        rows = []
        for record in self.records():
            row = {key: record[key] for key in ("track_id", "first_s", "last_s", "frames")}
            for column in record["mean"]:
                row[f"{column}_mean"], row[f"{column}_std"] = record["mean"][column], record["std"][column]
            row.update({f"{label}_share": share for label, share in record.get("expression_share", {}).items()})
            rows.append(row)
        return pd.DataFrame(rows, columns=None if rows else ["track_id", "first_s", "last_s", "frames"])


def track_summary(table: pd.DataFrame, expression_labels: list[str] | None = None) -> pd.DataFrame:
    """The per-track summary (`TrackSummaries.to_dataframe`) of a video's results table: `video_results_to_dataframe`
    output, or a `qface analyze` CSV of one video (`pd.read_csv`; filter a file of several videos by `input`
    first). `expression_labels`: default, the emotion columns the table has."""
    if expression_labels is None:
        from ..outputs.dataframe import EMOTION_COLUMNS

        expression_labels = [c for c in EMOTION_COLUMNS if c in table.columns]
    if "track_id" not in table.columns:
        raise ValueError("track_summary: expected a video results table (with track_id), got columns without it")
    summaries = TrackSummaries(expression_labels)
    summaries.add_rows(table)
    return summaries.to_dataframe()


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


__all__ = ["TrackSummaries", "track_summary"]
