"""The model card of a Q-Face export: generated from `model_card.md` (package data) and the folder's own files
(`config.json`, the weights' parameter count, `eval_results.json`, `recipe.yaml`); nothing in it is written by hand."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..model.configuration_qface import QFaceConfig
from ..model.heads_qface import output_fields

# Package data (pyproject.toml): present in a wheel, a sdist and an editable install alike.
MODEL_CARD_TEMPLATE = Path(__file__).resolve().with_name("model_card.md")
EVALUATION_FILE = "eval_results.json"
TRAINING_CONFIG_FILE = "recipe.yaml"
LICENSE = "apache-2.0"
PIPELINE_TAG = "image-classification"  # the closest Hub task; the pipeline itself is the custom `face-analysis`
TAGS = ["qface", "face-analysis", "facial-expression-recognition", "action-units", "head-pose", "age-estimation"]

# Data sources of `modeling_qface.training.data` -> (name on the card, terms as published by the dataset's authors).
DATASETS = {
    "raf_db": (
        "RAF-DB",
        "research use only, under an agreement with its authors (Beijing Univ. of Posts and Telecommunications)",
    ),
    "celeba": ("CelebA", "non-commercial research purposes only (MMLAB, The Chinese University of Hong Kong)"),
    "bp4d": ("BP4D-Spontaneous", "a licence agreement with Binghamton University; research use only"),
    "disfa": ("DISFA", "a research licence agreement with the University of Denver"),
    "utkface": ("UTKFace", "non-commercial research purposes only"),
    "age_csv": ("a CSV of face images with ages", "the terms of those images"),
    "300w_lp": ("300W-LP", "research use; derived from 300W, whose images are for non-commercial research"),
    "aflw2000": ("AFLW2000-3D", "research use; derived from AFLW (non-commercial research licence)"),
    "image_folder": ("a folder of face images", "the terms of those images (and of the teachers that labelled them)"),
}
TASK_METRIC_KIND = {
    "multiclass": "image-classification",
    "multilabel": "image-classification",
    "regression": "regression",
    "distribution": "regression",
}
TASK_MEANINGS = {
    "multiclass": "a probability per class (softmax of the logits; the pipeline reports them with the top label).",
    "multilabel": "an independent probability per label (sigmoid of the logits).",
    "regression": "one value per label, in the task's units.",
    "distribution": "a probability distribution over integer bins {lo}..{hi}; the value is its expectation (the "
    "pipeline also reports its standard deviation).",
}


# ------------------------------------------------------------------------------------------------ the card
def metrics_table(metrics: dict[str, float]) -> str:
    """`{"expression/accuracy": 0.91, ...}` -> a markdown table (per-label scores with two `/` left out)."""
    rows = ["| metric | value |", "|---|---|"]
    rows += [
        f"| {name} | {value:.4f} |"
        for name, value in sorted(metrics.items())
        if name.count("/") == 1 and _finite(value)
    ]
    return "\n".join(rows) if len(rows) > 2 else ""


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def evaluation_results(evaluation: dict | None, training_config: dict | None = None) -> list[dict]:
    """The headline numbers of an evaluation report as rows `{task, dataset, dataset_name, split, set, metric,
    value}` (one per task-level metric, per-label scores and missing values left out), plus `protocol` when the
    report names the set's protocol (`modeling_qface.training.protocols`, e.g. "BP4D 3-fold subject-exclusive, mean of folds 1-3").

    Reads `qface evaluate`'s JSON (`{"data": [{label, name, split}], "metrics": {set: {"task/metric": v}}}`) and the
    record training writes next to its best model (`{"step", "metrics": {"set/task/metric": v}}`, whose sets are
    resolved through the recipe's `data.eval`). Anything else (e.g. Trainer's `eval_results.json`) gives no rows.
    """
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("metrics"), dict):
        return []
    metrics = evaluation["metrics"]
    if "data" in evaluation:  # qface evaluate
        sets = {d.get("label"): d for d in evaluation.get("data") or [] if isinstance(d, dict)}
        per_set = {label: values for label, values in metrics.items() if isinstance(values, dict)}
    else:  # training's best-model record: flat "<set>/<task>/<metric>" keys
        sources = ((training_config or {}).get("data") or {}).get("eval") or []
        sets = {}
        for source in sources:
            label = source.get("label") or f"{source['name']}_{source.get('split', 'test')}"
            sets[label] = {"name": source["name"], "split": source.get("split", "test"), "label": label}
        per_set = {}
        for key, value in metrics.items():
            head, _, rest = key.partition("/")
            if head in sets:
                per_set.setdefault(head, {})[rest] = value
    rows = []
    for label, values in per_set.items():
        source = sets.get(label, {})
        dataset = source.get("name") or label
        for key, value in values.items():
            task, _, metric = key.partition("/")
            if not metric or "/" in metric or not _finite(value):
                continue
            rows.append(
                {
                    "set": label,
                    "task": task,
                    "dataset": dataset,
                    "dataset_name": DATASETS.get(dataset, (dataset,))[0],
                    "split": source.get("split") or "test",
                    "metric": metric,
                    "value": float(value),
                }
            )
            if source.get("protocol"):
                rows[-1]["protocol"] = str(source["protocol"])
    return rows


def _evaluation_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    if any(r.get("protocol") for r in rows):  # the protocol names of docs/training.md's benchmark tables
        lines = ["| task | dataset | split | protocol | metric | value |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {r['task']} | {r['dataset_name']} | {r['split']} | {r.get('protocol') or ''} | {r['metric']} | "
            f"{r['value']:.4f} |"
            for r in rows
        ]
        return "\n".join(lines)
    lines = ["| task | dataset | split | metric | value |", "|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['dataset_name']} | {r['split']} | {r['metric']} | {r['value']:.4f} |" for r in rows]
    return "\n".join(lines)


def base_model_of(training_config: dict | None) -> str | None:
    """The Hub id the encoder (or the whole model) was initialised from, when the recipe names one: `model.backbone`
    or `model.init_from` in the form `owner/name` and not a local path."""
    model = (training_config or {}).get("model") or {}
    for key in ("backbone", "init_from"):
        value = model.get(key)
        if not isinstance(value, str) or value.count("/") != 1 or value.startswith((".", "/", "~")):
            continue
        if not Path(value).exists():
            return value
    return None


def _training_summary(recipe: dict | None) -> str:
    """The training section: data and recipe, from the recipe saved with the model."""
    if not recipe:
        return "No training configuration (`recipe.yaml`) was saved with this model."
    model, data = recipe.get("model") or {}, recipe.get("data") or {}
    train, optimizer = recipe.get("train") or {}, recipe.get("optimizer") or {}
    augment = recipe.get("augment") or {}
    start = (
        f"the encoder of `{model['backbone']}`"
        if model.get("backbone")
        else f"the model `{model['init_from']}`"
        if model.get("init_from")
        else "a randomly initialised encoder"
    )
    arch = model.get("preset") or model.get("config") or "the saved config"
    lines = [
        f"Fine-tuned with `qface train` (architecture: `{arch}`), starting from {start}.",
        "",
        "Training data (each batch mixes the sources in these shares):",
        "",
        "| source | split | share | options |",
        "|---|---|---|---|",
    ]
    for source in data.get("train") or []:
        name = DATASETS.get(source.get("name"), (source.get("name"),))[0]
        lines.append(
            f"| {name} (`{source.get('name')}`) | {source.get('split', 'train')} | "
            f"{source.get('share', '')} | {json.dumps(source.get('options') or {})} |"
        )
    evals = ", ".join(
        f"{DATASETS.get(s.get('name'), (s.get('name'),))[0]} {s.get('split', 'test')}" for s in data.get("eval") or []
    )
    length = f"{train['max_steps']} steps" if train.get("max_steps") else f"{train.get('epochs')} epochs"
    warmup = (
        optimizer.get("warmup_steps") if optimizer.get("warmup_steps") is not None else optimizer.get("warmup_ratio")
    )
    lines += [
        "",
        "Recipe:",
        "",
        f"- {length}, global batch {train.get('batch_size')} x {train.get('gradient_accumulation_steps', 1)} "
        f"accumulation, mixed precision `{train.get('mixed_precision', 'no')}`, seed {recipe.get('seed', 0)}",
        f"- AdamW, peak lr {optimizer.get('lr')}, weight decay {optimizer.get('weight_decay')}, layer decay "
        f"{optimizer.get('layer_decay')}, warmup {warmup}, cosine to {optimizer.get('min_lr_ratio', 0)} x lr",
        f"- augmentation: {'on' if augment.get('enabled', True) else 'off'}"
        + (
            f" (flip {augment.get('flip')}, rotation {augment.get('rotation')} deg, crop scale "
            f"{augment.get('crop_scale')}, colour jitter {augment.get('brightness')})"
            if augment
            else ""
        ),
        f"- loss weights: {json.dumps(model.get('loss_weights') or {})} (others 1)",
        f"- evaluated during training on: {evals or 'nothing'}",
        "",
        f"The complete recipe is `{TRAINING_CONFIG_FILE}` in this repository.",
    ]
    return "\n".join(lines)


def _data_licences(recipe: dict | None, rows: list[dict]) -> str:
    data = (recipe or {}).get("data") or {}
    names = [s.get("name") for s in (data.get("train") or []) + (data.get("eval") or [])] + [r["dataset"] for r in rows]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        return "The training data of this model was not recorded; ask its author which data sets it was trained on."
    return "\n".join(
        f"- {DATASETS.get(n, (n, 'see its own terms'))[0]}: {DATASETS.get(n, (n, 'see its own terms'))[1]}."
        for n in names
    )


def _task_rows(config: QFaceConfig) -> list[dict]:
    rows = []
    for task in config.tasks:
        labels = task["labels"]
        kind = task["kind"]
        units = task.get("units") or ("probability" if kind in ("multiclass", "multilabel") else "")
        pipeline = {
            "multiclass": f"`{task['name']}`: label + scores",
            "multilabel": f"`{task['name']}`: label -> p",
            "regression": f"`{task['name']}`: label -> value",
            "distribution": f"`{task['name']}`: {task.get('units') or 'value'} + std",
        }[kind]
        meaning = TASK_MEANINGS[kind].format(lo=task.get("min_value"), hi=task.get("max_value"))
        if task["name"] == "head_pose":
            meaning += " Yaw, pitch and roll in degrees (sign convention below)."
        if task["name"] == "au":
            meaning += " The pipeline's `au_active` lists the AUs at or above `au_threshold` (0.5)."
        rows.append(
            {
                "name": task["name"],
                "kind": kind,
                "units": units or "-",
                "pipeline": pipeline,
                "output": ", ".join(f"`{f}`" for f in output_fields(task).values()),
                "num_labels": len(labels),
                "labels": ", ".join(labels),
                "meaning": meaning,
            }
        )
    return rows


def build_model_card(
    config: QFaceConfig,
    repo_id: str,
    num_parameters: int,
    metrics: dict[str, float] | None = None,
    training_summary: str | None = None,
    model_summary: str = "",
    evaluation: dict | None = None,
    training_config: dict | None = None,
) -> ModelCard:
    """The model card (README.md) of a Q-Face model, from `model_card.md` and the model's own files.

    Args:
        config: the model's config (tasks, labels, units, geometry).
        repo_id: the Hub repository (or folder name) the card is for.
        num_parameters: the model's parameter count.
        metrics: other numbers to show (`{"task/metric": value}`), outside the model-index.
        training_summary: replaces the training section generated from `training_config`.
        model_summary: a paragraph under the title.
        evaluation: `qface evaluate`'s JSON report (or training's best-model record) -> the `model-index`.
        training_config: the training recipe (a dict) -> the training section, `datasets` and `base_model`.
    """
    if not MODEL_CARD_TEMPLATE.is_file():
        raise FileNotFoundError(f"model card template not found at {MODEL_CARD_TEMPLATE} (package data of qface)")
    rows = evaluation_results(evaluation, training_config)
    model_name = repo_id.rstrip("/").split("/")[-1]
    data = (training_config or {}).get("data") or {}
    datasets = list(
        dict.fromkeys(
            DATASETS.get(s.get("name"), (s.get("name"),))[0] for s in (data.get("train") or []) if s.get("name")
        )
    )
    base_model = base_model_of(training_config)
    kinds = {t["name"]: t["kind"] for t in config.tasks}
    eval_results = [
        EvalResult(
            task_type=TASK_METRIC_KIND.get(kinds.get(r["task"]), "image-classification"),
            task_name=f"{r['task']} ({kinds.get(r['task'], 'task')})",
            dataset_type=r["dataset"],
            dataset_name=r["dataset_name"],
            dataset_split=r["split"],
            metric_type=r["metric"],
            metric_name=f"{r['task']} {r['metric']}",
            metric_value=r["value"],
        )
        for r in rows
    ]
    card_data = ModelCardData(
        library_name="transformers",
        license=LICENSE,
        pipeline_tag=PIPELINE_TAG,
        tags=list(TAGS),
        datasets=datasets or None,
        base_model=base_model,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    encoder = config.backbone_config
    image_size = encoder.image_size if isinstance(encoder.image_size, int) else encoder.image_size[0]
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        model_summary=model_summary,
        image_size=image_size,
        tasks=_task_rows(config),
        encoder_layers=encoder.num_hidden_layers,
        encoder_width=encoder.hidden_size,
        patch_size=encoder.patch_size,
        fusion_layers=", ".join(map(str, config.fusion_layers)),
        d_model=config.d_model,
        num_queries=sum(len(t["labels"]) for t in config.tasks),
        decoder_layers=config.decoder_layers,
        num_parameters=f"{num_parameters / 1e6:.1f} M" if num_parameters >= 50_000 else f"{num_parameters:,}",
        base_model=base_model,
        evaluation_table=_evaluation_table(rows),
        metrics_table=metrics_table(metrics) if metrics else "",
        training_summary=training_summary or _training_summary(training_config),
        data_licences=_data_licences(training_config, rows),
        license=LICENSE,
    )


def _num_parameters(folder: Path) -> int:
    """Parameter count from the safetensors headers (no tensor is read)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                total += math.prod(shape) if shape else 1
    return total


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_training_config(folder: Path) -> dict | None:
    path = Path(folder) / TRAINING_CONFIG_FILE
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return value if isinstance(value, dict) else None


def write_model_card(folder: str | os.PathLike, repo_id: str | None = None, **card_kwargs) -> Path:
    """Writes `README.md` in a saved model folder, generated from the folder's own files: `config.json`, the
    safetensors weights (parameter count), `eval_results.json` (model-index) and `recipe.yaml` (training section).
    `repo_id` defaults to the folder's name. Returns the card's path."""
    folder = Path(folder)
    config = QFaceConfig.from_json_file(str(folder / "config.json"))
    card = build_model_card(
        config,
        repo_id or folder.resolve().name,
        _num_parameters(folder),
        evaluation=read_json(folder / EVALUATION_FILE),
        training_config=read_training_config(folder),
        **card_kwargs,
    )
    path = folder / "README.md"
    card.save(path)
    return path
