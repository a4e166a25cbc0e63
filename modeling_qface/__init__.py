"""Q-Face: one model for facial expression, action units, attributes, age and head pose.

The rooms of this package (docs/architecture.md): `model` is the Hub-facing set copied next to saved weights;
`configuration` the named presets; `analysis`, `outputs`, `figures`, `hub`, `onnx_export`, `webdemo`, `samples` and
`cli` the tools around the model; `training` the training code. Importing the package registers the model and the
`face-analysis` pipeline with transformers (`registry`).
"""

import os

# No telemetry from the libraries Q-Face runs; each reads its variable when it is imported, so they are set before
# any of them is. `setdefault`: a user's own setting wins. onnxruntime (the face detector) is switched off again in
# face_alignment_qface, which also runs as remote code; the web demo does Gradio's in modeling_qface.webdemo.serve.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .configuration import PRESET_NAMES, load_preset  # noqa: E402
from .model import (  # noqa: E402
    ATTRIBUTE_NAMES,
    AU_NAMES,
    EXPRESSION_NAMES,
    HEAD_POSE_NAMES,
    FaceAnalysisPipeline,
    QFaceConfig,
    QFaceModel,
    QFaceOutput,
    QFacePreTrainedModel,
    default_tasks,
    normalize_task,
)
from .registry import register, register_face_analysis_pipeline  # noqa: E402

register()

# Tools importable from the package root, imported on first use (the Hub client is not needed to analyse a photo).
_LAZY = {"export_model": "hub", "push_to_hub": "hub"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ATTRIBUTE_NAMES",
    "AU_NAMES",
    "EXPRESSION_NAMES",
    "HEAD_POSE_NAMES",
    "PRESET_NAMES",
    "FaceAnalysisPipeline",
    "QFaceConfig",
    "QFaceModel",
    "QFaceOutput",
    "QFacePreTrainedModel",
    "default_tasks",
    "export_model",
    "load_preset",
    "normalize_task",
    "push_to_hub",
    "register_face_analysis_pipeline",
]
