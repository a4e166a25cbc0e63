# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The image and video files of `qface analyze`'s inputs: files, folders (recursive) and glob patterns (`**`
recurses). Folders and globs take files with an image or video extension; `split_photos_and_videos` then tells the
two apart by their content (a photo is what Pillow opens, a video what FFmpeg finds a video stream in).

Symlinked folders are followed, but each real folder is searched once, so symlink loops end; a file reached by
several paths is taken once. Folders and files that cannot be read become failures, never silent omissions.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..video.decoding import VIDEO_EXTENSIONS, probe_video

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif", ".ppm", ".pgm", ".pbm"}
)


def collect_inputs(patterns: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expands files, folders and globs into image files (in order, each once) and the inputs that failed.

    Folders and glob matches keep files with an image extension only; a file named explicitly is always taken
    (and reported later if it is not an image). Symlinked folders are followed, but each real folder is searched
    once per input, so symlink loops end; a file reached by several paths (links, overlapping inputs) is taken once,
    by the first path. Failures `(input, reason)`: inputs that match nothing, and folders or paths that cannot be
    read (no permission), so that they count as failures instead of silently holding no images.
    """
    collector = _InputCollector()
    for pattern in patterns:
        collector.add(pattern)
    return collector.files, collector.failures


class _InputCollector:
    """The image files found so far (each real file once) and the failures met on the way."""

    def __init__(self):
        self.files: list[Path] = []
        self.failures: list[tuple[str, str]] = []
        self._real_files: set[str] = set()

    def add(self, pattern: str) -> None:
        """Adds the files of one input: a file, a folder (recursive) or a glob pattern."""
        failures_before = len(self.failures)
        try:
            found = self._expand(pattern)
        except OSError as error:  # e.g. a path inside a folder that cannot be searched
            self.failures.append((pattern, _unreadable(error)))
            return
        if found is None:
            self.failures.append((pattern, "no such file or folder"))
        elif not found and len(self.failures) == failures_before:  # else: its unreadable folder is the reason
            self.failures.append((pattern, "no image or video file found"))
        for path in found or ():
            real = os.path.realpath(path)
            if real not in self._real_files:
                self._real_files.add(real)
                self.files.append(path)

    def _expand(self, pattern: str) -> list[Path] | None:
        """The files of one input (None: no such path); raises OSError for a path that cannot be looked at."""
        path = Path(pattern)
        kind = _path_kind(path)
        if kind == "folder":
            return self._images_under(path)
        if kind == "file":
            return [path]
        if kind == "other":  # not something to read as an image (a pipe would block)
            self.failures.append((pattern, "not a regular file (a pipe, socket or device), not read"))
            return []
        if glob.has_magic(pattern):
            return self._glob(pattern)
        return None

    def _glob(self, pattern: str) -> list[Path]:
        if "**" in Path(pattern).parts:
            return self._recursive_glob(pattern)
        found = []  # without `**`, glob.glob goes no deeper than the pattern: no loop to fear
        for match in sorted(map(Path, glob.glob(pattern))):
            if match.is_dir():
                found += self._images_under(match)
            elif _is_image_name(match):
                found += self._image_file(match)
        return found

    def _image_file(self, path: Path) -> list[Path]:
        """`[path]` for a regular file; for anything else named like an image (a dangling symlink, a pipe, a device)
        a failure that says what it is, and `[]`: it is never read, and never silently left out."""
        try:
            kind = _path_kind(path)
        except OSError as error:
            self.failures.append((str(path), _unreadable(error)))
            return []
        if kind == "file":
            return [path]
        if kind is None:
            self.failures.append((str(path), "a symbolic link to a file that does not exist"))
        else:
            self.failures.append((str(path), "not a regular file (a pipe, socket or device), not read"))
        return []

    def _recursive_glob(self, pattern: str) -> list[Path]:
        """A `**` pattern matched while walking its fixed leading folder. Not glob.glob: it follows symlink loops
        until the paths grow too long, yielding one file many times (two loops: exponentially many, for hours)."""
        parts = Path(pattern).parts
        fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
        base, rest = Path(*parts[:fixed]) if fixed else Path(), parts[fixed:]
        if not base.is_dir():
            return []
        # Like glob, `*` and `**` skip hidden names unless the pattern names them.
        skip_hidden = not any(part.startswith(".") for part in rest)
        found = []
        for path in self._walk(base, skip_hidden):
            relative = path.relative_to(base).parts
            # A file matches, or sits under a matching folder (as glob's folder matches are searched, e.g. `a/**`).
            if _is_image_name(path) and any(_match_parts(rest, relative[:n]) for n in range(1, len(relative) + 1)):
                found += self._image_file(path)
        return sorted(found)

    def _images_under(self, folder: Path) -> list[Path]:
        return sorted(image for path in self._walk(folder) if _is_image_name(path) for image in self._image_file(path))

    def _walk(self, top: Path, skip_hidden: bool = False) -> Iterator[Path]:
        """The entries under `top` that are not folders (files, and links, pipes or devices, which `_image_file`
        sorts out), following symlinked folders but searching each real folder once, so symlink loops end. Folders
        and entries that cannot be read are recorded as failures."""
        visited, stack = set(), [top]
        while stack:
            folder = stack.pop()
            real = os.path.realpath(folder)
            if real in visited:
                continue
            visited.add(real)
            try:
                with os.scandir(folder) as scan:
                    entries = list(scan)
            except OSError as error:
                self.failures.append((str(folder), _unreadable(error)))
                continue
            for entry in entries:
                if skip_hidden and entry.name.startswith("."):
                    continue
                path = folder / entry.name
                try:
                    if entry.is_dir():
                        stack.append(path)
                        continue
                except OSError as error:  # a symlink whose target cannot be looked at
                    self.failures.append((str(path), _unreadable(error)))
                    continue
                yield path


def _path_kind(path: Path) -> str | None:
    """ "folder", "file", "other" (a device, a pipe) or None (no such path). Raises OSError when the path cannot be
    looked at, e.g. when a folder on the way cannot be searched (permission) or a symlink loops."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _match_parts(pattern: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Whether path parts match glob pattern parts; `**` matches any number of (non-hidden) parts, as in glob."""
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return _match_parts(rest, names) or (
            bool(names) and not names[0].startswith(".") and _match_parts(pattern, names[1:])
        )
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatch(names[0], head) and _match_parts(rest, names[1:])


def _unreadable(error: OSError) -> str:
    return f"cannot be read ({error.strerror or error})"


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS or path.suffix.lower() in VIDEO_EXTENSIONS


def split_photos_and_videos(files: list[Path]) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """`files` as (photos, videos, failures), by content, not name: a file Pillow identifies is a photo (an animated
    GIF too); one in which FFmpeg finds a video stream is a video; a media file FFmpeg reads without one (audio only)
    is a failure saying so; anything else stays with the photos, where it is reported as an unreadable image."""
    from PIL import Image, UnidentifiedImageError

    from ..video.decoding import NotAVideoError, open_video

    photos, videos, failures = [], [], []
    for path in files:
        try:
            with Image.open(path):
                photos.append(path)
                continue
        except (UnidentifiedImageError, OSError, ValueError):
            pass
        except Image.DecompressionBombError:
            photos.append(path)  # a (huge) image: load_image_rgb reports it
            continue
        if probe_video(path) is not None:
            videos.append(path)
            continue
        try:
            open_video(path)[0].close()
        except NotAVideoError as error:
            if "no video stream" in str(error):
                failures.append((str(path), f"{error} (audio only?): nothing to analyse"))
                continue
        photos.append(path)
    return photos, videos, failures


__all__ = ["IMAGE_EXTENSIONS", "collect_inputs", "split_photos_and_videos"]
