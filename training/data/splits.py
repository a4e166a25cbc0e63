# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Benchmark splits: the 3-fold subject-exclusive AU protocol and deterministic seeded carving.

BP4D and DISFA are evaluated with 3-fold subject-exclusive cross-validation. The subject partitions below are the
ones of JAA-Net (Shao et al., ECCV 2018; lists `data/list/{BP4D,DISFA}_part{1,2,3}_path.txt` of
github.com/ZhiwenShao/PyTorch-JAANet) as re-used by ME-GraphAU (Luo et al., IJCAI 2022;
`tool/{BP4D,DISFA}_image_label_process.py` of github.com/CVI-SZU/ME-GraphAU). Fold numbering follows ME-GraphAU,
whose per-fold results and checkpoints are the usual reference:

    fold 1: train on part1 + part2, test on part3
    fold 2: train on part1 + part3, test on part2
    fold 3: train on part2 + part3, test on part1

Model selection never looks at a fold's test subjects: with `val_fraction > 0`, a seeded, subject-exclusive share of
the fold's *training* subjects forms "val" (`carve` over the subject ids) and "train" keeps the rest; with the default
`val_fraction = 0` there is no "val" and "train" is every training subject of the fold, as in JAA-Net / ME-GraphAU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

BP4D_PARTS: tuple[tuple[str, ...], ...] = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)

DISFA_PARTS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)

# fold -> index of the part held out for testing (ME-GraphAU numbering, see the module docstring).
FOLD_TEST_PART = {1: 2, 2: 1, 3: 0}


def fold_subjects(
    parts: tuple[tuple[str, ...], ...], fold: int, split: str, val_fraction: float = 0.0, seed: int = 0
) -> tuple[str, ...]:
    """Subjects of `split` in `fold` (1..3) of a 3-part subject partition.

    Splits: "test" (the fold's held-out part), "train" (the other two parts, less the "val" subjects), "val" (with
    `val_fraction > 0`: that fraction of the fold's training subjects, carved by a seeded SHA-256 of the subject id,
    see `carve`), "all" (every subject of the partition).
    """
    if split == "all":
        return tuple(s for part in parts for s in part)
    if fold not in FOLD_TEST_PART:
        raise ValueError(f"fold: expected one of {sorted(FOLD_TEST_PART)}, got {fold!r}")
    test_part = FOLD_TEST_PART[fold]
    if split == "test":
        return parts[test_part]
    if split not in ("train", "val"):
        raise ValueError(f"split: expected 'train', 'val', 'test' or 'all', got {split!r}")
    training = tuple(s for i, part in enumerate(parts) if i != test_part for s in part)
    if split == "val" and not val_fraction:
        raise ValueError("split 'val' needs val_fraction > 0 (the share of the fold's training subjects held out)")
    if not val_fraction:
        return training
    assignment = carve(training, {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
    return tuple(s for s in training if assignment[s] == split)


def _rank(key: str, seed: int) -> str:
    # A hash, not Python's `hash()` (salted per process), so the split is the same on every machine and run.
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def carve(keys: Iterable[str], fractions: Mapping[str, float], seed: int = 0) -> dict[str, str]:
    """Assigns each key to a split, deterministically, in the given proportions.

    Keys are ordered by a seeded SHA-256 of the key (so the result depends on neither input order nor platform)
    and cut into consecutive blocks of `round(cumulative_fraction * n)`. Pass subject ids as keys to make the split
    subject-exclusive.

    Args:
        keys: the items (file names or subject ids); duplicates count once.
        fractions: split name -> fraction, each >= 0, summing to 1 (within 1e-6).
        seed: changes the assignment.

    Returns:
        `{key: split_name}`.
    """
    if not fractions or any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions: expected non-negative fractions summing to 1, got {dict(fractions)}")
    ordered = sorted(set(keys), key=lambda k: _rank(k, seed))
    assignment, start, cumulative = {}, 0, 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        stop = round(cumulative * len(ordered))
        for key in ordered[start:stop]:
            assignment[key] = name
        start = stop
    for key in ordered[start:]:  # float rounding can leave the last key unassigned
        assignment[key] = name
    return assignment
