# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Multi-source batches: a fixed number of samples per source in every batch, each source shuffled and cycled.

Every process draws the same sequence of *global* batches (same seed) and keeps its own slice of each, so the global
batch, the augmentation of each sample and the number of optimizer steps do not depend on the number of processes.

A global batch lists its samples source by source; sample `slot` of it carries the key
`(source index, row index, batch number, slot)`. The batch number and slot seed that sample's augmentation, so a
resumed run (or a run with another number of workers or processes) augments every sample exactly as before.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modeling_qface.training.data.schema import LABEL_COLUMNS

SampleKey = tuple[int, int, int, int]  # (source index, row index, global batch number, slot in the global batch)


def shares_to_counts(shares: Sequence[float], batch_size: int, names: Sequence[str] | None = None) -> list[int]:
    """Samples per source in a batch of `batch_size`: the shares rounded by largest remainder, summing exactly.

    >>> shares_to_counts([0.5, 0.25, 0.25], 8)
    [4, 2, 2]
    """
    names = list(names or [f"source {i}" for i in range(len(shares))])
    exact = [share * batch_size for share in shares]
    counts = [math.floor(x + 1e-9) for x in exact]
    # Hand the samples lost to rounding down to the sources that lost the most (ties: first listed first).
    for i in sorted(range(len(shares)), key=lambda i: -(exact[i] - counts[i]))[: batch_size - sum(counts)]:
        counts[i] += 1
    empty = [name for name, count in zip(names, counts) if count == 0]
    if empty:
        raise ValueError(
            f"batch size {batch_size} is too small for the shares {list(shares)}: {empty} would get no sample per "
            "batch; raise train.batch_size or their share"
        )
    return counts


def steps_per_epoch(source_sizes: Sequence[int], counts: Sequence[int], accumulation_steps: int = 1) -> int:
    """Optimizer steps for one epoch: until every sample of every source has been drawn at least once.

    The source that needs the most batches sets the length; smaller sources are cycled (reshuffled) meanwhile.
    """
    batches = max(math.ceil(size / count) for size, count in zip(source_sizes, counts))
    return math.ceil(batches / accumulation_steps)


def epochs_per_source(
    source_sizes: Sequence[int], counts: Sequence[int], optimizer_steps: int, accumulation_steps: int = 1
) -> list[float]:
    """How many times each source is seen in a run: `optimizer_steps * accumulation_steps * count / size`.

    >>> [round(e, 1) for e in epochs_per_source([12_271, 162_770], [64, 64], 30_000)]  # 64 of 256 each
    [156.5, 11.8]
    """
    return [optimizer_steps * accumulation_steps * count / size for size, count in zip(source_sizes, counts)]


def epoch_balanced_shares(source_sizes: Sequence[int], temperature: float = 0.5) -> list[float]:
    """Batch shares proportional to `size ** temperature`: 1 gives every source the same number of epochs, 0 the same
    share of every batch; 0.5 (the paper recipe's) gives small sources a few times more epochs than large ones.

    >>> [round(s, 3) for s in epoch_balanced_shares([100, 400, 1600])]
    [0.143, 0.286, 0.571]
    """
    if not source_sizes or any(size <= 0 for size in source_sizes) or not 0.0 <= temperature <= 1.0:
        raise ValueError(
            f"expected positive sizes and a temperature in [0, 1], got {list(source_sizes)}, {temperature}"
        )
    weights = [size**temperature for size in source_sizes]
    return [weight / sum(weights) for weight in weights]


class SourceCycler:
    """Endless shuffled passes over the rows of one source, drawn with a seeded `torch.Generator`.

    `state_dict()` holds the generator state at the start of the current pass, the pass number and the position in
    it; `load_state_dict` redraws that pass's permutation from it, so the sequence continues exactly.
    """

    def __init__(self, size: int, seed: int):
        if size <= 0:
            raise ValueError("a training source has no rows")
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = -1
        self._new_pass()

    def _new_pass(self) -> None:
        self.pass_start_state = self.generator.get_state()
        self.permutation = torch.randperm(self.size, generator=self.generator).tolist()
        self.cursor = 0
        self.epoch += 1

    def take(self, count: int) -> list[int]:
        rows = []
        while len(rows) < count:
            if self.cursor == self.size:
                self._new_pass()
            step = min(count - len(rows), self.size - self.cursor)
            rows.extend(self.permutation[self.cursor : self.cursor + step])
            self.cursor += step
        return rows

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "pass_start_state": self.pass_start_state,
            "epoch": self.epoch,
            "cursor": self.cursor,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != self.size:
            raise ValueError(f"sampler state is for a source of {state['size']} rows, this one has {self.size}")
        self.generator.set_state(state["pass_start_state"])
        self._new_pass()
        self.epoch, self.cursor = state["epoch"], state["cursor"]


