# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Face-analysis results as a pandas DataFrame with the column names py-feat and OpenFace users know."""

from __future__ import annotations

import os
import re

import pandas as pd

from ..model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES
from .result_file import portable_text

# py-feat's emotion column order; the same words as EXPRESSION_NAMES (RAF-DB order).
EMOTION_COLUMNS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
# Head pose columns as py-feat names them, from our {yaw, pitch, roll}; degrees, sign convention of the pipeline.
POSE_COLUMNS = {"Pitch": "pitch", "Roll": "roll", "Yaw": "yaw"}
AGE_COLUMNS = ("age", "age_std")
ID_COLUMNS = ("input", "image", "face")
# A video's rows: the frame (0-based index in the stream), its presentation time (seconds) and the face's person.
VIDEO_COLUMNS = ("frame", "timestamp_s", "track_id")
FACE_COLUMNS = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")
LANDMARK_COLUMNS = tuple(f"x_{i}" for i in range(5)) + tuple(f"y_{i}" for i in range(5))
DEFAULT_TASKS = ("expression", "au", "attributes", "age", "head_pose")


def au_column(name: str) -> str:
    """`"AU1"` -> `"AU01"` (py-feat / OpenFace style, zero-padded to two digits)."""
    match = re.fullmatch(r"AU(\d+)", name)
    if not match:
        raise ValueError(f"expected an action unit name like 'AU12', got {name!r}")
    return f"AU{int(match.group(1)):02d}"


def dataframe_columns(tasks=None, video: bool = False, smoothed: bool = False) -> list[str]:
    """Every column of `results_to_dataframe` for faces analysed with `tasks`, in order.

    Args:
        tasks (`list[dict]` or `QFaceConfig`, *optional*): the task descriptions of a model's config (`config.tasks`,
            or the config itself), e.g. the tasks a run computes. Each task adds only its own columns, and the five
            default tasks only those of the labels the task has (the shipped demo model: the 7 emotions, `Male`,
            `Smiling`, `age`, `age_std`, `Pitch`, `Roll`, `Yaw`); a task beyond them adds `added_task_columns`.
            None: every column of the five default tasks with all their labels (15 AUs, 7 emotions, 40 CelebA
            attributes, age, head pose), the table of a model whose tasks are not known.
        video (`bool`): the table has video rows too: `frame`, `timestamp_s` and `track_id` after `image`.
        smoothed (`bool`): after all of them, each task column again as `{column}_smooth` (video smoothing).
    """
    if smoothed:
        columns = dataframe_columns(tasks, video=video)
        return columns + [f"{c}_smooth" for c in columns[columns.index(LANDMARK_COLUMNS[-1]) + 1 :]]
    columns = [*ID_COLUMNS[:2], *(VIDEO_COLUMNS if video else ()), ID_COLUMNS[2], *FACE_COLUMNS, *LANDMARK_COLUMNS]
    if tasks is None:
        return columns + [
            *map(au_column, AU_NAMES),
            *EMOTION_COLUMNS,
            *ATTRIBUTE_NAMES,
            *AGE_COLUMNS,
            *POSE_COLUMNS,
        ]
    by_name = {task["name"]: task for task in getattr(tasks, "tasks", tasks)}
    labels = {name: list(by_name[name]["labels"]) if name in by_name else [] for name in DEFAULT_TASKS}
    columns += map(au_column, labels["au"])
    # py-feat's emotion order for the RAF-DB words, then any other expression label in the model's order.
    columns += [c for c in EMOTION_COLUMNS if c in labels["expression"]]
    columns += [c for c in labels["expression"] if c not in EMOTION_COLUMNS]
    columns += labels["attributes"]
    columns += AGE_COLUMNS if "age" in by_name else ()
    columns += [column for column, key in POSE_COLUMNS.items() if key in labels["head_pose"]]
    for task in by_name.values():
        columns += added_task_columns(task)
    return columns


def added_task_columns(task: dict) -> list[str]:
    """The columns `{task}_{key}` a task beyond the five defaults adds: one per label (class probability,
    multilabel probability or regression value), or a distribution task's value (named by its units) and std.

    Known before any face is analysed, so a CSV can be written row by row (`qface analyze`).
    """
    if task["name"] in DEFAULT_TASKS:
        return []
    # The keys of the pipeline's answer for the task (`FaceAnalysisPipeline._task_result`).
    keys = [task.get("units") or "value", "std"] if task["kind"] == "distribution" else task["labels"]
    return [f"{task['name']}_{key}" for key in keys]


