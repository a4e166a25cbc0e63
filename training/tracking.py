# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Run logs: a JSON-lines Accelerate tracker (`qface train`), the step log and progress bar of `qface pretrain`, and
trimming logs back to a resumed step (both)."""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from tqdm.auto import tqdm

from modeling_qface.outputs.writers import strict_json


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Keeps the records of a JSON-lines log with `step <= last_step` (drops what a killed run logged after its
    last checkpoint, which the resumed run logs again); a line that does not parse (cut short by the kill) or has
    no step is dropped. Rewritten atomically."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
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


class TrainLog:
    """The progress bar and `train_log.jsonl`: one line per `every` optimizer steps (and at the last step).

    A line's loss is the mean over the forward passes (and processes) since the previous line; images/s counts every
    process's images over the wall time of those steps, data loading included.
    """

    def __init__(self, accelerator: Accelerator, path: Path, total_steps: int, every: int, initial: int = 0):
        self.accelerator, self.total_steps, self.every = accelerator, total_steps, every
        self.file = path.open("a") if accelerator.is_main_process else None
        self.bar = tqdm(
            total=total_steps,
            initial=initial,
            desc="MAE pretraining",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        self.last_loss = float("nan")
        self._reset()

    def _reset(self):
        self.loss_sum, self.passes, self.images, self.start = 0.0, 0, 0, time.perf_counter()

    def add_pass(self, loss: torch.Tensor, batch_size: int) -> None:
        self.loss_sum += loss.detach().float()
        self.passes += 1
        self.images += batch_size * self.accelerator.num_processes

    def end_step(self, step: int, epoch: int, lr: float, grad_norm) -> None:
        self.bar.update(1)
        if step % self.every and step != self.total_steps:
            return
        loss = self.accelerator.reduce(self.loss_sum / self.passes, "mean").item()  # every process takes part
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step}: MAE loss is {loss}; lower the learning rate or check the images")
        record = {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "images_per_second": self.images / (time.perf_counter() - self.start),
            "grad_norm": None if grad_norm is None else float(grad_norm),
        }
        self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{record['images_per_second']:.1f}")
        if self.file is not None:
            self.file.write(strict_json(record) + "\n")
            self.file.flush()
        self.last_loss = loss
        self._reset()

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()


class Throughput:
    """Samples per second over the windows from one log line to the next, less the time spent evaluating and
    checkpointing (`paused`)."""

    def __init__(self, global_batch: int):
        self.global_batch, self.train_seconds, self.trained_steps = global_batch, 0.0, 0
        self._restart()

    def _restart(self) -> None:
        self.start, self.paused_seconds, self.steps = time.perf_counter(), 0.0, 0

    @contextmanager
    def paused(self):
        start = time.perf_counter()
        yield
        self.paused_seconds += time.perf_counter() - start

    def lap(self) -> float:
        """The window's samples per second; starts the next window."""
        elapsed = time.perf_counter() - self.start - self.paused_seconds
        self.train_seconds += elapsed
        self.trained_steps += self.steps
        samples_per_s = self.steps * self.global_batch / elapsed
        self._restart()
        return samples_per_s

    @property
    def samples_per_s(self) -> float | None:
        return self.trained_steps * self.global_batch / self.train_seconds if self.train_seconds else None


__all__ = ["JSONLTracker", "Throughput", "TrainLog", "flatten_for_hparams", "truncate_jsonl"]
