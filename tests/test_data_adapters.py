# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Benchmark adapters: every label lands where it should, splits follow the protocols, bad files fail loudly."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from datasets import Image as ImageFeature
from datasets import concatenate_datasets

from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES
from modeling_qface.training.data import (
    BP4D_PARTS,
    DISFA_PARTS,
    FEATURES,
    DataFormatError,
    build_adapter,
    carve,
    load_source,
    prepare_source,
    read_rows,
)
from modeling_qface.training.data.landmarks import box, five_points, five_points_from_68
from modeling_qface.training.data.raf_db import RafDbSource
from modeling_qface.training.data.schema import FACE_HINT_KEYS
from tests.fixtures.benchmark_formats import (
    ibug68,
    write_age_csv,
    write_bp4d,
    write_celeba,
    write_disfa,
    write_image_folder,
    write_pose_dataset,
    write_raf_db,
    write_utkface,
)

AU = {name: i for i, name in enumerate(AU_NAMES)}
ATTR = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}


def au_of(row) -> dict[str, int]:
    return dict(zip(AU_NAMES, row["au"]))


def by_file(rows) -> dict[str, dict]:
    return {r["image"].replace("\\", "/").split("/")[-1]: r for r in rows}


def hints_of(row) -> dict:
    """The face hint keys a row carries (absent hints are absent keys, never None)."""
    assert all(row[key] is not None for key in FACE_HINT_KEYS if key in row)
    return {key: row[key] for key in FACE_HINT_KEYS if key in row}


# Five alignment points (image-left eye, image-right eye, nose tip, image-left / image-right mouth corner).
FIVE = [[30.5, 40.0], [70.0, 41.5], [50.0, 60.0], [35.0, 80.0], [66.0, 79.0]]


def near(points, tol: float = 1e-6):
    """`pytest.approx` for a list of `[x, y]` pairs (approx does not nest lists)."""
    return pytest.approx(np.asarray(points, dtype=np.float64), abs=tol)


# ------------------------------------------------------------------------------------------------------ landmarks
@pytest.mark.parametrize("layout", ["68x2", "2x68", "3x68", "68x3"])
def test_five_points_from_68_takes_eye_means_nose_tip_and_mouth_corners(layout):
    points = ibug68(FIVE)
    with_z = np.concatenate([points, np.full((68, 1), 7.0)], axis=1)
    given = {"68x2": points, "2x68": points.T, "3x68": with_z.T, "68x3": with_z}[layout]
    assert five_points_from_68(given) == near(FIVE)
    assert five_points_from_68(given.tolist()) == near(FIVE)


def test_five_points_from_68_names_a_wrong_shape_and_five_points_checks_pairs():
    with pytest.raises(ValueError, match=r"68 landmarks .*got shape \(2, 21\)"):
        five_points_from_68(np.zeros((2, 21)))  # AFLW2000's pt2d: AFLW's 21 points
    with pytest.raises(ValueError, match=r"got shape \(136,\)"):
        five_points_from_68(np.zeros(136))
    nan_nose = ibug68(FIVE)
    nan_nose[30] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        five_points_from_68(nan_nose)
    assert five_points(np.array(FIVE), "landmarks") == FIVE and five_points([tuple(p) for p in FIVE], "x") == FIVE
    for bad in (FIVE[:4], [*FIVE[:4], [1.0, float("nan")]], [*FIVE[:4], [1, True]], [*FIVE[:4], [1, 2, 3]], "x"):
        with pytest.raises(ValueError, match=r"^landmarks: expected 5 \[x, y\] pairs of finite numbers, got"):
            five_points(bad, "landmarks")
    assert box([1, 2, 3.5, 4], "box") == [1.0, 2.0, 3.5, 4.0]
    with pytest.raises(ValueError, match=r"^box: expected x1 < x2 and y1 < y2"):
        box([5, 2, 3, 4], "box")
    with pytest.raises(ValueError, match=r"^face_box: expected \[x1, y1, x2, y2\] finite numbers"):
        box([1, 2, 3], "face_box")


# ------------------------------------------------------------------------------------------------------ RAF-DB
RAF_LABELS = {"train_00001.jpg": 5, "train_00002.jpg": 1, "train_00003.jpg": 7, "test_0001.jpg": 4, "test_0002.jpg": 6}


def test_raf_db_labels_official_split_and_aligned_paths(tmp_path):
    root = write_raf_db(tmp_path, RAF_LABELS)
    trainval, report = read_rows("raf_db", root, "trainval")
    test, _ = read_rows("raf_db", root, "test")
    assert report.num_rows == 3 and report.skipped == 0
    rows = by_file(trainval + test)
    assert set(rows) == {n.replace(".jpg", "_aligned.jpg") for n in RAF_LABELS}
    assert rows["train_00001_aligned.jpg"]["expression"] == EXPRESSION_NAMES.index("sadness") == 4  # label 5
    assert rows["train_00002_aligned.jpg"]["expression"] == EXPRESSION_NAMES.index("surprise") == 0  # label 1
    assert rows["train_00003_aligned.jpg"]["expression"] == EXPRESSION_NAMES.index("neutral") == 6  # label 7
    assert rows["test_0001_aligned.jpg"]["expression"] == 3 and rows["test_0002_aligned.jpg"]["expression"] == 5
    row = rows["test_0001_aligned.jpg"]
    assert row["au"] == [-1] * 15 and row["attributes"] == [-1] * 40
    assert row["age"] is None and row["head_pose"] is None
    assert row["source"] == "raf_db" and row["subject_id"] == ""
    original, _ = read_rows("raf_db", tmp_path, "test", aligned=False)  # the parent of basic/ works too
    assert sorted(by_file(original)) == ["test_0001.jpg", "test_0002.jpg"]


def test_raf_db_val_is_a_deterministic_seeded_part_of_train(tmp_path):
    labels = {f"train_{i:05d}.jpg": 1 + i % 7 for i in range(1, 21)}
    root = write_raf_db(tmp_path, labels)
    names = {}
    for split in ("train", "val", "trainval"):
        names[split] = {r["image"] for r in read_rows("raf_db", root, split, val_fraction=0.25)[0]}
    assert len(names["val"]) == 5 and len(names["train"]) == 15
    assert names["train"].isdisjoint(names["val"]) and names["train"] | names["val"] == names["trainval"]
    again = {r["image"] for r in read_rows("raf_db", root, "val", val_fraction=0.25)[0]}
    other_seed = {r["image"] for r in read_rows("raf_db", root, "val", val_fraction=0.25, seed=1)[0]}
    assert again == names["val"] and other_seed != names["val"]


def test_raf_db_bad_lines_raise_with_file_and_line_or_are_skipped_and_counted(tmp_path):
    root = write_raf_db(
        tmp_path,
        {"train_00001.jpg": 5, "train_00002.jpg": 2},
        missing_images=["train_00002.jpg"],
        extra_lines=["train_00003.jpg 8", "train_00004.jpg"],
    )
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    expected = r"list_patition_label\.txt, line 3: label: expected 1..7, got '8'"
    with pytest.raises(DataFormatError, match=expected) as info:
        read_rows("raf_db", root, "trainval")
    assert info.value.path == str(label_file) and info.value.line_no == 3
    rows, report = read_rows("raf_db", root, "trainval", on_error="skip")
    assert [r["expression"] for r in rows] == [4]
    assert report.skipped == 3 and report.num_rows == 1
    assert any("line 4" in m and "expected '<file_name> <label>'" in m for m in report.skipped_examples)
    assert any("line 2" in m and "image not found" in m for m in report.skipped_examples)


