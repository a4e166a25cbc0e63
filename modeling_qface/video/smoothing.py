# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Opt-in temporal smoothing of a video's answers, per person: a One-Euro filter (Casiez, Roussel and Vogel, CHI
2012), timed by the frames' timestamps. The raw per-frame values stay the canonical output; the smoothed ones are
added beside them (`face["smoothed"]`, the CSV's `*_smooth` columns), never in their place.

A One-Euro filter is a low-pass filter whose cut-off rises with the signal's speed: steady stretches are smoothed
hard (flicker of a probability between frames goes), fast changes (a smile starting) follow with little lag. Each
task's numbers are filtered as one vector with one cut-off, so smoothed expression probabilities still sum to 1.
"""

from __future__ import annotations

import math

import numpy as np

# For probabilities and degrees alike: 1 Hz on steady stretches; each unit per second of change adds `beta` Hz.
DEFAULT_MIN_CUTOFF_HZ = 1.0
DEFAULT_BETA = 0.5
DERIVATIVE_CUTOFF_HZ = 1.0


class OneEuroFilter:
    """One-Euro filter of a vector signal sampled at arbitrary times (seconds)."""

    def __init__(self, min_cutoff_hz: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA):
        if min_cutoff_hz <= 0 or beta < 0:
            raise ValueError(f"One-Euro filter: expected min_cutoff_hz > 0 and beta >= 0, got {min_cutoff_hz}, {beta}")
        self.min_cutoff_hz, self.beta = min_cutoff_hz, beta
        self._value = self._speed = self._time = None

    @staticmethod
    def _alpha(cutoff_hz: float, elapsed_s: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff_hz)
        return 1.0 / (1.0 + tau / elapsed_s)

    def __call__(self, value, timestamp_s: float) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None or timestamp_s <= self._time:
            self._value, self._speed, self._time = value, np.zeros_like(value), timestamp_s
            return value
        elapsed = timestamp_s - self._time
        speed = (value - self._value) / elapsed
        self._speed = self._speed + self._alpha(DERIVATIVE_CUTOFF_HZ, elapsed) * (speed - self._speed)
        cutoff = self.min_cutoff_hz + self.beta * float(np.linalg.norm(self._speed))
        self._value = self._value + self._alpha(cutoff, elapsed) * (value - self._value)
        self._time = timestamp_s
        return self._value


class TrackSmoother:
    """Adds `face["smoothed"]` to each tracked face of each frame: the face's task answers (`expression` scores,
    `au`, `attributes`, `age` years and std, `head_pose`, added tasks' numbers) filtered along its track."""

    def __init__(self, min_cutoff_hz: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA):
        OneEuroFilter(min_cutoff_hz, beta)  # checks the settings now
        self.min_cutoff_hz, self.beta = min_cutoff_hz, beta
        self._filters: dict[tuple[int, str], OneEuroFilter] = {}

    def add(self, result) -> None:
        """A step of a video's frames, as the side writers are (`analysis/video_run.py`): smooths in place."""
        self(result)

    def close(self) -> None:
        pass

    def __call__(self, result):
        """Smooths one `FrameResult` in place (and returns it); untracked faces get no `smoothed`."""
        for face in result.faces:
            if face.get("track_id") is None:
                continue
            smoothed = {}
            for task, numbers in _task_numbers(face).items():
                key = (face["track_id"], task)
                if key not in self._filters:
                    self._filters[key] = OneEuroFilter(self.min_cutoff_hz, self.beta)
                values = self._filters[key](list(numbers.values()), result.timestamp_s)
                smoothed[task] = dict(zip(numbers, (float(v) for v in values)))
            face["smoothed"] = {
                task: {"label": max(values, key=values.get), "scores": values} if task == "expression" else values
                for task, values in smoothed.items()
            }
        return result


def _task_numbers(face: dict) -> dict[str, dict[str, float]]:
    """{task: {key: number}} of a face's answers (the expression's under its scores)."""
    numbers = {}
    for task, value in face.items():
        if task in ("box", "score", "landmarks", "track_id", "au_active", "smoothed", "attention", "stage_usage"):
            continue
        if isinstance(value, dict):
            value = value.get("scores", value) if task == "expression" or "scores" in value else value
            found = {k: float(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if found:
                numbers[task] = found
    return numbers


__all__ = ["OneEuroFilter", "TrackSmoother"]
