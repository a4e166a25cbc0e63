"""Training-step cost of Q-Face's multi-task step against a bare encoder + one linear head (issue: training).

For each preset, fp32 (or --dtype bf16 autocast), AdamW, one batch of random pixels with partial labels of all
five tasks:
  qface        QFaceModel forward + multi-task loss + backward + optimizer step
  single_task  the same ViTMAE encoder + one linear head on the mean patch token, cross-entropy, same step
Timed interleaved (A, B, A, B, ...), medians; samples/s = batch / median step time. Peak memory is the peak RSS
(CPU) or `torch.cuda.max_memory_allocated` (GPU) of a fresh subprocess running a few steps of one variant.

    python benchmarks/training_benchmark.py --presets qface-tiny qface-base --batch-size 8 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time

import torch
import transformers
from measure import peak_rss_mib, run_header, write_json
from torch import nn
from torch.nn import functional as F

from modeling_qface import QFaceModel, load_preset


class SingleTaskModel(nn.Module):
    """A ViTMAE encoder with one linear head (7 expression classes) on the mean of its patch tokens."""

    def __init__(self, encoder_config):
        super().__init__()
        self.encoder = transformers.ViTMAEModel(encoder_config)
        self.head = nn.Linear(encoder_config.hidden_size, 7)

    def forward(self, pixel_values, expression_labels):
        num_patches = self.encoder.embeddings.patch_embeddings.num_patches
        noise = torch.arange(num_patches, device=pixel_values.device, dtype=torch.float32).expand(len(pixel_values), -1)
        tokens = self.encoder(pixel_values, noise=noise).last_hidden_state
        return F.cross_entropy(self.head(tokens[:, 1:].mean(1)), expression_labels)


def batch(preset: str, batch_size: int, device) -> dict:
    size = load_preset(preset).backbone_config.image_size
    g = torch.Generator().manual_seed(0)
    labels = {
        "expression_labels": torch.randint(0, 7, (batch_size,), generator=g),
        "au_labels": torch.randint(0, 2, (batch_size, 15), generator=g),
        "attributes_labels": torch.randint(0, 2, (batch_size, 40), generator=g),
        "age_labels": torch.rand(batch_size, generator=g) * 80,
        "head_pose_labels": (torch.rand(batch_size, 3, generator=g) - 0.5) * 90,
    }
    # Mixed sources: each sample carries one task's label, the rest missing.
    for i in range(batch_size):
        keep = i % 5
        for t, key in enumerate(labels):
            if t != keep:
                labels[key][i] = -1 if labels[key].dtype == torch.long else float("nan")
    labels["expression_labels"][0] = 3  # the single-task baseline needs every sample labelled
    pixels = torch.randn(batch_size, 3, size, size, generator=g)
    return {k: v.to(device) for k, v in {"pixel_values": pixels, **labels}.items()}


def build(variant: str, preset: str, batch_size: int, device, dtype: str):
    config = load_preset(preset)
    torch.manual_seed(0)
    model = (QFaceModel(config) if variant == "qface" else SingleTaskModel(config.backbone_config)).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = batch(preset, batch_size, device)
    if variant == "single_task":
        inputs = {"pixel_values": inputs["pixel_values"], "expression_labels": inputs["expression_labels"].clamp(min=0)}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def step():
        with autocast:
            out = model(**inputs)
        loss = out.loss if variant == "qface" else out
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return model, step


def time_variants(preset, batch_size, repeats, warmup, device, dtype) -> dict:
    runners = {v: build(v, preset, batch_size, device, dtype) for v in ("qface", "single_task")}
    times = {v: [] for v in runners}
    for _ in range(warmup):
        for _, step in runners.values():
            step()
    for _ in range(repeats):
        for variant, (_, step) in runners.items():
            start = time.perf_counter()
            step()
            times[variant].append(time.perf_counter() - start)
    return {
        variant: {
            "median_s": statistics.median(times[variant]),
            "samples_per_s": batch_size / statistics.median(times[variant]),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        for variant, (model, _) in runners.items()
    }


def memory_child(variant: str, preset: str, batch_size: int, device_name: str, dtype: str) -> None:
    device = torch.device(device_name)
    _, step = build(variant, preset, batch_size, device, dtype)
    for _ in range(2):
        step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib()
    print(json.dumps({"peak_mib": peak}))


def peak_memory(variant, preset, batch_size, device, dtype) -> float:
    command = [sys.executable, __file__, "--memory-child", variant, preset, str(batch_size), str(device), dtype]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["qface-tiny", "qface-base"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="default: 20 for tiny/small, 3 for base on CPU")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        variant, preset, batch_size, device, dtype = args.memory_child
        return memory_child(variant, preset, int(batch_size), device, dtype)

    device = torch.device(args.device)
    results = {
        **run_header(str(device)),
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "presets": {},
    }
    for preset in args.presets:
        repeats = args.repeats or (3 if preset == "qface-base" and device.type == "cpu" else 20)
        timing = time_variants(preset, args.batch_size, repeats, args.warmup, device, args.dtype)
        for variant in timing:
            timing[variant]["peak_mib"] = peak_memory(variant, preset, args.batch_size, device, args.dtype)
        timing["repeats"] = repeats
        results["presets"][preset] = timing
        q, s = timing["qface"], timing["single_task"]
        print(f"\n{preset}: batch {args.batch_size}, {args.dtype}, {device}, median of {repeats} steps")
        print("| variant | step ms | samples/s | params (M) | peak MiB |")
        print("|---|---|---|---|---|")
        for name, t in (("qface (5 tasks)", q), ("encoder + linear head (1 task)", s)):
            print(
                f"| {name} | {t['median_s'] * 1e3:.1f} | {t['samples_per_s']:.1f} | {t['parameters'] / 1e6:.2f} | {t['peak_mib']:.0f} |"
            )
        print(f"multi-task step overhead over the single-task step: {100 * (q['median_s'] / s['median_s'] - 1):+.1f} %")
    write_json(results, args.json)


if __name__ == "__main__":
    main()