def test_raf_db_original_images_take_the_manual_landmarks(tmp_path):
    points = {"train_00001.jpg": FIVE, "test_0001.jpg": [[x + 1, y + 2] for x, y in FIVE]}
    root = write_raf_db(tmp_path, RAF_LABELS, manual_landmarks=points)
    original = by_file(read_rows("raf_db", root, "trainval", aligned=False)[0])
    assert hints_of(original["train_00001.jpg"]) == {"face_landmarks": near(FIVE)}
    assert hints_of(original["train_00002.jpg"]) == {}  # no annotation file: no hint, not an error
    test = by_file(read_rows("raf_db", root, "test", aligned=False)[0])
    assert test["test_0001.jpg"]["face_landmarks"] == near(points["test_0001.jpg"])
    aligned = read_rows("raf_db", root, "trainval")[0]  # the 100x100 aligned faces: the detector runs
    assert [hints_of(r) for r in aligned] == [{}, {}, {}]
    manual = root / "Annotation" / "manual" / "train_00001_manu_attri.txt"
    assert str(manual) in str(build_adapter("raf_db", root, aligned=False).fingerprint_inputs("trainval"))
    manual.write_text("30.5\t40\n70\t41.5\n50\tnose\n35\t80\n66\t79\n1\n2\n2\n")
    with pytest.raises(DataFormatError, match=r"train_00001_manu_attri\.txt, line 3: landmark 3: expected 'x y'"):
        read_rows("raf_db", root, "trainval", aligned=False)
    rows, report = read_rows("raf_db", root, "trainval", aligned=False, on_error="skip")
    assert len(rows) == 2 and report.skipped == 1
    manual.write_text("30.5 40\n70 41.5\n")  # truncated
    with pytest.raises(DataFormatError, match=r"manu_attri\.txt: landmarks \(lines 1-5\): expected 5 \[x, y\]"):
        read_rows("raf_db", root, "trainval", aligned=False)


# ------------------------------------------------------------------------------------------------------ CelebA
def _attrs(present: set[str]) -> list[int]:
    return [1 if name in present else -1 for name in ATTRIBUTE_NAMES]


@pytest.mark.parametrize("layout", ["drive", "flat"])
def test_celeba_attributes_minus_one_is_absent_and_official_partition(tmp_path, layout):
    attributes = {
        "000001.jpg": _attrs({"Smiling", "Young", "Arched_Eyebrows"}),
        "000002.jpg": _attrs(set()),
        "000003.jpg": _attrs(set(ATTRIBUTE_NAMES)),
        "000004.jpg": _attrs({"5_o_Clock_Shadow", "Male"}),
    }
    partition = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 1, "000004.jpg": 2}
    identities = {"000001.jpg": 2880, "000002.jpg": 17}
    root = write_celeba(tmp_path, attributes, partition, identities=identities, layout=layout)
    splits = {s: by_file(read_rows("celeba", root, s)[0]) for s in ("train", "val", "test")}
    assert {s: sorted(r) for s, r in splits.items()} == {
        "train": ["000001.jpg", "000002.jpg"],
        "val": ["000003.jpg"],
        "test": ["000004.jpg"],
    }
    first = splits["train"]["000001.jpg"]["attributes"]
    assert [ATTRIBUTE_NAMES[i] for i, v in enumerate(first) if v == 1] == ["Arched_Eyebrows", "Smiling", "Young"]
    assert first.count(0) == 37 and -1 not in first
    assert splits["train"]["000002.jpg"]["attributes"] == [0] * 40
    assert splits["val"]["000003.jpg"]["attributes"] == [1] * 40
    test_row = splits["test"]["000004.jpg"]
    assert test_row["attributes"][ATTR["5_o_Clock_Shadow"]] == 1 and test_row["attributes"][ATTR["Male"]] == 1
    assert sum(test_row["attributes"]) == 2
    assert splits["train"]["000001.jpg"]["subject_id"] == "2880" and test_row["subject_id"] == ""
    assert test_row["expression"] == -1 and test_row["au"] == [-1] * 15 and test_row["age"] is None


def test_celeba_header_must_match_attribute_names_even_when_skipping(tmp_path):
    names = list(ATTRIBUTE_NAMES)
    names[2], names[3] = names[3], names[2]
    root = write_celeba(tmp_path, {"000001.jpg": _attrs(set())}, {"000001.jpg": 0}, names=names)
    with pytest.raises(DataFormatError, match=r"line 2: attribute names differ .*column 3 is 'Bags_Under_Eyes'"):
        read_rows("celeba", root, "train", on_error="skip")


def test_celeba_bad_value_and_truncated_file(tmp_path):
    bad = _attrs(set())
    bad[ATTR["Bald"]] = 0  # CelebA codes absence as -1, so a 0 means a corrupt line
    partition = {"000001.jpg": 0, "000002.jpg": 0}
    root = write_celeba(tmp_path, {"000001.jpg": _attrs({"Bald"}), "000002.jpg": bad}, partition)
    with pytest.raises(DataFormatError, match=r"list_attr_celeba\.txt, line 4: Bald: expected 1 or -1, got '0'"):
        read_rows("celeba", root, "train")
    rows, report = read_rows("celeba", root, "train", on_error="skip")
    assert len(rows) == 1 and rows[0]["attributes"][ATTR["Bald"]] == 1 and report.skipped == 1
    truncated = write_celeba(tmp_path / "t", {"000001.jpg": _attrs(set())}, {"000001.jpg": 0}, declared_count=5)
    with pytest.raises(DataFormatError, match="line 1: header declares 5 images but the file lists 1"):
        read_rows("celeba", truncated, "train", on_error="skip")


CELEBA_LANDMARKS = {"000001.jpg": [69, 109, 106, 113, 77, 142, 73, 152, 108, 154], "000002.jpg": [1, 2] * 5}


@pytest.mark.parametrize("layout", ["drive", "flat"])
def test_celeba_aligned_landmarks_become_face_landmarks(tmp_path, layout):
    attributes = {n: _attrs(set()) for n in ("000001.jpg", "000002.jpg", "000003.jpg")}
    partition = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 2}
    boxes = {"000001.jpg": [95, 71, 226, 313]}  # in-the-wild boxes: not for the aligned crops
    landmarks = {**CELEBA_LANDMARKS, "000003.jpg": [5] * 10}
    root = write_celeba(tmp_path, attributes, partition, layout=layout, landmarks=landmarks, boxes=boxes)
    rows = by_file(read_rows("celeba", root, "train")[0])
    # CelebA's "lefteye" is the image-left eye (smaller x): the same order as Q-Face's.
    expected = [[69.0, 109.0], [106.0, 113.0], [77.0, 142.0], [73.0, 152.0], [108.0, 154.0]]
    assert hints_of(rows["000001.jpg"]) == {"face_landmarks": expected}
    assert rows["000002.jpg"]["face_landmarks"] == [[1.0, 2.0]] * 5
    anno = "Anno/" if layout == "drive" else ""
    inputs = str(build_adapter("celeba", root).fingerprint_inputs("train"))
    assert f"{anno}list_landmarks_align_celeba.txt" in inputs and "list_bbox_celeba.txt" not in inputs
    plain = write_celeba(tmp_path / "plain", attributes, partition, layout=layout)  # no landmark file: no hint
    assert [hints_of(r) for r in read_rows("celeba", plain, "train")[0]] == [{}, {}]


