"""QFaceConfig: defaults, the task set as data, validation messages, presets and JSON round trips."""

from __future__ import annotations

import json

import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, ViTMAEConfig

from modeling_qface import (
    ATTRIBUTE_NAMES,
    AU_NAMES,
    EXPRESSION_NAMES,
    PRESET_NAMES,
    QFaceConfig,
    default_tasks,
    load_preset,
)


def test_defaults_are_the_paper_task_set():
    config = QFaceConfig()
    assert config.model_type == "qface"
    assert config.task_names == ["expression", "au", "attributes", "age", "head_pose"]
    assert config.get_task("expression")["labels"] == list(EXPRESSION_NAMES)
    assert EXPRESSION_NAMES == ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    assert config.get_task("au")["labels"] == [f"AU{n}" for n in (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 23, 24, 25, 26)]
    assert len(AU_NAMES) == 15 and len(ATTRIBUTE_NAMES) == 40
    assert ATTRIBUTE_NAMES[0] == "5_o_Clock_Shadow" and ATTRIBUTE_NAMES[20] == "Male" and ATTRIBUTE_NAMES[-1] == "Young"
    age = config.get_task("age")
    assert (age["kind"], age["min_value"], age["max_value"], age["units"]) == ("distribution", 0, 100, "years")
    assert config.get_task("head_pose")["labels"] == ["yaw", "pitch", "roll"]
    assert config.fusion_layers == [4, 8, 12] and config.d_model == 256 and config.decoder_layers == 6
    assert isinstance(config.backbone_config, ViTMAEConfig) and config.backbone_config.hidden_size == 768


@pytest.mark.parametrize("given", [None, {"mask_ratio": 0.75}, ViTMAEConfig(mask_ratio=0.6)])
def test_masking_is_forced_off(given):
    assert QFaceConfig(backbone_config=given).backbone_config.mask_ratio == 0.0


def test_json_round_trip_through_auto_config(tmp_path, tiny_config):
    tiny_config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["backbone_config"]["model_type"] == "vit_mae" and saved["backbone_config"]["mask_ratio"] == 0.0
    assert "backbone" not in saved
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is QFaceConfig
    drop = {"_name_or_path"}
    assert {k: v for k, v in reloaded.to_dict().items() if k not in drop} == {
        k: v for k, v in tiny_config.to_dict().items() if k not in drop
    }


def test_presets_load_and_scale_up():
    assert {"qface-base", "qface-small", "qface-tiny"} <= set(PRESET_NAMES)
    base, small, tiny = (load_preset(n) for n in ("qface-base", "qface-small", "qface-tiny"))
    assert (base.backbone_config.hidden_size, base.backbone_config.image_size, base.backbone_config.patch_size) == (
        768,
        224,
        16,
    )
    assert base.backbone_config.num_hidden_layers == 12 and base.fusion_layers == [4, 8, 12]
    assert tiny.backbone_config.hidden_size < small.backbone_config.hidden_size < base.backbone_config.hidden_size
    assert load_preset("qface-tiny", d_model=64).d_model == 64
    with pytest.raises(ValueError, match="unknown preset 'qface-huge'"):
        load_preset("qface-huge")


def test_tasks_can_be_dropped_and_added_by_config_alone():
    tasks = [t for t in default_tasks() if t["name"] in ("expression", "age")]
    tasks.append({"name": "gender", "kind": "multiclass", "labels": ["female", "male"], "loss_weight": 0.5})
    config = QFaceConfig(tasks=tasks)
    assert config.task_names == ["expression", "age", "gender"]
    gender = config.get_task("gender")
    assert gender["loss_weight"] == 0.5 and gender["query_group"] == 0
    with pytest.raises(KeyError, match="no task named 'au'"):
        config.get_task("au")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fusion_layers": [4, 8]}, "fusion_layers: the last fused block must be the encoder's last block"),
        ({"fusion_layers": [8, 4, 12]}, "fusion_layers: expected strictly increasing"),
        ({"fusion_layers": [0, 12]}, "fusion_layers: expected strictly increasing indices >= 1"),
        ({"d_model": 252}, r"d_model \(252\) must be divisible by decoder_attention_heads \(8\)"),
        ({"d_model": 30, "decoder_attention_heads": 6}, "d_model: expected a multiple of 4"),
        ({"d_model": "abc"}, "d_model: expected a positive int, got 'abc'"),
        ({"decoder_dropout": 1.5}, r"decoder_dropout: expected a probability in \[0, 1\)"),
        ({"backbone": "facebook/vit-mae-base"}, "no `backbone` field"),
        ({"backbone_config": {"model_type": "vit"}}, "backbone_config.model_type: expected 'vit_mae'"),
        ({"tasks": []}, "tasks: expected at least one task"),
        ({"tasks": [{"name": "x", "kind": "ranking", "labels": ["a"]}]}, r"tasks\[0\]\['x'\].kind: expected one of"),
        (
            {"tasks": [{"name": "my-task", "kind": "multilabel", "labels": ["a"]}]},
            r"tasks\[0\].name: expected a Python identifier",
        ),
        ({"tasks": [{"name": "x", "kind": "multiclass", "labels": ["a"]}]}, "multiclass task needs at least 2 classes"),
        ({"tasks": [{"name": "x", "kind": "multilabel", "labels": ["a", "a"]}]}, "label names must be unique"),
        (
            {"tasks": [{"name": "x", "kind": "multilabel", "labels": ["a"], "lossweight": 1}]},
            r"unknown key\(s\) \['lossweight'\]",
        ),
        (
            {"tasks": [{"name": "x", "kind": "multilabel", "labels": ["a"], "loss_weight": -1}]},
            r"\['x'\].loss_weight: expected a number >= 0.0",
        ),
        (
            {"tasks": [{"name": "x", "kind": "distribution", "labels": ["a"], "min_value": 5, "max_value": 5}]},
            "expected int min_value < max_value",
        ),
        (
            {"tasks": [{"name": "x", "kind": "distribution", "labels": ["a", "b"], "min_value": 0, "max_value": 5}]},
            "predicts one value",
        ),
        (
            {"tasks": [{"name": "x", "kind": "multilabel", "labels": ["a", "b"], "pos_weight": [1.0]}]},
            r"pos_weight: expected 2 numbers",
        ),
        (
            {"tasks": [{"name": "x", "kind": "multiclass", "labels": ["a", "b"], "scale": 2.0}]},
            "apply to regression and distribution",
        ),
        (
            {"tasks": [*default_tasks(), {"name": "age", "kind": "regression", "labels": ["a"]}]},
            r"\['age'\] appear more than once",
        ),
    ],
)
def test_invalid_values_name_the_field(kwargs, message):
    # Field-level checks raise ValueError; class validators wrap it in hub's StrictDataclassClassValidationError.
    with pytest.raises((ValueError, TypeError, StrictDataclassClassValidationError), match=message):
        QFaceConfig(**kwargs)
