# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface analyze`: every face of many images and videos through a Q-Face model, as JSON Lines, CSV or Parquet.

    qface analyze photos/ "more/**/*.jpg" group.png --model runs/qface/final --output faces.csv
    qface analyze photos/ --model runs/qface/final --output faces.jsonl --render-dir annotated/ --attention-dir att/
    qface analyze interview.mp4 --output frames.csv --every 2        # one row per face per frame, with track_id

Videos (anything FFmpeg finds a video stream in; `analysis/video_run.py`, docs/video.md) are analysed after the
photos, frame by frame: a JSONL line per frame (`frame`, `timestamp_s`, `faces` with `track_id`) and a last line per
video with its per-track summary; CSV rows with `frame`, `timestamp_s` and `track_id`.

Inputs are files, folders (searched recursively for image files) and glob patterns (quote them so the shell does
not expand them; `**` recurses). Symlinked folders are followed, but each real folder is searched once, so symlink
loops end; a file reached by several paths is analysed once. The output format follows the extension of `--output`:

- `.jsonl`: one line per image, `{"input": path, "faces": [...]}` with the pipeline's face dicts, or
  `{"input": path, "error": reason}` for an input that could not be read. Strict JSON: NaN and infinities are null.
- `.parquet`: the CSV's rows and columns in a folder of Parquet parts, each written whole (`outputs/parquet.py`).
- `.csv`: one row per face with py-feat-style columns (`modeling_qface.outputs.dataframe.results_to_dataframe`), and
  one row per image without a face: its `input` and `image`, every other column empty (`face` too). The columns are
  those of the tasks computed (the model's, or `--tasks`), only their labels: known before the first image.

Each image's results are written and flushed as soon as the image is done: a run that is killed, interrupted or
stopped by an error leaves a valid file with every finished image (a kill loses at most the image in progress).
`--resume` skips the inputs already in the file, images without faces included (a JSONL line with `"faces": []`,
a CSV row with an empty `face`), and appends the others. Inputs that failed are in a JSONL file (their error line,
so they are skipped too) but not in a CSV (tried again). A CSV whose header is not the columns this run writes
(another model, other `--tasks`) is refused. An existing non-empty `--output` is refused unless `--resume` continues
it or `--overwrite` replaces it; the outputs are checked before the model loads. Records are written whole
(`modeling_qface.outputs.result_file`): a full disk ends the run with one line naming the file, which still holds
every finished image.

A file or folder that cannot be read is reported and skipped; the exit status is 0 unless `--strict` is given and
some input failed (then 1). Exit status 2: bad arguments or no model; 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections import deque
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cli import describe
from ..figures.report import picture_name
from ..model.face_alignment_qface import DEFAULT_MAX_IMAGE_SIDE, DEFAULT_SCORE_THRESHOLD, MIN_MAX_IMAGE_SIDE
from ..model.image_loading_qface import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image_rgb
from ..model.pipeline_qface import DEFAULT_AU_THRESHOLD
from ..model.threads_qface import add_threads_argument, configure_threads
from ..outputs.result_file import OutputWriteError, check_output_file, check_output_folder, portable_text, save_picture
from ..outputs.writers import open_writer
from ..registry import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NOTICE, default_model_available, register_face_analysis_pipeline
from .inputs import collect_inputs, split_photos_and_videos
from .video_run import add_video_arguments, analyse_videos, check_side_outputs, video_analyzer, video_option_problem
from .workers import PreprocessPool, replay_preprocessed, threads_per_process

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = (".jsonl", ".csv", ".parquet")
DTYPES = ("float32", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qface analyze",
        description="Detect every face in images and analyse it (expression, AUs, attributes, age, head pose).",
    )
    parser.add_argument("inputs", nargs="+", help="image and video files, folders (recursive) or quoted glob patterns")
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        help="results file: .jsonl (per image) or .csv (per face; a face-less image has one row), written as each image is done: a killed or "
        "interrupted run leaves a valid file with every finished image (it loses at most the image in progress); or "
        ".parquet, a folder of Parquet parts with the CSV's rows (a kill loses at most the last 10 s of work)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="append to --output, skipping the inputs it already holds, face-less images included (after a killed or "
        "interrupted run, or a full disk)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --output that holds results already (without --resume or --overwrite it is refused)",
    )
    parser.add_argument(
        "--model",
        help="folder of a saved Q-Face model, or a preset name (qface-tiny, ...) for an UNTRAINED random model; "
        "default: the demo model shipped with the package",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="faces per forward pass (default: %(default)s)")
    parser.add_argument(
        "--tasks", help="comma-separated tasks to compute (e.g. expression,age); default: all of the model's"
    )
    parser.add_argument(
        "--au-threshold",
        type=float,
        default=DEFAULT_AU_THRESHOLD,
        help="AU probability from which an AU is in au_active (default: %(default)s)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=DEFAULT_SCORE_THRESHOLD,
        help="face detection threshold (default: %(default)s)",
    )
    parser.add_argument(
        "--max-image-side",
        type=int,
        default=DEFAULT_MAX_IMAGE_SIDE,
        help=f"images are downscaled to this for detection (at least {MIN_MAX_IMAGE_SIDE}; default: %(default)s)",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        help="larger images are refused (default: %(default)s)",
    )
    parser.add_argument("--no-detect", action="store_true", help="inputs are aligned face crops: skip detection")
    parser.add_argument(
        "--render-dir", type=Path, help="write each image with its faces drawn on it here (not given: no pictures)"
    )
    parser.add_argument(
        "--attention-dir",
        type=Path,
        help="write attention figures (per face) and stage usage here (not given: no figures)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="write an HTML report here after the run (index.html: every face, the pictures, and per video its "
        "people and their timeline); needs a .jsonl --output",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    add_dtype_argument(parser)
    add_threads_argument(parser, " in each process (with --workers, the default is shared out between them)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes that read, detect and align the images (the model runs in the main process); the output "
        "is the same file. Worth it for many files on a dedicated machine: see docs/threads.md (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="initialisation seed of a preset (untrained) model (default: %(default)s)"
    )
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when any input failed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_video_arguments(parser)
    return parser


# ------------------------------------------------------------------------------------------------------- model


def load_pipeline(model: str | None, device: str | None = None, seed: int = 0, dtype: str | torch.dtype | None = None):
    """The face-analysis pipeline for a saved model folder, for a preset's randomly initialised model, or (None) for
    the demo model shipped with the package.

    A folder with `model.onnx` and no safetensors weights (written by `qface export onnx`) runs on onnxruntime, on
    the CPU, in float32; any other model runs on torch in `dtype` (`"float32"`, the default, or `"bfloat16"`).
    """
    from transformers import AutoImageProcessor, pipeline

    from ..configuration import PRESET_NAMES, load_preset
    from ..model.model_loading_qface import load_qface_model
    from ..model.modeling_qface import QFaceModel
    from ..model.onnx_qface import QFaceOnnxModel, is_onnx_model_folder

    dtype = torch_dtype(dtype)
    if is_onnx_model_folder(model):
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"--device {device}: an ONNX export ({model}) runs on the CPU (onnxruntime)")
        if dtype != torch.float32:
            raise ValueError(
                f"--dtype {str(dtype).removeprefix('torch.')}: an ONNX export ({model}) runs in float32; "
                "a lower precision is for the torch model (a folder with model.safetensors)"
            )
        register_face_analysis_pipeline()
        processor = None  # without preprocessor_config.json, the pipeline builds Q-Face's processor from the config
        if (Path(model) / "preprocessor_config.json").is_file():
            processor = AutoImageProcessor.from_pretrained(model)
        return pipeline(
            "face-analysis", model=QFaceOnnxModel.from_pretrained(model), image_processor=processor, device="cpu"
        )

    register_face_analysis_pipeline()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if model is None:
        if not default_model_available():
            raise FileNotFoundError(f"no --model given and this install has no demo model at {DEFAULT_MODEL_DIR}")
        logger.warning(DEFAULT_MODEL_NOTICE)
        model = str(DEFAULT_MODEL_DIR)
    if model in PRESET_NAMES:
        message = (
            f"--model {model} is a preset: the model is RANDOMLY INITIALISED (untrained) and its outputs are "
            "meaningless. Use it to test the workflow; pass a trained model folder for real results."
        )
        print(f"\nWARNING: {message}\n", file=sys.stderr)
        torch.manual_seed(seed)
        network, processor = QFaceModel(load_preset(model)).eval(), None
    elif Path(model).is_dir():
        network = load_qface_model(model).eval()  # safetensors only, every weight matched: else ModelLoadError
        try:
            processor = AutoImageProcessor.from_pretrained(model)
        except OSError:
            processor = None  # the pipeline builds Q-Face's processor from the config
    else:
        raise FileNotFoundError(f"--model {model}: neither a model folder nor a preset ({', '.join(PRESET_NAMES)})")
    return pipeline("face-analysis", model=network.to(dtype), image_processor=processor, device=device)


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """`--dtype` of the commands that run the pipeline (`qface analyze`, `serve`, `demo`)."""
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="precision of a torch model (default: %(default)s); bfloat16 is faster on CPUs with AVX512-BF16 or AMX "
        "and on GPUs (differences to float32 in docs/inference.md). An ONNX export (a folder with model.onnx) always "
        "runs in float32",
    )


def torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """`--dtype` as a torch dtype (None: float32); a ValueError names the value and the choices."""
    if dtype is None:
        return torch.float32
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"--dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    return getattr(torch, name)


# --------------------------------------------------------------------------------------------------------- run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    problem = _option_problem(args, output)
    if problem:
        return _bad_input(problem)
    try:  # before the model loads: an output that cannot be written costs no time
        if output.suffix.lower() == ".parquet":
            from ..outputs.parquet import check_parquet_output

            check_parquet_output(output, "--output", resume=args.resume, overwrite=args.overwrite)
        else:
            check_output_file(output, "--output", resume=args.resume, overwrite=args.overwrite)
        for option, folder in (
            ("--render-dir", args.render_dir),
            ("--attention-dir", args.attention_dir),
            ("--report", args.report),
        ):
            if folder is not None:
                check_output_folder(folder, option)
    except OSError as error:
        return _bad_input(error)
    files, failures = collect_inputs(args.inputs)
    try:
        configure_threads(threads_per_process(args.workers, args.threads))  # QFACE_NUM_THREADS: ValueError
        pipe = load_pipeline(args.model, args.device, args.seed, dtype=args.dtype)
        # How a --workers process builds its own pipeline (it only preprocesses, on the CPU); picklable for 'spawn'.
        worker_pipeline = functools.partial(load_pipeline, args.model, "cpu", args.seed, dtype=args.dtype)
        call = {
            "au_threshold": args.au_threshold,
            "score_threshold": args.score_threshold,
            "max_image_side": args.max_image_side,
            "max_image_pixels": args.max_image_pixels,
            "detect_faces": not args.no_detect,
            "output_attentions": args.attention_dir is not None,
        }
        if args.tasks:
            call["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
        pipe._sanitize_parameters(**call)  # checks the arguments (tasks, thresholds) before any image is read
    except (OSError, ValueError) as error:  # no model, a folder that is not a Q-Face model, bad tasks/thresholds
        return _bad_input(error)
    chosen = call.get("tasks") or pipe.model.config.task_names
    tasks = [task for task in pipe.model.config.tasks if task["name"] in chosen]
    files, videos, not_videos = split_photos_and_videos(files)
    failures += not_videos
    try:
        check_side_outputs(args, videos)
        writer = open_writer(output, tasks, args.resume, video=bool(videos), smoothed=args.smooth and bool(videos))
        analyzer = video_analyzer(pipe, call, args) if videos else None
    except (OSError, ValueError, ImportError) as error:  # an output that cannot be written, or not resumed
        return _bad_input(error)
    skipped = sum(writer.holds(path) for path in files + videos)
    files = [path for path in files if not writer.holds(path)]
    videos = [path for path in videos if not writer.holds(path)]
    try:
        num_images, num_faces = _analyse(pipe, call, files, failures, writer, args, worker_pipeline)
        if videos:
            num_videos, num_frames, num_video_faces = analyse_videos(analyzer, videos, writer, args, failures, tasks)
    except KeyboardInterrupt:
        print(
            f"\nqface analyze: interrupted; {output} holds every finished image (--resume completes it)",
            file=sys.stderr,
        )
        return 130
    except OutputWriteError as error:  # a full disk, a folder gone read-only: the file holds every finished image
        return _bad_input(error)
    finally:
        writer.close()  # every finished image is in the file already; this only releases it
    print(summary(num_images, num_faces, failures, output, skipped))
    if videos:
        print(f"{num_videos} video(s) analysed: {num_frames} frame(s), {num_video_faces} face(s)")
    if args.report is not None:
        from ..figures.report import write_report

        index = write_report(args.report, output, args.render_dir, args.attention_dir, title=f"Q-Face: {output.name}")
        print(f"report: {index}")
    return 1 if args.strict and failures else 0


def _option_problem(args, output: Path) -> str | None:
    """What is wrong with the options, found before the model loads and any image is read; None: nothing."""
    if output.suffix.lower() not in OUTPUT_FORMATS:
        return f"--output must end in {', '.join(OUTPUT_FORMATS[:-1])} or {OUTPUT_FORMATS[-1]}, got {output.name}"
    if args.batch_size < 1:
        return f"--batch-size must be >= 1, got {args.batch_size}"
    if args.workers < 1:
        return f"--workers must be >= 1, got {args.workers}"
    if args.report is not None and output.suffix.lower() != ".jsonl":
        return f"--report is made from a .jsonl --output, got {output.name}"
    if args.resume and args.overwrite:
        return "--resume continues --output and --overwrite replaces it: give one of them"
    if args.max_image_side < MIN_MAX_IMAGE_SIDE:
        return f"--max-image-side must be at least {MIN_MAX_IMAGE_SIDE} pixels, got {args.max_image_side}"
    return video_option_problem(args)


def _bad_input(problem) -> int:
    """Reports a bad option or input in the one-line style of every qface command; exit status 2."""
    print(f"qface analyze: error: {describe(problem)}", file=sys.stderr)
    return 2


def _analyse(pipe, call: dict, files: list[Path], failures: list, writer, args, worker_pipeline=None) -> tuple:
    """Runs the images through the pipeline, each image's results written as it completes; (images, faces).
    With `--workers N` (N > 1), N processes built by `worker_pipeline()` read and preprocess the images."""
    if args.workers > 1 and files:
        preprocess_params, _, _ = pipe._sanitize_parameters(**call)
        threads = threads_per_process(args.workers, args.threads)
        with PreprocessPool(args.workers, threads, worker_pipeline, preprocess_params, args.max_image_pixels) as pool:
            return _analyse_files(pipe, call, files, failures, writer, args, pool)
    return _analyse_files(pipe, call, files, failures, writer, args)


def _analyse_files(pipe, call: dict, files: list[Path], failures: list, writer, args, pool=None) -> tuple[int, int]:
    for source, reason in failures:
        if not writer.holds(source):  # a resumed file has them already
            writer.add_failure(source, reason)
    for directory in (args.render_dir, args.attention_dir):
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
    progress = tqdm(total=len(files), unit="image", disable=args.no_progress, file=sys.stderr)
    pending = deque()  # (path, image) of images handed to the pipeline whose results have not come back yet

    def add_failure(path: Path, reason: str) -> None:
        failures.append((str(path), reason))
        writer.add_failure(str(path), reason)
        progress.update(1)

    def readable_images():
        for path in files:
            try:
                image = load_image_rgb(path, max_pixels=args.max_image_pixels)
            except (ImageLoadError, OSError) as error:  # OSError: e.g. a file that cannot be read (permission)
                add_failure(path, str(error))
                continue
            pending.append((path, image if args.render_dir else None))
            yield image

    def preprocessed_images():  # --workers: read, detected and aligned by the pool, in input order
        for path, model_inputs in pool.results(files):
            if isinstance(model_inputs, str):  # the reason it could not be read, as readable_images reports it
                add_failure(path, model_inputs)
                continue
            pending.append((path, None))  # rendering reads the image again
            yield model_inputs

    num_images = num_faces = 0
    used_names: set[str] = set()
    all_stage_usage = []
    images = readable_images()
    if pool is not None:  # the pool runs `preprocess`; the pipeline's batching, forward and postprocess stay here
        images, pipe.preprocess = preprocessed_images(), replay_preprocessed
    try:
        with progress:
            for faces in pipe(images, batch_size=args.batch_size, **call):
                path, image = pending.popleft()
                writer.add(path, faces)
                num_images, num_faces = num_images + 1, num_faces + len(faces)
                name = picture_name(path.stem, used_names)
                if args.render_dir is not None:
                    image = load_image_rgb(path, max_pixels=args.max_image_pixels) if image is None else image
                    _save_render(image, faces, args.render_dir / f"{name}.jpg")
                if args.attention_dir is not None:
                    all_stage_usage += [face["stage_usage"] for face in faces]
                    _save_attention_figures(faces, args.attention_dir, name)
                progress.update(1)
    finally:
        pipe.__dict__.pop("preprocess", None)  # the class's own preprocess again
    if args.attention_dir is not None and all_stage_usage:
        from ..figures.drawing import stage_usage_chart

        chart = stage_usage_chart(all_stage_usage)
        save_picture(functools.partial(chart.savefig, dpi=100), args.attention_dir / "stage_usage.png")
    return num_images, num_faces


def summary(num_images: int, num_faces: int, failures: list[tuple[str, str]], output: Path, skipped: int = 0) -> str:
    failures = [(portable_text(str(source)), portable_text(reason)) for source, reason in failures]  # printable
    lines = [
        f"{num_images} image(s) analysed, {num_faces} face(s) found, {len(failures)} failure(s); results: {output}"
    ]
    if skipped:
        lines[0] += f" ({skipped} input(s) already there, skipped: --resume)"
    lines += [
        f"  failed: {reason}" if reason.startswith(str(source)) else f"  failed: {source}: {reason}"
        for source, reason in failures
    ]
    return "\n".join(lines)


def _save_render(image, faces: list[dict], path: Path) -> None:
    from ..figures.drawing import render

    save_picture(functools.partial(render(image, faces).save, quality=90), path)


def _save_attention_figures(faces: list[dict], folder: Path, name: str) -> None:
    from ..figures.drawing import attention_figure_for_face

    for index, face in enumerate(faces):
        figure = attention_figure_for_face(face)
        save_picture(functools.partial(figure.savefig, dpi=100), folder / f"{name}_face{index}_attention.png")


if __name__ == "__main__":
    sys.exit(main())
