# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The thread policy (threads_qface: --threads, QFACE_NUM_THREADS, OMP_NUM_THREADS, the default) as torch and the
onnxruntime sessions see it, and `qface analyze --workers` (same file as one process, --resume, no orphans)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from PIL import Image
from transformers import pipeline

from modeling_qface.analysis import workers as analyze_workers
from modeling_qface.analysis.analyze import build_parser as analyze_parser
from modeling_qface.analysis.analyze import main as analyze_main
from modeling_qface.cli import main as cli_main
from modeling_qface.model import face_alignment_qface, threads_qface
from modeling_qface.model.threads_qface import (
    MAX_DEFAULT_THREADS,
    configure_threads,
    configured_num_threads,
    onnxruntime_session_options,
    resolve_num_threads,
)
from modeling_qface.registry import register_face_analysis_pipeline

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_thread_state(monkeypatch):
    """No thread variables from the caller's shell, no number kept from another test; torch's count restored."""
    monkeypatch.delenv("QFACE_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_qface, "_explicit_num_threads", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------------- policy


def test_precedence_is_flag_then_qface_variable_then_omp_then_default(monkeypatch):
    monkeypatch.setattr(threads_qface, "usable_cpus", lambda: 6)
    assert resolve_num_threads() == 6
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's nested list: its first entry
    assert resolve_num_threads() == 4
    monkeypatch.setenv("QFACE_NUM_THREADS", " 3 ")
    assert resolve_num_threads() == 3
    assert resolve_num_threads(5) == 5


def test_default_is_the_usable_cpus_capped(monkeypatch):
    monkeypatch.setattr(threads_qface.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(threads_qface, "_cgroup_cpu_quota", lambda: None)
    assert resolve_num_threads() == MAX_DEFAULT_THREADS
    monkeypatch.setattr(threads_qface, "_cgroup_cpu_quota", lambda: 3)  # a container with --cpus 2.5
    assert resolve_num_threads() == 3
    monkeypatch.setattr(threads_qface.os, "sched_getaffinity", lambda pid: {5})  # taskset -c 5
    assert resolve_num_threads() == 1
    assert resolve_num_threads(32) == 32  # an explicit number is not capped


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"cpu.max": "250000 100000\n"}, 3),  # cgroup v2: 2.5 CPUs, rounded up
        ({"cpu.max": "max 100000\n"}, None),  # no quota
        ({"quota": "200000\n", "period": "100000\n"}, 2),  # cgroup v1
        ({"quota": "-1\n", "period": "100000\n"}, None),
        ({}, None),  # no cgroup files (macOS, a bare host)
    ],
)
def test_cgroup_cpu_quota_is_read_from_v2_or_v1_files(tmp_path, monkeypatch, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(
        threads_qface,
        "CGROUP_CPU_FILES",
        ((str(tmp_path / "cpu.max"), None), (str(tmp_path / "quota"), str(tmp_path / "period"))),
    )
    assert threads_qface._cgroup_cpu_quota() == expected


@pytest.mark.parametrize("variable", ["QFACE_NUM_THREADS", "OMP_NUM_THREADS"])
@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_variable_is_an_error_naming_it_and_the_value(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=rf"^{variable} must be .*>= 1, got '{value}'$"):
        resolve_num_threads()


@pytest.mark.parametrize("value", [0, -1, 2.5, "x", True])
def test_a_bad_explicit_number_is_an_error_naming_the_flag(value):
    with pytest.raises(ValueError, match=r"^--threads must be"):
        resolve_num_threads(value)


def test_configure_threads_sets_torch_and_a_given_number_beats_the_variable(monkeypatch):
    monkeypatch.setenv("QFACE_NUM_THREADS", "1")
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("QFACE_NUM_THREADS", "2")
    assert configure_threads() == 2 and torch.get_num_threads() == 2  # the variable is read again
    assert configure_threads(3) == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv("QFACE_NUM_THREADS", "1")
    assert configure_threads() == 3 and configured_num_threads() == 3  # the given number stays


def test_onnxruntime_options_have_the_threads_one_inter_op_thread_and_no_spinning():
    import onnxruntime

    options = onnxruntime_session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        onnxruntime_session_options(0)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_the_face_detector_session_runs_with_the_configured_threads(monkeypatch, threads):
    monkeypatch.setenv("QFACE_NUM_THREADS", threads)
    face_alignment_qface.detect_faces(np.zeros((64, 64, 3), dtype=np.uint8))
    session = face_alignment_qface._retinaface_session(configured_num_threads())
    assert session.get_session_options().intra_op_num_threads == int(threads)
    assert session.get_session_options().inter_op_num_threads == 1


def test_building_a_pipeline_applies_the_variable_to_torch(monkeypatch, tiny_model):
    register_face_analysis_pipeline()
    torch.set_num_threads(2)
    monkeypatch.setenv("QFACE_NUM_THREADS", "1")
    pipeline("face-analysis", model=tiny_model)
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("QFACE_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="QFACE_NUM_THREADS must be a whole number of threads >= 1, got 'many'"):
        pipeline("face-analysis", model=tiny_model)


# ---------------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "0"], "qface analyze: error: argument --threads: must be >= 1, got '0'"),
        (
            ["--threads", "two"],
            "qface analyze: error: argument --threads: must be a whole number of threads >= 1, got 'two'",
        ),
        (["--workers", "0"], "qface analyze: error: --workers must be >= 1, got 0"),
    ],
)
def test_bad_threads_or_workers_flags_are_one_line(tmp_path, capsys, argv, message):
    try:
        code = cli_main(["analyze", str(tmp_path), "--output", str(tmp_path / "out.jsonl"), *argv])
    except SystemExit as exit:  # argparse's errors leave through SystemExit, as when run from a shell
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


