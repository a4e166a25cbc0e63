"""Sharing through a real Hub client: `huggingface_hub` 2.4 talks HTTP to tests/hub_server.py on 127.0.0.1.

Pushes (`hub.push_to_hub`, `model.push_to_hub`, `qface push`, `QFaceTrainer` and `Trainer(push_to_hub=True,
hub_strategy="every_save")`)
go through `create_repo`, preupload and commit; the pushed model is then loaded by repo id (and by commit hash) in a
fresh Python process where the `modeling_qface` package cannot be imported, as anyone downloading it would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from modeling_qface import QFaceModel
from modeling_qface.cli import main as qface
from modeling_qface.hub import HubError, push_to_hub
from modeling_qface.model.image_processing_qface import build_image_processor
from tests.hub_server import HubServer

OUTPUT_FIELDS = ("expression_logits", "au_logits", "attributes_logits", "age", "head_pose")
EVALUATION = {  # the shape of `qface evaluate`'s JSON report
    "model": "runs/x/final",
    "head_pose_frame": "photo",
    "data": [
        {
            "name": "raf_db",
            "root": "/data/RAF-DB",
            "split": "test",
            "options": {},
            "label": "raf_db_test",
            "num_samples": 3068,
        }
    ],
    "metrics": {"raf_db_test": {"expression/accuracy": 0.8125, "expression/class_accuracy/happy": 0.9}},
    "aliases": {},
    "labelled": {"raf_db_test": {"expression": 3068}},
}


@pytest.fixture
def hub(monkeypatch):
    with HubServer() as server:
        server.patch(monkeypatch)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        yield server
    assert not server.unhandled, f"the client asked for endpoints the test server lacks: {server.unhandled}"


def face_image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def local_pipeline_faces(model) -> list:
    from transformers import pipeline

    pipe = pipeline("face-analysis", model=model, image_processor=build_image_processor(model.config))
    return pipe(face_image(), detect_faces=False)


def flat(value, prefix: str = "") -> dict:
    """A nested JSON value as `{"0.age.years": 52.1, ...}` (strings and None kept as they are)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}.{i}").items()} or {prefix: "[]"}
    return {prefix: value}


