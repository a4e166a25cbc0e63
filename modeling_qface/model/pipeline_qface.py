# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The `face-analysis` pipeline: every face of a photo detected, aligned and analysed by a Q-Face model."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from PIL import Image
from transformers.pipelines.base import ChunkPipeline

from .configuration_qface import HEAD_POSE_NAMES
from .face_alignment_qface import DEFAULT_MAX_IMAGE_SIDE, DEFAULT_SCORE_THRESHOLD, FaceCrop, locate_faces
from .head_pose_qface import rotate_pose_in_plane
from .heads_qface import output_fields
from .image_loading_qface import DEFAULT_MAX_IMAGE_PIXELS, load_image_rgb
from .image_processing_qface import build_image_processor
from .onnx_qface import QFaceOnnxModel
from .threads_qface import configure_threads

TASK_NAME = "face-analysis"
DEFAULT_AU_THRESHOLD = 0.5
DEFAULT_BATCH_SIZE = 8

logger = logging.getLogger(__name__)

# CPU flags (Linux /proc/cpuinfo) of instructions that run bfloat16 matrix products natively; without them torch
# emulates bf16 on the CPU, which is slower than float32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), from the flags in `cpuinfo`, else (no such
    file: macOS, Windows) from torch's CPU capability (`AMX...`)."""
    try:
        with open(cpuinfo, encoding="utf-8") as file:
            flags = {flag for line in file if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
        return any(flag in flags for flag in BF16_CPU_FLAGS)
    except OSError:
        return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


class FaceAnalysisPipeline(ChunkPipeline):
    r"""
    Detects every face of an image (RetinaFace), cuts each into the Q-Face crop the model was trained on (its 5
    landmarks aligned to `config.face_crop`, upright, at the model's input size; `face_alignment_qface.FaceCrop`)
    and runs a Q-Face model on them; the faces of all images are batched together (`batch_size` counts faces,
    default 8).

    Inputs: a file path, the bytes of an image file, a `PIL.Image.Image`, a numpy array (`(H, W)`, `(H, W, 3)` or
    `(H, W, 4)`; uint8, uint16 or float in [0, 1]), or a list of these. An input can also be a dict
    `{"image": image, "faces": [{"landmarks": [[x, y]] * 5, "box": [x1, y1, x2, y2], "score": s}, ...]}`: faces
    found elsewhere (a tracker, another detector; `landmarks` as below), analysed as given, in that order. EXIF orientation is applied, transparency is
    composited on white, greyscale and 16-bit images are converted (see `image_loading_qface`). Images above
    `max_image_pixels` are refused; larger-than-`max_image_side` images are downscaled for detection only.

    Output: per image, a list of faces (best detection score first; `[]` when there is none), each a JSON-ready
    dict:

        box          [x1, y1, x2, y2] in pixels of the (EXIF-rotated) input
        score        detector confidence in [0, 1]
        landmarks    [[x, y]] * 5: image-left eye, image-right eye, nose tip, image-left / image-right mouth corner
                     (refined on the upright face unless `refine_landmarks=False`; the crop is cut from them)
        expression   {"label": top class, "scores": {class: probability}} (probabilities sum to 1)
        au           {"AU1": probability, ...};  au_active: AUs with probability >= their `au_threshold`
        attributes   {CelebA attribute: probability}
        age          {"years": expected age, "std": standard deviation of the predicted age distribution}
        head_pose    {"yaw": deg, "pitch": deg, "roll": deg}, the head's rotation in the photo's frame

    Head pose sign convention (that of 300W-LP / AFLW2000, Hopenet, 6DRepNet), seen in the image: yaw > 0 turns the
    nose towards the image's left, pitch > 0 raises the face (looking up), roll > 0 turns the face clockwise. The
    model answers in the frame of the upright crop; the pipeline composes that rotation with the alignment's
    in-plane rotation (`head_pose_qface`), so rotating a photo by a degrees anticlockwise turns the reported pose by
    exactly that rotation (a frontal face's roll changes by -a), and mirroring it negates yaw and roll.

    Tasks added to the model (`add_task`) appear under their own name: multiclass like `expression`, multilabel like
    `attributes`, regression like `head_pose`, distribution like `age` (keyed by the task's `units`, else "value").
    With `detect_faces=False` the input is taken as one already aligned, upright face crop: its central square is
    scaled to the model's input size (`FaceCrop.central`, the rule training data preparation uses for images without
    a detected face); its `box` is that square and `score` and `landmarks` are `None`.

    Call arguments:
        tasks (`list[str]`, *optional*): compute and return only these tasks.
        au_threshold (`float` or `dict[str, float]`, defaults to 0.5): threshold(s) for `au_active`; a dict may give
            some AUs their own threshold, the others keep 0.5.
        detect_faces (`bool`, defaults to `True`), score_threshold (`float`, defaults to 0.9), max_image_side
            (`int`, defaults to 960; larger images are downscaled for detection only, a huge value detects at full
            resolution): face detection settings (see `face_alignment_qface.detect_faces`).
        max_image_pixels (`int`, defaults to ~89.5 M, Pillow's default): larger images raise `ImageTooLargeError`.
        refine_landmarks (`bool`, defaults to `True`): re-detect each face's landmarks on its upright crop under a
            few rotations and a mirror (`face_alignment_qface.refine_landmarks`, 18 small detector runs per face),
            which makes the crop's in-plane rotation, and so the reported pose, follow the photo's within a degree;
            `False` uses RetinaFace's first landmarks (faster; several degrees noisier).
        output_attentions (`bool`, defaults to `False`): also return, per face, `stage_usage` ({task: {stage:
            share}}, JSON-ready) and `attention`, a dict of numpy arrays for figures: `crop` (the aligned face,
            `(H, W, 3)` uint8), `maps` (`(labels, stages, grid_h, grid_w)` float32: cross-attention of each label
            query to each fused stage's patches, averaged over decoder layers and heads), `labels` (`"task/label"`
            per query) and `stages` (`"S4"`, ...: the fused encoder blocks).

    Backends (docs/inference.md): a folder with `model.safetensors` runs on torch, in float32 or in the `dtype` given
    to `pipeline(...)` (bfloat16 is fast on CPUs with AVX512-BF16 or AMX and on GPUs; elsewhere a warning is logged);
    a folder written by `qface export onnx` (`model.onnx`) runs on onnxruntime (`onnx_qface.QFaceOnnxModel`, CPU,
    float32, no `output_attentions`). Both give the same JSON within float rounding.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> pipe = pipeline("face-analysis", model="path/to/qface", trust_remote_code=True)
    >>> faces = pipe("group_photo.jpg")
    >>> faces[0]["expression"]["label"], faces[0]["age"]["years"], faces[0]["head_pose"]["yaw"]
    ```
    """

    _load_processor = False
    # None = optional: loaded from the model folder when it has one, else built from the config in __init__.
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        # Faces, not images, are batched: one forward pass for the faces of a group photo unless told otherwise.
        kwargs.setdefault("batch_size", DEFAULT_BATCH_SIZE)
        super().__init__(*args, **kwargs)
        configure_threads()  # torch's intra-op threads: --threads / QFACE_NUM_THREADS / default (threads_qface)
        if self.image_processor is None:
            # A model saved without `preprocessor_config.json`: Q-Face's processor is fully defined by the config.
            self.image_processor = build_image_processor(self.model.config)
        if self.dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_supports_bf16():
            logger.warning(
                "face-analysis: bfloat16 on a CPU without AVX512-BF16 or AMX: torch emulates it, which is slower than "
                "float32 (and less precise); use dtype=torch.float32 on this machine"
            )

    def __call__(self, inputs, **kwargs):
        """Analyses one image (returns its list of faces) or a list of images (returns one list per image)."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    # ------------------------------------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        tasks=None,
        au_threshold=None,
        detect_faces=None,
        score_threshold=None,
        max_image_side=None,
        max_image_pixels=None,
        output_attentions=None,
        refine_landmarks=None,
    ):
        preprocess, forward, postprocess = {}, {}, {}
        if tasks is not None:
            tasks = self._check_tasks(tasks)
            forward["tasks"] = postprocess["tasks"] = tasks
        if au_threshold is not None:
            postprocess["au_threshold"] = self._check_au_threshold(au_threshold)
        if detect_faces is not None:
            preprocess["detect_faces"] = bool(detect_faces)
        if score_threshold is not None:
            if not 0.0 <= score_threshold < 1.0:
                raise ValueError(f"score_threshold: expected a probability in [0, 1), got {score_threshold!r}")
            preprocess["score_threshold"] = float(score_threshold)
        if max_image_side is not None:
            preprocess["max_image_side"] = max_image_side
        if max_image_pixels is not None:
            if isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or max_image_pixels < 1:
                raise ValueError(f"max_image_pixels: expected a positive int, got {max_image_pixels!r}")
            preprocess["max_image_pixels"] = max_image_pixels
        if refine_landmarks is not None:
            preprocess["refine_landmarks"] = bool(refine_landmarks)
        if output_attentions is not None:
            if output_attentions and isinstance(self.model, QFaceOnnxModel):
                raise ValueError(
                    "output_attentions: the ONNX export has the task outputs only, no attention maps; use the torch "
                    "model (a folder with model.safetensors) for them"
                )
            preprocess["keep_crops"] = forward["output_attentions"] = bool(output_attentions)
        return preprocess, forward, postprocess

    def _check_tasks(self, tasks) -> list[str]:
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        known = self.model.config.task_names
        unknown = [t for t in tasks if t not in known]
        if unknown or not tasks:
            raise ValueError(f"tasks: expected a non-empty list of this model's tasks {known}, got {tasks}")
        return tasks

    def _check_au_threshold(self, threshold) -> dict[str, float]:
        names = self.model.config.get_task("au")["labels"] if "au" in self.model.config.task_names else []
        given = threshold if isinstance(threshold, dict) else dict.fromkeys(names, threshold)
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"au_threshold: unknown AU name(s) {unknown}; this model's AUs are {names}")
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"au_threshold[{name!r}]: expected a probability in [0, 1], got {value!r}")
        return {name: float(given.get(name, DEFAULT_AU_THRESHOLD)) for name in names}

    # ------------------------------------------------------------------------------------------------ preprocess
    def _face_crop(self) -> FaceCrop:
        return FaceCrop.from_config(self.model.config)

    def _input_size(self) -> tuple[int, int]:
        size = self.model.config.backbone_config.image_size
        return tuple(size) if isinstance(size, (list, tuple)) else (size, size)

    def preprocess(
        self,
        image,
        detect_faces: bool = True,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        max_image_side: int | None = DEFAULT_MAX_IMAGE_SIDE,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        keep_crops: bool = False,
        refine_landmarks: bool = True,
    ):
        """Yields one model input per face: `pixel_values` `(1, 3, H, W)`, the face's detection `face` and `is_last`.

        An image without faces yields one placeholder (`face=None`, blank pixels), since every image must reach
        `postprocess`; the placeholder is dropped there.
        """
        given = None
        if isinstance(image, dict) and "faces" in image:  # faces found elsewhere (a tracker, another detector)
            given = _given_faces(image)
            image = image["image"]
        rgb = load_image_rgb(image, max_pixels=max_image_pixels)
        height, width = self._input_size()
        face_crop = self._face_crop()
        if given is not None:
            aligned = [face_crop(rgb, np.asarray(face["landmarks"], dtype=np.float64)) for face in given]
            faces = given
        elif detect_faces:
            detections = locate_faces(rgb, score_threshold, max_image_side, refine=refine_landmarks)
            aligned = [face_crop(rgb, d.landmarks) for d in detections]
            faces = [
                {"box": [float(v) for v in d.box], "score": float(d.score), "landmarks": d.landmarks.tolist()}
                for d in detections
            ]
        else:
            aligned = [face_crop.central(rgb)]
            side = min(rgb.shape[:2])
            left, top = (rgb.shape[1] - side) / 2, (rgb.shape[0] - side) / 2
            faces = [{"box": [left, top, left + side, top + side], "score": None, "landmarks": None}]
        for face, face_aligned in zip(faces, aligned):
            face["crop_angle"] = face_aligned.angle
        crops = [face_aligned.crop for face_aligned in aligned]
        if not crops:
            blank = torch.zeros(1, 3, height, width, dtype=self.dtype)
            yield {"pixel_values": blank, "face": None, "is_last": True}
            return
        pixel_values = self.image_processor(images=[Image.fromarray(c) for c in crops], return_tensors="pt")
        pixel_values = pixel_values["pixel_values"].to(self.dtype)
        for i, (face, crop) in enumerate(zip(faces, crops)):
            if keep_crops:
                face["crop"] = crop
            yield {"pixel_values": pixel_values[i : i + 1], "face": face, "is_last": i == len(crops) - 1}

    # --------------------------------------------------------------------------------------------------- forward
    def _forward(self, model_inputs, tasks: list[str] | None = None, output_attentions: bool = False):
        """Runs the model on a batch of faces; returns a flat dict of `(B, ...)` tensors (the pipeline slices it)."""
        # Cast here too: crops preprocessed elsewhere (`qface analyze --workers`) come in float32.
        pixel_values = model_inputs["pixel_values"].to(self.dtype)
        outputs = self.model(pixel_values=pixel_values, tasks=tasks, output_attentions=output_attentions)
        flat = {}
        for task in self._selected_tasks(tasks):
            for field in output_fields(task).values():
                flat[field] = outputs.field(field).float()
        if output_attentions:
            flat["attention_maps"] = self._attention_maps(outputs.cross_attentions, tasks)
            for name, usage in outputs.stage_usage.items():
                if tasks is None or name in tasks:
                    flat[f"stage_usage.{name}"] = usage.float()
        flat["face"] = model_inputs["face"]
        flat["is_last"] = model_inputs["is_last"]
        return flat

    def _selected_tasks(self, tasks: list[str] | None) -> list[dict]:
        return [t for t in self.model.config.tasks if tasks is None or t["name"] in tasks]

    def _query_labels(self) -> list[tuple[str, str]]:
        """(task, label) of each label query, in the decoder's query order (query groups, then config order)."""
        return [(t["name"], label) for group in self.model.query_groups() for t in group for label in t["labels"]]

    def _attention_maps(self, cross_attentions, tasks: list[str] | None) -> torch.Tensor:
        """Per layer `(B, heads, Q, S * N)` -> `(B, Q', S, grid_h, grid_w)` for the selected tasks' queries."""
        config = self.model.config
        patch = config.backbone_config.patch_size
        patch = tuple(patch) if isinstance(patch, (list, tuple)) else (patch, patch)
        height, width = self._input_size()
        grid = (height // patch[0], width // patch[1])
        maps = torch.stack(cross_attentions).float().mean(dim=(0, 2))  # (B, Q, S * N)
        maps = maps.unflatten(-1, (len(config.fusion_layers), *grid))
        keep = [i for i, (task, _) in enumerate(self._query_labels()) if tasks is None or task in tasks]
        return maps[:, keep]

    # ----------------------------------------------------------------------------------------------- postprocess
    def postprocess(self, model_outputs, tasks: list[str] | None = None, au_threshold: dict | None = None):
        """The per-face outputs of one image -> its list of face dicts (placeholders of face-less images dropped)."""
        if au_threshold is None and "au" in self.model.config.task_names:
            au_threshold = dict.fromkeys(self.model.config.get_task("au")["labels"], DEFAULT_AU_THRESHOLD)
        faces = []
        for output in model_outputs:
            detection = output["face"]
            if detection is None:
                continue
            face = {key: detection[key] for key in ("box", "score", "landmarks")}
            for task in self._selected_tasks(tasks):
                face[task["name"]] = self._task_result(task, output)
                if task["name"] == "head_pose":
                    face["head_pose"] = self._pose_in_photo(face["head_pose"], detection["crop_angle"])
                if task["name"] == "au":
                    face["au_active"] = [name for name, p in face["au"].items() if p >= au_threshold[name]]
            if "attention_maps" in output:
                self._add_attention(face, detection, output, tasks)
            faces.append(face)
        return faces

    @staticmethod
    def _task_result(task: dict, output: dict):
        """One task's answer for one face, as plain Python numbers keyed by label names."""
        fields, labels = output_fields(task), task["labels"]
        if task["kind"] == "multiclass":
            probabilities = output[fields["logits"]][0].softmax(-1).tolist()
            best = max(range(len(labels)), key=probabilities.__getitem__)
            return {"label": labels[best], "scores": dict(zip(labels, probabilities))}
        if task["kind"] == "multilabel":
            return dict(zip(labels, output[fields["logits"]][0].sigmoid().tolist()))
        if task["kind"] == "regression":
            return dict(zip(labels, output[fields["values"]][0].tolist()))
        distribution = output[fields["distribution"]][0].double()
        bins = torch.arange(task["min_value"], task["max_value"] + 1, dtype=torch.float64)
        mean = float((distribution * bins).sum())
        variance = float((distribution * (bins - mean) ** 2).sum())
        return {
            task.get("units") or "value": float(output[fields["expected"]][0]),
            "std": math.sqrt(max(variance, 0.0)),
        }

    @staticmethod
    def _pose_in_photo(crop_pose: dict, crop_angle: float) -> dict:
        """The model's crop-frame pose composed with the alignment's rotation: the pose in the photo's frame."""
        photo = rotate_pose_in_plane([crop_pose[name] for name in HEAD_POSE_NAMES], -crop_angle)
        return dict(zip(HEAD_POSE_NAMES, (float(v) for v in photo)))

    def _add_attention(self, face: dict, detection: dict, output: dict, tasks: list[str] | None) -> None:
        stages = [f"S{layer}" for layer in self.model.config.fusion_layers]
        face["stage_usage"] = {
            key.split(".", 1)[1]: dict(zip(stages, value[0].tolist()))
            for key, value in output.items()
            if key.startswith("stage_usage.")
        }
        labels = [f"{task}/{label}" for task, label in self._query_labels() if tasks is None or task in tasks]
        face["attention"] = {
            "crop": detection["crop"],
            "maps": output["attention_maps"][0].numpy().astype(np.float32),
            "labels": labels,
            "stages": stages,
        }


def _given_faces(image: dict) -> list[dict]:
    """The `faces` of an input `{"image": ..., "faces": [...]}`, checked: each needs its 5 `landmarks` (the crop is
    cut from them); `box` and `score` are passed through to the answer."""
    if "image" not in image:
        raise ValueError(f'an input dict with "faces" needs the key "image" too, got {sorted(image)}')
    faces = []
    for number, face in enumerate(image["faces"]):
        points = np.asarray(face.get("landmarks") if isinstance(face, dict) else None, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise ValueError(f"faces[{number}]: expected 5 finite (x, y) landmarks, got {face!r}")
        box = [float(v) for v in face.get("box") or (*points.min(0), *points.max(0))]
        score = face.get("score")
        faces.append({"box": box, "score": None if score is None else float(score), "landmarks": points.tolist()})
    return faces


def custom_pipelines_entry() -> dict:
    """The `custom_pipelines` entry of a saved model's `config.json` (what `Pipeline.save_pretrained` writes): with
    it and this file next to the weights, `pipeline("face-analysis", model=..., trust_remote_code=True)` builds the face-analysis
    pipeline without the package. `modeling_qface.hub.export_model` writes it with the code."""
    module = FaceAnalysisPipeline.__module__.split(".")[-1]
    return {TASK_NAME: {"impl": f"{module}.{FaceAnalysisPipeline.__name__}", "pt": ["AutoModel"], "type": "image"}}


__all__ = [
    "DEFAULT_AU_THRESHOLD",
    "DEFAULT_BATCH_SIZE",
    "FaceAnalysisPipeline",
    "TASK_NAME",
    "custom_pipelines_entry",
]
