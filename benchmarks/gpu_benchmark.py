"""Q-Face inference on a CUDA GPU (issue 10), as one prepared run of under 5 minutes.

With CUDA (random weights: speed does not depend on them), qface-base, all five tasks, bf16, sdpa attention:
  latency      batch 1, ms per forward (median), eager and `torch.compile(mode="reduce-overhead")` (CUDA graphs: a
               batch-1 forward is hundreds of small kernels, so launch overhead is most of it)
  throughput   eager over a batch sweep (--batch-sizes; stops when faces/s gains under 3 % or memory runs out), then
               `torch.compile` (default mode) at the best batch; faces/s
Order: eager latency, eager sweep, pipeline, then the two compiled measurements (compile time varies most).
  pipeline     the `face-analysis` pipeline end to end on 16 copies of a group photo, faces batched across them
               (the RetinaFace detector and landmark refinement run on the CPU through onnxruntime), faces/s and the
               share of each stage
Goals on a data-centre GPU: >= 5,000 faces/s model-only at large batch, <= 5 ms batch-1 latency.

Every step checks the time budget (--budget-s, default 270 s) first and is skipped, with a note, when too little is
left. Prints a markdown table; writes JSON to $OUT/gpu_benchmark.json when $OUT is set (and to --json).

    python benchmarks/gpu_benchmark.py --photo ~/.cache/qface/sample_photos/t1.jpg
    python benchmarks/gpu_benchmark.py --smoke       # anywhere, CPU too: qface-tiny, 2 iterations, no compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import transformers

# The repository root, for a checkout where the package is not installed (e.g. a fresh GPU machine).
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from measure import stage_shares_table  # noqa: E402  (this script's folder is on sys.path)

from modeling_qface import QFaceModel, load_preset  # noqa: E402

LATENCY_GOAL_MS = 5.0
THROUGHPUT_GOAL = 5000.0


class Budget:
    def __init__(self, seconds: float):
        self.start = time.perf_counter()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, needed: float, what: str, notes: list[str]) -> bool:
        if self.left() >= needed:
            return True
        notes.append(f"{what}: skipped, {self.left():.0f} s of the budget left (needs ~{needed:.0f} s)")
        return False


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(run, device: torch.device, iterations: int, warmup: int, max_seconds: float = 20.0) -> list[float]:
    """Seconds per call, synchronised; stops early after `max_seconds` (at least 2 timed calls)."""
    for _ in range(warmup):
        run()
    synchronize(device)
    times = []
    begin = time.perf_counter()
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if len(times) >= 2 and time.perf_counter() - begin > max_seconds:
            break
    return times


def model_runner(model, pixels):
    def run():
        with torch.inference_mode():
            return model(pixel_values=pixels)

    return run


def sweep(model, config, device, dtype, batch_sizes, iterations, warmup, budget, notes) -> dict:
    size = config.backbone_config.image_size
    results, best = {}, None
    for batch_size in batch_sizes:
        if not budget.allows(15, f"throughput at batch {batch_size}", notes):
            break
        try:
            pixels = torch.randn(batch_size, 3, size, size, device=device, dtype=dtype)
            times = time_forward(model_runner(model, pixels), device, iterations, warmup)
        except torch.OutOfMemoryError:
            notes.append(f"batch {batch_size}: out of memory")
            torch.cuda.empty_cache()
            break
        median = statistics.median(times)
        results[batch_size] = {"median_s": median, "faces_per_s": batch_size / median}
        if best is not None and results[batch_size]["faces_per_s"] < 1.03 * results[best]["faces_per_s"]:
            best = batch_size if results[batch_size]["faces_per_s"] > results[best]["faces_per_s"] else best
            break
        best = batch_size
    return {"by_batch": results, "best_batch": best}


def compiled_timing(model, config, device, dtype, batch_size, mode, iterations, warmup, budget, notes) -> dict | None:
    if not budget.allows(90, f"torch.compile({mode!r}) at batch {batch_size}", notes):
        return None
    size = config.backbone_config.image_size
    pixels = torch.randn(batch_size, 3, size, size, device=device, dtype=dtype)
    compiled = torch.compile(model, mode=mode, dynamic=False)
    try:
        start = time.perf_counter()
        model_runner(compiled, pixels)()
        synchronize(device)
        compile_s = time.perf_counter() - start
        times = time_forward(model_runner(compiled, pixels), device, iterations, warmup)
    except Exception as error:  # a compile failure is a result to report, not a reason to lose the other numbers
        notes.append(f"torch.compile({mode!r}) at batch {batch_size}: {type(error).__name__}: {str(error)[:200]}")
        return None
    median = statistics.median(times)
    return {"compile_s": compile_s, "median_s": median, "faces_per_s": batch_size / median}


def pipeline_run(model, device, photo: str, copies: int, batch_size: int, repeats: int, budget, notes) -> dict | None:
    """End to end on `copies` copies of the photo (faces batched across them), with and without landmark refinement,
    and the stages on their own: decoding, detection, refinement, alignment (CPU) and the model on the crops."""
    if not budget.allows(40, "pipeline", notes):
        return None
    from PIL import Image
    from transformers import pipeline

    from modeling_qface.model.face_alignment_qface import align_face, detect_faces, refine_landmarks
    from modeling_qface.model.image_loading_qface import load_image_rgb
    from modeling_qface.model.image_processing_qface import build_image_processor

    processor = build_image_processor(model.config)
    pipe = pipeline("face-analysis", model=model, image_processor=processor, device=device)
    rgb = load_image_rgb(photo)
    faces = detect_faces(rgb)
    size = model.config.backbone_config.image_size
    crops = [Image.fromarray(align_face(rgb, f.landmarks, size)) for f in faces] * copies
    pixels = processor(crops, return_tensors="pt")["pixel_values"].to(device=device, dtype=model.dtype)
    images = [photo] * copies

    def median_of(fn) -> float:
        fn()
        synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.inference_mode():
        stages = {
            "decoding": copies * median_of(lambda: load_image_rgb(photo)),
            "detection": copies * median_of(lambda: detect_faces(rgb)),
            "refinement": copies * median_of(lambda: [refine_landmarks(rgb, f.landmarks) for f in faces]),
            "alignment": copies * median_of(lambda: [align_face(rgb, f.landmarks, size) for f in faces]),
            "model": median_of(
                lambda: [model(pixel_values=pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
            ),
        }
        end_to_end = median_of(lambda: pipe(images, batch_size=batch_size))
        unrefined = median_of(lambda: pipe(images, batch_size=batch_size, refine_landmarks=False))
    count = len(faces) * copies
    return {
        "photo": photo,
        "faces": count,
        "batch_size": batch_size,
        "end_to_end_s": end_to_end,
        "faces_per_s": count / end_to_end,
        "faces_per_s_without_refinement": count / unrefined,
        "model_faces_per_s": count / stages["model"],
        "stages_s": stages,
        "shares": {k: v / end_to_end for k, v in stages.items()},
    }


def find_photo(photo: str | None) -> str | None:
    if photo in (None, "none"):
        return None
    if Path(photo).expanduser().is_file():
        return str(Path(photo).expanduser())
    cached = Path(os.environ.get("QFACE_SAMPLE_PHOTOS", "~/.cache/qface/sample_photos")).expanduser() / photo
    return str(cached) if cached.is_file() else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="qface-tiny, 2 iterations, no compile: checks the script")
    parser.add_argument("--preset", default=None, help="default: qface-base (qface-tiny with --smoke)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="throughput sweep (default 64 128 256 512 1024 2048; 2 4 with --smoke)",
    )
    parser.add_argument("--iterations", type=int, default=None, help="timed calls per point (default 20; 2 smoke)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also compile with --smoke")
    parser.add_argument("--photo", default="t1.jpg", help="group photo for the pipeline (path or cached sample name)")
    parser.add_argument("--copies", type=int, default=None, help="photo copies per pipeline call (default 16; 2 smoke)")
    parser.add_argument("--pipeline-batch-size", type=int, default=256)
    parser.add_argument("--budget-s", type=float, default=270.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    smoke = args.smoke
    preset = args.preset or ("qface-tiny" if smoke else "qface-base")
    batch_sizes = args.batch_sizes or ([2, 4] if smoke else [64, 128, 256, 512, 1024, 2048])
    iterations = args.iterations or (2 if smoke else 20)
    warmup = 1 if smoke else 3
    copies = args.copies or (2 if smoke else 16)
    use_compile = (not args.no_compile) and (args.compile or not smoke)

    budget = Budget(args.budget_s)
    notes: list[str] = []
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        notes.append("no CUDA device: ran on the CPU (only --smoke is meant for that)")
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    config = load_preset(preset)
    torch.manual_seed(0)
    model = QFaceModel(config).eval().to(device=device, dtype=dtype)
    model.set_attn_implementation("sdpa")
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.version.cuda,
        },
        "preset": preset,
        "dtype": args.dtype,
        "attention": "sdpa",
        "smoke": smoke,
    }

    size = config.backbone_config.image_size
    one = torch.randn(1, 3, size, size, device=device, dtype=dtype)
    latency = {
        "eager": statistics.median(time_forward(model_runner(model, one), device, max(iterations, 2) * 5, warmup))
    }
    results["throughput"] = sweep(model, config, device, dtype, batch_sizes, iterations, warmup, budget, notes)
    best = results["throughput"]["best_batch"]
    # The pipeline before compiling: compile times vary most, and the budget skips what comes last.
    photo = find_photo(args.photo)
    if photo is None:
        notes.append(f"pipeline: skipped, photo {args.photo!r} not found (pass --photo PATH)")
    else:
        try:
            results["pipeline"] = pipeline_run(
                model, device, photo, copies, args.pipeline_batch_size, 2 if smoke else 3, budget, notes
            )
        except Exception as error:
            notes.append(f"pipeline: {type(error).__name__}: {str(error)[:300]}")
            traceback.print_exc()
    compiled_throughput = None
    if use_compile:
        compiled_latency = compiled_timing(
            model, config, device, dtype, 1, "reduce-overhead", iterations * 5, warmup, budget, notes
        )
        if compiled_latency:
            latency["compiled (reduce-overhead)"] = compiled_latency["median_s"]
            results["compile_s_batch_1"] = compiled_latency["compile_s"]
        if best is not None:
            compiled_throughput = compiled_timing(
                model, config, device, dtype, best, "default", iterations, warmup, budget, notes
            )
            results["throughput"]["compiled_at_best_batch"] = compiled_throughput
    results["latency_batch_1_s"] = latency
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30

    results["notes"] = notes
    results["wall_s"] = time.perf_counter() - budget.start

    best_latency_ms = 1e3 * min(latency.values())
    best_throughput = max(
        [v["faces_per_s"] for v in results["throughput"]["by_batch"].values()]
        + ([compiled_throughput["faces_per_s"]] if compiled_throughput else []),
        default=0.0,
    )
    results["goals"] = {
        "latency_ms": best_latency_ms,
        "latency_goal_ms": LATENCY_GOAL_MS,
        "latency_met": best_latency_ms <= LATENCY_GOAL_MS,
        "faces_per_s": best_throughput,
        "throughput_goal": THROUGHPUT_GOAL,
        "throughput_met": best_throughput >= THROUGHPUT_GOAL,
    }

    print(f"\n{results['device']} ({results['machine']}), {preset}, {args.dtype}, sdpa, torch {torch.__version__}")
    print("| measurement | batch | ms per forward | faces/s |")
    print("|---|---|---|---|")
    for name, seconds in latency.items():
        print(f"| latency, {name} | 1 | {seconds * 1e3:.2f} | {1 / seconds:.0f} |")
    for batch_size, r in results["throughput"]["by_batch"].items():
        print(f"| throughput, eager | {batch_size} | {r['median_s'] * 1e3:.1f} | {r['faces_per_s']:.0f} |")
    if compiled_throughput:
        print(
            f"| throughput, compiled | {best} | {compiled_throughput['median_s'] * 1e3:.1f} | "
            f"{compiled_throughput['faces_per_s']:.0f} |"
        )
    g = results["goals"]
    print(
        f"\nbatch-1 latency {g['latency_ms']:.2f} ms (goal <= {LATENCY_GOAL_MS} ms: {'met' if g['latency_met'] else 'NOT met'}); "
        f"throughput {g['faces_per_s']:.0f} faces/s (goal >= {THROUGHPUT_GOAL:.0f}: {'met' if g['throughput_met'] else 'NOT met'})"
    )
    p = results.get("pipeline")
    if p:
        print(
            f"\npipeline end to end: {p['faces']} faces ({args.copies or copies} copies of {Path(p['photo']).name}), "
            f"batch {p['batch_size']}: {p['faces_per_s']:.1f} faces/s ({p['faces_per_s_without_refinement']:.1f} "
            f"without landmark refinement; model alone {p['model_faces_per_s']:.0f} faces/s)"
        )
        print(stage_shares_table(p["shares"]))
    for note in notes:
        print(f"note: {note}")
    print(f"wall time {results['wall_s']:.0f} s")

    for path in [args.json, os.path.join(os.environ["OUT"], "gpu_benchmark.json") if os.environ.get("OUT") else None]:
        if path:
            with open(path, "w") as handle:
                json.dump(results, handle, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
