# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface export onnx` and the ONNX backend of the face-analysis pipeline; `--dtype` of the torch backend.

The graph is exported once per module, from the tiny preset with random weights and two added tasks (10-15 s on 2
CPU cores: TorchDynamo captures it, see `export_onnx.capture_graph`), and compared with the torch model on real face
crops (the sample photos, the detector and `FaceCrop`); the pipeline's JSON on both backends is compared number by
number.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from transformers import pipeline

from modeling_qface import QFaceModel, QFaceOutput, load_preset
from modeling_qface.analysis.analyze import load_pipeline
from modeling_qface.analysis.analyze import main as analyze_main
from modeling_qface.cli import main as cli_main
from modeling_qface.model.configuration_qface import QFaceConfig
from modeling_qface.model.face_alignment_qface import FaceCrop, locate_faces
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.model.model_loading_qface import ModelLoadError
from modeling_qface.model.onnx_qface import QFaceOnnxModel, onnx_output_names
from modeling_qface.onnx_export.export import OnnxExportError, export_onnx_graph
from modeling_qface.registry import register_face_analysis_pipeline

DEFAULT_FIELDS = ["expression_logits", "au_logits", "attributes_logits", "age_distribution", "age", "head_pose"]
OUTPUT_NAMES = [*DEFAULT_FIELDS, "glasses_logits", "tilt"]  # the tasks added in `torch_folder`
# Largest |onnxruntime - torch| allowed for every output; years and degrees (up to ~100 for a random model) may also
# differ by float32 rounding relative to their size.
ATOL, RTOL = 1e-4, 1e-6


@pytest.fixture(scope="module")
def torch_folder(tmp_path_factory):
    """The tiny preset (random weights) with two added tasks, whose outputs go under their own names."""
    from modeling_qface.hub import export_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("qface") / "qface-tiny"
    model = QFaceModel(load_preset("qface-tiny"))
    model.add_task("glasses", "multilabel", ["eyeglasses", "sunglasses"])
    model.add_task("tilt", "regression", ["degrees"], scale=30.0)
    export_model(model, folder)  # as training's final/ is written: with the pipeline's code and entry
    return folder


@pytest.fixture(scope="module")
def export(torch_folder, tmp_path_factory):
    """`qface export onnx` of the tiny model through the CLI dispatcher, and what it printed."""
    folder = tmp_path_factory.mktemp("onnx") / "qface-tiny-onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli_main(["export", "onnx", str(torch_folder), str(folder)])
    assert status == 0
    return folder, printed.getvalue()


@pytest.fixture(scope="module")
def torch_model(torch_folder):
    from modeling_qface.model.model_loading_qface import load_qface_model

    return load_qface_model(torch_folder).eval()


@pytest.fixture(scope="module")
def real_crops(sample_photos, torch_model):
    """Every face of two group photos (11 faces), aligned by the detector's landmarks: `(11, 3, 32, 32)`."""
    crop = FaceCrop.from_config(torch_model.config)
    crops = []
    for name in ("t1.jpg", "multi_face.jpg"):
        rgb = np.asarray(Image.open(sample_photos[name]).convert("RGB"))
        crops += [crop(rgb, face.landmarks).crop for face in locate_faces(rgb, refine=False)]
    assert len(crops) == 11
    processor = build_image_processor(torch_model.config)
    return processor(images=[Image.fromarray(c) for c in crops], return_tensors="pt")["pixel_values"]


def assert_close_outputs(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    assert list(got) == list(expected)
    worst = 0.0
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        difference = (got[name] - value).abs()
        assert (difference <= ATOL + RTOL * value.abs()).all(), (name, difference.max().item())
        worst = max(worst, difference.max().item())
    return worst


def flatten(value, prefix="") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


# ------------------------------------------------------------------------------------------------------ export


def test_export_folder_is_laid_out_as_optimum_exports(export, torch_folder):
    folder, printed = export
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.onnx",
        "preprocessor_config.json",
    ]
    assert "checked with onnxruntime at batch sizes [1, 3]" in printed
    config = json.loads((folder / "config.json").read_text())
    original = json.loads((torch_folder / "config.json").read_text())
    # No pointer to Python code that is not there; everything else is the model's config.
    assert "auto_map" in original and "custom_pipelines" in original
    assert "auto_map" not in config and "custom_pipelines" not in config
    assert config == {k: v for k, v in original.items() if k not in ("auto_map", "custom_pipelines")}
    assert QFaceConfig.from_pretrained(folder).tasks == QFaceConfig.from_pretrained(torch_folder).tasks
    assert json.loads((folder / "preprocessor_config.json").read_text()) == json.loads(
        (torch_folder / "preprocessor_config.json").read_text()
    )
    card = (folder / "README.md").read_text()
    assert card.startswith((torch_folder / "README.md").read_text().rstrip("\n"))
    assert "## ONNX export" in card and "`(batch, 3, 32, 32)`" in card


