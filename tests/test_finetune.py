# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning: recipes, batch mixing, optimizer groups, a killed-and-resumed run, exports and evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling_qface import QFaceModel, load_preset
from modeling_qface.training import evaluation, finetune
from modeling_qface.training.checkpointing import list_checkpoints
from modeling_qface.training.mixing import MixedBatchSampler, ProcessBatchSampler, shares_to_counts, steps_per_epoch
from modeling_qface.training.optim import build_scheduler, parameter_groups
from modeling_qface.training.recipe import RecipeError, load_recipe
from tests.fixtures.train_runs import (
    REPO,
    TINY_RECIPE,
    kill_once_written,
    read_jsonl,
    run_in_process,
    script_command,
    train_args,
    train_records,
)
from tests.fixtures.training_data import SIZES, write_training_data

# The kill/resume runs: checkpoints every 6 steps, evaluation every 9 (so a best model exists before the kill).
RESUME_SETTINGS = {
    "logging__every_steps": 1,
    "logging__tensorboard": False,
    "checkpoint__every_steps": 6,
    "eval__every_steps": 9,
    "optimizer__warmup_steps": 4,
}
RESUME_STEPS = 20


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("tiny-data"))["raf_db"].parent


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_data):
    """An uninterrupted tiny run (in this process), shared by the tests that inspect a finished run."""
    output = tmp_path_factory.mktemp("reference")
    settings = {**RESUME_SETTINGS, "logging__tensorboard": True}
    summary = run_in_process(train_args(tiny_data, output, RESUME_STEPS, **settings))
    return output, summary


# ------------------------------------------------------------------------------------------------ recipes
def test_shipped_recipes_validate(tiny_data):
    tiny = load_recipe(TINY_RECIPE, [(["data", "root"], str(tiny_data))])
    assert [s.display_name for s in tiny.data.train][0] == "raf_db_trainval" and tiny.train.mixed_precision == "no"
    assert shares_to_counts([s.share for s in tiny.data.train], tiny.train.batch_size) == [2, 2, 1, 1, 2]
    paper = load_recipe(REPO / "configuration" / "train-paper.yaml", check_paths=False)
    assert paper.model.preset == "qface-base" and load_preset("qface-base").backbone_config.image_size == 224
    assert {s.name for s in paper.data.train} == {"raf_db", "bp4d", "disfa", "celeba", "utkface", "300w_lp"}
    assert "aflw2000" in {s.name for s in paper.data.test} and paper.train.mixed_precision == "bf16"
    assert not {s.split for s in paper.data.eval} & {"test"}  # selection on validation splits only


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": {"lr": 1e-3, "weight_decy": 0.1}}, "optimizer.weight_decy: unknown key"),
        ({"train": {"batch_size": "eight", "max_steps": 3}}, "train.batch_size: Input should be a valid integer"),
        ({"train": {"batch_size": 8, "max_steps": 3, "epochs": 2}}, "give exactly one of max_steps and epochs"),
        ({"model": {"preset": "qface-tiny", "config": "x.json"}}, "give exactly one of preset, config, init_from"),
        ({"eval": {"best_mode": "largest"}}, "eval.best_mode: Input should be 'max' or 'min'"),
    ],
)
def test_recipe_errors_name_the_key(tiny_data, change, message):
    import yaml

    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["root"] = str(tiny_data)
    raw.update(change)
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(raw=raw)


def test_recipe_checks_source_roots_shares_and_yaml_no(tmp_path, tiny_data):
    import yaml

    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["root"] = str(tiny_data)
    raw["data"]["train"][1]["root"] = "no-such-folder"
    with pytest.raises(RecipeError, match=r"data\.train\[1\]\.root: folder not found: .*no-such-folder"):
        load_recipe(raw=raw)
    raw["data"]["train"][1]["root"] = "celeba"
    raw["data"]["train"][0]["share"] = 0.5
    with pytest.raises(RecipeError, match="the shares must sum to 1, got 1.25"):
        load_recipe(raw=raw)
    raw["data"]["train"][0]["share"] = 0.25
    raw["train"]["mixed_precision"] = False  # what YAML makes of a bare `no`
    assert load_recipe(raw=raw).train.mixed_precision == "no"


