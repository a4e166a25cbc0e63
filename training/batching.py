"""From schema rows (see `modeling_qface.training.data.schema`) to model inputs: pixel values and one label tensor per task."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from PIL import Image

from modeling_qface import QFaceConfig
from modeling_qface.model.configuration_qface import ATTRIBUTE_NAMES, AU_NAMES, EXPRESSION_NAMES, HEAD_POSE_NAMES
from modeling_qface.model.heads_qface import output_fields
from modeling_qface.model.modeling_qface import QFaceOutput

# The label names of each schema column (`modeling_qface.training.data.schema`), in column order.
SCHEMA_LABELS = {
    "expression": EXPRESSION_NAMES,
    "au": AU_NAMES,
    "attributes": ATTRIBUTE_NAMES,
    "head_pose": HEAD_POSE_NAMES,
}


def schema_positions(task: dict) -> list[int] | None:
    """Where a task's labels sit in its schema column, when the task keeps only some of them (or reorders them):
    a demo model trained on the labels its teachers give has `attributes` = ["Male", "Smiling"], read from positions
    20 and 31 of the 40-value column. `None` when the task reads its column as it is (or has no schema column)."""
    names = SCHEMA_LABELS.get(task["name"])
    if names is None or tuple(task["labels"]) == tuple(names):
        return None
    unknown = [label for label in task["labels"] if label not in names]
    if unknown:
        raise ValueError(
            f"task {task['name']!r}: labels {unknown} are not in the schema's {task['name']} column "
            f"{list(names)}; name the task differently to train it from its own column"
        )
    return [names.index(label) for label in task["labels"]]


def label_names(config: QFaceConfig) -> list[str]:
    """The forward arguments holding labels, in task order (Trainer's `label_names`)."""
    return [f"{name}_labels" for name in config.task_names]


class QFaceBatchTransform:
    """A `Dataset.with_transform` function: a batch of schema rows -> `pixel_values` + `{task}_labels` tensors.

    Every task of the model gets a label tensor in every batch, filled with -1 / NaN where the rows (or the whole
    source) lack it: Trainer computes an eval loss only when all label keys are present. Label columns are named
    after the tasks (`expression`, `au`, ...); a task whose column is absent is all-missing.

    Args:
        config (`QFaceConfig`): the model's tasks.
        image_processor: resizes and normalises (see `modeling_qface.model.image_processing_qface.build_image_processor`).
        augment (`Callable`, *optional*): `(PIL image, row labels dict) -> (PIL image, row labels dict)`, applied
            per sample before the processor (training only).
    """

    def __init__(self, config: QFaceConfig, image_processor, augment: Callable | None = None):
        self.tasks = config.tasks
        self.image_processor = image_processor
        self.augment = augment

    def __call__(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        size = len(batch["image"])
        images, rows = [], []
        for i in range(size):
            image = batch["image"][i]
            image = image if isinstance(image, Image.Image) else Image.open(image)
            row = {task["name"]: batch[task["name"]][i] for task in self.tasks if task["name"] in batch}
            image = image.convert("RGB")
            if self.augment is not None:
                image, row = self.augment(image, row)
            images.append(image)
            rows.append(row)
        out = {"pixel_values": self.image_processor(images, return_tensors="pt")["pixel_values"]}
        for task in self.tasks:
            out[f"{task['name']}_labels"] = _label_tensor(task, [row.get(task["name"]) for row in rows])
        return out


def _label_tensor(task: dict, values: list) -> torch.Tensor:
    width = len(task["labels"])
    positions = schema_positions(task)
    if positions is not None and task["kind"] == "multiclass":  # schema class index -> the task's class, or missing
        to_task = {schema: index for index, schema in enumerate(positions)}
        values = [None if v is None else to_task.get(v, -1) for v in values]
    elif positions is not None:
        values = [None if v is None else [v[i] for i in positions] for v in values]
    if task["kind"] == "multiclass":
        return torch.tensor([-1 if v is None else v for v in values], dtype=torch.long)
    if task["kind"] == "distribution":
        return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float32)
    if task["kind"] == "multilabel":
        return torch.tensor([[-1] * width if v is None else list(v) for v in values], dtype=torch.long)
    return torch.tensor([[math.nan] * width if v is None else list(v) for v in values], dtype=torch.float32)


def prediction_fields(config: QFaceConfig) -> list[str]:
    """The order of Trainer's `EvalPrediction.predictions` tuple for this config (output fields, loss removed)."""
    produced = {field for task in config.tasks for field in output_fields(task).values()}
    ignored = set(config.keys_to_ignore_at_inference) | {"loss"}
    fields = [f for f in QFaceOutput.__dataclass_fields__ if f in produced and f not in ignored]
    if produced - set(QFaceOutput.__dataclass_fields__):
        fields.append("extra_task_outputs")
    return fields


def predictions_by_task(config: QFaceConfig, predictions: tuple) -> dict:
    """Trainer's predictions tuple -> `{task name: array}` (logits, values or expected values) for the metrics."""
    by_field = dict(zip(prediction_fields(config), predictions))
    extra = by_field.pop("extra_task_outputs", None) or {}
    by_field.update(extra)
    out = {}
    for task in config.tasks:
        fields = output_fields(task)
        key = fields.get("logits") or fields.get("values") or fields["expected"]
        out[task["name"]] = by_field[key]
    return out


def make_compute_metrics(config: QFaceConfig, threshold: float = 0.5) -> Callable:
    """A Trainer `compute_metrics` scoring every task with the shipped metrics (`modeling_qface.training.metrics`)."""
    from modeling_qface.training.metrics import compute_task_metrics

    def compute_metrics(prediction) -> dict[str, float]:
        predictions = prediction.predictions
        predictions = predictions if isinstance(predictions, tuple) else (predictions,)
        label_ids = prediction.label_ids
        label_ids = label_ids if isinstance(label_ids, tuple) else (label_ids,)
        references = dict(zip(config.task_names, label_ids))
        return compute_task_metrics(config.tasks, predictions_by_task(config, predictions), references, threshold)

    return compute_metrics
