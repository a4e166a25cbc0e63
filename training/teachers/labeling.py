# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Photos -> every face, cut as the pipeline cuts it -> teacher labels in the training schema, with provenance.

Each photo is read with `load_image_rgb`, its faces found with `locate_faces` (the pipeline's detector and landmark
refinement) and cut with `FaceCrop(size=crop_size)` (default 224, the size `modeling_qface.training.data` prepares data at). Every
teacher looks at that crop only, so its labels are in the crop's frame (`crop_angle` says how the crop is rotated
against the photo, as in prepared rows of `modeling_qface.training.data`).

Labels and when they are kept (otherwise -1 / None, never a guess; the teacher's confidence is stored either way):
    expression   fer + facex averaged (`expression.py`): top class kept if its averaged probability is at least
                 `min_expression_confidence` and (unless `require_expression_agreement` is off) both models' top
                 classes agree.
    attributes   only `Smiling` (from the same expression probabilities, `expression.decide_smiling`) and `Male`
                 (face-api's gender, kept if its probability is at least `min_gender_confidence`); the other 38
                 stay -1.
    age          face-api, kept if the crop and its mirror agree within `max_age_std` years (std of the two).
    head_pose    MediaPipe mesh fitted to the canonical face (`mesh.py`), [yaw, pitch, roll] in the crop's frame,
                 kept if the fit's RMS residual is at most `max_pose_fit_error` cm.
    au           always -1: no AU model exists offline. The mesh's geometric proxies go to their own columns
                 (`mesh.GEOMETRIC_PROXIES`), never into `au`.
Faces whose detector box is smaller than `min_face_size` pixels (the shorter side, in the photo) get no label at
all: the FER2013 models are trained on 48-pixel faces and fall apart below that.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES
from modeling_qface.model.face_alignment_qface import FaceCrop, locate_faces
from modeling_qface.model.image_loading_qface import ImageLoadError, load_image_rgb

from .base import TeacherUnavailable
from .mesh import GEOMETRIC_PROXIES, MESH_TEACHER

MISSING = -1
TEACHERS = ("expression", "pose", "geometry", "age")
DEFAULT_CROP_SIZE = 224
DEFAULT_SOURCE_NAME = "teacher_labels"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
SMILING = ATTRIBUTE_NAMES.index("Smiling")
MALE = ATTRIBUTE_NAMES.index("Male")
SUMMARY_FILE = "label_summary.json"
PROVENANCE_FILE = "teacher_labels.jsonl"


@dataclass
class LabelPolicy:
    """When a teacher's answer becomes a label (see the module docstring); defaults are `qface label`'s."""

    min_expression_confidence: float = 0.5
    require_expression_agreement: bool = True
    min_smiling_confidence: float = 0.8
    min_gender_confidence: float = 0.8
    max_age_std: float = 5.0
    max_pose_fit_error: float = 1.0
    min_face_size: float = 48.0


# ------------------------------------------------------------------------------------------------------- teachers


@dataclass
class TeacherSet:
    """The teachers that could be loaded, and why the others could not (name -> message)."""

    expression: object | None = None
    mesh: object | None = None
    face_api: object | None = None
    requested: tuple[str, ...] = TEACHERS
    unavailable: dict[str, str] = field(default_factory=dict)

    def close(self):
        for teacher in (self.mesh, self.face_api):
            if teacher is not None:
                teacher.close()


def load_teachers(names: Iterable[str] = TEACHERS, cache_dir=None) -> TeacherSet:
    """Loads the named teachers (a subset of `TEACHERS`); one that cannot run here is listed in `unavailable`."""
    names = tuple(dict.fromkeys(names))
    unknown = sorted(set(names) - set(TEACHERS))
    if unknown or not names:
        raise ValueError(f"teachers: expected a non-empty subset of {list(TEACHERS)}, got {list(names)}")
    teachers = TeacherSet(requested=names)
    if "expression" in names:
        from .expression import ExpressionTeacher

        try:
            teachers.expression = ExpressionTeacher()
        except TeacherUnavailable as error:
            teachers.unavailable["expression"] = str(error)
    if "pose" in names or "geometry" in names:
        from .mesh import FaceMeshTeacher

        try:
            teachers.mesh = FaceMeshTeacher(cache_dir=cache_dir)
        except TeacherUnavailable as error:
            for name in ("pose", "geometry"):
                if name in names:
                    teachers.unavailable[name] = str(error)
    if "age" in names:
        from .face_api import FaceApiTeacher

        try:
            teachers.face_api = FaceApiTeacher(cache_dir=cache_dir)
        except TeacherUnavailable as error:
            teachers.unavailable["age"] = str(error)
    return teachers


# ------------------------------------------------------------------------------------------------------- schema


def label_features():
    """The training schema (`modeling_qface.training.data.schema.FEATURES`) plus the face's and the teachers' columns."""
    from datasets import List, Value

    from modeling_qface.training.data.schema import qface_features

    features = qface_features()

    def floats(n):
        return List(Value("float32"), length=n)

    extra = {
        "face_index": Value("int32"),
        "box": floats(4),
        "landmarks": List(floats(2), length=5),
        "detector_score": Value("float32"),
        "face_size": Value("float32"),
        "expression_teacher": Value("string"),
        "expression_confidence": Value("float32"),
        "expression_probabilities": floats(len(EXPRESSION_NAMES)),
        "expression_probabilities_fer": floats(len(EXPRESSION_NAMES)),
        "expression_probabilities_facex": floats(len(EXPRESSION_NAMES)),
        "expression_models_agree": Value("bool"),
        "smiling_teacher": Value("string"),
        "smiling_confidence": Value("float32"),
        "head_pose_teacher": Value("string"),
        "head_pose_fit_error": Value("float32"),
        "geometric_teacher": Value("string"),
        **{name: Value("float32") for name in GEOMETRIC_PROXIES},
        "age_teacher": Value("string"),
        "age_std": Value("float32"),
        "gender_teacher": Value("string"),
        "gender": Value("string"),
        "gender_confidence": Value("float32"),
        "label_notes": Value("string"),
    }
    for name, feature in extra.items():
        features[name] = feature
    return features


def _empty_label_columns() -> dict:
    return {
        "expression": MISSING,
        "au": [MISSING] * len(AU_NAMES),
        "attributes": [MISSING] * len(ATTRIBUTE_NAMES),
        "age": None,
        "head_pose": None,
        "expression_teacher": "",
        "expression_confidence": None,
        "expression_probabilities": None,
        "expression_probabilities_fer": None,
        "expression_probabilities_facex": None,
        "expression_models_agree": None,
        "smiling_teacher": "",
        "smiling_confidence": None,
        "head_pose_teacher": "",
        "head_pose_fit_error": None,
        "geometric_teacher": "",
        **dict.fromkeys(GEOMETRIC_PROXIES),
        "age_teacher": "",
        "age_std": None,
        "gender_teacher": "",
        "gender": "",
        "gender_confidence": None,
    }


# ------------------------------------------------------------------------------------------------------ labelling


@dataclass
class LabelSummary:
    """What `label_photos` did: counts, labels kept per teacher, fer-facex agreement and time per face."""

    photos: int = 0
    unreadable_photos: list = field(default_factory=list)
    photos_without_faces: int = 0
    faces: int = 0
    faces_too_small: int = 0
    teachers_requested: list = field(default_factory=list)
    teachers_unavailable: dict = field(default_factory=dict)
    # label -> {"kept": faces whose answer became a label, "ran_on": faces the teacher ran on}
    labels: dict = field(default_factory=dict)
    teacher_errors: list = field(default_factory=list)
    expression_both_models: int = 0
    expression_models_agree: int = 0
    # step -> total seconds, over `faces` (or photos for detection)
    seconds: dict = field(default_factory=dict)

    def count(self, label: str, kept: bool):
        counts = self.labels.setdefault(label, {"kept": 0, "ran_on": 0})
        counts["kept"] += int(kept)
        counts["ran_on"] += 1

    def time(self, step: str, seconds: float):
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    @property
    def agreement(self) -> float | None:
        """Share of faces whose fer and facex top classes agree (None before any)."""
        return self.expression_models_agree / self.expression_both_models if self.expression_both_models else None

    def to_dict(self) -> dict:
        result = asdict(self)
        result["fer_facex_agreement"] = self.agreement
        result["ms_per_face"] = {
            step: 1000 * seconds / max(1, self.photos if step == "detection (per photo)" else self.faces)
            for step, seconds in self.seconds.items()
        }
        return result

    def format(self) -> str:
        lines = [
            f"photos: {self.photos} ({len(self.unreadable_photos)} unreadable, "
            f"{self.photos_without_faces} without a face)",
            f"faces: {self.faces} ({self.faces_too_small} smaller than the minimum size, left unlabelled)",
        ]
        lines += [f"  unreadable: {problem}" for problem in self.unreadable_photos[:5]]
        for name, reason in self.teachers_unavailable.items():
            lines.append(f"teacher {name}: SKIPPED: {reason}")
        if self.labels:
            lines.append("labels kept (the rest left missing: teacher not confident enough):")
        for label, counts in self.labels.items():
            lines.append(f"  {label:<12} {counts['kept']} of the {counts['ran_on']} faces its teacher ran on")
        if self.teacher_errors:
            lines.append(f"teacher errors on {len(self.teacher_errors)} face(s), e.g. {self.teacher_errors[0]}")
        if self.agreement is not None:
            lines.append(
                f"fer vs facex: top classes agree on {self.expression_models_agree} of "
                f"{self.expression_both_models} faces ({100 * self.agreement:.0f} %)"
            )
        timing = ", ".join(f"{step} {ms:.0f} ms" for step, ms in self.to_dict()["ms_per_face"].items())
        if timing:
            lines.append(f"time per face: {timing}")
        return "\n".join(lines)


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def label_crop(
    crop: np.ndarray, teachers: TeacherSet, policy: LabelPolicy, summary: LabelSummary | None = None
) -> dict:
    """Every requested, available teacher on one Q-Face crop -> the label and provenance columns of its row."""
    from .expression import decide_expression, decide_smiling, smiling_confidence

    summary = summary if summary is not None else LabelSummary()
    row = _empty_label_columns()
    notes = []
    requested = teachers.requested
    if "expression" in requested and teachers.expression is not None:
        start = time.perf_counter()
        prediction = teachers.expression(crop)
        summary.time("expression", time.perf_counter() - start)
        row["expression"] = decide_expression(
            prediction, policy.min_expression_confidence, policy.require_expression_agreement
        )
        row["expression_teacher"] = teachers.expression.name
        row["expression_confidence"] = prediction.confidence
        row["expression_probabilities"] = _floats(prediction.probabilities)
        for name, probabilities in prediction.per_model.items():
            row[f"expression_probabilities_{name}"] = _floats(probabilities)
        if len(prediction.per_model) > 1:
            row["expression_models_agree"] = prediction.agree
            summary.expression_both_models += 1
            summary.expression_models_agree += int(prediction.agree)
        summary.count("expression", row["expression"] != MISSING)
        smiling = decide_smiling(prediction, policy.min_smiling_confidence)
        row["attributes"][SMILING] = smiling
        row["smiling_teacher"] = teachers.expression.name
        row["smiling_confidence"] = smiling_confidence(prediction)
        summary.count("Smiling", smiling != MISSING)
    if teachers.mesh is not None and ("pose" in requested or "geometry" in requested):
        start = time.perf_counter()
        mesh = teachers.mesh(crop)
        summary.time("mesh", time.perf_counter() - start)
        if mesh is None:
            notes.append("no face mesh found in the crop")
        if "pose" in requested:
            if mesh is not None:
                row["head_pose_teacher"] = teachers.mesh.name
                row["head_pose_fit_error"] = mesh.fit.error
                if mesh.fit.error <= policy.max_pose_fit_error:
                    row["head_pose"] = _floats(mesh.head_pose)
            summary.count("head_pose", row["head_pose"] is not None)
        if "geometry" in requested:
            if mesh is not None:
                row["geometric_teacher"] = MESH_TEACHER
                row.update({name: float(value) for name, value in mesh.proxies.items()})
            summary.count("geometry", mesh is not None)
    answer = None
    if "age" in requested and teachers.face_api is not None:
        start = time.perf_counter()
        try:
            answer = teachers.face_api(crop)
        except (RuntimeError, OSError) as error:  # TeacherUnavailable too: e.g. the Node worker died
            notes.append(f"face-api failed: {error}")
            summary.teacher_errors.append(f"face-api: {error}")
        summary.time("age/gender", time.perf_counter() - start)
    if answer is not None:
        row["age_teacher"] = row["gender_teacher"] = teachers.face_api.name
        row["age_std"] = answer.age_std
        if answer.age_std <= policy.max_age_std and 0.0 <= answer.age <= 100.0:
            row["age"] = answer.age
        summary.count("age", row["age"] is not None)
        row["gender"] = answer.gender
        row["gender_confidence"] = answer.gender_confidence
        if answer.gender_confidence >= policy.min_gender_confidence:
            row["attributes"][MALE] = int(answer.gender == "male")
        summary.count("Male", row["attributes"][MALE] != MISSING)
    row["label_notes"] = "; ".join(notes)
    return row


def iter_photo_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named, or found (recursively, sorted) in the folders named; FileNotFoundError for a missing one."""
    found = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such photo or folder: {path}")
    return list(dict.fromkeys(p.resolve() for p in found))


def encode_png(crop: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def label_photos(
    photos: Iterable[str | Path],
    teachers: TeacherSet,
    policy: LabelPolicy | None = None,
    crop_size: int = DEFAULT_CROP_SIZE,
    summary: LabelSummary | None = None,
    progress: bool = True,
    source_name: str = DEFAULT_SOURCE_NAME,
) -> Iterator[dict]:
    """Yields one row (`label_features()`) per face of each photo; `summary` is filled in as rows are made."""
    from tqdm.auto import tqdm

    policy = policy or LabelPolicy()
    summary = summary if summary is not None else LabelSummary()
    summary.teachers_requested = list(teachers.requested)
    summary.teachers_unavailable = dict(teachers.unavailable)
    face_crop = FaceCrop(size=crop_size)
    columns = list(label_features())
    photos = list(photos)
    bar = tqdm(photos, desc="qface label", unit=" photo", disable=not progress)
    for path in bar:
        summary.photos += 1
        try:
            rgb = load_image_rgb(path)
        except (ImageLoadError, OSError) as error:
            summary.unreadable_photos.append(f"{path}: {error}")
            continue
        start = time.perf_counter()
        faces = locate_faces(rgb)
        summary.time("detection (per photo)", time.perf_counter() - start)
        if not faces:
            summary.photos_without_faces += 1
        for index, face in enumerate(faces):
            summary.faces += 1
            aligned = face_crop(rgb, face.landmarks)
            size = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
            if size < policy.min_face_size:
                summary.faces_too_small += 1
                labels = _empty_label_columns()
                labels["label_notes"] = f"face {size:.0f} px < {policy.min_face_size:.0f} px: not labelled"
            else:
                labels = label_crop(aligned.crop, teachers, policy, summary)
            row = {
                "image": {"bytes": encode_png(aligned.crop), "path": None},
                "source": source_name,
                "subject_id": "",
                "photo": str(path),
                "crop_angle": float(aligned.angle),
                "crop_method": "detector",
                "face_index": index,
                "box": _floats(face.box),
                "landmarks": [_floats(p) for p in face.landmarks],
                "detector_score": float(face.score),
                "face_size": size,
                **labels,
            }
            yield {name: row[name] for name in columns}
        bar.set_postfix(faces=summary.faces, refresh=False)


# -------------------------------------------------------------------------------------------------------- writers


def write_arrow(rows: Iterable[dict], output: Path, shard_size: int = 256) -> int:
    """Saves rows as a `datasets.Dataset` (`save_to_disk`), holding at most `shard_size` rows in memory."""
    import datasets

    features = label_features()
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # "Saving the dataset" bars per shard would interleave with ours
    try:
        return _write_arrow(rows, output, shard_size, features)
    finally:
        if bars_were_on:
            datasets.utils.enable_progress_bars()


def _write_arrow(rows, output, shard_size, features) -> int:
    from datasets import Dataset, concatenate_datasets, load_from_disk

    with tempfile.TemporaryDirectory(prefix=".qface-label-", dir=output.parent) as tmp:
        shards, pending, count = [], [], 0

        def flush():
            if pending:
                shard = Dataset.from_list(pending, features=features)
                shard.save_to_disk(str(Path(tmp) / f"shard-{len(shards):05d}"))
                shards.append(load_from_disk(str(Path(tmp) / f"shard-{len(shards):05d}")))
                pending.clear()

        for row in rows:
            pending.append(row)
            count += 1
            if len(pending) >= shard_size:
                flush()
        flush()
        if shards:
            dataset = shards[0] if len(shards) == 1 else concatenate_datasets(shards)
        else:
            dataset = Dataset.from_dict({name: [] for name in features}, features=features)
        dataset.save_to_disk(str(output))
    return count


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)[:60] or "photo"


def image_folder_record(row: dict, file_name: str, crop_size: int) -> dict:
    """The `metadata.jsonl` line `modeling_qface.training.data`'s image_folder source reads (schema labels + the crop's landmarks)."""
    record = {
        "file_name": file_name,
        "expression": row["expression"],
        "attributes": row["attributes"],
        "age": row["age"],
        "head_pose": row["head_pose"],
        "landmarks": FaceCrop(size=crop_size).target_points().tolist(),
    }
    if any(v != MISSING for v in row["au"]):
        record["au"] = row["au"]
    return record


class ImageFolderWriter:
    """Writes labelled rows, one at a time, as an image folder: `crops/*.png`, `metadata.jsonl` (what
    `load_source("image_folder", ...)` reads) and `teacher_labels.jsonl` (every other column, by `file_name`).
    A context manager: the files are closed on exit."""

    def __init__(self, output: Path, crop_size: int = DEFAULT_CROP_SIZE):
        self.output, self.crop_size, self.count, self.photo_numbers = Path(output), crop_size, 0, {}
        (self.output / "crops").mkdir(parents=True, exist_ok=True)
        self.metadata = open(self.output / "metadata.jsonl", "w")
        self.provenance = open(self.output / PROVENANCE_FILE, "w")

    def add(self, row: dict, **record_fields) -> dict:
        """Writes one row (`record_fields`, e.g. `subject_id`, join its metadata line); returns that line."""
        number = self.photo_numbers.setdefault(row["photo"], len(self.photo_numbers))
        file_name = f"crops/{number:06d}_{_safe_stem(row['photo'])}_face{row['face_index']}.png"
        (self.output / file_name).write_bytes(row["image"]["bytes"])
        record = {**image_folder_record(row, file_name, self.crop_size), **record_fields}
        self.metadata.write(json.dumps(record) + "\n")
        extra = {key: value for key, value in row.items() if key not in ("image", "au", "attributes")}
        self.provenance.write(json.dumps({"file_name": file_name, **extra}, default=_json_default) + "\n")
        # Flushed per face (its crop is written first): a killed run leaves whole lines for every face it finished.
        self.metadata.flush()
        self.provenance.flush()
        self.count += 1
        return record

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.metadata.close()
        self.provenance.close()


def write_image_folder(rows: Iterable[dict], output: Path, crop_size: int = DEFAULT_CROP_SIZE) -> int:
    """Writes rows with `ImageFolderWriter` (loadable by `load_source("image_folder", output, split="all")`)."""
    with ImageFolderWriter(output, crop_size) as writer:
        for row in rows:
            writer.add(row)
    return writer.count


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_summary(summary: LabelSummary, output: Path, settings: dict) -> None:
    payload = {"settings": settings, **summary.to_dict()}
    (output / SUMMARY_FILE).write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")


def prepare_output(output: Path, overwrite: bool) -> None:
    """Creates the output folder; refuses a non-empty one unless `overwrite` (then empties it)."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--output {output} is not empty; pass --overwrite to replace its contents")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


__all__ = [
    "LabelPolicy",
    "LabelSummary",
    "TEACHERS",
    "TeacherSet",
    "image_folder_record",
    "iter_photo_paths",
    "label_crop",
    "label_features",
    "label_photos",
    "load_teachers",
    "prepare_output",
    "write_arrow",
    "write_image_folder",
    "write_summary",
]
