"""The Q-Face export: one model folder that anyone loads with `trust_remote_code=True` without this package (see
the `modeling_qface.hub` docstring for its files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from transformers.dynamic_module_utils import custom_object_save

from ..model.image_processing_qface import build_image_processor
from ..model.pipeline_qface import FaceAnalysisPipeline, custom_pipelines_entry
from .card import EVALUATION_FILE, TRAINING_CONFIG_FILE, write_model_card


def _as_training_config(training_config) -> tuple[str | None, dict | None]:
    """A recipe as YAML text and as a dict, from a dict, YAML text, a path, or a `modeling_qface.training.recipe.Recipe`."""
    if training_config is None:
        return None, None
    if hasattr(training_config, "to_yaml"):
        training_config = training_config.to_yaml()
    if isinstance(training_config, Path) or (
        isinstance(training_config, str) and "\n" not in training_config and Path(training_config).is_file()
    ):
        training_config = Path(training_config).read_text()
    if isinstance(training_config, dict):
        return yaml.safe_dump(training_config, sort_keys=False), training_config
    parsed = yaml.safe_load(training_config)
    return training_config, parsed if isinstance(parsed, dict) else None


def add_pipeline_code(folder: str | os.PathLike) -> None:
    """Makes a folder written by `save_pretrained` a face-analysis pipeline anywhere: the `custom_pipelines` entry in
    its `config.json` and the pipeline's code (the rest of `modeling_qface.model`) beside the model's, as
    `Pipeline.save_pretrained` writes them."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["custom_pipelines"] = custom_pipelines_entry()
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")  # as transformers writes it
    custom_object_save(FaceAnalysisPipeline, str(folder))


def export_model(
    model,
    folder: str | os.PathLike,
    image_processor=None,
    evaluation: dict | str | os.PathLike | None = None,
    training_config=None,
    repo_id: str | None = None,
    metrics: dict[str, float] | None = None,
    **save_kwargs,
) -> Path:
    """Writes the complete Q-Face export of `model` into `folder` (see the `modeling_qface.hub` docstring) and
    returns it.

    Args:
        model: a `QFaceModel`.
        image_processor: saved as `preprocessor_config.json` (default: the one the config defines, unless the folder
            has one).
        evaluation: `qface evaluate`'s report (a dict or its JSON file), saved as `eval_results.json`.
        training_config: the recipe (dict, YAML text, file or `Recipe`), saved as `recipe.yaml`.
        repo_id: the repository the card names (default: the folder's name).
        metrics: other numbers for the card's metrics table (`{"task/metric": value}`), outside the model-index.
        save_kwargs: passed to `save_pretrained` (`state_dict`, `save_function`, `is_main_process`, ...); only the
            main process writes more than the weights.
    """
    folder = Path(folder)
    model.save_pretrained(folder, **save_kwargs)
    if not save_kwargs.get("is_main_process", True):
        return folder
    add_pipeline_code(folder)
    if image_processor is not None:
        image_processor.save_pretrained(folder)
    elif not (folder / "preprocessor_config.json").is_file():
        build_image_processor(model.config).save_pretrained(folder)
    add_run_files(folder, evaluation, training_config)
    write_model_card(folder, repo_id, metrics=metrics)
    return folder


def add_run_files(folder: Path, evaluation, training_config) -> None:
    """`eval_results.json` and `recipe.yaml` of an export, from what was given (nothing given: nothing written)."""
    from ..outputs.writers import strict_json

    if isinstance(evaluation, (str, os.PathLike)):
        evaluation = json.loads(Path(evaluation).read_text())
    if evaluation is not None:
        Path(folder, EVALUATION_FILE).write_text(strict_json(evaluation, indent=1))
    text, _ = _as_training_config(training_config)
    if text is not None:
        Path(folder, TRAINING_CONFIG_FILE).write_text(text)


# Files of a saved model folder that a push carries over besides what `export_model` writes.
_CARRIED = (EVALUATION_FILE, TRAINING_CONFIG_FILE, "versions.json")


def export_folder(source: str | os.PathLike, folder: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Re-exports a saved model folder (training's `final/`, `best/`, any `save_pretrained` folder) into `folder`:
    the model is loaded from its safetensors weights and written again by `export_model`, so an export made before
    a change of the export (e.g. without the pipeline code) comes out complete; its evaluation report, recipe and
    version record are carried over."""
    from transformers import AutoImageProcessor

    from ..model.model_loading_qface import load_qface_model

    source, folder = Path(source), Path(folder)
    model = load_qface_model(source)
    processor = None
    if (source / "preprocessor_config.json").is_file():
        processor = AutoImageProcessor.from_pretrained(str(source))
    folder.mkdir(parents=True, exist_ok=True)
    for name in _CARRIED:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    return export_model(model, folder, processor, repo_id=repo_id)
