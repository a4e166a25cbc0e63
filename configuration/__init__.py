"""Named presets: model configurations (`qface-*.json`) and training recipes (`*.yaml`)."""

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent
