# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The one write path of every result file (JSON Lines, CSV, and the pictures beside them).

- `check_output_file` / `check_output_folder`: before the model loads, an output that cannot be written is refused
  (one line naming it), an existing results file is never emptied unless `--overwrite` says so, and little free
  space is warned about.
- `RecordFile`: records appended whole. Each record is encoded first and handed to the OS in one piece; if writing
  fails (a full disk, a folder gone read-only) the file is cut back to the end of the last whole record and
  `OutputWriteError` names the file, so the file still holds every finished record and `--resume` continues it.
- `portable_text`: file names that are not UTF-8 (any byte string is a valid Linux file name; Python reads the odd
  bytes as lone surrogates) are written as valid UTF-8, each undecodable byte as the four characters `\\xNN`;
  `portable_path` maps such a name back to the file. A valid UTF-8 name is written as it is.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

# Less free space than this where an output goes: a warning before the run (a run of many images needs more).
LOW_SPACE_BYTES = 100 * 2**20
# How torch's zip writer (torch.save, accelerate's save_state) reports a write the OS refused.
TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos", "PytorchStreamWriter failed")
_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")


class OutputWriteError(OSError):
    """An output that cannot be written (full disk, read-only folder, a file where a folder should be): its message
    names the output; `errno` and `filename` are the OS error's."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class OutputExistsError(FileExistsError):
    """A results file that holds results already, given without `--resume` or `--overwrite`."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def portable_text(text: str) -> str:
    """`text` as valid UTF-8: the undecodable bytes of a file name (lone surrogates U+DC80..U+DCFF, as `os.fsdecode`
    reads them) as `\\xNN`; other lone surrogates as `\\udNNN`. Valid text is returned unchanged."""
    if text.isascii():  # nearly every string: no encoding needed to know
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte (e.g. from JSON): shown, not lost
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def portable_path(text: str) -> str:
    """The file name `portable_text` wrote as `text`: each `\\xNN` (NN from 80 to ff) is that byte again. (A valid
    UTF-8 name that itself contains such four characters reads back as the byte: the one ambiguity.)"""
    return os.fsdecode(_ESCAPED_BYTE.sub(lambda match: bytes([int(match.group(1), 16)]), os.fsencode(text)))


def check_output_file(path: Path, option: str = "--output", resume: bool = False, overwrite: bool = False) -> None:
    """Refuses, before any work, a results file that cannot be written or that holds results already (unless
    `resume` continues it or `overwrite` replaces it)."""
    path = Path(path)
    if path.is_dir():
        raise OutputWriteError(errno.EISDIR, f"{option} {path} is a folder, not a file", os.fspath(path))
    if not resume and not overwrite and path.is_file() and path.stat().st_size:
        raise OutputExistsError(
            errno.EEXIST,
            f"{option} {path} already holds results ({path.stat().st_size} bytes): --resume continues it, "
            "--overwrite replaces it",
            os.fspath(path),
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputWriteError(errno.EACCES, f"{option} {path}: not writable", os.fspath(path))
    check_output_folder(path.parent, option)


def check_output_folder(folder: Path, option: str) -> None:
    """Refuses a folder that cannot be created or written in (tried with a temporary file in it or in its nearest
    existing parent); warns when the disk has less than `LOW_SPACE_BYTES` free."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == folder else f" (its parent {existing} is a file)"
        raise OutputWriteError(errno.ENOTDIR, f"{option} {folder}: not a folder{where}", os.fspath(existing))
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".qface-write-check-"):
            pass
    except OSError as error:
        raise OutputWriteError(
            error.errno, f"{option} {folder}: cannot write in {existing} ({error.strerror})", os.fspath(existing)
        ) from error
    free = shutil.disk_usage(existing).free
    if free < LOW_SPACE_BYTES:
        logger.warning("%s %s: only %.0f MB free on its disk", option, folder, free / 2**20)


class RecordFile:
    """A results file written one whole record at a time (see the module docstring).

    Args:
        path (`Path`): the file.
        append (`bool`): continue the file (`--resume`); else it is written anew.
    """

    def __init__(self, path: Path, append: bool = False):
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self.fd = os.open(self.path, flags, 0o666)
        except OSError as error:
            raise self._error(error) from error

    def write(self, text: str) -> None:
        """Appends `text` (one or more whole records, valid UTF-8) or, if the OS refuses part of it, nothing."""
        data = memoryview(text.encode("utf-8"))
        end = self._end()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as error:
            if end is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, end)  # the torn record goes: the file ends with a whole one
            raise self._error(error) from error

    def _end(self) -> int | None:
        try:
            return os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:  # not a regular file (a pipe): nothing to cut back
            return None

    def _error(self, error: OSError) -> OutputWriteError:
        return OutputWriteError(
            error.errno,
            f"cannot write {self.path}: {error.strerror} (it holds every record finished before; "
            "--resume continues it once there is room)",
            os.fspath(self.path),
        )

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def write_errors(folder: Path, what: str):
    """A failed write of a folder's files (a checkpoint, a model export, an ONNX graph) on a full disk or a read-only
    folder as one `OutputWriteError` naming `folder` ("cannot write the {what} {folder}: ..."), instead of an OS error
    naming some file inside it or torch's `RuntimeError` from deep in its zip writer ("unexpected pos", "file write
    failed"). Any other RuntimeError is a bug and passes through."""
    try:
        yield
    except OSError as error:
        raise OutputWriteError(
            error.errno, f"cannot write the {what} {folder}: {error.strerror or error}", os.fspath(folder)
        ) from error
    except RuntimeError as error:
        if not any(sign in str(error) for sign in TORCH_WRITE_FAILURES):
            raise  # not a write that failed: a bug
        raise OutputWriteError(
            errno.EIO, f"cannot write the {what} {folder}: {' '.join(str(error).split())}", os.fspath(folder)
        ) from error


def save_picture(save, path: Path) -> None:
    """Writes a picture with `save(path)` (PIL's or matplotlib's), a failure as `OutputWriteError` naming it."""
    try:
        save(path)
    except OSError as error:
        raise OutputWriteError(
            error.errno, f"cannot write {path}: {error.strerror or error}", os.fspath(path)
        ) from error


__all__ = [
    "LOW_SPACE_BYTES",
    "OutputExistsError",
    "OutputWriteError",
    "RecordFile",
    "check_output_file",
    "check_output_folder",
    "portable_path",
    "portable_text",
    "save_picture",
    "write_errors",
]
