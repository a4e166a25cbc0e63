# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The one example schema every Q-Face data source produces.

Columns (names equal Q-Face's task names):
    image (`datasets.Image`): stored as an absolute file path, decoded lazily on access.
    expression (`int8`): RAF-DB class index 0..6 in `EXPRESSION_NAMES` order; -1 = missing.
    au (`15 x int8`): action unit occurrence 1/0 in `AU_NAMES` order; -1 = not coded by the source.
    attributes (`40 x int8`): CelebA attributes 1 (present) / 0 (absent) in `ATTRIBUTE_NAMES` order; -1 = missing.
    age (`float32`): years; None = missing (NaN in torch format).
    head_pose (`3 x float32`): yaw, pitch, roll in degrees (`HEAD_POSE_NAMES` order, the 300W-LP / AFLW2000 sign
        convention); None = missing.
    source (`str`): the data source name, e.g. "raf_db".
    subject_id (`str`): the person, for subject-exclusive splits; "" when unknown.
    photo (`str`): the path of the photo the crop was cut from.
    crop_angle (`float32`): degrees by which the Q-Face crop rotates the photo (anticlockwise as seen); `head_pose` is
        in the crop's frame, and rotating it by `-crop_angle` gives the photo's frame. 0 before preparation.
    crop_method (`str`): how the face was found ("landmarks", "detector", "no face found", "protocol box",
        "protocol resize"; see `modeling_qface.training.data.face_crops`); "" before preparation (the image is used as it is).
The `image` of a prepared row is the Q-Face crop itself (PNG or JPEG bytes).

Face hints: an adapter's rows (before preparation into the Q-Face crop, see `modeling_qface.training.data.face_crops`) may also
carry these keys, which say where the face is; preparation consumes them and stores only the crop:
    face_landmarks (`list` of 5 `[x, y]`): the 5 points in `modeling_qface.model.face_alignment_qface.LANDMARK_NAMES`
        order (image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner) in the
        pixel coordinates of the image file (Pillow's continuous convention); the crop is made from them and no
        detector runs.
    face_box (`[x1, y1, x2, y2]`): the dataset's box of the labelled face; the detector's face that overlaps it
        most is taken (the largest face when absent).
    crop_box (`[x1, y1, x2, y2]`): a protocol crop used as it is, without alignment or rotation (e.g. the loose
        box around AFLW2000's landmarks that the published head-pose numbers use).
    resize_region (`str`): a protocol crop of an already aligned image, resized to the input without alignment:
        "center_square" (the centred square of side min(width, height)) or "whole" (the whole image, its aspect
        ratio changed), e.g. the CelebA attribute literature's crops of the 178 x 218 aligned images.
and, when the row comes from a line of a label file:
    origin (`[label_file, line_no]`): preparation names it, beside the image, when the image cannot be read, then
        drops it.
"""

from __future__ import annotations

from collections.abc import Mapping

from datasets import Features, Image, List, Value

from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES, HEAD_POSE_NAMES

MISSING = -1

FACE_HINT_KEYS = ("face_landmarks", "face_box", "crop_box", "resize_region")
ORIGIN_KEY = "origin"

LABEL_COLUMNS = ("expression", "au", "attributes", "age", "head_pose")

# AU number (as datasets write it, e.g. 12) -> position in the `au` column.
AU_INDEX = {int(name.removeprefix("AU")): i for i, name in enumerate(AU_NAMES)}

FEATURES = Features(
    {
        "image": Image(),
        "expression": Value("int8"),
        "au": List(Value("int8"), length=len(AU_NAMES)),
        "attributes": List(Value("int8"), length=len(ATTRIBUTE_NAMES)),
        "age": Value("float32"),
        "head_pose": List(Value("float32"), length=len(HEAD_POSE_NAMES)),
        "source": Value("string"),
        "subject_id": Value("string"),
        "photo": Value("string"),
        "crop_angle": Value("float32"),
        "crop_method": Value("string"),
    }
)


def qface_features() -> Features:
    """A fresh copy of the shared schema (callers may mutate it without touching `FEATURES`)."""
    return FEATURES.copy()


def empty_row(image: str, source: str, subject_id: str = "") -> dict:
    """A row with every label missing; an adapter fills in only what its dataset knows."""
    return {
        "image": image,
        "expression": MISSING,
        "au": [MISSING] * len(AU_NAMES),
        "attributes": [MISSING] * len(ATTRIBUTE_NAMES),
        "age": None,
        "head_pose": None,
        "source": source,
        "subject_id": subject_id,
        "photo": image,
        "crop_angle": 0.0,
        "crop_method": "",
    }


def au_vector(occurrence: Mapping[int, int]) -> list[int]:
    """Lays out `{au_number: 1/0/-1}` in `AU_NAMES` order; AUs not in the mapping are -1 (not coded).

    Raises `KeyError` for an AU number Q-Face does not model.
    """
    vector = [MISSING] * len(AU_NAMES)
    for number, value in occurrence.items():
        vector[AU_INDEX[number]] = value
    return vector


def check_row(row: Mapping) -> str | None:
    """Returns what is wrong with a row's label values, or None when it fits the schema."""
    expression = row["expression"]
    if not isinstance(expression, int) or not MISSING <= expression < len(EXPRESSION_NAMES):
        return f"expression: expected an int in -1..{len(EXPRESSION_NAMES) - 1}, got {expression!r}"
    for column, names in (("au", AU_NAMES), ("attributes", ATTRIBUTE_NAMES)):
        values = row[column]
        if not isinstance(values, list) or len(values) != len(names) or any(v not in (-1, 0, 1) for v in values):
            return f"{column}: expected {len(names)} values in {{-1, 0, 1}}, got {values!r}"
    age = row["age"]
    if age is not None and not (isinstance(age, (int, float)) and age == age):
        return f"age: expected a number of years or None, got {age!r}"
    pose = row["head_pose"]
    if pose is not None and (len(pose) != len(HEAD_POSE_NAMES) or any(p != p for p in pose)):
        return f"head_pose: expected {len(HEAD_POSE_NAMES)} finite degrees (yaw, pitch, roll) or None, got {pose!r}"
    return None
