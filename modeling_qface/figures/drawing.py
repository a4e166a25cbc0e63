# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Pictures of face-analysis results: annotated photos (PIL) and the paper's attention figures (matplotlib).

- `render`: boxes, face numbers (1, 2, ... in the order of the results), landmarks, top expression, age and
  head-pose axes drawn on the photo.
- `attention_figure`: per selected label, its cross-attention map on each fused stage, overlaid on the aligned face
  (the paper's Fig. 4). Needs the pipeline's `output_attentions=True`.
- `stage_usage_chart`: per task, the share of cross-attention each fused stage receives (the paper's Fig. 5).

Figures are `matplotlib.figure.Figure` objects built without pyplot (no global state, no display needed):
`figure.savefig("fig.png")`.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ..model.head_pose_qface import pose_to_matrix
from ..model.image_loading_qface import load_image_rgb

# One colour per face (cycled), and per landmark: eyes, nose, mouth corners.
FACE_COLOURS = ((0, 200, 255), (255, 170, 0), (120, 255, 80), (255, 80, 200), (180, 120, 255), (255, 255, 80))
LANDMARK_COLOURS = ((255, 60, 60), (255, 60, 60), (60, 255, 60), (60, 140, 255), (60, 140, 255))
# Hopenet's draw_axis colours: x axis red, y axis green, z axis (out of the face) blue.
AXIS_COLOURS = {"x": (255, 0, 0), "y": (0, 255, 0), "z": (0, 0, 255)}


def pose_axes(yaw: float, pitch: float, roll: float, origin: tuple[float, float], size: float) -> dict:
    """End points of the head's x, y and z axes drawn from `origin`; equal to Hopenet's `draw_axis`.

    Angles in degrees in the pipeline's convention (yaw > 0: nose towards the image's left; pitch > 0: looking up;
    roll > 0: clockwise). The z axis points out of the face (where the nose points), x to the face's image-right
    side, y down the face. Returns `{"x": (x, y), "y": (x, y), "z": (x, y)}` in pixels.
    """
    rotation = pose_to_matrix([yaw, pitch, roll])  # columns: the head's axes in the camera frame (y up)
    axes = {"x": rotation[:, 0], "y": -rotation[:, 1], "z": rotation[:, 2]}
    cx, cy = origin
    # The image's y axis points down, the camera frame's up.
    return {name: (cx + size * float(axis[0]), cy - size * float(axis[1])) for name, axis in axes.items()}


def render(
    image,
    faces: list[dict],
    show_landmarks: bool = True,
    show_pose: bool = True,
    show_labels: bool = True,
    line_width: int | None = None,
) -> Image.Image:
    """Draws face-analysis results on the image they came from.

    Args:
        image: the pipeline's input (path, PIL image or array); loaded the same way (EXIF rotation, alpha on white),
            so the boxes land where they were found.
        faces (`list[dict]`): the pipeline's output for this image.
        show_landmarks, show_pose, show_labels (`bool`): draw the 5 points, the head-pose axes (from the nose tip,
            half the box width long), the text (`face_caption`: the face's number, top expression, age). The
            number is the face's place in `faces` counted from 1, as the report's table numbers them (the
            detector's score is left to the tables: drawn by the box, it read like a face number); a face with a
            `track_id` (video) shows `id N` instead, in its person's colour.
        line_width (`int`, *optional*): defaults to ~1/300 of the shorter image side, at least 2.

    Returns:
        `PIL.Image.Image` (RGB), a new image of the input's size.
    """
    canvas = Image.fromarray(load_image_rgb(image, max_pixels=None))
    draw = ImageDraw.Draw(canvas)
    width = line_width or max(2, round(min(canvas.size) / 300))
    font = ImageFont.load_default(size=max(12, 6 * width))
    for index, face in enumerate(faces):
        # A tracked face (video) keeps its person's colour and id from frame to frame.
        track_id = face.get("track_id")
        colour = FACE_COLOURS[(index if track_id is None else track_id) % len(FACE_COLOURS)]
        x1, y1, x2, y2 = face["box"]
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        landmarks = face.get("landmarks")
        if show_landmarks and landmarks is not None:
            radius = 1.5 * width
            for (x, y), point_colour in zip(landmarks, LANDMARK_COLOURS):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=point_colour)
        if show_pose and "head_pose" in face:
            origin = tuple(landmarks[2]) if landmarks is not None else ((x1 + x2) / 2, (y1 + y2) / 2)
            pose = face["head_pose"]
            ends = pose_axes(pose["yaw"], pose["pitch"], pose["roll"], origin, size=(x2 - x1) / 2)
            for axis, end in ends.items():
                draw.line((origin, end), fill=AXIS_COLOURS[axis], width=width)
        if show_labels:
            caption = face_caption(face, index + 1) if track_id is None else face_caption(face, track_id=track_id)
            _draw_caption(draw, caption, (x1, y1), colour, font)
    return canvas


def face_caption(face: dict, number: int | None = None, track_id: int | None = None) -> str:
    """One line per fact: `face N` (its `number`, when given) or `id N` (its video `track_id`), `label p`, `age N`
    (only the parts the face has)."""
    lines = [] if number is None else [f"face {number}"]
    lines += [] if track_id is None else [f"id {track_id}"]
    if "expression" in face:
        label = face["expression"]["label"]
        lines.append(f"{label} {face['expression']['scores'][label]:.2f}")
    if "age" in face:
        lines.append(f"age {face['age']['years']:.0f}")
    return "\n".join(lines)


def _draw_caption(draw: ImageDraw.ImageDraw, text: str, corner, colour, font) -> None:
    if not text:
        return
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    x, y = corner[0], max(0, corner[1] - (bottom - top) - 6)  # above the box, inside the image
    draw.rectangle((x, y, x + right + 6, y + bottom + 4), fill=(0, 0, 0))
    draw.multiline_text((x + 3, y + 1), text, fill=colour, font=font)


# ------------------------------------------------------------------------------------------ attention (Fig. 4)


def default_attention_labels(labels: list[str], predictions: dict | None = None, top_aus: int = 3) -> list[str]:
    """The labels Fig. 4 shows by default: the predicted expression and the `top_aus` most probable AUs.

    Without predictions (or when those tasks are absent), the first label of each task is used.
    """
    chosen = []
    if predictions is not None:
        if "expression" in predictions:
            chosen.append(f"expression/{predictions['expression']['label']}")
        if "au" in predictions:
            ranked = sorted(predictions["au"], key=predictions["au"].get, reverse=True)
            chosen += [f"au/{name}" for name in ranked[:top_aus]]
    chosen = [label for label in chosen if label in labels]
    if not chosen:
        first_of_task = {}
        for label in labels:
            first_of_task.setdefault(label.split("/", 1)[0], label)
        chosen = list(first_of_task.values())
    return chosen


def attention_figure(
    face_crop: np.ndarray,
    attention: np.ndarray,
    labels: list[str],
    stages: list[str],
    select: list[str] | None = None,
    predictions: dict | None = None,
    normalize: str = "map",
    alpha: float = 0.55,
    colormap: str = "jet",
) -> Figure:
    """The cross-attention of selected label queries on each fused stage, over the aligned face (paper Fig. 4).

    Args:
        face_crop (`np.ndarray` of shape `(H, W, 3)`, uint8): the aligned face the model saw.
        attention (`np.ndarray` of shape `(num_labels, num_stages, grid_h, grid_w)`): attention of each label
            query to each stage's patches, averaged over decoder layers and heads (the pipeline's
            `face["attention"]["maps"]`).
        labels (`list[str]`): `"task/label"` per query (`face["attention"]["labels"]`).
        stages (`list[str]`): stage names (`face["attention"]["stages"]`, e.g. `["S4", "S8", "S12"]`).
        select (`list[str]`, *optional*): labels to show, `"task/label"` or a bare label name if unambiguous.
            Default: `default_attention_labels(labels, predictions)`.
        predictions (`dict`, *optional*): the pipeline's face dict, for the default selection.
        normalize (`str`): `"map"` scales each map to its own maximum (where each stage looks); `"label"` uses one
            scale per label across its stages (how much each stage is used, too).
        alpha (`float`): opacity of the heat map over the face.

    Returns:
        `Figure` with one row per selected label: the face, then one overlay per stage, titled with the stage
        and its share of that query's attention.
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim != 4 or attention.shape[:2] != (len(labels), len(stages)):
        expected = f"({len(labels)} labels, {len(stages)} stages, grid_h, grid_w)"
        raise ValueError(f"attention: expected shape {expected}, got {attention.shape}")
    if normalize not in ("map", "label"):
        raise ValueError(f"normalize: expected 'map' or 'label', got {normalize!r}")
    rows = [_label_index(labels, name) for name in (select or default_attention_labels(labels, predictions))]
    crop = np.asarray(face_crop)
    cmap = colormaps[colormap]
    figure = Figure(figsize=(2.0 * (len(stages) + 1), 2.1 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(stages) + 1, squeeze=False)
    for row, query in enumerate(rows):
        maps = attention[query]  # (stages, grid_h, grid_w)
        shares = maps.sum(axis=(1, 2)) / max(maps.sum(), 1e-12)
        axes[row, 0].imshow(crop)
        axes[row, 0].set_ylabel(labels[query].replace("/", "\n"), fontsize=9)
        for stage, stage_map in enumerate(maps):
            scale = stage_map.max() if normalize == "map" else maps.max()
            heat = _upsample(stage_map / max(scale, 1e-12), crop.shape[:2])
            ax = axes[row, stage + 1]
            ax.imshow(crop)
            ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            ax.set_title(f"{stages[stage]} ({shares[stage]:.0%})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("aligned face", fontsize=9)
    return figure


def attention_figure_for_face(face: dict, select: list[str] | None = None, **kwargs) -> Figure:
    """`attention_figure` for one face of a pipeline run with `output_attentions=True`."""
    if "attention" not in face:
        raise ValueError("face has no 'attention' entry: run the pipeline with output_attentions=True")
    att = face["attention"]
    return attention_figure(
        att["crop"], att["maps"], att["labels"], att["stages"], select=select, predictions=face, **kwargs
    )


def _label_index(labels: list[str], name: str) -> int:
    if name in labels:
        return labels.index(name)
    matches = [i for i, label in enumerate(labels) if label.split("/", 1)[-1] == name]
    if len(matches) != 1:
        raise ValueError(f"select: {name!r} {'is ambiguous' if matches else 'is not a label'}; labels are {labels}")
    return matches[0]


def _upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A `(grid_h, grid_w)` map in [0, 1] -> `(H, W)`, bilinear between patch centres, flat beyond the outer ones."""
    image = Image.fromarray(grid.astype(np.float32))  # mode "F"
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))


