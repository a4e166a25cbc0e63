# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The paper recipe scores each benchmark as the literature does: UTKFace under CORAL's protocol, the AU loss
weighted by each AU's rarity (`pos_weight: auto`), and DLDL-v2's weight of the age L1 term."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset, Features, List, Value

from modeling_qface import load_preset
from modeling_qface.configuration_qface import AU_NAMES
from modeling_qface.heads_qface import task_loss
from tests.fixtures.train_runs import REPO, TINY_RECIPE, read_jsonl, run_in_process, train_args
from tests.fixtures.training_data import write_training_data
from training import finetune, label_statistics
from training.data import read_rows
from training.recipe import RecipeError, load_recipe

PAPER_RECIPE = REPO / "configuration" / "train-paper.yaml"
AU = {name: i for i, name in enumerate(AU_NAMES)}


def au_rows(coded: dict[str, list[int]], rows: int) -> Dataset:
    """A dataset of only an `au` column: `coded` gives some AUs' values per row, every other AU is -1."""
    values = [[-1] * len(AU_NAMES) for _ in range(rows)]
    for name, column in coded.items():
        for row, value in zip(values, column):
            row[AU[name]] = value
    return Dataset.from_dict({"au": values}, features=Features({"au": List(Value("int8"), length=len(AU_NAMES))}))


def age_rows(ages: list[float | None]) -> Dataset:
    return Dataset.from_dict({"age": ages}, features=Features({"age": Value("float32")}))


# ------------------------------------------------------------------------------------------------ the paper recipe
def test_paper_recipe_uses_the_coral_protocol_auto_pos_weight_and_dldl_v2s_l1_weight():
    recipe = load_recipe(PAPER_RECIPE, check_paths=False)
    utkface = [s for s in (*recipe.data.train, *recipe.data.eval) if s.name == "utkface"]
    assert [s.split for s in utkface] == ["train", "test"]
    assert all(s.options == {"protocol": "coral"} for s in utkface)
    assert recipe.model.pos_weight == {"au": "auto"}
    age = load_preset(recipe.model.preset).get_task("age")
    assert age["l1_weight"] / age["scale"] == 1.0


def test_age_l1_term_weighs_one_per_year_as_in_dldl_v2():
    age = load_preset("qface-base").get_task("age")
    logits = torch.randn(2, age["max_value"] - age["min_value"] + 1)
    target = torch.tensor([30.0, 50.0])

    def loss(expected):
        return task_loss(age, {"logits": logits, "expected": expected}, target).item()

    # Only the L1 term depends on `expected`: 3 years further from the target adds 3 to the loss (it added 0.3).
    assert loss(target + 3.0) - loss(target) == pytest.approx(3.0, abs=1e-4)


# ------------------------------------------------------------------------------------------------ pos_weight: auto
def test_auto_pos_weight_is_negatives_over_positives_of_the_rows_coding_each_au():
    bp4d = au_rows({"AU1": [1, 0, 0, -1], "AU2": [1] + [0] * 3, "AU12": [1, 1, 1, 1]}, rows=4)
    disfa = au_rows({"AU1": [1, 0, -1], "AU2": [0] * 3}, rows=3)
    many = au_rows({"AU2": [0] * 30}, rows=30)
    task = load_preset("qface-tiny").get_task("au")
    positives, negatives = label_statistics.label_counts(task, [bp4d, disfa, many])
    assert (positives[AU["AU1"]], negatives[AU["AU1"]]) == (2, 3)  # the -1 rows count for neither
    weights = dict(zip(AU_NAMES, label_statistics.auto_pos_weight(task, [bp4d, disfa, many])))
    assert weights["AU1"] == 1.5  # 3 negatives / 2 positives, BP4D and DISFA together
    assert weights["AU2"] == label_statistics.POS_WEIGHT_CAP == 10.0  # 36 / 1, capped
    assert weights["AU12"] == 0.1  # never negative: 0 / 4, floored at 1 / cap (a weight of 0 would drop it)
    assert weights["AU4"] == 1.0  # never coded: neutral


