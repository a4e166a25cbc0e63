# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""A video's answers over time, per person: the timeline figure of the HTML report (`report.write_report`).

One panel per `track_id` (the people seen longest first, at most `max_tracks`): the expression probabilities as
lines, the attribute probabilities dashed, against the frames' timestamps (seconds); a last panel has every
person's yaw and pitch (degrees). Gaps where a person was not seen stay gaps.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or opened
import matplotlib.pyplot as plt  # noqa: E402


def _series(frames: list[dict]) -> dict[int, dict[str, list]]:
    """{track_id: {"t": [...], name: [...]}} from JSONL frame records (each face's numbers by name)."""
    tracks: dict[int, dict[str, list]] = {}
    for record in frames:
        for face in record.get("faces", []):
            if face.get("track_id") is None:
                continue
            values = {"t": record["timestamp_s"]}
            values.update(face.get("expression", {}).get("scores", {}))
            values.update({f"{k} (attribute)": v for k, v in face.get("attributes", {}).items()})
            values.update({f"{k} (deg)": v for k, v in face.get("head_pose", {}).items() if k in ("yaw", "pitch")})
            series = tracks.setdefault(face["track_id"], {})
            length = len(series.get("t", []))
            for name, value in values.items():
                series.setdefault(name, [math.nan] * length).append(value)
            for name in series:
                if len(series[name]) == length:
                    series[name].append(math.nan)
    return tracks


def _with_gaps(series: dict[str, list], gap_s: float) -> dict[str, list]:
    """The series with a NaN between two sightings more than `gap_s` apart, so the plot shows the absence."""
    out = {name: [] for name in series}
    times = series["t"]
    for index, time in enumerate(times):
        if index and time - times[index - 1] > gap_s:
            for name in out:
                out[name].append((time + times[index - 1]) / 2 if name == "t" else math.nan)
        for name in out:
            out[name].append(series[name][index])
    return out


def timeline_figure(frames: list[dict], max_tracks: int = 6, title: str | None = None):
    """The timeline of a video's frame records (`qface analyze` JSONL lines with `frame`); a matplotlib Figure,
    or None when no face was tracked."""
    tracks = _series(frames)
    if not tracks:
        return None
    times = sorted({record["timestamp_s"] for record in frames})
    step = sorted(b - a for a, b in zip(times, times[1:]))[len(times) // 2 - 1] if len(times) > 2 else 1.0
    tracks = {track_id: _with_gaps(series, 2.5 * step) for track_id, series in tracks.items()}
    shown = sorted(tracks, key=lambda t: -len(tracks[t]["t"]))[:max_tracks]
    figure, axes = plt.subplots(len(shown) + 1, 1, figsize=(10, 2.2 * (len(shown) + 1)), sharex=True, squeeze=False)
    for axis, track_id in zip(axes[:, 0], sorted(shown)):
        series = tracks[track_id]
        for name, values in series.items():
            if name == "t" or name.endswith("(deg)"):
                continue
            axis.plot(series["t"], values, ("--" if name.endswith("(attribute)") else "-"), label=name, linewidth=1.2)
        axis.set_ylim(-0.02, 1.02)
        axis.set_ylabel(f"id {track_id}\nprobability")
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    pose = axes[-1, 0]
    for track_id in sorted(shown):
        series = tracks[track_id]
        for name, style in (("yaw (deg)", "-"), ("pitch (deg)", ":")):
            if name in series:
                pose.plot(series["t"], series[name], style, label=f"id {track_id} {name}", linewidth=1.2)
    pose.set_ylabel("head pose\ndegrees")
    pose.set_xlabel("time (s)")
    pose.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


__all__ = ["timeline_figure"]
