"""The Q-Face export and its model card, without the Hub (fast). Pushing through a real Hub client over HTTP is in
tests/test_hub_http.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

import modeling_qface.model
from modeling_qface import QFaceModel
from modeling_qface.hub import MODEL_CARD_TEMPLATE, build_model_card, evaluation_results, export_model
from modeling_qface.model.image_processing_qface import build_image_processor

ROOT = Path(__file__).resolve().parents[1]
EVALUATION = {  # `qface evaluate`'s JSON report (modeling_qface.training.evaluation.main), two sets
    "model": "runs/qface/final",
    "head_pose_frame": "photo",
    "face_crop": {"size": 32, "margin": 0.1},
    "data": [
        {
            "name": "raf_db",
            "root": "/data/RAF-DB/basic",
            "split": "test",
            "options": {},
            "label": "raf_db_test",
            "num_samples": 3068,
            "crop": "q-face",
        },
        {
            "name": "aflw2000",
            "root": "/data/AFLW2000",
            "split": "test",
            "options": {},
            "label": "aflw2000_test",
            "num_samples": 1969,
            "crop": "q-face",
        },
    ],
    "metrics": {
        "raf_db_test": {
            "expression/accuracy": 0.8813,
            "expression/mean_class_accuracy": 0.7942,
            "expression/class_accuracy/happiness": 0.95,
            "age/mae": None,
        },
        "aflw2000_test": {"head_pose/mae_mean": 4.125, "head_pose/mae/yaw": 3.5},
    },
    "aliases": {"expression/accuracy": 0.8813},
    "labelled": {"raf_db_test": {"expression": 3068}},
}
RECIPE = {
    "output_dir": "runs/qface",
    "seed": 3,
    "model": {"preset": "qface-tiny", "backbone": "facebook/vit-mae-base", "loss_weights": {"au": 2.0}},
    "data": {
        "train": [
            {"name": "raf_db", "root": "RAF-DB", "split": "trainval", "share": 0.5},
            {"name": "celeba", "root": "CelebA", "split": "train", "share": 0.5},
        ],
        "eval": [{"name": "raf_db", "root": "RAF-DB", "split": "test"}],
    },
    "train": {"batch_size": 256, "max_steps": 20000, "mixed_precision": "bf16"},
    "optimizer": {"lr": 5e-4, "weight_decay": 0.05, "layer_decay": 0.65, "warmup_steps": 1000},
}


def card_metadata(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# The installed package's Hub-facing folder (the wheel's copy under tests/wheel_check.sh, not the source tree's).
MODEL_FOLDER = Path(modeling_qface.model.__file__).parent
HUB_FACING = sorted(p.name for p in MODEL_FOLDER.glob("*.py") if p.name != "__init__.py")


def test_export_writes_the_complete_export_with_exactly_the_hub_facing_code(tmp_path, tiny_model, pixel_values):
    export_model(tiny_model, tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    code = sorted(name for name in files if name.endswith(".py"))
    assert code == HUB_FACING  # every module of modeling_qface/model, nothing else
    for name in code:  # byte for byte what the package runs
        assert (tmp_path / name).read_bytes() == (MODEL_FOLDER / name).read_bytes(), name
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "face-analysis": {"impl": "pipeline_qface.FaceAnalysisPipeline", "pt": ["AutoModel"], "type": "image"}
    }
    assert config["auto_map"]["AutoModel"] == "modeling_qface.QFaceModel"
    assert card_metadata((tmp_path / "README.md").read_text())["library_name"] == "transformers"
    assert "custom_pipelines" not in vars(tiny_model.config)  # the model's own config is left as it was
    reloaded = QFaceModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values).au_logits, tiny_model(pixel_values).au_logits)


def test_save_pretrained_is_transformers_own_the_model_and_its_code(tmp_path, tiny_model):
    """`save_pretrained` writes what `AutoModel` needs (the model module and what it imports); the pipeline's code and
    entry come with the export (`export_model`, `qface push`, training's folders) or `pipe.save_pretrained`."""
    tiny_model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {
        "config.json",
        "model.safetensors",
        "configuration_qface.py",
        "modeling_qface.py",
        "heads_qface.py",
    }
    assert "custom_pipelines" not in json.loads((tmp_path / "config.json").read_text())


def test_card_model_index_equals_the_evaluation_json(tmp_path, tiny_model):
    export_model(
        tiny_model,
        tmp_path,
        build_image_processor(tiny_model.config),
        evaluation=EVALUATION,
        training_config=RECIPE,
        repo_id="me/qface-tiny",
    )
    card = (tmp_path / "README.md").read_text()
    meta = card_metadata(card)
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "image-classification" and "face-analysis" in meta["tags"]
    assert meta["datasets"] == ["RAF-DB", "CelebA"] and meta["base_model"] == "facebook/vit-mae-base"
    [entry] = meta["model-index"]
    assert entry["name"] == "qface-tiny"
    found = {}
    for result in entry["results"]:
        for metric in result["metrics"]:
            key = (result["dataset"]["type"], result["dataset"]["split"], metric["type"])
            found[key] = (result["task"]["name"].split(" ")[0], metric["value"])
    # Every model-index value is the report's, and every finite task-level number of the report is there.
    expected = {}
    for source in EVALUATION["data"]:
        for key, value in EVALUATION["metrics"][source["label"]].items():
            task, metric = key.split("/", 1)
            if "/" not in metric and value is not None and math.isfinite(value):
                expected[(source["name"], source["split"], metric)] = (task, value)
    assert found == expected and len(found) == 3
    # The card's sections, from the model's own files.
    for text in (
        "## How to use",
        "trust_remote_code=True",
        'pipeline("face-analysis", model="me/qface-tiny"',
        "qface analyze",
        "## Tasks and outputs",
        "| head_pose | regression | `head_pose` |",
        "degrees",
        "yaw > 0 turns",
        "AU1, AU2, AU4",
        "happiness",
        "## Training",
        "| RAF-DB (`raf_db`) | trainval | 0.5 |",
        "20000 steps, global batch 256",
        "peak lr 0.0005",
        "| expression | RAF-DB | test | accuracy | 0.8813 |",
        "## Limitations and bias",
        "Children",
        "Pose extremes",
        "Demographic coverage",
        "Sensitive attributes",
        "## Data licences",
        "CelebA: non-commercial",
        "## Citation",
        "arXiv:2405.09059",
    ):
        assert text in card, text
    assert "{{" not in card and "{%" not in card


def test_training_best_model_record_maps_sets_through_the_recipe():
    record = {
        "step": 500,
        "metrics": {
            "raf_db_test/expression/accuracy": 0.75,
            "expression/accuracy": 0.75,
            "raf_db_test/expression/class_accuracy/fear": 0.2,
        },
    }
    assert evaluation_results(record, RECIPE) == [
        {
            "set": "raf_db_test",
            "task": "expression",
            "dataset": "raf_db",
            "dataset_name": "RAF-DB",
            "split": "test",
            "metric": "accuracy",
            "value": 0.75,
        }
    ]
    assert evaluation_results({"eval_loss": 0.3}) == []  # Trainer's own eval_results.json: no model-index


def test_card_without_evaluation_or_recipe_says_so(tiny_config):
    card = str(build_model_card(tiny_config, "me/x", 123_456))
    assert "No evaluation results were recorded" in card and "Parameters: 0.1 M" in card
    assert "model-index" not in card and "base_model" not in card
    assert "blocks 2, 4" in card and "66 learnable queries" in card
    assert "No training configuration (`recipe.yaml`) was saved" in card


def test_card_template_is_package_data():
    assert MODEL_CARD_TEMPLATE.parent == ROOT / "modeling_qface" / "hub" and MODEL_CARD_TEMPLATE.is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "model_card.md" in package_data["modeling_qface.hub"]


def test_qface_push_rejects_a_folder_that_is_not_a_model(tmp_path, capsys):
    from modeling_qface.cli import main

    assert main(["push", str(tmp_path), "me/x"]) == 2
    assert (
        capsys.readouterr().err.strip() == f"qface push: error: {tmp_path}: not a saved model folder (no config.json)"
    )


@pytest.mark.parametrize(
    "recipe,expected",
    [
        ({"model": {"backbone": "runs/demo/mae"}}, None),
        ({"model": {"backbone": "/abs/mae"}}, None),
        ({"model": {"init_from": "me/qface-base"}}, "me/qface-base"),
    ],
)
def test_base_model_only_for_hub_ids(recipe, expected):
    from modeling_qface.hub.card import base_model_of

    assert base_model_of(recipe) == expected


def test_training_exports_best_and_final_as_the_same_export(tmp_path, tiny_model):
    """`modeling_qface.training.checkpointing.export_model` (final/ and best/ of `qface train`) writes the Q-Face export, with the
    best model's record turned into the card's model-index through the recipe."""
    from accelerate import Accelerator

    from modeling_qface.training.checkpointing import export_model as training_export

    recipe_yaml = yaml.safe_dump(RECIPE)
    record = {
        "step": 4,
        "metrics": {"raf_db_test/expression/accuracy": 0.625, "raf_db_test/age/mae": float("nan")},
        "labelled": {"raf_db_test": {"expression": 8}},
    }
    folder = training_export(
        Accelerator(cpu=True),
        tiny_model,
        build_image_processor(tiny_model.config),
        tmp_path / "run" / "best",
        recipe_yaml,
        record,
    )
    files = {p.name for p in folder.iterdir()}
    assert {
        "pipeline_qface.py",
        "preprocessor_config.json",
        "README.md",
        "recipe.yaml",
        "versions.json",
        "eval_results.json",
        "model.safetensors",
    } <= files
    assert "custom_pipelines" in json.loads((folder / "config.json").read_text())
    meta = card_metadata((folder / "README.md").read_text())
    assert meta["model-index"][0]["name"] == "run" and meta["base_model"] == "facebook/vit-mae-base"
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"] == {"name": "RAF-DB", "type": "raf_db", "split": "test"}
    assert result["metrics"] == [{"type": "accuracy", "value": 0.625, "name": "expression accuracy"}]
