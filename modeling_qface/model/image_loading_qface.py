# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Turns what a user hands the face-analysis pipeline into one RGB uint8 array, or a clear error naming the input.

Accepted inputs: a file path (`str` or `os.PathLike`), the bytes of an encoded image file, a `PIL.Image.Image`, or a
numpy array (channels last) of shape `(H, W)`, `(H, W, 1)`, `(H, W, 3)` or `(H, W, 4)`.

Conversions, chosen so that no input is silently misread:
    - EXIF orientation is applied (`ImageOps.exif_transpose`), so faces are upright as a photo viewer shows them.
    - Transparency (RGBA, LA, palette images with a transparent colour) is composited on **white**: a fully opaque
      pixel keeps its exact colour, a fully transparent one becomes white.
    - Greyscale is replicated to three channels.
    - 16-bit data (uint16 arrays, `I;16` and `I` mode images) is mapped to 8 bits by `round(v / 257)`, so
      `v = 257 * x` gives back exactly `x`. 16-bit RGB PNGs are read by Pillow as 8-bit RGB already.
    - Float data (float arrays, `F` mode images) must lie in [0, 1] and is mapped by `round(v * 255)`; anything
      else (NaN, values above 1 such as 0..255 floats) is refused rather than guessed.
    - Multi-frame files (GIF, TIFF) give their first frame.

Decompression-bomb guard: an image with more than `max_pixels` pixels (default `DEFAULT_MAX_IMAGE_PIXELS`,
Pillow's own default of ~89.5 Mpx) is refused with `ImageTooLargeError`, from its header, before its pixels are
decoded. That limit is the only one: Pillow's global `PIL.Image.MAX_IMAGE_PIXELS` is set aside while the header is
read (under a lock), so a larger `max_pixels` reads larger files and the message always names the configured limit.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's default MAX_IMAGE_PIXELS: 0.25 GiB of RGB pixels (a 9459 x 9459 image).
DEFAULT_MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)

# Held while Pillow's global pixel limit is set aside to read a header (see `_decode`).
_PILLOW_LIMIT_LOCK = threading.Lock()

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageLoadError(ValueError):
    """An input cannot be used as an image. The message starts with the file path (or says which input it was)."""


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the configured limit (decompression-bomb guard)."""


def describe_input(image) -> str:
    """A short name of an input for error messages: its path, or its type and shape."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, np.ndarray):
        return f"numpy array of shape {image.shape} ({image.dtype})"
    if isinstance(image, Image.Image):
        return f"PIL image ({image.mode}, {image.width}x{image.height})"
    if isinstance(image, (bytes, bytearray)):
        return f"image bytes ({len(image)} bytes)"
    return type(image).__name__


