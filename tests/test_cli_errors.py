# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""One error style for every `qface` command (issue 11): a bad input is one line `qface <command>: error: ...` on
stderr and exit status 2; a bug is a traceback (exit status 1); Ctrl-C is exit status 130. And what the commands
write is strict JSON (no bare NaN)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from modeling_qface import cli
from modeling_qface.model.image_loading_qface import ImageLoadError, ImageTooLargeError
from modeling_qface.model.model_loading_qface import ModelLoadError
from modeling_qface.outputs.result_file import OutputWriteError
from modeling_qface.samples.photos import SamplePhotoFetchError
from modeling_qface.training.data.errors import DataFormatError
from modeling_qface.training.mae_data import BadImageError
from modeling_qface.training.recipe import RecipeError

REPO = Path(__file__).resolve().parent.parent


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that report something (a loading progress bar may come before them)."""
    return [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]


def dispatch(argv: list, capsys) -> tuple[int, str]:
    """`qface argv` in this process: (exit status, stderr); argparse's exit counts as its status."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------- the case


@pytest.mark.slow  # a fresh qface process
def test_a_too_small_max_image_side_is_one_line_and_exit_2(saved_model, sample_photos, tmp_path):
    output = tmp_path / "faces.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeling_qface.cli",
            "analyze",
            str(sample_photos["single_face.jpg"]),
            "--model",
            str(saved_model),
            "--output",
            str(output),
            "--max-image-side",
            "10",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["qface analyze: error: --max-image-side must be at least 32 pixels, got 10"]
    assert not output.exists()


