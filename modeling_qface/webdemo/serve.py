# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface serve`: the Q-Face web demo, a Gradio app (also the Hugging Face Space's `app.py`).

Upload a photo or pick a sample photo -> every face is detected, aligned and analysed by the `face-analysis`
pipeline; the page shows the annotated photo, one table row per face, the full outputs as CSV, and for a chosen
face its decoder attention maps and how much each task reads each encoder stage.

The model is a folder written by `save_pretrained` or a preset name (`qface-tiny`, ...). A preset has random
weights: the page then says so in a warning banner, since its outputs are noise.

Privacy: the server binds to 127.0.0.1 unless told otherwise, makes no share link, sends no analytics
(`GRADIO_ANALYTICS_ENABLED=False` is set before Gradio is imported), and deletes uploaded photos and results from
its cache after `CACHE_LIFETIME_S`; its own results folder (`qface-results-*`) goes when the server stops.
Uploads above `--max-file-size` (default `DEFAULT_MAX_FILE_SIZE`) are refused by Gradio before they reach disk.
"""

from __future__ import annotations

import argparse
import errno
import html
import itertools
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

# Gradio reads this when it is imported and when a Blocks is built; both must see it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ..analysis.analyze import add_dtype_argument, torch_dtype  # noqa: E402
from ..configuration import PRESET_NAMES, load_preset  # noqa: E402
from ..figures.drawing import FACE_COLOURS, attention_figure_for_face, render, stage_usage_chart  # noqa: E402
from ..model.image_loading_qface import ImageLoadError, load_image_rgb  # noqa: E402
from ..model.image_processing_qface import build_image_processor  # noqa: E402
from ..model.model_loading_qface import ModelLoadError, load_qface_model  # noqa: E402
from ..model.modeling_qface import QFaceModel  # noqa: E402
from ..model.onnx_qface import QFaceOnnxModel, is_onnx_model_folder  # noqa: E402
from ..model.threads_qface import add_threads_argument, configure_threads  # noqa: E402
from ..outputs.dataframe import results_to_dataframe  # noqa: E402
from ..registry import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_NOTICE,
    default_model_available,
    register_face_analysis_pipeline,
)
from ..samples.photos import CACHE_ENV_VAR, DEFAULT_CACHE_DIR, resolve_cache_dir  # noqa: E402

# The shipped demo model when this install has it, else the untrained tiny preset (with a warning on the page).
DEFAULT_MODEL = str(DEFAULT_MODEL_DIR) if default_model_available() else "qface-tiny"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# Largest upload Gradio accepts (its size syntax: "20mb" = 20 MiB). A phone photo is 2-10 MB; the limit keeps one
# request from filling the server's disk, and the pipeline refuses images above ~89.5 Mpx anyway.
DEFAULT_MAX_FILE_SIZE = "20mb"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Columns of the on-page table; the CSV download has every output (`results_to_dataframe`).
TABLE_COLUMNS = [
    "face",
    "box (x1, y1, x2, y2)",
    "expression",
    "age",
    "yaw / pitch / roll",
    "active AUs",
    "top attributes",
]
TABLE_COLUMN_WIDTHS = ["60px", "180px", "150px", "110px", "220px", "260px", "400px"]
TOP_ATTRIBUTES = 3
CACHE_LIFETIME_S = 3600  # Gradio's copies of uploads and results are deleted after this many seconds
KEPT_CSV_FILES = 16  # the newest CSV files the app keeps in its own folder (Gradio serves its own copies)
UNTRAINED_WARNING = (
    '<div id="qface-untrained-warning" role="alert" style="border: 1px solid #d97706; background: #fef3c7; '
    'color: #78350f; padding: 10px 14px; border-radius: 8px;"><strong>⚠️ Untrained model.</strong> '
    "<code>{name}</code> is a preset with random weights: every expression, AU, attribute, age and pose on this "
    "page is noise. Start the demo with a trained checkpoint: <code>qface serve --model PATH</code>.</div>"
)


DEMO_MODEL_NOTICE = (
    '<div id="qface-demo-model-notice" role="note" style="border: 1px solid #2563eb; background: #eff6ff; '
    'color: #1e3a8a; padding: 10px 14px; border-radius: 8px;">' + html.escape(DEFAULT_MODEL_NOTICE) + "</div>"
)


# --------------------------------------------------------------------------------------------- model loading


@dataclass
class LoadedModel:
    model: QFaceModel
    name: str  # what the user passed: a folder or a preset name
    trained: bool  # False for a preset (random weights)


def load_model(name_or_path: str, seed: int = 0) -> LoadedModel:
    """A saved Q-Face folder (`save_pretrained` output) or a preset name (random weights, seeded).

    Raises:
        ValueError: `name_or_path` is neither a folder with a `config.json` nor a preset name.
        ModelLoadError (a ValueError): the folder's weights are missing, a pickle, corrupt or do not match.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"--model {name_or_path!r}: folder has no config.json (expected a Q-Face model saved "
                f"with save_pretrained)"
            )
        if is_onnx_model_folder(path):
            # A `qface export onnx` folder: onnxruntime, float32, no attention maps (docs/inference.md).
            return LoadedModel(QFaceOnnxModel.from_pretrained(path), str(path), trained=True)
        # Safetensors only, every weight matching the config: else a one-line ModelLoadError.
        return LoadedModel(load_qface_model(path).eval(), str(path), trained=True)
    if name_or_path in PRESET_NAMES:
        # Seeded so that two processes serving the same preset give the same (meaningless) numbers; the caller's
        # random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = QFaceModel(load_preset(name_or_path)).eval()
        return LoadedModel(model, name_or_path, trained=False)
    raise ValueError(
        f"--model {name_or_path!r} is neither a folder with a saved Q-Face model nor a preset {list(PRESET_NAMES)}"
    )


