# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Preparing a source's rows into the Q-Face crop: the only thing the model ever sees, in training as at inference.

For each row an adapter yields, the image is read as the pipeline reads it (`load_image_rgb`), the face is cut with
the model's `FaceCrop` (the very function the `face-analysis` pipeline uses), the crop is stored in the row (lossless
PNG by default, so the prepared crop is byte-identical to the pipeline's), and the head pose label is carried into the
crop's frame exactly (`head_pose_qface.rotate_pose_in_plane`). How each face is found, in this order:

    "protocol box"      the row's `crop_box` (a benchmark's protocol crop, e.g. AFLW2000's loose box): cut as the
                        published code does (box, shorter side resized to 256/224 of the crop, centre crop), no
                        rotation.
    "protocol resize"   the row's `resize_region` (a protocol crop of an already aligned image, e.g. CelebA's centred
                        178 x 178 square): that region resized to the crop (bilinear), no rotation.
    "landmarks"         the row's `face_landmarks`, from the dataset's own annotations: no detector runs.
    "detector"          the pipeline's detector and landmark refinement (`locate_faces`); of several faces, the one
                        overlapping the row's `face_box` most, else the largest.
    "no face found"     the detector found none (or none overlapping `face_box` by IoU >= 0.3): the image, or the
                        `face_box`, is taken as an already centred face, the template laid on its central square
                        (`FaceCrop.central`, the pipeline's `detect_faces=False` rule). Counted and reported, never
                        dropped silently.

Every image is decoded in full here, so a truncated or corrupt file fails preparation, not training: it is a bad
record (a `DataFormatError` naming the label file and line the row came from, when it came from one, and the image:
raised, or skipped and counted with `on_error="skip"`).

Columns added to each row: `photo` (the original image's path; `image` now holds the crop's bytes), `crop_angle`
(degrees, the crop's anticlockwise in-plane rotation of the photo: a pose seen in the crop is the photo's pose rotated
by it; evaluation turns predictions back into the photo's frame with it) and `crop_method` (one of the four above).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from modeling_qface.model.face_alignment_qface import FaceCrop, locate_faces, refine_landmarks
from modeling_qface.model.head_pose_qface import rotate_pose_in_plane
from modeling_qface.model.image_loading_qface import ImageLoadError, load_image_rgb

from .errors import DataFormatError, LoadReport
from .schema import FACE_HINT_KEYS, ORIGIN_KEY

CROP_METHODS = ("protocol box", "protocol resize", "landmarks", "detector", "no face found")
RESIZE_REGIONS = ("center_square", "whole")
CROP_FORMATS = {"png": {"format": "PNG", "compress_level": 3}, "jpeg": {"format": "JPEG", "quality": 95}}
# A detected face must overlap the dataset's face box this much to be taken as the labelled face.
MIN_BOX_IOU = 0.3
# The published head-pose code resizes the protocol box's shorter side to 256 and centre-crops 224.
PROTOCOL_RESIZE_RATIO = 256 / 224


def box_iou(first, second) -> float:
    """Intersection over union of two `[x1, y1, x2, y2]` boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    return intersection / (area(first) + area(second) - intersection)


def protocol_box_crop(image_rgb: np.ndarray, box, size: int) -> np.ndarray:
    """The literature's loose crop: `box` (clipped to the image, as PIL pads nothing), its shorter side resized to
    `size * 256 / 224` (bilinear) and the centre `size` square kept: 6DRepNet's and Hopenet's test transform."""
    image = Image.fromarray(image_rgb).crop(tuple(int(v) for v in box))
    short = max(1, round(size * PROTOCOL_RESIZE_RATIO))
    scale = short / min(image.size)
    resized = image.resize(
        (max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.Resampling.BILINEAR
    )
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return np.array(resized.crop((left, top, left + size, top + size)))


def resize_region_box(width: int, height: int, region: str) -> tuple[int, int, int, int]:
    """The `(left, top, right, bottom)` pixel box of a `resize_region` in a `width` x `height` image: "whole", or
    "center_square", torchvision's `CenterCrop(min(width, height))` (offsets rounded as it rounds them)."""
    if region == "whole":
        return 0, 0, width, height
    if region != "center_square":
        raise ValueError(f"resize_region: expected one of {RESIZE_REGIONS}, got {region!r}")
    side = min(width, height)
    left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    return left, top, left + side, top + side


def protocol_resize_crop(image_rgb: np.ndarray, region: str, size: int) -> np.ndarray:
    """`region` of the image (see `resize_region_box`) resized to `size` x `size` (bilinear), as the literature's
    `CenterCrop` + `Resize` or plain `Resize((size, size))` transforms do."""
    image = Image.fromarray(image_rgb)
    box = resize_region_box(image.width, image.height, region)
    return np.array(image.crop(box).resize((size, size), Image.Resampling.BILINEAR))


def unreadable_image_error(path: str, origin: list | None, error: Exception) -> DataFormatError:
    """The bad record of an image that cannot be read: at its label file's line when the row came from one (so the
    line can be fixed or removed), else at the image."""
    detail = str(error).removeprefix(f"{path}: ")  # the loader's message starts with the path, named here already
    if origin is None:
        return DataFormatError(path, None, f"cannot read the image: {detail}")
    label_file, line_no = origin
    return DataFormatError(label_file, line_no, f"{path}: cannot read the image: {detail}")


@dataclass
class CropPreparer:
    """Turns an adapter's row into a prepared row (see the module docstring); `None` for a skipped bad record.

    Args:
        face_crop (`FaceCrop`): the model's crop.
        report (`LoadReport`): receives bad records and the count of each crop method.
        crop_format (`str`): "png" (lossless, default) or "jpeg" (quality 95, ~5x smaller, not byte-identical).
    """

    face_crop: FaceCrop
    report: LoadReport
    crop_format: str = "png"

    def __post_init__(self):
        if self.crop_format not in CROP_FORMATS:
            raise ValueError(f"crop_format: expected one of {sorted(CROP_FORMATS)}, got {self.crop_format!r}")

    def __call__(self, row: dict) -> dict | None:
        hints = {key: row.pop(key) for key in FACE_HINT_KEYS if key in row}
        origin = row.pop(ORIGIN_KEY, None)
        path = row["image"]
        try:
            rgb = load_image_rgb(path)  # a full decode: a truncated or corrupt file fails here, not in training
        except (ImageLoadError, OSError) as error:
            self.report.record_error(unreadable_image_error(path, origin, error))
            return None
        crop, angle, method = self._cut(rgb, hints)
        self.report.record_crop(method, path)
        if row.get("head_pose") is not None:
            row["head_pose"] = [float(v) for v in rotate_pose_in_plane(row["head_pose"], angle)]
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, **CROP_FORMATS[self.crop_format])
        # No path beside the bytes: datasets would store the (existing) photo's path instead of the crop.
        row["image"] = {"bytes": buffer.getvalue(), "path": None}
        row["photo"] = str(path)
        row["crop_angle"] = angle
        row["crop_method"] = method
        return row

    def _cut(self, rgb: np.ndarray, hints: dict) -> tuple[np.ndarray, float, str]:
        if "crop_box" in hints:
            return protocol_box_crop(rgb, hints["crop_box"], self.face_crop.size), 0.0, "protocol box"
        if "resize_region" in hints:
            return protocol_resize_crop(rgb, hints["resize_region"], self.face_crop.size), 0.0, "protocol resize"
        if "face_landmarks" in hints:
            aligned, method = self.face_crop(rgb, hints["face_landmarks"]), "landmarks"
            return aligned.crop, aligned.angle, method
        # The face is chosen by the detector's box, so only the chosen one needs its landmarks refined (the
        # pipeline refines every face the same way, one at a time: the landmarks, and the crop, are the same).
        faces = locate_faces(rgb, refine=False)
        box = hints.get("face_box")
        if box is not None:
            faces = [face for face in faces if box_iou(face.box, box) >= MIN_BOX_IOU]
            chosen = max(faces, key=lambda face: box_iou(face.box, box), default=None)
        else:
            chosen = max(
                faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]), default=None
            )
        if chosen is None:
            aligned, method = self.face_crop.central(rgb, box), "no face found"
        else:
            aligned, method = self.face_crop(rgb, refine_landmarks(rgb, chosen.landmarks)), "detector"
        return aligned.crop, aligned.angle, method
