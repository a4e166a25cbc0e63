# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Training that survives: a killed `qface pretrain` resumes to the same weights, bad images are named or skipped
once, and recipes with an unknown split, option, fold or preset fail at once naming the key and the allowed values."""

from __future__ import annotations

import io
import json
import logging
import struct
import sys
import zlib

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from modeling_qface.training import evaluation, finetune
from modeling_qface.training import pretrain as pretraining
from modeling_qface.training.checkpointing import list_checkpoints
from modeling_qface.training.mae_data import BadImageError, ImageFiles, check_images
from modeling_qface.training.pretrain_recipe import build_parser, load_pretrain_recipe, recipe_from_args
from modeling_qface.training.recipe import RecipeError, load_recipe
from modeling_qface.training.tracking import truncate_jsonl
from tests.fixtures.train_runs import TINY_RECIPE, kill_once_written, single_thread
from tests.test_pretrain import make_faces

# 10 images in batches of 4: 3 batches an epoch (the last one short), so checkpoints every 4 steps fall inside epochs,
# and 60 steps leave the SIGKILL plenty of time to land before the end. Augmentation on: it must resume exactly too.
PRETRAIN_ARGS = [
    "--config",
    "pretrain-tiny",
    "--max-steps",
    "60",
    "--batch-size",
    "4",
    "--save-every",
    "4",
    "--log-every",
    "1",
    "--num-reconstructions",
    "0",
    "--learning-rate",
    "3e-3",
]
LOG_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces") / "faces"
    make_faces(folder, 10)
    return folder


def run_pretrain(argv: list[str]) -> int:
    """`qface pretrain` in this process, on one thread like the subprocess (so the float results are the same)."""
    with single_thread():
        return pretraining.main(argv)


def log_records(output) -> list[dict]:
    lines = (output / pretraining.LOG_FILE).read_text().splitlines()
    return [{key: json.loads(line)[key] for key in LOG_FIELDS} for line in lines]


def assert_same_weights(first, second) -> None:
    want, have = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert want.keys() == have.keys() and all(torch.equal(want[key], have[key]) for key in want)


# ------------------------------------------------------------------------------------------------ kill and resume
@pytest.mark.slow  # a qface pretrain subprocess, killed
def test_a_killed_pretraining_run_resumes_to_bit_identical_weights(tmp_path, faces, capsys):
    argv = [*PRETRAIN_ARGS, "--data", str(faces)]
    reference = tmp_path / "reference"
    assert run_pretrain([*argv, "--output-dir", str(reference)]) == 0

    output = tmp_path / "killed"
    partial = tmp_path / "killed.partial"
    command = [sys.executable, "-m", "modeling_qface.training.pretrain", *argv, "--output-dir", str(output)]
    first = partial / "checkpoints" / "step-00000004"
    kill_once_written(command, first, tmp_path / "killed.log", timeout=300)
    assert first.is_dir() and not output.exists()
    resume_step = list_checkpoints(partial)[-1][0]
    assert 4 <= resume_step < 60 and resume_step % 4 == 0
    checkpoint = list_checkpoints(partial)[-1][1]
    files = {path.name for path in checkpoint.iterdir()}
    # model, optimizer, scheduler (a registered object), RNG states, step, data position: all there
    assert {
        "model.safetensors",
        "optimizer.bin",
        "custom_checkpoint_0.pkl",
        "random_states_0.pkl",
        "trainer_state.json",
        "sampler_state.pt",
    } <= files
    position = torch.load(checkpoint / "sampler_state.pt", weights_only=True)
    assert position == {"epoch": (resume_step - 1) // 3, "batches": (resume_step - 1) % 3 + 1}

    # A run without --resume refuses to start over the interrupted run's checkpoints and deletes nothing.
    assert run_pretrain([*argv, "--output-dir", str(output)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "already holds checkpoints" in error and "pass --resume" in error and "--overwrite-output-dir" in error
    assert list_checkpoints(partial)[-1][0] == resume_step and (partial / pretraining.LOG_FILE).is_file()
    stale = partial / "checkpoints" / f".tmp-step-{resume_step + 4:08d}"  # as if killed while writing the next one
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")

    assert run_pretrain([*argv, "--output-dir", str(output), "--resume"]) == 0
    # Bit-identical weights (torch.equal) and, step by step, the same losses, learning rates and gradient norms:
    # the same data order, augmentation, masks (RNG), optimizer and scheduler state after the kill as without it.
    assert_same_weights(reference, output)
    assert log_records(output) == log_records(reference)
    assert [r["step"] for r in log_records(output)] == list(range(1, 61))
    assert not stale.exists() and not (output / "checkpoints").exists() and not partial.exists()
    record = json.loads((output / pretraining.CONFIG_FILE).read_text())
    assert record["result"]["resumed_from"] == str(checkpoint)


def test_resume_at_an_epoch_end_with_gradient_accumulation(tmp_path, faces, monkeypatch):
    """A crash right after a checkpoint that ends an epoch; accumulation windows cut short at each epoch's end."""
    argv = [
        "--config",
        "pretrain-tiny",
        "--data",
        str(faces),
        "--max-steps",
        "9",
        "--batch-size",
        "2",
        "--gradient-accumulation-steps",
        "2",
        "--save-every",
        "6",
        "--log-every",
        "1",
        "--num-reconstructions",
        "0",
    ]  # fmt: skip  (5 batches an epoch: steps of 2, 2 and 1 batches; step 6 ends epoch 2)
    reference = tmp_path / "reference"
    assert run_pretrain([*argv, "--output-dir", str(reference)]) == 0

    real_save = pretraining.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("killed after the checkpoint")

    monkeypatch.setattr(pretraining, "save_checkpoint", save_then_crash)
    output = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run_pretrain([*argv, "--output-dir", str(output)])
    monkeypatch.setattr(pretraining, "save_checkpoint", real_save)
    checkpoint = tmp_path / "crashed.partial" / "checkpoints" / "step-00000006"
    assert torch.load(checkpoint / "sampler_state.pt", weights_only=True) == {"epoch": 1, "batches": 5}

    assert run_pretrain([*argv, "--output-dir", str(output), "--resume", str(checkpoint)]) == 0
    assert_same_weights(reference, output)
    assert log_records(output) == log_records(reference)