def build_face_pipeline(model: QFaceModel):
    """The registered `face-analysis` pipeline around an already loaded model."""
    register_face_analysis_pipeline()
    return transformers.pipeline("face-analysis", model=model, image_processor=build_image_processor(model.config))


def find_sample_photos(folder: str | os.PathLike | None = None) -> list[Path]:
    """Photos in `folder` (default: `$QFACE_SAMPLE_PHOTOS` or ~/.cache/qface/sample_photos), sorted by name.

    An absent folder gives no examples (the page then shows only the upload box).
    """
    folder = resolve_cache_dir(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))


# ------------------------------------------------------------------------------------------ the handlers


def uploaded_file(photo: dict | str | os.PathLike) -> tuple[str, str]:
    """(path on the server, name to show) of an upload.

    The page's events run with `preprocess=False`, so the handler gets Gradio's raw file payload (a dict with
    `path`, already checked by Gradio to lie in its upload cache, and the user's `orig_name`) instead of Gradio
    opening the file with Pillow and failing with a generic error; a plain path is accepted too (tests, scripts).
    """
    if isinstance(photo, dict):
        return photo["path"], photo.get("orig_name") or Path(photo["path"]).name
    return str(photo), Path(photo).name


def load_photo(photo: dict | str | os.PathLike) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB of an upload, read exactly as the pipeline reads files (EXIF rotation, transparency
    on white, greyscale). Raises `ImageLoadError` naming the file as the user knows it, not by its cache path."""
    path, name = uploaded_file(photo)
    try:
        return load_image_rgb(path)
    except ImageLoadError as error:
        raise type(error)(str(error).replace(path, name)) from error


def face_label(index: int) -> str:
    return f"Face {index + 1}"


def summary_table(faces: list[dict]) -> pd.DataFrame:
    """One row per face with the page's columns (`TABLE_COLUMNS`); faces in pipeline order, numbered from 1."""
    rows = []
    for index, face in enumerate(faces):
        row = {"face": index + 1, "box (x1, y1, x2, y2)": ", ".join(f"{value:.0f}" for value in face["box"])}
        # A model has only some tasks (the demo model has no AUs): its other columns stay "-".
        if "expression" in face:
            expression = face["expression"]
            row["expression"] = f"{expression['label']} ({expression['scores'][expression['label']]:.2f})"
        if "age" in face:
            row["age"] = f"{face['age']['years']:.1f} ± {face['age']['std']:.1f}"
        if "head_pose" in face:
            row["yaw / pitch / roll"] = " / ".join(f"{face['head_pose'][n]:+.1f}°" for n in ("yaw", "pitch", "roll"))
        if "au" in face:
            row["active AUs"] = ", ".join(face["au_active"]) or "none"
        if "attributes" in face:
            attributes = sorted(face["attributes"].items(), key=lambda item: item[1], reverse=True)[:TOP_ATTRIBUTES]
            row["top attributes"] = ", ".join(f"{name} ({p:.2f})" for name, p in attributes)
        rows.append({column: row.get(column, "-") for column in TABLE_COLUMNS})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def number_faces(image: Image.Image, faces: list[dict]) -> Image.Image:
    """Writes each face's table number under its box, in the colour `render` gave the box (changes `image`)."""
    draw = ImageDraw.Draw(image)
    size = max(14, round(min(image.size) / 40))
    font = ImageFont.load_default(size=size)
    for index, face in enumerate(faces):
        x1, _, _, y2 = face["box"]
        y = min(y2 + 2, image.height - size - 4)  # below the box, inside the image
        text = face_label(index)
        left, top, right, bottom = draw.textbbox((x1, y), text, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=(0, 0, 0))
        draw.text((x1, y), text, fill=FACE_COLOURS[index % len(FACE_COLOURS)], font=font)
    return image


