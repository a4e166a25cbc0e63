"""The one image processor used for training and inference: resize to the encoder size, ImageNet normalisation."""

from __future__ import annotations

from transformers import ViTImageProcessorPil

from .configuration_qface import QFaceConfig

# MAE (and therefore Q-Face's encoder) is trained on ImageNet-normalised pixels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_image_processor(config: QFaceConfig) -> ViTImageProcessorPil:
    """A `ViTImageProcessor` (PIL backend, no torchvision) for face crops at the encoder's input size.

    Saved next to the model (`preprocessor_config.json`), it is what `AutoImageProcessor` and the pipeline load.
    """
    size = config.backbone_config.image_size
    height, width = size if isinstance(size, (list, tuple)) else (size, size)
    return ViTImageProcessorPil(
        size={"height": height, "width": width}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
