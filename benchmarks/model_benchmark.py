"""Forward cost of Q-Face against the bare encoder and against five single-task models (issue: model core).

For each preset, fp32, eval mode, no grad, one batch of random pixels:
  qface         QFaceModel: encoder + multi-stage fusion + label-query decoder + five heads (all tasks at once)
  encoder       a bare ViTMAEModel of the same geometry (all patches, in order): the floor Q-Face builds on
  five_models   five copies of that encoder, each with one linear head on the mean patch token (expression 7,
                AU 15, attributes 40, age 101 bins, pose 3): what a user stacking single-task models runs
The three are timed interleaved (A, B, C, A, B, C, ...) so load on the machine hits each alike; medians are
reported with ratios. Memory is the peak RSS of a fresh process that builds the variant and runs one forward
(weights + activations + the Python/torch runtime, what a user needs free), measured per variant in a subprocess.

    python benchmarks/model_benchmark.py --presets qface-tiny qface-base --batch-size 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import transformers
from measure import peak_rss_mib, run_header, write_json
from torch import nn

from modeling_qface import QFaceModel, load_preset

TASK_WIDTHS = {"expression": 7, "au": 15, "attributes": 40, "age": 101, "head_pose": 3}


class SingleTaskModel(nn.Module):
    """A ViTMAE encoder with one linear head on the mean of its patch tokens."""

    def __init__(self, encoder_config, width: int):
        super().__init__()
        self.encoder = transformers.ViTMAEModel(encoder_config)
        self.head = nn.Linear(encoder_config.hidden_size, width)

    def forward(self, pixel_values, noise):
        tokens = self.encoder(pixel_values, noise=noise).last_hidden_state
        return self.head(tokens[:, 1:].mean(1))


def ordered_noise(encoder, x: torch.Tensor) -> torch.Tensor:
    """Monotone noise: ViTMAE keeps every patch in its original order (as Q-Face runs it)."""
    num_patches = encoder.embeddings.patch_embeddings.num_patches
    return torch.arange(num_patches, dtype=torch.float32).expand(len(x), -1)


def build(variant: str, preset: str):
    config = load_preset(preset)
    torch.manual_seed(0)
    if variant == "qface":
        model = QFaceModel(config).eval()
        return model, lambda x: model(x)
    if variant == "encoder":
        encoder = transformers.ViTMAEModel(config.backbone_config).eval()
        return encoder, lambda x: encoder(x, noise=ordered_noise(encoder, x))
    models = nn.ModuleList(SingleTaskModel(config.backbone_config, w) for w in TASK_WIDTHS.values()).eval()

    def run_all(x):
        noise = ordered_noise(models[0].encoder, x)
        return [m(x, noise) for m in models]

    return models, run_all


def pixels(preset: str, batch_size: int) -> torch.Tensor:
    size = load_preset(preset).backbone_config.image_size
    return torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))


def time_variants(preset: str, batch_size: int, repeats: int, warmup: int) -> dict:
    runners = {v: build(v, preset) for v in ("qface", "encoder", "five_models")}
    x = pixels(preset, batch_size)
    times = {v: [] for v in runners}
    with torch.inference_mode():
        for _ in range(warmup):
            for _, run in runners.values():
                run(x)
        for _ in range(repeats):
            for variant, (_, run) in runners.items():
                start = time.perf_counter()
                run(x)
                times[variant].append(time.perf_counter() - start)
    out = {}
    for variant, (module, _) in runners.items():
        out[variant] = {
            "median_s": statistics.median(times[variant]),
            "min_s": min(times[variant]),
            "parameters": sum(p.numel() for p in module.parameters()),
        }
    return out


def peak_memory_child(variant: str, preset: str, batch_size: int) -> None:
    """Runs in a fresh subprocess: prints its peak RSS (MiB) after building the model and running one forward."""
    _, run = build(variant, preset)
    with torch.inference_mode():
        run(pixels(preset, batch_size))
    print(json.dumps({"process_peak_mib": peak_rss_mib()}))


def peak_memory(variant: str, preset: str, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--memory-child", variant, preset, str(batch_size)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["qface-tiny", "qface-base"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="default: 30 for tiny/small, 7 for base")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        variant, preset, batch_size = args.memory_child
        return peak_memory_child(variant, preset, int(batch_size))

    results = {
        **run_header("cpu"),
        "batch_size": args.batch_size,
        "presets": {},
    }
    for preset in args.presets:
        repeats = args.repeats or (7 if preset == "qface-base" else 30)
        timing = time_variants(preset, args.batch_size, repeats, args.warmup)
        for variant in timing:
            timing[variant].update(peak_memory(variant, preset, args.batch_size))
        timing["repeats"] = repeats
        results["presets"][preset] = timing
        q, e, f = (timing[v]["median_s"] for v in ("qface", "encoder", "five_models"))
        print(f"\n{preset}: batch {args.batch_size}, fp32, median of {repeats}")
        print("| variant | median ms | params (M) | process peak MiB |")
        print("|---|---|---|---|")
        for variant in ("qface", "encoder", "five_models"):
            t = timing[variant]
            print(
                f"| {variant} | {t['median_s'] * 1e3:.1f} | {t['parameters'] / 1e6:.2f} | {t['process_peak_mib']:.0f} |"
            )
        print(f"fusion+decoder+heads overhead over the encoder: {100 * (q / e - 1):+.1f} %")
        print(f"five single-task models / Q-Face: {f / q:.2f}x")
    write_json(results, args.json)


if __name__ == "__main__":
    main()
