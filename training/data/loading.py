# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The source registry and the cached build of a `datasets.Dataset` from one benchmark split.

`prepare_source` streams an adapter's rows through the Q-Face crop (`face_crops.CropPreparer`: every face cut with
the model's `FaceCrop`, head pose labels carried into the crop's frame) and `Dataset.from_generator` into an Arrow
file under `cache_dir` (the datasets cache when None). The Arrow file holds the crops themselves (PNG bytes), so
the photos are read once. The cache is keyed by a fingerprint of the source name, root, split, options, `on_error`,
the crop (template, margin, size, format), `FORMAT_VERSION` and the label files' paths, sizes and modification
times, so a second call with the same inputs memory-maps the existing Arrow file without reading a label file, and
editing a label file, or asking for another crop, rebuilds it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import datasets
from datasets import Dataset
from datasets.exceptions import DatasetGenerationError
from tqdm.auto import tqdm

from modeling_qface.model.face_alignment_qface import FaceCrop

from .age import AgeCsvSource, UTKFaceSource
from .au_datasets import BP4DSource, DISFASource
from .base import SourceAdapter
from .celeba import CelebASource
from .errors import DataFormatError, LoadReport
from .face_crops import CROP_FORMATS, CropPreparer
from .image_folder import ImageFolderSource
from .pose import AFLW2000Source, Pose300WLPSource
from .raf_db import RafDbSource
from .schema import FEATURES

# Bump when a change in parsing would change the rows built from unchanged files (invalidates every cache).
FORMAT_VERSION = 2
# The crop of data prepared without a model: the default Q-Face crop at qface-base's input size.
DEFAULT_FACE_CROP = FaceCrop(size=224)

SOURCES: dict[str, type[SourceAdapter]] = {
    cls.name: cls
    for cls in (
        RafDbSource,
        CelebASource,
        BP4DSource,
        DISFASource,
        UTKFaceSource,
        AgeCsvSource,
        Pose300WLPSource,
        AFLW2000Source,
        ImageFolderSource,
    )
}


def source_problems(name: str, split: str, options: dict) -> list[tuple[str, str]]:
    """What is wrong with a source's name, split and options, found without reading a file: `(key, message)` pairs,
    the key being `name`, `split` or `options.<option>`, the message naming the bad value and the allowed ones."""
    if name not in SOURCES:
        return [("name", f"unknown data source {name!r} (expected one of {', '.join(sorted(SOURCES))})")]
    cls = SOURCES[name]
    accepted = _accepted_options(cls)
    problems = [
        (f"options.{key}", f"unknown option {key!r} of {name} (expected one of {', '.join(accepted)})")
        for key in sorted(set(options) - set(accepted))
    ]
    known = {key: value for key, value in options.items() if key in accepted}
    problems += [(f"options.{key}", message) for key, message in cls.option_problems(known).items()]
    splits = cls.known_splits(known)
    if splits is not None and split not in splits:
        message = f"unknown split {split!r} of {name} (expected one of {', '.join(splits)})"
        if split == "val" and "val_fraction" in accepted:  # the carve exists, its option is not set
            message += "; 'val' needs options.val_fraction > 0"
        problems.append(("split", message))
    return problems


def holds_test_rows(name: str, split: str, options: dict) -> bool:
    """Whether `split` of source `name` holds rows of the benchmark's test split: "test" itself, or "all" of a source
    that has a "test" split (BP4D / DISFA's "all" holds every fold's test subjects). AFLW2000's only split is
    "test". Such a split must not steer training: neither trained on nor used to pick the best checkpoint."""
    if split == "test":
        return True
    if split != "all" or name not in SOURCES:
        return False
    try:
        splits = SOURCES[name].known_splits(options)
    except (TypeError, ValueError):
        splits = None
    return splits is not None and "test" in splits


def _accepted_options(cls: type[SourceAdapter]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "root")]


def build_adapter(name: str, root: str | os.PathLike, **options) -> SourceAdapter:
    """The adapter registered as `name`, with its options checked against its constructor."""
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; expected one of {sorted(SOURCES)}")
    cls = SOURCES[name]
    accepted = _accepted_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {unknown}; accepted: {accepted}")
    return cls(root, **options)


def read_rows(name: str, root, split: str = "train", *, on_error: str = "raise", **options):
    """The adapter's rows of one split (photo paths and face hints, before the Q-Face crop) and the `LoadReport`
    (no crop, no Arrow, no cache: for inspection)."""
    adapter = build_adapter(name, root, **options)
    report = LoadReport(source=name, split=split, on_error=on_error)
    rows = list(adapter.iter_rows(split, report))
    report.num_rows = len(rows)
    report.log()
    return rows, report


def _generate_rows(
    name: str, root: str, split: str, options: dict, on_error: str, report_path: str, face_crop: dict, crop_format: str
):
    """The `from_generator` generator: streams prepared rows and, once done, writes the report next to the cache."""
    adapter = build_adapter(name, root, **options)
    report = LoadReport(source=name, split=split, on_error=on_error)
    crop_spec = dict(face_crop)
    crop_spec["template"] = tuple(map(tuple, crop_spec["template"]))
    prepare = CropPreparer(FaceCrop(**crop_spec), report, crop_format)
    rows = adapter.iter_rows(split, report)
    progress = tqdm(rows, desc=f"{name}/{split}: Q-Face crops", unit=" faces", leave=False, mininterval=2.0)
    for row in progress:
        row = prepare(row)
        if row is None:
            continue
        report.num_rows += 1
        yield row
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(report.to_dict(), indent=1))


