"""Hugging Face integration: save/reload, Auto classes, remote code, MAE backbone checkpoints, safetensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, ViTMAEForPreTraining

from modeling_qface import QFaceConfig, QFaceModel

FIXTURES = Path(__file__).parent / "fixtures"
OUTPUT_FIELDS = ("expression_logits", "au_logits", "attributes_logits", "age_distribution", "age", "head_pose")


def assert_same_outputs(a, b):
    for name in OUTPUT_FIELDS:
        assert torch.equal(a[name], b[name]), name


def saved_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_save_and_reload_is_bit_identical_and_safetensors_only(tmp_path, tiny_model, pixel_values):
    with torch.no_grad():
        reference = tiny_model(pixel_values)
    tiny_model.save_pretrained(tmp_path)
    files = saved_files(tmp_path)
    assert {
        "config.json",
        "model.safetensors",
        "configuration_qface.py",
        "modeling_qface.py",
        "heads_qface.py",
    } <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_qface.QFaceConfig",
        "AutoModel": "modeling_qface.QFaceModel",
    }
    assert config["architectures"] == ["QFaceModel"]

    reloaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(reloaded) is QFaceModel and type(AutoConfig.from_pretrained(tmp_path)) is QFaceConfig
    # MAE's sin-cos positions stay frozen after loading (transformers hands them back trainable).
    assert not reloaded.encoder.embeddings.position_embeddings.requires_grad
    trainable = {n for n, p in reloaded.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        assert_same_outputs(reference, reloaded.eval()(pixel_values))


def test_added_task_survives_save_and_reload(tmp_path, tiny_model, pixel_values):
    tiny_model.add_task("gender", "multiclass", ["female", "male"])
    with torch.no_grad():
        reference = tiny_model(pixel_values)
    tiny_model.save_pretrained(tmp_path)
    reloaded, info = QFaceModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and reloaded.config.get_task("gender")["query_group"] == 1
    with torch.no_grad():
        again = reloaded.eval()(pixel_values)
    assert_same_outputs(reference, again)
    assert torch.equal(reference.extra_task_outputs["gender_logits"], again.extra_task_outputs["gender_logits"])


@pytest.mark.slow
def test_remote_code_in_a_fresh_process_without_the_package(tmp_path, tiny_model, pixel_values):
    model_dir, work_dir = tmp_path / "qface-tiny", tmp_path / "elsewhere"
    work_dir.mkdir()
    tiny_model.save_pretrained(model_dir)
    with torch.no_grad():
        reference = tiny_model(pixel_values)
    save_file({"pixel_values": pixel_values, **{k: reference[k] for k in OUTPUT_FIELDS}}, tmp_path / "io.safetensors")
    script = textwrap.dedent(
        f"""
        import sys, torch
        # The repo is pip-installed (editable) in this venv: block the package the way a missing one behaves.
        for name in ("modeling_qface", "configuration", "training"):
            sys.modules[name] = None
        try:
            import modeling_qface
            raise SystemExit("the package must not be importable here")
        except ImportError:
            pass
        from safetensors.torch import load_file
        from transformers import AutoModel
        io = load_file({str(tmp_path / "io.safetensors")!r})
        model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            out = model(io["pixel_values"])
        for name in {OUTPUT_FIELDS!r}:
            assert torch.equal(out[name], io[name]), name
        print("REMOTE-OK", type(model).__name__)
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=work_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE-OK QFaceModel" in result.stdout


@pytest.fixture
def mae_checkpoints(tmp_path, tiny_config):
    """Tiny MAE checkpoints in the transformers 5 key layout (`layers.N.attention.q_proj`).

    transformers 5 writes the legacy (v4) names by default; `save_original_format=False` keeps its own.
    """
    torch.manual_seed(3)
    pretraining = ViTMAEForPreTraining(tiny_config.backbone_config)
    pretraining.save_pretrained(tmp_path / "v5_pretraining", save_original_format=False)
    pretraining.vit.save_pretrained(tmp_path / "v5_model", save_original_format=False)
    for folder in ("v5_pretraining", "v5_model"):
        keys = list(safe_open(tmp_path / folder / "model.safetensors", "pt").keys())
        assert any(".layers.1.attention.q_proj.weight" in f".{k}" for k in keys), keys[:5]
    return {"v5_pretraining": tmp_path / "v5_pretraining", "v5_model": tmp_path / "v5_model"}, pretraining.vit


@pytest.mark.parametrize("layout", ["v5_pretraining", "v5_model"])
def test_backbone_from_a_v5_checkpoint(tmp_path, tiny_config, mae_checkpoints, layout, pixel_values):
    folders, encoder = mae_checkpoints
    model = QFaceModel.from_pretrained_backbone(folders[layout], tiny_config)
    expected = encoder.state_dict()
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert_reload_is_exact(model, tmp_path / "finetuned", pixel_values)