class CsvWriter:
    """Writes every output of every face (`results_to_dataframe`) to `<folder>/<n>/qface_faces.csv`.

    Gradio copies a returned file into its own cache before serving it, so only the newest `keep` files are kept.
    The folder (`qface-results-*` in the temporary directory) is removed by `cleanup()`, which the page's `close()`
    calls, and otherwise when the interpreter exits; a later call makes a new one.
    """

    def __init__(self, keep: int = KEPT_CSV_FILES):
        self.keep = keep
        self.counter = itertools.count()
        self._directory = None
        self._open()

    def _open(self) -> None:
        # TemporaryDirectory: removed by cleanup(), or by its finalizer at interpreter exit if nobody called it.
        self._directory = tempfile.TemporaryDirectory(prefix="qface-results-", ignore_cleanup_errors=True)
        self.folder = Path(self._directory.name)

    def cleanup(self) -> None:
        """Removes the folder and every CSV in it (idempotent)."""
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __call__(self, faces: list[dict], tasks=None) -> str:
        """`faces` of one photo as a CSV file; `tasks` (the model's config): only their columns, as `qface analyze`."""
        if self._directory is None:  # the page was closed and launched again
            self._open()
        path = self.folder / str(next(self.counter)) / "qface_faces.csv"
        path.parent.mkdir()
        results_to_dataframe(faces, tasks=tasks).to_csv(path, index=False)
        old = sorted((p for p in self.folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))[: -self.keep]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)
        return str(path)


class FaceAnalysisDemo:
    """The app's handlers around one pipeline; `build_demo` wires them to the page."""

    def __init__(self, pipe):
        self.pipe = pipe
        # An ONNX export has no attention maps: its page leaves the two figures empty.
        self.with_attention = not isinstance(pipe.model, QFaceOnnxModel)
        self.write_csv = CsvWriter()
        # The Analyze button and the sample photos are two events that Gradio may run at once; one model call at a
        # time keeps the pipeline's per-call state and the CPU threads to one request.
        self.lock = threading.Lock()
        self.video = None  # the video section's handler (`video_tab.VideoDemo`), added by build_demo

    def analyze(self, photo):
        """An upload (Gradio file payload or path) -> the page's outputs (see `page_outputs`)."""
        if photo is None:
            return self.page_outputs("Upload a photo or pick a sample photo, then press **Analyze**.")
        try:
            rgb = load_photo(photo)
        except ImageLoadError as error:
            return self.page_outputs(f"**Could not read the photo.** {error}")
        with self.lock:
            faces = self.pipe(rgb, output_attentions=self.with_attention)
        if not faces:
            return self.page_outputs(
                "No face found in this photo. Try a photo where a face is clearly visible and "
                "at least about 40 px wide.",
                image=Image.fromarray(rgb),
            )
        status = f"Found **{len(faces)}** face{'s' if len(faces) != 1 else ''}."
        return self.page_outputs(status, image=number_faces(render(rgb, faces), faces), faces=faces)

    def page_outputs(self, status: str, image: Image.Image | None = None, faces: list[dict] | None = None) -> tuple:
        """(annotated image, table, status, face-selector update, state, CSV-button update, attention figure,
        stage-usage chart).

        Without faces the table is empty and the selector, CSV button and figures are cleared, so nothing from the
        previous photo stays on the page.
        """
        faces = faces or []
        choices = [face_label(i) for i in range(len(faces))]
        first = choices[0] if choices else None
        attention, stages = self.face_figures(first, faces)
        csv = gr.update(value=self.write_csv(faces, self.pipe.model.config) if faces else None, interactive=bool(faces))
        return (
            image,
            summary_table(faces),
            status,
            gr.update(choices=choices, value=first),
            faces or None,
            csv,
            attention,
            stages,
        )

    def face_figures(self, label: str | None, faces: list[dict] | None):
        """(attention-maps figure, stage-usage chart) of the face chosen in the selector; (None, None) if none.

        The attention figure shows the face's predicted expression and its 3 most probable AUs on each fused stage.
        """
        if not label or not faces or "attention" not in faces[0]:
            return None, None
        face = faces[int(label.split()[-1]) - 1]
        return attention_figure_for_face(face), stage_usage_chart(face["stage_usage"], title=f"Stage usage, {label}")


