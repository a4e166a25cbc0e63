# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Run logs: a JSON-lines Accelerate tracker, and trimming logs back to a resumed step."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from accelerate.tracking import GeneralTracker

from modeling_qface.outputs.writers import strict_json


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Keeps the records of a JSON-lines log with `step <= last_step` (drops what a killed run logged after its
    last checkpoint, which the resumed run logs again). Rewritten atomically."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text("".join(f"{line}\n" for line in kept))
    os.replace(temporary, path)


def _json_value(value):
    """Floats that JSON cannot hold (NaN, inf) become None; numpy / torch scalars become Python numbers."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JSONLTracker(GeneralTracker):
    """Appends one JSON object per `accelerator.log` call to a file: `{"step": ..., **values}`.

    Runs on the main process only (Accelerate's default for trackers). Its `__init__` touches no process state:
    creating Accelerate's `PartialState` before the `Accelerator` breaks multi-process CPU detection.
    """

    name = "jsonl"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.handle = None

    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", buffering=1)  # line-buffered: each record is on disk when logged

    @property
    def tracker(self):
        return self.handle

    def store_init_configuration(self, values: dict):
        pass  # the recipe is saved as recipe.yaml next to the log

    def log(self, values: dict, step: int | None = None, **kwargs):
        record = {"step": step, **{key: _json_value(value) for key, value in values.items()}}
        self.handle.write(strict_json(record) + "\n")

    def finish(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def flatten_for_hparams(values: dict, prefix: str = "") -> dict:
    """A nested recipe dict -> `{"optimizer.lr": 0.001, ...}` with only bool/int/float/str values (TensorBoard
    hparams accept nothing else; lists and None become strings)."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_for_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


__all__ = ["JSONLTracker", "flatten_for_hparams", "truncate_jsonl"]
