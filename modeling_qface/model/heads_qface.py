# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Per-task heads and their partial-label losses. One head per task kind; each reads only its own task's queries."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def output_fields(task: dict) -> dict[str, str]:
    """Names of the output fields a task fills, keyed by what the head returns.

    `expression` (multiclass) -> `expression_logits`; `head_pose` (regression) -> `head_pose`;
    `age` (distribution) -> `age_distribution` (probabilities over the bins) and `age` (expected value).
    """
    name, kind = task["name"], task["kind"]
    if kind in ("multiclass", "multilabel"):
        return {"logits": f"{name}_logits"}
    if kind == "regression":
        return {"values": name}
    return {"distribution": f"{name}_distribution", "expected": name}


class QFaceLabelHead(nn.Module):
    """One logit or one value per label query, with weights shared across the task's queries.

    Used for `multiclass` and `multilabel` tasks (logits) and `regression` tasks (values times `scale`).
    """

    def __init__(self, task: dict, d_model: int):
        super().__init__()
        self.kind = task["kind"]
        self.scale = task.get("scale", 1.0)
        self.proj = nn.Linear(d_model, 1)

    def forward(self, queries: torch.Tensor) -> dict[str, torch.Tensor]:
        """queries: `(batch, num_labels, d_model)` -> `logits` or `values` of shape `(batch, num_labels)`."""
        out = self.proj(queries).squeeze(-1)
        if self.kind == "regression":
            return {"values": out * self.scale}
        return {"logits": out}


class QFaceDistributionHead(nn.Module):
    """A distribution over integer bins `min_value..max_value` from the task's single query (DLDL age estimation)."""

    def __init__(self, task: dict, d_model: int):
        super().__init__()
        self.min_value, self.max_value = task["min_value"], task["max_value"]
        self.proj = nn.Linear(d_model, self.max_value - self.min_value + 1)

    def bin_values(self, like: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.min_value, self.max_value + 1, device=like.device, dtype=like.dtype)

    def forward(self, queries: torch.Tensor) -> dict[str, torch.Tensor]:
        """queries: `(batch, 1, d_model)` -> `logits`, `distribution` `(batch, num_bins)` and `expected` `(batch,)`."""
        logits = self.proj(queries[:, 0]).float()
        distribution = logits.softmax(-1)
        expected = (distribution * self.bin_values(distribution)).sum(-1)
        return {"logits": logits, "distribution": distribution, "expected": expected}


def build_task_head(task: dict, d_model: int) -> nn.Module:
    if task["kind"] == "distribution":
        return QFaceDistributionHead(task, d_model)
    return QFaceLabelHead(task, d_model)


def check_labels(task: dict, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Validates a task's label tensor (shape, dtype, values) and returns it in the shape the loss expects.

    Missing labels are -1 for `multiclass`/`multilabel` and NaN for `regression`/`distribution`.
    """
    name, kind, n = task["name"], task["kind"], len(task["labels"])
    arg = f"{name}_labels"
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{arg}: expected a tensor, got {type(labels).__name__}")
    expected_shape = (batch_size,) if kind in ("multiclass", "distribution") else (batch_size, n)
    if kind == "distribution" and labels.shape == (batch_size, 1):
        labels = labels[:, 0]
    if tuple(labels.shape) != expected_shape:
        raise ValueError(
            f"{arg}: expected shape {expected_shape} for task {name!r} ({kind}), got {tuple(labels.shape)}"
        )
    if kind in ("multiclass", "multilabel"):
        if labels.is_floating_point():
            if torch.isnan(labels).any() or (labels != labels.round()).any():
                raise ValueError(f"{arg}: expected integer class ids (-1 = missing), got non-integer values")
            labels = labels.long()
        high = n if kind == "multiclass" else 2
        bad = (labels < -1) | (labels >= high)
        if bad.any():
            value = labels[bad][0].item()
            allowed = f"-1..{n - 1}" if kind == "multiclass" else "-1, 0, 1"
            raise ValueError(
                f"{arg}: value {value} is not a valid label for task {name!r} (allowed {allowed}; -1 = missing)"
            )
        return labels
    if not labels.is_floating_point():
        labels = labels.float()
    if torch.isinf(labels).any():
        raise ValueError(f"{arg}: infinite target for task {name!r} (NaN marks a missing value)")
    return labels


def task_loss(task: dict, head_output: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor | None:
    """The task's loss, averaged over the labels present; `None` when no sample of the batch carries one."""
    kind = task["kind"]
    if kind == "multiclass":
        present = labels >= 0
        if not present.any():
            return None
        return F.cross_entropy(head_output["logits"][present].float(), labels[present])
    if kind == "multilabel":
        present = labels >= 0
        if not present.any():
            return None
        logits = head_output["logits"].float()
        pos_weight = task.get("pos_weight")
        if pos_weight is not None:
            pos_weight = torch.tensor(pos_weight, device=logits.device, dtype=logits.dtype)
        per_label = F.binary_cross_entropy_with_logits(
            logits, labels.clamp(min=0).to(logits.dtype), pos_weight=pos_weight, reduction="none"
        )
        return per_label[present].mean()
    present = ~torch.isnan(labels)
    if not present.any():
        return None
    if kind == "regression":
        values = head_output["values"].float()
        return (values[present] - labels[present]).abs().mean() / task["scale"]
    return distribution_loss(task, head_output, labels, present)


def distribution_loss(task: dict, head_output: dict, labels: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """DLDL: KL(Gaussian label distribution || predicted) + `l1_weight` * |expected - target| / `scale`."""
    logits = head_output["logits"][present]
    target = labels[present].float().clamp(task["min_value"], task["max_value"])
    bins = torch.arange(task["min_value"], task["max_value"] + 1, device=logits.device, dtype=logits.dtype)
    label_distribution = torch.softmax(-((bins[None] - target[:, None]) ** 2) / (2 * task["sigma"] ** 2), dim=-1)
    kl = F.kl_div(logits.log_softmax(-1), label_distribution, reduction="batchmean")
    l1 = (head_output["expected"][present] - target).abs().mean() / task["scale"]
    return kl + task["l1_weight"] * l1
