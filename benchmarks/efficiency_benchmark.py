"""Inference efficiency (issue 10): how close Q-Face runs to this machine's matrix-product speed, and where time goes.

Each run first measures the machine's GEMM throughput at ViT-B's shapes (8 x 197 tokens: `(1576, 768) x (768, 2304)`
= the fused qkv projection, `x (768, 3072)` = fc1, `(1576, 3072) x (3072, 768)` = fc2; `torch.addmm`, as
`nn.Linear` runs them) in fp32 and, where the CPU has bf16 instructions (`avx512_bf16` or AMX in /proc/cpuinfo), in
bf16, at every thread count used below; and again at the end (both are reported: the machine's load moves them).
Then, for each preset and batch size, the variants are timed interleaved (A, B, C, A, B, C, ...; medians):

  torch Nt       QFaceModel (random weights, eval, sdpa attention), fp32, N intra-op threads, for N in --threads and
                 torch's default (marked *)
  encoder Nt     only the encoder as Q-Face runs it (`QFaceModel.encode`: every patch, every hidden state): the
                 split "fusion + decoder + heads on top of the encoder" is torch Nt / encoder Nt - 1
  onnx           the model exported with `torch.onnx.export(dynamo=True)` and a dynamic batch axis (the package's
                 exporter, `modeling_qface.onnx_export.export`, when it is there), run by onnxruntime with torch's default
                 thread count
  bf16           QFaceModel cast to bfloat16, default threads (only where the CPU has bf16 instructions)
  compiled       with --compile: `torch.compile(model)` (inductor, CPU C++ kernels), fp32, default threads; its
                 compile time and largest output difference from eager are reported

Times are medians (img/s and GFLOP/s from them); the minimum is shown too: on a shared machine it is the closest
reading of the unloaded speed. Each variant's GFLOP/s is its FLOPs / median time; "of GEMM" divides that by the same
run's GEMM figure for its dtype and thread count (the mean of the start and end measurements; in fp32 the better of
torch's `addmm` and onnxruntime's `Gemm` on the same shapes, since on AVX-512 CPUs onnxruntime's MLAS kernels are
about twice as fast as torch's: the machine's limit is the faster one). FLOPs are counted with
`torch.utils.flop_counter.FlopCounterMode` on one forward under eager attention (matrix products, convolutions and
attention's two products, 2 FLOPs per multiply-add; LayerNorm, softmax, GELU and additions are not counted).

Last, the `face-analysis` pipeline end to end on a group photo, with the share of each stage (reusing
pipeline_benchmark.py's stages; decoding = reading the file into RGB pixels).

    python benchmarks/efficiency_benchmark.py                              # qface-base + qface-small, batch 1 and 8
    python benchmarks/efficiency_benchmark.py --presets qface-tiny --batch-sizes 2 --repeats 2 --no-onnx --pipeline none
    python benchmarks/efficiency_benchmark.py --presets qface-base --batch-sizes 8 --threads 2 --no-bf16 --compile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from measure import median_seconds, run_header, stage_shares_table, write_json

# The repository root, for a checkout where the package is not installed (e.g. a fresh GPU machine).
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from modeling_qface import QFaceModel, load_preset  # noqa: E402
from modeling_qface.model.pipeline_qface import cpu_supports_bf16  # noqa: E402

# ViT-B's three matrix-product shapes at batch 8 (M = 8 x 197 tokens, K, N).
GEMM_SHAPES = ((1576, 768, 2304), (1576, 768, 3072), (1576, 3072, 768))


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.split(":", 1)[-1].split())


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.startswith("model name")), "")
    except OSError:
        return "unknown"
    return line.split(":", 1)[-1].strip() or "unknown"


def gemm_gflops(dtype: torch.dtype, threads: int, repeats: int) -> float:
    """Throughput of `torch.addmm` over `GEMM_SHAPES`: their total FLOPs / the sum of their median times."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    flops = seconds = 0.0
    with torch.inference_mode():
        for m, k, n in GEMM_SHAPES:
            a = torch.randn(m, k, generator=generator).to(dtype)
            b = torch.randn(k, n, generator=generator).to(dtype)
            bias = torch.randn(n, generator=generator).to(dtype)
            seconds += median_seconds(lambda: torch.addmm(bias, a, b), repeats, warmup=2)
            flops += 2.0 * m * k * n
    return flops / seconds / 1e9


