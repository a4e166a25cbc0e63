# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Video files read with PyAV (FFmpeg inside its wheel): what a file is (`probe_video`) and its frames, upright and
timed by their presentation timestamps (`read_frames`).

- **Frame index** (`VideoFrame.index`): the 0-based position of the frame among the decoded frames of the stream,
  whatever `every`, `start_s` or `end_s` select.
- **Time** (`VideoFrame.timestamp_s`): the frame's presentation timestamp (PTS x the stream's time base) minus the
  stream's start time, in seconds: right for variable-frame-rate files (phones, screen recordings), where
  `index / fps` drifts. A frame without a PTS (rare, raw streams) gets the previous time plus one frame period.
- **Rotation**: the stream's display matrix (phone videos are stored sideways with a rotation to display them) is
  applied, so frames are what a player shows; `VideoInfo.width/height` are the displayed size.
- **Bad files**: a file FFmpeg cannot open, or without a video stream, is not a video (`probe_video` returns None;
  `open_video` raises `NotAVideoError`). Decoding that fails part-way, or a file that ends before the frame count
  its header gives (a truncated download), raises `VideoDecodeError` naming the file and the frame where decoding
  stopped, after every frame decoded before it has been yielded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Extensions taken as videos when folders and globs are searched (a file named on the command line is probed).
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".mts", ".ogv"}
)


class NotAVideoError(ValueError):
    """A file FFmpeg cannot open as a container with a video stream."""


class VideoDecodeError(ValueError):
    """Decoding stopped part-way (corrupt data, a truncated file). `frame`: the index of the first frame that could
    not be decoded; every frame before it was yielded."""

    def __init__(self, message: str, frame: int):
        super().__init__(message)
        self.frame = frame


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its container.

    Attributes:
        path (`str`): the file.
        width, height (`int`): the displayed frame size in pixels (after the rotation).
        rotation (`int`): degrees the stored frames are turned anticlockwise to display them (0, 90, 180, 270).
        frame_rate (`float` or None): the stream's average frame rate (frames per second), None when unknown.
        duration_s (`float` or None): the stream's (else the container's) duration in seconds.
        frame_count (`int` or None): the number of frames the header announces (None: not given; MPEG-TS, WebM).
        codec (`str`): the video codec's name.
    """

    path: str
    width: int
    height: int
    rotation: int
    frame_rate: float | None
    duration_s: float | None
    frame_count: int | None
    codec: str


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: `index` (0-based, in the stream), `timestamp_s` (from its PTS) and `rgb` `(H, W, 3)` uint8,
    upright."""

    index: int
    timestamp_s: float
    rgb: np.ndarray


def _av():
    import av

    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own stderr chatter; errors reach us as exceptions
    return av


def open_video(path: str | os.PathLike):
    """The PyAV container of `path` and its first video stream; `NotAVideoError` when it has none."""
    av = _av()
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise NotAVideoError(f"{path}: not a video FFmpeg can read ({_reason(error)})") from error
    if not container.streams.video:
        container.close()
        raise NotAVideoError(f"{path}: the file has no video stream")
    return container, container.streams.video[0]


def probe_video(path: str | os.PathLike) -> VideoInfo | None:
    """The `VideoInfo` of a video file; None for a file that is not one (no container FFmpeg reads, no video stream,
    a still image FFmpeg would read as a one-frame "video")."""
    try:
        container, stream = open_video(path)
    except (NotAVideoError, OSError):
        return None
    try:
        if container.format.name in _IMAGE_FORMATS:
            return None
        return _info(path, container, stream)
    finally:
        container.close()


# FFmpeg demuxers that read still images: those files are photos, read by Pillow.
_IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif", "apng"})


def _info(path, container, stream) -> VideoInfo:
    codec = stream.codec_context
    rotation = _rotation_of_stream(stream)
    width, height = (codec.height, codec.width) if rotation in (90, 270) else (codec.width, codec.height)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    else:
        duration = None
    return VideoInfo(
        path=os.fspath(path),
        width=int(width),
        height=int(height),
        rotation=rotation,
        frame_rate=float(rate) if rate else None,
        duration_s=duration,
        frame_count=int(stream.frames) or None,
        codec=codec.name,
    )


def _rotation_of_stream(stream) -> int:
    """The display rotation of the stream's first frame, read without decoding the rest (0 when none)."""
    try:
        for packet in stream.container.demux(stream):
            for frame in packet.decode():
                return _quarter_turns(frame.rotation) * 90
    except Exception:  # a file that fails to decode at once is reported by read_frames, with the frame
        return 0
    finally:
        stream.container.seek(0)
    return 0


def _quarter_turns(rotation: float | None) -> int:
    """A display-matrix angle (degrees anticlockwise, -180..180) as anticlockwise quarter turns 0..3."""
    return int(round((rotation or 0) / 90)) % 4


def read_frames(
    path: str | os.PathLike, every: int = 1, start_s: float | None = None, end_s: float | None = None
) -> Iterator[VideoFrame]:
    """The frames of `path`'s first video stream, upright, in presentation order.

    Args:
        every (`int`): yield every `every`-th decoded frame (indices 0, every, 2 * every, ...).
        start_s, end_s (`float`, *optional*): yield only frames with `start_s <= timestamp_s < end_s`.

    Raises:
        NotAVideoError: before any frame, for a file that is not a video.
        VideoDecodeError: after the last good frame, when decoding stops part-way or the file ends early.
    """
    if every < 1:
        raise ValueError(f"every: expected a frame step >= 1, got {every}")
    av = _av()
    container, stream = open_video(path)
    stream.thread_type = "AUTO"  # frame threads: decoding is a small share of the work, keep it off the critical path
    time_base = float(stream.time_base) if stream.time_base else None
    start_pts = stream.start_time if stream.start_time is not None else 0
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    expected = int(stream.frames) or None
    index, previous = 0, None
    frames = container.decode(stream)
    try:
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.error.FFmpegError, ValueError) as error:
                raise VideoDecodeError(_stopped(path, index, previous, _reason(error)), index) from error
            if frame.pts is not None and time_base is not None:
                timestamp = (frame.pts - start_pts) * time_base
            else:
                timestamp = 0.0 if previous is None else previous + 1 / rate
            previous = timestamp
            if end_s is not None and timestamp >= end_s:
                return
            if index % every == 0 and (start_s is None or timestamp >= start_s):
                rgb = frame.to_ndarray(format="rgb24")
                turns = _quarter_turns(frame.rotation)
                yield VideoFrame(
                    index, round(timestamp, 6), np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
                )
            index += 1
    finally:
        container.close()
    if expected is not None and index < expected and not _ends_within_a_frame(index, expected):
        raise VideoDecodeError(
            _stopped(path, index, previous, f"the file ends after {index} of the {expected} frames its header gives"),
            index,
        )


def _ends_within_a_frame(decoded: int, expected: int) -> bool:
    # Some muxers count a trailing frame that decoders drop (an edit list): one missing frame is no truncation.
    return expected - decoded <= 1


def _stopped(path, index: int, timestamp: float | None, reason: str) -> str:
    at = f" (after {timestamp:.3f} s)" if timestamp is not None and math.isfinite(timestamp) else ""
    return f"{Path(path)}: decoding stopped at frame {index}{at}: {reason}; the frames before it were analysed"


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.split(": '", 1)[0] if text else type(error).__name__


__all__ = [
    "NotAVideoError",
    "VIDEO_EXTENSIONS",
    "VideoDecodeError",
    "VideoFrame",
    "VideoInfo",
    "open_video",
    "probe_video",
    "read_frames",
]
