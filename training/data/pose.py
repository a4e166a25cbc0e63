# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Head pose: 300W-LP (training) and AFLW2000 (testing) (Zhu et al., CVPR 2016), as distributed.

Every `*.jpg` under `root` has a MATLAB file of the same stem next to it (`300W_LP/AFW/AFW_134212_1_0.jpg` +
`.mat`; `AFLW2000/image00002.jpg` + `.mat`) whose `Pose_Para` row holds pitch, yaw, roll in radians, then the
translation and scale. Q-Face stores `head_pose = [yaw, pitch, roll]` in degrees, keeping the dataset's sign
convention (the one Hopenet / 6DRepNet report with): `yaw = deg(Pose_Para[1])`, `pitch = deg(Pose_Para[0])`,
`roll = deg(Pose_Para[2])`.

AFLW2000 protocol: only samples whose three angles all lie in [-99, 99] degrees are evaluated (31 of 2,000 are not);
the dropped ones are counted in the load report under "angle outside [-99, 99] deg".

300W-LP: the synthesized views of one face (`AFW_134212_1_0` ... `_17`, and their `_Flip` twins) share a
`subject_id` (`AFW_134212_1`), so a validation split carved by subject keeps them together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io

from .base import SourceAdapter, file_stat
from .errors import DataFormatError, LoadReport
from .schema import empty_row

AFLW2000_MAX_ABS_DEGREES = 99.0
_VIEW_SUFFIX = re.compile(r"_\d+$")


def read_pose_degrees(mat_path: Path) -> list[float]:
    """`[yaw, pitch, roll]` in degrees from a 300W-LP / AFLW2000 `.mat` file's `Pose_Para`."""
    try:
        content = scipy.io.loadmat(str(mat_path))
    except Exception as error:  # scipy raises several types (ValueError, MatReadError, OSError) for unreadable files
        raise DataFormatError(mat_path, None, f"cannot read MATLAB file: {error}") from None
    if "Pose_Para" not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DataFormatError(mat_path, None, f"no 'Pose_Para' variable; found {found}")
    params = np.asarray(content["Pose_Para"], dtype=np.float64).ravel()
    if params.size < 3 or not np.all(np.isfinite(params[:3])):
        message = f"Pose_Para: expected finite pitch, yaw, roll first, got {params[:3].tolist()}"
        raise DataFormatError(mat_path, None, message)
    pitch, yaw, roll = (math.degrees(v) for v in params[:3])
    return [yaw, pitch, roll]


class _PoseSource(SourceAdapter):
    def _images(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.jpg") if p.is_file())

    def fingerprint_inputs(self, split: str) -> list:
        return [file_stat(p.with_suffix(".mat")) if p.with_suffix(".mat").exists() else str(p) for p in self._images()]

    def subject_of(self, image: Path) -> str:
        return ""

    def keep(self, pose: list[float], report: LoadReport) -> bool:
        return True

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        self.check_split(split)
        for image in self._images():
            mat_path = image.with_suffix(".mat")
            try:
                if not mat_path.is_file():
                    raise DataFormatError(image, None, f"no pose file next to the image (expected {mat_path.name})")
                pose = read_pose_degrees(mat_path)
            except DataFormatError as error:
                report.record_error(error)
                continue
            if not self.keep(pose, report):
                continue
            row = empty_row(str(image), self.name, subject_id=self.subject_of(image))
            row["head_pose"] = pose
            yield row


class Pose300WLPSource(_PoseSource):
    """300W-LP (the 4 subsets and their `_Flip` folders under `root`). Only split: "train"."""

    name = "300w_lp"
    splits = ("train",)

    def subject_of(self, image: Path) -> str:
        return _VIEW_SUFFIX.sub("", image.stem)


class AFLW2000Source(_PoseSource):
    """AFLW2000-3D. Only split: "test". Option: `max_abs_degrees` (default 99; None keeps every sample)."""

    name = "aflw2000"
    splits = ("test",)

    def __init__(self, root, max_abs_degrees: float | None = AFLW2000_MAX_ABS_DEGREES):
        super().__init__(root)
        self.options = {"max_abs_degrees": max_abs_degrees}

    def keep(self, pose: list[float], report: LoadReport) -> bool:
        limit = self.options["max_abs_degrees"]
        if limit is not None and any(abs(angle) > limit for angle in pose):
            report.record_filtered(f"angle outside [-{limit:g}, {limit:g}] deg")
            return False
        return True