def test_graph_has_a_dynamic_batch_axis_and_the_qface_output_names(export):
    folder, _ = export
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (inputs,) = session.get_inputs()
    assert inputs.name == "pixel_values" and inputs.type == "tensor(float)"
    assert isinstance(inputs.shape[0], str) and inputs.shape[1:] == [3, 32, 32]
    outputs = session.get_outputs()
    assert [o.name for o in outputs] == OUTPUT_NAMES == onnx_output_names(QFaceConfig.from_pretrained(folder))
    assert all(name in QFaceOutput.__dataclass_fields__ for name in DEFAULT_FIELDS)
    assert QFaceOnnxModel.from_pretrained(folder)(pixel_values=torch.zeros(1, 3, 32, 32)).extra_task_outputs.keys() == {
        "glasses_logits",
        "tilt",
    }
    assert all(isinstance(o.shape[0], str) for o in outputs)


@pytest.mark.parametrize("batch", [1, 4, 11])
def test_onnxruntime_matches_torch_on_real_face_crops(export, torch_model, real_crops, batch):
    folder, _ = export
    # onnxruntime alone, as a deployment runs it.
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    pixel_values = real_crops[:batch]
    got = dict(zip(OUTPUT_NAMES, map(torch.from_numpy, session.run(None, {"pixel_values": pixel_values.numpy()}))))
    with torch.no_grad():
        out = torch_model(pixel_values)
    worst = assert_close_outputs(got, {name: out.field(name) for name in OUTPUT_NAMES})
    assert worst > 0.0  # two different runtimes: equal bits everywhere would mean torch was compared with itself


