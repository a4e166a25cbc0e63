# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The `face-analysis` pipeline on real photos: every face, exact wiring to detector and model, inputs, errors.

The model is the tiny preset with random weights: these tests check behaviour, not accuracy. The photos come from
`modeling_qface/samples/photos.py` (pip/npm downloads, cached); when they cannot be fetched the tests fail.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from modeling_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES, HEAD_POSE_NAMES, QFaceModel, load_preset
from modeling_qface.model.face_alignment_qface import FaceCrop, align_face, detect_faces, locate_faces
from modeling_qface.model.head_pose_qface import rotate_pose_in_plane
from modeling_qface.model.image_loading_qface import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageLoadError,
    ImageTooLargeError,
    load_image_rgb,
)
from modeling_qface.model.image_processing_qface import IMAGENET_MEAN, build_image_processor
from modeling_qface.model.pipeline_qface import FaceAnalysisPipeline
from modeling_qface.registry import register_face_analysis_pipeline
from modeling_qface.samples.photos import FACE_API_SAMPLES, SAMPLE_PHOTOS

MULTI_FACE_PHOTOS = ("t1.jpg", "multi_face.jpg", *FACE_API_SAMPLES)
FACE_KEYS = {"box", "score", "landmarks", "expression", "au", "au_active", "attributes", "age", "head_pose"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return QFaceModel(load_preset("qface-tiny")).eval()


@pytest.fixture(scope="module")
def pipe(model):
    register_face_analysis_pipeline()
    return pipeline("face-analysis", model=model)


@pytest.fixture(scope="module")
def multi_face(pipe, sample_photos):
    """The multi_face.jpg photo as RGB pixels and its pipeline result."""
    path = sample_photos["multi_face.jpg"]
    return np.asarray(Image.open(path).convert("RGB")), pipe(str(path))


def load_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def assert_same_faces(a: list, b: list, tolerance: float = 0.0):
    """Same faces, labels and boxes; numbers equal (or within `tolerance`, relative to 1)."""
    assert len(a) == len(b)
    for face_a, face_b in zip(a, b):
        assert face_a.keys() == face_b.keys()
        flat_a, flat_b = flatten(face_a), flatten(face_b)
        assert flat_a.keys() == flat_b.keys()
        for key, value in flat_a.items():
            if isinstance(value, float) and tolerance:
                assert math.isclose(value, flat_b[key], rel_tol=tolerance, abs_tol=tolerance), key
            else:
                assert value == flat_b[key], key


def flatten(value, prefix="") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and value and isinstance(value[0], (list, float)):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


# ------------------------------------------------------------------------------------------------ real photos


def test_every_face_of_the_multi_face_photos_is_analysed(pipe, sample_photos, multi_face):
    # The detector finds exactly the reference faces of these photos (tests/test_face_alignment.py), so each
    # reference face must have one analysed face whose box holds its centre, and there must be no other.
    paths = [str(sample_photos[name]) for name in MULTI_FACE_PHOTOS]
    results = pipe(paths, batch_size=8)
    assert len(results) == len(paths)
    for name, faces in zip(MULTI_FACE_PHOTOS, results):
        centres = list(SAMPLE_PHOTOS[name].face_centres)
        assert len(faces) == len(centres) >= 3, name
        for face in faces:
            x1, y1, x2, y2 = face["box"]
            inside = [c for c in centres if x1 <= c[0] <= x2 and y1 <= c[1] <= y2]
            assert inside, (name, face["box"])
            centres.remove(inside[0])
            assert set(face) == FACE_KEYS
    assert sum(map(len, results)) == 33  # 6 + 5 + the 22 faces of the face-api samples
    # Boxes and scores are the detector's own; landmarks are the detector's, refined on the upright face, and the
    # crop is cut from them.
    rgb, faces = multi_face
    detections, located = detect_faces(rgb), locate_faces(rgb)
    assert len(faces) == len(detections) == 5
    for face, detection, refined in zip(faces, detections, located):
        assert face["box"] == list(detection.box) and face["score"] == detection.score
        assert face["landmarks"] == refined.landmarks.tolist()
        eye_distance = np.linalg.norm(detection.landmarks[1] - detection.landmarks[0])
        assert 0 < np.abs(refined.landmarks - detection.landmarks).max() < 0.25 * eye_distance


def test_output_schema_values_and_json_round_trip(multi_face):
    _, faces = multi_face
    assert len(faces) == 5
    for face in faces:
        assert set(face) == FACE_KEYS
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
        scores = face["expression"]["scores"]
        assert tuple(scores) == EXPRESSION_NAMES and face["expression"]["label"] == max(scores, key=scores.get)
        assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-6)
        assert tuple(face["au"]) == AU_NAMES and tuple(face["attributes"]) == ATTRIBUTE_NAMES
        assert tuple(face["head_pose"]) == HEAD_POSE_NAMES and set(face["age"]) == {"years", "std"}
        probabilities = [*scores.values(), *face["au"].values(), *face["attributes"].values()]
        assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probabilities)
        assert 0.0 <= face["age"]["years"] <= 100.0 and face["age"]["std"] > 0.0
    assert json.loads(json.dumps(faces)) == faces