@pytest.mark.parametrize("layout", ["drive", "flat"])
def test_celeba_in_the_wild_images_take_their_landmarks_and_boxes(tmp_path, layout):
    attributes = {"000001.jpg": _attrs({"Male"}), "000002.jpg": _attrs(set())}
    partition = {"000001.jpg": 0, "000002.jpg": 0}
    boxes = {"000001.jpg": [95, 71, 226, 313], "000002.jpg": [72, 94, 221, 306]}
    root = write_celeba(
        tmp_path,
        attributes,
        partition,
        layout=layout,
        landmarks={"000001.jpg": CELEBA_LANDMARKS["000001.jpg"]},
        boxes=boxes,
        in_the_wild=True,
    )
    image_dir = "Img/img_celeba" if layout == "drive" else "img_celeba"
    rows = by_file(read_rows("celeba", root, "train", image_dir=image_dir)[0])
    assert rows["000001.jpg"]["image"].endswith(f"{image_dir}/000001.jpg")
    assert hints_of(rows["000001.jpg"]) == {
        "face_landmarks": [[69.0, 109.0], [106.0, 113.0], [77.0, 142.0], [73.0, 152.0], [108.0, 154.0]],
        "face_box": [95.0, 71.0, 95.0 + 226.0, 71.0 + 313.0],
    }
    assert hints_of(rows["000002.jpg"]) == {"face_box": [72.0, 94.0, 293.0, 400.0]}
    inputs = str(build_adapter("celeba", root, image_dir=image_dir).fingerprint_inputs("train"))
    assert "list_landmarks_celeba.txt" in inputs and "list_bbox_celeba.txt" in inputs


def test_celeba_bad_landmark_lines_are_reported_and_a_wrong_header_raises(tmp_path):
    attributes = {"000001.jpg": _attrs(set()), "000002.jpg": _attrs(set())}
    partition = {"000001.jpg": 0, "000002.jpg": 0}
    landmarks = {"000001.jpg": CELEBA_LANDMARKS["000001.jpg"], "000002.jpg": [69, 109, 106, 113, 77, 142, 73, 152]}
    root = write_celeba(tmp_path, attributes, partition, landmarks=landmarks)
    landmark_file = root / "Anno" / "list_landmarks_align_celeba.txt"
    with pytest.raises(DataFormatError, match=r"list_landmarks_align_celeba\.txt, line 4: expected a file name and 10"):
        read_rows("celeba", root, "train")
    rows, report = read_rows("celeba", root, "train", on_error="skip")
    assert list(by_file(rows)) == ["000001.jpg"] and report.skipped == 1
    landmark_file.write_text(landmark_file.read_text().replace("  154", "  1x4"))
    with pytest.raises(DataFormatError, match=r"line 3: rightmouth_y: expected a number, got '1x4'"):
        read_rows("celeba", root, "train")
    landmark_file.write_text(landmark_file.read_text().replace("lefteye_x lefteye_y", "lefteye_y lefteye_x"))
    with pytest.raises(DataFormatError, match=r"line 2: column names differ .*column 1 is 'lefteye_y'"):
        read_rows("celeba", root, "train", on_error="skip")
    boxes = write_celeba(
        tmp_path / "w", attributes, partition, boxes={"000001.jpg": [1, 2, 0, 4]}, in_the_wild=True
    )  # a zero width; and the box file lists 1 image, the attribute file 2 (fine: no box, no hint)
    with pytest.raises(DataFormatError, match=r"list_bbox_celeba\.txt, line 3: width, height: expected positive"):
        read_rows("celeba", boxes, "train", image_dir="Img/img_celeba")
    box_file = boxes / "Anno" / "list_bbox_celeba.txt"
    box_file.write_text(box_file.read_text().replace("1\n", "3\n", 1))
    with pytest.raises(DataFormatError, match=r"list_bbox_celeba\.txt, line 1: header declares 3 images but the file"):
        read_rows("celeba", boxes, "train", image_dir="Img/img_celeba", on_error="skip")


# ------------------------------------------------------------------------------------------------------ BP4D
@pytest.fixture(scope="module")
def bp4d(tmp_path_factory):
    overrides = {("F001", "T1", 1): {1: 1, 2: 0, 4: 9, 9: 1, 24: 1, 25: 1, 26: 0}}
    return write_bp4d(tmp_path_factory.mktemp("bp4d"), overrides=overrides)


def test_bp4d_au_columns_map_to_au_names_and_nine_is_missing(bp4d):
    root, written = bp4d
    rows, _ = read_rows("bp4d", root, "test", fold=3)  # fold 3 tests on part 1, which holds F001
    row = next(r for r in rows if r["image"].endswith("F001/T1/0001.jpg"))
    au = au_of(row)
    assert (au["AU1"], au["AU2"], au["AU4"], au["AU24"]) == (1, 0, -1, 1)
    assert au["AU9"] == au["AU25"] == au["AU26"] == -1  # coded in the CSV, but not BP4D protocol AUs
    assert row["subject_id"] == "F001" and row["source"] == "bp4d"
    for row in rows:  # every frame, every protocol AU: exactly the written value (9 -> -1)
        subject, task, frame = row["image"].split("/")[-3:]
        values = written[(subject, task, int(frame[:4]))]
        expected = {f"AU{n}": -1 for n in (9, 25, 26)}
        protocol = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
        expected.update({f"AU{n}": -1 if values[n] == 9 else values[n] for n in protocol})
        assert au_of(row) == expected


def test_bp4d_three_folds_are_subject_exclusive_with_protocol_sizes(bp4d):
    root, _ = bp4d
    all_subjects = {s for part in BP4D_PARTS for s in part}
    assert len(all_subjects) == 41
    for fold, test_part in ((1, 2), (2, 1), (3, 0)):
        train = {r["subject_id"] for r in read_rows("bp4d", root, "train", fold=fold)[0]}
        test_rows, _ = read_rows("bp4d", root, "test", fold=fold)
        test = {r["subject_id"] for r in test_rows}
        assert test == set(BP4D_PARTS[test_part]) and train == all_subjects - test
        assert len(test_rows) == len(BP4D_PARTS[test_part]) * 8 * 2  # subjects x tasks x frames
    assert len(read_rows("bp4d", root, "all")[0]) == 41 * 8 * 2