# ---------------------------------------------------------------------------------------- options, every command


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_a_bad_option_is_one_line_for_every_command(command, capsys):
    code, err = dispatch([command, "--no-such-option"], capsys)
    assert code == 2
    (line,) = err.splitlines()  # no usage block: the same one line as every other bad input
    assert line.startswith(f"qface {command}: error: ") and line.endswith(f"(see qface {command} --help)")
    assert "--no-such-option" in line or "required" in line  # names the option, or what is missing


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_states_each_default_once_and_never_none(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    options = re.split(r"\n(?=  -)", text.split("options:", 1)[1])  # one block per option, its help wrapped
    assert len(options) > 2
    for option in options:
        assert option.count("(default") <= 1, option
        assert "(default: None)" not in " ".join(option.split()), option


def test_export_onnx_model_default_is_the_shipped_demo_model(tmp_path, monkeypatch):
    from modeling_qface.onnx_export.export import model_folder
    from modeling_qface.registry import DEFAULT_MODEL_DIR

    assert model_folder("default").resolve() == DEFAULT_MODEL_DIR.resolve()
    assert (model_folder("default") / "model.safetensors").is_file()
    monkeypatch.chdir(tmp_path)
    assert model_folder("./default") == Path("default") and model_folder("runs/x/final") == Path("runs/x/final")


def test_a_bad_option_value_names_the_option(tmp_path, capsys):
    code, err = dispatch(["analyze", "x.jpg", "--output", tmp_path / "x.csv", "--batch-size", "eight"], capsys)
    assert code == 2
    assert err.splitlines() == [
        "qface analyze: error: argument --batch-size: invalid int value: 'eight' (see qface analyze --help)"
    ]


# ------------------------------------------------------------------------------------- bad inputs, real commands


def test_bad_inputs_of_qface_evaluate_are_one_line_naming_them(saved_model, tmp_path, capsys):
    missing = tmp_path / "no-raf-db"
    report = tmp_path / "eval.json"
    code, err = dispatch(
        [
            "evaluate",
            "--model",
            saved_model,
            "--source",
            f"raf_db:{missing}:test",
            "--output",
            report,
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 2 and not report.exists()
    assert error_lines(err) == [f"qface evaluate: error: raf_db: dataset folder not found: {missing}"]

    recipe = tmp_path / "no-recipe.yaml"
    code, err = dispatch(["evaluate", "--model", saved_model, "--config", recipe], capsys)
    assert code == 2 and error_lines(err) == [f"qface evaluate: error: recipe file not found: {recipe}"]

    no_model = tmp_path / "no-model"
    code, err = dispatch(["evaluate", "--model", no_model, "--source", f"raf_db:{missing}:test"], capsys)
    (line,) = error_lines(err)
    assert code == 2 and line.startswith("qface evaluate: error: ") and str(no_model) in line


# ------------------------------------------------------------------------------ the dispatcher's error mapping


@pytest.fixture
def command_raising(monkeypatch):
    """Registers a `qface boom` whose main raises the given exception."""

    def register(error: BaseException) -> None:
        module = types.ModuleType("qface_boom_command")

        def main(argv):
            raise error

        module.main = main
        monkeypatch.setitem(sys.modules, "qface_boom_command", module)
        monkeypatch.setitem(cli.COMMANDS, "boom", ("qface_boom_command", "raises what the test gives"))

    return register


INPUT_ERRORS = [
    (
        ImageLoadError("/photos/a.jpg: not an image file that Pillow can read"),
        "/photos/a.jpg: not an image file that Pillow can read",
    ),
    (ImageTooLargeError("/photos/big.png: refused, too many pixels"), "/photos/big.png: refused, too many pixels"),
    (
        DataFormatError("/data/labels.txt", 3, "expected 2 fields, got 1"),
        "/data/labels.txt, line 3: expected 2 fields, got 1",
    ),
    (RecipeError("train.yaml: optimizer.lr: unknown key"), "train.yaml: optimizer.lr: unknown key"),
    (BadImageError("/faces/x.png: cannot be read\nsecond line"), "/faces/x.png: cannot be read second line"),
    (SamplePhotoFetchError("pip download failed for the sample photos"), "pip download failed for the sample photos"),
    (ModelLoadError("model folder runs/x: no model.safetensors"), "model folder runs/x: no model.safetensors"),
    (
        FileNotFoundError(2, "No such file or directory", "/data/missing.csv"),
        "/data/missing.csv: No such file or directory",
    ),
    (PermissionError(13, "Permission denied", "/data/locked"), "/data/locked: Permission denied"),
    (IsADirectoryError(21, "Is a directory", "/data/folder"), "/data/folder: Is a directory"),
    (NotADirectoryError(20, "Not a directory", "/data/file.txt/x"), "/data/file.txt/x: Not a directory"),
    (FileExistsError(17, "File exists", "runs/renders"), "runs/renders: File exists"),
    (
        OSError(28, "No space left on device", "/data/run/optimizer.bin"),
        "/data/run/optimizer.bin: No space left on device",
    ),
    (OSError(30, "Read-only file system", "/mnt/ro/faces.csv"), "/mnt/ro/faces.csv: Read-only file system"),
    (
        OutputWriteError(28, "cannot write runs/faces.csv: No space left on device", "runs/faces.csv"),
        "cannot write runs/faces.csv: No space left on device",
    ),
    (
        FileNotFoundError("--model runs/x: neither a model folder nor a preset"),
        "--model runs/x: neither a model folder nor a preset",
    ),
]


@pytest.mark.parametrize(
    ("error", "message"), INPUT_ERRORS, ids=[f"{type(error).__name__}-{i}" for i, (error, _) in enumerate(INPUT_ERRORS)]
)
def test_each_kind_of_bad_input_is_one_line_and_exit_2(error, message, command_raising, capsys):
    command_raising(error)
    code, err = dispatch(["boom"], capsys)
    assert code == 2 and err.splitlines() == [f"qface boom: error: {message}"]


BUGS = [
    RuntimeError("a bug"),
    KeyError("a bug"),
    ValueError("a plain ValueError is not known to be about an input"),
    FileNotFoundError(2, "No such file or directory", str(Path(cli.__file__).parent / "missing_module_data.json")),
]


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
def test_a_bug_keeps_its_traceback(error, command_raising, capsys):
    command_raising(error)
    with pytest.raises(type(error)):  # out of main: Python prints the traceback, exit status 1
        cli.main(["boom"])
    assert capsys.readouterr().err == ""


def test_ctrl_c_is_one_line_and_exit_130(command_raising, capsys):
    command_raising(KeyboardInterrupt())
    try:
        code, err = dispatch(["boom"], capsys)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped qface as a traceback")
    assert code == 130 and err.strip().splitlines() == ["qface boom: interrupted"]


def test_ctrl_c_while_the_command_is_imported_is_one_line_and_exit_130(monkeypatch, capsys):
    # Importing a command (torch, transformers, accelerate) takes seconds: a Ctrl-C is likely to land in it.
    monkeypatch.setitem(cli.COMMANDS, "slow", ("qface_slow_import_command", "interrupted while it is imported"))
    imported = []

    def import_module(name, *args):
        imported.append(name)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    try:
        code, err = dispatch(["slow"], capsys)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during the import escaped qface as a traceback")
    assert imported == ["qface_slow_import_command"]
    assert code == 130 and err.strip().splitlines() == ["qface slow: interrupted"]


# -------------------------------------------------------------------------------------------------- strict JSON


def reject_constant(name: str):
    raise ValueError(f"not strict JSON: bare {name}")


def test_qface_evaluate_writes_strict_json(tmp_path, monkeypatch, capsys):
    """A metric that is NaN (e.g. a mean over no scored label) is null in the JSON report, not a bare NaN.

    The metric modules refuse NaN predictions and leave unlabelled tasks out, so a real run rarely meets one: the
    report is planted here, and `qface evaluate` writes it."""
    from modeling_qface.training import evaluation

    planted = {
        "model": "m",
        "face_crop": {"size": 32, "margin": 0.15},
        "head_pose_frame": "photo",
        "data": [{"label": "celeba_test", "num_samples": 2, "crop": "landmarks: 2"}],
        "metrics": {
            "celeba_test": {
                "attributes/f1_mean": float("nan"),
                "attributes/accuracy_mean": 0.5,
                "attributes/spread": float("inf"),
            }
        },
        "aliases": {"attributes/f1_mean": float("nan")},
        "labelled": {"celeba_test": {"attributes": 2}},
    }
    monkeypatch.setattr(evaluation, "evaluate_model", lambda *args, **kwargs: planted)
    report = tmp_path / "eval.json"
    code, _ = dispatch(["evaluate", "--model", "m", "--source", "celeba:/data/celeba", "--output", report], capsys)
    assert code == 0
    parsed = json.loads(report.read_text(), parse_constant=reject_constant)
    assert parsed["metrics"]["celeba_test"] == {
        "attributes/f1_mean": None,
        "attributes/accuracy_mean": 0.5,
        "attributes/spread": None,
    }
    assert parsed["aliases"] == {"attributes/f1_mean": None}
