# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface analyze` (files, folders, globs -> JSONL / CSV, renders, figures, failures) and the DataFrame helper."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import pipeline

import modeling_qface.analysis.analyze as analyze
from modeling_qface import ATTRIBUTE_NAMES, QFaceModel, load_preset
from modeling_qface.analysis.analyze import build_parser, collect_inputs, main
from modeling_qface.model.image_loading_qface import load_image_rgb
from modeling_qface.outputs.dataframe import EMOTION_COLUMNS, au_column, dataframe_columns, results_to_dataframe
from modeling_qface.outputs.writers import strict_json
from modeling_qface.registry import DEFAULT_MODEL_DIR, register_face_analysis_pipeline

AU_COLUMNS = [
    "AU01",
    "AU02",
    "AU04",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
]


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
    files, failures = collect_inputs(
        [
            str(photo_tree),
            str(photo_tree / "sub" / "*.jpg"),
            str(tmp_path / "nope.png"),
            str(photo_tree / "notes.txt"),
            str(tmp_path / "*.webp"),
        ]
    )
    names = [p.relative_to(photo_tree).as_posix() for p in files]
    assert names == ["a.jpg", "broken.jpg", "sub/b.jpg", "sub/landscape.jpg", "notes.txt"]  # explicit file kept
    assert failures == [
        (str(tmp_path / "nope.png"), "no such file or folder"),
        (str(tmp_path / "*.webp"), "no image or video file found"),
    ]
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
    assert run([photo_tree, "--model", saved_model, "--output", output, "--strict", "--overwrite"], capsys)[0] == 1
    good = [photo_tree / "a.jpg", photo_tree / "sub"]
    assert run([*good, "--model", saved_model, "--output", output, "--strict", "--overwrite"], capsys)[0] == 0


def test_csv_output_has_one_row_per_face_and_the_pipeline_numbers(photo_tree, tmp_path, saved_model, pipe, capsys):
    output = tmp_path / "faces.csv"
    inputs = [photo_tree / "a.jpg", photo_tree / "sub" / "b.jpg", photo_tree / "sub" / "landscape.jpg"]
    code, out, _ = run([*inputs, "--model", saved_model, "--output", output, "--tasks", "expression,age,au"], capsys)
    assert code == 0 and "3 image(s) analysed, 2 face(s) found, 0 failure(s)" in out
    table = pd.read_csv(output)
    asked = [task for task in pipe.model.config.tasks if task["name"] in ("expression", "age", "au")]
    assert list(table.columns) == dataframe_columns(asked) and len(table) == 3  # one row per face, one face-less
    assert table["input"].tolist() == list(map(str, inputs)) and table["image"].tolist() == [0, 1, 2]
    expected = results_to_dataframe([pipe(str(p), tasks=["expression", "age", "au"]) for p in inputs], inputs, asked)
    compared = AU_COLUMNS + ["age", "happiness", "FaceRectX"]
    np.testing.assert_allclose(table[compared], expected[compared], rtol=1e-5)
    assert not set(ATTRIBUTE_NAMES) & set(table.columns) and "Yaw" not in table  # tasks that were not asked for
    # The image without a face: its input and number, every other column empty.
    assert table.iloc[2].drop(["input", "image"]).isna().all()


