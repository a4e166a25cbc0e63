"""Sharing on the Hugging Face Hub: the one Q-Face export (a model folder anyone can load without this package), its
model card, and pushes that ship both.

The export, written by `export_model` (which training's `final/` and `best/` folders, `QFaceTrainer`, the
`QFaceHubCallback`, `push_to_hub` and `qface push` all go through; `model.save_pretrained` is transformers' own and
writes only the weights, `config.json` with `auto_map` and the model's code):

    model.safetensors         the weights (never a pickle)
    config.json               with `auto_map` (AutoConfig / AutoModel) and `custom_pipelines` (face-analysis)
    *_qface.py, ...           every code file the model and the face-analysis pipeline import (flat siblings)
    preprocessor_config.json  the image processor
    README.md                 the model card, generated from `model_card.md` (package data) and the files here:
    eval_results.json         optional: `qface evaluate`'s JSON report (or training's best-model record) -> model-index
    recipe.yaml               optional: the training recipe -> the card's training section, datasets, base_model

The card is a pure function of the folder (`write_model_card`): nothing in it is written by hand.
"""

from .callback import QFaceHubCallback
from .card import (
    EVALUATION_FILE,
    MODEL_CARD_TEMPLATE,
    TRAINING_CONFIG_FILE,
    build_model_card,
    evaluation_results,
    write_model_card,
)
from .export import add_pipeline_code, export_folder, export_model
from .push import HubError, hub_errors, push_to_hub

__all__ = [
    "EVALUATION_FILE",
    "HubError",
    "QFaceHubCallback",
    "MODEL_CARD_TEMPLATE",
    "TRAINING_CONFIG_FILE",
    "build_model_card",
    "add_pipeline_code",
    "evaluation_results",
    "export_folder",
    "export_model",
    "hub_errors",
    "push_to_hub",
    "write_model_card",
]