def test_a_bad_variable_stops_analyze_before_the_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QFACE_NUM_THREADS", "0")
    code = analyze_main([str(tmp_path), "--output", str(tmp_path / "out.jsonl"), "--model", "qface-tiny"])
    err = capsys.readouterr().err
    assert code == 2 and err == "qface analyze: error: QFACE_NUM_THREADS must be >= 1, got '0'\n"


def test_every_command_that_runs_the_pipeline_takes_threads():
    from modeling_qface.samples.demo import build_parser as demo_parser
    from modeling_qface.webdemo.serve import build_parser as serve_parser

    required = ["photos/", "--output", "faces.jsonl"]
    for parser, argv in ((analyze_parser(), required), (serve_parser(), []), (demo_parser(), [])):
        assert parser.parse_args([*argv, "--threads", "3"]).threads == 3
        assert parser.parse_args(argv).threads is None  # then QFACE_NUM_THREADS or the default decides


def test_analyze_threads_flag_sets_torch(tmp_path, saved_model, capsys):
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "blank.png")
    code = analyze_main(
        [
            str(tmp_path / "blank.png"),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--model",
            str(saved_model),
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0 and torch.get_num_threads() == 1 and configured_num_threads() == 1


# ------------------------------------------------------------------------------------------------ --workers


@pytest.fixture
def many_photos(tmp_path, sample_photos) -> Path:
    """Photos with 0, 1 and 5 faces, a damaged image among them, and a file that is not an image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, name in enumerate(["multi_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "t1.jpg"] * 2):
        shutil.copy(sample_photos[name], folder / f"{index}_{name}")
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(folder / "3_landscape.png")
    (folder / "5_broken.jpg").write_bytes(sample_photos["t1.jpg"].read_bytes()[:3000])
    (folder / "6_notes.jpg").write_text("not an image")
    return folder


@pytest.mark.slow
def test_workers_write_the_same_file_as_one_process_and_resume(many_photos, tmp_path, saved_model, capsys):
    def analyze(output: Path, *extra) -> tuple[int, str]:
        code = analyze_main(
            [
                str(many_photos),
                "--output",
                str(output),
                "--model",
                str(saved_model),
                "--batch-size",
                "4",
                "--no-progress",
                *extra,
            ]
        )
        return code, capsys.readouterr().out

    code, single_summary = analyze(tmp_path / "one.jsonl")
    assert code == 0 and "2 failure(s)" in single_summary
    code, workers_summary = analyze(tmp_path / "two.jsonl", "--workers", "2")
    assert code == 0
    single = (tmp_path / "one.jsonl").read_bytes()
    assert (tmp_path / "two.jsonl").read_bytes() == single  # same rows, same order, same digits
    assert workers_summary.replace("two.jsonl", "one.jsonl") == single_summary  # same failures reported

    # A run cut after 4 lines, completed with --resume by 2 workers: the same file again.
    lines = single.splitlines(keepends=True)
    (tmp_path / "resumed.jsonl").write_bytes(b"".join(lines[:4]))
    code, summary = analyze(tmp_path / "resumed.jsonl", "--workers", "2", "--resume")
    assert code == 0 and "(4 input(s) already there, skipped: --resume)" in summary
    assert (tmp_path / "resumed.jsonl").read_bytes() == single


@pytest.mark.slow
def test_workers_write_the_same_csv_as_one_process(many_photos, tmp_path, saved_model, capsys):
    outputs = []
    for extra in ([], ["--workers", "2"]):
        output = tmp_path / f"faces{len(extra)}.csv"
        argv = [str(many_photos), "--output", str(output), "--model", str(saved_model), "--no-progress", *extra]
        assert analyze_main(argv) == 0
        outputs.append(output.read_bytes())
    capsys.readouterr()
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") > 10


def worker_processes(process: psutil.Process) -> list[psutil.Process]:
    """The Q-Face preprocessing workers among the descendants of `process` (not multiprocessing's helpers)."""
    workers = []
    for child in process.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:  # a short-lived child (a tool that a library runs at start-up) that has just exited
            continue
        if "spawn_main" in command and "resource_tracker" not in command:
            workers.append(child)
    return workers


def start_workers_run(many_photos: Path, tmp_path: Path, saved_model: Path) -> subprocess.Popen:
    """`qface analyze --workers 2` on enough images that it is still going when a test stops it."""
    for index in range(30):
        shutil.copy(many_photos / "0_multi_face.jpg", many_photos / f"9_{index}.jpg")
    command = [
        sys.executable,
        "-m",
        "modeling_qface.cli",
        "analyze",
        str(many_photos),
        "--model",
        str(saved_model),
        "--output",
        str(tmp_path / "faces.jsonl"),
        "--workers",
        "2",
        "--no-progress",
    ]
    # Its own process group, as a shell gives a job: Ctrl-C in a terminal signals the whole group.
    with (tmp_path / "log.txt").open("w") as log:
        # SIGINT at its default: a test session started in the background (`cmd &` in a script) ignores SIGINT,
        # and its children would inherit that; a terminal's foreground job never does.
        return subprocess.Popen(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def images_written(tmp_path: Path) -> int:
    output = tmp_path / "faces.jsonl"
    return output.read_text().count("\n") if output.is_file() else 0


def wait_until(process: subprocess.Popen, tmp_path: Path, condition) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended before it was stopped: {(tmp_path / 'log.txt').read_text()[-2000:]}")
        time.sleep(0.005)


def assert_a_clean_ctrl_c(process: subprocess.Popen, tmp_path: Path) -> None:
    main = psutil.Process(process.pid)
    descendants = main.children(recursive=True)  # the workers and multiprocessing's resource tracker
    os.killpg(process.pid, signal.SIGINT)
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its workers, so that no hung process outlives the test
        process.wait()
        pytest.fail(f"qface analyze did not exit within 120 s of Ctrl-C: {(tmp_path / 'log.txt').read_text()[-2000:]}")
    log = (tmp_path / "log.txt").read_text()
    assert code == 130, log[-3000:]
    assert "qface analyze: interrupted" in log and "Traceback" not in log, log[-3000:]  # workers ignore Ctrl-C
    gone, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, f"processes left running: {[' '.join(p.cmdline())[-80:] for p in alive]}"


@pytest.mark.slow
def test_ctrl_c_while_the_workers_are_at_work_is_a_clean_stop(many_photos, tmp_path, saved_model):
    process = start_workers_run(many_photos, tmp_path, saved_model)
    wait_until(process, tmp_path, lambda: images_written(tmp_path) >= 2)  # the workers are at work
    assert len(worker_processes(psutil.Process(process.pid))) == 2
    assert_a_clean_ctrl_c(process, tmp_path)


@pytest.mark.slow
def test_ctrl_c_while_the_workers_still_start_is_a_clean_stop(many_photos, tmp_path, saved_model):
    # The workers spend seconds importing torch before their initializer runs: they must not die of this Ctrl-C
    # with a KeyboardInterrupt traceback (CI caught one that arrived in those seconds).
    process = start_workers_run(many_photos, tmp_path, saved_model)
    main = psutil.Process(process.pid)
    wait_until(process, tmp_path, lambda: len(worker_processes(main)) == 2)
    assert images_written(tmp_path) == 0  # none done yet
    assert_a_clean_ctrl_c(process, tmp_path)


@pytest.mark.slow
def test_killing_a_workers_run_leaves_no_worker_process(many_photos, tmp_path, saved_model):
    process = start_workers_run(many_photos, tmp_path, saved_model)
    wait_until(process, tmp_path, lambda: images_written(tmp_path) >= 2)  # the workers are at work
    main = psutil.Process(process.pid)
    assert len(worker_processes(main)) == 2
    descendants = main.children(recursive=True)
    process.kill()
    process.wait(timeout=60)
    gone, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, f"processes left running: {[' '.join(p.cmdline())[-80:] for p in alive]}"


# Ctrl-C inside the executor's own code (a race of milliseconds in a real run, so made to happen on purpose here).


class ExecutorPressingCtrlC:
    """Stands in for the ProcessPoolExecutor: Ctrl-C is pressed in the middle of its `press_in`-th submit and in
    the middle of its shutdown; it notes how far each call got."""

    def __init__(self, press_in: int):
        self.press_in, self.submits_finished, self.shut_down = press_in, 0, False

    def submit(self, function, path):
        if self.submits_finished + 1 == self.press_in:
            signal.raise_signal(signal.SIGINT)
        future = Future()
        future.set_result(f"could not read {Path(path).name}")
        self.submits_finished += 1
        return future

    def shutdown(self, wait, cancel_futures):
        signal.raise_signal(signal.SIGINT)
        self.shut_down = True


def pool_with(executor, workers: int = 1) -> analyze_workers.PreprocessPool:
    pool = object.__new__(analyze_workers.PreprocessPool)
    pool.workers, pool.executor = workers, executor
    return pool


def test_a_ctrl_c_inside_a_submit_or_the_shutdown_is_raised_once_that_call_is_done():
    executor = ExecutorPressingCtrlC(press_in=2)
    results = pool_with(executor).results([Path("a.jpg"), Path("b.jpg"), Path("c.jpg")])
    with pytest.raises(KeyboardInterrupt):
        next(results)
    assert executor.submits_finished == 3  # the interrupted submit and the next one ran to their end first
    with pytest.raises(KeyboardInterrupt):
        pool_with(executor).close()
    assert executor.shut_down
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back


def test_a_ctrl_c_while_waiting_for_a_worker_stops_the_wait_and_leaves_the_future_usable():
    class Waiting:
        def __init__(self):
            self.future = Future()

        def submit(self, function, path):
            return self.future

    executor = Waiting()
    results = pool_with(executor).results([Path("a.jpg")])
    ctrl_c = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))  # pressed while the image is not back
    # Should the Ctrl-C be lost, the image comes back after all, and `next` returns instead of raising.
    image_back = threading.Timer(30, executor.future.set_result, ("could not read a.jpg",))
    ctrl_c.start(), image_back.start()
    with pytest.raises(KeyboardInterrupt):
        next(results)
    image_back.cancel()
    assert not executor.future.done()
    # Nobody holds the future's lock: the executor's own thread can still cancel it (it waited forever once).
    canceller = threading.Thread(target=executor.future.cancel)
    canceller.start()
    canceller.join(timeout=10)
    assert not canceller.is_alive() and executor.future.cancelled()


def test_a_ctrl_c_that_this_process_ignores_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        executor = ExecutorPressingCtrlC(press_in=1)
        results = list(pool_with(executor).results([Path("a.jpg"), Path("b.jpg")]))
        pool_with(executor).close()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [path.name for path, _ in results] == ["a.jpg", "b.jpg"] and executor.shut_down