def test_command_line_overrides_recipe_values(tiny_data, tmp_path):
    args = finetune.build_parser().parse_args(
        [
            "--config",
            str(TINY_RECIPE),
            "--data-root",
            str(tiny_data),
            "--output-dir",
            str(tmp_path / "o"),
            "--max-steps",
            "7",
            "--set",
            "optimizer.lr=3e-4",
            "--set",
            "data.train.0.share=0.25",
            "--resume",
        ]
    )
    recipe = finetune.recipe_from_args(args)
    assert recipe.output_dir == str(tmp_path / "o") and recipe.train.max_steps == 7 and recipe.train.epochs is None
    assert recipe.optimizer.lr == 3e-4 and args.resume == "latest"
    args = finetune.build_parser().parse_args(
        ["--config", str(TINY_RECIPE), "--data-root", str(tiny_data), "--epochs", "2", "--set", "train.batch_sise=3"]
    )
    with pytest.raises(RecipeError, match="train.batch_sise: unknown key"):
        finetune.recipe_from_args(args)
    assert finetune.main(["--config", str(TINY_RECIPE), "--data-root", str(tmp_path)]) == 2  # no data there


def test_model_from_preset_with_a_mae_backbone_init_from_and_loss_weights(tmp_path, tiny_data):
    import yaml
    from transformers import ViTMAEModel

    backbone = REPO / "tests" / "fixtures" / "vitmae_v4_pretraining"
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["root"] = str(tiny_data)
    raw["model"].update(backbone=str(backbone), loss_weights={"age": 0.25})
    model = finetune.build_model(load_recipe(raw=raw))
    encoder = ViTMAEModel.from_pretrained(backbone)
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.state_dict().items())
    assert model.config.get_task("age")["loss_weight"] == 0.25 and model.config.get_task("au")["loss_weight"] == 1.0

    model.save_pretrained(tmp_path / "saved")
    raw["model"] = {"init_from": str(tmp_path / "saved"), "loss_weights": {"au": 2.0}}
    again = finetune.build_model(load_recipe(raw=raw))
    assert torch.equal(again.heads.age.proj.weight, model.heads.age.proj.weight)
    assert again.config.get_task("au")["loss_weight"] == 2.0 and again.config.get_task("age")["loss_weight"] == 0.25
    raw["model"] = {"init_from": str(tmp_path / "missing")}
    with pytest.raises(RecipeError, match="model.init_from: not found"):
        load_recipe(raw=raw)
    raw["model"] = {"preset": "qface-tiny", "loss_weights": {"gaze": 1.0}}
    with pytest.raises(RecipeError, match="model.loss_weights.gaze: no such task"):
        finetune.build_model(load_recipe(raw=raw))


# ------------------------------------------------------------------------------------------------ mixing
def test_shares_become_exact_per_source_counts():
    assert shares_to_counts([0.5, 0.25, 0.25], 8) == [4, 2, 2]
    assert shares_to_counts([1 / 3] * 3, 8) == [3, 3, 2]
    assert shares_to_counts([0.7, 0.2, 0.1], 10) == [7, 2, 1]
    with pytest.raises(ValueError, match=r"\['celeba'\] would get no sample"):
        shares_to_counts([0.95, 0.05], 8, names=["raf_db", "celeba"])
    assert steps_per_epoch([24, 16, 36], [2, 2, 1], accumulation_steps=2) == 18  # 36 batches for the 36 rows


def test_mixed_batches_hold_fixed_counts_and_cycle_each_source_as_permutations():
    sampler = MixedBatchSampler([5, 3], [2, 1], seed=7)
    batches = [sampler.next_batch() for _ in range(15)]
    for b, batch in enumerate(batches):
        assert [key[0] for key in batch] == [0, 0, 1] and [key[2:] for key in batch] == [(b, 0), (b, 1), (b, 2)]
    rows = {s: [k[1] for batch in batches for k in batch if k[0] == s] for s in (0, 1)}
    for source, size in ((0, 5), (1, 3)):
        passes = [rows[source][i : i + size] for i in range(0, len(rows[source]), size)]
        assert all(sorted(p) == list(range(size)) for p in passes)  # every pass is a permutation
        assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes


