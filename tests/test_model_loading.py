# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Loading saved Q-Face weights: safetensors only, every weight matching the config, one clear line otherwise.

Every loader of the package and its training code (`qface analyze`, `qface serve`, `qface evaluate`, `qface train`'s
`init_from`, the demo-model builder) goes through `modeling_qface.model.model_loading_qface.load_qface_model`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeling_qface import QFaceConfig, QFaceModel
from modeling_qface.model.model_loading_qface import ModelLoadError, load_qface_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def saved(tmp_path, tiny_model) -> Path:
    folder = tmp_path / "saved"
    tiny_model.save_pretrained(folder)
    return folder


def rewrite_weights(folder: Path, change) -> None:
    """Applies `change(state_dict)` to the folder's model.safetensors."""
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


class Exploit:
    """Unpickling this creates `marker`: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickle_only_folder(folder: Path, tiny_model, exploit: bool = False) -> Path:
    """A model folder whose only weights are a pickle `pytorch_model.bin` (the model's own weights, which
    transformers would load, or with `exploit` an object that runs code when unpickled); the exploit's marker."""
    tiny_model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    marker = folder.parent / "pickle-was-loaded"
    state = {**tiny_model.state_dict(), **({"exploit": Exploit(marker)} if exploit else {})}
    torch.save(state, folder / "pytorch_model.bin")
    return marker


# ------------------------------------------------------------------------------------------------ the loader


def test_a_saved_model_loads_with_every_weight(saved, tiny_model):
    model = load_qface_model(saved)
    assert isinstance(model, QFaceModel) and Path(model.name_or_path) == saved
    reference = tiny_model.state_dict()
    assert model.state_dict().keys() == reference.keys()  # the fixed sin-cos positions included
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


def test_sharded_safetensors_load_and_a_missing_shard_is_named(tmp_path, tiny_model):
    folder = tmp_path / "sharded"
    tiny_model.save_pretrained(folder, max_shard_size="200KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    model = load_qface_model(folder)
    assert torch.equal(model.heads.age.proj.weight, tiny_model.heads.age.proj.weight)
    shards[-1].unlink()
    with pytest.raises(ModelLoadError, match=rf"names missing shards: {shards[-1].name}$"):
        load_qface_model(folder)


def test_a_pickle_is_never_loaded(tmp_path, tiny_model):
    folder = tmp_path / "pickled"
    marker = pickle_only_folder(folder, tiny_model, exploit=True)
    with pytest.raises(ModelLoadError) as refused:
        load_qface_model(folder)
    assert str(refused.value) == (
        f"model folder {folder}: no model.safetensors; pytorch_model.bin is a pickle file, "
        "never loaded (unpickling can run code): save the model as safetensors"
    )
    with pytest.raises(ModelLoadError, match=r"pytorch_model.bin: a pickle file, never loaded"):
        load_qface_model(folder / "pytorch_model.bin")
    assert not marker.exists()


def test_missing_unexpected_and_misshapen_weights_are_named(saved):
    def change(state):
        del state["heads.age.proj.bias"], state["heads.head_pose.proj.bias"]
        state["heads.gaze.proj.weight"] = torch.zeros(2, 2)
        state["heads.age.proj.weight"] = torch.zeros(3, 3)

    rewrite_weights(saved, change)
    with pytest.raises(ModelLoadError) as refused:
        load_qface_model(saved)
    expected_shape = list(QFaceModel(QFaceConfig.from_pretrained(saved)).heads.age.proj.weight.shape)
    assert str(refused.value) == (
        f"model folder {saved}: missing weights: heads.age.proj.bias, heads.head_pose.proj.bias; "
        "unexpected weights: heads.gaze.proj.weight; "
        f"wrong shapes: heads.age.proj.weight [3, 3] in the checkpoint, {expected_shape} in the model "
        "(the checkpoint does not match its config.json)"
    )


def test_not_strict_keeps_a_partial_checkpoint_and_says_so(saved, caplog):
    rewrite_weights(saved, lambda state: state.pop("heads.age.proj.bias"))
    model = load_qface_model(saved, strict=False)
    assert isinstance(model, QFaceModel)
    assert "missing weights: heads.age.proj.bias" in caplog.text


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda data: data[: len(data) // 2], "incomplete metadata"),  # a download cut in half
        (lambda data: data[:-1], "incomplete metadata"),
        (lambda data: b"\xff" * 64 + data[64:], "header too large"),  # garbage bytes
        (lambda data: b"", "header too small"),
    ],
)
def test_a_corrupt_weights_file_is_one_line_naming_it(saved, damage, problem):
    weights = saved / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelLoadError) as refused:
        load_qface_model(saved)
    message = str(refused.value)
    assert message.startswith(f"model folder {saved}: model.safetensors is corrupt or truncated (")
    assert problem in message and "\n" not in message


