"""Q-Face: one model for facial expression, action units, attributes, age and head pose."""

import os

# No telemetry from the libraries Q-Face runs; each reads its variable when it is imported, so they are set before
# any of them is. `setdefault`: a user's own setting wins. onnxruntime (the face detector) is switched off again in
# face_alignment_qface, which also runs as remote code; the web demo does Gradio's in modeling_qface.serve.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from transformers import AutoConfig, AutoModel  # noqa: E402

from .configuration_qface import (  # noqa: E402
    ATTRIBUTE_NAMES,
    AU_NAMES,
    EXPRESSION_NAMES,
    HEAD_POSE_NAMES,
    QFaceConfig,
    default_tasks,
    normalize_task,
)
from .modeling_qface import QFaceModel, QFaceOutput, QFacePreTrainedModel  # noqa: E402
from .pipeline_qface import FaceAnalysisPipeline, register_face_analysis_pipeline  # noqa: E402
from .presets import PRESET_NAMES, load_preset  # noqa: E402

AutoConfig.register("qface", QFaceConfig, exist_ok=True)
AutoModel.register(QFaceConfig, QFaceModel, exist_ok=True)
# `save_pretrained` then writes `auto_map` and copies the flat modules next to the weights.
QFaceConfig.register_for_auto_class()
QFaceModel.register_for_auto_class("AutoModel")
# `pipeline("face-analysis", model=...)`; saved pipelines carry `custom_pipelines` and the code.
register_face_analysis_pipeline()

__all__ = [
    "ATTRIBUTE_NAMES", "AU_NAMES", "EXPRESSION_NAMES", "HEAD_POSE_NAMES", "PRESET_NAMES",
    "FaceAnalysisPipeline", "QFaceConfig", "QFaceModel", "QFaceOutput", "QFacePreTrainedModel",
    "default_tasks", "load_preset", "normalize_task", "register_face_analysis_pipeline",
]  # fmt: skip