def test_sampler_state_round_trip_continues_the_exact_sequence(tmp_path):
    sampler = MixedBatchSampler([5, 3, 4], [2, 1, 1], seed=3)
    for _ in range(7):
        sampler.next_batch()
    torch.save(sampler.state_dict(), tmp_path / "state.pt")
    expected = [sampler.next_batch() for _ in range(9)]
    restored = MixedBatchSampler([5, 3, 4], [2, 1, 1], seed=3)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert [restored.next_batch() for _ in range(9)] == expected
    with pytest.raises(ValueError, match="per-source counts"):
        MixedBatchSampler([5, 3, 4], [1, 2, 1], seed=3).load_state_dict(sampler.state_dict())


def test_processes_take_disjoint_rotating_shares_of_each_global_batch():
    shares = [iter(ProcessBatchSampler(MixedBatchSampler([9, 4], [3, 1], seed=0), rank, 2)) for rank in (0, 1)]
    single = MixedBatchSampler([9, 4], [3, 1], seed=0)
    sources_seen = {0: set(), 1: set()}
    for _ in range(4):
        mine, theirs, whole = next(shares[0]), next(shares[1]), single.next_batch()
        assert len(mine) == len(theirs) == 2 and not {k[3] for k in mine} & {k[3] for k in theirs}
        assert sorted(mine + theirs, key=lambda k: k[3]) == whole
        sources_seen[0] |= {k[0] for k in mine}
        sources_seen[1] |= {k[0] for k in theirs}
    assert sources_seen == {0: {0, 1}, 1: {0, 1}}  # the rotation gives both processes the 1-sample source
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        ProcessBatchSampler(MixedBatchSampler([9, 4], [2, 1], seed=0), 0, 2)


# ------------------------------------------------------------------------------------------------ optimizer
def test_layer_wise_lr_decay_and_weight_decay_groups(tiny_config):
    model = QFaceModel(tiny_config)  # 4 encoder blocks
    groups = parameter_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    where = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    assert sorted(id(named[n]) for n in trainable) == sorted(where)  # each trainable parameter exactly once
    assert "encoder.embeddings.position_embeddings" not in trainable  # frozen sin-cos table: no group

    def lr(name):
        return where[id(named[name])]["lr"]

    def decay(name):
        return where[id(named[name])]["weight_decay"]

    assert lr("encoder.embeddings.patch_embeddings.projection.weight") == 0.5**5
    assert lr("encoder.embeddings.cls_token") == 0.5**5
    assert lr("encoder.layers.0.attention.q_proj.weight") == 0.5**4
    assert lr("encoder.layers.3.mlp.fc2.bias") == 0.5
    for name in (
        "encoder.layernorm.weight",
        "fusion.projections.0.weight",
        "label_queries.au.weight",
        "decoder_layers.1.ffn.fc1.weight",
        "heads.age.proj.weight",
    ):
        assert lr(name) == 1.0, name
    for name in (
        "encoder.embeddings.cls_token",
        "encoder.layers.0.attention.q_proj.bias",
        "encoder.layers.2.layernorm_before.weight",
        "label_queries.expression.weight",
        "fusion.stage_embeddings.weight",
        "decoder_layers.0.ffn_norm.weight",
        "heads.expression.proj.bias",
    ):
        assert decay(name) == 0.0, name
    for name in (
        "encoder.embeddings.patch_embeddings.projection.weight",
        "encoder.layers.1.mlp.fc1.weight",
        "fusion.projections.1.weight",
        "heads.head_pose.proj.weight",
    ):
        assert decay(name) == 0.05, name


