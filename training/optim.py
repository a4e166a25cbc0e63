# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""AdamW parameter groups (with layer-wise learning-rate decay over the ViT encoder when asked), the optimizer and
its warmup + cosine schedule, for MAE pretraining and fine-tuning alike.

Layer ids (as in BEiT / MAE fine-tuning, for an encoder of L blocks):
    0        `encoder.embeddings` (patch projection, CLS token)
    i + 1    encoder block `encoder.layers[i]`
    L + 1    everything above the blocks: the encoder's final LayerNorm, fusion, label queries, decoder, heads
A parameter of layer id `k` gets the learning rate `lr * layer_decay ** (L + 1 - k)`: the heads train at `lr`, the
last block at `lr * layer_decay`, the embeddings at `lr * layer_decay ** (L + 1)`.

No weight decay on biases, normalisation weights, embedding tables (label queries, stage embeddings), the CLS / mask
tokens and the position embeddings. The patch projection's convolution weight is decayed, as in MAE's fine-tuning recipe.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from transformers import get_cosine_with_min_lr_schedule_with_warmup

# Parameters that are embeddings although they are not held by an nn.Embedding.
_EMBEDDING_PARAMETERS = ("cls_token", "position_embeddings", "mask_token", "decoder_pos_embed")
_BLOCK = re.compile(r"^encoder\.layers\.(\d+)\.")


def layer_id(name: str, num_layers: int) -> int:
    """The layer id of a `QFaceModel` parameter name (see the module docstring)."""
    if name.startswith("encoder.embeddings."):
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def decays(module: nn.Module, parameter_name: str, parameter: torch.Tensor) -> bool:
    """Whether weight decay applies to `parameter` (named `parameter_name` inside its owning `module`)."""
    if parameter.ndim <= 1 or isinstance(module, (nn.Embedding, nn.LayerNorm)):
        return False
    return parameter_name not in _EMBEDDING_PARAMETERS


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW parameter groups, frozen parameters left out, weight decay only where `decays` says.

    Without `layer_decay` (MAE pretraining, any model): two groups, `decay` and `no_decay`, both at `lr`. With it (a
    `QFaceModel`, fine-tuning): one group per (layer id, decayed or not), at `lr` x its layer's scale (see the module
    docstring). Each group carries `lr`, `weight_decay`, `lr_scale` and `name` (e.g. `"layer_03_decay"`) for logging.
    """
    num_layers = model.config.backbone_config.num_hidden_layers if layer_decay is not None else 0
    groups: dict[str, dict] = {}
    for module_name, module in model.named_modules():
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            kind = "decay" if decays(module, parameter_name, parameter) else "no_decay"
            name, scale = kind, 1.0
            if layer_decay is not None:
                layer = layer_id(f"{module_name}.{parameter_name}" if module_name else parameter_name, num_layers)
                name, scale = f"layer_{layer:02d}_{kind}", layer_decay ** (num_layers + 1 - layer)
            if name not in groups:
                decay = weight_decay if kind == "decay" else 0.0
                groups[name] = {"name": name, "params": [], "lr": lr * scale, "lr_scale": scale, "weight_decay": decay}
            groups[name]["params"].append(parameter)
    return [groups[name] for name in sorted(groups)]


def build_optimizer(model: nn.Module, settings, lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`; `settings` is a recipe's `optimizer` section (an `AdamWSection`), whose
    `layer_decay` applies where it has one; `lr` replaces `settings.lr` (pretraining's scaled rate)."""
    lr = settings.lr if lr is None else lr
    groups = parameter_groups(model, lr, settings.weight_decay, getattr(settings, "layer_decay", None))
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(settings.betas), eps=settings.eps)


def warmup_steps(settings, max_steps: int) -> int:
    if settings.warmup_steps is not None:
        return min(settings.warmup_steps, max_steps)
    return math.ceil((settings.warmup_ratio or 0.0) * max_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, settings, max_steps: int):
    """Linear warmup to each group's peak lr, then a cosine down to `min_lr_ratio` x that peak at `max_steps`."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=warmup_steps(settings, max_steps),
        num_training_steps=max_steps,
        min_lr_rate=settings.min_lr_ratio,
    )


__all__ = ["build_optimizer", "build_scheduler", "decays", "layer_id", "parameter_groups", "warmup_steps"]
