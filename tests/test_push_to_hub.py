"""push_to_hub without the Hub: HfApi's network calls are replaced by a folder standing in for the remote repo."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from huggingface_hub import CommitInfo, HfApi, RepoUrl

from modeling_qface import QFaceModel
from modeling_qface.hub import build_model_card, push_to_hub
from modeling_qface.image_processor import build_image_processor


def fake_hub(monkeypatch, remote: Path) -> list:
    """Patches HfApi's `create_repo` and `upload_folder`; an upload copies the folder into `remote`."""
    commits = []

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
        card = Path(folder_path, "README.md").read_text()
        # The Hub rejects a card whose metadata is not YAML.
        assert card.startswith("---\n") and isinstance(yaml.safe_load(card.split("---\n")[1]), dict)
        shutil.copytree(folder_path, remote, dirs_exist_ok=True)
        commits.append(commit_message)
        oid = "0" * 40
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}", commit_message=commit_message,
                          commit_description="", oid=oid)  # fmt: skip

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return commits


def test_push_ships_safetensors_code_processor_and_card(tmp_path, monkeypatch, tiny_model, pixel_values):
    remote = tmp_path / "remote"
    commits = fake_hub(monkeypatch, remote)
    metrics = {"expression/accuracy": 0.5, "age/mae": 7.25}
    url = push_to_hub(tiny_model, "me/qface-tiny", build_image_processor(tiny_model.config), metrics=metrics)
    assert url.startswith("https://huggingface.co/me/qface-tiny/commit/") and len(commits) == 1
    files = {p.name for p in remote.iterdir()}
    assert {"README.md", "config.json", "model.safetensors", "modeling_qface.py", "configuration_qface.py",
            "heads_qface.py", "preprocessor_config.json"} <= files  # fmt: skip
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    card = (remote / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card
    assert "| expression/accuracy | 0.5000 |" in card and "| age/mae | 7.2500 |" in card
    assert "| head_pose | regression | `head_pose` | yaw, pitch, roll |" in card
    # What was pushed loads back and answers exactly like the pushed model.
    reloaded = QFaceModel.from_pretrained(remote).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values).au_logits, tiny_model(pixel_values).au_logits)


def test_card_without_metrics_says_so(tiny_config):
    card = str(build_model_card(tiny_config, "me/x", 123_456))
    assert "No evaluation results were recorded" in card and "Parameters: 0.1 M" in card
    assert "blocks 2, 4" in card and "66 learnable queries" in card