def test_bp4d_bad_value_missing_image_and_missing_label_file(tmp_path, monkeypatch):
    from modeling_qface.training.data.au_datasets import BP4DSource

    monkeypatch.setattr(BP4DSource, "parts", (("F001",), ("M001",), ("F002",)))  # a 3-subject protocol
    overrides = {("F001", "T2", 2): {12: 2}}
    root, _ = write_bp4d(tmp_path, overrides=overrides, frame_header="0", subjects=["F001", "M001", "F002"])
    (root / "BP4D-training" / "M001" / "T8" / "0001.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"F001_T2\.csv, line 3: AU12: expected 0, 1 or 9, got '2'"):
        read_rows("bp4d", root, "all")
    rows, report = read_rows("bp4d", root, "all", on_error="skip")
    assert len(rows) == 3 * 8 * 2 - 2 and report.skipped == 2
    assert any("M001_T8.csv, line 2: image not found" in m for m in report.skipped_examples)
    (root / "AUCoding" / "AU_OCC" / "F002_T5.csv").unlink()
    with pytest.raises(DataFormatError, match=r"F002_T5\.csv: label file not found"):
        read_rows("bp4d", root, "test", fold=1, on_error="skip")


# ------------------------------------------------------------------------------------------------------ DISFA
@pytest.fixture(scope="module")
def disfa(tmp_path_factory):
    overrides = {("SN001", 1): {1: 2, 2: 1, 4: 5, 5: 5, 6: 0, 9: 3, 12: 2, 15: 4, 17: 5, 20: 3, 25: 0, 26: 4}}
    return write_disfa(tmp_path_factory.mktemp("disfa"), overrides=overrides)


def test_disfa_intensity_threshold_and_au_mapping(disfa):
    root, written = disfa
    rows, _ = read_rows("disfa", root, "test", fold=3)  # part 1 holds SN001
    row = next(r for r in rows if r["image"].endswith("SN001/0.png"))  # label frame 1 -> extracted frame 0
    assert au_of(row) == {
        "AU1": 1,
        "AU2": 0,
        "AU4": 1,
        "AU6": 0,
        "AU7": -1,
        "AU9": 1,
        "AU10": -1,
        "AU12": 1,
        "AU14": -1,
        "AU15": -1,
        "AU17": -1,
        "AU23": -1,
        "AU24": -1,
        "AU25": 0,
        "AU26": 1,
    }
    for row in rows:
        subject, image = row["image"].split("/")[-2:]
        values = written[(subject, int(image.split(".")[0]) + 1)]
        assert [row["au"][AU[f"AU{n}"]] for n in (1, 2, 4, 6, 9, 12, 25, 26)] == [
            int(values[n] >= 2) for n in (1, 2, 4, 6, 9, 12, 25, 26)
        ]
    strict, _ = read_rows("disfa", root, "test", fold=3, threshold=5)
    assert au_of(next(r for r in strict if r["image"].endswith("SN001/0.png")))["AU1"] == 0


def test_disfa_three_folds_are_subject_exclusive(disfa):
    root, _ = disfa
    for fold, test_part in ((1, 2), (2, 1), (3, 0)):
        test_rows, _ = read_rows("disfa", root, "test", fold=fold)
        train = {r["subject_id"] for r in read_rows("disfa", root, "train", fold=fold)[0]}
        assert {r["subject_id"] for r in test_rows} == set(DISFA_PARTS[test_part])
        assert train.isdisjoint(DISFA_PARTS[test_part]) and len(train) == 18
        assert len(test_rows) == 9 * 3


def test_disfa_bad_intensity_and_frame_missing_from_one_au_file(tmp_path, monkeypatch):
    from modeling_qface.training.data.au_datasets import DISFASource

    monkeypatch.setattr(DISFASource, "parts", (("SN001",), ("SN002",), ("SN003",)))
    root, _ = write_disfa(tmp_path, overrides={("SN002", 2): {6: 7}})
    au9 = root / "ActionUnit_Labels" / "SN003" / "SN003_au9.txt"
    au9.write_text("1,3\n2,0\n")  # frame 3 has no AU9 label
    with pytest.raises(DataFormatError, match=r"SN002_au6\.txt, line 2: intensity: expected 0..5, got 7"):
        read_rows("disfa", root, "all")
    rows, report = read_rows("disfa", root, "all", on_error="skip")
    assert report.skipped == 1 and len(rows) == 3 * 3 - 1
    assert not any(r["image"].endswith("SN002/1.png") for r in rows)  # the frame with the bad line is dropped
    frame3 = next(r for r in rows if r["image"].endswith("SN003/2.png"))
    assert au_of(frame3)["AU9"] == -1 and au_of(frame3)["AU1"] in (0, 1)


# ------------------------------------------------------------------------------------------------------ age
def test_utkface_age_from_file_name_and_seeded_splits(tmp_path):
    names = [
        "25_0_1_20170116174525125.jpg.chip.jpg",
        "1_1_2_20161219203650636.jpg.chip.jpg",
        "39_1_20170116174525125.jpg.chip.jpg",  # an official file without the race field
        "116_1_0_20170120134921760.jpg.chip.jpg",
        *(f"{30 + i}_0_0_2017011{i}000000000.jpg.chip.jpg" for i in range(6)),
    ]
    root = write_utkface(tmp_path, names)
    rows = by_file(read_rows("utkface", root, "all")[0])
    assert len(rows) == 10 and rows[names[0]]["age"] == 25.0 and rows[names[1]]["age"] == 1.0
    assert rows[names[2]]["age"] == 39.0 and rows[names[3]]["age"] == 116.0 and rows[names[0]]["expression"] == -1
    parts = {s: set(by_file(read_rows("utkface", root, s)[0])) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert parts["train"] | parts["val"] | parts["test"] == set(names)
    (root / "not_a_face.jpg").write_bytes((root / names[0]).read_bytes())
    with pytest.raises(DataFormatError, match=r"not_a_face\.jpg: file name is not"):
        read_rows("utkface", root, "all")
    assert read_rows("utkface", root, "all", on_error="skip")[1].skipped == 1


def test_age_csv_columns_split_column_and_errors(tmp_path):
    rows = [["a.jpg", 23, "train"], ["b.jpg", 41.5, "test"], ["c.jpg", 60, "train"]]
    root = write_age_csv(tmp_path, ["file_name", "age", "split"], rows)
    test = read_rows("age_csv", root, "test", source_name="morph2")[0]
    assert [(r["image"].endswith("b.jpg"), r["age"], r["source"]) for r in test] == [(True, 41.5, "morph2")]
    assert [r["age"] for r in read_rows("age_csv", root, "train")[0]] == [23.0, 60.0]
    with pytest.raises(ValueError, match="the CSV's split column has"):
        read_rows("age_csv", root, "val")
    clap_rows = [["x.jpg", 30.2, 4.1], ["y.jpg", "n/a", 3]]
    clap = write_age_csv(tmp_path / "clap", ["image", "mean", "stdv"], clap_rows, image_column="image")
    with pytest.raises(DataFormatError, match=r"labels\.csv, line 3: age: expected a number of years, got 'n/a'"):
        read_rows("age_csv", clap, "all", image_column="image", age_column="mean")
    with pytest.raises(DataFormatError, match=r"line 1: missing column\(s\) \['file_name'\]"):
        read_rows("age_csv", clap, "all", age_column="mean")


def test_age_csv_without_split_column_carves_subject_exclusive_splits(tmp_path):
    rows = [[f"{s}_{k}.jpg", 20 + k, s] for s in ("s1", "s2", "s3", "s4") for k in range(3)]
    root = write_age_csv(tmp_path, ["file_name", "age", "person"], rows)
    fractions = {"train": 0.5, "test": 0.5}
    options = {"subject_column": "person", "split_fractions": fractions}
    parts = {s: read_rows("age_csv", root, s, **options)[0] for s in ("train", "test")}
    subjects = {s: {r["subject_id"] for r in rows} for s, rows in parts.items()}
    assert len(subjects["train"]) == len(subjects["test"]) == 2 and subjects["train"].isdisjoint(subjects["test"])
    assert len(parts["train"]) == len(parts["test"]) == 6


# ------------------------------------------------------------------------------------------------------ pose
def test_300w_lp_pose_para_radians_to_degrees_in_yaw_pitch_roll_order(tmp_path):
    root = write_pose_dataset(
        tmp_path,
        "300W_LP",
        {
            "AFW/AFW_134212_1_0.jpg": (0.1, -0.5, 0.25),  # pitch, yaw, roll (radians)
            "AFW_Flip/AFW_134212_1_0.jpg": (0.1, 0.5, -0.25),
            "HELEN/HELEN_232194_1_12.jpg": (-0.3, 1.2, 0.0),
        },
    )
    rows = read_rows("300w_lp", root, "train")[0]
    assert len(rows) == 3
    poses = {r["image"].split("300W_LP/")[1]: r for r in rows}
    assert poses["AFW/AFW_134212_1_0.jpg"]["head_pose"] == pytest.approx([-28.6479, 5.72958, 14.3239], abs=1e-3)
    assert poses["AFW_Flip/AFW_134212_1_0.jpg"]["head_pose"] == pytest.approx([28.6479, 5.72958, -14.3239], abs=1e-3)
    helen = poses["HELEN/HELEN_232194_1_12.jpg"]
    assert helen["head_pose"] == pytest.approx([math.degrees(1.2), math.degrees(-0.3), 0.0], abs=1e-3)
    assert poses["AFW/AFW_134212_1_0.jpg"]["subject_id"] == "AFW_134212_1"
    assert poses["AFW_Flip/AFW_134212_1_0.jpg"]["subject_id"] == "AFW_134212_1"
    assert helen["subject_id"] == "HELEN_232194_1" and helen["age"] is None and helen["expression"] == -1


def test_aflw2000_keeps_only_angles_within_99_degrees_and_reports_the_dropped(tmp_path, caplog):
    deg = math.radians
    root = write_pose_dataset(
        tmp_path,
        "AFLW2000",
        {
            "image00002.jpg": (deg(10), deg(-20), deg(5)),
            "image00004.jpg": (deg(-98.9), deg(98.9), deg(0)),
            "image00006.jpg": (deg(0), deg(100.0), deg(0)),  # yaw out of range
            "image00008.jpg": (deg(-99.5), deg(0), deg(3)),  # pitch out of range
        },
    )
    with caplog.at_level(logging.WARNING, logger="modeling_qface.training.data.errors"):
        rows, report = read_rows("aflw2000", root, "test")
    assert sorted(by_file(rows)) == ["image00002.jpg", "image00004.jpg"]
    assert by_file(rows)["image00002.jpg"]["head_pose"] == pytest.approx([-20.0, 10.0, 5.0], abs=1e-4)
    assert report.filtered == {"angle outside [-99, 99] deg": 2} and report.skipped == 0
    assert "2 filtered out (angle outside [-99, 99] deg)" in caplog.text
    assert len(read_rows("aflw2000", root, "test", max_abs_degrees=None)[0]) == 4
    write_pose_dataset(tmp_path, "AFLW2000", {"image00010.jpg": None})  # an image without its .mat
    with pytest.raises(DataFormatError, match=r"image00010\.jpg: no pose file next to the image"):
        read_rows("aflw2000", root, "test")
    assert read_rows("aflw2000", root, "test", on_error="skip")[1].skipped == 1


def test_utkface_keeps_names_with_empty_or_missing_fields_and_reads_the_landmark_lists(tmp_path):
    names = [
        "part1/53__0_20170116184028385.jpg",  # empty gender field (a real UTKFace file)
        "part1/61_3_20170109150557335.jpg",  # a field missing (a real UTKFace file)
        "part2/26_1_0_20170116171048641.jpg",
        "part3/120_0_0_20170117174125656.jpg",  # MAX_AGE itself is kept
    ]
    shifted = [[x + 100, y] for x, y in FIVE]
    lists = {
        "landmark_list_part1.txt": {"53__0_20170116184028385.jpg": ibug68(FIVE).ravel()},
        "landmark_list_part2.txt": {"26_1_0_20170116171048641.jpg": ibug68(shifted, seed=1).ravel()},
    }
    root = write_utkface(tmp_path, names, landmark_lists=lists, folder="utkface_in_the_wild")
    rows = by_file(read_rows("utkface", root, "all")[0])
    ages = {name: row["age"] for name, row in rows.items()}
    assert ages == {
        "53__0_20170116184028385.jpg": 53.0,
        "61_3_20170109150557335.jpg": 61.0,
        "26_1_0_20170116171048641.jpg": 26.0,
        "120_0_0_20170117174125656.jpg": 120.0,
    }
    assert hints_of(rows["53__0_20170116184028385.jpg"]) == {"face_landmarks": near(FIVE, tol=1e-3)}
    assert rows["26_1_0_20170116171048641.jpg"]["face_landmarks"] == near(shifted, tol=1e-3)
    assert hints_of(rows["61_3_20170109150557335.jpg"]) == {}  # not listed: no hint
    inputs = str(build_adapter("utkface", root).fingerprint_inputs("all"))
    assert "landmark_list_part1.txt" in inputs and "landmark_list_part2.txt" in inputs
    for bad in ("121_0_0_20170117174125656.jpg", "x_1_0_20170117174125656.jpg", "53.jpg"):
        (root / "part3" / bad).write_bytes(b"")
    _, report = read_rows("utkface", root, "all", on_error="skip")
    assert report.skipped == 3 and all("file name is not" in m for m in report.skipped_examples)


def test_utkface_bad_landmark_line_names_file_and_line(tmp_path):
    name = "26_1_0_20170116171048641.jpg"
    coordinates = list(ibug68(FIVE).ravel())
    lists = {"landmark_list_part1.txt": {"1_0_0_20161219140623097.jpg": coordinates, name: coordinates[:-1]}}
    root = write_utkface(tmp_path, [f"part1/{name}"], landmark_lists=lists)
    with pytest.raises(DataFormatError, match=r"landmark_list_part1\.txt, line 2: expected a file name and 136 coord"):
        read_rows("utkface", root, "all")
    (root / "landmark_list_part1.txt").write_text(f"{name} " + " ".join(["1"] * 135 + ["one"]) + "\n")
    with pytest.raises(DataFormatError, match=r"line 1: coordinate 136: expected a number, got 'one'"):
        read_rows("utkface", root, "all")
    assert read_rows("utkface", root, "all", on_error="skip")[1].skipped == 1


def test_pose_landmarks_from_pt2d_of_300w_lp_and_pt3d_68_of_aflw2000(tmp_path):
    lp = write_pose_dataset(
        tmp_path,
        "300W_LP",
        {"AFW/AFW_1_1_0.jpg": (0.1, 0.2, 0.3), "AFW/AFW_1_1_1.jpg": (0.1, 0.2, 0.3)},
        variables={"AFW/AFW_1_1_0.jpg": {"pt2d": ibug68(FIVE).T}},  # 300W-LP's pt2d: 2 x 68
    )
    rows = by_file(read_rows("300w_lp", lp, "train")[0])
    assert hints_of(rows["AFW_1_1_0.jpg"]) == {"face_landmarks": near(FIVE)}
    assert hints_of(rows["AFW_1_1_1.jpg"]) == {}  # a .mat without landmarks: no hint
    pt3d_68 = np.concatenate([ibug68(FIVE).T, np.full((1, 68), -40.0)])  # 3 x 68: x, y in pixels, then z
    aflw_pt2d = np.random.default_rng(0).uniform(100, 300, size=(2, 21))  # AFLW's 21 points: not iBUG's 68
    aflw = write_pose_dataset(
        tmp_path,
        "AFLW2000",
        {"image00002.jpg": (0.1, 0.2, 0.3), "image00004.jpg": (0.1, 0.2, 0.3)},
        variables={
            "image00002.jpg": {"pt2d": aflw_pt2d, "pt3d_68": pt3d_68},
            "image00004.jpg": {"pt2d": aflw_pt2d},
        },
    )
    rows = by_file(read_rows("aflw2000", aflw, "test")[0])
    assert hints_of(rows["image00002.jpg"]) == {"face_landmarks": near(FIVE)}
    assert hints_of(rows["image00004.jpg"]) == {}  # pt2d is 2 x 21 and there is no pt3d_68
    bad = {"image00006.jpg": {"pt3d_68": aflw_pt2d}}
    write_pose_dataset(tmp_path, "AFLW2000", {"image00006.jpg": (0.1, 0.2, 0.3)}, variables=bad)
    with pytest.raises(DataFormatError, match=r"image00006\.mat: pt3d_68: expected 68 landmarks .*shape \(2, 21\)"):
        read_rows("aflw2000", aflw, "test")
    assert read_rows("aflw2000", aflw, "test", on_error="skip")[1].skipped == 1


def test_aflw2000_loose_crop_is_hopenets_box_around_pt2d(tmp_path):
    pt2d_a = np.array([[100.0, 300.0, 200.0], [150.0, 350.0, 250.0]])  # x 100..300, y 150..350
    pt2d_b = np.array([[10.5, 100.0], [20.0, 220.0]])  # x_min moves below 0: int() truncates towards 0
    variables = {"image00002.jpg": {"pt2d": pt2d_a, "pt3d_68": np.zeros((3, 68))}, "image00004.jpg": {"pt2d": pt2d_b}}
    root = write_pose_dataset(
        tmp_path, "AFLW2000", {"image00002.jpg": (0.1, 0.2, 0.3), "image00004.jpg": (0.1, 0.2, 0.3)}, variables
    )
    rows = by_file(read_rows("aflw2000", root, "test", crop="loose")[0])
    # x_min = 100 - 0.4 * 200 = 20; y_min = 150 - 0.4 * 200 = 70; then, from the moved edges:
    # x_max = 300 + 0.4 * |300 - 20| = 412; y_max = 350 + 0.12 * |350 - 70| = 383.6 -> 383
    assert hints_of(rows["image00002.jpg"]) == {"crop_box": [20.0, 70.0, 412.0, 383.0]}
    # x_min = 10.5 - 0.4 * 89.5 = -25.3 -> -25; y_min = 20 - 80 = -60; x_max = 100 + 0.4 * 125.3 = 150.12 -> 150;
    # y_max = 220 + 0.12 * 280 = 253.6 -> 253
    assert rows["image00004.jpg"]["crop_box"] == [-25.0, -60.0, 150.0, 253.0]
    assert build_adapter("aflw2000", root, crop="loose").options == {"max_abs_degrees": 99.0, "crop": "loose"}
    assert build_adapter("aflw2000", root).options["crop"] == "qface"
    with pytest.raises(ValueError, match=r"crop must be one of \('qface', 'loose'\), got 'tight'"):
        build_adapter("aflw2000", root, crop="tight")
    write_pose_dataset(tmp_path, "AFLW2000", {"image00006.jpg": (0.1, 0.2, 0.3)})  # no pt2d
    with pytest.raises(DataFormatError, match=r"image00006\.mat: no 'pt2d' variable"):
        read_rows("aflw2000", root, "test", crop="loose")


# ------------------------------------------------------------------------------------------------------ image folder
def test_image_folder_metadata_fills_only_given_columns(tmp_path):
    records = [
        {"file_name": "a.png", "expression": "happiness", "age": 31, "subject_id": "p1"},
        {"file_name": "sub/b.png", "au": {"AU12": 1, "AU4": 0}, "head_pose": {"yaw": 10, "pitch": -5, "roll": 2.5}},
        {"file_name": "c.png", "attributes": [1] * 20 + [0] * 19 + [-1], "expression": 6, "head_pose": None},
    ]
    root = write_image_folder(tmp_path, records, folder="train")
    rows = by_file(read_rows("image_folder", root, "train", source_name="my_faces")[0])
    a, b, c = rows["a.png"], rows["b.png"], rows["c.png"]
    assert (a["expression"], a["age"], a["subject_id"], a["source"]) == (3, 31.0, "p1", "my_faces")
    assert a["au"] == [-1] * 15 and a["head_pose"] is None
    assert au_of(b) == {name: {"AU12": 1, "AU4": 0}.get(name, -1) for name in AU_NAMES}
    assert b["head_pose"] == [10.0, -5.0, 2.5] and b["expression"] == -1 and b["age"] is None
    assert c["attributes"] == [1] * 20 + [0] * 19 + [-1] and c["expression"] == 6


def test_image_folder_rejects_unknown_columns_and_bad_values(tmp_path):
    records = [
        {"file_name": "a.png", "expresion": 2},
        {"file_name": "b.png", "au": [1, 0]},
        {"file_name": "c.png", "expression": 7},
        {"file_name": "d.png", "age": 40, "split": "test"},
    ]
    root = write_image_folder(tmp_path, records)
    with pytest.raises(DataFormatError, match=r"metadata\.jsonl, line 1: unknown column\(s\) \['expresion'\]"):
        read_rows("image_folder", root, "all")
    rows, report = read_rows("image_folder", root, "all", on_error="skip")
    assert [r["age"] for r in rows] == [40.0] and report.skipped == 3
    assert any("line 2: au: expected 15 values" in m for m in report.skipped_examples)
    assert any("line 3: expression: expected -1..6" in m for m in report.skipped_examples)
    assert [r["age"] for r in read_rows("image_folder", root, "test", on_error="skip")[0]] == [40.0]


def test_image_folder_landmarks_and_box_become_face_hints(tmp_path):
    records = [
        {"file_name": "a.png", "age": 30, "landmarks": FIVE, "box": [10, 20, 90.5, 110]},
        {"file_name": "b.png", "age": 31, "landmarks": None, "box": None},
        {"file_name": "c.png", "age": 32, "landmarks": FIVE[:4]},
        {"file_name": "d.png", "age": 33, "box": [90, 20, 10, 110]},
        {"file_name": "e.png", "age": 34, "box": [10, 20, "90", 110]},
    ]
    root = write_image_folder(tmp_path, records)
    with pytest.raises(DataFormatError, match=r"metadata\.jsonl, line 3: landmarks: expected 5 \[x, y\] pairs"):
        read_rows("image_folder", root, "all")
    rows, report = read_rows("image_folder", root, "all", on_error="skip")
    rows = by_file(rows)
    assert hints_of(rows["a.png"]) == {"face_landmarks": FIVE, "face_box": [10.0, 20.0, 90.5, 110.0]}
    assert hints_of(rows["b.png"]) == {} and report.skipped == 3
    assert any("line 4: box: expected x1 < x2 and y1 < y2" in m for m in report.skipped_examples)
    assert any("line 5: box: expected [x1, y1, x2, y2] finite numbers" in m for m in report.skipped_examples)
    ignored = read_rows("image_folder", root, "all", on_error="skip", ignore_columns=["landmarks", "box"])[0]
    assert len(ignored) == 5 and [hints_of(r) for r in ignored] == [{}] * 5


# ------------------------------------------------------------------------------------------------------ Dataset build
def _one_of_each_source(tmp_path) -> dict[str, tuple]:
    """(root, split, options) for a tiny instance of every registered source."""
    aflw_pose = (math.radians(1), math.radians(2), math.radians(3))  # pitch, yaw, roll
    bp4d_root, _ = write_bp4d(tmp_path, frames_per_task=1)
    disfa_root, _ = write_disfa(tmp_path, frames_per_subject=1)
    return {
        "raf_db": (write_raf_db(tmp_path, RAF_LABELS), "test", {}),
        "celeba": (write_celeba(tmp_path, {"000001.jpg": _attrs({"Male"})}, {"000001.jpg": 2}), "test", {}),
        "bp4d": (bp4d_root, "test", {"fold": 2}),
        "disfa": (disfa_root, "test", {"fold": 1}),
        "utkface": (write_utkface(tmp_path, ["20_0_0_20170116174525125.jpg.chip.jpg"]), "all", {}),
        "age_csv": (write_age_csv(tmp_path, ["file_name", "age"], [["a.jpg", 44]]), "all", {}),
        "300w_lp": (write_pose_dataset(tmp_path, "300W_LP", {"AFW/AFW_1_1_0.jpg": (0.1, 0.2, 0.3)}), "train", {}),
        "aflw2000": (write_pose_dataset(tmp_path, "AFLW2000", {"image00002.jpg": aflw_pose}), "test", {}),
        "image_folder": (write_image_folder(tmp_path, [{"file_name": "x.png", "age": 9}]), "all", {}),
    }


def test_every_source_builds_the_same_features_and_concatenates(tmp_path):
    built = {
        name: load_source(name, root, split, cache_dir=tmp_path / "cache", **options)
        for name, (root, split, options) in _one_of_each_source(tmp_path / "data").items()
    }
    assert all(ds.features == FEATURES for ds in built.values())
    mixed = concatenate_datasets(list(built.values()))
    expected_sizes = {"raf_db": 2, "celeba": 1, "bp4d": 14 * 8, "disfa": 9, "utkface": 1, "age_csv": 1}
    expected_sizes.update({"300w_lp": 1, "aflw2000": 1, "image_folder": 1})
    assert {n: len(ds) for n, ds in built.items()} == expected_sizes and len(mixed) == sum(expected_sizes.values())
    assert mixed.features == FEATURES
    # The image is the Q-Face crop itself (PNG bytes, decoded on access); `photo` names where it was cut from.
    raw = built["celeba"].cast_column("image", ImageFeature(decode=False))[0]["image"]
    assert raw["path"] is None and raw["bytes"].startswith(b"\x89PNG")
    assert built["celeba"][0]["photo"].endswith("img_align_celeba/000001.jpg")
    assert built["celeba"][0]["image"].size == (224, 224)  # the default crop, no model given
    # Random 8 px fixture pixels hold no face: the central square is the crop, and the report says so.
    assert set(mixed["crop_method"]) == {"no face found"} and set(mixed["crop_angle"]) == {0.0}
    assert built["aflw2000"][0]["head_pose"] == pytest.approx([2.0, 1.0, 3.0], abs=1e-4)
    assert built["celeba"][0]["age"] is None and built["age_csv"][0]["age"] == 44.0
    torch_rows = built["raf_db"].with_format("torch", columns=["age", "expression"])[:]
    assert torch_rows["expression"].tolist() == [3, 5] and torch_rows["age"].isnan().all()


def test_prepare_reuses_the_arrow_cache_and_rebuilds_when_labels_change(tmp_path, monkeypatch):
    root = write_raf_db(tmp_path, RAF_LABELS)
    calls = []
    original = RafDbSource.iter_rows

    def counting_iter_rows(self, split, report):
        calls.append(split)
        yield from original(self, split, report)

    monkeypatch.setattr(RafDbSource, "iter_rows", counting_iter_rows)
    first, report1 = prepare_source("raf_db", root, "trainval", cache_dir=tmp_path / "cache")
    second, report2 = prepare_source("raf_db", root, "trainval", cache_dir=tmp_path / "cache")
    assert calls == ["trainval"] and not report1.from_cache and report2.from_cache
    assert second.cache_files == first.cache_files and second["expression"] == first["expression"] == [4, 0, 6]
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text().replace("train_00001.jpg 5", "train_00001.jpg 2"))
    third, report3 = prepare_source("raf_db", root, "trainval", cache_dir=tmp_path / "cache")
    assert calls == ["trainval", "trainval"] and not report3.from_cache and third["expression"] == [1, 0, 6]


def test_prepare_surfaces_format_errors_skips_and_empty_splits(tmp_path):
    root = write_raf_db(tmp_path, RAF_LABELS, extra_lines=["test_0003.jpg nine"])
    with pytest.raises(DataFormatError, match=r"line 6: label: expected 1..7, got 'nine'"):
        load_source("raf_db", root, "test", cache_dir=tmp_path / "cache")
    dataset, report = prepare_source("raf_db", root, "test", cache_dir=tmp_path / "cache", on_error="skip")
    assert len(dataset) == 2 and report.skipped == 1 and report.num_rows == 2
    _, cached = prepare_source("raf_db", root, "test", cache_dir=tmp_path / "cache", on_error="skip")
    assert cached.from_cache and cached.skipped == 1  # the report survives the cache
    with pytest.raises(ValueError, match="split 'val' has no rows"):
        load_source("raf_db", root, "val", cache_dir=tmp_path / "cache", val_fraction=0.0, on_error="skip")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['fold'\]"):
        load_source("raf_db", root, "test", fold=1)
    with pytest.raises(ValueError, match="unknown data source 'rafdb'"):
        load_source("rafdb", root, "test")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        read_rows("raf_db", root, "dev")


def test_carve_is_deterministic_order_free_and_proportional():
    keys = [f"k{i}" for i in range(100)]
    split = carve(keys, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert split == carve(list(reversed(keys)), {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert [sum(v == s for v in split.values()) for s in ("train", "val", "test")] == [70, 10, 20]
    assert split != carve(keys, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=4)
    with pytest.raises(ValueError, match="summing to 1"):
        carve(keys, {"train": 0.7, "test": 0.2})


# ------------------------------------------------------------------------------------------------------ Bad bytes
def plant_bad_byte(path, line_no: int) -> int:
    """Puts a 0xff byte (never valid UTF-8) in the middle of line `line_no` of a text file; returns its byte offset."""
    lines = path.read_bytes().split(b"\n")
    line = lines[line_no - 1]
    lines[line_no - 1] = line[: len(line) // 2] + b"\xff" + line[len(line) // 2 :]
    path.write_bytes(b"\n".join(lines))
    return sum(len(previous) + 1 for previous in lines[: line_no - 1]) + len(line) // 2


def test_a_label_line_that_is_not_utf8_names_file_line_and_offset_or_is_skipped_and_counted(tmp_path):
    root = write_raf_db(tmp_path, {"train_00001.jpg": 5, "train_00002.jpg": 2, "train_00003.jpg": 7})
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    offset = plant_bad_byte(label_file, 2)
    expected = rf"list_patition_label\.txt, line 2: not UTF-8 text: byte 0xff at byte offset {offset} of the file"
    with pytest.raises(DataFormatError, match=expected) as info:
        read_rows("raf_db", root, "trainval")
    assert (info.value.path, info.value.line_no) == (str(label_file), 2)
    rows, report = read_rows("raf_db", root, "trainval", on_error="skip")
    assert [r["expression"] for r in rows] == [4, 6] and report.skipped == 1
    assert "line 2: not UTF-8 text" in report.skipped_examples[0]
    # Through preparation too: the load report (kept beside the Arrow cache) counts it.
    dataset, report = prepare_source("raf_db", root, "trainval", cache_dir=tmp_path / "cache", on_error="skip")
    assert len(dataset) == 2 and report.skipped == 1 and report.num_rows == 2
    with pytest.raises(DataFormatError, match=expected):
        prepare_source("raf_db", root, "trainval", cache_dir=tmp_path / "cache")


def test_bad_bytes_in_csv_and_counted_list_files_keep_line_numbers_and_counts(tmp_path, monkeypatch):
    rows = [["a.jpg", 23], ["b.jpg", 41], ["c.jpg", "n/a"]]
    root = write_age_csv(tmp_path, ["file_name", "age"], rows)
    plant_bad_byte(root / "labels.csv", 3)
    with pytest.raises(DataFormatError, match=r"labels\.csv, line 3: not UTF-8 text: byte 0xff"):
        read_rows("age_csv", root, "all")
    kept, report = read_rows("age_csv", root, "all", on_error="skip")
    assert [r["age"] for r in kept] == [23.0] and report.skipped == 2
    assert any("labels.csv, line 4: age: expected a number of years, got 'n/a'" in m for m in report.skipped_examples)

    # CelebA's header declares the line count: a line skipped for its bytes is still one of them.
    celeba = write_celeba(
        tmp_path, {"000001.jpg": _attrs({"Male"}), "000002.jpg": _attrs(set())}, {"000001.jpg": 0, "000002.jpg": 0}
    )
    attr_file = celeba / "Anno" / "list_attr_celeba.txt"
    plant_bad_byte(attr_file, 4)
    kept, report = read_rows("celeba", celeba, "train", on_error="skip")
    assert by_file(kept).keys() == {"000001.jpg"} and report.skipped == 1
    plant_bad_byte(attr_file, 2)  # the attribute names: without them no line can be read
    with pytest.raises(DataFormatError, match=r"list_attr_celeba\.txt, line 2: not UTF-8 text"):
        read_rows("celeba", celeba, "train", on_error="skip")

    from modeling_qface.training.data.au_datasets import BP4DSource

    monkeypatch.setattr(BP4DSource, "parts", (("F001",), ("M001",), ("F002",)))
    bp4d, _ = write_bp4d(tmp_path, subjects=["F001", "M001", "F002"])
    plant_bad_byte(bp4d / "AUCoding" / "AU_OCC" / "F001_T1.csv", 2)
    with pytest.raises(DataFormatError, match=r"F001_T1\.csv, line 2: not UTF-8 text"):
        read_rows("bp4d", bp4d, "all")
    kept, report = read_rows("bp4d", bp4d, "all", on_error="skip")
    assert len(kept) == 3 * 8 * 2 - 1 and report.skipped == 1


def test_an_image_that_does_not_decode_fails_preparation_at_its_label_line(tmp_path):
    root = write_image_folder(tmp_path, [{"file_name": "a.jpg", "age": 30}, {"file_name": "broken.jpg", "age": 40}])
    data = (root / "broken.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 2])  # the header is intact, the pixels are cut short
    with pytest.raises(DataFormatError, match=r"metadata\.jsonl, line 2: .*broken\.jpg: cannot read the image") as info:
        prepare_source("image_folder", root, "all", cache_dir=tmp_path / "cache")
    assert (info.value.path, info.value.line_no) == (str(root / "metadata.jsonl"), 2)
    assert "truncated" in str(info.value).lower()
    dataset, report = prepare_source("image_folder", root, "all", cache_dir=tmp_path / "cache", on_error="skip")
    assert dataset["age"] == [30.0] and report.skipped == 1 and "metadata.jsonl, line 2" in report.skipped_examples[0]


# ------------------------------------------------------------------------------------------------ UTKFace protocols
def _utkface_ages_0_to_116(copies: int = 2) -> list[str]:
    """Aligned UTKFace names, `copies` per age 0..116 (real-format `{age}_{gender}_{race}_{date&time}.jpg.chip.jpg`)."""
    return [f"{age}_{i % 2}_{age % 5}_2017011{i}{age:09d}.jpg.chip.jpg" for age in range(117) for i in range(copies)]


def test_utkface_coral_protocol_keeps_ages_21_to_60_and_cuts_them_80_20(tmp_path):
    names = _utkface_ages_0_to_116()
    root = write_utkface(tmp_path, names)
    in_range = {n for n in names if 21 <= int(n.split("_")[0]) <= 60}
    assert len(in_range) == 80
    parts, reports = {}, {}
    for split in ("train", "test", "all"):
        rows, reports[split] = read_rows("utkface", root, split, protocol="coral")
        parts[split] = by_file(rows)
    assert set(parts["all"]) == in_range
    assert (len(parts["train"]), len(parts["test"])) == (64, 16)  # 80 % / 20 % of the 21..60 images, no val
    assert not set(parts["train"]) & set(parts["test"]) and set(parts["train"]) | set(parts["test"]) == in_range
    ages = [row["age"] for part in ("train", "test") for row in parts[part].values()]
    assert min(ages) == 21.0 and max(ages) == 60.0
    assert reports["train"].filtered == {"age outside [21, 60] years": len(names) - 80}
    with pytest.raises(ValueError, match=r"unknown split 'val'"):
        read_rows("utkface", root, "val", protocol="coral")


def test_utkface_coral_split_is_deterministic_and_ignores_images_outside_the_range(tmp_path):
    names = _utkface_ages_0_to_116()
    root = write_utkface(tmp_path, names)
    first = set(by_file(read_rows("utkface", root, "test", protocol="coral")[0]))
    assert set(by_file(read_rows("utkface", root, "test", protocol="coral")[0])) == first
    # More images outside 21..60 change nothing: the carve is of the images in the range only.
    write_utkface(tmp_path, [f"{age}_0_0_20170120{age:09d}.jpg.chip.jpg" for age in (5, 20, 61, 90)])
    assert set(by_file(read_rows("utkface", root, "test", protocol="coral")[0])) == first
    other_seed = set(by_file(read_rows("utkface", root, "test", protocol="coral", seed=1)[0]))
    assert other_seed != first and len(other_seed) == len(first)


def test_utkface_age_range_and_split_lists_in_corals_csv_format(tmp_path):
    names = _utkface_ages_0_to_116(copies=1)
    root = write_utkface(tmp_path, names)
    rows = by_file(read_rows("utkface", root, "all", age_range=[30, 39])[0])
    assert sorted(r["age"] for r in rows.values()) == [float(a) for a in range(30, 40)]
    # CORAL's lists: an index column, the file name, the age minus 21 (coral-cnn datasets/train-test-csv/utk_*.csv).
    listed = {"train": [n for n in names if 21 <= int(n.split("_")[0]) <= 50], "test": [names[55], names[60]]}
    for split, files in listed.items():
        lines = [",file,age"] + [f"{i},{n},{int(n.split('_')[0]) - 21}" for i, n in enumerate(files)]
        (root / f"utk_{split}.csv").write_text("\n".join(lines) + "\n")
    lists = {"train": "utk_train.csv", "test": "utk_test.csv"}
    for split, files in listed.items():
        assert set(by_file(read_rows("utkface", root, split, protocol="coral", split_lists=lists)[0])) == set(files)
    with (root / "utk_test.csv").open("a") as handle:
        handle.write("99,no_such_image.jpg.chip.jpg,3\n")
    with pytest.raises(DataFormatError, match=r"utk_test\.csv, line 4: image not found: 'no_such_image"):
        read_rows("utkface", root, "test", protocol="coral", split_lists=lists)


@pytest.mark.parametrize(
    ("options", "key", "message"),
    [
        ({"protocol": "coral", "split_fractions": {"train": 1.0}}, "split_fractions", "protocol 'coral' fixes it"),
        ({"protocol": "coral", "age_range": [0, 116]}, "age_range", "protocol 'coral' fixes it"),
        ({"protocol": "morph"}, "protocol", "expected one of ['coral']"),
        ({"age_range": [60, 21]}, "age_range", "expected [youngest, oldest]"),
        ({"split_lists": {"all": "x.csv"}}, "split_lists", "'all' is reserved"),
    ],
)
def test_utkface_protocol_options_that_clash_are_named(options, key, message):
    from modeling_qface.training.data.loading import source_problems

    problems = dict(source_problems("utkface", "train", options))
    assert message in problems[f"options.{key}"]