# ------------------------------------------------------------------------------------------------ the page


class QFacePage(gr.Blocks):
    """The demo's `gr.Blocks`: however it is launched (`qface serve`, `app.py` on a Space, a script), uploads are
    limited to its `max_file_size`, and `close()` also removes the app's results folder."""

    def __init__(self, *args, max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE, **kwargs):
        super().__init__(*args, **kwargs)
        self.qface_max_file_size = max_file_size
        self.qface_app = None  # the handlers (`FaceAnalysisDemo`), set by `build_demo`

    def launch(self, *args, **kwargs):
        # Gradio takes the limit only as a launch argument; a caller's own value still wins.
        kwargs.setdefault("max_file_size", self.qface_max_file_size)
        return super().launch(*args, **kwargs)

    def close(self, verbose: bool = True) -> None:
        super().close(verbose=verbose)
        if self.qface_app is not None:
            self.qface_app.write_csv.cleanup()
            if self.qface_app.video is not None:
                self.qface_app.video.cleanup()


def build_demo(
    model: str | LoadedModel = DEFAULT_MODEL,
    sample_photos_dir: str | os.PathLike | None = None,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
) -> QFacePage:
    """The Gradio page for a model (folder, preset name or `LoadedModel`) with the sample photos as examples.

    `max_file_size`: largest upload, in bytes or Gradio's syntax ("20mb"); None: no limit.
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    app = FaceAnalysisDemo(build_face_pipeline(loaded.model))
    samples = find_sample_photos(sample_photos_dir)

    with QFacePage(
        title="Q-Face",
        analytics_enabled=False,
        delete_cache=(CACHE_LIFETIME_S, CACHE_LIFETIME_S),
        max_file_size=max_file_size,
    ) as demo:
        gr.Markdown(
            "# Q-Face: face analysis\nExpression, 15 action units, 40 attributes, age and head pose of every "
            f"face in a photo. Model: `{loaded.name}`."
        )
        if not loaded.trained:
            gr.HTML(UNTRAINED_WARNING.format(name=html.escape(loaded.name)))
        elif Path(loaded.name).resolve() == DEFAULT_MODEL_DIR:
            gr.HTML(DEMO_MODEL_NOTICE)
        with gr.Row():
            with gr.Column() as input_column:
                photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"], elem_id="qface-photo")
                analyze_button = gr.Button("Analyze", variant="primary", elem_id="qface-analyze")
            with gr.Column():
                status = gr.Markdown("Upload a photo or pick a sample photo.", elem_id="qface-status")
                annotated = gr.Image(
                    type="pil", label="Detected faces", interactive=False, format="png", elem_id="qface-annotated"
                )
        table = gr.Dataframe(
            headers=TABLE_COLUMNS,
            label="Faces",
            interactive=False,
            wrap=True,
            column_widths=TABLE_COLUMN_WIDTHS,
            elem_id="qface-table",
        )
        with gr.Row():
            face_selector = gr.Dropdown(
                choices=[], label="Face for the figures", interactive=True, scale=2, elem_id="qface-face"
            )
            csv_file = gr.DownloadButton(
                "Download every output of every face (CSV, faces counted from 0)",
                interactive=False,
                scale=1,
                size="md",
                elem_id="qface-csv",
            )
        with gr.Row():
            attention_plot = gr.Plot(label="Attention maps", scale=3, elem_id="qface-attention")
            stage_plot = gr.Plot(label="Stage usage", scale=2, elem_id="qface-stages")
        results = gr.State()

        outputs = [annotated, table, status, face_selector, results, csv_file, attention_plot, stage_plot]
        # preprocess=False: the handler reads the upload itself (see `uploaded_file`).
        analyze_button.click(app.analyze, inputs=photo, outputs=outputs, preprocess=False)
        face_selector.input(app.face_figures, inputs=[face_selector, results], outputs=[attention_plot, stage_plot])
        if samples:
            with input_column:  # below the upload box, although the outputs it fills are defined above
                gr.Examples(
                    [[str(path)] for path in samples],
                    inputs=photo,
                    outputs=outputs,
                    fn=app.analyze,
                    run_on_click=True,
                    preprocess=False,
                    cache_examples=False,
                    examples_per_page=len(samples),
                    label="Sample photos (from pip/npm packages): click one",
                    elem_id="qface-examples",
                )
        from .video_tab import add_video_section

        app.video = add_video_section(app.pipe, app.lock)
    demo.qface_app = app  # the handlers, for tests and scripts
    return demo


# ------------------------------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qface serve", description="Serve the Q-Face web demo (Gradio).")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"folder of a saved Q-Face model, or a preset {list(PRESET_NAMES)} (random weights); "
        "default: the demo model shipped with the package",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    photos_help = (
        f"folder of example photos (default ${CACHE_ENV_VAR} or {DEFAULT_CACHE_DIR}; "
        "fill it with modeling_qface/samples/photos.py)"
    )
    parser.add_argument("--sample-photos", default=None, help=photos_help)
    parser.add_argument(
        "--max-file-size",
        default=DEFAULT_MAX_FILE_SIZE,
        type=file_size,
        help=f"largest upload accepted, e.g. 5mb, 1gb or a number of bytes (default "
        f"{DEFAULT_MAX_FILE_SIZE}; 1 mb = 1024 kb)",
    )
    add_threads_argument(parser)
    add_dtype_argument(parser)
    return parser


def file_size(text: str) -> int:
    """`--max-file-size` in bytes: a number of bytes or Gradio's "<value><unit>" (b, kb, mb, gb, tb)."""
    from gradio.utils import _parse_file_size

    try:
        size = _parse_file_size(int(text) if text.strip().isdigit() else text.lower())
    except ValueError:
        size = None
    if not size or size < 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 20mb, 500kb or 1000000, got {text!r}")
    return size


