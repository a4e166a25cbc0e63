"""Helpers shared by the benchmark scripts: memory readings and the run header."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import transformers


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent across fork + exec."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def run_header(device: str = "cpu") -> dict:
    """Machine and versions, recorded with every result."""
    return {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {device}",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }  # fmt: skip


def write_json(results: dict, path: str | None) -> None:
    if path:
        with open(path, "w") as handle:
            json.dump(results, handle, indent=2)


def median_seconds(fn: Callable, repeats: int, warmup: int = 1) -> float:
    """The median wall time of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
