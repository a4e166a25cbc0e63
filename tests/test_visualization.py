# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Pictures of results: pose-axis convention, annotated photos, the attention (Fig. 4) and stage-usage (Fig. 5) figures.

Set `QFACE_FIGURE_DIR` to keep the PNGs the tests draw (to look at them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from transformers import pipeline

from modeling_qface import QFaceModel, load_preset
from modeling_qface.figures.drawing import (
    AXIS_COLOURS,
    FACE_COLOURS,
    attention_figure,
    attention_figure_for_face,
    default_attention_labels,
    pose_axes,
    render,
    stage_usage_chart,
)
from modeling_qface.registry import register_face_analysis_pipeline


@pytest.fixture
def figure_dir(tmp_path) -> Path:
    folder = Path(os.environ.get("QFACE_FIGURE_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def faces_with_attention(sample_photos):
    register_face_analysis_pipeline()
    torch.manual_seed(0)
    pipe = pipeline("face-analysis", model=QFaceModel(load_preset("qface-tiny")).eval())
    return pipe(str(sample_photos["multi_face.jpg"]), output_attentions=True)


# ------------------------------------------------------------------------------------------------- pose axes


def test_pose_axes_follow_the_documented_sign_convention():
    origin, size = (100.0, 100.0), 50.0
    frontal = pose_axes(0, 0, 0, origin, size)
    # Facing the camera: x to the image's right, y down the face, z (the nose direction) towards the viewer.
    np.testing.assert_allclose(frontal["x"], (150, 100), atol=1e-9)
    np.testing.assert_allclose(frontal["y"], (100, 150), atol=1e-9)
    np.testing.assert_allclose(frontal["z"], (100, 100), atol=1e-9)
    yaw = pose_axes(30, 0, 0, origin, size)
    assert yaw["z"][0] < 100 and abs(yaw["z"][1] - 100) < 1e-9  # yaw > 0: nose towards the image's left
    pitch = pose_axes(0, 30, 0, origin, size)
    assert pitch["z"][1] < 100 and abs(pitch["z"][0] - 100) < 1e-9  # pitch > 0: looking up
    roll = pose_axes(0, 0, 30, origin, size)
    assert roll["x"][1] > 100 and roll["y"][0] < 100  # roll > 0: clockwise, the head's top towards image-right
    np.testing.assert_allclose(roll["x"], (100 + size * np.cos(np.pi / 6), 100 + size * np.sin(np.pi / 6)))
    # A horizontal flip negates yaw and roll: the drawing is mirrored about the origin's vertical.
    pose, mirrored = pose_axes(25, -10, 15, origin, size), pose_axes(-25, -10, -15, origin, size)
    for axis in ("y", "z"):
        np.testing.assert_allclose(mirrored[axis], (200 - pose[axis][0], pose[axis][1]), atol=1e-9)


# ---------------------------------------------------------------------------------------------------- render


def synthetic_face(box, landmarks, yaw=0.0, pitch=0.0, roll=0.0) -> dict:
    return {
        "box": list(box),
        "score": 0.99,
        "landmarks": landmarks,
        "expression": {"label": "happiness", "scores": {"happiness": 0.8, "neutral": 0.2}},
        "age": {"years": 31.6, "std": 4.0},
        "head_pose": {"yaw": yaw, "pitch": pitch, "roll": roll},
    }


def test_render_draws_boxes_landmarks_and_pose_axes_where_the_results_say(tmp_path, figure_dir):
    image = np.full((300, 400, 3), 40, np.uint8)
    landmarks = [[150, 120], [190, 120], [170, 150], [155, 175], [185, 175]]
    faces = [synthetic_face((120, 80, 220, 200), landmarks, yaw=40), synthetic_face((300, 150, 350, 210), None)]
    out = render(image, faces, line_width=2)
    out.save(figure_dir / "render_synthetic.png")
    assert out.size == (400, 300) and out.mode == "RGB"
    pixels = np.asarray(out)
    assert tuple(pixels[140, 120]) == FACE_COLOURS[0] and tuple(pixels[180, 300]) == FACE_COLOURS[1]  # box edges
    assert tuple(pixels[120, 150]) != (40, 40, 40)  # a landmark dot
    # yaw = 40: the blue z axis runs from the nose (170, 150) towards the image's left.
    blue = np.argwhere(np.all(pixels[:, :250] == AXIS_COLOURS["z"], axis=-1))
    assert len(blue) > 20 and blue[:, 1].max() <= 171 and blue[:, 1].min() < 150
    assert np.array_equal(pixels[250:, :100], image[250:, :100])  # far from every face: untouched
    # The caption text sits above the first box.
    assert (pixels[:78, 120:200] != 40).any()


def test_render_uses_the_upright_exif_orientation(tmp_path, sample_photos):
    rgb = np.asarray(Image.open(sample_photos["0-f1-su-ph.jpg"]).convert("RGB"))[:, :400]  # 512 x 400
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.png", exif=exif)
    out = render(tmp_path / "rotated.png", [synthetic_face((10, 10, 60, 60), None)], show_labels=False)
    assert out.size == (400, 512)
    assert np.array_equal(np.asarray(out)[100:, 100:], rgb[100:, 100:])


def test_render_of_real_results(sample_photos, faces_with_attention, figure_dir):
    path = sample_photos["multi_face.jpg"]
    out = render(path, faces_with_attention)
    out.save(figure_dir / "render_multi_face.png")
    original = np.asarray(Image.open(path).convert("RGB"))
    changed = np.any(np.asarray(out) != original, axis=-1)
    for face in faces_with_attention:  # each box outline is drawn
        x1, y1, x2, y2 = (round(v) for v in face["box"])
        assert changed[y1 + 5 : y2 - 5, x1].mean() > 0.9
    assert changed.mean() < 0.1


# --------------------------------------------------------------------------------------------- Fig. 4 and 5


def test_attention_figure_overlays_each_stage_map_in_place(figure_dir):
    crop = np.asarray(Image.new("RGB", (32, 32), (128, 128, 128)))
    labels = ["expression/happiness", "expression/neutral", "au/AU12"]
    maps = np.full((3, 2, 4, 4), 1.0 / 32)
    maps[2] = 0.0
    maps[2, 0, 0, 0] = 0.75  # AU12 looks at the top-left patch in stage S4 ...
    maps[2, 1, 3, 3] = 0.25  # ... and the bottom-right patch in S8
    figure = attention_figure(crop, maps, labels, ["S4", "S8"], select=["AU12", "expression/neutral"])
    figure.savefig(figure_dir / "attention_synthetic.png", dpi=60)
    assert isinstance(figure, Figure)
    axes = np.array(figure.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["aligned face", "S4 (75%)", "S8 (25%)"]
    assert axes[1, 1].get_title() == "S4 (50%)" and "AU12" in axes[0, 0].get_ylabel()
    s4 = axes[0, 1].images[1].get_array()
    s8 = axes[0, 2].images[1].get_array()
    assert s4.shape == (32, 32)
    # The hottest pixel lies in the hot patch (8 x 8 pixels of the 32 px crop), and the map is 1 at its centre.
    assert all(v < 8 for v in np.unravel_index(np.argmax(s4), s4.shape))
    assert all(v >= 24 for v in np.unravel_index(np.argmax(s8), s8.shape))
    assert s4.max() == pytest.approx(1.0) and s8.max() == pytest.approx(1.0) and s8[4, 4] == 0.0
    # "label" normalisation keeps the 3:1 ratio between the stages' peaks.
    shared = attention_figure(crop, maps, labels, ["S4", "S8"], select=["au/AU12"], normalize="label")
    peaks = [np.max(ax.images[1].get_array()) for ax in shared.axes[1:]]
    np.testing.assert_allclose(peaks, [1.0, 1 / 3], rtol=1e-5)
    with pytest.raises(ValueError, match="'AU99' is not a label"):
        attention_figure(crop, maps, labels, ["S4", "S8"], select=["AU99"])
    with pytest.raises(ValueError, match=r"expected shape \(3 labels, 3 stages"):
        attention_figure(crop, maps, labels, ["S4", "S8", "S12"])


def test_default_labels_are_the_top_expression_and_top_aus():
    labels = ["expression/happiness", "expression/neutral", "au/AU1", "au/AU6", "au/AU12", "age/age"]
    face = {"expression": {"label": "neutral"}, "au": {"AU1": 0.2, "AU6": 0.9, "AU12": 0.7}}
    assert default_attention_labels(labels, face, top_aus=2) == ["expression/neutral", "au/AU6", "au/AU12"]
    assert default_attention_labels(labels) == ["expression/happiness", "au/AU1", "age/age"]


def test_attention_figure_of_a_real_face(faces_with_attention, figure_dir):
    face = faces_with_attention[0]
    figure = attention_figure_for_face(face)
    figure.savefig(figure_dir / "attention_real.png", dpi=60)
    top_aus = sorted(face["au"], key=face["au"].get, reverse=True)[:3]
    expected = [f"expression/{face['expression']['label']}", *(f"au/{n}" for n in top_aus)]
    assert [ax.get_ylabel().replace("\n", "/") for ax in figure.axes[::3]] == expected
    with pytest.raises(ValueError, match="output_attentions=True"):
        attention_figure_for_face({k: v for k, v in face.items() if k != "attention"})


def test_stage_usage_chart_shows_the_mean_share_per_task_and_stage(faces_with_attention, figure_dir):
    usage = [face["stage_usage"] for face in faces_with_attention]
    figure = stage_usage_chart(usage)
    figure.savefig(figure_dir / "stage_usage_real.png", dpi=60)
    ax = figure.axes[0]
    tasks = [tick.get_text() for tick in ax.get_xticklabels()]
    assert tasks == ["expression", "au", "attributes", "age", "head_pose"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["S2", "S4"]
    for stage_index, container in enumerate(ax.containers):
        stage = ["S2", "S4"][stage_index]
        heights = [bar.get_height() for bar in container]
        expected = [np.mean([u[task][stage] for u in usage]) for task in tasks]
        np.testing.assert_allclose(heights, expected, rtol=1e-6)
    assert "5 faces" in ax.get_title()

    synthetic = {"expression": {"S4": 0.2, "S8": 0.3, "S12": 0.5}, "au": {"S4": 0.6, "S8": 0.3, "S12": 0.1}}
    figure = stage_usage_chart(synthetic)
    figure.savefig(figure_dir / "stage_usage_synthetic.png", dpi=60)
    bars = [[bar.get_height() for bar in container] for container in figure.axes[0].containers]
    assert bars == [[0.2, 0.6], [0.3, 0.3], [0.5, 0.1]]
    with pytest.raises(ValueError, match="no task to chart"):
        stage_usage_chart({})
