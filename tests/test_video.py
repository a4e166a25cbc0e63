# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Video: decoding (PTS times, rotation, frame selection, bad files), tracking scored with motmetrics on a clip of
real faces with known tracks (a crossing, an exit and a return), `qface analyze` on videos (rows, kill and resume,
truncated files) and the per-track summary."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modeling_qface.analysis.analyze import main
from modeling_qface.model.face_alignment_qface import detect_faces, detect_faces_batch
from modeling_qface.outputs.dataframe import dataframe_columns, video_results_to_dataframe
from modeling_qface.samples.clips import box_iou, crossing_clip, face_patches, tracking_scores, write_video
from modeling_qface.video import NotAVideoError, VideoAnalyzer, VideoDecodeError, probe_video, read_frames
from modeling_qface.video.summary import track_summary

REPO = Path(__file__).resolve().parent.parent
FPS = 10  # the clips' rate: few frames, the same paths (the tracker is timed by timestamps)


def marker_frames(count: int, size=(96, 64)) -> list[np.ndarray]:
    """Frames with a white square in the top-left corner (to see rotations) and the frame number as grey level."""
    width, height = size
    frames = []
    for index in range(count):
        rgb = np.full((height, width, 3), 10 * index % 200, dtype=np.uint8)
        rgb[:16, :24] = 255
        frames.append(rgb)
    return frames


def truncated_copy(video: Path, target: Path, keep: float) -> Path:
    """`video` remuxed with its index first (faststart, as streamed files have it: cutting the tail then loses
    frames, not the index) and cut to the first `keep` share of its bytes, as an interrupted download leaves it."""
    import av

    fast = target.with_name("faststart_" + target.name)
    with av.open(str(video)) as source, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:  # the demuxer's last, empty packet
                packet.stream = stream
                out.mux(packet)
    data = fast.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_photos):
    """The 3-person clip (5 s at 10 fps) and its ground truth."""
    path = tmp_path_factory.mktemp("clip") / "crossing.mp4"
    return path, crossing_clip(path, sample_photos, people=3, seconds=5.0, fps=FPS)


@pytest.fixture(scope="module")
def csv_run(clip, tmp_path_factory):
    """One `qface analyze` of the clip to CSV with every side output: (folder, its files by name)."""
    folder = tmp_path_factory.mktemp("csv_run")
    options = ["--smooth", "--openface-csv", str(folder / "openface.csv"), "--render-video", str(folder / "drawn.mp4")]
    assert main([str(clip[0]), "--output", str(folder / "rows.csv"), "--no-progress", *options]) == 0
    return folder


@pytest.fixture(scope="module")
def jsonl_run(clip, tmp_path_factory):
    """One `qface analyze` of the clip to JSONL with its HTML report."""
    folder = tmp_path_factory.mktemp("jsonl_run")
    output, report = folder / "rows.jsonl", folder / "report"
    assert main([str(clip[0]), "--output", str(output), "--report", str(report), "--no-progress"]) == 0
    return folder


@pytest.fixture(scope="module")
def analyzer():
    return VideoAnalyzer()


@pytest.fixture(scope="module")
def clip_results(clip, analyzer):
    return list(analyzer(clip[0]))


# ------------------------------------------------------------------------------------------------------ decoding