def load_image_rgb(image, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Loads any accepted input (see the module docstring) as an RGB image.

    Args:
        image: a path, encoded bytes, a `PIL.Image.Image` or a numpy array.
        max_pixels (`int`, *optional*): refuse images with more pixels than this; `None` disables the check.

    Returns:
        `np.ndarray` of shape `(height, width, 3)`, dtype uint8, C-contiguous.

    Raises:
        ImageLoadError: a missing, empty, unreadable or truncated file, or an array of an unusable shape or range.
        ImageTooLargeError: more than `max_pixels` pixels.
        TypeError: an input of another type.
    """
    name = describe_input(image)
    if isinstance(image, (str, os.PathLike)):
        return _load_file(os.fspath(image), max_pixels)
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ImageLoadError(f"{name}: empty (0 bytes)")
        return _decode(lambda: io.BytesIO(image), name, max_pixels)
    if isinstance(image, Image.Image):
        _check_pixel_count(image.width, image.height, max_pixels, name)
        return pil_to_rgb(ImageOps.exif_transpose(image), name)
    if isinstance(image, np.ndarray):
        return array_to_rgb(image, name, max_pixels)
    raise TypeError(
        f"expected an image as a file path, bytes, a PIL.Image.Image or a numpy array, got {type(image).__name__}"
    )


def _load_file(path: str, max_pixels: int | None) -> np.ndarray:
    if not os.path.exists(path):
        raise ImageLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageLoadError(f"{path}: is a folder, not an image file")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"{path}: empty file (0 bytes)")
    return _decode(lambda: path, path, max_pixels)


def _decode(source, name: str, max_pixels: int | None) -> np.ndarray:
    """Opens (header only), checks the size, then decodes. `source()` gives what `Image.open` reads."""
    try:
        # Our own limit is checked below, on the header's size; Pillow's global one is set aside meanwhile, so that
        # `max_pixels` alone decides (Pillow would refuse above twice its own limit whatever the caller asked).
        with _PILLOW_LIMIT_LOCK:
            pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                opened = Image.open(source())
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_limit
    except UnidentifiedImageError as error:
        raise ImageLoadError(f"{name}: not an image file that Pillow can read") from error
    except OSError as error:
        raise ImageLoadError(f"{name}: cannot be read ({error})") from error
    with opened:
        _check_pixel_count(opened.width, opened.height, max_pixels, name)
        try:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            # Pillow reports truncated and corrupt data as OSError ("image file is truncated ...") or SyntaxError.
            raise ImageLoadError(f"{name}: damaged or truncated image data ({error})") from error
        return pil_to_rgb(upright, name)


def _check_pixel_count(width: int, height: int, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(decompression-bomb guard; raise max_image_pixels to allow it)"
        )


def pil_to_rgb(image: Image.Image, name: str = "PIL image") -> np.ndarray:
    """A PIL image of any mode -> `(H, W, 3)` uint8 (alpha composited on white, 16-bit and float rescaled)."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        return array_to_rgb(np.asarray(image), name, max_pixels=None, sixteen_bit=image.mode in _SIXTEEN_BIT_MODES)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        return array_to_rgb(np.asarray(image.convert("RGBA")), name, max_pixels=None)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def array_to_rgb(
    array: np.ndarray, name: str = "numpy array", max_pixels: int | None = None, sixteen_bit: bool | None = None
) -> np.ndarray:
    """A channels-last numpy image -> `(H, W, 3)` uint8.

    `sixteen_bit` forces the 16-bit mapping for integer data (Pillow's `I` mode holds 16-bit data in int32);
    by default only uint16 arrays get it.
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        hint = (
            " (channels first? use array.transpose(1, 2, 0))" if array.ndim == 3 and array.shape[0] in (1, 3, 4) else ""
        )
        raise ImageLoadError(
            f"{name}: expected shape (height, width), (height, width, 1), (height, width, 3) or "
            f"(height, width, 4), got {array.shape}{hint}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageLoadError(f"{name}: empty image, shape {array.shape}")
    _check_pixel_count(array.shape[1], array.shape[0], max_pixels, name)
    pixels = _to_uint8(array, name, sixteen_bit)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    elif pixels.shape[2] == 4:
        pixels = _composite_on_white(pixels)
    return np.ascontiguousarray(pixels)


def _to_uint8(array: np.ndarray, name: str, sixteen_bit: bool | None) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        raise ImageLoadError(f"{name}: boolean arrays are not images; convert a mask with mask.astype(np.uint8) * 255")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError(f"{name}: float image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageLoadError(
                f"{name}: float images must lie in [0, 1], got values in [{low:g}, {high:g}]; "
                "for 0..255 data pass array.astype(np.uint8)"
            )
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        sixteen_bit = array.dtype == np.uint16 if sixteen_bit is None else sixteen_bit
        low, high = int(array.min()), int(array.max())
        limit = 65535 if sixteen_bit else 255
        if low < 0 or high > limit:
            raise ImageLoadError(f"{name}: {array.dtype} image values must lie in 0..{limit}, got {low}..{high}")
        if sixteen_bit:
            return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return array.astype(np.uint8)
    raise ImageLoadError(f"{name}: unsupported dtype {array.dtype}; expected uint8, uint16 or float in [0, 1]")


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """`(H, W, 4)` uint8 -> `(H, W, 3)`: `rgb * a + 255 * (1 - a)`, exact for a = 0 and a = 255."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:].astype(np.uint32)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ImageLoadError",
    "ImageTooLargeError",
    "array_to_rgb",
    "describe_input",
    "load_image_rgb",
    "pil_to_rgb",
]
