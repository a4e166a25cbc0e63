"""`qface`: one command for the whole workflow; each sub-command is its module's own `main(argv)`.

Every command reports a bad input (a bad option, a missing or unreadable file, a damaged image, a malformed data set,
recipe or model folder) the same way: one line `qface <command>: error: <message naming the input>` on stderr and
exit status 2. Exit status 1 with a traceback means a bug; 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.util
import os
import sys
from pathlib import Path

# sub-command -> (module with `main(argv) -> int`, one-line description)
COMMANDS = {
    "pretrain": ("modeling_qface.training.pretrain", "MAE pretraining of the encoder on unlabelled face images"),
    "train": ("modeling_qface.training.finetune", "multi-task fine-tuning from a recipe (configuration/train-*.yaml)"),
    "evaluate": (
        "modeling_qface.training.evaluation",
        "every task's metrics of a model on benchmark data; table + JSON",
    ),
    "label": (
        "modeling_qface.training.teachers.label",
        "teacher labels (expression, pose, geometry, age) for a folder of photos",
    ),
    "analyze": (
        "modeling_qface.analysis.analyze",
        "every face of images/folders/globs -> JSONL or CSV, pictures, figures",
    ),
    "serve": ("modeling_qface.webdemo.serve", "the web demo (Gradio) on 127.0.0.1"),
    "demo": ("modeling_qface.samples.demo", "the main job: every face of the sample photos through a Q-Face model"),
    "push": ("modeling_qface.hub.push", "a saved model folder to the Hugging Face Hub, with its generated model card"),
    "export": (
        "modeling_qface.onnx_export.export",
        "a saved model as ONNX (qface export onnx MODEL OUT) for onnxruntime",
    ),
}


# Exceptions that mean "this input cannot be used", as (module, class): imported only when an exception reaches the
# dispatcher, so `qface --help` stays fast, and a module that cannot be imported (an optional extra) is passed over.
INPUT_ERRORS = (
    ("modeling_qface.model.image_loading_qface", "ImageLoadError"),  # and its ImageTooLargeError
    ("modeling_qface.samples.photos", "SamplePhotoFetchError"),
    # A model folder that cannot be loaded.
    ("modeling_qface.model.model_loading_qface", "ModelLoadError"),
    ("modeling_qface.model.modeling_qface", "CheckpointError"),
    # An output that cannot be written (full disk, read-only folder): it names the file.
    ("modeling_qface.outputs.result_file", "OutputWriteError"),
    ("modeling_qface.training.data.errors", "DataFormatError"),
    ("modeling_qface.training.recipe", "RecipeError"),
    ("modeling_qface.training.mae_data", "BadImageError"),
)
# A path the user named that is missing, cannot be read or is in the way; on the installation's own files: a bug.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
# A disk that is full or read-only (or a file too large for it) when a command writes: the machine's state, not a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})
# The package's own folders: `configuration/` and `training/` may lie elsewhere on disk (a source checkout).
INSTALLED_PACKAGES = ("modeling_qface", "modeling_qface.configuration", "modeling_qface.training")


def usage() -> str:
    lines = ["usage: qface <command> [options]   (qface <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {description}" for name, (_, description) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"qface: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[command][0])  # seconds (torch): a Ctrl-C may come in them
        with one_line_argument_errors(command):
            return module.main(rest) or 0
    except KeyboardInterrupt:
        print(f"\nqface {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not is_input_error(error):
            raise  # a bug: the traceback says where (exit status 1)
        print(f"qface {command}: error: {describe(error)}", file=sys.stderr)
        return 2


def input_errors() -> tuple[type[BaseException], ...]:
    """The exception classes of INPUT_ERRORS that can be imported here."""
    classes = []
    for module_name, class_name in INPUT_ERRORS:
        try:
            classes.append(getattr(importlib.import_module(module_name), class_name))
        except (ImportError, AttributeError):  # an optional extra not installed, or a class not there yet
            continue
    return tuple(classes)


def is_input_error(error: BaseException) -> bool:
    """Whether `error` means a bad input rather than a bug (see INPUT_ERRORS and PATH_ERRORS)."""
    if isinstance(error, PATH_ERRORS):
        return error.filename is None or not _is_installed_file(error.filename)
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return True
    return isinstance(error, input_errors())


def install_roots() -> list[Path]:
    """The folders that hold the installed package's files (without importing `training`: finding it suffices)."""
    roots = []
    for name in INSTALLED_PACKAGES:
        spec = importlib.util.find_spec(name)
        roots += [Path(location).resolve() for location in (spec.submodule_search_locations or [])] if spec else []
    return roots


def _is_installed_file(filename) -> bool:
    path = Path(os.path.realpath(os.fsdecode(filename)))
    roots = (*install_roots(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
    return any(path == root or root in path.parents for root in roots)


def describe(error: BaseException | str) -> str:
    """An error (or a message) on one line: `path: reason` for an OS error on a file, else its message."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        name = os.fsdecode(error.filename)
        message = error.strerror if name in error.strerror else f"{name}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


@contextlib.contextmanager
def one_line_argument_errors(command: str):
    """Makes argparse report a bad option like every other bad input: one line `qface <command>: error: ...`,
    exit status 2, instead of the usage block and the error (`--help` still shows the usage)."""
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str):
        prog = parser.prog if parser.prog.startswith(f"qface {command}") else f"qface {command}"
        parser.exit(2, f"{prog}: error: {message} (see {prog} --help)\n")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


if __name__ == "__main__":
    sys.exit(main())
