# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface analyze` (files, folders, globs -> JSONL / CSV, renders, figures, failures) and the DataFrame helper."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import pipeline

from modeling_qface import ATTRIBUTE_NAMES, QFaceModel, load_preset
from modeling_qface.analyze import build_parser, collect_inputs, main
from modeling_qface.dataframe import EMOTION_COLUMNS, au_column, dataframe_columns, results_to_dataframe
from modeling_qface.pipeline_qface import register_face_analysis_pipeline

AU_COLUMNS = ["AU01", "AU02", "AU04", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24",
              "AU25", "AU26"]  # fmt: skip


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A tiny random Q-Face saved as `save_pretrained` writes it (no preprocessor_config.json)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "qface-tiny"
    QFaceModel(load_preset("qface-tiny")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(saved_model):
    register_face_analysis_pipeline()
    return pipeline("face-analysis", model=QFaceModel.from_pretrained(saved_model).eval())


@pytest.fixture
def photo_tree(tmp_path, sample_photos) -> Path:
    """in/a.jpg (1 face), in/sub/b.jpg (1 face), in/sub/landscape.jpg (none), in/broken.jpg, in/notes.txt."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(sample_photos["0-f1-su-ph.jpg"], root / "a.jpg")
    shutil.copy(sample_photos["15-f13-anc-ph.jpg"], root / "sub" / "b.jpg")
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(root / "sub" / "landscape.jpg")
    (root / "broken.jpg").write_bytes(sample_photos["0-f1-su-ph.jpg"].read_bytes()[:3000])
    (root / "notes.txt").write_text("not an image")
    return root


def run(argv: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------------ inputs


def test_collect_inputs_expands_folders_and_globs_once_each(photo_tree, tmp_path):
    files, failures = collect_inputs([str(photo_tree), str(photo_tree / "sub" / "*.jpg"), str(tmp_path / "nope.png"),
                                      str(photo_tree / "notes.txt"), str(tmp_path / "*.webp")])  # fmt: skip
    names = [p.relative_to(photo_tree).as_posix() for p in files]
    assert names == ["a.jpg", "broken.jpg", "sub/b.jpg", "sub/landscape.jpg", "notes.txt"]  # explicit file kept
    assert failures == [(str(tmp_path / "nope.png"), "no such file or folder"),
                        (str(tmp_path / "*.webp"), "no image file found")]  # fmt: skip
    recursive, _ = collect_inputs([str(photo_tree / "**" / "*.jpg")])
    assert len(recursive) == 4


# ---------------------------------------------------------------------------------------------- JSONL and CSV


def test_jsonl_output_matches_the_pipeline_and_reports_bad_files(photo_tree, tmp_path, saved_model, pipe, capsys):
    output = tmp_path / "out" / "faces.jsonl"
    code, out, err = run([photo_tree, "--model", saved_model, "--output", output, "--batch-size", 4], capsys)
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    faces_by_input = {Path(line["input"]).name: line["faces"] for line in lines if "faces" in line}
    errors = {Path(line["input"]).name: line["error"] for line in lines if "error" in line}
    assert sorted(faces_by_input) == ["a.jpg", "b.jpg", "landscape.jpg"]
    assert list(errors) == ["broken.jpg"] and "damaged or truncated image data" in errors["broken.jpg"]
    for name, path in (("a.jpg", photo_tree / "a.jpg"), ("b.jpg", photo_tree / "sub" / "b.jpg")):
        expected = pipe(str(path))
        assert len(faces_by_input[name]) == len(expected) == 1
        assert faces_by_input[name][0]["box"] == expected[0]["box"]
        assert faces_by_input[name][0]["age"]["years"] == pytest.approx(expected[0]["age"]["years"], rel=1e-5)
    assert faces_by_input["landscape.jpg"] == []
    assert "3 image(s) analysed, 2 face(s) found, 1 failure(s)" in out
    assert f"failed: {photo_tree / 'broken.jpg'}: damaged or truncated" in out
    assert "RANDOMLY INITIALISED" not in err

    # --strict: the same run fails when any file failed, and passes when none did.
    assert run([photo_tree, "--model", saved_model, "--output", output, "--strict"], capsys)[0] == 1
    good = [photo_tree / "a.jpg", photo_tree / "sub"]
    assert run([*good, "--model", saved_model, "--output", output, "--strict"], capsys)[0] == 0


def test_csv_output_has_one_row_per_face_and_the_pipeline_numbers(photo_tree, tmp_path, saved_model, pipe, capsys):
    output = tmp_path / "faces.csv"
    inputs = [photo_tree / "a.jpg", photo_tree / "sub" / "b.jpg", photo_tree / "sub" / "landscape.jpg"]
    code, out, _ = run([*inputs, "--model", saved_model, "--output", output, "--tasks", "expression,age,au"], capsys)
    assert code == 0 and "3 image(s) analysed, 2 face(s) found, 0 failure(s)" in out
    table = pd.read_csv(output)
    assert list(table.columns) == dataframe_columns() and len(table) == 2
    assert table["input"].tolist() == [str(inputs[0]), str(inputs[1])] and table["image"].tolist() == [0, 1]
    expected = results_to_dataframe([pipe(str(p), tasks=["expression", "age", "au"]) for p in inputs], inputs)
    compared = AU_COLUMNS + ["age", "happiness", "FaceRectX"]
    np.testing.assert_allclose(table[compared], expected[compared], rtol=1e-5)
    assert table[list(ATTRIBUTE_NAMES) + ["Yaw"]].isna().all().all()  # tasks that were not asked for


def test_preset_model_renders_and_attention_figures(photo_tree, tmp_path, capsys):
    renders, figures = tmp_path / "renders", tmp_path / "figures"
    inputs = [photo_tree / "a.jpg", photo_tree / "sub" / "landscape.jpg"]
    code, out, err = run([*inputs, "--model", "qface-tiny", "--output", tmp_path / "r.jsonl", "--render-dir", renders,
                          "--attention-dir", figures], capsys)  # fmt: skip
    assert code == 0
    assert "WARNING: --model qface-tiny is a preset: the model is RANDOMLY INITIALISED (untrained)" in err
    assert sorted(p.name for p in renders.iterdir()) == ["a.jpg", "landscape.jpg"]
    assert Image.open(renders / "a.jpg").size == Image.open(inputs[0]).size
    assert sorted(p.name for p in figures.iterdir()) == ["a_face0_attention.png", "stage_usage.png"]
    assert Image.open(figures / "a_face0_attention.png").format == "PNG"
    line = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert "attention" not in line["faces"][0] and set(line["faces"][0]["stage_usage"]["expression"]) == {"S2", "S4"}


def test_bad_arguments_exit_with_status_2(photo_tree, tmp_path, saved_model, capsys):
    image = photo_tree / "a.jpg"
    code, _, err = run([image, "--model", saved_model, "--output", tmp_path / "x.txt"], capsys)
    assert code == 2 and "--output must end in .jsonl or .csv, got x.txt" in err
    code, _, err = run([image, "--model", tmp_path / "no-model", "--output", tmp_path / "x.csv"], capsys)
    assert code == 2 and "neither a model folder nor a preset" in err
    code, _, err = run([image, "--model", saved_model, "--output", tmp_path / "x.csv", "--tasks", "gender"], capsys)
    assert code == 2 and "tasks: expected a non-empty list of this model's tasks" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args([str(image)])  # --output and --model are required


# ---------------------------------------------------------------------------------------------------- DataFrame


def test_dataframe_columns_follow_py_feat_names():
    columns = dataframe_columns()
    assert columns[:8] == ["input", "image", "face", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight",
                           "FaceScore"]  # fmt: skip
    assert columns[8:18] == [f"x_{i}" for i in range(5)] + [f"y_{i}" for i in range(5)]
    assert columns[18:33] == AU_COLUMNS
    assert columns[33:40] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert columns[40:80] == list(ATTRIBUTE_NAMES) and columns[80:] == ["age", "age_std", "Pitch", "Roll", "Yaw"]
    assert au_column("AU1") == "AU01" and au_column("AU25") == "AU25"
    with pytest.raises(ValueError, match="expected an action unit name like 'AU12', got 'smile'"):
        au_column("smile")


def test_dataframe_rows_hold_each_faces_numbers(pipe, sample_photos):
    paths = [sample_photos["multi_face.jpg"], sample_photos["single_face.jpg"]]
    results = pipe([str(p) for p in paths])
    table = results_to_dataframe(results, paths)
    assert len(table) == 6 and table["image"].tolist() == [0] * 5 + [1] and table["face"].tolist() == [0, 1, 2, 3, 4, 0]
    assert table["input"].tolist() == [str(paths[0])] * 5 + [str(paths[1])]
    for row, face in zip(table.itertuples(index=False), results[0] + results[1]):
        x1, y1, x2, y2 = face["box"]
        assert (row.FaceRectX, row.FaceRectY, row.FaceRectWidth, row.FaceRectHeight) == (x1, y1, x2 - x1, y2 - y1)
        assert (row.x_2, row.y_2) == tuple(face["landmarks"][2]) and row.FaceScore == face["score"]
        assert row.AU12 == face["au"]["AU12"] and row.happiness == face["expression"]["scores"]["happiness"]
        assert row.Male == face["attributes"]["Male"] and row.age_std == face["age"]["std"]
        assert (row.Pitch, row.Roll, row.Yaw) == (
            face["head_pose"]["pitch"],
            face["head_pose"]["roll"],
            face["head_pose"]["yaw"],
        )
        assert math.isclose(sum(getattr(row, c) for c in EMOTION_COLUMNS), 1.0, abs_tol=1e-6)
    # One image's list of faces is accepted as is; inputs must match the results.
    single = results_to_dataframe(results[1])
    assert len(single) == 1 and single["input"].isna().all() and single["image"].tolist() == [0]
    assert results_to_dataframe([[], []]).columns.tolist() == dataframe_columns()
    with pytest.raises(ValueError, match=r"expected one input per result \(2\), got 1"):
        results_to_dataframe(results, paths[:1])


def test_dataframe_adds_columns_for_added_tasks():
    face = {
        "box": [0.0, 0.0, 32.0, 32.0], "score": None, "landmarks": None,
        "gender": {"label": "male", "scores": {"female": 0.3, "male": 0.7}}, "bmi": {"value": 22.5, "std": 1.5},
    }  # fmt: skip
    table = results_to_dataframe([[face]])
    assert table.columns.tolist()[-4:] == ["gender_female", "gender_male", "bmi_value", "bmi_std"]
    assert table.loc[0, "gender_male"] == 0.7 and table.loc[0, "bmi_std"] == 1.5 and np.isnan(table.loc[0, "x_0"])
