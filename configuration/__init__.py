"""Named presets: model configurations (`qface-*.json`) and training recipes (`pretrain-*.yaml`, `train-*.yaml`).

On disk this folder is `configuration/` at the repository root; it is installed as `modeling_qface.configuration`
(pyproject.toml, `package-dir`), so it never claims a top-level name such as `configuration` in a user's
environment.
"""

from __future__ import annotations

import json
from pathlib import Path

if __name__ != "modeling_qface.configuration":  # imported as a top-level `configuration` from a source checkout
    raise ImportError("Q-Face's presets are the package `modeling_qface.configuration`; import it by that name")

from modeling_qface.model.configuration_qface import QFaceConfig  # noqa: E402

PRESET_DIR = Path(__file__).resolve().parent
PRESET_NAMES = tuple(sorted(p.stem for p in PRESET_DIR.glob("qface-*.json")))


def load_preset(name: str, **overrides) -> QFaceConfig:
    """The `QFaceConfig` of a named preset (`qface-base`, `qface-small`, `qface-tiny`), with optional overrides.

    `qface-base` is the paper's scale (ViT-B/16 at 224 px); `qface-tiny` is for tests and CPU smoke runs.
    """
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}; available: {list(PRESET_NAMES)}")
    return QFaceConfig(**{**json.loads(path.read_text()), **overrides})


__all__ = ["PRESET_DIR", "PRESET_NAMES", "load_preset"]
