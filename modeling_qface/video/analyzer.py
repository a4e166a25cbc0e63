# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`VideoAnalyzer`: every face of every (selected) frame of a video through the face-analysis pipeline, each with
its person's `track_id`, streamed frame by frame so that a video of any length never sits in memory.

    from modeling_qface.video import VideoAnalyzer

    analyzer = VideoAnalyzer()                      # the shipped default model; or VideoAnalyzer(pipe)
    for result in analyzer("interview.mp4", every=2):
        for face in result.faces:
            print(result.frame, result.timestamp_s, face["track_id"], face["expression"]["label"])

Work is batched across frames: `batch_frames` frames are decoded, their faces detected in one RetinaFace run,
tracked frame by frame (`tracking.FaceTracker`), and all their faces go through the model together (`batch_size`
faces per forward pass). With `detect_every=k` the detector runs on every k-th analysed frame only and the frames
in between reuse each face's last detection (box and landmarks): faster, and as accurate while faces move less than
a few pixels per frame; fast motion is then cropped a little off.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..model.face_alignment_qface import (
    DEFAULT_MAX_IMAGE_SIDE,
    DEFAULT_SCORE_THRESHOLD,
    detect_faces_batch,
    refine_landmarks,
)
from .decoding import VideoDecodeError, VideoFrame, probe_video, read_frames
from .tracking import DEFAULT_REID_WINDOW_S, FaceTracker

DEFAULT_BATCH_FRAMES = 8


@dataclass
class FrameResult:
    """The faces of one analysed frame.

    Attributes:
        frame (`int`): the 0-based index of the frame among the stream's decoded frames (also with `every`).
        timestamp_s (`float`): its presentation time in seconds (from its PTS; `decoding.read_frames`).
        faces (`list[dict]`): the pipeline's face dicts, each with `track_id` (`int`, or None when untracked),
            ordered by `track_id`; `[]` when no face was found.
        rgb (`np.ndarray`, *optional*): the frame `(H, W, 3)` uint8, upright (with `keep_frames=True`).
    """

    frame: int
    timestamp_s: float
    faces: list[dict] = field(default_factory=list)
    rgb: np.ndarray | None = None