def run_fresh(script: str, hub: HubServer, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs `script` in a new interpreter that cannot import the package (as a user without it) and talks to `hub`."""
    blocked = textwrap.dedent(
        """
        import sys
        for name in ("modeling_qface", "configuration", "training", "tests"):
            sys.modules[name] = None
        """
    )
    work = tmp_path / "elsewhere"
    work.mkdir(exist_ok=True)
    env = {**os.environ, **hub.env(), "HF_HOME": str(tmp_path / "fresh-hf-home"), "HF_TOKEN": "hf_test_token"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", blocked + textwrap.dedent(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_push_then_load_by_repo_id_and_pinned_revision_without_the_package(hub, tmp_path, tiny_model, pixel_values):
    first = push_to_hub(tiny_model, "me/qface-tiny", evaluation=EVALUATION)
    with torch.no_grad():
        reference = tiny_model(pixel_values)
    faces = local_pipeline_faces(tiny_model)

    torch.manual_seed(7)
    second_model = QFaceModel(tiny_model.config).eval()
    second = push_to_hub(second_model, "me/qface-tiny", commit_message="second weights")
    with torch.no_grad():
        second_reference = second_model(pixel_values)
    assert first.oid != second.oid and str(second).endswith(second.oid)

    files = hub.files("me/qface-tiny")
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_qface.py",
        "configuration_qface.py",
        "pipeline_qface.py",
        "face_alignment_qface.py",
    } <= set(files)
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    card = files["README.md"].decode()
    assert "# qface-tiny" in card and "transformers' generic" not in card and "Limitations and bias" in card
    config = json.loads(files["config.json"])
    assert config["custom_pipelines"]["face-analysis"]["impl"] == "pipeline_qface.FaceAnalysisPipeline"
    # The first push's card carried the evaluation; the second push's has none, and says so.
    first_card = hub.files("me/qface-tiny", first.oid)["README.md"].decode()
    assert yaml.safe_load(first_card.split("---\n")[1])["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.8125
    assert "No evaluation results were recorded" in card

    save_file(
        {
            "pixel_values": pixel_values,
            **{f"first.{k}": reference[k] for k in OUTPUT_FIELDS},
            **{f"second.{k}": second_reference[k] for k in OUTPUT_FIELDS},
        },
        tmp_path / "io.safetensors",
    )
    result = run_fresh(
        f"""
        import json, numpy as np, torch
        from safetensors.torch import load_file
        from transformers import AutoModel, pipeline
        try:
            import modeling_qface
            raise SystemExit("the package must not be importable here")
        except ImportError:
            pass
        torch.set_num_threads({torch.get_num_threads()})  # as here: float sums in the same order, bit-equal results
        io = load_file({str(tmp_path / "io.safetensors")!r})
        latest = AutoModel.from_pretrained("me/qface-tiny", trust_remote_code=True).eval()
        pinned = AutoModel.from_pretrained("me/qface-tiny", trust_remote_code=True, revision={first.oid!r}).eval()
        assert type(pinned).__module__.startswith("transformers_modules"), type(pinned).__module__
        with torch.no_grad():
            for model, which in ((pinned, "first"), (latest, "second")):
                out = model(io["pixel_values"])
                for name in {OUTPUT_FIELDS!r}:
                    assert torch.equal(out[name], io[which + "." + name]), (which, name)
        pipe = pipeline(model="me/qface-tiny", trust_remote_code=True, revision={first.oid!r})
        image = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        faces = pipe(image, detect_faces=False)
        assert type(pipe).__name__ == "FaceAnalysisPipeline", type(pipe)
        json.dump(faces, open({str(tmp_path / "fresh_faces.json")!r}, "w"))
        print("FRESH-OK")
        """,
        hub,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "FRESH-OK" in result.stdout
    fresh = json.loads((tmp_path / "fresh_faces.json").read_text())
    # The model's outputs are bit-identical (checked there); the pipeline's answers only agree to float32 rounding
    # (the image processor loaded from preprocessor_config.json vs the one built from the config here).
    expected = json.loads(json.dumps(faces))
    got, want = flat(fresh), flat(expected)
    numbers = {k for k, v in want.items() if isinstance(v, float)}
    assert got.keys() == want.keys() and {k: got[k] for k in got.keys() - numbers} == {
        k: want[k] for k in numbers ^ want.keys()
    }
    assert {k: got[k] for k in numbers} == pytest.approx({k: want[k] for k in numbers}, rel=1e-6, abs=1e-6)


def test_qface_push_of_a_training_folder(hub, tmp_path, tiny_model, capsys):
    folder = tmp_path / "final"
    tiny_model.save_pretrained(folder)
    (folder / "recipe.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"preset": "qface-tiny", "backbone": "me/mae-faces"},
                "data": {"train": [{"name": "celeba", "split": "train"}]},
            }
        )
    )
    report = tmp_path / "report.json"
    report.write_text(json.dumps(EVALUATION))
    assert qface(["push", str(folder), "me/from-cli", "--evaluation", str(report), "--private"]) == 0
    assert "pushed" in capsys.readouterr().out and hub.repos["me/from-cli"].private
    files = hub.files("me/from-cli")
    meta = yaml.safe_load(files["README.md"].decode().split("---\n")[1])
    assert meta["base_model"] == "me/mae-faces" and meta["datasets"] == ["CelebA"]
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.8125
    assert {"recipe.yaml", "eval_results.json", "pipeline_qface.py"} <= set(files)


def test_trainer_every_save_pushes_the_export(hub, tmp_path, tiny_model, pixel_values):
    from transformers import Trainer, TrainingArguments

    from modeling_qface.hub import QFaceHubCallback
    from tests.conftest import partial_labels

    labels = partial_labels(4)
    rows = [{"pixel_values": pixel_values[i], **{k: v[i] for k, v in labels.items()}} for i in range(4)]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        save_steps=1,
        save_strategy="steps",
        per_device_train_batch_size=2,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        push_to_hub=True,
        hub_model_id="me/qface-trainer",
        hub_strategy="every_save",
        hub_token="hf_test_token",
        label_names=list(labels),
    )
    trainer = Trainer(
        model=tiny_model.train(),
        args=args,
        train_dataset=rows,
        processing_class=build_image_processor(tiny_model.config),
        callbacks=[QFaceHubCallback()],
    )
    trainer.train()
    trainer._finish_current_push()
    commits = hub.repos["me/qface-trainer"].commits
    assert len(commits) >= 2  # the initial commit and at least one checkpoint push
    files = hub.files("me/qface-trainer")
    assert {"pipeline_qface.py", "modeling_qface.py", "preprocessor_config.json", "model.safetensors"} <= set(files)
    assert "custom_pipelines" in json.loads(files["config.json"])
    card = files["README.md"].decode()
    assert "# qface-trainer" in card and "library_name: transformers" in card and "generated_from_trainer" not in card


def test_qface_trainer_pushes_the_export_its_card_and_no_pickle(hub, tmp_path, tiny_model, pixel_values):
    from transformers import TrainingArguments

    from modeling_qface.model.model_loading_qface import load_qface_model
    from modeling_qface.training.qface_trainer import QFaceTrainer
    from tests.conftest import partial_labels

    labels = partial_labels(4)
    rows = [{"pixel_values": pixel_values[i], **{k: v[i] for k, v in labels.items()}} for i in range(4)]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        save_steps=1,
        save_strategy="steps",
        eval_strategy="steps",
        eval_steps=2,
        per_device_train_batch_size=2,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        push_to_hub=True,
        hub_model_id="me/qface-run",
        hub_strategy="every_save",
        hub_token="hf_test_token",
    )
    # No label_names, no compute_metrics, no callback: QFaceTrainer fills in the first two and needs no third.
    trainer = QFaceTrainer(
        model=tiny_model.train(),
        args=args,
        train_dataset=rows,
        eval_dataset=rows,
        processing_class=build_image_processor(tiny_model.config),
    )
    assert args.label_names == ["expression_labels", "au_labels", "attributes_labels", "age_labels", "head_pose_labels"]
    trainer.train()
    trainer.push_to_hub()  # blocking: waits for the checkpoint pushes too

    repo = hub.repos["me/qface-run"]
    messages = [commit.message for commit in repo.commits]
    # Step 2's push is skipped while step 1's is still uploading (Trainer pushes one at a time); the final push then
    # commits that export, or finds it unchanged (same weights, same card) and the Hub skips an empty commit.
    assert "Training in progress, step 1" in messages
    assert messages[-1] in ("Training in progress, step 2", "End of training")
    for commit in repo.commits:  # no pickle was ever pushed, at any step
        assert not [p for p in commit.files if p.endswith((".bin", ".pt", ".pth", ".pkl"))], commit.message
    at_step_1 = next(c for c in repo.commits if c.message == "Training in progress, step 1").files
    assert {"pipeline_qface.py", "modeling_qface.py", "preprocessor_config.json", "README.md"} <= set(at_step_1)
    assert "custom_pipelines" in json.loads(at_step_1["config.json"])

    files = hub.files("me/qface-run")
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for name, data in files.items():
        (pulled / name).write_bytes(data)
    weights = load_qface_model(pulled).state_dict()  # the saved names are ViTMAE's checkpoint names: load them
    for name, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=0, msg=name)
    arguments = json.loads(files["training_args.json"])
    assert arguments["max_steps"] == 2 and arguments["hub_token"] == "<HUB_TOKEN>"  # redacted, not the token
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and "qface" in meta["tags"] and "generated_from_trainer" not in card
    assert "# qface-run" in card
    accuracy = trainer.state.log_history[-2]["eval_expression/accuracy"]  # the evaluation at step 2, on the card
    assert f"| expression/accuracy | {accuracy:.4f} |" in card
    checkpoint = Path(args.output_dir, "checkpoint-2")
    assert (checkpoint / "training_args.json").is_file() and not (checkpoint / "training_args.bin").exists()


def test_hub_errors_are_one_message_naming_the_repo(hub, tmp_path, tiny_model, monkeypatch, capsys):
    hub.forbidden_namespaces.add("acme")
    with pytest.raises(HubError, match=r"^acme/qface: no permission to write .*HTTP 403") as raised:
        push_to_hub(tiny_model, "acme/qface")
    assert raised.value.__suppress_context__ and raised.value.original is not None

    hub.hidden_namespaces.add("someone")
    with pytest.raises(HubError, match=r"^someone/private: no such repository on the Hub"):
        push_to_hub(tiny_model, "someone/private")

    with pytest.raises(HubError, match=r"^me/qface: revision 'nope' does not exist on the Hub"):
        push_to_hub(tiny_model, "me/qface", revision="nope")

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    assert qface(["push", str(folder), "me/qface", "--revision", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars of the export
    assert err.startswith("qface push: error: me/qface: revision 'nope' does not exist")

    with HubServer() as closed:  # a port nobody listens on any more: the network is down
        down = closed.url
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", down)
    with pytest.raises(HubError, match=rf"^cannot reach the Hub at {down} to push me/qface: "):
        push_to_hub(tiny_model, "me/qface")
