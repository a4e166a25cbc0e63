"""Named model presets stored as JSON in the repository's `configuration/` folder."""

from __future__ import annotations

import json

from configuration import PRESET_DIR

from .configuration_qface import QFaceConfig

PRESET_NAMES = tuple(sorted(p.stem for p in PRESET_DIR.glob("qface-*.json")))


def load_preset(name: str, **overrides) -> QFaceConfig:
    """The `QFaceConfig` of a named preset (`qface-base`, `qface-small`, `qface-tiny`), with optional overrides.

    `qface-base` is the paper's scale (ViT-B/16 at 224 px); `qface-tiny` is for tests and CPU smoke runs.
    """
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}; available: {list(PRESET_NAMES)}")
    return QFaceConfig(**{**json.loads(path.read_text()), **overrides})
