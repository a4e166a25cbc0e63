# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The model and the images of MAE pretraining: the encoder's config (a preset or a config JSON), the
`ViTMAEForPreTraining` built on it with fixed sin-cos positions, and the image source a recipe's `data` names."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from modeling_qface import QFaceConfig, load_preset
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.modeling_qface import init_vit_mae_embeddings

from .data import load_source
from .mae_data import DatasetImages, ImageFiles, find_image_files
from .pretrain_recipe import DECODER_FIELDS, DEFAULT_PRESET, PretrainDataSection, PretrainModelSection

logger = logging.getLogger(__name__)


def encoder_config(model: PretrainModelSection) -> QFaceConfig:
    """The Q-Face config whose encoder is pretrained: a preset, or a Q-Face / ViTMAE config JSON."""
    if model.config is None:
        return load_preset(model.preset or DEFAULT_PRESET)
    path = Path(model.config)
    data = json.loads(path.read_text())
    model_type = data.get("model_type")
    if model_type == "qface":
        return QFaceConfig.from_dict(data)
    if model_type == "vit_mae":
        # Only the encoder (and its image size, for the processor) is used; one fused stage makes a valid config.
        return QFaceConfig(backbone_config=data, fusion_layers=[data.get("num_hidden_layers", 12)])
    raise ValueError(f"{path}: model_type is {model_type!r}, expected 'qface' or 'vit_mae'")


def pretraining_config(config: QFaceConfig, model: PretrainModelSection) -> ViTMAEConfig:
    """The `ViTMAEConfig` of the MAE: the Q-Face encoder's geometry with masking on and the decoder options."""
    values = config.backbone_config.to_dict()
    values.update(mask_ratio=model.mask_ratio, norm_pix_loss=model.norm_pix_loss)
    values.update({name: getattr(model, name) for name in DECODER_FIELDS if getattr(model, name) is not None})
    return ViTMAEConfig.from_dict(values)


def build_mae_model(config: ViTMAEConfig) -> ViTMAEForPreTraining:
    """A fresh `ViTMAEForPreTraining` with the fixed sin-cos position embeddings MAE needs.

    In transformers 5.24 a freshly built model has all-zero encoder and decoder position embeddings, CLS and mask
    tokens: `ViTMAEEmbeddings.initialize_weights` returns early once the patch projection is marked initialised,
    and `_init_weights` zeroes the decoder's. The position embeddings are frozen, so training never repairs them:
    the model would not know where any patch is.
    """
    model = ViTMAEForPreTraining(config)
    init_vit_mae_embeddings(model.vit.embeddings)
    with torch.no_grad():
        model.decoder.initialize_weights(model.vit.embeddings.patch_embeddings.num_patches)
    for name in ("vit.embeddings.position_embeddings", "decoder.decoder_pos_embed"):
        if not model.get_parameter(name)[:, 1:].any():
            raise RuntimeError(f"{name} is still all zero after initialisation; this transformers version changed")
    return model


def warn_if_decoder_dominates(model: ViTMAEForPreTraining) -> None:
    """Logs a warning when the MAE decoder has more parameters than the encoder.

    Presets that set no decoder get ViTMAEConfig's (8 blocks of width 512, 25 M parameters), sized for ViT-L: on
    qface-small's 2.7 M encoder it made pretraining ten times slower (7.7 vs 80 images/s on a CPU thread).
    """
    encoder = sum(p.numel() for p in model.vit.parameters())
    decoder = sum(p.numel() for p in model.decoder.parameters())
    if decoder > encoder:
        logger.warning(
            "the MAE decoder (%.1f M parameters) is larger than the encoder (%.1f M) and will dominate the cost; "
            "consider --decoder-hidden-size / --decoder-num-hidden-layers (see configuration/pretrain-small.yaml)",
            decoder / 1e6,
            encoder / 1e6,
        )


def open_image_source(data: PretrainDataSection, face_crop: FaceCrop | None = None) -> ImageFiles | DatasetImages:
    """The images `data` names: an image folder or a `save_to_disk` folder (`folder`), or `source` / `root` /
    `split`, whose faces are cut into `face_crop` (the encoder's Q-Face crop), as fine-tuning and inference cut them."""
    if data.source is not None:
        dataset = load_source(data.source, data.root, data.split, face_crop=face_crop)
        return DatasetImages(dataset, "image", f"{data.source}/{data.split}", path_column="photo")
    path = Path(data.folder)
    if not any((path / marker).is_file() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
        return ImageFiles(find_image_files(path))
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if data.split not in dataset:
            raise ValueError(f"{path}: no split {data.split!r}; splits are {sorted(dataset)}")
        dataset = dataset[data.split]
    return DatasetImages(dataset, data.image_column, str(path))


__all__ = ["build_mae_model", "encoder_config", "open_image_source", "pretraining_config", "warn_if_decoder_dominates"]
