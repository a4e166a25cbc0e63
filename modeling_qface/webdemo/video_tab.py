# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The web demo's video section: a short uploaded video analysed frame by frame with tracking, shown as the
rendered video (boxes, ids, pose axes, top expression), each person's summary and the timeline of their answers."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from ..figures.timeline import timeline_figure
from ..video.decoding import NotAVideoError, VideoDecodeError, probe_video
from ..video.rendering import VideoRenderer
from ..video.summary import track_summary

# A demo on a shared CPU: longer videos belong to `qface analyze`.
MAX_VIDEO_SECONDS = 20.0
KEPT_VIDEOS = 8
SUMMARY_COLUMNS = ["track_id", "first_s", "last_s", "frames"]


class VideoDemo:
    """The handler of the video section, around the photo demo's pipeline (and its lock: one model call at a time)."""

    def __init__(self, pipe, lock):
        from ..video.analyzer import VideoAnalyzer

        self.analyzer = VideoAnalyzer(pipe)
        self.lock = lock
        self.counter = itertools.count()
        self._directory = tempfile.TemporaryDirectory(prefix="qface-videos-", ignore_cleanup_errors=True)
        self.folder = Path(self._directory.name)

    def analyze(self, video) -> tuple:
        """An uploaded video (path) -> (rendered video path, timeline figure, per-person table, status)."""
        if not video:
            return (
                None,
                None,
                pd.DataFrame(columns=SUMMARY_COLUMNS),
                "Upload a short video, then press **Analyze video**.",
            )
        path = Path(video if isinstance(video, (str, Path)) else video["path"])
        info = probe_video(path)
        if info is None:
            return None, None, pd.DataFrame(columns=SUMMARY_COLUMNS), f"**Not a video FFmpeg can read:** {path.name}"
        if info.duration_s is not None and info.duration_s > MAX_VIDEO_SECONDS:
            message = (
                f"This video is {info.duration_s:.0f} s long; the demo takes up to {MAX_VIDEO_SECONDS:.0f} s "
                "(use `qface analyze` for long videos)."
            )
            return None, None, pd.DataFrame(columns=SUMMARY_COLUMNS), message
        if not self.folder.is_dir():  # the page was closed (cleanup) and launched again
            self._directory = tempfile.TemporaryDirectory(prefix="qface-videos-", ignore_cleanup_errors=True)
            self.folder = Path(self._directory.name)
        target = self.folder / str(next(self.counter)) / "qface_video.mp4"
        target.parent.mkdir(parents=True)
        renderer, frames, status = VideoRenderer(target, info.frame_rate), [], ""
        try:
            with self.lock:
                for result in self.analyzer(path, end_s=MAX_VIDEO_SECONDS, keep_frames=True):
                    renderer.add(result)
                    result.rgb = None  # the rows are kept for the timeline; the pixels are in the video now
                    frames.append(result)
        except (NotAVideoError, VideoDecodeError) as error:
            status = f"**Decoding stopped:** {error}. "
        finally:
            renderer.close()
        self._drop_old()
        records = [
            {"input": str(path), "frame": r.frame, "timestamp_s": r.timestamp_s, "faces": r.faces} for r in frames
        ]
        figure = timeline_figure(records, title=path.name)
        from ..outputs.dataframe import video_results_to_dataframe

        table = video_results_to_dataframe(frames, tasks=self.analyzer.pipe.model.config.tasks)
        summary = track_summary(table) if len(table) else pd.DataFrame(columns=SUMMARY_COLUMNS)
        people = len(summary)
        status += f"Analysed **{len(frames)}** frames; **{people}** {'person' if people == 1 else 'people'} tracked."
        return str(target), figure, summary.round(3), status

    def _drop_old(self) -> None:
        old = sorted((p for p in self.folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))[:-KEPT_VIDEOS]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)

    def cleanup(self) -> None:
        self._directory.cleanup()


def add_video_section(pipe, lock) -> VideoDemo:
    """Adds the video section to the `gr.Blocks` being built; returns its handler."""
    handler = VideoDemo(pipe, lock)
    gr.Markdown(f"## Video\nUp to {MAX_VIDEO_SECONDS:.0f} s: every frame analysed, each person tracked with one id.")
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Video", sources=["upload"], elem_id="qface-video")
            button = gr.Button("Analyze video", variant="primary", elem_id="qface-analyze-video")
        with gr.Column():
            status = gr.Markdown("Upload a short video.", elem_id="qface-video-status")
            rendered = gr.Video(label="Tracked faces", interactive=False, elem_id="qface-video-rendered")
    timeline = gr.Plot(label="Timeline per person", elem_id="qface-timeline")
    summary = gr.Dataframe(label="People", interactive=False, elem_id="qface-people")
    button.click(handler.analyze, inputs=video, outputs=[rendered, timeline, summary, status])
    return handler


__all__ = ["MAX_VIDEO_SECONDS", "VideoDemo", "add_video_section"]
