"""The issue-10 benchmark scripts run end to end on a tiny model (offline, CPU): they are tested not to crash and to
report what they promise, never for speed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.benchmark_modules import benchmark_module

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str, env: dict | None = None) -> str:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        cwd=BENCHMARKS,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu_and_writes_json_to_out(tmp_path, sample_photos):
    out = tmp_path / "out"
    out.mkdir()
    stdout = run_script("gpu_benchmark.py", "--smoke", "--photo", str(sample_photos["t1.jpg"]), env={"OUT": str(out)})
    results = json.loads((out / "gpu_benchmark.json").read_text())
    assert results["preset"] == "qface-tiny" and results["smoke"] and results["dtype"] == "bfloat16"
    assert results["latency_batch_1_s"]["eager"] > 0
    by_batch = results["throughput"]["by_batch"]
    assert set(by_batch) >= {"2"} and all(v["faces_per_s"] > 0 for v in by_batch.values())
    pipeline = results["pipeline"]
    assert pipeline["faces"] == 12  # t1.jpg's 6 faces, 2 copies
    assert set(pipeline["shares"]) == {"decoding", "detection", "refinement", "alignment", "model"}
    # Each share is its stage's time over the end-to-end time (the stages are timed apart, so their sum is not
    # bounded on a busy machine: no timing assertion here).
    for stage, seconds in pipeline["stages_s"].items():
        assert seconds > 0 and pipeline["shares"][stage] == pytest.approx(seconds / pipeline["end_to_end_s"])
    assert "| latency, eager | 1 |" in stdout and "goal <= 5.0 ms" in stdout and "| decoding | detection |" in stdout


@pytest.mark.slow
def test_gpu_benchmark_without_photo_skips_the_pipeline_with_a_note(tmp_path):
    path = tmp_path / "gpu.json"
    stdout = run_script("gpu_benchmark.py", "--smoke", "--photo", str(tmp_path / "missing.jpg"), "--json", str(path))
    results = json.loads(path.read_text())
    assert "pipeline" not in results
    assert any(note.startswith("pipeline: skipped") for note in results["notes"])
    assert "note: pipeline: skipped" in stdout


@pytest.mark.slow
def test_efficiency_benchmark_reports_gemm_fractions_and_the_encoder_split(tmp_path):
    path = tmp_path / "efficiency.json"
    stdout = run_script(
        "efficiency_benchmark.py",
        "--presets",
        "qface-tiny",
        "--batch-sizes",
        "2",
        "--repeats",
        "2",
        "--gemm-repeats",
        "2",
        "--threads",
        "1",
        "--pipeline",
        "none",
        "--no-onnx",
        "--compile",
        "--json",
        str(path),
    )
    results = json.loads(path.read_text())
    assert {"fp32 1t"} <= set(results["gemm_gflops"]) and results["gemm_gflops"]["fp32 1t"]["mean"] > 0
    run = results["presets"]["qface-tiny"]["2"]
    names = set(run["variants"])
    assert {"torch 1t*", "encoder 1t*"} <= names, names  # OMP_NUM_THREADS=1: the default is 1 thread
    assert all(len(v["times_s"]) == 2 for v in run["variants"].values())
    # FlopCounterMode's count: the full model costs more than its encoder, linear in the batch.
    full, encoder = run["variants"]["torch 1t*"]["flops"], run["variants"]["encoder 1t*"]["flops"]
    assert full > encoder > 0
    assert math.isclose(run["flops_overhead"], full / encoder - 1)
    assert "| variant | threads | dtype | median ms | min ms | img/s | GFLOP/s | of GEMM |" in stdout
    assert "fusion + decoder + heads on top of the encoder, 1 thread(s)" in stdout
    # --compile: torch.compile's variant, timed with the others, its outputs checked against eager.
    assert run["variants"]["compiled"]["flops"] == full and len(run["variants"]["compiled"]["times_s"]) == 2
    assert run["info"]["compile_s"] > 0 and run["info"]["compiled_max_abs_difference"] < 1e-3
    assert "torch.compile: " in stdout and "| compiled | 1 | fp32 |" in stdout


@pytest.mark.parametrize("batch_size", [1, 3])
def test_flop_count_matches_the_architecture(batch_size):
    # The analytic count of the decoder for qface-tiny, against FlopCounterMode's, so the GFLOP/s are trustworthy.
    count_flops = benchmark_module("efficiency_benchmark").count_flops
    import torch

    from modeling_qface import QFaceModel, load_preset

    config = load_preset("qface-tiny")
    model = QFaceModel(config).eval()
    pixels = torch.randn(batch_size, 3, 32, 32)
    decoder = count_flops(model, pixels) - count_flops(model, pixels, encoder_only=True)
    d, f, queries = config.d_model, config.decoder_ffn_dim, sum(len(t["labels"]) for t in config.tasks)
    width = config.backbone_config.hidden_size
    tokens = len(config.fusion_layers) * (32 // 8) ** 2
    fusion = 2 * len(config.fusion_layers) * (1 + 16) * width * d  # CLS row included (dropped after the product)
    per_layer = (
        2 * tokens * d * 2 * d  # memory keys and values
        + 2 * queries * d * d * 2  # cross-attention query and output projections
        + 2 * 2 * queries * tokens * d  # cross-attention scores and weighted sum
        + 2 * queries * d * 4 * d  # self-attention q, k, v, output
        + 2 * 2 * queries * queries * d  # self-attention scores and weighted sum
        + 2 * 2 * queries * d * f  # feed-forward
    )
    heads = 2 * d * sum(1 if t["kind"] != "distribution" else t["max_value"] - t["min_value"] + 1 for t in config.tasks)
    heads += 2 * d * sum(len(t["labels"]) - 1 for t in config.tasks if t["kind"] != "distribution")
    assert decoder == batch_size * (fusion + config.decoder_layers * per_layer + heads)


def test_stage_shares_table_says_when_the_stages_outweigh_the_run():
    stage_shares_table = benchmark_module("measure").stage_shares_table
    quiet = {"decoding": 0.02, "detection": 0.15, "refinement": 0.40, "alignment": 0.03, "model": 0.25}
    assert stage_shares_table(quiet).splitlines()[2] == "| 2 % | 15 % | 40 % | 3 % | 25 % | 15 % |"
    noisy = {**quiet, "refinement": 0.96}
    assert stage_shares_table(noisy).splitlines()[2].endswith("| n/a (stages timed apart sum to more: a noisy run) |")
