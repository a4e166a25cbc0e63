"""Helpers shared by the benchmark scripts: memory readings, timing, the run header and the pipeline's share table."""

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
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


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


PIPELINE_STAGES = ("decoding", "detection", "refinement", "alignment", "model")


def stage_shares_table(shares: dict[str, float]) -> str:
    """The pipeline's time shares as a Markdown table. The stages are timed apart from the end-to-end run, so on a
    busy machine they can add up to more than it: then "other" says so instead of showing a negative share."""
    other = 1 - sum(shares[stage] for stage in PIPELINE_STAGES)
    other_text = f"{100 * other:.0f} %" if other >= 0 else "n/a (stages timed apart sum to more: a noisy run)"
    return "\n".join(
        [
            "| decoding | detection | landmark refinement | alignment | model | other |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(f"{100 * shares[stage]:.0f} %" for stage in PIPELINE_STAGES) + f" | {other_text} |",
        ]
    )