def onnxruntime_gemm_gflops(threads: int, repeats: int) -> float | None:
    """The same products as `gemm_gflops`, fp32, as one-node ONNX `Gemm` graphs run by onnxruntime (its own MLAS
    kernels): torch's `addmm` is not this CPU's fastest GEMM, so the machine's figure is the better of the two.
    None when the `onnx` package (to build the graphs) is missing."""
    try:
        import numpy as np
        import onnxruntime
        from onnx import TensorProto, helper
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    rng = np.random.default_rng(0)
    flops = seconds = 0.0
    for m, k, n in GEMM_SHAPES:
        b = helper.make_tensor("b", TensorProto.FLOAT, (k, n), rng.standard_normal((k, n), dtype=np.float32))
        c = helper.make_tensor("c", TensorProto.FLOAT, (n,), rng.standard_normal(n, dtype=np.float32))
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["a", "b", "c"], ["y"])],
            "gemm",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, (m, k))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, (m, n))],
            initializer=[b, c],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        a = rng.standard_normal((m, k), dtype=np.float32)
        seconds += median_seconds(lambda: session.run(None, {"a": a}), repeats, warmup=2)
        flops += 2.0 * m * k * n
    return flops / seconds / 1e9


@dataclass
class Variant:
    name: str
    threads: int
    dtype: str
    run: Callable[[], object]
    flops: float
    times: list[float] = field(default_factory=list)


def count_flops(model: QFaceModel, pixel_values: torch.Tensor, encoder_only: bool = False) -> float:
    """FLOPs of one forward, counted under eager attention (so attention's products are seen as matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    implementation = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model.encode(pixel_values) if encoder_only else model(pixel_values)
    finally:
        model.set_attn_implementation(implementation)
    return float(counter.get_total_flops())


def export_onnx(model: QFaceModel, folder: Path) -> Path:
    """`model` as an ONNX graph with a dynamic batch axis: the package's exporter, or `torch.onnx.export` directly."""
    path = folder / "model.onnx"
    try:
        from modeling_qface.onnx_export.export import export_onnx_graph
    except ImportError:
        export_onnx_graph = None
    if export_onnx_graph is not None:
        return export_onnx_graph(model, path)

    class TaskOutputs(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            out = self.inner(pixel_values=pixel_values, return_dict=True)
            return tuple(v for k, v in out.items() if isinstance(v, torch.Tensor) and k != "loss")

    size = model.config.backbone_config.image_size
    example = torch.randn(2, 3, size, size)
    wrapper = TaskOutputs(model).eval()
    with torch.no_grad():
        wrapper(example)
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        input_names=["pixel_values"],
        dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}},
    )
    program.save(str(path))
    return path


