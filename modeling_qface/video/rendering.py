# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface analyze --render-video out.mp4`: the analysed frames with every face drawn on them (box and track id in
the person's colour, the 5 points, the head-pose axes, the top expression and age; `figures.drawing.render`),
encoded with PyAV as H.264 (yuv420p, plays in browsers and players), at the frames' own timestamps."""

from __future__ import annotations

import fractions
import os

import numpy as np

from ..figures.drawing import render


class VideoRenderer:
    """Draws each `FrameResult` (with its `rgb`) and encodes it; `close` finishes the file."""

    def __init__(self, path, frame_rate: float | None, codec: str = "libx264"):
        import av

        self.path = os.fspath(path)
        self._container = av.open(self.path, "w")
        self._stream = self._container.add_stream(codec, rate=round(frame_rate or 25))
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = fractions.Fraction(1, 1000)
        self._stream.time_base = fractions.Fraction(1, 1000)
        self._last_pts = -1
        self._sized = False

    def add(self, result) -> None:
        import av

        picture = np.asarray(render(result.rgb, result.faces))
        height, width = (side - side % 2 for side in picture.shape[:2])  # yuv420p needs even sides
        if not self._sized:
            self._stream.width, self._stream.height, self._sized = width, height, True
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:height, :width]), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        pts = max(round(result.timestamp_s * 1000), self._last_pts + 1)  # strictly increasing, as muxers need
        frame.pts, frame.time_base, self._last_pts = pts, self._stream.codec_context.time_base, pts
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        self._container.mux(self._stream.encode())
        self._container.close()


__all__ = ["VideoRenderer"]