def test_what_cannot_be_exported_is_refused_with_the_reason(tmp_path, torch_folder, export, capsys, monkeypatch):
    # A folder that is not a Q-Face model: one line naming it, exit status 2.
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37).save_pretrained(
        tmp_path / "vit"
    )
    assert cli_main(["export", "onnx", str(tmp_path / "vit"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("qface export: error:") and str(tmp_path / "vit") in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
    # An export already there is not replaced unless asked.
    folder, _ = export
    assert cli_main(["export", "onnx", str(torch_folder), str(folder)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # An output folder that cannot be made is refused before the model loads (one line naming it).
    (tmp_path / "a-file").write_text("")
    with monkeypatch.context() as patched:
        patched.setattr("modeling_qface.model.model_loading_qface.load_qface_model", lambda *a, **k: 1 / 0)
        assert cli_main(["export", "onnx", str(torch_folder), str(tmp_path / "a-file" / "onnx")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"qface export: error: OUTPUT {tmp_path / 'a-file' / 'onnx'}: not a folder (its parent {tmp_path / 'a-file'} "
        "is a file)"
    ]

    # A disk that fills while the graph is written: one line naming OUTPUT, no half folder left.
    def full_disk(model, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patched:
        patched.setattr("modeling_qface.onnx_export.export.export_onnx_graph", full_disk)
        assert cli_main(["export", "onnx", str(torch_folder), str(tmp_path / "full")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"qface export: error: cannot write the ONNX export {tmp_path / 'full'}: No space left on device"
    )
    assert not (tmp_path / "full").exists() and not list(tmp_path.glob(".qface-onnx-*"))
    # Attention maps and hidden states are not in the graph.
    for flag in ("output_attentions", "output_hidden_states"):
        model = QFaceModel(load_preset("qface-tiny", **{flag: True}))
        with pytest.raises(OnnxExportError, match=f"config.{flag} is True.*task outputs only"):
            export_onnx_graph(model, tmp_path / "model.onnx")
    assert cli_main(["export", "onnx", str(folder), str(tmp_path / "again")]) == 2
    assert "an ONNX export already; export from the torch model's folder" in capsys.readouterr().err
    with monkeypatch.context() as patch:  # the exporter packages are an extra; onnxruntime alone runs the graph
        patch.setitem(sys.modules, "onnxscript", None)
        with pytest.raises(OnnxExportError, match=r"needs the onnx extra.*pip install 'qface\[onnx\]'"):
            export_onnx_graph(QFaceModel(load_preset("qface-tiny")), tmp_path / "model.onnx")
    with pytest.raises(OnnxExportError, match="in torch.bfloat16; export it in float32"):
        export_onnx_graph(QFaceModel(load_preset("qface-tiny")).to(torch.bfloat16), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_onnx_model_refuses_what_the_graph_does_not_have(export, tmp_path):
    folder, _ = export
    model = QFaceOnnxModel.from_pretrained(folder)
    pixel_values = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match="output_attentions: an ONNX export has the task outputs only"):
        model(pixel_values=pixel_values, output_attentions=True)
    with pytest.raises(ValueError, match="output_hidden_states: an ONNX export"):
        model(pixel_values=pixel_values, output_hidden_states=True)
    with pytest.raises(ValueError, match=r"expected shape \(batch, 3, 32, 32\), got \(2, 3, 48, 48\)"):
        model(pixel_values=torch.zeros(2, 3, 48, 48))
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['gaze'\]"):
        model(pixel_values=pixel_values, tasks=["gaze"])
    only = model(pixel_values=pixel_values, tasks=["age"])
    assert only.age.shape == (2,) and only.expression_logits is None and only.head_pose is None
    with pytest.raises(ModelLoadError, match="no model.onnx"):
        QFaceOnnxModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="runs in float32 only"):
        QFaceOnnxModel.from_pretrained(folder, dtype=torch.bfloat16)
    # A config whose tasks the graph does not have (a graph exported from another model).
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    (mismatched / "model.onnx").write_bytes((folder / "model.onnx").read_bytes())
    config = load_preset("qface-tiny")
    config.tasks = [*config.tasks, {**config.get_task("head_pose"), "name": "gaze", "query_group": 1}]
    config.to_json_file(str(mismatched / "config.json"))
    with pytest.raises(ModelLoadError, match=r"no output\(s\) \['gaze'\]"):
        QFaceOnnxModel.from_pretrained(mismatched)
    (mismatched / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match="model.onnx could not be loaded by onnxruntime"):
        QFaceOnnxModel.from_pretrained(mismatched)


# ---------------------------------------------------------------------------------------------------- pipeline


def test_pipeline_gives_the_same_faces_on_both_backends(export, torch_folder, sample_photos):
    folder, _ = export
    register_face_analysis_pipeline()
    photos = [str(sample_photos[name]) for name in ("t1.jpg", "multi_face.jpg")]
    on_torch = load_pipeline(str(torch_folder), "cpu")(photos)
    onnx_pipe = pipeline("face-analysis", model=str(folder))  # a folder with model.onnx loads the ONNX backend
    assert isinstance(onnx_pipe.model, QFaceOnnxModel) and onnx_pipe.device.type == "cpu"
    on_onnx = onnx_pipe(photos)
    assert [len(faces) for faces in on_onnx] == [len(faces) for faces in on_torch] == [6, 5]
    worst = 0.0
    for faces_torch, faces_onnx in zip(on_torch, on_onnx):
        for face_torch, face_onnx in zip(faces_torch, faces_onnx):
            flat_torch, flat_onnx = flatten(face_torch), flatten(face_onnx)
            assert flat_torch.keys() == flat_onnx.keys()
            assert face_torch["expression"]["label"] == face_onnx["expression"]["label"]
            assert face_torch["au_active"] == face_onnx["au_active"]
            for key, value in flat_torch.items():
                if isinstance(value, float) and not key.startswith(("box", "landmarks", "score")):
                    assert math.isclose(flat_onnx[key], value, rel_tol=1e-5, abs_tol=ATOL), key
                    worst = max(worst, abs(flat_onnx[key] - value))
                else:  # detection is the same code on both backends
                    assert flat_onnx[key] == value, key
    assert worst > 0.0
    # Tasks subsets, and a clear error for attention maps.
    age_only = onnx_pipe(photos[1], tasks=["age"])
    assert [set(face) for face in age_only] == [{"box", "score", "landmarks", "age"}] * 5
    with pytest.raises(ValueError, match="output_attentions: the ONNX export has the task outputs only"):
        onnx_pipe(photos[1], output_attentions=True)


def test_analyze_cli_runs_an_onnx_export(export, torch_folder, sample_photos, tmp_path, capsys):
    folder, _ = export
    photo = str(sample_photos["multi_face.jpg"])
    for name, model in (("torch", torch_folder), ("onnx", folder)):
        assert (
            analyze_main([photo, "--model", str(model), "--output", str(tmp_path / f"{name}.jsonl"), "--no-progress"])
            == 0
        )
    on_torch, on_onnx = (json.loads((tmp_path / f"{name}.jsonl").read_text()) for name in ("torch", "onnx"))
    assert len(on_onnx["faces"]) == len(on_torch["faces"]) == 5
    for face_torch, face_onnx in zip(on_torch["faces"], on_onnx["faces"]):
        assert face_onnx["expression"]["label"] == face_torch["expression"]["label"]
        np.testing.assert_allclose(face_onnx["age"]["years"], face_torch["age"]["years"], rtol=1e-5)
    assert isinstance(load_pipeline(str(folder)).model, QFaceOnnxModel)
    capsys.readouterr()
    # What the ONNX backend cannot do is refused before any image is read: one line, exit status 2.
    for option, message in (
        (["--dtype", "bfloat16"], "--dtype bfloat16: an ONNX export"),
        (["--attention-dir", str(tmp_path / "att")], "output_attentions: the ONNX export"),
    ):
        assert analyze_main([photo, "--model", str(folder), "--output", str(tmp_path / "x.jsonl"), *option]) == 2
        error = capsys.readouterr().err
        assert error.startswith("qface analyze: error:") and message in error, error


# ------------------------------------------------------------------------------------------------------- dtype


def test_bfloat16_pipeline_runs_and_stays_close_to_float32(torch_folder, sample_photos, monkeypatch, caplog):
    from modeling_qface.model import pipeline_qface

    photo = str(sample_photos["multi_face.jpg"])
    float32 = load_pipeline(str(torch_folder), "cpu")
    monkeypatch.setattr(pipeline_qface, "cpu_supports_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="modeling_qface.model.pipeline_qface"):
        bfloat16 = load_pipeline(str(torch_folder), "cpu", dtype="bfloat16")
    assert "bfloat16 on a CPU without AVX512-BF16 or AMX" in caplog.text  # warned, and still runs
    assert bfloat16.model.dtype == torch.bfloat16 and float32.model.dtype == torch.float32
    faces_32, faces_16 = float32(photo), bfloat16(photo)
    assert len(faces_16) == len(faces_32) == 5
    worst = 0.0
    for face_32, face_16 in zip(faces_32, faces_16):
        for key, value in flatten(face_32).items():
            if isinstance(value, float) and key.startswith(("expression.scores", "au.", "attributes.")):
                worst = max(worst, abs(flatten(face_16)[key] - value))
    assert 0.0 < worst < 0.05  # bf16 keeps 8 bits of mantissa: close, never equal
    with pytest.raises(ValueError, match=r"--dtype: expected one of \['float32', 'bfloat16'\], got 'float16'"):
        load_pipeline(str(torch_folder), "cpu", dtype="float16")


def test_cpu_supports_bf16_reads_the_cpu_flags(tmp_path):
    from modeling_qface.model.pipeline_qface import cpu_supports_bf16

    flags = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n"
    for text, expected in (
        (flags, True),
        (flags.replace("avx512_bf16", "avx512bw"), False),
        ("flags : fpu amx_bf16 amx_tile\n", True),
    ):
        (tmp_path / "cpuinfo").write_text(text)
        assert cpu_supports_bf16(str(tmp_path / "cpuinfo")) is expected


# ------------------------------------------------------------------------------------------- serve and demo


def test_web_demo_serves_an_onnx_export_without_attention_figures(export, sample_photos):
    from modeling_qface.webdemo.serve import FaceAnalysisDemo, build_face_pipeline, load_model

    folder, _ = export
    loaded = load_model(str(folder))
    assert isinstance(loaded.model, QFaceOnnxModel) and loaded.trained
    app = FaceAnalysisDemo(build_face_pipeline(loaded.model))
    annotated, table, status, selector, state, csv_button, attention, stages = app.analyze(
        str(sample_photos["multi_face.jpg"])
    )
    assert status == "Found **5** faces." and len(state) == 5 and annotated is not None
    assert "attention" not in state[0] and (attention, stages) == (None, None)  # the figures are left empty


def test_demo_command_runs_an_onnx_export_and_writes_its_report(export, sample_photos, tmp_path, capsys):
    from modeling_qface.samples.demo import main as demo_main

    folder, _ = export
    out = tmp_path / "demo"
    photo = str(sample_photos["multi_face.jpg"])
    assert demo_main(["--model", str(folder), "--output-dir", str(out), "--threads", "1", photo]) == 0
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert len(record["faces"]) == 5 and "expression" in record["faces"][0]
    assert (out / "index.html").is_file() and not (out / "attention").exists()
    assert (out / "rendered").is_dir() and any((out / "rendered").iterdir())


def test_serve_and_demo_take_the_dtype(export, torch_folder, sample_photos, tmp_path, capsys):
    from modeling_qface.samples.demo import main as demo_main
    from modeling_qface.webdemo.serve import main as serve_main

    folder, _ = export
    assert serve_main(["--model", str(folder), "--dtype", "bfloat16"]) == 2  # refused before the server starts
    assert "the ONNX graph runs in float32" in capsys.readouterr().err
    out = tmp_path / "demo-bf16"
    photo = str(sample_photos["multi_face.jpg"])
    assert demo_main(["--model", str(torch_folder), "--output-dir", str(out), "--dtype", "bfloat16", photo]) == 0
    faces = json.loads((out / "results.jsonl").read_text().splitlines()[0])["faces"]
    assert len(faces) == 5 and abs(sum(faces[0]["expression"]["scores"].values()) - 1) < 1e-3