def test_timestamps_are_the_frames_presentation_times_on_a_variable_frame_rate_file(tmp_path):
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.533, 1.25]
    write_video(tmp_path / "vfr.mp4", marker_frames(len(times)), timestamps_s=times)
    frames = list(read_frames(tmp_path / "vfr.mp4"))
    assert [f.index for f in frames] == list(range(len(times)))
    assert [f.timestamp_s for f in frames] == pytest.approx(times, abs=1e-3)
    # index / fps would have said 0.28 s for the last frame
    assert frames[-1].timestamp_s == pytest.approx(1.25, abs=1e-3)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_the_display_rotation_is_applied(tmp_path, rotation):
    path = tmp_path / f"rot{rotation}.mp4"
    write_video(path, marker_frames(3), rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation % 360
    assert (info.width, info.height) == ((64, 96) if rotation % 180 else (96, 64))
    rgb = next(read_frames(path)).rgb
    assert rgb.shape == (info.height, info.width, 3)
    expected = np.rot90(marker_frames(1)[0], rotation // 90)  # anticlockwise, as players show it
    bright = rgb.mean(-1) > 128
    assert np.mean(bright == (expected.mean(-1) > 128)) > 0.97


def test_every_start_and_end_select_frames_and_keep_the_streams_indices(tmp_path):
    path = tmp_path / "ten.mp4"
    write_video(path, marker_frames(20), fps=10)
    assert [f.index for f in read_frames(path, every=3)] == [0, 3, 6, 9, 12, 15, 18]
    selected = list(read_frames(path, every=2, start_s=0.5, end_s=1.5))
    assert [f.index for f in selected] == [6, 8, 10, 12, 14]
    assert [f.timestamp_s for f in selected] == pytest.approx([0.6, 0.8, 1.0, 1.2, 1.4])


def test_a_truncated_video_yields_its_good_frames_then_names_the_frame_where_decoding_stopped(tmp_path):
    whole = tmp_path / "whole.mp4"
    write_video(whole, [np.random.default_rng(i).integers(0, 255, (64, 96, 3), np.uint8) for i in range(40)])
    cut = truncated_copy(whole, tmp_path / "cut.mp4", keep=0.5)
    decoded = []
    with pytest.raises(VideoDecodeError) as raised:
        for frame in read_frames(cut):
            decoded.append(frame.index)
    assert 5 < len(decoded) < 40 and decoded == list(range(len(decoded)))
    assert raised.value.frame == len(decoded)
    assert str(cut) in str(raised.value) and f"frame {len(decoded)}" in str(raised.value)


def test_files_that_are_not_videos(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.png")
    for name in ("text.mp4", "empty.mp4", "photo.png"):
        assert probe_video(tmp_path / name) is None
    with pytest.raises(NotAVideoError, match="text.mp4"):
        next(read_frames(tmp_path / "text.mp4"))


def test_a_one_frame_video(tmp_path):
    write_video(tmp_path / "one.mp4", marker_frames(1))
    assert [(f.index, f.timestamp_s) for f in read_frames(tmp_path / "one.mp4")] == [(0, 0.0)]
    assert probe_video(tmp_path / "one.mp4").frame_count == 1


def test_batched_detection_finds_what_single_detection_finds(sample_photos):
    patches = face_patches(sample_photos)
    images = [
        np.ascontiguousarray(np.pad(p, ((0, 200 - p.shape[0]), (0, 200 - p.shape[1]), (0, 0)))) for p, _ in patches
    ]
    for single, batched in zip(map(detect_faces, images), detect_faces_batch(images)):
        assert len(single) == len(batched) == 1
        np.testing.assert_allclose(single[0].box, batched[0].box, atol=1e-3)
        np.testing.assert_allclose(single[0].landmarks, batched[0].landmarks, atol=1e-3)


def test_the_pipeline_analyses_faces_given_with_the_image(analyzer, sample_photos):
    rgb = np.asarray(Image.open(sample_photos["t1.jpg"]).convert("RGB"))
    found = analyzer.pipe(rgb, refine_landmarks=False)
    given = [{"box": f["box"], "score": f["score"], "landmarks": f["landmarks"]} for f in found[::-1]]
    again = analyzer.pipe({"image": rgb, "faces": given})
    assert [f["box"] for f in again] == [f["box"] for f in found[::-1]]  # the order given
    for a, b in zip(again, found[::-1]):
        assert a["age"]["years"] == pytest.approx(b["age"]["years"], abs=1e-4)
    with pytest.raises(ValueError, match=r"faces\[0\]: expected 5 finite"):
        analyzer.pipe({"image": rgb, "faces": [{"box": [0, 0, 10, 10]}]})


# ------------------------------------------------------------------------------------------------------ tracking


def test_people_keep_their_id_across_a_crossing_and_an_exit_and_return(clip, clip_results):
    _, truth = clip
    assert len(clip_results) == len(truth.boxes)
    scores = tracking_scores(clip_results, truth)
    assert scores["recall"] >= 0.95 and scores["precision"] >= 0.95, scores
    assert scores["idf1"] >= 0.9 and scores["num_switches"] <= 2, scores
    # The person who walks out comes back under the id they had before they left.
    gone = [i for i, boxes in enumerate(truth.boxes) if 2 not in boxes]
    before, after = gone[0] - 1, gone[-1] + 4

    def id_of(frame: int) -> list[int]:  # the id of person 2's face in that frame
        person = np.array([truth.boxes[frame][2]])
        return [f["track_id"] for f in clip_results[frame].faces if box_iou(np.array([f["box"]]), person)[0, 0] > 0.5]

    assert id_of(before) == id_of(after) and id_of(before)
    assert (gone[-1] - gone[0] + 1) / FPS >= 1.5  # really gone for longer than the motion tracker waits (1 s)


@pytest.mark.slow  # a second full analysis of the clip
def test_without_reidentification_the_returning_person_gets_a_new_id(clip, analyzer):
    path, truth = clip
    motion_only = VideoAnalyzer(analyzer.pipe, reid=False)
    results = list(motion_only(path))
    assert tracking_scores(results, truth)["idf1"] < tracking_scores(list(analyzer(path)), truth)["idf1"]
    assert max(f["track_id"] for r in results for f in r.faces) >= 3  # a fourth id for one of three people


def test_faces_are_ordered_by_track_id_and_a_frame_without_faces_has_no_faces(tmp_path, analyzer):
    path = tmp_path / "blank.mp4"
    write_video(path, marker_frames(4))
    results = list(analyzer(path))
    assert [(r.frame, r.faces) for r in results] == [(i, []) for i in range(4)]
    table = video_results_to_dataframe(results, input=path, tasks=analyzer.pipe.model.config.tasks)
    assert len(table) == 4 and table["face"].isna().all() and table["track_id"].isna().all()
    assert list(table.columns) == dataframe_columns(analyzer.pipe.model.config.tasks, video=True)


@pytest.mark.slow  # a second full analysis of the clip
def test_detecting_every_third_frame_keeps_the_tracks(clip, analyzer):
    path, truth = clip
    results = list(VideoAnalyzer(analyzer.pipe, detect_every=3)(path))
    scores = tracking_scores(results, truth)
    assert scores["recall"] >= 0.85 and scores["idf1"] >= 0.8, scores


# ------------------------------------------------------------------------------------------------ qface analyze


@pytest.mark.slow  # uses the CLI runs
def test_qface_analyze_writes_one_row_per_face_per_frame_and_a_summary_per_track(
    clip, clip_results, csv_run, jsonl_run
):
    path, truth = clip
    table = pd.read_csv(csv_run / "rows.csv")
    assert list(table.columns[:6]) == ["input", "image", "frame", "timestamp_s", "track_id", "face"]
    assert len(table) == sum(max(1, len(r.faces)) for r in clip_results)
    assert sorted(table["frame"].unique()) == list(range(len(truth.boxes)))
    assert table["timestamp_s"].max() == pytest.approx((len(truth.boxes) - 1) / FPS)
    lines = [json.loads(line) for line in (jsonl_run / "rows.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines[:-1]] == list(range(len(truth.boxes)))
    end = lines[-1]
    assert end["frames"] == len(truth.boxes) and end["video"]["frame_count"] == len(truth.boxes)
    summary = track_summary(table)
    by_track = {t["track_id"]: t for t in end["tracks"]}
    for row in summary.to_dict("records"):
        track = by_track[row["track_id"]]
        assert track["frames"] == row["frames"] == (table["track_id"] == row["track_id"]).sum()
        assert track["mean"]["age"] == pytest.approx(row["age_mean"], rel=1e-6)
        assert sum(track["expression_share"].values()) == pytest.approx(1.0)
    assert {0, 1, 2} <= set(by_track)


def test_a_truncated_video_is_one_failure_line_naming_the_frame_and_keeps_its_rows(tmp_path, clip, capsys):
    path, _ = clip
    cut = truncated_copy(path, tmp_path / "cut.mp4", keep=2 / 3)
    assert main([str(cut), "--output", str(tmp_path / "cut.csv"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if "failed" in line]
    assert len(failed) == 1 and str(cut) in failed[0] and "decoding stopped at frame" in failed[0]
    frame = int(failed[0].split("decoding stopped at frame ")[1].split()[0])
    assert sorted(pd.read_csv(tmp_path / "cut.csv")["frame"].unique()) == list(range(frame))
    assert main([str(cut), "--output", str(tmp_path / "cut.csv"), "--no-progress", "--strict", "--overwrite"]) == 1


def test_a_file_with_a_video_name_that_is_no_video_is_reported_like_a_bad_image(tmp_path, capsys):
    (tmp_path / "fake.mp4").write_text("hello")
    assert main([str(tmp_path), "--output", str(tmp_path / "out.jsonl"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "out.jsonl").read_text())
    assert record["input"] == str(tmp_path / "fake.mp4") and "error" in record
    assert "fake.mp4" in capsys.readouterr().out


@pytest.mark.slow  # a resumed run per format
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_continues_a_video_after_its_last_whole_frame_with_the_same_ids(
    tmp_path, clip, csv_run, jsonl_run, suffix
):
    path, truth = clip
    whole, part = (csv_run / "rows.csv" if suffix == ".csv" else jsonl_run / "rows.jsonl"), tmp_path / f"part{suffix}"
    # A run killed part-way: the file ends with a torn record in the middle of the frames.
    lines = whole.read_text().splitlines(keepends=True)
    keep = len(lines) * 6 // 10
    part.write_text("".join(lines[:keep]) + lines[keep][:25])
    options = ["--smooth"] if suffix == ".csv" else []  # the columns of the run it continues
    assert main([str(path), "--output", str(part), "--no-progress", "--resume", *options]) == 0
    if suffix == ".csv":
        resumed, expected = pd.read_csv(part), pd.read_csv(whole)
        assert not resumed.duplicated(["frame", "face"]).any()
        pd.testing.assert_frame_equal(resumed[["frame", "track_id", "face"]], expected[["frame", "track_id", "face"]])
        np.testing.assert_allclose(
            resumed["age"].to_numpy(float), expected["age"].to_numpy(float), rtol=1e-4, equal_nan=True
        )
    else:
        resumed = [json.loads(line) for line in part.read_text().splitlines()]
        expected = [json.loads(line) for line in whole.read_text().splitlines()]
        assert [r.get("frame") for r in resumed] == [r.get("frame") for r in expected]
        ids = lambda lines: [[f["track_id"] for f in line.get("faces", [])] for line in lines]  # noqa: E731
        assert ids(resumed) == ids(expected)
        # the summary covers the whole video, the frames before the restart too
        summary = lambda line: [(t["track_id"], t["frames"], round(t["mean"]["age"], 3)) for t in line["tracks"]]  # noqa: E731
        assert summary(resumed[-1]) == summary(expected[-1])


@pytest.mark.slow  # a resumed run
def test_a_finished_video_is_skipped_on_resume(tmp_path, clip, jsonl_run, capsys):
    path, _ = clip
    output = tmp_path / "done.jsonl"
    output.write_bytes((jsonl_run / "rows.jsonl").read_bytes())
    before = output.read_bytes()
    assert main([str(path), "--output", str(output), "--no-progress", "--resume"]) == 0
    assert output.read_bytes() == before
    assert "already there" in capsys.readouterr().out


def test_video_options_are_checked_before_the_model_loads(tmp_path, capsys):
    for options, message in (
        (["--every", "0"], "--every must be >= 1"),
        (["--start", "2", "--end", "1"], "--end (1.0) must be after --start (2.0)"),
        (["--detect-every", "0"], "--detect-every must be >= 1"),
    ):
        assert main(["x.mp4", "--output", str(tmp_path / "o.csv"), *options]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow  # kills a qface analyze subprocess midway
def test_a_killed_video_run_resumed_has_every_frame_once(tmp_path, clip):
    path, truth = clip
    output = tmp_path / "killed.csv"
    command = [
        sys.executable,
        "-m",
        "modeling_qface.cli",
        "analyze",
        str(path),
        "--output",
        str(output),
        "--no-progress",
        "--batch-frames",
        "2",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not output.exists() or output.read_text().count("\n") < 30):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_before = output.read_text().count("\n")
    assert rows_before >= 30
    finished = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    table = pd.read_csv(output)
    assert rows_before < len(table)  # killed part-way, not after the end
    assert sorted(table["frame"].unique()) == list(range(len(truth.boxes)))
    assert not table.duplicated(["frame", "face"]).any()
    assert math.isfinite(table["age"].dropna().mean())


# ---------------------------------------------------------------------------------- smoothing, OpenFace, render


def test_one_euro_smoothing_adds_columns_beside_the_raw_ones_and_calms_flicker():
    from types import SimpleNamespace

    from modeling_qface.video.smoothing import OneEuroFilter, TrackSmoother

    rng = np.random.default_rng(0)
    times = np.arange(100) / 25
    steady = 0.5 + 0.1 * rng.standard_normal(100)  # flicker around a constant
    steady_filter = OneEuroFilter()
    smoothed = [steady_filter([v], t)[0] for v, t in zip(steady, times)]
    assert np.std(np.diff(smoothed)) < 0.5 * np.std(np.diff(steady))
    step = np.r_[np.zeros(50), np.ones(50)]  # a real change is followed within a fraction of a second
    step_filter = OneEuroFilter()
    follow = [step_filter([v], t)[0] for v, t in zip(step, times)]
    assert follow[60] > 0.9
    smoother = TrackSmoother()
    for t in times[:3]:
        face = {
            "track_id": 4,
            "expression": {"label": "a", "scores": {"a": 0.7, "b": 0.3}},
            "age": {"years": 30.0 + t, "std": 2.0},
        }
        result = smoother(SimpleNamespace(timestamp_s=t, faces=[face, {"track_id": None, "age": {"years": 1.0}}]))
    raw, smooth = result.faces[0], result.faces[0]["smoothed"]
    assert raw["age"]["years"] == pytest.approx(30.08) and smooth["age"]["years"] < raw["age"]["years"]
    assert sum(smooth["expression"]["scores"].values()) == pytest.approx(1.0) and smooth["expression"]["label"] == "a"
    assert "smoothed" not in result.faces[1]


@pytest.mark.slow  # uses the CLI run with every side output
def test_smooth_openface_and_render_video_outputs(tmp_path, clip, csv_run):
    import av

    path, truth = clip
    rows = pd.read_csv(csv_run / "rows.csv")
    assert {"happiness_smooth", "Yaw_smooth", "age_smooth"} <= set(rows.columns) and "happiness" in rows.columns
    one = rows[rows["track_id"] == 1]
    assert one["Yaw_smooth"].diff().abs().mean() < one["Yaw"].diff().abs().mean()  # smoother along the track
    openface = pd.read_csv(csv_run / "openface.csv", skipinitialspace=True)
    assert list(openface.columns[:8]) == [
        "frame",
        "face_id",
        "timestamp",
        "confidence",
        "success",
        "pose_Rx",
        "pose_Ry",
        "pose_Rz",
    ]
    assert openface["frame"].min() == 1 and openface["frame"].max() == len(truth.boxes)  # 1-based
    first = rows[rows["frame"] == 0].sort_values("track_id")
    assert openface[openface["frame"] == 1]["face_id"].tolist() == first["track_id"].tolist()
    np.testing.assert_allclose(openface[openface["frame"] == 1]["pose_Ry"], np.radians(first["Yaw"]), atol=2e-3)
    np.testing.assert_allclose(openface[openface["frame"] == 1]["pose_Rx"], -np.radians(first["Pitch"]), atol=2e-3)
    with av.open(str(csv_run / "drawn.mp4")) as rendered:
        stream = rendered.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == truth.size
        assert sum(1 for _ in rendered.decode(stream)) == len(truth.boxes)
    # several videos: the side outputs must be folders
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(path.read_bytes())
    code = main(
        [str(path), str(copy), "--output", str(tmp_path / "two.csv"), "--openface-csv", str(csv_run / "openface.csv")]
    )
    assert code == 2
    assert (
        main([str(path), "--output", str(tmp_path / "r.csv"), "--resume", "--render-video", str(tmp_path / "x.mp4")])
        == 2
    )


@pytest.mark.slow  # uses the CLI run with its report
def test_the_report_has_each_videos_people_and_their_timeline(tmp_path, clip, jsonl_run):
    path, _ = clip
    output, report = jsonl_run / "rows.jsonl", jsonl_run / "report"
    page = (report / "index.html").read_text()
    end = json.loads(output.read_text().splitlines()[-1])
    assert "Videos: every person over time" in page and f"{path.name}" in page
    assert page.count("<tr><td>") >= len(end["tracks"])  # one table row per person
    for track in end["tracks"]:
        assert f"<tr><td>{track['track_id']}</td><td>{track['first_s']:.2f} to {track['last_s']:.2f} s</td>" in page
    timeline = Image.open(report / f"{path.stem}_timeline.png")
    assert timeline.width > 600 and timeline.height > 200 * (len(end["tracks"]) + 1) * 0.9
    assert main([str(path), "--output", str(tmp_path / "f.csv"), "--report", str(report)]) == 2  # a CSV: refused


@pytest.mark.slow  # analyses and renders the clip
def test_the_web_demos_video_section_shows_the_tracked_video_timeline_and_people(
    clip, analyzer, clip_results, tmp_path, monkeypatch
):
    import threading

    import av

    from modeling_qface.webdemo import video_tab

    path, truth = clip
    demo = video_tab.VideoDemo(analyzer.pipe, threading.Lock())
    rendered, figure, people, status = demo.analyze(str(path))
    with av.open(rendered) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(truth.boxes)
    assert figure is not None and len(figure.axes) == len(people) + 1
    assert set(people["track_id"]) >= {0, 1, 2}
    assert people["frames"].sum() == sum(len(r.faces) for r in clip_results)  # every tracked face, once
    assert f"**{len(truth.boxes)}** frames" in status
    monkeypatch.setattr(video_tab, "MAX_VIDEO_SECONDS", 1.0)
    assert demo.analyze(str(path))[0] is None and "up to 1 s" in demo.analyze(str(path))[3]
    (tmp_path / "x.mp4").write_text("no video")
    assert "Not a video" in demo.analyze(str(tmp_path / "x.mp4"))[3]
    demo.cleanup()


@pytest.mark.slow  # a run to Parquet and its resumption
def test_parquet_output_is_a_folder_of_whole_parts_with_the_csv_rows_and_resumes(tmp_path, clip, csv_run, monkeypatch):
    import datasets

    from modeling_qface.outputs import parquet

    path, truth = clip
    inputs = [str(path), "--smooth"]  # as the CSV run, whose rows these must be
    monkeypatch.setattr(parquet, "SECONDS_PER_PART", 0.0)  # a part per frame: many parts to lose and resume
    folder = tmp_path / "rows.parquet"
    assert main([*inputs, "--output", str(folder), "--no-progress"]) == 0
    expected = pd.read_csv(csv_run / "rows.csv")
    table = pd.read_parquet(folder)
    assert list(table.columns) == list(expected.columns) and len(table) == len(expected)
    pd.testing.assert_series_equal(table["track_id"], expected["track_id"].astype("Int64"))
    np.testing.assert_allclose(table["age"].to_numpy(float), expected["age"].to_numpy(float), rtol=1e-5)
    assert datasets.load_dataset("parquet", data_dir=str(folder), split="train").num_rows == len(expected)
    # A killed run: its last parts never written, one left half-written under its temporary name.
    parts = sorted(folder.glob("part-*.parquet"))
    assert len(parts) > len(truth.boxes) // 2
    for part in parts[len(parts) // 2 :]:
        part.unlink()
    (folder / f".{parts[-1].name}.tmp").write_bytes(b"PAR1 torn")
    assert main([*inputs, "--output", str(folder), "--no-progress"]) == 2  # holds results: refused
    assert main([*inputs, "--output", str(folder), "--no-progress", "--resume"]) == 0
    resumed = pd.read_parquet(folder)
    assert not resumed.duplicated(["input", "frame", "face"]).any() and len(resumed) == len(expected)
    pd.testing.assert_series_equal(resumed["track_id"], table["track_id"])
    assert not list(folder.glob(".*.tmp"))


def test_a_media_file_without_a_video_stream_is_one_clear_failure(tmp_path, capsys):
    import av

    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert probe_video(audio) is None
    assert main([str(audio), "--output", str(tmp_path / "out.csv"), "--no-progress", "--strict"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "failed" in line]
    assert len(failed) == 1 and "voice.m4a" in failed[0] and "no video stream" in failed[0]