class MixedBatchSampler:
    """Global batches holding `counts[i]` rows of source `i`, each source cycled by its own `SourceCycler`.

    Args:
        source_sizes: rows per source.
        counts: rows per source in each global batch (see `shares_to_counts`).
        seed: seeds source `i`'s generator with `seed * 1000 + i`.
    """

    def __init__(self, source_sizes: Sequence[int], counts: Sequence[int], seed: int):
        if len(source_sizes) != len(counts):
            raise ValueError(f"{len(source_sizes)} sources but {len(counts)} counts")
        self.counts = list(counts)
        self.cyclers = [SourceCycler(size, seed * 1000 + i) for i, size in enumerate(source_sizes)]
        self.batches_drawn = 0

    @property
    def batch_size(self) -> int:
        return sum(self.counts)

    def next_batch(self) -> list[SampleKey]:
        keys = []
        for source, (cycler, count) in enumerate(zip(self.cyclers, self.counts)):
            for row in cycler.take(count):
                keys.append((source, row, self.batches_drawn, len(keys)))
        self.batches_drawn += 1
        return keys

    def state_dict(self) -> dict:
        return {
            "batches_drawn": self.batches_drawn,
            "counts": list(self.counts),
            "sources": [cycler.state_dict() for cycler in self.cyclers],
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["counts"]) != self.counts or len(state["sources"]) != len(self.cyclers):
            raise ValueError(
                f"sampler state is for per-source counts {state['counts']}, this run uses {self.counts}; "
                "resume with the same sources, shares and batch size"
            )
        for cycler, source_state in zip(self.cyclers, state["sources"]):
            cycler.load_state_dict(source_state)
        self.batches_drawn = state["batches_drawn"]


class ProcessBatchSampler:
    """A `DataLoader` batch sampler: this process's share of each global batch, endlessly.

    Process `rank` takes the slots `(rank + b) % world_size, ... + world_size, ...` of global batch `b`: the
    processes' shares are disjoint and together make the global batch, and the rotation by `b` lets every process
    see every source even when a source has fewer samples per batch than there are processes.

    The DataLoader may draw batches ahead of the training loop (worker prefetching), so the state of the mixed
    sampler after each drawn batch is queued; `pop_consumed_state()` gives the state right after the batch the loop
    has just taken, which is what a checkpoint must store.
    """

    def __init__(self, sampler: MixedBatchSampler, rank: int = 0, world_size: int = 1):
        if sampler.batch_size % world_size:
            raise ValueError(
                f"train.batch_size ({sampler.batch_size}) must be divisible by the number of processes ({world_size})"
            )
        self.sampler, self.rank, self.world_size = sampler, rank, world_size
        self.pending_states: deque[dict] = deque()

    def __iter__(self) -> Iterator[list[SampleKey]]:
        while True:
            batch_number = self.sampler.batches_drawn
            keys = self.sampler.next_batch()
            self.pending_states.append(self.sampler.state_dict())
            yield keys[(self.rank + batch_number) % self.world_size :: self.world_size]

    def pop_consumed_state(self) -> dict:
        return self.pending_states.popleft()


class MixedSourceDataset(Dataset):
    """Rows of several schema datasets addressed by `SampleKey`, augmented with a per-sample seed.

    Args:
        sources: `datasets.Dataset`s in the Q-Face schema (`modeling_qface.training.data.FEATURES`).
        names: how logs name each source.
        augment (`Callable`, *optional*): `(image, labels, numpy Generator) -> (image, labels)`
            (see `modeling_qface.training.augment.FaceAugment`).
        seed: mixed into every sample's augmentation seed.
    """

    def __init__(self, sources: Sequence, names: Sequence[str], augment: Callable | None = None, seed: int = 0):
        self.sources, self.names, self.augment, self.seed = list(sources), list(names), augment, seed

    def __getitem__(self, key: SampleKey) -> dict:
        source, row_index, batch_number, slot = key
        row = self.sources[source][int(row_index)]
        image = row["image"].convert("RGB")
        labels = {column: row[column] for column in LABEL_COLUMNS if column in row}
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, batch_number, slot])
            image, labels = self.augment(image, labels, rng)
        return {"image": image, **labels, "sample_id": f"{self.names[source]}:{row_index}", "slot": slot}


class MixedBatchCollator:
    """Rows from `MixedSourceDataset` -> `QFaceBatchTransform` inputs (every `{task}_labels` key), plus
    `sample_ids` and `slots` lists for logging."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, rows: list[dict]) -> dict:
        columns = ["image", *(c for c in LABEL_COLUMNS if c in rows[0])]
        batch = self.transform({column: [row[column] for row in rows] for column in columns})
        batch["sample_ids"] = [row["sample_id"] for row in rows]
        batch["slots"] = [row["slot"] for row in rows]
        return batch


__all__ = [
    "MixedBatchCollator",
    "MixedBatchSampler",
    "MixedSourceDataset",
    "ProcessBatchSampler",
    "SampleKey",
    "SourceCycler",
    "epoch_balanced_shares",
    "epochs_per_source",
    "shares_to_counts",
    "steps_per_epoch",
]
