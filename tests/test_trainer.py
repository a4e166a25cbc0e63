"""transformers.Trainer trains and evaluates Q-Face on an in-memory `datasets.Dataset` with partial labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import Trainer, TrainingArguments

from modeling_qface import ATTRIBUTE_NAMES, QFaceConfig, QFaceModel, load_preset
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.training.batching import QFaceBatchTransform, label_names, make_compute_metrics, prediction_fields
from modeling_qface.training.data.schema import FEATURES, empty_row


def mixed_source_rows(count: int = 16) -> list[dict]:
    """Rows as several single-task datasets give them: each source labels one task, the rest is missing."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8))
        source = ("raf_db", "bp4d", "celeba", "utkface", "300w_lp")[i % 5]
        row = {**empty_row("", source), "image": image}
        if source == "raf_db":
            row["expression"] = int(rng.integers(0, 7))
        elif source == "bp4d":
            row["au"] = [int(v) if k % 3 else -1 for k, v in enumerate(rng.integers(0, 2, 15))]
        elif source == "celeba":
            row["attributes"] = [int(v) for v in rng.integers(0, 2, 40)]
        elif source == "utkface":
            row["age"] = float(rng.uniform(1, 90))
        else:
            row["head_pose"] = [float(v) for v in rng.uniform(-60, 60, 3)]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def face_dataset():
    return Dataset.from_list(mixed_source_rows(), features=FEATURES)


def test_transform_fills_every_label_key(tiny_config, face_dataset):
    transform = QFaceBatchTransform(tiny_config, build_image_processor(tiny_config))
    batch = face_dataset.with_transform(transform)[:5]
    assert batch["pixel_values"].shape == (5, 3, 32, 32)
    assert sorted(k for k in batch if k != "pixel_values") == sorted(label_names(tiny_config))
    assert batch["expression_labels"][0] >= 0 and (batch["expression_labels"][1:] == -1).all()
    assert (batch["au_labels"][1] != -1).sum() == 10 and (batch["au_labels"][0] == -1).all()
    assert (batch["attributes_labels"][2] >= 0).all()
    assert not math.isnan(batch["age_labels"][3]) and batch["age_labels"][:3].isnan().all()
    assert not batch["head_pose_labels"][4].isnan().any() and batch["head_pose_labels"][:4].isnan().all()
    assert prediction_fields(tiny_config) == ["expression_logits", "au_logits", "attributes_logits", "age", "head_pose"]


def run_trainer(tmp_path, config, dataset, activation_checkpointing: bool):
    torch.manual_seed(0)
    model = QFaceModel(config)
    processor = build_image_processor(config)
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{activation_checkpointing}"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        num_train_epochs=2,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        label_names=label_names(config),
        activation_checkpointing=activation_checkpointing,
        dataloader_num_workers=0,
    )
    data = dataset.with_transform(QFaceBatchTransform(config, processor))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        processing_class=processor,
        compute_metrics=make_compute_metrics(config),
    )
    result = trainer.train()
    return trainer, result, trainer.evaluate()


@pytest.mark.slow  # transformers Trainer runs and evaluates
def test_trainer_trains_and_evaluates_with_partial_labels(tmp_path, tiny_config, face_dataset):
    runs = {flag: run_trainer(tmp_path, tiny_config, face_dataset, flag) for flag in (False, True)}
    trainer, result, metrics = runs[False]
    assert result.global_step == 8 and math.isfinite(result.training_loss)
    assert trainer.model.is_activation_checkpointing is False and runs[True][0].model.is_activation_checkpointing
    for key in (
        "eval_loss",
        "eval_expression/accuracy",
        "eval_au/f1_mean",
        "eval_attributes/accuracy_mean",
        "eval_age/mae",
        "eval_head_pose/mae_mean",
        "eval_head_pose/mae/yaw",
    ):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["eval_expression/accuracy"] <= 1.0 and metrics["eval_age/mae"] > 0

    # Activation checkpointing recomputes the same forward: the same losses, step for step.
    losses = [[e["loss"] for e in run[0].state.log_history if "loss" in e] for run in runs.values()]
    assert len(losses[0]) == 8
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)

    # The last checkpoint reloads (safetensors, code, image processor) and answers like the trained model.
    checkpoint = tmp_path / "run-False" / "checkpoint-8"
    files = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_qface.py", "preprocessor_config.json"} <= files
    assert not any(name.endswith(".bin") and "model" in name for name in files)
    reloaded = QFaceModel.from_pretrained(checkpoint).eval()
    batch = face_dataset.with_transform(QFaceBatchTransform(tiny_config, build_image_processor(tiny_config)))[:4]
    with torch.no_grad():
        expected = trainer.model.eval()(batch["pixel_values"])
        got = reloaded(batch["pixel_values"])
    for field in ("expression_logits", "au_logits", "age", "head_pose"):
        assert torch.equal(expected[field], got[field]), field


def test_a_task_with_some_of_a_schema_columns_labels_reads_those_positions():
    tasks = [
        {"name": "expression", "kind": "multiclass", "labels": ["happiness", "neutral", "surprise"]},
        {"name": "attributes", "kind": "multilabel", "labels": ["Smiling", "Male"]},
        {"name": "head_pose", "kind": "regression", "labels": ["yaw", "pitch", "roll"]},
    ]
    config = QFaceConfig(
        backbone_config=load_preset("qface-tiny").backbone_config,
        tasks=tasks,
        fusion_layers=load_preset("qface-tiny").fusion_layers,
        d_model=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
    )
    attributes = [[0] * 40, [1] * 40]
    attributes[0][ATTRIBUTE_NAMES.index("Smiling")] = 1
    batch = {
        "image": [Image.new("RGB", (32, 32))] * 2,
        "expression": [3, 5],
        "attributes": attributes,
        "head_pose": [[1.0, 2.0, 3.0], None],
    }
    out = QFaceBatchTransform(config, build_image_processor(config))(batch)
    assert out["expression_labels"].tolist() == [0, -1]  # happiness -> class 0; anger is not one of the task's
    assert out["attributes_labels"].tolist() == [[1, 0], [1, 1]]
    bad = {"name": "attributes", "kind": "multilabel", "labels": ["Smiling", "Freckles"]}
    with pytest.raises(ValueError, match=r"labels \['Freckles'\] are not in the schema's attributes column"):
        QFaceBatchTransform(QFaceConfig(**{**config.to_dict(), "tasks": [bad]}), build_image_processor(config))(batch)