class VideoAnalyzer:
    """Analyses videos frame by frame with a face-analysis pipeline and a face tracker.

    Args:
        pipe (`FaceAnalysisPipeline` or `str`, *optional*): the pipeline, or a saved model's folder (default: the
            shipped demo model), run on the CPU.
        batch_frames (`int`): frames decoded, detected and analysed together.
        batch_size (`int`): faces per forward pass of the model.
        detect_every (`int`): run the face detector on every k-th analysed frame (1: on each).
        track (`bool`): give faces `track_id`s (False: every `track_id` is None, no tracker runs).
        reid (`bool`): re-identify people who come back (dlib's face recognition model; False: motion only).
        reid_window_s (`float`): how long someone may be gone and come back with their id.
        score_threshold, max_image_side: face detection settings (as the pipeline's).
        refine_landmarks (`bool`): refine each face's landmarks as the photo pipeline does (18 detector runs per
            face: about 40 ms a face on 2 cores, too slow for real time; off by default for video).
        **call: the pipeline's other call arguments (`tasks`, `au_threshold`, `output_attentions`).
    """

    def __init__(
        self,
        pipe=None,
        batch_frames: int = DEFAULT_BATCH_FRAMES,
        batch_size: int = 32,
        detect_every: int = 1,
        track: bool = True,
        reid: bool = True,
        reid_window_s: float = DEFAULT_REID_WINDOW_S,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        max_image_side: int | None = DEFAULT_MAX_IMAGE_SIDE,
        refine_landmarks: bool = False,
        **call,
    ):
        for name, value in (("batch_frames", batch_frames), ("batch_size", batch_size), ("detect_every", detect_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        self.pipe = pipe if hasattr(pipe, "model") else _default_pipeline(pipe)
        self.batch_frames, self.batch_size, self.detect_every = batch_frames, batch_size, detect_every
        self.track, self.reid, self.reid_window_s = track, reid, reid_window_s
        self.score_threshold, self.max_image_side, self.refine = score_threshold, max_image_side, refine_landmarks
        self.call = call
        self.pipe._sanitize_parameters(**call)  # bad tasks or thresholds: a ValueError now, not after the first batch
        self._embedder = None

    def new_tracker(self, frame_rate: float | None) -> FaceTracker | None:
        """A tracker for one video (people are not carried from one video to the next)."""
        if not self.track:
            return None
        if self.reid and self._embedder is None:
            from .tracking import FaceEmbedder

            self._embedder = FaceEmbedder()  # loaded once, shared by the videos
        embedder = self._embedder if self.reid else False
        return FaceTracker(frame_rate or 25.0, embedder=embedder, reid_window_s=self.reid_window_s)

    def __call__(
        self,
        path,
        every: int = 1,
        start_s: float | None = None,
        end_s: float | None = None,
        keep_frames: bool = False,
        tracker: FaceTracker | None = None,
        frames: Iterator[VideoFrame] | None = None,
    ) -> Iterator[FrameResult]:
        """The `FrameResult` of each selected frame of `path`, in order, as soon as its batch is done.

        `every`, `start_s`, `end_s`: the frames (`decoding.read_frames`). `tracker`: continue a tracker's state (a
        resumed run); `frames`: frames to analyse instead of reading `path` (they must be in order). Raises
        `decoding.NotAVideoError` before the first result, `decoding.VideoDecodeError` after the last good one.
        """
        if tracker is None:
            info = probe_video(path) if frames is None else None
            tracker = self.new_tracker(info.frame_rate if info else None)
        frames = read_frames(path, every, start_s, end_s) if frames is None else frames
        held: list = []  # the last detections, reused on frames the detector skips (`detect_every`)
        batch: list[VideoFrame] = []
        analysed = 0
        try:
            for frame in frames:
                batch.append(frame)
                if len(batch) == self.batch_frames:
                    results, held, analysed = self._analyse(batch, tracker, held, analysed, keep_frames)
                    batch = []
                    yield from results
        except VideoDecodeError:
            # Decoding stopped part-way: the frames decoded before it are analysed first, then the error goes on.
            if batch:
                yield from self._analyse(batch, tracker, held, analysed, keep_frames)[0]
            raise
        if batch:
            yield from self._analyse(batch, tracker, held, analysed, keep_frames)[0]

    def _analyse(self, batch: list[VideoFrame], tracker, held: list, analysed: int, keep_frames: bool):
        """Detects, tracks and analyses a batch of frames; (results, detections to hold, frames analysed so far)."""
        detect = [(analysed + i) % self.detect_every == 0 for i in range(len(batch))]
        found = iter(
            detect_faces_batch([f.rgb for f, d in zip(batch, detect) if d], self.score_threshold, self.max_image_side)
        )
        inputs, track_ids = [], []
        for frame, detected in zip(batch, detect):
            if detected:
                faces = next(found)
                if self.refine:
                    faces = [(f, refine_landmarks(frame.rgb, f.landmarks)) for f in faces]
                else:
                    faces = [(f, f.landmarks) for f in faces]
                ids = (
                    tracker.update(frame.rgb, [f.box for f, _ in faces], [f.score for f, _ in faces], frame.timestamp_s)
                    if tracker is not None
                    else [None] * len(faces)
                )
                held = list(zip(faces, ids))
            order = sorted(range(len(held)), key=lambda i: (held[i][1] is None, held[i][1] or 0))
            faces = [
                {"box": list(held[i][0][0].box), "score": held[i][0][0].score, "landmarks": held[i][0][1].tolist()}
                for i in order
            ]
            inputs.append({"image": frame.rgb, "faces": faces})
            track_ids.append([held[i][1] for i in order])
        outputs = self.pipe(inputs, batch_size=self.batch_size, **self.call) if inputs else []
        results = []
        for frame, faces, ids in zip(batch, outputs, track_ids):
            for face, track_id in zip(faces, ids):
                face["track_id"] = track_id
            results.append(FrameResult(frame.index, frame.timestamp_s, faces, frame.rgb if keep_frames else None))
        return results, held, analysed + len(batch)


def _default_pipeline(model=None):
    """The face-analysis pipeline of a model folder, or (None) of the shipped default model, on the CPU."""
    import logging

    from transformers import pipeline

    from ..registry import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NOTICE, register_face_analysis_pipeline

    register_face_analysis_pipeline()
    if model is None:
        logging.getLogger(__name__).warning(DEFAULT_MODEL_NOTICE)
    return pipeline("face-analysis", model=str(model or DEFAULT_MODEL_DIR), device="cpu")


__all__ = ["FrameResult", "VideoAnalyzer"]
