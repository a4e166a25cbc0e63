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
`subject_id` (`AFW_134212_1`), so a validation split carved by subject keeps them together. With `val_fraction > 0`
(e.g. 0.05) the split "val" holds that fraction of these source faces (all their views and flips; a seeded SHA-256 of
the id, `seed`) and "train" the rest: pose model selection on held-out 300W-LP faces, since AFLW2000 is a test set
only. 300W-LP has no identity labels (one person may appear in two source photos of 300W), so the carve is exclusive
by source photo, not by identity. The default 0 keeps "train" = every image.

Face hints: the `.mat` file's 68 iBUG landmarks become `face_landmarks` (see `landmarks.five_points_from_68`):
`pt3d_68` (3 x 68, x and y in image pixels) when present, else `pt2d` when it is 2 x 68 (300W-LP). AFLW2000's `pt2d`
holds AFLW's 21 points (2 x 21), so its landmarks come from `pt3d_68`. A file with neither gets no hint.

AFLW2000 `crop="loose"` instead emits the literature's protocol crop as `crop_box` (no landmarks): the loose box
Hopenet (deep-head-pose `code/datasets.py`) and 6DRepNet (`sixdrepnet/datasets.py`, class `AFLW2000`) cut around
`pt2d`, with the same sequential updates (later lines use the already-moved edges) and the `int()` truncation of their
`img.crop((int(x_min), int(y_min), int(x_max), int(y_max)))`:
    x_min, x_max, y_min, y_max = min / max of pt2d[0], pt2d[1];  k = 0.20
    x_min -= 2 * k * |x_max - x_min|;  y_min -= 2 * k * |y_max - y_min|
    x_max += 2 * k * |x_max - x_min|;  y_max += 0.6 * k * |y_max - y_min|
Use it to compare with published AFLW2000 numbers; the default "qface" crop is the 5-point-aligned one.
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
from .landmarks import five_points_from_68
from .schema import empty_row
from .splits import carve

AFLW2000_MAX_ABS_DEGREES = 99.0
AFLW2000_CROPS = ("qface", "loose")
LOOSE_CROP_K = 0.20
_VIEW_SUFFIX = re.compile(r"_\d+$")


def read_mat(mat_path: Path) -> dict:
    """The variables of a 300W-LP / AFLW2000 `.mat` file; DataFormatError when it cannot be read."""
    try:
        return scipy.io.loadmat(str(mat_path))
    except Exception as error:  # scipy raises several types (ValueError, MatReadError, OSError) for unreadable files
        raise DataFormatError(mat_path, None, f"cannot read MATLAB file: {error}") from None


def pose_degrees(content: dict, mat_path: Path) -> list[float]:
    """`[yaw, pitch, roll]` in degrees from a loaded `.mat` file's `Pose_Para`."""
    if "Pose_Para" not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DataFormatError(mat_path, None, f"no 'Pose_Para' variable; found {found}")
    params = np.asarray(content["Pose_Para"], dtype=np.float64).ravel()
    if params.size < 3 or not np.all(np.isfinite(params[:3])):
        message = f"Pose_Para: expected finite pitch, yaw, roll first, got {params[:3].tolist()}"
        raise DataFormatError(mat_path, None, message)
    pitch, yaw, roll = (math.degrees(v) for v in params[:3])
    return [yaw, pitch, roll]


def read_pose_degrees(mat_path: Path) -> list[float]:
    """`[yaw, pitch, roll]` in degrees from a 300W-LP / AFLW2000 `.mat` file's `Pose_Para`."""
    return pose_degrees(read_mat(mat_path), mat_path)


def landmarks_from_mat(content: dict, mat_path: Path) -> list[list[float]] | None:
    """The 5 points from `pt3d_68` (3 x 68), else from a 2 x 68 `pt2d`; None when the file has neither."""
    if "pt3d_68" in content:
        variable = "pt3d_68"
    elif "pt2d" in content and np.shape(content["pt2d"]) == (2, 68):
        variable = "pt2d"
    else:
        return None
    try:
        return five_points_from_68(content[variable])
    except ValueError as error:
        raise DataFormatError(mat_path, None, f"{variable}: {error}") from None


def loose_crop_box(content: dict, mat_path: Path) -> list[float]:
    """Hopenet / 6DRepNet's AFLW2000 test crop around `pt2d` (see the module docstring), int-truncated like theirs."""
    if "pt2d" not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DataFormatError(mat_path, None, f"no 'pt2d' variable (the loose crop is cut around it); found {found}")
    pt2d = np.asarray(content["pt2d"], dtype=np.float64)
    if pt2d.ndim != 2 or pt2d.shape[0] < 2 or pt2d.shape[1] == 0 or not np.all(np.isfinite(pt2d[:2])):
        raise DataFormatError(mat_path, None, f"pt2d: expected 2 x N finite landmarks, got shape {pt2d.shape}")
    x_min, y_min = float(min(pt2d[0, :])), float(min(pt2d[1, :]))
    x_max, y_max = float(max(pt2d[0, :])), float(max(pt2d[1, :]))
    k = LOOSE_CROP_K
    x_min -= 2 * k * abs(x_max - x_min)
    y_min -= 2 * k * abs(y_max - y_min)
    x_max += 2 * k * abs(x_max - x_min)
    y_max += 0.6 * k * abs(y_max - y_min)
    return [float(int(x_min)), float(int(y_min)), float(int(x_max)), float(int(y_max))]