# ----------------------------------------------------------------------------------------- stage usage (Fig. 5)


def mean_stage_usage(stage_usage) -> dict[str, dict[str, float]]:
    """`{task: {stage: share}}` of one face, or the mean over a list of them (faces without a task are skipped)."""
    if isinstance(stage_usage, dict):
        return stage_usage
    totals: dict[str, dict[str, list[float]]] = {}
    for usage in stage_usage:
        for task, shares in usage.items():
            for stage, share in shares.items():
                totals.setdefault(task, {}).setdefault(stage, []).append(share)
    return {task: {stage: float(np.mean(v)) for stage, v in shares.items()} for task, shares in totals.items()}


def stage_usage_chart(stage_usage, title: str | None = None) -> Figure:
    """Per task, the share of its queries' cross-attention that goes to each fused stage (paper Fig. 5).

    Args:
        stage_usage: `{task: {stage: share}}` (a face's `stage_usage` from the pipeline), or a list of them,
            averaged (e.g. every face of a data set).
        title (`str`, *optional*): defaults to a description including the number of faces averaged.

    Returns:
        `Figure` with grouped bars: one group per task, one bar per stage, labelled with its share.
    """
    count = 1 if isinstance(stage_usage, dict) else len(stage_usage)
    usage = mean_stage_usage(stage_usage)
    if not usage:
        raise ValueError("stage_usage: no task to chart (run the pipeline with output_attentions=True)")
    tasks = list(usage)
    stages = list(dict.fromkeys(stage for shares in usage.values() for stage in shares))
    figure = Figure(figsize=(1.2 + 1.1 * len(tasks) * max(1, len(stages) / 2), 3.6), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(stages)
    centres = np.arange(len(tasks))
    colours = colormaps["viridis"](np.linspace(0.15, 0.85, len(stages)))
    for s, stage in enumerate(stages):
        heights = [usage[task].get(stage, 0.0) for task in tasks]
        bars = ax.bar(centres + (s - (len(stages) - 1) / 2) * width, heights, width, label=stage, color=colours[s])
        ax.bar_label(bars, labels=[f"{h:.0%}" for h in heights], fontsize=7, padding=1)
    ax.set_xticks(centres, tasks)
    ax.set_ylabel("share of cross-attention")
    highest = max(max(shares.values()) for shares in usage.values())
    ax.set_ylim(0, min(1.1, highest * 1.3 + 0.05))  # headroom for the bar labels and the legend
    ax.legend(title="fused stage", fontsize=8, title_fontsize=8, ncols=len(stages), loc="upper center")
    ax.set_title(title or f"Stage usage per task ({count} face{'s' if count != 1 else ''})", fontsize=10)
    return figure


__all__ = [
    "attention_figure",
    "attention_figure_for_face",
    "default_attention_labels",
    "face_caption",
    "mean_stage_usage",
    "pose_axes",
    "render",
    "stage_usage_chart",
]
