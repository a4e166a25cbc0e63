# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The videos of `qface analyze`: their options, and each video's frames through `VideoAnalyzer` into the results
file, frame by frame (a killed run keeps every finished frame; `--resume` continues after the last one, with the
tracker's state rebuilt from the file's rows, so people keep their ids across the restart)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..video.decoding import NotAVideoError, VideoDecodeError, probe_video, read_frames
from ..video.smoothing import DEFAULT_BETA, DEFAULT_MIN_CUTOFF_HZ
from ..video.tracking import DEFAULT_REID_WINDOW_S


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("videos", "inputs FFmpeg reads as video (docs/video.md)")
    group.add_argument("--every", type=int, default=1, help="analyse every Nth decoded frame (default: %(default)s)")
    group.add_argument("--start", type=float, help="analyse from this time, in seconds (default: the start)")
    group.add_argument("--end", type=float, help="analyse up to this time, in seconds (default: the end)")
    group.add_argument(
        "--detect-every",
        type=int,
        default=1,
        help="run the face detector on every Kth analysed frame; the frames between reuse each face's last box "
        "(faster; a little off for fast motion; default: %(default)s)",
    )
    group.add_argument("--batch-frames", type=int, default=8, help="frames analysed together (default: %(default)s)")
    group.add_argument("--no-tracking", action="store_true", help="no track ids (every track_id empty)")
    group.add_argument(
        "--no-reid",
        action="store_true",
        help="track by motion only: a person hidden for more than a second comes back with a new id",
    )
    group.add_argument(
        "--smooth",
        action="store_true",
        help="add smoothed values (One-Euro filter per person) beside the raw ones: JSONL `smoothed`, CSV *_smooth",
    )
    group.add_argument(
        "--smooth-cutoff",
        type=float,
        default=DEFAULT_MIN_CUTOFF_HZ,
        help="One-Euro cut-off in Hz (default: %(default)s)",
    )
    group.add_argument(
        "--smooth-beta", type=float, default=DEFAULT_BETA, help="One-Euro speed coefficient (default: %(default)s)"
    )
    group.add_argument(
        "--openface-csv",
        type=Path,
        help="also write OpenFace 2's FeatureExtraction CSV (frame 1-based, face_id, timestamp, confidence, success, "
        "pose_R* in radians, AU*_c); with several videos a folder (one file per video)",
    )
    group.add_argument(
        "--render-video",
        type=Path,
        help="write the video with boxes, track ids, pose axes and the top expression drawn (H.264 .mp4); with "
        "several videos a folder",
    )
    group.add_argument(
        "--reid-window",
        type=float,
        default=DEFAULT_REID_WINDOW_S,
        help="seconds a person may be gone and come back with their id (default: %(default)s)",
    )


def video_option_problem(args) -> str | None:
    if args.every < 1:
        return f"--every must be >= 1, got {args.every}"
    if args.detect_every < 1:
        return f"--detect-every must be >= 1, got {args.detect_every}"
    if args.batch_frames < 1:
        return f"--batch-frames must be >= 1, got {args.batch_frames}"
    if args.start is not None and args.start < 0:
        return f"--start must be >= 0 seconds, got {args.start}"
    if args.start is not None and args.end is not None and args.end <= args.start:
        return f"--end ({args.end}) must be after --start ({args.start})"
    if args.reid_window < 0:
        return f"--reid-window must be >= 0 seconds, got {args.reid_window}"
    if args.smooth_cutoff <= 0 or args.smooth_beta < 0:
        return f"--smooth-cutoff must be > 0 and --smooth-beta >= 0, got {args.smooth_cutoff}, {args.smooth_beta}"
    if args.render_video is not None and args.resume:
        return "--render-video writes a video from its first frame: give it without --resume"
    return None


def side_output(option: str, path: Path | None, video: Path, videos: list[Path], suffix: str) -> Path | None:
    """The file of `--openface-csv` / `--render-video` for `video`: the path given (one video) or, with several
    videos, `<folder>/<video name><suffix>`."""
    if path is None:
        return None
    if len(videos) == 1 and not path.is_dir():
        return path
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: {len(videos)} videos need a folder (one file per video), not a file")
    return path / f"{video.stem}{suffix}"


def check_side_outputs(args, videos: list[Path]) -> None:
    """Refuses, before the model loads, side outputs that cannot be written (as `check_output_file` does)."""
    from ..outputs.result_file import check_output_file

    for option, path, suffix in (
        ("--openface-csv", args.openface_csv, ".csv"),
        ("--render-video", args.render_video, ".mp4"),
    ):
        for video in videos if path is not None else ():
            target = side_output(option, path, video, videos, suffix)
            check_output_file(target, option, resume=args.resume, overwrite=args.overwrite)


def video_analyzer(pipe, call: dict, args):
    from ..video.analyzer import VideoAnalyzer

    call = {
        k: v
        for k, v in call.items()
        if k not in ("detect_faces", "max_image_pixels", "score_threshold", "max_image_side")
    }
    return VideoAnalyzer(
        pipe,
        batch_frames=args.batch_frames,
        batch_size=args.batch_size,
        detect_every=args.detect_every,
        track=not args.no_tracking,
        reid=not args.no_reid,
        reid_window_s=args.reid_window,
        score_threshold=args.score_threshold,
        max_image_side=args.max_image_side,
        **call,
    )


