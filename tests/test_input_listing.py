"""The input listing of `qface analyze` (`modeling_qface.analysis.inputs`): every image found, nothing silently
left out."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from modeling_qface.analysis.inputs import collect_inputs
from modeling_qface.model.image_loading_qface import load_image_rgb


@pytest.fixture
def odd_folder(tmp_path):
    """A folder with a JPEG, an AVIF, a dangling symlink and a pipe named like images, and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.jpg")
    Image.fromarray(pixels).save(folder / "b.avif")
    os.symlink(folder / "gone.jpg", folder / "c.jpg")
    os.mkfifo(folder / "d.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize("how", ["folder", "glob", "recursive glob"])
def test_scans_take_avif_and_report_links_and_pipes_named_like_images(odd_folder, how):
    pattern = {"folder": str(odd_folder), "glob": f"{odd_folder}/*", "recursive glob": f"{odd_folder.parent}/**/*"}
    files, failures = collect_inputs([pattern[how]])
    assert [path.name for path in files] == ["a.jpg", "b.avif"]
    assert {os.path.basename(name): reason for name, reason in failures} == {
        "c.jpg": "a symbolic link to a file that does not exist",
        "d.png": "not a regular file (a pipe, socket or device), not read",
    }
    assert load_image_rgb(files[1]).shape == (24, 32, 3)  # the AVIF decodes


def test_a_pipe_named_directly_is_a_failure_not_a_hang(odd_folder):
    files, failures = collect_inputs([str(odd_folder / "d.png")])
    reason = "not a regular file (a pipe, socket or device), not read"
    assert files == [] and failures == [(str(odd_folder / "d.png"), reason)]
