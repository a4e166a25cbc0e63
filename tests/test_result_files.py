# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The one write path of result files (issue 22): records written whole, non-UTF-8 names written losslessly, an
existing results file never emptied by accident, outputs checked before the model loads, write errors one line."""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import shutil
import types
from pathlib import Path

import pytest

from modeling_qface.analysis import analyze
from modeling_qface.outputs import result_file
from modeling_qface.outputs.result_file import (
    OutputWriteError,
    RecordFile,
    check_output_folder,
    portable_path,
    portable_text,
    write_errors,
)

ODD_NAME = b"caf\xe9 \xff.jpg"  # Latin-1 bytes: a valid Linux file name that is not UTF-8


@pytest.fixture
def photos(tmp_path, sample_photos) -> Path:
    """in/a.jpg, in/caf\\xe9 \\xff.jpg, in/z.jpg: one face each."""
    root = tmp_path / "in"
    root.mkdir()
    for name in (b"a.jpg", ODD_NAME, b"z.jpg"):
        shutil.copy(sample_photos["0-f1-su-ph.jpg"], os.path.join(os.fsencode(root), name))
    return root


def run(argv: list, capsys) -> tuple[int, str, str]:
    code = analyze.main([str(a) for a in argv] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_portable_text_round_trips_any_file_name():
    name = os.fsdecode(ODD_NAME)
    assert portable_text(name) == "caf\\xe9 \\xff.jpg" and portable_text(name).encode("utf-8")
    assert portable_path(portable_text(name)) == name and os.fsencode(portable_path(portable_text(name))) == ODD_NAME
    assert portable_text("Zoë 张.jpg") == "Zoë 张.jpg" and portable_path("Zoë 张.jpg") == "Zoë 张.jpg"
    assert portable_text("\ud800") == "\\ud800"  # a surrogate that is no escaped byte: shown, not an error


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_non_utf8_name_is_written_losslessly_and_resumed(photos, saved_model, tmp_path, suffix, capsys):
    output = tmp_path / f"faces{suffix}"
    code, out, _ = run([photos, "--model", saved_model, "--output", output], capsys)
    assert code == 0 and "3 image(s) analysed, 3 face(s) found, 0 failure(s)" in out
    text = output.read_bytes().decode("utf-8")  # strict UTF-8: no lone surrogate
    if suffix == ".csv":
        names = [row[0] for row in csv.reader(io.StringIO(text))][1:]
    else:
        names = [json.loads(line)["input"] for line in text.splitlines()]
    odd = os.path.join(str(photos), "caf\\xe9 \\xff.jpg")
    assert names == [str(photos / "a.jpg"), odd, str(photos / "z.jpg")]
    assert os.path.isfile(portable_path(odd)) and os.fsencode(portable_path(odd)).endswith(ODD_NAME)
    code, out, _ = run([photos, "--model", saved_model, "--output", output, "--resume"], capsys)
    assert code == 0 and "0 image(s) analysed" in out and "(3 input(s) already there" in out


def test_a_failed_non_utf8_input_is_reported_printably(photos, saved_model, tmp_path, capsys):
    broken = os.path.join(os.fsencode(photos), b"broken \xe9.jpg")
    Path(os.fsdecode(broken)).write_bytes(b"not a jpeg")
    output = tmp_path / "faces.jsonl"
    code, out, _ = run([photos, "--model", saved_model, "--output", output], capsys)
    assert code == 0 and "1 failure(s)" in out and "broken \\xe9.jpg" in out
    errors = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if "error" in line]
    assert [Path(record["input"]).name for record in errors] == ["broken \\xe9.jpg"]


def test_an_existing_results_file_is_not_emptied_without_resume_or_overwrite(photos, saved_model, tmp_path, capsys):
    output = tmp_path / "faces.jsonl"
    assert run([photos / "a.jpg", "--model", saved_model, "--output", output], capsys)[0] == 0
    before = output.read_bytes()
    code, out, err = run([photos / "z.jpg", "--model", saved_model, "--output", output], capsys)
    assert code == 2 and out == "" and output.read_bytes() == before
    assert err.splitlines() == [
        f"qface analyze: error: --output {output} already holds results ({len(before)} bytes): --resume continues "
        "it, --overwrite replaces it"
    ]
    code, _, err = run(
        [photos / "z.jpg", "--model", saved_model, "--output", output, "--resume", "--overwrite"], capsys
    )
    assert code == 2 and "give one of them" in err
    assert run([photos / "z.jpg", "--model", saved_model, "--output", output, "--overwrite"], capsys)[0] == 0
    assert [json.loads(line)["input"] for line in output.read_text().splitlines()] == [str(photos / "z.jpg")]
    output.write_text("")  # an empty file holds nothing to lose
    assert run([photos / "a.jpg", "--model", saved_model, "--output", output], capsys)[0] == 0


@pytest.mark.parametrize("option", ["--output", "--render-dir", "--attention-dir"])
def test_outputs_are_checked_before_the_model_loads(photos, tmp_path, option, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(analyze, "load_pipeline", no_model)
    (tmp_path / "a-file").write_text("")
    blocked = tmp_path / "a-file" / "inside"
    if option == "--output":
        argv, where = [photos / "a.jpg", "--output", blocked / "faces.csv"], blocked
    else:
        argv, where = [photos / "a.jpg", "--output", tmp_path / "faces.csv", option, blocked], blocked
    code, _, err = run(argv, capsys)
    assert code == 2 and err.splitlines() == [
        f"qface analyze: error: {option} {where}: not a folder (its parent {tmp_path / 'a-file'} is a file)"
    ]
    assert not (tmp_path / "faces.csv").exists()


def test_an_output_that_is_a_folder_is_refused(photos, tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    code, _, err = run([photos / "a.jpg", "--output", tmp_path / "dir.csv"], capsys)
    assert code == 2
    assert err.splitlines() == [f"qface analyze: error: --output {tmp_path / 'dir.csv'} is a folder, not a file"]


def test_a_folder_that_cannot_be_written_in_is_refused(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(result_file.tempfile, "TemporaryFile", read_only)
    with pytest.raises(OutputWriteError) as refused:
        check_output_folder(tmp_path / "new" / "renders", "--render-dir")
    assert (
        str(refused.value)
        == f"--render-dir {tmp_path / 'new' / 'renders'}: cannot write in {tmp_path} (Read-only file system)"
    )
    assert refused.value.errno == errno.EROFS and not (tmp_path / "new").exists()


def test_little_free_space_is_warned_about(tmp_path, monkeypatch, caplog):
    usage = types.SimpleNamespace(total=10**9, used=10**9, free=5 * 2**20)
    monkeypatch.setattr(result_file.shutil, "disk_usage", lambda path: usage)
    with caplog.at_level(logging.WARNING, logger=result_file.__name__):
        check_output_folder(tmp_path, "--output")
    assert caplog.messages == [f"--output {tmp_path}: only 5 MB free on its disk"]


def test_a_full_disk_is_one_line_and_exit_2(photos, saved_model, tmp_path, capsys):
    output = tmp_path / "faces.jsonl"
    output.symlink_to("/dev/full")  # every write: ENOSPC
    code, out, err = run([photos, "--model", saved_model, "--output", output], capsys)
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == (
        f"qface analyze: error: cannot write {output}: No space left on device (it holds every record finished "
        "before; --resume continues it once there is room)"
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_disk_that_fills_mid_record_leaves_whole_records_and_resume_completes(
    photos, saved_model, tmp_path, suffix, monkeypatch, capsys
):
    output = tmp_path / f"faces{suffix}"
    real_write, writes = os.write, []

    def filling_disk(fd, data):
        writes.append(len(data))
        if len(writes) == (3 if suffix == ".csv" else 2):  # (the header), a.jpg, then half of the next image: full
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(result_file.os, "write", filling_disk)
    code, _, err = run([photos, "--model", saved_model, "--output", output], capsys)
    assert code == 2 and err.splitlines()[-1].endswith(
        "No space left on device (it holds every record finished before; --resume continues it once there is room)"
    )
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    if suffix == ".csv":
        header, *lines = lines
    assert len(lines) == 1 and lines[0].startswith(
        (str(photos / "a.jpg"), '{"input": ' + json.dumps(str(photos / "a.jpg")))
    )
    assert lines[0].endswith("\n")  # the torn half-record was cut off
    monkeypatch.setattr(result_file.os, "write", real_write)
    code, out, _ = run([photos, "--model", saved_model, "--output", output, "--resume"], capsys)
    assert code == 0 and "2 image(s) analysed" in out and "(1 input(s) already there" in out
    lines = output.read_text(encoding="utf-8").splitlines()
    assert len(lines) == (4 if suffix == ".csv" else 3)  # every image once (the CSV: and its header)


def test_a_picture_that_cannot_be_written_is_one_line(photos, saved_model, tmp_path, monkeypatch, capsys):
    from PIL import Image

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    output = tmp_path / "faces.jsonl"
    code, _, err = run(
        [photos / "a.jpg", "--model", saved_model, "--output", output, "--render-dir", tmp_path / "r"], capsys
    )
    assert code == 2
    assert err.splitlines()[-1] == (  # after the weights' loading bar
        f"qface analyze: error: cannot write {tmp_path / 'r' / 'a.jpg'}: No space left on device"
    )
    assert [json.loads(line)["input"] for line in output.read_text().splitlines()] == [str(photos / "a.jpg")]


def test_record_file_cuts_a_torn_record_and_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    records = RecordFile(path)
    records.write('{"a": 1}\n')
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data)[:4])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(result_file.os, "write", half_then_full)
    with pytest.raises(OutputWriteError, match="No space left on device") as failed:
        records.write('{"b": 2}\n')
    assert str(failed.value).startswith(f"cannot write {path}: No space left on device")
    assert failed.value.errno == errno.ENOSPC and path.read_text() == '{"a": 1}\n'
    monkeypatch.setattr(result_file.os, "write", real_write)
    records.write('{"c": 3}\n')  # room again: the file goes on from the last whole record
    records.close()
    assert path.read_text() == '{"a": 1}\n{"c": 3}\n'


def test_write_errors_name_the_folder_and_pass_a_bug_through(tmp_path):
    with pytest.raises(OutputWriteError) as failed, write_errors(tmp_path / "onnx", "ONNX export"):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "onnx" / ".tmp" / "model.onnx"))
    assert str(failed.value) == f"cannot write the ONNX export {tmp_path / 'onnx'}: No space left on device"
    with pytest.raises(OutputWriteError, match="unexpected pos 64 vs 0"), write_errors(tmp_path, "checkpoint"):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
    with pytest.raises(RuntimeError, match="shape mismatch"), write_errors(tmp_path, "checkpoint"):
        raise RuntimeError("shape mismatch")  # not a write: a bug keeps its traceback
