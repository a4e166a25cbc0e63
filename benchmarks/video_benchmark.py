# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Video speed and tracking quality with the shipped default model, all in one run (results: BENCHMARKS.md).

    python benchmarks/video_benchmark.py --repeats 3

Speed: frames/s end to end (decode, detect, track, re-identify, model; no file writing) of `VideoAnalyzer` on clips
of real faces (`samples.clips.crossing_clip`) at 640x360 and 1280x720 with 1 and 3 faces, against analysing the same
frames as image files one by one with the photo pipeline (`pipe(path)`, as `qface analyze frames/` would), with its
default landmark refinement and without. Median of `--repeats` runs each.

Tracking: motmetrics' recall, precision, IDF1, ID switches and MOTA on the 3-person clip (a crossing, an exit and a
return after 2 s) at 25 fps, with re-identification, motion only, and detecting every 3rd frame.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from modeling_qface.samples.clips import crossing_clip, tracking_scores
from modeling_qface.samples.photos import fetch_sample_photos
from modeling_qface.video import VideoAnalyzer, read_frames


def frames_per_second(run, frames: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return frames / statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length for the speed runs")
    parser.add_argument("--image-frames", type=int, default=40, help="frames analysed as image files per run")
    args = parser.parse_args(argv)
    photos = fetch_sample_photos()
    analyzer = VideoAnalyzer()
    fast = VideoAnalyzer(analyzer.pipe, detect_every=3)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        "| size | faces | video, detect every frame | video, detect every 3rd | images one by one | images, no refinement | video / images |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for width, height in ((640, 360), (1280, 720)):
            for people in (1, 3):
                clip = folder / f"{width}x{height}_{people}.mp4"
                crossing_clip(clip, photos, people=people, seconds=args.seconds, fps=25, size=(width, height))
                count = sum(1 for _ in read_frames(clip))
                images = []
                for frame in read_frames(clip):
                    if frame.index >= args.image_frames:
                        break
                    images.append(folder / f"frame{frame.index:04d}.jpg")
                    Image.fromarray(frame.rgb).save(images[-1], quality=95)
                list(analyzer(clip))  # warm-up: the model, the detector session, dlib
                video = frames_per_second(lambda: list(analyzer(clip)), count, args.repeats)
                every3 = frames_per_second(lambda: list(fast(clip)), count, args.repeats)
                one_by_one = frames_per_second(
                    lambda: [analyzer.pipe(str(p)) for p in images], len(images), args.repeats
                )
                no_refine = frames_per_second(
                    lambda: [analyzer.pipe(str(p), refine_landmarks=False) for p in images], len(images), args.repeats
                )
                print(
                    f"| {width}x{height} | {people} | {video:.1f} | {every3:.1f} | {one_by_one:.1f} | {no_refine:.1f} "
                    f"| {video / one_by_one:.1f}x |",
                    flush=True,
                )
        clip = folder / "tracking.mp4"
        truth = crossing_clip(clip, photos, people=3, seconds=6.0, fps=25)
        print("\n| tracking (3 people, 150 frames at 25 fps) | recall | precision | IDF1 | ID switches | MOTA |")
        print("|---|---|---|---|---|---|")
        variants = {
            "re-identification (default)": analyzer,
            "motion only (--no-reid)": VideoAnalyzer(analyzer.pipe, reid=False),
            "detect every 3rd frame": fast,
        }
        for name, variant in variants.items():
            s = tracking_scores(list(variant(clip)), truth)
            print(
                f"| {name} | {s['recall']:.3f} | {s['precision']:.3f} | {s['idf1']:.3f} | {s['num_switches']:.0f} "
                f"| {s['mota']:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
