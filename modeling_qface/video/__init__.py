# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Video: frames decoded with PyAV (`decoding`), faces tracked with one id per person (`tracking`), analysed frame by
frame (`analyzer.VideoAnalyzer`), with per-track summaries, smoothing, OpenFace-compatible tables and rendered
videos beside them. docs/video.md is the guide."""

from .analyzer import FrameResult, VideoAnalyzer
from .decoding import NotAVideoError, VideoDecodeError, VideoInfo, probe_video, read_frames

__all__ = [
    "FrameResult",
    "NotAVideoError",
    "VideoAnalyzer",
    "VideoDecodeError",
    "VideoInfo",
    "probe_video",
    "read_frames",
]