def results_to_dataframe(results, inputs=None, tasks=None) -> pd.DataFrame:
    """One row per face of face-analysis pipeline results, and one row for each image without a face.

    Args:
        results (`list[list[dict]]` or `list[dict]`): what the pipeline returned for a list of images (one list of
            faces per image), or for one image (its list of faces; `[]` with one input is that image, face-less).
        inputs (`list`, *optional*): the inputs given to the pipeline, same length as `results`; paths fill the
            `input` column (other inputs leave it empty), a name that is not UTF-8 as `result_file.portable_text` writes it.
        tasks (`list[dict]` or `QFaceConfig`, *optional*): the model's tasks (`config.tasks`, or its config, or the
            tasks the run computed): the columns are then `dataframe_columns(tasks)`, only those tasks' columns. None:
            every column of the five default tasks, plus the columns of added tasks found in the faces.

    Returns:
        `pandas.DataFrame` with columns `dataframe_columns(tasks)`: `input` (path or None), `image` (index of the
        image in `results`), `face` (index of the face in its image), `FaceRectX/Y/Width/Height` (box, pixels),
        `FaceScore`, `x_0..x_4`, `y_0..y_4` (5 landmarks), `AU01, AU02, ...` (AU probabilities), the emotion
        probabilities (`anger` ... `neutral`), the attribute probabilities (the 40 CelebA attributes by default),
        `age` (years), `age_std`, `Pitch`, `Roll`, `Yaw` (degrees). Tasks that were not computed are NaN. Tasks added
        to the model (beyond the five defaults) add a column `{task}_{key}` per number of their answer (label
        probabilities or values, `std`). An image without faces has one row: its `input` and `image`, and every
        other column empty, `face` included (`face` is a nullable integer: `<NA>` there, an empty field in a CSV).
    """
    if results and all(isinstance(face, dict) for face in results):
        results = [results]  # one image's faces
    elif not results and inputs is not None and len(inputs) == 1:
        results = [[]]  # one image's faces, none found
    if inputs is not None and len(inputs) != len(results):
        raise ValueError(f"inputs: expected one input per result ({len(results)}), got {len(inputs)}")
    rows = []
    for image_index, faces in enumerate(results):
        source = inputs[image_index] if inputs is not None else None
        path = portable_text(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else None  # valid UTF-8
        rows += [{"input": path, "image": image_index, "face": i, **_face_row(face)} for i, face in enumerate(faces)]
        if not faces:
            rows.append({"input": path, "image": image_index, "face": None})
    columns = dataframe_columns(tasks)
    extra = [c for row in rows for c in row if c not in columns]
    frame = pd.DataFrame(rows, columns=columns + list(dict.fromkeys(extra)))
    return frame.astype({"image": "int64", "face": "Int64"})


def video_results_to_dataframe(results, input=None, tasks=None, image: int = 0) -> pd.DataFrame:
    """One row per face per analysed frame of a video, and one row for each frame without a face.

    Args:
        results (iterable of `FrameResult`): what `VideoAnalyzer` yielded (anything with `frame`, `timestamp_s` and
            `faces`, each face with its `track_id`).
        input (`str` or path, *optional*): the video, for the `input` column.
        tasks: as for `results_to_dataframe` (the columns: `dataframe_columns(tasks, video=True)`).
        image (`int`): the value of the `image` column (the video's number among a run's inputs).

    Returns:
        `pandas.DataFrame`: the columns of `results_to_dataframe` with `frame` (0-based index of the frame in the
        stream), `timestamp_s` (its presentation time, seconds) and `track_id` (the person; nullable integer) after
        `image`. A frame without a face has one row with `frame` and `timestamp_s`, and `face` and `track_id` empty.
    """
    results = list(results)
    source = [input] * len(results) if input is not None else None
    frame = results_to_dataframe([r.faces for r in results], source, tasks) if results else None
    columns = dataframe_columns(tasks, video=True)
    if frame is None:
        return pd.DataFrame(columns=columns).astype({"image": "int64", "frame": "int64", "track_id": "Int64"})
    faces = [face for r in results for face in (r.faces or [{}])]
    per_row = [(r.frame, r.timestamp_s, face.get("track_id")) for r in results for face in (r.faces or [{}])]
    frame["frame"], frame["timestamp_s"], frame["track_id"] = (list(values) for values in zip(*per_row))
    frame["image"] = image
    if any("smoothed" in face for face in faces):  # the smoothed answers, each column as `{column}_smooth`
        columns = dataframe_columns(tasks, video=True, smoothed=True)
        smooth = pd.DataFrame([_face_row({"box": [0, 0, 0, 0], **face.get("smoothed", {})}) for face in faces])
        smooth = smooth.drop(columns=[c for c in smooth.columns if c in FACE_COLUMNS or c in LANDMARK_COLUMNS])
        frame = pd.concat([frame, smooth.add_suffix("_smooth").set_index(frame.index)], axis=1)
    extra = [c for c in frame.columns if c not in columns]
    return frame.reindex(columns=columns + extra).astype(
        {"frame": "int64", "timestamp_s": "float64", "track_id": "Int64"}
    )


def _face_row(face: dict) -> dict:
    row = {}
    x1, y1, x2, y2 = face["box"]
    row.update(FaceRectX=x1, FaceRectY=y1, FaceRectWidth=x2 - x1, FaceRectHeight=y2 - y1, FaceScore=face.get("score"))
    if face.get("landmarks") is not None:
        for i, (x, y) in enumerate(face["landmarks"]):
            row[f"x_{i}"], row[f"y_{i}"] = x, y
    if "au" in face:
        row.update({au_column(name): p for name, p in face["au"].items()})
    if "expression" in face:
        row.update(face["expression"]["scores"])
    if "attributes" in face:
        row.update(face["attributes"])
    if "age" in face:
        row["age"], row["age_std"] = face["age"]["years"], face["age"]["std"]
    if "head_pose" in face:
        row.update({column: face["head_pose"][key] for column, key in POSE_COLUMNS.items() if key in face["head_pose"]})
    for task, value in face.items():
        if task in DEFAULT_TASKS or not isinstance(value, dict) or task in ("attention", "stage_usage", "smoothed"):
            continue
        scores = value.get("scores", value)  # multiclass tasks keep their probabilities under "scores"
        row.update({f"{task}_{key}": v for key, v in scores.items() if isinstance(v, (int, float))})
    return row


__all__ = [
    "EMOTION_COLUMNS",
    "VIDEO_COLUMNS",
    "added_task_columns",
    "au_column",
    "dataframe_columns",
    "results_to_dataframe",
    "video_results_to_dataframe",
]