def analyse_videos(analyzer, videos: list[Path], writer, args, failures: list, tasks) -> tuple[int, int, int]:
    """Each video through `analyzer` into `writer`; (videos analysed, frames analysed, faces found). A video that
    cannot be read, or stops decoding part-way, is a failure (its finished frames stay in the file)."""
    from ..video.summary import TrackSummaries

    expression = next((t["labels"] for t in tasks if t["name"] == "expression"), None)
    num_videos = num_frames = num_faces = 0
    for path in videos:
        info = probe_video(path)
        if info is None:
            _fail(writer, failures, path, f"{path}: not a video FFmpeg can read")
            continue
        recorded = writer.frames_of(path)
        tracker = analyzer.new_tracker(info.frame_rate)
        sinks = _side_writers(path, videos, info, args, tasks, resume=bool(recorded))
        summaries = TrackSummaries(_expression_columns(expression))
        for earlier in writer.recorded_results(path) if recorded else ():  # a resumed video: all of it summarised
            summaries.add(earlier, tasks)
        frames = _frames_after(path, recorded, tracker, args)
        progress = tqdm(
            total=_frames_to_analyse(info, args),
            unit="frame",
            desc=path.name,
            disable=args.no_progress,
            file=sys.stderr,
        )
        progress.update(len(recorded))
        count = 0
        try:
            with progress:
                for result in analyzer(path, tracker=tracker, frames=frames, keep_frames=args.render_video is not None):
                    for sink in sinks:  # before the results file: a side file holds every frame that one does
                        sink.add(result)
                    writer.add_frame(path, result)
                    summaries.add(result, tasks)
                    count, num_faces = count + 1, num_faces + len(result.faces)
                    progress.update(1)
        except (NotAVideoError, VideoDecodeError) as error:
            num_frames += count
            _fail(writer, failures, path, str(error))
            continue
        finally:
            for sink in sinks:
                sink.close()
        writer.add_video_end(path, _video_record(info, len(recorded) + count, summaries))
        num_videos, num_frames = num_videos + 1, num_frames + count
    return num_videos, num_frames, num_faces


def _side_writers(path: Path, videos: list[Path], info, args, tasks, resume: bool) -> list:
    """What else this video's frames go to, in order: the smoother (it adds the smoothed values the writers write),
    the OpenFace table, the rendered video."""
    sinks = []
    if args.smooth:
        from ..video.smoothing import TrackSmoother

        sinks.append(TrackSmoother(args.smooth_cutoff, args.smooth_beta))
    openface = side_output("--openface-csv", args.openface_csv, path, videos, ".csv")
    if openface is not None:
        from ..video.openface import OpenFaceWriter

        au_names = next((t["labels"] for t in tasks if t["name"] == "au"), [])
        openface.parent.mkdir(parents=True, exist_ok=True)
        sinks.append(OpenFaceWriter(openface, au_names, _au_thresholds(au_names, args.au_threshold), resume=resume))
    rendered = side_output("--render-video", args.render_video, path, videos, ".mp4")
    if rendered is not None:
        from ..video.rendering import VideoRenderer

        rendered.parent.mkdir(parents=True, exist_ok=True)
        sinks.append(VideoRenderer(rendered, info.frame_rate))
    return sinks


def _au_thresholds(au_names: list[str], threshold: float) -> dict[str, float]:
    return dict.fromkeys(au_names, threshold)


def _frames_after(path: Path, recorded: dict, tracker, args):
    """The frames of `path` to analyse: those after the frames the results file holds. The frames it holds are
    decoded too, and their boxes replayed into the tracker, so people keep their ids as if the run never stopped."""
    last = max(recorded, default=-1)
    for frame in read_frames(path, args.every, args.start, args.end):
        if frame.index > last:
            yield frame
        elif frame.index in recorded:
            faces = recorded[frame.index]
            if tracker is not None:
                boxes, scores, track_ids = zip(*faces) if faces else ((), (), ())
                tracker.replay(frame.rgb, boxes, [s or 1.0 for s in scores], track_ids, frame.timestamp_s)


def _frames_to_analyse(info, args) -> int | None:
    """How many frames the progress bar expects (None when the header does not say)."""
    if info.frame_count is None or args.start is not None or args.end is not None:
        return None
    return -(-info.frame_count // args.every)


def _expression_columns(labels):
    if not labels:
        return None
    from ..outputs.dataframe import EMOTION_COLUMNS

    return [c for c in EMOTION_COLUMNS if c in labels] + [c for c in labels if c not in EMOTION_COLUMNS]


def _video_record(info, frames: int, summaries) -> dict:
    video = {
        "width": info.width,
        "height": info.height,
        "rotation": info.rotation,
        "frame_rate": info.frame_rate,
        "duration_s": info.duration_s,
        "frame_count": info.frame_count,
        "codec": info.codec,
    }
    return {"video": video, "frames": frames, "tracks": summaries.records()}


def _fail(writer, failures: list, path: Path, reason: str) -> None:
    failures.append((str(path), reason))
    writer.add_failure(str(path), reason)


__all__ = ["add_video_arguments", "analyse_videos", "check_side_outputs", "video_analyzer", "video_option_problem"]