def test_pos_weight_recipe_key_is_checked_before_any_data_is_read(tmp_path):
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["root"] = str(tmp_path)
    raw["model"]["pos_weight"] = {"au": "sometimes"}
    with pytest.raises(RecipeError, match=r"model\.pos_weight\.au"):
        load_recipe(raw=raw, check_paths=False)
    raw["model"]["pos_weight"] = {"expression": "auto"}
    with pytest.raises(RecipeError, match=r"model\.pos_weight\.expression: not a multilabel task"):
        finetune.build_model(load_recipe(raw=raw, check_paths=False))
    raw["model"]["pos_weight"] = {"au": [2.0, 3.0]}
    with pytest.raises(RecipeError, match=r"model\.pos_weight\.au: .*expected 15 numbers"):
        finetune.build_model(load_recipe(raw=raw, check_paths=False))
    raw["model"]["pos_weight"] = {"au": [2.0] * len(AU_NAMES)}
    model = finetune.build_model(load_recipe(raw=raw, check_paths=False))
    assert model.config.get_task("au")["pos_weight"] == [2.0] * len(AU_NAMES)


# ------------------------------------------------------------------------------------------------ age range
def test_training_ages_outside_the_age_bins_are_refused_and_eval_ones_warned(caplog):
    config = load_preset("qface-tiny")  # age bins 0..100
    fine = {"utkface_train": age_rows([21.0, None, 60.0])}
    label_statistics.check_age_ranges(config, fine, {})
    with pytest.raises(RecipeError, match=r"data\.train utkface_all: 1 age labels lie outside .* bins 0\.\.100 "
                                          r"\(e\.g\. 116\).*protocol: coral"):  # fmt: skip
        label_statistics.check_age_ranges(config, {"utkface_all": age_rows([30.0, 116.0])}, {})
    with caplog.at_level(logging.WARNING, logger="training.finetune"):
        label_statistics.check_age_ranges(config, fine, {"utkface_test": age_rows([101.0, 116.0, 5.0])})
    assert "data.eval utkface_test: 2 age labels lie outside" in caplog.text


# ------------------------------------------------------------------------------------------------ a run
def test_a_run_saves_and_logs_the_auto_pos_weight_it_counted(tmp_path):
    data = write_training_data(tmp_path / "data")["raf_db"].parent
    output = tmp_path / "run"
    args = train_args(data, output, 1, logging__tensorboard=False, model__pos_weight={"au": "auto"})
    summary = run_in_process(args)

    # The hand count: every training source's rows (DISFA is the tiny recipe's only AU source).
    recipe = load_recipe(TINY_RECIPE, [(["data", "root"], str(data))])
    coded = np.array([row["au"] for s in recipe.data.train
                      for row in read_rows(s.name, recipe.source_root(s), s.split, **s.options)[0]])  # fmt: skip
    positives, negatives = (coded == 1).sum(0), (coded == 0).sum(0)
    assert (positives + negatives).any() and not (positives + negatives).all()  # some AUs coded, some never
    expected = [1.0 if p + n == 0 else min(10.0, max(0.1, n / p if p else 10.0)) for p, n in zip(positives, negatives)]

    saved = json.loads((output / "final" / "config.json").read_text())
    au = next(t for t in saved["tasks"] if t["name"] == "au")
    assert au["pos_weight"] == pytest.approx(expected)
    logged = next(r for r in read_jsonl(output / "logs" / "train.jsonl") if r["step"] == 0)
    assert [logged[f"pos_weight/au/{name}"] for name in AU_NAMES] == pytest.approx(expected)
    assert list(summary["pos_weight"]["au"].values()) == pytest.approx(expected)


def test_paper_recipe_trains_with_stochastic_depth_and_exports_its_rate(tmp_path):
    paper = load_recipe(REPO / "configuration" / "train-paper.yaml", check_paths=False)
    assert paper.model.drop_path_rate == 0.1
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["model"]["drop_path_rate"] = 0.2
    model = finetune.build_model(load_recipe(raw=raw, check_paths=False))
    assert model.config.drop_path_rate == 0.2
    assert [b.dropout.drop_prob for b in model.encoder.layers][-1] == pytest.approx(0.2)
    raw["model"]["drop_path_rate"] = 1.0
    with pytest.raises(RecipeError, match="drop_path_rate"):
        load_recipe(raw=raw, check_paths=False)