def test_resume_refuses_other_options_and_a_missing_checkpoint(tmp_path, faces, capsys):
    argv = ["--config", "pretrain-tiny", "--data", str(faces), "--output-dir", str(tmp_path / "out")]
    assert run_pretrain([*argv, "--resume"]) == 2
    assert "--resume: no checkpoint under" in capsys.readouterr().err
    checkpoint = tmp_path / "out.partial" / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    recipe = recipe_from_args(build_parser().parse_args([*argv, "--batch-size", "8"]))
    state = {"step": 4, "recipe": pretraining.recipe_record(recipe), "num_images": 10}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    assert run_pretrain([*argv, "--resume", "--batch-size", "4"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    expected = f"--resume {checkpoint}: the run that wrote it had another recipe: train.batch_size 8 (now 4)"
    assert error == f"qface pretrain: error: {expected}"
    # --resume auto starts a new run when there is nothing to resume (and an old partial folder only holds a log)
    (tmp_path / "new.partial").mkdir()
    (tmp_path / "new.partial" / pretraining.LOG_FILE).write_text('{"step": 1}\n{"step": 2, "lo')
    args = build_parser().parse_args(
        [
            "--config",
            "pretrain-tiny",
            "--data",
            str(faces),
            "--output-dir",
            str(tmp_path / "new"),
            "--resume",
            "auto",
            "--max-steps",
            "1",
            "--batch-size",
            "10",
            "--num-reconstructions",
            "0",
        ]
    )
    assert pretraining.resolve_resume(tmp_path / "new.partial", args.resume) is None
    with single_thread():
        assert pretraining.pretrain(recipe_from_args(args), resume=args.resume) == tmp_path / "new"
    lines = (tmp_path / "new" / pretraining.LOG_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1]


def test_a_torn_last_log_line_is_dropped_when_resuming(tmp_path):
    path = tmp_path / "train_log.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "loss": 0.8}\n{"step": 4, "lo')
    truncate_jsonl(path, 2)
    assert path.read_text() == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n'


# ------------------------------------------------------------------------------------------------ bad images
def corrupt_png(image: Image.Image) -> bytes:
    """A PNG whose compressed pixel data is damaged but whose chunk checksums match: PIL's `verify()` (the header
    check) passes it, decoding fails. What a bit flip on disk before the checksums were computed looks like."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"IDAT":
            body = position + 8
            for i in range(body + length // 3, body + length // 3 + 40):
                data[i] ^= 0x5A
            data[body + length : body + length + 4] = struct.pack(">I", zlib.crc32(data[position + 4 : body + length]))
        position += 12 + length
    return bytes(data)


@pytest.fixture
def faces_with_a_corrupt_png(tmp_path):
    paths = make_faces(tmp_path / "faces", 7)
    (tmp_path / "faces" / "corrupt.png").write_bytes(corrupt_png(Image.open(paths[0]).convert("RGB")))
    return tmp_path / "faces"


def test_an_image_failing_when_drawn_is_skipped_warned_about_and_counted_once(
    tmp_path, faces_with_a_corrupt_png, caplog
):
    folder = faces_with_a_corrupt_png
    assert len(check_images(ImageFiles(sorted(folder.rglob("*.png"))))[0]) == 8  # it passes the header check
    recipe = load_pretrain_recipe(
        raw={
            "output_dir": str(tmp_path / "out"),
            "model": {"preset": "qface-tiny"},
            "data": {"folder": str(folder), "skip_bad_images": True},
            "train": {"max_steps": 6, "batch_size": 4},
            "logging": {"num_reconstructions": 8},
        }
    )  # fmt: skip  (2 batches an epoch: every image, the corrupt one too, is drawn 3 times)
    with caplog.at_level(logging.WARNING), single_thread():
        output_dir = pretraining.pretrain(recipe)
    warnings = [r.getMessage() for r in caplog.records if "corrupt.png" in r.getMessage()]
    assert len(warnings) == 1 and "cannot decode image" in warnings[0]
    record = json.loads((output_dir / pretraining.CONFIG_FILE).read_text())
    assert record["resolved"]["unreadable_images"] == 1 and record["result"]["unreadable_when_decoded"] == 1
    assert "corrupt.png" in record["resolved"]["unreadable_examples"][0]
    assert any("could not be decoded during training and were skipped" in r.getMessage() for r in caplog.records)
    assert (output_dir / pretraining.FIGURE_FILE).is_file()  # drawn from the 7 images that decode


def test_without_skip_an_image_failing_in_a_worker_is_a_one_line_error_naming_it(
    tmp_path, faces_with_a_corrupt_png, capsys
):
    argv = [
        "--data",
        str(faces_with_a_corrupt_png),
        "--preset",
        "qface-tiny",
        "--output-dir",
        str(tmp_path / "out"),
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--num-workers",
        "1",
    ]
    assert run_pretrain(argv) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    corrupt = faces_with_a_corrupt_png / "corrupt.png"
    assert error.startswith(f"qface pretrain: error: {corrupt}: cannot decode image (")
    assert error.endswith("; pass --skip-bad-images to leave unreadable images out") and "worker" not in error
    recipe = recipe_from_args(build_parser().parse_args(argv))
    with single_thread(), pytest.raises(BadImageError, match=r"corrupt\.png: cannot decode image"):
        pretraining.pretrain(recipe)


# ------------------------------------------------------------------------------------------------ recipes
def tiny_recipe(**changes) -> dict:
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    for key, value in changes.items():
        section, *rest = key.split("__")
        target = raw[section]
        for part in rest[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(rest[-1]) if isinstance(target, list) else rest[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"data__train__0__split": "tset"},
            "data.train[0].split: unknown split 'tset' of raf_db (expected one of train, val, trainval, test)",
        ),
        (
            {"data__eval__2__split": "train"},
            "data.eval[2].split: unknown split 'train' of aflw2000 (expected one of test)",
        ),
        (
            {"data__train__2__options": {"fold": 4}},
            "data.train[2].options.fold: unknown fold 4 (expected one of 1, 2, 3)",
        ),
        (
            {"data__train__2__options": {"fold": 1, "flod": 2}},
            "data.train[2].options.flod: unknown option 'flod' of disfa (expected one of fold, label_dir, "
            "frame_pattern, threshold, val_fraction, seed)",
        ),
        (
            {"data__train__3__split": "dev"},
            "data.train[3].split: unknown split 'dev' of utkface (expected one of all, train, val, test)",
        ),
        (
            {"data__eval__2__options": {"crop": "tight"}},
            "data.eval[2].options.crop: expected one of qface, loose, got 'tight'",
        ),
        (
            {"model__preset": "qface-tinny"},
            "model.preset: unknown preset 'qface-tinny' (expected one of qface-base, qface-demo, qface-small, "
            "qface-tiny)",
        ),
    ],
)
def test_recipe_names_an_unknown_split_option_fold_or_preset_on_one_line(tmp_path, change, message):
    path = tmp_path / "train-x.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(**change)))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_paths=False)
    assert str(info.value) == f"{path}: {message}"


def test_train_and_evaluate_stop_on_a_bad_recipe_before_any_work(tmp_path, monkeypatch, capsys):
    path = tmp_path / "train-x.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(data__train__0__split="tset", data__eval__0__options={"fold": 2})))

    def no_work(*args, **kwargs):
        raise AssertionError("the recipe should have been refused before this")

    monkeypatch.setattr(finetune, "train", no_work)
    monkeypatch.setattr(evaluation, "evaluate_model", no_work)
    assert finetune.main(["--config", str(path), "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data.train[0].split: unknown split 'tset' of raf_db" in err
    assert (
        "data.eval[0].options.fold: unknown option 'fold' of raf_db (expected one of aligned, val_fraction, seed)"
    ) in err
    with pytest.raises(RecipeError, match=r"data\.train\[0\]\.split: unknown split 'tset'"):
        evaluation.main(["--model", str(tmp_path), "--config", str(path)])
    # `qface evaluate --source NAME:ROOT:SPLIT[:OPTIONS]` is checked as it is parsed, before the model is loaded.
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main(["--model", str(tmp_path), "--source", f"bp4d:{tmp_path}:test:fold=5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--source 'bp4d:" in err and "options.fold: unknown fold 5 (expected one of 1, 2, 3)" in err
    with pytest.raises(SystemExit):
        evaluation.main(["--model", str(tmp_path), "--source", f"raf_db:{tmp_path}:tset"])
    err = capsys.readouterr().err
    assert "split: unknown split 'tset' of raf_db (expected one of train, val, trainval, test)" in err