def _stop_on_sigterm() -> None:
    """SIGTERM (`docker stop`, systemd, a test harness) stops the server as Ctrl-C does, so that it closes and the
    results folder is removed; by default SIGTERM ends Python without running any clean-up."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def port_in_use_message(host: str, port: int) -> str | None:
    """Why the web demo cannot listen on `host:port` (a port in use, a host that is not this machine's), or None."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; choose another with --port"
            return f"cannot listen on {host}:{port} ({error.strerror or error}); check --host and --port"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Before the model loads (seconds): a busy port is one line, not a traceback from deep inside Gradio.
    busy = port_in_use_message(args.host, args.port)
    if busy:
        print(f"qface serve: error: {busy}", file=sys.stderr)
        return 2
    try:
        configure_threads(args.threads)  # ValueError for a bad QFACE_NUM_THREADS
        loaded = load_model(args.model)
        loaded.model.to(torch_dtype(args.dtype))  # an ONNX export runs in float32 only: ValueError
        demo = build_demo(loaded, args.sample_photos, max_file_size=args.max_file_size)
    except ModelLoadError as error:  # a saved model that cannot be used: one line, no traceback
        print(f"qface serve: error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"qface serve: {error}", file=sys.stderr)
        return 2
    _stop_on_sigterm()
    try:
        # Blocks until Ctrl-C (or SIGTERM), which Gradio turns into closing its server.
        demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    except OSError as error:
        # Taken between the check above and Gradio's own bind: still one line.
        if "port" not in str(error).lower():
            raise
        print(f"qface serve: error: {port_in_use_message(args.host, args.port) or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The stop came while `launch` was still setting up (the server already answers before Gradio starts to
        # block): still a requested stop, not a failure.
        pass
    finally:
        demo.close(verbose=False)  # removes the results folder; a no-op for Gradio's server if already closed
    return 0


if __name__ == "__main__":
    sys.exit(main())