@pytest.mark.parametrize(
    "content, problem",
    [
        (lambda text: text[: len(text) // 2], "config.json is not valid JSON ("),  # where it is cut decides the rest
        (lambda text: "[1, 2]", "config.json is not a JSON object"),
        (lambda text: json.dumps({**json.loads(text), "d_model": "wide"}), "config.json is not a valid Q-Face config"),
    ],
)
def test_a_corrupt_config_is_one_line_naming_it(saved, content, problem):
    config = saved / "config.json"
    config.write_text(content(config.read_text()))
    with pytest.raises(ModelLoadError) as refused:
        load_qface_model(saved)
    assert str(refused.value).startswith(f"model folder {saved}: {problem}") and "\n" not in str(refused.value)


def test_what_is_not_a_model_folder(tmp_path, saved):
    with pytest.raises(ModelLoadError, match=rf"^model folder {tmp_path / 'nowhere'}: not found$"):
        load_qface_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"empty: no config.json \(expected a Q-Face model saved"):
        load_qface_model(tmp_path / "empty")
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"saved: no model.safetensors \(expected a Q-Face model saved"):
        load_qface_model(saved)
    assert issubclass(ModelLoadError, ValueError)  # the CLIs' argument errors: exit 2


# ------------------------------------------------------------------------------------ every loader uses it


def loaders():
    """(name, function of a model folder) for every place that loads saved Q-Face weights."""
    from modeling_qface.analysis import analyze
    from modeling_qface.training import demo_model, evaluation, finetune
    from modeling_qface.training.recipe import ModelSection
    from modeling_qface.webdemo import serve

    return {
        "qface serve": lambda folder: serve.load_model(str(folder)),
        "qface analyze": lambda folder: analyze.load_pipeline(str(folder), device="cpu"),
        "qface evaluate": lambda folder: evaluation.evaluate_model(folder, sources=[], device="cpu"),
        "qface train init_from": lambda folder: finetune.build_model(
            SimpleNamespace(model=ModelSection(init_from=str(folder)))
        ),
        "demo model evaluate": lambda folder: demo_model.evaluate(folder, folder / "no-faces"),
        "demo model export": lambda folder: demo_model.export(folder, folder.parent / "export", report={}),
    }


@pytest.mark.parametrize(
    "loader",
    [
        "qface serve",
        "qface analyze",
        "qface evaluate",
        "qface train init_from",
        "demo model evaluate",
        "demo model export",
    ],
)
def test_every_loader_refuses_a_pickle_and_a_partial_checkpoint(loader, tmp_path, tiny_model):
    load = loaders()[loader]
    pickled = tmp_path / "pickled"
    pickle_only_folder(pickled, tiny_model)  # valid weights: transformers alone would load them
    with pytest.raises(ModelLoadError, match=r"pytorch_model.bin is a pickle file, never loaded"):
        load(pickled)

    partial = tmp_path / "partial"  # transformers alone would initialise the missing query at random
    tiny_model.save_pretrained(partial)
    rewrite_weights(partial, lambda state: state.pop("label_queries.age.weight"))
    with pytest.raises(ModelLoadError, match=r"missing weights: .*\(the checkpoint does not match its config.json\)"):
        load(partial)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["analyze", "serve"])