def test_warmup_then_cosine_to_the_floor_keeps_each_groups_scale(tiny_config, tiny_data):
    recipe = load_recipe(TINY_RECIPE, [(["data", "root"], str(tiny_data))])
    settings = recipe.optimizer.model_copy(update={"lr": 1.0, "warmup_steps": 4, "min_lr_ratio": 0.1})
    groups = parameter_groups(QFaceModel(tiny_config), 1.0, 0.0, 0.5)
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    scheduler = build_scheduler(optimizer, settings, max_steps=12)
    top = [g["lr_scale"] for g in optimizer.param_groups].index(1.0)
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    lrs.append([g["lr"] for g in optimizer.param_groups])
    assert [round(step[top], 6) for step in lrs[:5]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert lrs[12][top] == pytest.approx(0.1) and lrs[8][top] == pytest.approx(0.1 + 0.9 * 0.5)
    for step in lrs[1:]:
        assert [lr / step[top] for lr in step] == pytest.approx([g["lr_scale"] for g in optimizer.param_groups])


# ------------------------------------------------------------------------------------------------ kill and resume
@pytest.mark.slow  # a qface train subprocess, killed
def test_a_killed_run_resumes_to_identical_losses_and_weights(tmp_path, tiny_data, reference_run):
    reference, _ = reference_run
    output = tmp_path / "killed"
    args = train_args(tiny_data, output, RESUME_STEPS, **RESUME_SETTINGS)
    first = output / "checkpoints" / "step-00000006"
    kill_once_written(script_command(*args), first, tmp_path / "killed.log", timeout=240)
    assert first.is_dir() and not (output / "final").exists()
    resume_step = list_checkpoints(output)[-1][0]
    assert 6 <= resume_step < RESUME_STEPS
    logged_before_kill = [r["step"] for r in train_records(output / "logs" / "train.jsonl")]
    assert logged_before_kill[:resume_step] == list(range(1, resume_step + 1))
    stale = output / "checkpoints" / f".tmp-step-{resume_step + 6:08d}"  # as if killed while writing the next one
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")

    summary = run_in_process([*args, "--resume"])  # in this process: one interpreter start less
    assert summary["resumed_from"].endswith(f"step-{resume_step:08d}") and summary["steps"] == RESUME_STEPS
    assert not stale.exists()

    # Every step's losses and lr, before and after the kill, equal the uninterrupted run's exactly: the same
    # data (sampler state), augmentation (seeded per sample), RNG and optimizer state, and one thread each.
    tasks = ("expression", "au", "attributes", "age", "head_pose")
    fields = ["step", "loss", "lr", "grad_norm", *(f"loss/{t}" for t in tasks)]
    expected = [{k: r.get(k) for k in fields} for r in train_records(reference / "logs" / "train.jsonl")]
    got = [{k: r.get(k) for k in fields} for r in train_records(output / "logs" / "train.jsonl")]
    assert [r["step"] for r in got] == list(range(1, RESUME_STEPS + 1))
    assert got == expected
    evals = [[r for r in read_jsonl(run / "logs" / "train.jsonl") if "loss" not in r] for run in (reference, output)]
    assert evals[0] == evals[1] and [r["step"] for r in evals[0]] == [9, 18, 20]

    # Bit-identical weights (torch.equal): the same float operations in the same order, so no tolerance is needed;
    # a tolerance would hide e.g. one skipped or repeated optimizer step at a small learning rate.
    want, have = load_file(reference / "final" / "model.safetensors"), load_file(output / "final" / "model.safetensors")
    assert want.keys() == have.keys() and all(torch.equal(want[k], have[k]) for k in want)
    assert (
        json.loads((output / "best" / "eval_results.json").read_text())["step"]
        == json.loads((reference / "best" / "eval_results.json").read_text())["step"]
    )


def test_resume_refuses_a_missing_checkpoint_and_a_fresh_start_over_checkpoints(tmp_path, tiny_data, reference_run):
    reference, _ = reference_run
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        finetune.resolve_resume(tmp_path, "latest")
    assert finetune.resolve_resume(tmp_path, "auto") is None
    assert [step for step, _ in list_checkpoints(reference)] == [18, 20]  # keep_last 2, numeric order
    recipe = load_recipe(TINY_RECIPE, [(["data", "root"], str(tiny_data)), (["output_dir"], str(reference))])
    with pytest.raises(RecipeError, match="already holds checkpoints; pass --resume"):
        finetune.train(recipe)


def test_logs_are_cut_back_to_the_resumed_step(tmp_path):
    from modeling_qface.training.tracking import JSONLTracker, truncate_jsonl

    tracker = JSONLTracker(tmp_path / "logs" / "train.jsonl")
    tracker.start()
    for step in (1, 2, 3, 4):
        tracker.log({"loss": float(step), "eval/x": float("nan")}, step=step)
    tracker.finish()
    truncate_jsonl(tmp_path / "logs" / "train.jsonl", 2)
    assert read_jsonl(tmp_path / "logs" / "train.jsonl") == [
        {"step": 1, "loss": 1.0, "eval/x": None},
        {"step": 2, "loss": 2.0, "eval/x": None},
    ]


# ------------------------------------------------------------------------------------------------ a finished run
def test_finished_run_exports_a_loadable_model_logs_and_the_best_checkpoint(reference_run):
    from transformers import AutoImageProcessor, AutoModel

    output, summary = reference_run
    final = output / "final"
    files = {p.name for p in final.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "modeling_qface.py",
        "configuration_qface.py",
        "preprocessor_config.json",
        "recipe.yaml",
        "versions.json",
    } <= files
    versions = json.loads((final / "versions.json").read_text())["packages"]
    assert versions["torch"] == torch.__version__ and versions["accelerate"] is not None
    remote = AutoModel.from_pretrained(final, trust_remote_code=True).eval()
    local = QFaceModel.from_pretrained(final).eval()
    pixels = AutoImageProcessor.from_pretrained(final)([np.zeros((40, 30, 3), np.uint8)], return_tensors="pt")
    with torch.no_grad():
        a, b = remote(**pixels), local(**pixels)
    assert type(remote).__name__ == "QFaceModel" and torch.equal(a.expression_logits, b.expression_logits)

    records = read_jsonl(output / "logs" / "train.jsonl")
    step_record = next(r for r in records if "loss" in r)
    assert {"loss", "lr", "samples_per_s", "grad_norm", "loss/expression", "loss/head_pose"} <= set(step_record)
    assert step_record["samples_per_s"] > 0 and summary["samples_per_s"] > 0
    evals = [r for r in records if "eval/expression/accuracy" in r]
    best_value = max(r["eval/expression/accuracy"] for r in evals)
    best_step = next(r["step"] for r in evals if r["eval/expression/accuracy"] == best_value)  # first of ties
    best = json.loads((output / "best" / "eval_results.json").read_text())
    assert best["step"] == best_step == summary["best"]["step"] and summary["best"]["value"] == best_value
    assert best["labelled"]["raf_db_test"]["expression"] == SIZES["raf_db_test"]
    assert list((output / "logs" / "qface").glob("events.out.tfevents.*"))  # TensorBoard


def test_evaluate_model_scores_like_the_metrics_on_its_own_predictions(tmp_path, reference_run, tiny_data, capsys):
    from modeling_qface.model.face_alignment_qface import FaceCrop
    from modeling_qface.model.image_processing_qface import build_image_processor
    from modeling_qface.training.batching import QFaceBatchTransform
    from modeling_qface.training.data import load_source
    from modeling_qface.training.metrics import compute_task_metrics

    output, _ = reference_run
    model_path = output / "final"
    out_json = tmp_path / "eval.json"
    code = evaluation.main(
        [
            "--model",
            str(model_path),
            "--source",
            f"raf_db:{tiny_data / 'basic'}:test",
            "--source",
            f"aflw2000:{tiny_data / 'AFLW2000'}",
            "--batch-size",
            "3",
            "--device",
            "cpu",
            "--output",
            str(out_json),
        ]
    )
    assert code == 0
    report = json.loads(out_json.read_text())
    table = capsys.readouterr().out
    assert "raf_db_test" in table and "expression/accuracy" in table and "head_pose/mae_mean" in table
    # It says which crop it scored: the model's own (qface-tiny: 32 px); the fixture's random pixels hold no face.
    assert "Faces cut into the model's Q-Face crop (32 px, margin 0.15); head pose scored in the photo's frame" in table
    assert f"aflw2000_test: {SIZES['aflw2000']} faces; no face found: central square as the Q-Face crop" in table
    assert report["face_crop"]["size"] == 32 and report["head_pose_frame"] == "photo"
    assert report["model"] == str(model_path)
    assert [d["label"] for d in report["data"]] == ["raf_db_test", "aflw2000_test"]
    assert report["labelled"]["raf_db_test"] == {"expression": 8, "au": 0, "attributes": 0, "age": 0, "head_pose": 0}
    assert report["labelled"]["aflw2000_test"]["head_pose"] == SIZES["aflw2000"]
    from_recipe = tmp_path / "from_recipe.json"
    assert (
        evaluation.main(
            [
                "--model",
                str(model_path),
                "--config",
                str(TINY_RECIPE),
                "--data-root",
                str(tiny_data),
                "--output",
                str(from_recipe),
            ]
        )
        == 0
    )
    recipe_report = json.loads(from_recipe.read_text())
    assert [d["label"] for d in recipe_report["data"]] == ["raf_db_test", "celeba_test", "aflw2000_test"]
    assert recipe_report["metrics"]["raf_db_test"] == report["metrics"]["raf_db_test"]

    # The same numbers straight from the model and the metric modules.
    model = QFaceModel.from_pretrained(model_path).eval()
    processor = build_image_processor(model.config)
    face_crop = FaceCrop.from_config(model.config)
    rows = load_source("raf_db", tiny_data / "basic", "test", face_crop=face_crop)[:]
    batch = QFaceBatchTransform(model.config, processor)(rows)
    with torch.no_grad():
        logits = model(batch["pixel_values"]).expression_logits.numpy()
    expected = compute_task_metrics(
        model.config.tasks, {"expression": logits}, {"expression": batch["expression_labels"].numpy()}
    )
    assert report["metrics"]["raf_db_test"]["expression/accuracy"] == pytest.approx(expected["expression/accuracy"])
    assert expected["expression/accuracy"] == np.mean(logits.argmax(1) == batch["expression_labels"].numpy())

    # Sharded over 3 processes (8 rows: 3 + 3 + 2, the last share padded and trimmed), the shares cover each row once.
    dataset = load_source("raf_db", tiny_data / "basic", "test", face_crop=face_crop)
    shares = [evaluation.predict(model, dataset, model.config, processor, 2, "cpu", rank, 3) for rank in range(3)]
    assert [len(share[0]["expression"]) for share in shares] == [3, 3, 2]
    order = [i for rank in range(3) for i in range(rank, 8, 3)]
    merged = np.concatenate([share[0]["expression"] for share in shares])
    np.testing.assert_allclose(merged, logits[order], rtol=1e-5, atol=1e-6)
    references = np.concatenate([share[1]["expression"] for share in shares])
    assert np.array_equal(references, batch["expression_labels"].numpy()[order])


def test_bf16_mixed_precision_and_activation_checkpointing_run(tmp_path, tiny_data):
    summary = run_in_process(
        train_args(
            tiny_data,
            tmp_path / "bf16",
            2,
            train__mixed_precision="bf16",
            model__activation_checkpointing=True,
            logging__every_steps=1,
            logging__tensorboard=False,
            data__eval=[],
            eval__best_metric=None,
            checkpoint__every_steps=None,
        )
    )
    records = train_records(tmp_path / "bf16" / "logs" / "train.jsonl")
    assert summary["steps"] == 2 and all(math.isfinite(r["loss"]) for r in records) and len(records) == 2
    assert not (tmp_path / "bf16" / "checkpoints").exists()
    assert QFaceModel.from_pretrained(tmp_path / "bf16" / "final").dtype == torch.float32


def test_a_checkpoint_that_cannot_be_written_is_one_line_naming_it(tmp_path, tiny_data, monkeypatch, capsys):
    from modeling_qface import cli
    from modeling_qface.training import checkpointing

    def full_disk(*args, **kwargs):  # what torch's zip writer raises when the disk fills up under it
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4352 vs 4240")

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    output = tmp_path / "run"
    args = train_args(tiny_data, output, 3, checkpoint__every_steps=2, logging__tensorboard=False)
    assert cli.main(["train", *args]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    folder = output / "checkpoints" / "step-00000002"
    assert line[line.index("qface train: error:") :] == (  # after the progress bar's last state
        f"qface train: error: cannot write the checkpoint {folder}: [enforce fail at inline_container.cc:626] . "
        "unexpected pos 4352 vs 4240"
    )
    assert not folder.exists()  # never a checkpoint that looks complete
