"""What `import modeling_qface` registers with transformers: the `qface` config and model for `AutoConfig` /
`AutoModel`, and the `face-analysis` pipeline task with its default model, the demo model shipped with the package.

Registration lives here, not in the Hub-facing modules (`modeling_qface.model`), because it is about this
installation: where the default model lies, and that its code is the installed package's own.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .model.configuration_qface import QFaceConfig
from .model.modeling_qface import QFaceModel
from .model.onnx_qface import QFaceOnnxModel
from .model.pipeline_qface import TASK_NAME, FaceAnalysisPipeline

# The task's default model, as each transformers task has one: weights, configs and reports, no code (`make
# demo-model` builds it; docs/demo-model.md).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
DEFAULT_MODEL_NOTICE = (
    "Q-Face demo model: a demonstration of the recipe, trained on a 2-core CPU on ~400 faces of under a hundred "
    "people with offline teacher labels (expression, Male, Smiling, age, head pose); not a model for real use. "
    "Train your own with `qface pretrain` / `qface train` and pass model=... (see docs/demo-model.md)."
)

logger = logging.getLogger(__name__)


def default_model_available() -> bool:
    return (DEFAULT_MODEL_DIR / "model.safetensors").is_file() and (DEFAULT_MODEL_DIR / "config.json").is_file()


class DefaultModelNotice(logging.Filter):
    """On transformers' pipeline logger: `pipeline("face-analysis")` without a model says what the default is (the
    demo model's notice) instead of transformers' "No model was supplied, defaulted to <a local path>" advice, which
    is meant for Hub models and revisions."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(f"No model was supplied, defaulted to {DEFAULT_MODEL_DIR} "):
            logger.warning(DEFAULT_MODEL_NOTICE)
            return False
        return True


def register_face_analysis_pipeline() -> None:
    """Registers `FaceAnalysisPipeline` as the `face-analysis` task of `transformers.pipeline` (idempotent).

    A saved pipeline's `custom_pipelines` entry must name only classes of `transformers` itself (`AutoModel`), so
    that it resolves in a process that only has remote code; `QFaceOnnxModel` is left out of it.
    """
    pipelines_logger = logging.getLogger("transformers.pipelines")
    if not any(isinstance(f, DefaultModelNotice) for f in pipelines_logger.filters):
        pipelines_logger.addFilter(DefaultModelNotice())
    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK_NAME)
    if registered is not None and registered["impl"] is FaceAnalysisPipeline:
        return
    # `pipeline("face-analysis")` without a model loads the shipped demo model (when this install has it).
    default = {"model": (str(DEFAULT_MODEL_DIR), None)} if default_model_available() else None
    # A folder is loaded by the first class that can: the torch model (`model.safetensors`), else the ONNX export
    # (`model.onnx`, written by `qface export onnx`), so `pipeline("face-analysis", model=folder)` takes either.
    PIPELINE_REGISTRY.register_pipeline(
        TASK_NAME,
        pipeline_class=FaceAnalysisPipeline,
        pt_model=(AutoModel, QFaceOnnxModel),
        default=default,
        type="image",
    )
    # A saved pipeline writes `_registered_impl` into its config's `custom_pipelines`: leave this machine's path of
    # the default model out of every saved or pushed model, and name only `AutoModel` (a saved pipeline is a torch
    # model; a process with only remote code resolves the names in `transformers`).
    FaceAnalysisPipeline._registered_impl = {
        TASK_NAME: {
            k: (AutoModel,) if k == "pt" else v
            for k, v in PIPELINE_REGISTRY.supported_tasks[TASK_NAME].items()
            if k != "default"
        }
    }


def register() -> None:
    """Every registration of this package (idempotent); `import modeling_qface` runs it."""
    AutoConfig.register("qface", QFaceConfig, exist_ok=True)
    AutoModel.register(QFaceConfig, QFaceModel, exist_ok=True)
    # `save_pretrained` then writes `auto_map` and copies the model's module (and what it imports) beside the weights.
    QFaceConfig.register_for_auto_class()
    QFaceModel.register_for_auto_class("AutoModel")
    register_face_analysis_pipeline()


__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_MODEL_NOTICE",
    "default_model_available",
    "register",
    "register_face_analysis_pipeline",
]