@pytest.mark.parametrize("layout", ["vitmae_v4_pretraining", "vitmae_v4_model"])
def test_backbone_from_a_transformers_4_checkpoint(tmp_path, tiny_config, layout, pixel_values):
    folder = FIXTURES / layout
    assert any(
        k.endswith("attention.attention.query.weight") for k in safe_open(folder / "model.safetensors", "pt").keys()
    )
    model = QFaceModel.from_pretrained_backbone(folder, tiny_config).eval()
    reference = load_file(folder / "reference_outputs.safetensors")
    with torch.no_grad():
        encoded = model.encode(reference["pixel_values"])
    torch.testing.assert_close(encoded.last_hidden_state, reference["last_hidden_state"], atol=1e-5, rtol=1e-5)
    for i in range(5):
        torch.testing.assert_close(encoded.hidden_states[i], reference[f"hidden_states.{i}"], atol=1e-5, rtol=1e-5)
    # Key biases cancel in softmax, so check them against the file directly.
    legacy = load_file(folder / "model.safetensors")
    prefix = "vit." if "pretraining" in layout else ""
    for i in range(4):
        key = legacy[f"{prefix}encoder.layer.{i}.attention.attention.key.bias"]
        assert torch.equal(model.encoder.layers[i].attention.k_proj.bias, key)
    assert_reload_is_exact(model, tmp_path / "finetuned", pixel_values)


def test_backbone_defaults_to_the_checkpoint_geometry():
    model = QFaceModel.from_pretrained_backbone(FIXTURES / "vitmae_v4_model")
    assert model.config.backbone_config.hidden_size == 64 and model.config.backbone_config.mask_ratio == 0.0
    assert model.config.fusion_layers == [1, 3, 4]  # thirds of 4 blocks, as 4, 8, 12 are of 12
    assert model.config.task_names == ["expression", "au", "attributes", "age", "head_pose"]


def assert_reload_is_exact(model: QFaceModel, folder: Path, pixel_values: torch.Tensor):
    """The v5 reverse key conversion on save must not turn a backbone-initialised model into a random one."""
    model.eval()
    with torch.no_grad():
        reference = model(pixel_values)
    model.save_pretrained(folder)
    reloaded, info = QFaceModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        assert_same_outputs(reference, reloaded.eval()(pixel_values))


def test_backbone_loader_fails_loudly(tmp_path, tiny_config, mae_checkpoints):
    folders, _ = mae_checkpoints
    wrong = QFaceConfig(
        **{**tiny_config.to_dict(), "backbone_config": {**tiny_config.backbone_config.to_dict(), "hidden_size": 32}}
    )
    with pytest.raises((ValueError, RuntimeError), match=r"encoder weight\(s\) would stay random \(.*wrong shape: "):
        QFaceModel.from_pretrained_backbone(folders["v5_model"], wrong)

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text((folders["v5_model"] / "config.json").read_text())
    weights = load_file(folders["v5_model"] / "model.safetensors")
    dropped = [k for k in weights if "layers.1." in k and "fc1" in k]
    save_file(
        {k: v for k, v in weights.items() if k not in dropped}, damaged / "model.safetensors", metadata={"format": "pt"}
    )
    with pytest.raises(ValueError, match=r"2 encoder weight\(s\) would stay random .*missing: layers\.1\.mlp\.fc1"):
        QFaceModel.from_pretrained_backbone(damaged, tiny_config)


def test_no_nan_after_loading_from_a_checkpoint_without_the_decoder(tiny_config, mae_checkpoints, pixel_values):
    folders, _ = mae_checkpoints
    model, info = QFaceModel.from_pretrained(
        folders["v5_pretraining"], config=tiny_config, output_loading_info=True, allow_missing_weights=True
    )
    custom = {"label_queries.expression.weight", "fusion.stage_embeddings.weight", "heads.age.proj.weight"}
    assert custom <= set(info["missing_keys"])
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter).all(), name
    std = model.label_queries["attributes"].weight.std().item()
    assert 0.01 < std < 0.03  # initializer_range 0.02, not zeros or garbage
    with torch.no_grad():
        assert torch.isfinite(model.eval()(pixel_values).attributes_logits).all()


def test_encoder_positions_are_sincos_fresh_and_after_loading_without_encoder(tiny_config, mae_checkpoints):
    from modeling_qface.model.modeling_qface import sincos_position_embedding_2d

    # MAE's fixed positions: [sin_w | cos_w | sin_h | cos_h] per patch (row-major), zeros for CLS.
    expected = torch.cat([torch.zeros(1, 64), sincos_position_embedding_2d(4, 4, 64, "cpu", torch.float32)])
    fresh = QFaceModel(tiny_config)
    folders, _ = mae_checkpoints
    loaded = QFaceModel.from_pretrained(  # no encoder keys match
        folders["v5_pretraining"], config=tiny_config, allow_missing_weights=True
    )
    for model in (fresh, loaded):
        torch.testing.assert_close(model.encoder.embeddings.position_embeddings[0], expected)
        assert 0.01 < model.encoder.embeddings.cls_token.std().item() < 0.03
