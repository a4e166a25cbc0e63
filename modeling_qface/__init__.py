"""Q-Face: one model for facial expression, action units, attributes, age and head pose."""

from transformers import AutoConfig, AutoModel

from .configuration_qface import (
    ATTRIBUTE_NAMES,
    AU_NAMES,
    EXPRESSION_NAMES,
    HEAD_POSE_NAMES,
    QFaceConfig,
    default_tasks,
    normalize_task,
)
from .modeling_qface import QFaceModel, QFaceOutput, QFacePreTrainedModel
from .pipeline_qface import FaceAnalysisPipeline, register_face_analysis_pipeline
from .presets import PRESET_NAMES, load_preset

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
