# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The MAE paper's reconstruction figure: per image, original | masked | reconstruction | reconstruction + visible.

Layout (PIL only): a header line of column titles, then one row per image; every tile is the image scaled up by
an integer factor to at least `MIN_TILE` pixels (nearest neighbour, so patches stay sharp), `GAP` pixels apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from transformers import ViTMAEForPreTraining

from .mae_data import BadImageError, load_rgb

COLUMNS = ("original", "masked", "reconstruction", "reconstruction + visible")
MIN_TILE = 128
GAP = 4
HEADER = 16
MASK_GREY = 0.5  # masked patches are shown in mid grey


def tile_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of one tile for images of `height` x `width` pixels."""
    scale = max(1, math.ceil(MIN_TILE / min(height, width)))
    return height * scale, width * scale


def figure_size(num_images: int, height: int, width: int) -> tuple[int, int]:
    """(width, height) in pixels of the figure for `num_images` images of `height` x `width` pixels."""
    tile_h, tile_w = tile_size(height, width)
    return len(COLUMNS) * tile_w + (len(COLUMNS) + 1) * GAP, HEADER + num_images * tile_h + (num_images + 1) * GAP


@torch.no_grad()
def reconstruct(
    model: ViTMAEForPreTraining, pixel_values: torch.Tensor, image_mean, image_std, seed: int = 0
) -> tuple[dict[str, torch.Tensor], float]:
    """The four panels of each image as `(B, 3, H, W)` RGB in [0, 1], and the masked-patch loss on these images.

    The mask is drawn from a generator seeded with `seed`, so the figure is the same for the same weights. With
    `norm_pix_loss` the decoder predicts each patch normalised to zero mean and unit variance (over its pixels and
    channels); the prediction is mapped back with the true patch's mean and variance, so a masked patch's
    brightness and contrast come from the image and only its normalised content from the model.
    """
    batch, _, height, width = pixel_values.shape
    num_patches = model.vit.embeddings.patch_embeddings.num_patches
    noise = torch.rand(batch, num_patches, generator=torch.Generator().manual_seed(seed)).to(pixel_values.device)
    output = model(pixel_values=pixel_values, noise=noise)
    prediction = output.logits  # (B, N, patch_size**2 * 3)
    if model.config.norm_pix_loss:
        target = model.patchify(pixel_values)
        patch_mean, patch_var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        prediction = prediction * (patch_var + 1.0e-6) ** 0.5 + patch_mean
    reconstruction = model.unpatchify(prediction, (height, width))
    mask = model.unpatchify(output.mask[..., None].expand_as(prediction).to(prediction.dtype), (height, width))

    mean = torch.tensor(image_mean, device=pixel_values.device).view(1, 3, 1, 1)
    std = torch.tensor(image_std, device=pixel_values.device).view(1, 3, 1, 1)

    def to_rgb(normalised: torch.Tensor) -> torch.Tensor:
        return (normalised * std + mean).clamp(0, 1)

    original, reconstructed = to_rgb(pixel_values), to_rgb(reconstruction)
    panels = {
        "original": original,
        "masked": original * (1 - mask) + MASK_GREY * mask,
        "reconstruction": reconstructed,
        "reconstruction + visible": original * (1 - mask) + reconstructed * mask,
    }
    return panels, output.loss.item()


def save_reconstruction_figure(panels: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Writes the panels of `reconstruct` as a PNG laid out as described in the module docstring."""
    batch, _, height, width = panels[COLUMNS[0]].shape
    tile_h, tile_w = tile_size(height, width)
    figure = Image.new("RGB", figure_size(batch, height, width), "white")
    draw = ImageDraw.Draw(figure)
    for column, title in enumerate(COLUMNS):
        left = GAP + column * (tile_w + GAP)
        draw.text((left, 2), title, fill="black")
        tiles = (panels[title].permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype("uint8")
        for row, tile in enumerate(tiles):
            image = Image.fromarray(tile).resize((tile_w, tile_h), Image.Resampling.NEAREST)
            figure.paste(image, (left, HEADER + GAP + row * (tile_h + GAP)))
    figure.save(path)
    return Path(path)


def reconstruction_images(source, indices: list[int], count: int) -> list:
    """The first `count` images of `indices` that decode (one that does not is left out of the figure)."""
    images = []
    for index in indices:
        if len(images) == count:
            break
        try:
            images.append(load_rgb(source, index))
        except BadImageError:
            continue
    return images