def test_numbers_are_the_model_outputs_on_the_aligned_crop(model, multi_face):
    rgb, faces = multi_face
    processor = build_image_processor(model.config)
    aligned = [FaceCrop.from_config(model.config)(rgb, np.array(face["landmarks"])) for face in faces]
    crops = [align_face(rgb, np.array(face["landmarks"]), output_size=32) for face in faces]
    assert all(np.array_equal(a.crop, c) for a, c in zip(aligned, crops))  # the default crop is the ArcFace one
    pixel_values = processor(images=[Image.fromarray(c) for c in crops], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values)
    for i, face in enumerate(faces):
        expected = out.expression_logits[i].softmax(-1).tolist()
        np.testing.assert_allclose(list(face["expression"]["scores"].values()), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(list(face["au"].values()), out.au_logits[i].sigmoid().tolist(), rtol=1e-5, atol=1e-6)
        # The model answers in the upright crop's frame; the pipeline reports the pose in the photo's frame.
        in_photo = rotate_pose_in_plane(out.head_pose[i].tolist(), -aligned[i].angle)
        np.testing.assert_allclose(list(face["head_pose"].values()), in_photo, rtol=1e-5, atol=1e-4)
        distribution = out.age_distribution[i].double()
        ages = torch.arange(101, dtype=torch.float64)
        std = ((distribution * (ages - (distribution * ages).sum()) ** 2).sum()).sqrt().item()
        assert math.isclose(face["age"]["years"], out.age[i].item(), rel_tol=1e-5)
        assert math.isclose(face["age"]["std"], std, rel_tol=1e-5)


def test_au_active_follows_the_thresholds(pipe, multi_face, sample_photos):
    _, faces = multi_face
    for face in faces:  # default threshold 0.5
        assert face["au_active"] == [name for name, p in face["au"].items() if p >= 0.5]
    probabilities = faces[0]["au"]
    median = float(np.median(list(probabilities.values())))
    (face,) = pipe(str(sample_photos["single_face.jpg"]), au_threshold=median)
    assert face["au_active"] == [name for name, p in face["au"].items() if p >= median]
    custom = {"AU12": 0.0, "AU1": 1.0}  # AU12 always active, AU1 never; the rest keep 0.5
    (face,) = pipe(str(sample_photos["single_face.jpg"]), au_threshold=custom)
    expected = [n for n, p in face["au"].items() if p >= custom.get(n, 0.5)]
    assert face["au_active"] == expected and "AU12" in expected and "AU1" not in expected
    with pytest.raises(ValueError, match=r"unknown AU name\(s\) \['AU99'\]"):
        pipe(str(sample_photos["single_face.jpg"]), au_threshold={"AU99": 0.3})
    with pytest.raises(ValueError, match=r"au_threshold\['AU1'\]: expected a probability in \[0, 1\], got 1.5"):
        pipe(str(sample_photos["single_face.jpg"]), au_threshold=1.5)


def test_tasks_subset_equals_the_full_run_and_skips_the_other_heads(pipe, model, multi_face, sample_photos):
    _, full = multi_face
    ran = []
    hooks = [head.register_forward_hook(lambda m, i, o, n=name: ran.append(n)) for name, head in model.heads.items()]
    try:
        subset = pipe(str(sample_photos["multi_face.jpg"]), tasks=["expression", "age"])
    finally:
        for hook in hooks:
            hook.remove()
    assert set(ran) == {"expression", "age"}
    assert [set(face) for face in subset] == [{"box", "score", "landmarks", "expression", "age"}] * 5
    for small, big in zip(subset, full):
        assert small == {key: big[key] for key in small}
    with pytest.raises(ValueError, match=r"tasks: expected .*'head_pose'\], got \['gender'\]"):
        pipe(str(sample_photos["multi_face.jpg"]), tasks=["gender"])


def test_batch_size_and_list_input_give_the_same_faces(pipe, sample_photos):
    no_face = np.full((120, 160, 3), 90, np.uint8)
    paths = [str(sample_photos["multi_face.jpg"]), no_face, str(sample_photos["0-f1-su-ph.jpg"])]
    one_by_one = [pipe(path) for path in paths]
    assert [len(faces) for faces in one_by_one] == [5, 0, 1]
    for batch_size in (1, 4):
        batched = pipe(paths, batch_size=batch_size)
        for a, b in zip(batched, one_by_one):
            # Different batch sizes may take other CPU kernels: equal up to float32 rounding.
            assert_same_faces(a, b, tolerance=1e-5)
    for a, b in zip(pipe(tuple(paths[:2])), one_by_one[:2]):
        assert_same_faces(a, b, tolerance=1e-5)
    assert pipe([]) == []


def test_path_pil_numpy_and_bytes_inputs_are_identical(pipe, sample_photos, multi_face):
    path = sample_photos["multi_face.jpg"]
    _, reference = multi_face
    assert pipe(path) == reference  # pathlib.Path
    assert pipe(Image.open(path)) == reference
    assert pipe(load_rgb(path)) == reference
    assert pipe(path.read_bytes()) == reference


# ------------------------------------------------------------------------------------------- image formats


@pytest.fixture(scope="module")
def photo_png(tmp_path_factory, sample_photos) -> tuple[np.ndarray, Path]:
    """multi_face.jpg's pixels and a lossless PNG copy."""
    rgb = load_rgb(sample_photos["multi_face.jpg"])
    path = tmp_path_factory.mktemp("formats") / "photo.png"
    Image.fromarray(rgb).save(path)
    return rgb, path


def test_rgba_opaque_equals_rgb_and_transparent_pixels_become_white(pipe, photo_png, tmp_path, multi_face):
    rgb, _ = photo_png
    _, reference = multi_face
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    assert pipe(tmp_path / "opaque.png") == reference
    np.testing.assert_array_equal(load_image_rgb(opaque), rgb)

    # A transparent band with random colours under it (away from the faces) reads as white, half-transparent
    # black as mid grey; the faces are those of the photo with a white band.
    band = opaque.copy()
    band[-60:, :, :3] = np.random.default_rng(0).integers(0, 256, size=(60, rgb.shape[1], 3))
    band[-60:, :, 3] = 0
    band[:4, :4] = (0, 0, 0, 128)
    Image.fromarray(band).save(tmp_path / "band.png")
    expected = rgb.copy()
    expected[-60:] = 255
    expected[:4, :4] = 127  # 255 * (1 - 128 / 255)
    np.testing.assert_array_equal(load_image_rgb(tmp_path / "band.png"), expected)
    assert pipe(tmp_path / "band.png") == pipe(expected)


def test_greyscale_16_bit_and_float_inputs(pipe, photo_png, tmp_path):
    rgb, _ = photo_png
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    grey_rgb = np.repeat(grey[..., None], 3, axis=2)
    sixteen = grey.astype(np.uint16) * 257
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(sixteen).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    same_as_grey = [tmp_path / "grey.png", tmp_path / "grey16.png", grey, grey[..., None], sixteen, grey / 255.0]
    for image in same_as_grey:
        np.testing.assert_array_equal(load_image_rgb(image), grey_rgb)
    same_as_rgb = [rgb.astype(np.uint16) * 257, rgb.astype(np.float32) / 255, rgb / 255.0]
    for image in same_as_rgb:
        np.testing.assert_array_equal(load_image_rgb(image), rgb)
    # Through the pipeline: the 16-bit greyscale file finds the faces of the greyscale photo.
    reference = pipe(grey_rgb)
    assert len(reference) >= 4
    assert pipe(tmp_path / "grey16.png") == reference


def test_exif_rotated_photo_gives_the_upright_faces(pipe, photo_png, tmp_path, multi_face):
    rgb, _ = photo_png
    _, upright = multi_face
    stored_as = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
    for orientation, transpose in stored_as.items():
        exif = Image.Exif()
        exif[0x0112] = orientation  # the viewer rotates the stored pixels back to upright
        path = tmp_path / f"rotated{orientation}.png"
        Image.fromarray(rgb).transpose(transpose).save(path, exif=exif)
        assert not np.array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)  # stored rotated
        np.testing.assert_array_equal(load_image_rgb(path), rgb)
        np.testing.assert_array_equal(load_image_rgb(Image.open(path)), rgb)
    assert pipe(tmp_path / "rotated6.png") == upright


