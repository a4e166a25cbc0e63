"""The model as it ships to the Hub: every module here is copied next to the weights of a Q-Face export and runs there
as remote code (`trust_remote_code=True`) where this package is not installed.

So these modules import only each other (flat, `from .x import`), transformers, torch, numpy, Pillow, safetensors,
huggingface_hub and onnxruntime; never the tools around them (`modeling_qface.analysis`, `.hub`, ...), which
import them. `configuration_qface` is the root: it imports none of the others. This `__init__` is not copied.
"""

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
from .pipeline_qface import FaceAnalysisPipeline

__all__ = [
    "ATTRIBUTE_NAMES",
    "AU_NAMES",
    "EXPRESSION_NAMES",
    "HEAD_POSE_NAMES",
    "FaceAnalysisPipeline",
    "QFaceConfig",
    "QFaceModel",
    "QFaceOutput",
    "QFacePreTrainedModel",
    "default_tasks",
    "normalize_task",
]
