# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The names of the benchmark protocols, as docs/training.md's tables, `qface evaluate` reports and the model card
write them: one name per (source, split, options) that a published number is comparable with, e.g.
"RAF-DB official test" or "BP4D 3-fold subject-exclusive, fold 2".

The name says what was scored (split, subjects, filter, crop), so two numbers with the same name are comparable.
"""

from __future__ import annotations

# Sources that run the 3-fold subject-exclusive AU protocol (their `fold` option picks the fold).
FOLDED_SOURCES = {"bp4d": "BP4D", "disfa": "DISFA"}
AU_FOLD_MEAN = "3-fold subject-exclusive, mean of folds 1-3"
_CELEBA_CROPS = {"qface": "Q-Face crop", "center": "centre 178 x 178 crop", "resize": "whole 178 x 218 image resized"}


def protocol_name(name: str, split: str, options: dict | None = None) -> str | None:
    """The protocol a source split is scored under; None for a split no published number is scored on."""
    options = options or {}
    if name == "raf_db":
        if split == "test":
            return "RAF-DB official test"
        if split == "val":
            return f"RAF-DB val (seeded {options.get('val_fraction', 0.1):.0%} of the official train)"
    elif name == "celeba" and split in ("val", "test"):
        crop = _CELEBA_CROPS.get(options.get("crop", "qface"), options.get("crop"))
        return f"CelebA official {split}, {crop}"
    elif name in FOLDED_SOURCES:
        dataset, fold = FOLDED_SOURCES[name], options.get("fold", 1)
        if split == "test":
            return f"{dataset} 3-fold subject-exclusive, fold {fold}"
        if split == "val":
            return f"{dataset} fold {fold} val ({options.get('val_fraction', 0):.0%} of its training subjects)"
    elif name == "utkface" and split == "test":
        if options.get("protocol") == "coral":
            lists = ", CORAL's file lists" if options.get("split_lists") else ""
            return f"UTKFace CORAL (ages 21-60, 80/20{lists})"
        return "UTKFace test (Q-Face's own carve, not comparable)"
    elif name == "aflw2000" and split == "test":
        crop = "loose crop" if options.get("crop") == "loose" else "Q-Face crop"
        return f"AFLW2000 (angles within +-99 deg), {crop}"
    elif name == "300w_lp" and split == "val":
        return f"300W-LP val ({options.get('val_fraction', 0):.0%} of the source faces)"
    return None


def fold_mean_name(name: str) -> str:
    """The protocol of the fold-averaged AU numbers of `name` ("bp4d" or "disfa")."""
    return f"{FOLDED_SOURCES[name]} {AU_FOLD_MEAN}"


__all__ = ["AU_FOLD_MEAN", "FOLDED_SOURCES", "fold_mean_name", "protocol_name"]