def test_images_without_faces_give_an_empty_list(pipe, sample_photos):
    assert pipe(str(sample_photos["free-mountain-vector-01.jpg"])) == []
    assert pipe(np.full((240, 320, 3), 128, np.uint8)) == []
    assert pipe([np.zeros((40, 50), np.uint8), str(sample_photos["single_face.jpg"])], batch_size=2)[0] == []


def test_detect_faces_false_takes_the_input_as_an_aligned_crop(pipe, multi_face):
    rgb, faces = multi_face
    aligned = FaceCrop.from_config(pipe.model.config)(rgb, np.array(faces[1]["landmarks"]))
    (face,) = pipe(aligned.crop, detect_faces=False)
    assert face["box"] == [0.0, 0.0, 32.0, 32.0] and face["score"] is None and face["landmarks"] is None
    answers = [
        {k: v for k, v in f.items() if k not in ("box", "score", "landmarks", "head_pose")} for f in (face, faces[1])
    ]
    assert_same_faces([answers[0]], [answers[1]], tolerance=1e-5)  # a batch of 1 face vs 5: float32 rounding
    # The crop is upright, so its pose is the photo's pose turned by the alignment's in-plane rotation.
    in_crop = rotate_pose_in_plane([faces[1]["head_pose"][n] for n in HEAD_POSE_NAMES], aligned.angle)
    np.testing.assert_allclose([face["head_pose"][n] for n in HEAD_POSE_NAMES], in_crop, atol=1e-3)
    (large,) = pipe(align_face(rgb, np.array(faces[1]["landmarks"]), output_size=96), detect_faces=False)
    assert large["box"] == [0.0, 0.0, 96.0, 96.0] and set(large) == FACE_KEYS
    # A non-square input: its central square is the face (the rule training data uses when no face is found).
    wide = np.concatenate([np.zeros((32, 10, 3), np.uint8), aligned.crop, np.zeros((32, 10, 3), np.uint8)], axis=1)
    (centred,) = pipe(wide, detect_faces=False)
    assert centred["box"] == [10.0, 0.0, 42.0, 32.0]
    assert_same_faces([{**centred, "box": None}], [{**face, "box": None}])


