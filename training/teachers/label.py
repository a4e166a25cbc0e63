# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface label PHOTOS... --output DIR`: label every face of some photos with the offline teachers.

    qface label photos/ more.jpg --output labelled/                      # a datasets folder (load_from_disk)
    qface label photos/ --output labelled/ --format image_folder         # crops + metadata.jsonl
    qface label photos/ --output labelled/ --teachers expression,pose --min-confidence expression=0.7

`--format arrow` (default) saves a `datasets.Dataset` with `save_to_disk`: the training schema's columns, the crop
as `image` (PNG), and per label the teacher that gave it and its confidence (see `modeling_qface.training.teachers.labeling`).
`--format image_folder` writes `crops/*.png` and a `metadata.jsonl` that `modeling_qface.training.data.load_source("image_folder",
DIR, split="all")` reads, plus `teacher_labels.jsonl` with every other column. Both write `label_summary.json`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from .labeling import (
    DEFAULT_CROP_SIZE,
    TEACHERS,
    LabelPolicy,
    LabelSummary,
    iter_photo_paths,
    label_photos,
    load_teachers,
    prepare_output,
    write_arrow,
    write_image_folder,
    write_summary,
)

CONFIDENCE_KEYS = {
    "expression": "min_expression_confidence",
    "smiling": "min_smiling_confidence",
    "gender": "min_gender_confidence",
}
# Teachers whose absence is only reported (the rest stop the command: a missing Python package is an install error).
OPTIONAL_TEACHERS = ("age",)


def parse_teachers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(TEACHERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(TEACHERS)}, got {text!r}")
    return names


def parse_confidence(text: str) -> dict[str, float]:
    """'0.7' (every threshold) or 'expression=0.6,gender=0.9' -> {LabelPolicy field: value}."""

    def value(raw: str) -> float:
        number = float(raw)
        if not 0.0 <= number <= 1.0:
            raise ValueError
        return number

    try:
        if "=" not in text:
            return {field: value(text) for field in CONFIDENCE_KEYS.values()}
        settings = {}
        for item in text.split(","):
            key, _, raw = item.partition("=")
            settings[CONFIDENCE_KEYS[key.strip()]] = value(raw)
        return settings
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a probability in [0, 1] or KEY=VALUE pairs with KEY in {sorted(CONFIDENCE_KEYS)}, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    defaults = LabelPolicy()
    parser = argparse.ArgumentParser(
        prog="qface label", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photos", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--output", required=True, type=Path, help="folder to write (must be empty or new)")
    parser.add_argument(
        "--teachers",
        type=parse_teachers,
        default=TEACHERS,
        help=f"comma-separated subset of {','.join(TEACHERS)} (default: all)",
    )
    parser.add_argument(
        "--min-confidence",
        type=parse_confidence,
        default={},
        metavar="P | KEY=P,...",
        help=f"keep a label only at or above this teacher probability; keys {sorted(CONFIDENCE_KEYS)}"
        f" (defaults: expression {defaults.min_expression_confidence}, smiling "
        f"{defaults.min_smiling_confidence}, gender {defaults.min_gender_confidence})",
    )
    parser.add_argument(
        "--allow-disagreement",
        action="store_true",
        help="keep an expression label even when fer and facex disagree on the top class",
    )
    parser.add_argument(
        "--max-age-std",
        type=float,
        default=defaults.max_age_std,
        help="drop ages whose crop-vs-mirror std exceeds this many years (default %(default)s)",
    )
    parser.add_argument(
        "--max-pose-fit-error",
        type=float,
        default=defaults.max_pose_fit_error,
        help="drop head poses whose mesh fit residual exceeds this many cm (default %(default)s)",
    )
    parser.add_argument(
        "--min-face-size",
        type=float,
        default=defaults.min_face_size,
        help="leave faces smaller than this unlabelled (pixels, the box's shorter side; default %(default)s)",
    )
    parser.add_argument("--format", choices=("arrow", "image_folder"), default="arrow", help="default: arrow")
    parser.add_argument(
        "--crop-size",
        type=int,
        default=DEFAULT_CROP_SIZE,
        help="side of the Q-Face crop the teachers label and the dataset stores (default %(default)s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --output")
    parser.add_argument(
        "--cache-dir", help="teachers' file cache (default $QFACE_TEACHERS_CACHE or ~/.cache/qface/teachers)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    policy = LabelPolicy(
        **{
            **asdict(LabelPolicy()),
            **args.min_confidence,
            "require_expression_agreement": not args.allow_disagreement,
            "max_age_std": args.max_age_std,
            "max_pose_fit_error": args.max_pose_fit_error,
            "min_face_size": args.min_face_size,
        }
    )
    try:
        photos = iter_photo_paths(args.photos)
    except FileNotFoundError as error:
        print(f"qface label: {error}", file=sys.stderr)
        return 2
    output = args.output.expanduser().resolve()
    photos = [p for p in photos if output not in p.parents]  # not the crops of an earlier run written inside them
    if not photos:
        print(f"qface label: no image files in {args.photos}", file=sys.stderr)
        return 2
    try:
        prepare_output(args.output, args.overwrite)
    except FileExistsError as error:
        print(f"qface label: {error}", file=sys.stderr)
        return 2

    teachers = load_teachers(args.teachers, cache_dir=args.cache_dir)
    try:
        fatal = {name: reason for name, reason in teachers.unavailable.items() if name not in OPTIONAL_TEACHERS}
        for name, reason in teachers.unavailable.items():
            print(
                f"qface label: teacher {name!r} {'unavailable' if name in fatal else 'SKIPPED'}: {reason}",
                file=sys.stderr,
            )
        if not fatal and set(teachers.unavailable) >= set(args.teachers):
            print("qface label: none of the requested teachers can run here", file=sys.stderr)
            return 2
        if fatal:
            print(
                f"qface label: install the missing teachers, or leave them out with --teachers "
                f"{','.join(n for n in args.teachers if n not in fatal)}",
                file=sys.stderr,
            )
            return 2
        summary = LabelSummary()
        rows = label_photos(
            photos, teachers, policy, crop_size=args.crop_size, summary=summary, progress=not args.no_progress
        )
        if args.format == "arrow":
            written = write_arrow(rows, args.output)
        else:
            written = write_image_folder(rows, args.output, crop_size=args.crop_size)
    finally:
        teachers.close()
    settings = {
        "teachers": list(args.teachers),
        "format": args.format,
        "crop_size": args.crop_size,
        "policy": asdict(policy),
    }
    write_summary(summary, args.output, settings)
    print(summary.format())
    loader = (
        "datasets.load_from_disk"
        if args.format == "arrow"
        else 'modeling_qface.training.data.load_source("image_folder", ..., split="all")'
    )
    print(f"wrote {written} face(s) to {args.output} ({args.format}; read with {loader})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