def source_fingerprint(
    adapter: SourceAdapter, split: str, on_error: str, face_crop: FaceCrop = DEFAULT_FACE_CROP, crop_format: str = "png"
) -> str:
    """Hex digest of everything a split's rows depend on (see the module docstring)."""
    material = {
        "format_version": FORMAT_VERSION,
        "face_crop": face_crop.to_dict(),
        "crop_format": crop_format,
        "source": adapter.name,
        "root": str(adapter.root),
        "split": split,
        "options": adapter.options,
        "on_error": on_error,
        "inputs": adapter.fingerprint_inputs(split),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def prepare_source(
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    *,
    cache_dir: str | os.PathLike | None = None,
    on_error: str = "raise",
    face_crop: FaceCrop | None = None,
    crop_format: str = "png",
    **options,
) -> tuple[Dataset, LoadReport]:
    """Builds (once) and returns one split of a source as a `datasets.Dataset` in the Q-Face schema.

    Args:
        name: a key of `SOURCES` ("raf_db", "celeba", "bp4d", "disfa", "utkface", "age_csv", "300w_lp",
            "aflw2000", "image_folder").
        root: the dataset's top folder, laid out as distributed (see each adapter's module docstring).
        split: a split of that source (e.g. "train", "val", "test"; BP4D/DISFA also take `fold=1..3`).
        cache_dir: where the Arrow file and the load report go; None = the datasets cache
            (`datasets.config.HF_DATASETS_CACHE`).
        on_error: "raise" (default) stops at the first bad record with a `DataFormatError` naming file and line;
            "skip" drops bad records and counts them in the report (file-level problems always raise). An image
            that cannot be read is a bad record.
        face_crop: the crop to cut every face into: the model's (`FaceCrop.from_config(model.config)`, which
            `qface train` and `qface evaluate` pass); None = `DEFAULT_FACE_CROP` (the default crop at 224 px).
        crop_format: how crops are stored: "png" (lossless, the default: a training crop equals the pipeline's
            byte for byte) or "jpeg" (quality 95, about 5x smaller on disk).
        **options: adapter options (an unknown one raises TypeError listing the accepted ones).

    Returns:
        `(dataset, report)`: the dataset has exactly `schema.FEATURES`, its `image` the crop; the report counts
        rows, skipped and filtered records and how each face was found (`report.crops`; `report.from_cache` tells
        whether the Arrow file was reused). A warning is logged when anything was skipped or filtered, or a face
        was not found.
    """
    LoadReport(source=name, split=split, on_error=on_error)  # validates on_error before any work
    face_crop = DEFAULT_FACE_CROP if face_crop is None else face_crop
    if crop_format not in CROP_FORMATS:
        raise ValueError(f"crop_format: expected one of {sorted(CROP_FORMATS)}, got {crop_format!r}")
    adapter = build_adapter(name, root, **options)
    fingerprint = source_fingerprint(adapter, split, on_error, face_crop, crop_format)
    cache_root = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE)
    report_path = cache_root / "qface_reports" / f"{name}-{split}-{fingerprint}.json"
    # The generator rewrites the report whenever it runs, so an unchanged report means the Arrow file was reused.
    stamp_before = report_path.stat().st_mtime_ns if report_path.is_file() else None
    try:
        dataset = Dataset.from_generator(
            _generate_rows,
            features=FEATURES,
            cache_dir=str(cache_root),
            fingerprint=f"qface-{name}-{split}-{fingerprint}",
            gen_kwargs={
                "name": name,
                "root": str(adapter.root),
                "split": split,
                "options": adapter.options,
                "on_error": on_error,
                "report_path": str(report_path),
                "face_crop": face_crop.to_dict(),
                "crop_format": crop_format,
            },
        )
    except DatasetGenerationError as error:
        # datasets wraps generator exceptions; surface ours (file + line) unchanged.
        if isinstance(error.__cause__, (DataFormatError, ValueError, FileNotFoundError)):
            raise error.__cause__ from None
        raise
    except ValueError as error:
        if report_path.is_file() and json.loads(report_path.read_text())["num_rows"] == 0:
            report = LoadReport.from_dict(json.loads(report_path.read_text()))
            raise ValueError(f"{name}: split {split!r} has no rows ({report.summary()})") from error
        raise
    report = LoadReport.from_dict(json.loads(report_path.read_text()))
    report.from_cache = stamp_before is not None and report_path.stat().st_mtime_ns == stamp_before
    report.log()
    return dataset, report


def load_source(name: str, root: str | os.PathLike, split: str = "train", **kwargs) -> Dataset:
    """`prepare_source(...)[0]`: one split of one source as a cached `datasets.Dataset` (see `prepare_source`)."""
    return prepare_source(name, root, split, **kwargs)[0]