def test_large_image_is_downscaled_for_detection_only(pipe, multi_face):
    rgb, faces = multi_face  # 1000 x 667, detected at 960 px
    big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 3, rgb.shape[0] * 3), Image.Resampling.BICUBIC))
    big_faces = pipe(big)  # 3000 x 2001, detected at 960 px, boxes in full-resolution pixels
    assert len(big_faces) == len(faces) == 5
    for a, b in zip(sorted(faces, key=lambda f: f["box"][0]), sorted(big_faces, key=lambda f: f["box"][0])):
        width = a["box"][2] - a["box"][0]
        assert np.abs(np.array(b["box"]) / 3 - a["box"]).max() < 0.1 * width


# ----------------------------------------------------------------------------------------------- bad inputs


def test_bad_files_raise_an_error_naming_the_file(pipe, tmp_path, sample_photos):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a photo\n")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_photos["multi_face.jpg"].read_bytes()[:20000])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    cases = {
        not_image: "not an image file that Pillow can read",
        truncated: "damaged or truncated image data",
        empty: r"empty file \(0 bytes\)",
        missing: "no such file",
        tmp_path: "is a folder, not an image file",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError, match=f"^{path}: {reason}"):
            pipe(str(path))
    # In a list, the error names the bad file, not the good one before it.
    with pytest.raises(ValueError, match=f"^{truncated}: damaged"):
        pipe([str(sample_photos["single_face.jpg"]), str(truncated)], batch_size=2)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((3, 40, 50)), r"got \(3, 40, 50\) \(channels first\? use array.transpose\(1, 2, 0\)\)"),
        (np.full((40, 50, 3), 200.0), r"float images must lie in \[0, 1\], got values in \[200, 200\]"),
        (np.full((40, 50, 3), np.nan), "NaN or infinite"),
        (np.full((40, 50), 300, np.int64), r"int64 image values must lie in 0..255, got 300..300"),
        (np.zeros((40, 50, 3), bool), "boolean arrays are not images"),
        (np.zeros((0, 50, 3), np.uint8), r"empty image, shape \(0, 50, 3\)"),
    ],
)
def test_bad_arrays_are_refused_with_the_reason(pipe, array, message):
    with pytest.raises(ImageLoadError, match=message):
        pipe(array)


