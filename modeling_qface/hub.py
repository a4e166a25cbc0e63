"""Sharing on the Hugging Face Hub: the Q-Face model card and a push that ships it with the weights."""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from .configuration_qface import QFaceConfig
from .heads_qface import output_fields

MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"


def metrics_table(metrics: dict[str, float]) -> str:
    """`{"expression/accuracy": 0.91, ...}` (as `qface evaluate` writes them) -> a markdown table."""
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()) if "/" in name]
    return "\n".join(rows)


def build_model_card(
    config: QFaceConfig,
    repo_id: str,
    num_parameters: int,
    metrics: dict[str, float] | None = None,
    training_summary: str = "Not recorded.",
    model_summary: str = "",
) -> ModelCard:
    """The model card (README.md) of a Q-Face checkpoint, from `model_card.md` and the model's own config."""
    if not MODEL_CARD_TEMPLATE.is_file():
        raise FileNotFoundError(f"model card template not found at {MODEL_CARD_TEMPLATE}")
    tasks = []
    for task in config.tasks:
        labels = ", ".join(task["labels"][:8]) + (f", ... ({len(task['labels'])})" if len(task["labels"]) > 8 else "")
        tasks.append({"name": task["name"], "kind": task["kind"], "labels": labels,
                      "output": ", ".join(f"`{f}`" for f in output_fields(task).values())})  # fmt: skip
    card_data = ModelCardData(
        library_name="transformers", license="apache-2.0", pipeline_tag="image-classification",
        tags=["qface", "face-analysis", "facial-expression-recognition", "action-units", "head-pose", "age-estimation"],
    )  # fmt: skip
    encoder = config.backbone_config
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        model_summary=model_summary,
        image_size=encoder.image_size,
        tasks=tasks,
        encoder_layers=encoder.num_hidden_layers,
        encoder_width=encoder.hidden_size,
        patch_size=encoder.patch_size,
        fusion_layers=", ".join(map(str, config.fusion_layers)),
        d_model=config.d_model,
        num_queries=sum(len(t["labels"]) for t in config.tasks),
        decoder_layers=config.decoder_layers,
        num_parameters=f"{num_parameters / 1e6:.1f} M",
        metrics_table=metrics_table(metrics) if metrics else "",
        training_summary=training_summary,
    )


def push_to_hub(
    model,
    repo_id: str,
    image_processor=None,
    metrics: dict[str, float] | None = None,
    training_summary: str = "Not recorded.",
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload Q-Face model",
) -> str:
    """Pushes weights (safetensors), config, model code, image processor and the Q-Face model card in one commit.

    `PreTrainedModel.push_to_hub` would write transformers' generic card; this writes ours. Returns the commit URL.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        if image_processor is not None:
            image_processor.save_pretrained(folder)
        card = build_model_card(model.config, repo_id, model.num_parameters(), metrics, training_summary)
        card.save(Path(folder) / "README.md")
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    return commit.commit_url