def test_csv_of_the_demo_model_has_its_tasks_columns_and_a_row_per_face_less_image(photo_tree, tmp_path, capsys):
    output = tmp_path / "faces.csv"
    inputs = [photo_tree / "sub" / "landscape.jpg", photo_tree / "a.jpg"]
    code, out, _ = run([*inputs, "--output", output], capsys)  # no --model: the shipped demo model
    assert code == 0 and "2 image(s) analysed, 1 face(s) found" in out
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert [task["name"] for task in config["tasks"]] == ["expression", "attributes", "age", "head_pose"]
    rows = list(csv.reader(io.StringIO(output.read_text())))
    assert rows[0] == [
        *("input", "image", "face", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"),
        *(f"x_{i}" for i in range(5)),
        *(f"y_{i}" for i in range(5)),
        *EMOTION_COLUMNS,
        *("Male", "Smiling", "age", "age_std", "Pitch", "Roll", "Yaw"),
    ]
    assert rows[0] == dataframe_columns(config["tasks"])
    assert rows[1] == [str(inputs[0]), "0"] + [""] * (len(rows[0]) - 2)  # no face: one row, face columns empty
    assert rows[2][:3] == [str(inputs[1]), "1", "0"] and "" not in rows[2] and len(rows) == 3  # no empty column
    # --resume: the face-less image is in the file, so it is done like the other one.
    code, out, _ = run([*inputs, "--output", output, "--resume"], capsys)
    assert code == 0 and "0 image(s) analysed" in out and "(2 input(s) already there, skipped: --resume)" in out
    assert len(list(csv.reader(io.StringIO(output.read_text())))) == 3
    # JSON Lines keeps `"faces": []` for it.
    code, _, _ = run([inputs[0], "--output", tmp_path / "faces.jsonl"], capsys)
    assert json.loads((tmp_path / "faces.jsonl").read_text()) == {"input": str(inputs[0]), "faces": []}


def test_preset_model_renders_and_attention_figures(photo_tree, tmp_path, capsys):
    renders, figures = tmp_path / "renders", tmp_path / "figures"
    inputs = [photo_tree / "a.jpg", photo_tree / "sub" / "landscape.jpg"]
    code, out, err = run(
        [
            *inputs,
            "--model",
            "qface-tiny",
            "--output",
            tmp_path / "r.jsonl",
            "--render-dir",
            renders,
            "--attention-dir",
            figures,
        ],
        capsys,
    )
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
    assert code == 2 and "--output must end in .jsonl, .csv or .parquet, got x.txt" in err
    code, _, err = run([image, "--model", tmp_path / "no-model", "--output", tmp_path / "x.csv"], capsys)
    assert code == 2 and "neither a model folder nor a preset" in err
    code, _, err = run([image, "--model", saved_model, "--output", tmp_path / "x.csv", "--tasks", "gender"], capsys)
    assert code == 2 and "tasks: expected a non-empty list of this model's tasks" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args([str(image)])  # --output and --model are required


# ---------------------------------------------------------------------------------------------------- DataFrame


def test_dataframe_columns_follow_py_feat_names():
    columns = dataframe_columns()
    assert columns[:8] == [
        "input",
        "image",
        "face",
        "FaceRectX",
        "FaceRectY",
        "FaceRectWidth",
        "FaceRectHeight",
        "FaceScore",
    ]
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
        assert face["au"]["AU12"] == row.AU12 and row.happiness == face["expression"]["scores"]["happiness"]
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
    assert results_to_dataframe([]).empty and results_to_dataframe([]).columns.tolist() == dataframe_columns()
    # An image without faces: one row, its input and image number, every other column empty.
    empty = results_to_dataframe([results[1], []], [paths[1], "none.jpg"])
    assert empty["input"].tolist() == [str(paths[1]), "none.jpg"] and empty["image"].tolist() == [0, 1]
    assert empty["face"].tolist()[0] == 0 and pd.isna(empty["face"].tolist()[1])
    assert empty.iloc[1].drop(["input", "image"]).isna().all()
    assert results_to_dataframe([], ["none.jpg"])["input"].tolist() == ["none.jpg"]  # one image's faces: none
    # Given the model's tasks (or its config): only their columns.
    config = pipe.model.config
    assert results_to_dataframe(results, paths, config).columns.tolist() == dataframe_columns(config.tasks)
    without_aus = [task for task in config.tasks if task["name"] != "au"]
    table = results_to_dataframe([[], []], tasks=without_aus)
    assert table.columns.tolist() == dataframe_columns(without_aus) and "AU12" not in table and len(table) == 2
    with pytest.raises(ValueError, match=r"expected one input per result \(2\), got 1"):
        results_to_dataframe(results, paths[:1])


def test_dataframe_adds_columns_for_added_tasks():
    face = {
        "box": [0.0, 0.0, 32.0, 32.0],
        "score": None,
        "landmarks": None,
        "gender": {"label": "male", "scores": {"female": 0.3, "male": 0.7}},
        "bmi": {"value": 22.5, "std": 1.5},
    }
    table = results_to_dataframe([[face]])
    assert table.columns.tolist()[-4:] == ["gender_female", "gender_male", "bmi_value", "bmi_std"]
    assert table.loc[0, "gender_male"] == 0.7 and table.loc[0, "bmi_std"] == 1.5 and np.isnan(table.loc[0, "x_0"])


# ------------------------------------------------------------------------------- reliability (issue 11): inputs

REPO = Path(__file__).resolve().parent.parent


def reject_constant(name: str):
    raise ValueError(f"not strict JSON: bare {name}")


def strict_loads(line: str):
    """json.loads that refuses NaN / Infinity, as JavaScript's JSON.parse, jq and most other parsers do."""
    return json.loads(line, parse_constant=reject_constant)


@contextmanager
def time_limit(seconds: float):
    """Raises TimeoutError in this thread after `seconds`, so code that would never end fails the test instead."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def looped_tree(tmp_path, sample_photos) -> Path:
    """in/a.jpg, in/alias.jpg -> a.jpg, in/sub/b.jpg, in/linked -> ../elsewhere (elsewhere/c.jpg) and two symlink
    loops back to in/ (in/sub/up, in/sub/deeper/back): 3 real images."""
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    (root / "sub" / "deeper").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(sample_photos["0-f1-su-ph.jpg"], root / "a.jpg")
    shutil.copy(sample_photos["15-f13-anc-ph.jpg"], root / "sub" / "b.jpg")
    shutil.copy(sample_photos["45-m7-di-ph.jpg"], elsewhere / "c.jpg")
    (root / "alias.jpg").symlink_to("a.jpg")
    (root / "linked").symlink_to("../elsewhere", target_is_directory=True)
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)
    (root / "sub" / "deeper" / "back").symlink_to("../..", target_is_directory=True)
    return root


def test_collect_inputs_walks_symlink_loops_taking_each_real_file_once(looped_tree):
    expected = ["a.jpg", "linked/c.jpg", "sub/b.jpg"]
    for pattern in (looped_tree / "**" / "*.jpg", looped_tree / "**", looped_tree):
        with time_limit(20):  # two loops: glob.glob's paths multiply until they are too long (hours)
            files, failures = collect_inputs([str(pattern)])
        assert [p.relative_to(looped_tree).as_posix() for p in files] == expected, pattern
        assert failures == []
    # Inputs that overlap through links: still each real file once, by the first path given.
    files, failures = collect_inputs(
        [
            str(looped_tree / "alias.jpg"),
            str(looped_tree / "*.jpg"),
            str(looped_tree / "linked" / "c.jpg"),
            str(looped_tree.parent / "elsewhere"),
        ]
    )
    assert files == [looped_tree / "alias.jpg", looped_tree / "linked" / "c.jpg"] and failures == []


@pytest.fixture
def make_unreadable(monkeypatch):
    """chmod 000 a folder or file. Root reads them anyway, so there os.scandir / os.stat (inside a folder) and
    open (a file) refuse them as the kernel would refuse another user: with EACCES."""
    locked = []

    def lock(path: Path) -> None:
        path.chmod(0)
        locked.append(path)
        if os.geteuid() != 0 or len(locked) > 1:
            return
        real_scandir, real_stat, real_open = os.scandir, os.stat, open

        def denied(path, inside_only: bool) -> bool:
            if isinstance(path, int):
                return False
            path = os.path.abspath(os.fsdecode(path))
            return any(path.startswith(str(p) + os.sep) or (path == str(p) and not inside_only) for p in locked)

        def refuse(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

        def scandir(path="."):
            return refuse(path) if denied(path, False) else real_scandir(path)

        def stat(path, *args, **kwargs):
            return refuse(path) if denied(path, True) else real_stat(path, *args, **kwargs)

        def open_(file, *args, **kwargs):
            return refuse(file) if denied(file, False) and not os.path.isdir(file) else real_open(file, *args, **kwargs)

        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(os, "stat", stat)
        monkeypatch.setattr("builtins.open", open_)

    yield lock
    for path in locked:
        path.chmod(0o755)


def test_unreadable_folders_and_files_are_failures(photo_tree, tmp_path, saved_model, make_unreadable, capsys):
    locked = photo_tree / "locked"
    locked.mkdir()
    shutil.copy(photo_tree / "a.jpg", locked / "c.jpg")
    shutil.copy(photo_tree / "a.jpg", photo_tree / "sub" / "secret.jpg")
    make_unreadable(locked)
    make_unreadable(photo_tree / "sub" / "secret.jpg")
    output = tmp_path / "faces.jsonl"
    inputs = [photo_tree / "sub", locked, locked / "c.jpg", photo_tree / "a.jpg"]
    code, out, _ = run([*inputs, "--model", saved_model, "--output", output, "--strict"], capsys)
    assert code == 1  # --strict: the unreadable inputs failed
    assert "3 image(s) analysed, 2 face(s) found, 3 failure(s)" in out
    assert f"failed: {locked}: cannot be read (Permission denied)" in out
    assert f"failed: {locked / 'c.jpg'}: cannot be read (Permission denied)" in out
    assert f"failed: {photo_tree / 'sub' / 'secret.jpg'}: cannot be read" in out
    errors = {line["input"] for line in map(strict_loads, output.read_text().splitlines()) if "error" in line}
    assert errors == {str(locked), str(locked / "c.jpg"), str(photo_tree / "sub" / "secret.jpg")}


# ------------------------------------------------------------------------------------- durable output, --resume


@pytest.fixture
def group_photos(tmp_path, sample_photos) -> list[Path]:
    """4 copies of a 5-face photo: the rows of one image are 5 rows of a CSV."""
    folder = tmp_path / "group"
    folder.mkdir()
    for i in range(4):
        shutil.copy(sample_photos["multi_face.jpg"], folder / f"g{i}.jpg")
    return sorted(folder.iterdir())


def read_results(path: Path) -> dict[str, list]:
    """{input: its rows (CSV) or records (JSON Lines)}, parsed strictly: csv module / strict JSON per line."""
    by_input = {}
    if path.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(path.read_text())))
        assert rows[0] == dataframe_columns() and dataframe_columns() not in rows[1:]  # the header once (qface-tiny)
        for row in rows[1:]:
            assert len(row) == len(rows[0])
            by_input.setdefault(row[0], []).append(row)
    else:
        assert path.read_text().endswith("\n")
        for line in path.read_text().splitlines():
            record = strict_loads(line)
            by_input.setdefault(record["input"], []).append(record)
    return by_input


def assert_whole_images(by_input: dict, suffix: str) -> None:
    """Every input in the file is there once, whole: 5 face rows 0..4 (CSV, one image number) or one record."""
    for source, entries in by_input.items():
        if suffix == ".csv":
            assert [row[2] for row in entries] == ["0", "1", "2", "3", "4"], source
            assert len({row[1] for row in entries}) == 1
        else:
            assert len(entries) == 1 and len(entries[0]["faces"]) == 5, source
    if suffix == ".csv":
        numbers = [entries[0][1] for entries in by_input.values()]
        assert len(set(numbers)) == len(numbers)


@pytest.mark.slow  # kills a qface analyze subprocess midway
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_sigkill_leaves_every_finished_image_and_resume_completes(suffix, group_photos, tmp_path, saved_model):
    output = tmp_path / f"faces{suffix}"
    command = [
        sys.executable,
        "-m",
        "modeling_qface.cli",
        "analyze",
        *map(str, group_photos),
        "--model",
        str(saved_model),
        "--output",
        str(output),
        "--batch-size",
        "1",
        "--no-progress",
    ]
    with (tmp_path / "log.txt").open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    first_rows = 2 if suffix == ".csv" else 1  # the header, then rows
    while not (output.is_file() and output.read_text().count("\n") >= first_rows):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"no image in {output.name} before the run ended (exit {process.poll()}): "
                f"{(tmp_path / 'log.txt').read_text()[-2000:]}"
            )
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed = output.read_text()
    done = read_results(output)
    assert 1 <= len(done) < len(group_photos), "the run had finished all images when it was killed"
    assert list(done) == [str(p) for p in group_photos[: len(done)]]
    assert_whole_images(done, suffix)

    finished = subprocess.run([*command, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"({len(done)} input(s) already there, skipped: --resume)" in finished.stdout
    assert output.read_text().startswith(killed)  # appended, the killed run's rows kept as they were
    complete = read_results(output)
    assert sorted(complete) == sorted(str(p) for p in group_photos)
    assert_whole_images(complete, suffix)


def stopping_at_image(number: int, exception: BaseException):
    """load_image_rgb that raises `exception` when asked for its `number`th image."""
    calls = []

    def load(path, **kwargs):
        calls.append(path)
        if len(calls) == number:
            raise exception
        return load_image_rgb(path, **kwargs)

    return load


def test_an_error_or_ctrl_c_midway_leaves_a_valid_file_and_resume_completes(
    group_photos, tmp_path, saved_model, monkeypatch, capsys
):
    argv = [*group_photos, "--model", saved_model, "--batch-size", 1]
    # A bug on the second image: the traceback is the caller's, and the CSV holds the first image.
    monkeypatch.setattr(analyze, "load_image_rgb", stopping_at_image(2, RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        run([*argv, "--output", tmp_path / "faces.csv"], capsys)
    partial = read_results(tmp_path / "faces.csv")
    assert list(partial) == [str(group_photos[0])]
    assert_whole_images(partial, ".csv")

    # Ctrl-C on the third image: exit status 130, one line saying how to finish, the finished images kept.
    monkeypatch.setattr(analyze, "load_image_rgb", stopping_at_image(3, KeyboardInterrupt()))
    output = tmp_path / "faces.jsonl"
    try:
        code, _, err = run([*argv, "--output", output], capsys)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped qface analyze as a traceback")
    assert code == 130 and f"qface analyze: interrupted; {output} holds every finished image" in err
    assert list(read_results(output)) == [str(p) for p in group_photos[:2]]
    monkeypatch.setattr(analyze, "load_image_rgb", load_image_rgb)
    code, out, _ = run([*argv, "--output", output, "--resume"], capsys)
    assert code == 0 and "2 image(s) analysed, 10 face(s) found, 0 failure(s)" in out
    complete = read_results(output)
    assert list(complete) == [str(p) for p in group_photos]
    assert_whole_images(complete, ".jsonl")


def test_resume_drops_a_cut_image_and_refuses_other_columns(group_photos, tmp_path, saved_model, capsys):
    output = tmp_path / "faces.csv"
    argv = [*group_photos[:2], "--model", saved_model, "--output", output]
    assert run(argv, capsys)[0] == 0
    text = output.read_text()
    output.write_text(text[: text.rindex("\n", 0, len(text) - 1) - 25])  # a kill in the second image's rows
    code, out, _ = run([*argv, "--resume"], capsys)
    assert code == 0 and "1 image(s) analysed" in out and "(1 input(s) already there" in out
    assert read_results(output).keys() == {str(p) for p in group_photos[:2]}
    assert_whole_images(read_results(output), ".csv")
    # A file with other columns (another model's tasks) is not appended to: its rows would not line up.
    output.write_text("input,image,face,gender_male\n")
    code, _, err = run([*argv, "--resume"], capsys)
    assert code == 2 and output.read_text() == "input,image,face,gender_male\n"
    message = (
        f"qface analyze: error: --resume: {output} has other columns than this run writes (another model or --tasks?)"
    )
    assert err.splitlines()[-1] == message and err.count("error") == 1  # (above it: the weights' loading bar)


# ------------------------------------------------------------------------------------ strict JSON, CSV columns


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the pose of an infinite yaw
def test_non_finite_outputs_are_written_as_null(photo_tree, tmp_path, capsys):
    torch.manual_seed(0)
    model = QFaceModel(load_preset("qface-tiny"))
    with torch.no_grad():
        model.heads["age"].proj.bias.fill_(float("nan"))  # a diverged head: NaN years and std
        model.heads["head_pose"].proj.bias[0] = float("inf")
    model.save_pretrained(tmp_path / "diverged")
    output = tmp_path / "faces.jsonl"
    code, _, _ = run([photo_tree / "a.jpg", "--model", tmp_path / "diverged", "--output", output], capsys)
    assert code == 0
    (line,) = output.read_text().splitlines()
    face = strict_loads(line)["faces"][0]
    assert face["age"] == {"years": None, "std": None} and None in face["head_pose"].values()
    assert all(isinstance(v, float) for v in face["box"])  # finite numbers stay numbers
    assert strict_json({"x": [float("-inf"), 1.5, (float("nan"),)]}) == '{"x": [null, 1.5, [null]]}'


def test_csv_columns_are_known_before_any_image_and_hold_added_tasks(photo_tree, tmp_path, capsys):
    torch.manual_seed(0)
    model = QFaceModel(load_preset("qface-tiny"))
    model.add_task("gender", "multiclass", ["female", "male"])
    model.add_task("tags", "multilabel", ["glasses", "hat"])
    model.add_task("smile", "regression", ["intensity"], scale=1.0)
    model.add_task("weight", "distribution", ["kg"], min_value=30, max_value=150, units="kg")
    model.save_pretrained(tmp_path / "extended")
    output = tmp_path / "faces.csv"
    code, _, _ = run([photo_tree / "a.jpg", "--model", tmp_path / "extended", "--output", output], capsys)
    assert code == 0
    added = ["gender_female", "gender_male", "tags_glasses", "tags_hat", "smile_intensity", "weight_kg", "weight_std"]
    assert dataframe_columns(model.config.tasks) == dataframe_columns() + added
    table = pd.read_csv(output)
    assert list(table.columns) == dataframe_columns() + added and len(table) == 1
    assert table[added].notna().all().all()
    # Only the tasks asked for: their columns, and no other task's.
    code, _, _ = run(
        [
            photo_tree / "a.jpg",
            "--model",
            tmp_path / "extended",
            "--output",
            output,
            "--tasks",
            "age,smile",
            "--overwrite",
        ],
        capsys,
    )
    assert code == 0
    ids = dataframe_columns([])  # input, image, face, the box, its score and the landmarks
    assert ids == dataframe_columns()[:18]
    assert list(pd.read_csv(output).columns) == [*ids, "age", "age_std", "smile_intensity"]


def test_max_image_side_below_the_detectors_minimum_is_one_line(photo_tree, tmp_path, saved_model, capsys):
    code, _, err = run(
        [photo_tree / "a.jpg", "--model", saved_model, "--output", tmp_path / "x.csv", "--max-image-side", 10], capsys
    )
    assert code == 2
    assert err.splitlines() == ["qface analyze: error: --max-image-side must be at least 32 pixels, got 10"]
    assert not (tmp_path / "x.csv").exists()