def test_unsupported_input_type_and_bad_arguments(pipe):
    with pytest.raises(TypeError, match="expected an image as a file path, bytes, .* got dict"):
        pipe({"image": 1})
    with pytest.raises(ValueError, match=r"score_threshold: expected a probability in \[0, 1\), got 1.5"):
        pipe(np.zeros((8, 8, 3), np.uint8), score_threshold=1.5)
    with pytest.raises(ValueError, match=r"max_image_pixels: expected a positive int, got 0"):
        pipe(np.zeros((8, 8, 3), np.uint8), max_image_pixels=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_k'"):
        pipe(np.zeros((8, 8, 3), np.uint8), top_k=3)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, without its pixel data (no memory needed to make it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_pixel_limit_guard(pipe, tmp_path, sample_photos):
    assert DEFAULT_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485
    # Above the default (10000 x 10000) and above twice Pillow's own limit: refused before any pixel is decoded.
    for width, height in ((10_000, 10_000), (30_000, 30_000)):
        path = tmp_path / f"bomb{width}.png"
        path.write_bytes(png_header(width, height))
        with pytest.raises(ImageTooLargeError, match=f"^{path}: .* pixels exceeds the limit of 89,478,485 "):
            pipe(str(path))  # the configured limit is named, never Pillow's
    photo = str(sample_photos["multi_face.jpg"])  # 1000 x 667
    with pytest.raises(ImageTooLargeError, match=f"^{photo}: 1000x667 = 667,000 pixels exceeds the limit of 500,000"):
        pipe(photo, max_image_pixels=500_000)
    with pytest.raises(ImageTooLargeError, match="numpy array of shape"):
        pipe(load_rgb(photo), max_image_pixels=500_000)
    assert len(pipe(photo, max_image_pixels=667_000)) == 5
    # A larger limit is the only limit: Pillow's own (refusing above twice its default, ~179 Mpx) is set aside, so the
    # 900 Mpx header is read and the file is refused for its missing pixel data, not for its size.
    with pytest.raises(ImageLoadError, match="damaged or truncated image data"):
        pipe(str(tmp_path / "bomb30000.png"), max_image_pixels=1_000_000_000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # and it is back


# ------------------------------------------------------------------------------------ attention, tasks, registry


def test_output_attentions_adds_maps_and_stage_usage(pipe, model, sample_photos, multi_face):
    _, light = multi_face
    faces = pipe(str(sample_photos["multi_face.jpg"]), output_attentions=True)
    num_queries = sum(len(t["labels"]) for t in model.config.tasks)
    # The attention weights come from the eager attention path instead of SDPA: equal up to float32 rounding.
    assert_same_faces(
        [{k: v for k, v in f.items() if k not in ("attention", "stage_usage")} for f in faces], light, 1e-5
    )
    for face in faces:
        attention = face["attention"]
        assert attention["maps"].shape == (num_queries, 2, 4, 4) and attention["maps"].dtype == np.float32
        assert attention["crop"].shape == (32, 32, 3) and attention["stages"] == ["S2", "S4"]
        assert attention["labels"][:8] == [f"expression/{n}" for n in EXPRESSION_NAMES] + ["au/AU1"]
        # Each query's attention sums to 1 over all stages' patches; stage usage is its per-stage mass.
        np.testing.assert_allclose(attention["maps"].sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
        per_stage = attention["maps"].sum(axis=(2, 3))
        expression = per_stage[:7].mean(axis=0)
        np.testing.assert_allclose(list(face["stage_usage"]["expression"].values()), expression, rtol=1e-5)
        assert set(face["stage_usage"]) == set(model.config.task_names)
    subset = pipe(str(sample_photos["multi_face.jpg"]), output_attentions=True, tasks=["au"])
    assert subset[0]["attention"]["labels"] == [f"au/{n}" for n in AU_NAMES] and list(subset[0]["stage_usage"]) == [
        "au"
    ]
    np.testing.assert_array_equal(subset[0]["attention"]["maps"], faces[0]["attention"]["maps"][7:22])


def test_added_task_is_reported_by_its_kind(sample_photos):
    torch.manual_seed(0)
    model = QFaceModel(load_preset("qface-tiny")).eval()
    model.add_task("gender", "multiclass", ["female", "male"])
    model.add_task("smile_intensity", "regression", ["intensity"], scale=1.0)
    faces = pipeline("face-analysis", model=model)(str(sample_photos["single_face.jpg"]))
    (face,) = faces
    assert face["gender"]["label"] in ("female", "male") and set(face["gender"]["scores"]) == {"female", "male"}
    assert math.isclose(sum(face["gender"]["scores"].values()), 1.0, abs_tol=1e-6)
    assert set(face["smile_intensity"]) == {"intensity"} and isinstance(face["smile_intensity"]["intensity"], float)


def test_registration_is_idempotent_and_the_processor_comes_from_the_config(model, caplog):
    register_face_analysis_pipeline()
    with caplog.at_level("WARNING"):
        register_face_analysis_pipeline()
    assert "already registered" not in caplog.text
    assert PIPELINE_REGISTRY.supported_tasks["face-analysis"]["impl"] is FaceAnalysisPipeline
    pipe = pipeline("face-analysis", model=model)
    assert isinstance(pipe, FaceAnalysisPipeline)
    assert pipe.image_processor.size == {"height": 32, "width": 32}
    assert tuple(pipe.image_processor.image_mean) == IMAGENET_MEAN


@pytest.mark.slow
def test_saved_pipeline_runs_in_a_fresh_process_without_the_package(tmp_path, pipe, sample_photos, multi_face):
    folder, work_dir = tmp_path / "qface-pipeline", tmp_path / "elsewhere"
    work_dir.mkdir()
    pipe.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "face-analysis": {"impl": "pipeline_qface.FaceAnalysisPipeline", "pt": ["AutoModel"], "type": "image"}
    }
    code = {"pipeline_qface.py", "image_loading_qface.py", "face_alignment_qface.py", "image_processing_qface.py"}
    assert code | {"preprocessor_config.json", "modeling_qface.py"} <= {p.name for p in folder.iterdir()}

    photo = str(sample_photos["multi_face.jpg"])
    # Reference: the saved folder loaded here. Weights read back from safetensors can take other float32 kernel
    # paths than the freshly built model's, so the bit-exact comparison is between two loads of the same folder.
    reloaded = pipeline("face-analysis", model=str(folder))(photo)  # the installed code: no remote code asked for
    assert type(pipeline("face-analysis", model=str(folder))) is FaceAnalysisPipeline
    _, original = multi_face
    assert_same_faces(reloaded, original, tolerance=1e-5)
    (tmp_path / "expected.json").write_text(json.dumps(reloaded))
    script = textwrap.dedent(
        f"""
        import json, sys
        for name in ("modeling_qface", "configuration", "training"):
            sys.modules[name] = None  # the repo is pip-installed (editable): block it like a missing package
        from transformers import pipeline
        pipe = pipeline("face-analysis", model={str(folder)!r}, trust_remote_code=True)
        assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
        faces = pipe({photo!r})
        assert faces == json.loads(open({str(tmp_path / "expected.json")!r}).read())
        print("FRESH-OK", type(pipe).__name__, len(faces))
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=work_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FRESH-OK FaceAnalysisPipeline 5" in result.stdout