def test_cli_prints_one_error_line_and_exits_2(command, saved, tmp_path):
    rewrite_weights(saved, lambda state: state.pop("heads.age.proj.bias"))
    with socket.socket() as probe:  # a free port (a busy one is refused before the model loads)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = {
        "analyze": [str(tmp_path), "--output", str(tmp_path / "out.jsonl"), "--model", str(saved)],
        "serve": ["--model", str(saved), "--port", str(port)],
    }[command]
    # A server that loaded the partial model anyway would serve until the timeout fails the test.
    result = subprocess.run(
        [sys.executable, "-m", "modeling_qface.cli", command, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    expected = (
        f"qface {command}: error: model folder {saved}: missing weights: heads.age.proj.bias "
        "(the checkpoint does not match its config.json)"
    )
    assert expected in result.stderr.splitlines()


# ------------------------------------------------------------------------ every loading path refuses a partial checkpoint
def test_from_pretrained_auto_model_and_the_pipeline_refuse_a_partial_checkpoint(saved):
    from transformers import AutoModel, pipeline

    from modeling_qface.model.modeling_qface import CheckpointError

    rewrite_weights(saved, lambda state: state.pop("heads.age.proj.bias"))
    message = (
        rf"^{saved}: the checkpoint lacks 1 of the model's tensors \(heads\.age\.proj\.bias\); they would start at"
    )
    for load in (
        lambda: QFaceModel.from_pretrained(saved),
        lambda: AutoModel.from_pretrained(saved),
        lambda: AutoModel.from_pretrained(saved, trust_remote_code=True),  # the folder's own code (remote code)
        lambda: pipeline("face-analysis", model=str(saved)),
    ):
        with pytest.raises(CheckpointError, match=message):
            load()
    # Asked for: the tensor starts from its initialisation, and the report says so.
    model, info = QFaceModel.from_pretrained(saved, output_loading_info=True)
    assert info["missing_keys"] == {"heads.age.proj.bias"} or list(info["missing_keys"]) == ["heads.age.proj.bias"]
    assert torch.isfinite(QFaceModel.from_pretrained(saved, allow_missing_weights=True).heads.age.proj.bias).all()


def test_from_pretrained_names_a_corrupt_weights_file(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    from transformers import pipeline

    from modeling_qface.model.modeling_qface import CheckpointError

    for load in (lambda: QFaceModel.from_pretrained(saved), lambda: pipeline("face-analysis", model=str(saved))):
        with pytest.raises(CheckpointError, match=rf"^{saved}: its safetensors weights are corrupt or truncated"):
            load()


def test_an_export_runs_as_a_pipeline_with_the_installed_code_and_no_remote_code(tmp_path, tiny_model):
    from transformers import AutoConfig, pipeline

    from modeling_qface.hub.export import export_model
    from modeling_qface.model.pipeline_qface import FaceAnalysisPipeline
    from modeling_qface.registry import DEFAULT_MODEL_DIR

    folder = tmp_path / "export"
    export_model(tiny_model, folder)
    saved = json.loads((folder / "config.json").read_text())
    assert set(saved["custom_pipelines"]) == {"face-analysis"}  # still there for processes without the package
    # This process registers face-analysis: the loaded config leaves the entry out, so no trust_remote_code.
    assert not hasattr(AutoConfig.from_pretrained(folder), "custom_pipelines")
    for model in (folder, DEFAULT_MODEL_DIR):
        pipe = pipeline("face-analysis", model=str(model))
        assert type(pipe) is FaceAnalysisPipeline and type(pipe.model) is QFaceModel
    # A config naming another task keeps that entry (only the tasks this process runs itself are left out).
    other = {**saved["custom_pipelines"], "other-task": {"impl": "x.Y", "pt": ["AutoModel"], "type": "image"}}
    config = QFaceConfig(custom_pipelines=other)
    assert set(config.custom_pipelines) == {"other-task"}