class _PoseSource(SourceAdapter):
    def _images(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.jpg") if p.is_file())

    def fingerprint_inputs(self, split: str) -> list:
        return [file_stat(p.with_suffix(".mat")) if p.with_suffix(".mat").exists() else str(p) for p in self._images()]

    def subject_of(self, image: Path) -> str:
        return ""

    def keep(self, pose: list[float], report: LoadReport) -> bool:
        return True

    def face_hints(self, content: dict, mat_path: Path) -> dict:
        """The face hint keys from a loaded `.mat` file: the 5 points of its 68 landmarks, when it has them."""
        landmarks = landmarks_from_mat(content, mat_path)
        return {} if landmarks is None else {"face_landmarks": landmarks}

    def images_of(self, split: str) -> list[Path]:
        """The images of `split` (every image, for a source with one split)."""
        return self._images()

    def iter_rows(self, split: str, report: LoadReport) -> Iterator[dict]:
        self.check_split(split)
        for image in self.images_of(split):
            mat_path = image.with_suffix(".mat")
            try:
                if not mat_path.is_file():
                    raise DataFormatError(image, None, f"no pose file next to the image (expected {mat_path.name})")
                content = read_mat(mat_path)
                pose = pose_degrees(content, mat_path)
                if not self.keep(pose, report):
                    continue
                hints = self.face_hints(content, mat_path)
            except DataFormatError as error:
                report.record_error(error)
                continue
            row = empty_row(str(image), self.name, subject_id=self.subject_of(image))
            row["head_pose"] = pose
            row.update(hints)
            yield row


class Pose300WLPSource(_PoseSource):
    """300W-LP (the 4 subsets and their `_Flip` folders under `root`). Split "train"; with `val_fraction > 0` (default
    0) also "val", that fraction of the source faces (`seed`, default 0), "train" then holding the others."""

    name = "300w_lp"
    splits = ("train",)

    def __init__(self, root, val_fraction: float = 0.0, seed: int = 0):
        super().__init__(root)
        if problem := self.option_problems({"val_fraction": val_fraction}).get("val_fraction"):
            raise ValueError(f"300w_lp: val_fraction: {problem}")
        self.options = {"val_fraction": val_fraction, "seed": seed}
        self.splits = self.known_splits(self.options)

    @classmethod
    def known_splits(cls, options: dict) -> tuple[str, ...]:
        return ("train", "val") if options.get("val_fraction") else ("train",)

    @classmethod
    def option_problems(cls, options: dict) -> dict[str, str]:
        value = options.get("val_fraction", 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            return {"val_fraction": f"expected a fraction in [0, 1) of the source faces, got {value!r}"}
        return {}

    def subject_of(self, image: Path) -> str:
        return _VIEW_SUFFIX.sub("", image.stem)

    def images_of(self, split: str) -> list[Path]:
        images, fraction = self._images(), self.options["val_fraction"]
        if not fraction:
            return images
        # Keyed by the source face (subset folder without `_Flip` + id): its views and its flip stay together.
        keys = {image: f"{image.parent.name.removesuffix('_Flip')}/{self.subject_of(image)}" for image in images}
        assignment = carve(keys.values(), {"train": 1.0 - fraction, "val": fraction}, self.options["seed"])
        return [image for image in images if assignment[keys[image]] == split]


class AFLW2000Source(_PoseSource):
    """AFLW2000-3D. Only split: "test". Options: `max_abs_degrees` (default 99; None keeps every sample), `crop`
    ("qface", default: the 5 points of `pt3d_68`; "loose": Hopenet / 6DRepNet's `crop_box`, see the module doc)."""

    name = "aflw2000"
    splits = ("test",)

    def __init__(self, root, max_abs_degrees: float | None = AFLW2000_MAX_ABS_DEGREES, crop: str = "qface"):
        super().__init__(root)
        if crop not in AFLW2000_CROPS:
            raise ValueError(f"aflw2000: crop must be one of {AFLW2000_CROPS}, got {crop!r}")
        self.options = {"max_abs_degrees": max_abs_degrees, "crop": crop}

    @classmethod
    def option_problems(cls, options: dict) -> dict[str, str]:
        crop = options.get("crop", "qface")
        return {} if crop in AFLW2000_CROPS else {"crop": f"expected one of {', '.join(AFLW2000_CROPS)}, got {crop!r}"}

    def face_hints(self, content: dict, mat_path: Path) -> dict:
        if self.options["crop"] == "loose":
            return {"crop_box": loose_crop_box(content, mat_path)}
        return super().face_hints(content, mat_path)

    def keep(self, pose: list[float], report: LoadReport) -> bool:
        limit = self.options["max_abs_degrees"]
        if limit is not None and any(abs(angle) > limit for angle in pose):
            report.record_filtered(f"angle outside [-{limit:g}, {limit:g}] deg")
            return False
        return True
