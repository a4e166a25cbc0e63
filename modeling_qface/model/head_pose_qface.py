# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Head pose angles as rotations: the one place that says what yaw, pitch and roll mean, and how they change when the
image is rotated in its plane (face alignment, rotation augmentation) or mirrored.

Frame. The camera frame as the viewer sees the image: x towards the image's right, y towards the image's top, z out
of the image towards the viewer (right-handed). A head pose `(yaw, pitch, roll)` in degrees, in the 300W-LP /
AFLW2000 convention that Hopenet, 6DRepNet and WHENet report with, is the rotation that takes a frontal, upright head
to the observed one:

    R(yaw, pitch, roll) = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll) = (Rz(roll) @ Ry(yaw) @ Rx(pitch)).T

(the transpose is 6DRepNet's `get_R(pitch, yaw, roll)`; 3DDFA, which made 300W-LP's `Pose_Para`, applies exactly this
R to its face model). Seen in the image: yaw > 0 turns the nose towards the image's left, pitch > 0 raises the face,
roll > 0 turns the face clockwise. Angles come back from a rotation with yaw in [-90, 90].

Changes of frame, exact for any pose (not just `roll += angle`):
    rotating the image anticlockwise (as seen) by `a` degrees about any point:  R -> Rz(a) @ R
        (for a frontal face: roll -> roll - a);
    mirroring the image left-right:  R -> P @ R @ P with P = diag(-1, 1, 1)  (yaw -> -yaw, roll -> -roll).
Translation and scale of a face in the image leave its rotation unchanged (the weak-perspective model that the
datasets' labels use).
"""

from __future__ import annotations

import numpy as np

_FLIP_X = np.diag([-1.0, 1.0, 1.0])


def _axis_rotations(angles_rad: np.ndarray, axis: int) -> np.ndarray:
    """Right-handed rotations about one axis (0 = x, 1 = y, 2 = z): `(N,)` radians -> `(N, 3, 3)`."""
    cos, sin = np.cos(angles_rad), np.sin(angles_rad)
    first, second = [(1, 2), (2, 0), (0, 1)][axis]
    matrices = np.zeros(angles_rad.shape + (3, 3))
    matrices[..., axis, axis] = 1.0
    matrices[..., first, first] = cos
    matrices[..., second, second] = cos
    matrices[..., first, second] = -sin
    matrices[..., second, first] = sin
    return matrices


def _as_poses(poses) -> tuple[np.ndarray, bool]:
    array = np.asarray(poses, dtype=np.float64)
    single = array.ndim == 1
    array = np.atleast_2d(array)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"head pose: expected [yaw, pitch, roll] degrees of shape (3,) or (N, 3), got {array.shape}")
    return array, single


def pose_to_matrix(poses) -> np.ndarray:
    """`[yaw, pitch, roll]` degrees, shape `(3,)` or `(N, 3)` -> rotation matrices `(3, 3)` or `(N, 3, 3)`."""
    array, single = _as_poses(poses)
    yaw, pitch, roll = np.radians(array).T
    matrices = _axis_rotations(-pitch, 0) @ _axis_rotations(-yaw, 1) @ _axis_rotations(-roll, 2)
    return matrices[0] if single else matrices


def matrix_to_pose(matrices) -> np.ndarray:
    """Rotation matrices `(3, 3)` or `(N, 3, 3)` -> `[yaw, pitch, roll]` degrees `(3,)` or `(N, 3)`, yaw in [-90, 90]."""
    array = np.asarray(matrices, dtype=np.float64)
    single = array.ndim == 2
    g = np.swapaxes(array[None] if single else array, -1, -2)  # Rz(roll) @ Ry(yaw) @ Rx(pitch)
    yaw = np.arctan2(-g[:, 2, 0], np.hypot(g[:, 0, 0], g[:, 1, 0]))
    pitch = np.arctan2(g[:, 2, 1], g[:, 2, 2])
    roll = np.arctan2(g[:, 1, 0], g[:, 0, 0])
    poses = np.degrees(np.stack([yaw, pitch, roll], axis=-1))
    return poses[0] if single else poses


def rotate_pose_in_plane(poses, angle_degrees) -> np.ndarray:
    """The pose seen after rotating the image anticlockwise (as seen) by `angle_degrees`, per pose or one for all.

    Args:
        poses (array-like of shape `(3,)` or `(N, 3)`): `[yaw, pitch, roll]` in degrees.
        angle_degrees (`float` or array-like of shape `(N,)`): anticlockwise in-plane rotation of the image.
    """
    array, single = _as_poses(poses)
    angles = np.broadcast_to(np.radians(np.asarray(angle_degrees, dtype=np.float64)), (len(array),))
    rotated = matrix_to_pose(_axis_rotations(angles, 2) @ pose_to_matrix(array))
    return rotated[0] if single else rotated


def flip_pose(poses) -> np.ndarray:
    """The pose seen in the left-right mirrored image: `[-yaw, pitch, -roll]` (exactly `P @ R @ P`)."""
    array, single = _as_poses(poses)
    flipped = array * np.array([-1.0, 1.0, -1.0])
    return flipped[0] if single else flipped


def in_plane_angle(image_to_crop) -> float:
    """Anticlockwise (as seen) rotation angle in degrees of a 2-D similarity given in pixel coordinates (y down).

    Args:
        image_to_crop (array-like of shape `(3, 3)` or `(2, 3)`): homogeneous map of image pixels to crop pixels.
    """
    matrix = np.asarray(image_to_crop, dtype=np.float64)
    # With y pointing down, an anticlockwise-as-seen rotation maps the x axis to (cos a, -sin a).
    return float(np.degrees(np.arctan2(-matrix[1, 0], matrix[0, 0]))) + 0.0  # no -0.0


def geodesic_degrees(first, second) -> np.ndarray:
    """The angle of the rotation between two head poses (degrees, 0..180); poses `(3,)` or `(N, 3)`."""
    relative = np.swapaxes(pose_to_matrix(first), -1, -2) @ pose_to_matrix(second)
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


__all__ = [
    "flip_pose",
    "geodesic_degrees",
    "in_plane_angle",
    "matrix_to_pose",
    "pose_to_matrix",
    "rotate_pose_in_plane",
]
