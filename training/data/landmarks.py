# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Face hints from what datasets ship: the 5 alignment points (from 68-point annotations) and boxes.

The 5 points follow `schema`'s "Face hints": image-left eye, image-right eye, nose tip, image-left mouth corner,
image-right mouth corner, as `[x, y]` floats in the image file's pixel coordinates.

iBUG 68-point markup (0-based indices), as 300W-LP, AFLW2000-3D and UTKFace use it:
    36..41  the eye on the image's left (the subject's right eye)
    42..47  the eye on the image's right
    30      nose tip
    48, 54  mouth corners, image-left and image-right
"""

from __future__ import annotations

import math

import numpy as np

_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = 30, 48, 54


def _xy_rows(points) -> np.ndarray:
    """(68, 2) float64 x, y from (68, 2), (68, 3), (2, 68) or (3, 68); ValueError naming the shape otherwise."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 2 and array.shape[0] == 68 and array.shape[1] in (2, 3):
        return array[:, :2]
    if array.ndim == 2 and array.shape[1] == 68 and array.shape[0] in (2, 3):
        return array[:2].T
    raise ValueError(f"expected 68 landmarks as (68, 2|3) or (2|3, 68), got shape {array.shape}")


def five_points_from_68(points) -> list[list[float]]:
    """The 5 alignment points from iBUG 68-point landmarks (x, y taken; a z row/column is dropped).

    Eyes are the means of their 6 contour points; nose tip and mouth corners are points 30, 48 and 54.
    Raises `ValueError` naming the shape when `points` is not 68 points, or when a used point is not finite.
    """
    xy = _xy_rows(points)
    five = np.stack(
        [xy[_LEFT_EYE].mean(axis=0), xy[_RIGHT_EYE].mean(axis=0), xy[_NOSE_TIP], xy[_MOUTH_LEFT], xy[_MOUTH_RIGHT]]
    )
    if not np.all(np.isfinite(five)):
        raise ValueError(f"68 landmarks: the eye, nose tip and mouth corner points must be finite, got {five.tolist()}")
    return five.tolist()


def _finite(value) -> bool:
    return (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, (int, float, np.integer, np.floating))
        and math.isfinite(value)
    )


def five_points(values, where: str) -> list[list[float]]:
    """`values` as 5 `[x, y]` float pairs; ValueError naming `where` (the field) when they are not 5 finite pairs."""
    expected = f"{where}: expected 5 [x, y] pairs of finite numbers"
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or len(values) != 5:
        raise ValueError(f"{expected}, got {values!r}")
    for pair in values:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_finite(v) for v in pair):
            raise ValueError(f"{expected}, got {values!r}")
    return [[float(x), float(y)] for x, y in values]


def box(values, where: str) -> list[float]:
    """`values` as `[x1, y1, x2, y2]` floats with x1 < x2 and y1 < y2; ValueError naming `where` otherwise."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or len(values) != 4 or not all(_finite(v) for v in values):
        raise ValueError(f"{where}: expected [x1, y1, x2, y2] finite numbers, got {values!r}")
    x1, y1, x2, y2 = (float(v) for v in values)
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"{where}: expected x1 < x2 and y1 < y2, got {values!r}")
    return [x1, y1, x2, y2]