def onnx_session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_available() -> str | None:
    """None when the ONNX variant can run, else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed"
    return None


def build_variants(
    preset: str,
    batch_size: int,
    threads: list[int],
    default_threads: int,
    with_onnx: bool,
    with_bf16: bool,
    onnx_paths: dict,
    with_compile: bool = False,
) -> tuple[list[Variant], dict]:
    config = load_preset(preset)
    torch.manual_seed(0)
    model = QFaceModel(config).eval()
    size = config.backbone_config.image_size
    pixels = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    one = pixels[:1]
    full_flops = count_flops(model, one) * batch_size
    encoder_flops = count_flops(model, one, encoder_only=True) * batch_size
    info = {"flops_per_image": full_flops / batch_size, "encoder_flops_per_image": encoder_flops / batch_size}

    def forward(m, x):
        with torch.inference_mode():
            return m(x)

    def encode(x):
        with torch.inference_mode():
            return model.encode(x)

    variants = []
    for n in threads:
        mark = "*" if n == default_threads else ""
        variants.append(Variant(f"torch {n}t{mark}", n, "fp32", lambda: forward(model, pixels), full_flops))
        variants.append(Variant(f"encoder {n}t{mark}", n, "fp32", lambda: encode(pixels), encoder_flops))
    if with_onnx:
        if preset not in onnx_paths:
            folder = Path(tempfile.mkdtemp(prefix=f"qface-onnx-{preset}-"))
            start = time.perf_counter()
            onnx_paths[preset] = export_onnx(model, folder)
            info["onnx_export_s"] = time.perf_counter() - start
        session = onnx_session(onnx_paths[preset], default_threads)
        feed = {session.get_inputs()[0].name: pixels.numpy()}
        with torch.inference_mode():
            expected = model(pixels).expression_logits
        got = session.run(None, feed)
        names = [o.name for o in session.get_outputs()]
        got_expression = got[names.index("expression_logits")] if "expression_logits" in names else got[0]
        info["onnx_max_abs_difference_expression"] = float(np.abs(got_expression - expected.numpy()).max())
        variants.append(Variant("onnx", default_threads, "fp32", lambda: session.run(None, feed), full_flops))
    if with_bf16:
        bf16_model = copy.deepcopy(model).to(torch.bfloat16)
        bf16_pixels = pixels.to(torch.bfloat16)
        variants.append(Variant("bf16", default_threads, "bf16", lambda: forward(bf16_model, bf16_pixels), full_flops))
    if with_compile:
        compiled = torch.compile(model)
        torch.set_num_threads(default_threads)
        start = time.perf_counter()
        got = forward(compiled, pixels)  # the first call compiles
        info["compile_s"] = time.perf_counter() - start
        expected = forward(model, pixels)
        info["compiled_max_abs_difference"] = max(
            float((got[name] - expected[name]).abs().max()) for name in expected.keys()
        )
        variants.append(Variant("compiled", default_threads, "fp32", lambda: forward(compiled, pixels), full_flops))
    return variants, info


def time_interleaved(variants: list[Variant], repeats: int, warmup: int, settle_s: float = 0.05) -> None:
    # The pause after each call (untimed) lets the previous runtime's idle worker threads stop spinning (OpenMP's and
    # onnxruntime's spin-wait for new work for a while): otherwise they take CPU from the next variant, which on this
    # 2-core machine doubled the time of a small model's 1-thread forward.
    for round_index in range(warmup + repeats):
        for variant in variants:
            torch.set_num_threads(variant.threads)
            start = time.perf_counter()
            variant.run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                variant.times.append(elapsed)
            time.sleep(settle_s)


def pipeline_shares(preset: str, photo_path: str, batch_size: int, repeats: int) -> dict:
    """End to end `pipe(path)` and the stages of pipeline_benchmark.py, plus decoding the file."""
    from PIL import Image
    from transformers import pipeline

    from modeling_qface.model.face_alignment_qface import align_face, detect_faces, refine_landmarks
    from modeling_qface.model.image_loading_qface import load_image_rgb
    from modeling_qface.model.image_processing_qface import build_image_processor

    torch.manual_seed(0)
    model = QFaceModel(load_preset(preset)).eval()
    processor = build_image_processor(model.config)
    pipe = pipeline("face-analysis", model=model, image_processor=processor)
    rgb = load_image_rgb(photo_path)
    faces = detect_faces(rgb)
    size = model.config.backbone_config.image_size
    crops = [Image.fromarray(align_face(rgb, face.landmarks, size)) for face in faces]
    pixels = processor(crops, return_tensors="pt")["pixel_values"]
    chunks = [pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)]
    with torch.inference_mode():
        stages = {
            "decoding": median_seconds(lambda: load_image_rgb(photo_path), repeats),
            "detection": median_seconds(lambda: detect_faces(rgb), repeats),
            "refinement": median_seconds(lambda: [refine_landmarks(rgb, f.landmarks) for f in faces], repeats),
            "alignment": median_seconds(lambda: [align_face(rgb, f.landmarks, size) for f in faces], repeats),
            "model": median_seconds(lambda: [model(chunk) for chunk in chunks], repeats),
        }
        end_to_end = median_seconds(lambda: pipe(photo_path, batch_size=batch_size), repeats)
    return {
        "faces": len(faces),
        "batch_size": batch_size,
        "end_to_end_s": end_to_end,
        "faces_per_s": len(faces) / end_to_end,
        "stages_s": stages,
        "shares": {k: v / end_to_end for k, v in stages.items()},
    }


def find_photo(name: str) -> str | None:
    if Path(name).is_file():
        return name
    try:
        from modeling_qface.samples.photos import fetch_sample_photos

        return str(fetch_sample_photos().get(name)) if name in fetch_sample_photos() else None
    except Exception:  # no cache and no network: the pipeline part is skipped with a note
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["qface-base", "qface-small"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch thread counts to compare (torch's default is always included)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds timed (after --warmup rounds)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gemm-repeats", type=int, default=10)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime variant (and its export)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 variant")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a torch.compile variant (inductor; needs a C++ compiler; compiling takes a while)",
    )
    parser.add_argument(
        "--pipeline",
        default="t1.jpg",
        help="group photo for the end-to-end pipeline (sample photo name or path), 'none' to skip",
    )
    parser.add_argument("--pipeline-preset", default="qface-base")
    parser.add_argument("--pipeline-batch-size", type=int, default=16)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    default_threads = torch.get_num_threads()
    threads = sorted(set(args.threads) | {default_threads})
    flags = cpu_flags()
    with_bf16 = not args.no_bf16 and cpu_supports_bf16()  # the pipeline's own test (AVX512-BF16 or AMX)
    onnx_problem = None if args.no_onnx else onnx_available()
    with_onnx = not args.no_onnx and onnx_problem is None
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if with_bf16 else {})}
    results = {
        **run_header("cpu"),
        "cpu_model": cpu_model(),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma"}),
        "default_threads": default_threads,
        "flop_counting": "torch.utils.flop_counter.FlopCounterMode, eager attention, 2 FLOPs per multiply-add",
        "gemm_shapes": GEMM_SHAPES,
        "presets": {},
    }
    try:
        import onnxruntime

        results["versions"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if onnx_problem:
        results["onnx_skipped"] = onnx_problem
    gemm_threads = {(d, n) for d in dtypes for n in threads if d == "fp32"} | {(d, default_threads) for d in dtypes}
    gemm = {key: [gemm_gflops(dtypes[key[0]], key[1], args.gemm_repeats)] for key in sorted(gemm_threads)}
    ort_gemm = {n: [onnxruntime_gemm_gflops(n, args.gemm_repeats)] for d, n in gemm if d == "fp32"}

    onnx_paths: dict = {}
    tables = []
    for preset in args.presets:
        results["presets"][preset] = {}
        for batch_size in args.batch_sizes:
            variants, info = build_variants(
                preset, batch_size, threads, default_threads, with_onnx, with_bf16, onnx_paths, args.compile
            )
            time_interleaved(variants, args.repeats, args.warmup)
            results["presets"][preset][batch_size] = {
                "info": info,
                "variants": {
                    v.name: {
                        "threads": v.threads,
                        "dtype": v.dtype,
                        "flops": v.flops,
                        "times_s": v.times,
                        "median_s": statistics.median(v.times),
                    }
                    for v in variants
                },
            }
            tables.append((preset, batch_size, variants, info))
    for key in gemm:
        gemm[key].append(gemm_gflops(dtypes[key[0]], key[1], args.gemm_repeats))
    for n in ort_gemm:
        ort_gemm[n].append(onnxruntime_gemm_gflops(n, args.gemm_repeats))
    torch.set_num_threads(default_threads)
    # The machine's figure per dtype and thread count: the better of torch's addmm and onnxruntime's Gemm (fp32).
    results["gemm_gflops"] = {}
    for (d, n), v in gemm.items():
        entry = {"torch_start": v[0], "torch_end": v[1], "torch": sum(v) / 2}
        ort = ort_gemm.get(n) if d == "fp32" else None
        if ort and None not in ort:
            entry.update(onnxruntime_start=ort[0], onnxruntime_end=ort[1], onnxruntime=sum(ort) / 2)
        entry["mean"] = max(entry["torch"], entry.get("onnxruntime", 0.0))
        results["gemm_gflops"][f"{d} {n}t"] = entry

    print(
        f"\nMachine: {results['cpu_model']}, {default_threads} default torch threads; flags: {', '.join(results['cpu_flags'])}"
    )
    print(
        "GEMM throughput at ViT-B shapes (start / end of run, GFLOP/s; torch addmm, onnxruntime Gemm): "
        + "; ".join(
            f"{k}: torch {v['torch_start']:.0f} / {v['torch_end']:.0f}"
            + (f", onnxruntime {v['onnxruntime_start']:.0f} / {v['onnxruntime_end']:.0f}" if "onnxruntime" in v else "")
            for k, v in results["gemm_gflops"].items()
        )
    )
    print("'of GEMM' = a variant's GFLOP/s / the better of the two GEMM figures at its dtype and thread count")
    for preset, batch_size, variants, info in tables:
        print(
            f"\n{preset}, batch {batch_size}: {info['flops_per_image'] / 1e9:.2f} GFLOP per image "
            f"(encoder {100 * info['encoder_flops_per_image'] / info['flops_per_image']:.1f} %), median of "
            f"{args.repeats} interleaved rounds"
        )
        print("| variant | threads | dtype | median ms | min ms | img/s | GFLOP/s | of GEMM |")
        print("|---|---|---|---|---|---|---|---|")
        medians = {}
        for v in variants:
            median = medians[v.name] = statistics.median(v.times)
            gflops = v.flops / median / 1e9
            reference = results["gemm_gflops"].get(f"{v.dtype} {v.threads}t", {}).get("mean")
            fraction = f"{100 * gflops / reference:.0f} %" if reference else "-"
            print(
                f"| {v.name} | {v.threads} | {v.dtype} | {median * 1e3:.1f} | {min(v.times) * 1e3:.1f} | "
                f"{batch_size / median:.1f} | {gflops:.1f} | {fraction} |"
            )
        flops_overhead = info["flops_per_image"] / info["encoder_flops_per_image"] - 1
        for n in threads:
            mark = "*" if n == default_threads else ""
            full, encoder = medians[f"torch {n}t{mark}"], medians[f"encoder {n}t{mark}"]
            # Also paired: each round's full/encoder ratio (the two ran back to back), whose median drifts less with
            # the machine's load than the ratio of the two medians.
            by_name = {v.name: v.times for v in variants}
            paired = statistics.median(
                f / e for f, e in zip(by_name[f"torch {n}t{mark}"], by_name[f"encoder {n}t{mark}"])
            )
            print(
                f"fusion + decoder + heads on top of the encoder, {n} thread(s): {100 * (full / encoder - 1):+.1f} % "
                f"of time (median of per-round ratios {100 * (paired - 1):+.1f} %; their FLOPs: "
                f"{100 * flops_overhead:+.1f} %)"
            )
            results["presets"][preset][batch_size][f"overhead_{n}t"] = full / encoder - 1
            results["presets"][preset][batch_size][f"overhead_paired_{n}t"] = paired - 1
        results["presets"][preset][batch_size]["flops_overhead"] = flops_overhead
        if "compile_s" in info:
            print(
                f"torch.compile: {info['compile_s']:.1f} s to compile; max |difference| from eager over every output "
                f"{info['compiled_max_abs_difference']:.1e}"
            )
        if "onnx_max_abs_difference_expression" in info:
            print(
                f"onnx vs torch, expression logits: max |difference| {info['onnx_max_abs_difference_expression']:.1e}"
            )
    if onnx_problem:
        print(f"\nONNX Runtime variant skipped: {onnx_problem}")
    if not with_bf16 and not args.no_bf16:
        print("\nbf16 variant skipped: the CPU has no avx512_bf16 / AMX instructions")

    if args.pipeline != "none":
        photo = find_photo(args.pipeline)
        if photo is None:
            print(f"\npipeline skipped: photo {args.pipeline!r} not found (a path, or a cached sample photo name)")
        else:
            torch.set_num_threads(default_threads)
            p = pipeline_shares(args.pipeline_preset, photo, args.pipeline_batch_size, max(args.repeats, 2))
            results["pipeline"] = {"preset": args.pipeline_preset, "photo": args.pipeline, **p}
            print(
                f"\npipeline end to end, {args.pipeline_preset} on {args.pipeline} ({p['faces']} faces), batch "
                f"{p['batch_size']}, {default_threads} threads: {p['faces_per_s']:.2f} faces/s"
            )
            print(stage_shares_table(p["shares"]))
    write_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
