"""Training data prepared into the Q-Face crop: the same crop as the pipeline's, pose labels in the crop's frame."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from transformers import pipeline

from modeling_qface import QFaceModel, load_preset
from modeling_qface.model.face_alignment_qface import FaceCrop, locate_faces
from modeling_qface.model.head_pose_qface import rotate_pose_in_plane
from modeling_qface.registry import register_face_analysis_pipeline
from modeling_qface.training.data import DataFormatError, load_source, prepare_source
from modeling_qface.training.data.face_crops import protocol_box_crop
from modeling_qface.training.data.landmarks import five_points_from_68


@pytest.fixture(scope="module")
def tiny_pipe():
    torch.manual_seed(0)
    register_face_analysis_pipeline()
    return pipeline("face-analysis", model=QFaceModel(load_preset("qface-tiny")).eval())


def write_folder(root, records: list[dict], photos: dict) -> None:
    """An image_folder source: `photos` {file name: source path or RGB array} and metadata records."""
    root.mkdir(parents=True, exist_ok=True)
    for name, photo in photos.items():
        if isinstance(photo, np.ndarray):
            Image.fromarray(photo).save(root / name)
        else:
            shutil.copy(photo, root / name)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def crop_pixels(row) -> np.ndarray:
    return np.asarray(row["image"].convert("RGB"))


def test_training_crop_is_byte_identical_to_the_pipeline_crop(tmp_path, sample_photos, tiny_pipe):
    face_crop = FaceCrop.from_config(tiny_pipe.model.config)
    group = sample_photos["multi_face.jpg"]
    seen = tiny_pipe(str(group), output_attentions=True)
    portrait = tiny_pipe(str(sample_photos["45-m7-di-ph.jpg"]), output_attentions=True)
    records = [
        {"file_name": "group.jpg", "landmarks": seen[2]["landmarks"]},  # the dataset's own landmarks
        {"file_name": "group.jpg", "box": seen[3]["box"]},  # the dataset's box: the detector picks that face
        {"file_name": "portrait.jpg"},  # nothing given: the detector, largest face
    ]
    write_folder(tmp_path / "faces", records, {"group.jpg": group, "portrait.jpg": sample_photos["45-m7-di-ph.jpg"]})
    dataset, report = prepare_source(
        "image_folder", tmp_path / "faces", "all", cache_dir=tmp_path / "cache", face_crop=face_crop
    )
    assert dataset["crop_method"] == ["landmarks", "detector", "detector"]
    assert report.crops == {"landmarks": 1, "detector": 2}
    expected = [seen[2]["attention"]["crop"], seen[3]["attention"]["crop"], portrait[0]["attention"]["crop"]]
    for row, crop in zip(dataset, expected):
        assert np.array_equal(crop_pixels(row), crop)  # same function, same pixels, byte for byte
    assert dataset[0]["photo"].endswith("group.jpg") and dataset[0]["crop_angle"] != 0.0


def test_head_pose_labels_are_carried_into_the_crop_frame(tmp_path, sample_photos):
    rgb = np.asarray(Image.open(sample_photos["0-f1-su-ph.jpg"]).convert("RGB"))
    landmarks = locate_faces(rgb)[0].landmarks
    tilted = np.asarray(Image.fromarray(rgb).rotate(30, resample=Image.Resampling.BICUBIC))  # same size, same centre
    a, centre = math.radians(30), np.array([256.0, 256.0])
    rotation = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # anticlockwise, y down
    tilted_landmarks = (landmarks - centre) @ rotation.T + centre
    photo_pose = [20.0, -10.0, -30.0]  # the labelled pose, in the photo's frame
    records = [{"file_name": "tilted.png", "landmarks": tilted_landmarks.tolist(), "head_pose": photo_pose}]
    write_folder(tmp_path / "faces", records, {"tilted.png": tilted})
    (row,) = load_source(
        "image_folder", tmp_path / "faces", "all", cache_dir=tmp_path / "cache", face_crop=FaceCrop(size=64)
    )
    upright_angle = FaceCrop(size=64)(rgb, landmarks).angle
    assert row["crop_angle"] == pytest.approx(upright_angle - 30.0, abs=1e-4)  # the crop undoes the 30 degrees
    np.testing.assert_allclose(row["head_pose"], rotate_pose_in_plane(photo_pose, row["crop_angle"]), atol=1e-4)
    # Back in the photo's frame the label is the one written, exactly.
    np.testing.assert_allclose(rotate_pose_in_plane(row["head_pose"], -row["crop_angle"]), photo_pose, atol=1e-4)


def test_pose_dataset_crops_from_its_landmarks_or_the_protocol_box(tmp_path, sample_photos):
    rgb = np.asarray(Image.open(sample_photos["0-f15-hao-ph.jpg"]).convert("RGB"))
    five = locate_faces(rgb)[0].landmarks
    # 68 points whose 5-point reduction is `five` (the eyes' 6 points all on the eye centre).
    points = np.zeros((68, 2))
    points[36:42], points[42:48], points[30], points[48], points[54] = five[0], five[1], five[2], five[3], five[4]
    root = tmp_path / "AFLW2000"
    root.mkdir()
    Image.fromarray(rgb).save(root / "image00002.jpg", quality=98)
    pt2d = np.stack([np.linspace(150, 350, 21), np.linspace(180, 420, 21)])  # AFLW's 21 points, 2 x 21
    pose = [math.radians(-10), math.radians(25), math.radians(4)]  # pitch, yaw, roll
    scipy.io.savemat(
        root / "image00002.mat",
        {"Pose_Para": np.array([[*pose, 0, 0, 0, 1.0]]), "pt3d_68": np.c_[points, np.zeros(68)].T, "pt2d": pt2d},
    )
    crop = FaceCrop(size=64)
    (qface,) = load_source("aflw2000", root, "test", cache_dir=tmp_path / "cache", face_crop=crop)
    assert qface["crop_method"] == "landmarks"
    photo_pose = [25.0, -10.0, 4.0]
    np.testing.assert_allclose(qface["head_pose"], rotate_pose_in_plane(photo_pose, qface["crop_angle"]), atol=1e-4)
    expected = crop(np.asarray(Image.open(root / "image00002.jpg").convert("RGB")), five_points_from_68(points))
    assert np.array_equal(crop_pixels(qface), expected.crop)
    (loose,) = load_source("aflw2000", root, "test", cache_dir=tmp_path / "cache", face_crop=crop, crop="loose")
    assert loose["crop_method"] == "protocol box" and loose["crop_angle"] == 0.0
    np.testing.assert_allclose(loose["head_pose"], photo_pose, atol=1e-4)  # no rotation: the photo's frame
    assert crop_pixels(loose).shape == (64, 64, 3)


def test_protocol_box_crop_is_resize_256_centre_crop_224():
    image = np.zeros((300, 400, 3), np.uint8)
    image[100:200, 150:230] = 255  # an 80 x 100 white box
    crop = protocol_box_crop(image, [150, 100, 230, 200], 224)
    # Shorter side (80) -> 256, so the 100 px height -> 320; the centre 224 rows and columns are all box.
    assert crop.shape == (224, 224, 3) and crop.min() == 255


def test_no_face_found_is_counted_reported_and_falls_back_to_the_central_square(tmp_path, caplog):
    noise = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)
    write_folder(tmp_path / "faces", [{"file_name": "noise.png", "age": 30}], {"noise.png": noise})
    (row,), report = prepare_source(
        "image_folder", tmp_path / "faces", "all", cache_dir=tmp_path / "cache", face_crop=FaceCrop(size=32)
    )
    assert row["crop_method"] == "no face found" and report.crops == {"no face found": 1}
    assert report.no_face_examples[0].endswith("noise.png") and "no face found" in report.summary()
    assert np.array_equal(crop_pixels(row), FaceCrop(size=32).central(noise).crop)  # the 60 x 60 central square


def test_an_unreadable_image_is_a_bad_record_naming_the_file(tmp_path, sample_photos):
    data = open(sample_photos["0-f1-su-ph.jpg"], "rb").read()
    root = tmp_path / "faces"
    write_folder(
        root, [{"file_name": "ok.jpg"}, {"file_name": "broken.jpg"}], {"ok.jpg": sample_photos["0-f1-su-ph.jpg"]}
    )
    (root / "broken.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match=r"broken\.jpg: cannot read the image"):
        prepare_source("image_folder", root, "all", cache_dir=tmp_path / "cache", face_crop=FaceCrop(size=32))
    dataset, report = prepare_source(
        "image_folder", root, "all", cache_dir=tmp_path / "cache", on_error="skip", face_crop=FaceCrop(size=32)
    )
    assert len(dataset) == 1 and report.skipped == 1 and "broken.jpg" in report.skipped_examples[0]


def test_jpeg_crops_are_close_to_the_lossless_ones(tmp_path, sample_photos):
    write_folder(tmp_path / "faces", [{"file_name": "p.jpg"}], {"p.jpg": sample_photos["0-f1-su-ph.jpg"]})
    crops = {}
    for crop_format in ("png", "jpeg"):
        (row,) = load_source(
            "image_folder",
            tmp_path / "faces",
            "all",
            cache_dir=tmp_path / "cache",
            face_crop=FaceCrop(size=112),
            crop_format=crop_format,
        )
        crops[crop_format] = crop_pixels(row).astype(float)
    assert np.abs(crops["png"] - crops["jpeg"]).mean() < 3.0
    with pytest.raises(ValueError, match="crop_format"):
        prepare_source("image_folder", tmp_path / "faces", "all", cache_dir=tmp_path / "c2", crop_format="webp")


def test_evaluation_scores_head_pose_in_the_photos_frame(tmp_path, sample_photos):
    from modeling_qface.model.image_processing_qface import build_image_processor
    from modeling_qface.training.evaluation import predict, to_photo_frame

    rgb = np.asarray(Image.open(sample_photos["0-f1-su-ph.jpg"]).convert("RGB"))
    landmarks = locate_faces(rgb)[0].landmarks
    records, photos = [], {}
    for degrees in (0, 25, -40):  # the same face tilted in the photo: its crop undoes the tilt
        tilted = np.asarray(Image.fromarray(rgb).rotate(degrees, resample=Image.Resampling.BICUBIC))
        a = math.radians(degrees)
        rotation = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        moved = (landmarks - 256.0) @ rotation.T + 256.0
        photo_pose = [15.0, 5.0, -float(degrees)]
        photos[f"t{degrees}.png"] = tilted
        records.append({"file_name": f"t{degrees}.png", "landmarks": moved.tolist(), "head_pose": photo_pose})
    write_folder(tmp_path / "faces", records, photos)
    torch.manual_seed(0)
    model = QFaceModel(load_preset("qface-tiny")).eval()
    dataset = load_source(
        "image_folder",
        tmp_path / "faces",
        "all",
        cache_dir=tmp_path / "cache",
        face_crop=FaceCrop.from_config(model.config),
    )
    assert abs(dataset["crop_angle"][1] - dataset["crop_angle"][0] + 25) < 1e-3  # the crops differ by the tilt
    predictions, references = predict(model, dataset, model.config, build_image_processor(model.config), 2, "cpu")
    # The labels come back in the photo's frame exactly; the predictions too, turned by each crop's angle.
    np.testing.assert_allclose(references["head_pose"], [r["head_pose"] for r in records], atol=1e-3)
    with torch.no_grad():
        pixel_values = build_image_processor(model.config)([row["image"] for row in dataset], return_tensors="pt")
        in_crop = model(pixel_values["pixel_values"]).head_pose.numpy()
    np.testing.assert_allclose(predictions["head_pose"], to_photo_frame(in_crop, dataset["crop_angle"]), atol=1e-3)
    assert np.abs(predictions["head_pose"] - in_crop).max() > 5  # the frame change is not a no-op here
    # Missing labels stay missing.
    assert np.isnan(to_photo_frame(np.array([[np.nan] * 3, [1.0, 2.0, 3.0]]), [10.0, 0.0])[0]).all()
