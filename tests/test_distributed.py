# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The fine-tuning script under torchrun: a real 2-process CPU run (gloo) against the single-process run."""

from __future__ import annotations

import json
import subprocess

import pytest

from modeling_qface import QFaceModel
from modeling_qface.training.mixing import steps_per_epoch
from tests.fixtures.train_runs import (
    REPO,
    free_port,
    read_jsonl,
    run_in_process,
    subprocess_env,
    torchrun_command,
    train_args,
    train_records,
)
from tests.fixtures.training_data import SIZES, write_training_data

# One epoch with gradient accumulation 2 (so DDP's no_sync micro-steps run too), every sample id logged.
SETTINGS = {
    "train__gradient_accumulation_steps": 2,
    "logging__every_steps": 1,
    "logging__sample_ids": True,
    "logging__tensorboard": False,
    "eval__every_steps": None,
    "checkpoint__every_steps": 4,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("tiny-data"))["raf_db"].parent


def sample_log(output, rank: int) -> dict[tuple[int, int], dict]:
    return {(r["step"], r["micro"]): r for r in read_jsonl(output / "sample_ids" / f"rank{rank}.jsonl")}


@pytest.mark.slow  # two processes under accelerate launch
def test_two_cpu_processes_split_each_global_batch_and_take_the_same_steps(tmp_path, tiny_data):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    args = [*train_args(tiny_data, ddp, **SETTINGS), "--epochs", "1"]
    run = subprocess.run(
        torchrun_command(2, free_port(), *args),
        cwd=REPO,
        env=subprocess_env(ACCELERATE_USE_CPU="true"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads((ddp / "train_summary.json").read_text())
    single_summary = run_in_process([*train_args(tiny_data, single, **SETTINGS), "--epochs", "1"])

    # The DISFA train split of fold 1 (18 subjects x 2 frames) takes the most batches at 1 sample per batch.
    expected_steps = steps_per_epoch(
        [SIZES["raf_db_train"], SIZES["celeba_train"], 36, SIZES["utkface"], SIZES["300w_lp"]],
        [2, 2, 1, 1, 2],
        accumulation_steps=2,
    )
    assert expected_steps == 18
    assert summary["num_processes"] == 2 and single_summary["num_processes"] == 1
    assert summary["steps"] == single_summary["steps"] == expected_steps
    assert [r["step"] for r in train_records(ddp / "logs" / "train.jsonl")] == list(range(1, expected_steps + 1))

    # Each micro-batch: the two ranks hold disjoint halves of the global batch, and together exactly the samples
    # (same rows, same slots) the single process trained on.
    ranks, alone = [sample_log(ddp, 0), sample_log(ddp, 1)], sample_log(single, 0)
    assert set(ranks[0]) == set(ranks[1]) == set(alone) and len(alone) == expected_steps * 2
    for key, whole in alone.items():
        mine, theirs = ranks[0][key], ranks[1][key]
        assert len(mine["slots"]) == len(theirs["slots"]) == 4 and not set(mine["slots"]) & set(theirs["slots"])
        together = sorted(zip(mine["slots"] + theirs["slots"], mine["ids"] + theirs["ids"]))
        assert together == sorted(zip(whole["slots"], whole["ids"]))
    assert {i.split(":")[0] for r in ranks[0].values() for i in r["ids"]} == {
        i.split(":")[0] for r in alone.values() for i in r["ids"]
    }

    checkpoint = ddp / "checkpoints" / f"step-{expected_steps:08d}"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    model = QFaceModel.from_pretrained(ddp / "final")
    assert all(p.isfinite().all() for p in model.parameters())
