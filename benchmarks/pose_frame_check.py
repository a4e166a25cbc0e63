"""How exactly the pipeline's head pose follows a photo's rotation and mirroring, on the real sample photos.

For each photo, each face's pose in the rotated (or mirrored) photo is compared with its pose in the photo carried
over by the same rotation (`rotate_pose_in_plane`, `flip_pose`): the geodesic angle between the two rotations, in
degrees. The model's pose head answers one fixed crop-frame pose for every face, so the numbers measure the frames and
the face finding alone, not a model's response to the view's resampled pixels: a turned pose (25, -10, 5) for the
rotations, a mirror-symmetric one (0, 12, 0) for the mirror (a model's answer for a mirrored crop is the mirrored
answer only as far as it learnt mirror symmetry). Faces are found again in every view, with and without landmark
refinement, so the numbers include the detector's landmark noise.

    python benchmarks/pose_frame_check.py [--photos t1.jpg multi_face.jpg ...] [--angles 20 -35 90]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import pipeline

from modeling_qface import HEAD_POSE_NAMES, QFaceModel, load_preset
from modeling_qface.model.head_pose_qface import flip_pose, geodesic_degrees, rotate_pose_in_plane
from modeling_qface.registry import register_face_analysis_pipeline
from modeling_qface.samples.photos import fetch_sample_photos

PHOTOS = (
    "0-f1-su-ph.jpg",
    "0-f15-hao-ph.jpg",
    "15-f13-anc-ph.jpg",
    "45-m7-di-ph.jpg",
    "single_face.jpg",
    "multi_face.jpg",
    "t1.jpg",
)


class FixedPose(nn.Module):
    """A head_pose head that answers one crop-frame pose for every face."""

    def __init__(self, pose):
        super().__init__()
        self.register_buffer("pose", torch.tensor(pose, dtype=torch.float32))

    def forward(self, queries):
        return {"values": self.pose.expand(queries.shape[0], 3)}


def rotate_photo(rgb: np.ndarray, degrees: float) -> tuple[np.ndarray, callable]:
    """The photo rotated anticlockwise (as seen) with the canvas grown to fit, and the map of its points."""
    rotated = np.asarray(Image.fromarray(rgb).rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True))
    a = math.radians(degrees)
    centre, new_centre = np.array(rgb.shape[1::-1]) / 2, np.array(rotated.shape[1::-1]) / 2

    def move(point):
        dx, dy = np.asarray(point) - centre
        return new_centre + [math.cos(a) * dx + math.sin(a) * dy, -math.sin(a) * dx + math.cos(a) * dy]

    return rotated, move


def view_of(rgb: np.ndarray, kind: str, degrees: float):
    """(view pixels, point map photo -> view, pose map photo -> view)."""
    if kind == "mirror":
        width = rgb.shape[1]
        return np.ascontiguousarray(rgb[:, ::-1]), lambda p: np.array([width - p[0], p[1]]), flip_pose
    rotated, move = rotate_photo(rgb, degrees)
    return rotated, move, lambda pose: rotate_pose_in_plane(pose, degrees)


def errors(pipe, rgb, kind: str, degrees: float, refine: bool) -> list[float]:
    """Geodesic errors of the faces found in both the photo and its view (matched by landmark centre)."""
    pose = lambda face: np.array([face["head_pose"][n] for n in HEAD_POSE_NAMES])  # noqa: E731
    centre = lambda face: np.mean(face["landmarks"], axis=0)  # noqa: E731
    faces = pipe(rgb, refine_landmarks=refine)
    image, move, carry = view_of(rgb, kind, degrees)
    seen = pipe(image, refine_landmarks=refine)
    out = []
    for face in faces:
        target = move(centre(face))
        other = min(seen, key=lambda f: np.linalg.norm(centre(f) - target), default=None)
        if other is None or np.linalg.norm(centre(other) - target) > 0.2 * (face["box"][2] - face["box"][0]):
            continue  # the detector lost this face in the view
        out.append(float(geodesic_degrees(pose(other), carry(pose(face)))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=PHOTOS)
    parser.add_argument("--angles", nargs="+", type=float, default=[20.0, -35.0, 90.0])
    args = parser.parse_args()
    torch.manual_seed(0)
    register_face_analysis_pipeline()
    turned = QFaceModel(load_preset("qface-tiny")).eval()
    turned.heads["head_pose"] = FixedPose((25.0, -10.0, 5.0))
    pipe = pipeline("face-analysis", model=turned, tasks=["head_pose"])
    symmetric = QFaceModel(load_preset("qface-tiny")).eval()
    symmetric.heads["head_pose"] = FixedPose((0.0, 12.0, 0.0))
    mirror_pipe = pipeline("face-analysis", model=symmetric, tasks=["head_pose"])
    photos = fetch_sample_photos()
    views = [("rotate", a) for a in args.angles] + [("mirror", 0.0)]
    print(f"{'view':>12} {'landmarks':>9} {'faces':>5} {'median':>7} {'p90':>6} {'max':>6}   (geodesic degrees)")
    for kind, degrees in views:
        for refine in (False, True):
            chosen = mirror_pipe if kind == "mirror" else pipe
            found = [
                e
                for name in args.photos
                for e in errors(chosen, np.asarray(Image.open(photos[name]).convert("RGB")), kind, degrees, refine)
            ]
            label = "mirror" if kind == "mirror" else f"rotate {degrees:+g}"
            print(
                f"{label:>12} {'refined' if refine else 'raw':>9} {len(found):5d} {np.median(found):7.2f} "
                f"{np.percentile(found, 90):6.2f} {max(found):6.2f}"
            )


if __name__ == "__main__":
    main()
