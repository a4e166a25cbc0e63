# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The paper recipe scores each benchmark as the literature does: UTKFace under CORAL's protocol, the AU loss
weighted by each AU's rarity (`pos_weight: auto`), DLDL-v2's weight of the age L1 term, model selection on validation
splits with the test splits in `data.test`, source shares balanced by epochs, CelebA's literature crops and AFLW2000's
loose crop. (The 3-fold AU protocol: tests/test_folds.py; validation carves and the test-split guard:
tests/test_model_selection.py.)"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset, Features, List, Value

from modeling_qface import load_preset
from modeling_qface.hub.card import _evaluation_table, evaluation_results
from modeling_qface.model.configuration_qface import AU_NAMES
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.heads_qface import task_loss
from modeling_qface.training import finetune, label_statistics
from modeling_qface.training.data import holds_test_rows, prepare_source, read_rows
from modeling_qface.training.mixing import epoch_balanced_shares, epochs_per_source, shares_to_counts
from modeling_qface.training.protocols import protocol_name
from modeling_qface.training.recipe import RecipeError, check_recipe_sources, load_recipe
from tests.fixtures.benchmark_formats import coordinate_image, write_celeba
from tests.fixtures.train_runs import REPO, TINY_RECIPE, read_jsonl, run_in_process, train_args
from tests.fixtures.training_data import write_training_data

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
    utkface = [s for s in (*recipe.data.train, *recipe.data.test) if s.name == "utkface"]
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
    with pytest.raises(
        RecipeError,
        match=r"data\.train utkface_all: 1 age labels lie outside .* bins 0\.\.100 "
        r"\(e\.g\. 116\).*protocol: coral",
    ):
        label_statistics.check_age_ranges(config, {"utkface_all": age_rows([30.0, 116.0])}, {})
    with caplog.at_level(logging.WARNING, logger="modeling_qface.training.finetune"):
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
    coded = np.array(
        [
            row["au"]
            for s in recipe.data.train
            for row in read_rows(s.name, recipe.source_root(s), s.split, **s.options)[0]
        ]
    )
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
    assert [b.drop_prob for b in model.encoder.layers][-1] == pytest.approx(0.2)
    raw["model"]["drop_path_rate"] = 1.0
    with pytest.raises(RecipeError, match="drop_path_rate"):
        load_recipe(raw=raw, check_paths=False)


# ------------------------------------------------------------------------------------------------ selection and test
def test_paper_recipe_selects_on_validation_splits_and_lists_the_test_splits_apart():
    recipe = load_recipe(PAPER_RECIPE, check_paths=False)
    check_recipe_sources(recipe)  # every split and option of data.train / eval / test exists
    assert not recipe.data.allow_test_splits
    pairs = [(s.name, s.split, s.options) for s in (*recipe.data.train, *recipe.data.eval)]
    assert not [p for p in pairs if holds_test_rows(*p)]
    assert [s.display_name for s in recipe.data.eval] == [
        "raf_db_val",
        "bp4d_val",
        "disfa_val",
        "celeba_val",
        "300w_lp_val",
    ]
    assert recipe.eval.best_metric == "raf_db_val/expression/accuracy"
    assert [s.split for s in recipe.data.train if s.name == "raf_db"] == ["train"]  # not trainval: val is held out
    # The training and validation sources of BP4D / DISFA / 300W-LP carve with the same options (disjoint rows).
    for name in ("bp4d", "disfa", "300w_lp"):
        (train,), (val,) = (
            [s.options for s in section if s.name == name] for section in (recipe.data.train, recipe.data.eval)
        )
        assert train == val and train["val_fraction"] > 0
    tests = {s.display_name: (s.name, s.options) for s in recipe.data.test}
    assert set(tests) == {
        "raf_db_test",
        "bp4d_test",
        "disfa_test",
        "celeba_test",
        "utkface_test",
        "aflw2000_test",
        "aflw2000_test_qface_crop",
    }
    assert tests["aflw2000_test"] == ("aflw2000", {"crop": "loose"})  # 6DRepNet's protocol crop
    assert tests["utkface_test"] == ("utkface", {"protocol": "coral"})
    assert protocol_name("aflw2000", "test", {"crop": "loose"}) == "AFLW2000 (angles within +-99 deg), loose crop"


# Training rows after the validation carves (docs/training.md, "Source shares"): RAF-DB 12,271 less 10 %; BP4D
# ~140k frames of 41 subjects, fold 1's 28 training subjects less 4; DISFA 4,845 frames x 15 subjects; CelebA's
# official train; UTKFace CORAL's 80 % of 16,434; 300W-LP's 122,450 less 5 %.
DOCUMENTED_ROWS = [11_044, 81_951, 72_675, 162_770, 13_147, 116_328]
DOCUMENTED_EPOCHS = [48.9, 17.6, 18.6, 12.5, 43.4, 15.0]


def test_paper_recipe_shares_are_the_square_root_balance_of_the_documented_sizes():
    recipe = load_recipe(PAPER_RECIPE, check_paths=False)
    counts = shares_to_counts([s.share for s in recipe.data.train], recipe.train.batch_size)
    assert counts == [18, 48, 45, 68, 19, 58]
    assert counts == shares_to_counts(epoch_balanced_shares(DOCUMENTED_ROWS, 0.5), 256)
    epochs = epochs_per_source(DOCUMENTED_ROWS, counts, recipe.train.max_steps)
    assert [round(e, 1) for e in epochs] == DOCUMENTED_EPOCHS
    assert max(epochs) / min(epochs) < 4  # was 156 / 7.8 = 20 with shares 1/4, 1/8, 1/8, 1/4, 1/8, 1/8
    assert epoch_balanced_shares([100, 400], 1.0) == [0.2, 0.8] and epoch_balanced_shares([100, 400], 0.0) == [0.5, 0.5]
    with pytest.raises(ValueError, match="positive sizes"):
        epoch_balanced_shares([0, 10])


# ------------------------------------------------------------------------------------------------ CelebA crops
@pytest.fixture(scope="module")
def aligned_celeba(tmp_path_factory):
    """Two CelebA images in the aligned release's 178 x 218 size, whose pixels give their coordinates."""
    tmp = tmp_path_factory.mktemp("celeba-aligned")
    names = ["000001.jpg", "000002.jpg"]
    root = write_celeba(
        tmp,
        {n: [1, -1] * 20 for n in names},
        dict.fromkeys(names, 2),
        image_size=(178, 218),
        landmarks={n: [69, 109, 106, 113, 77, 142, 73, 152, 108, 154] for n in names},
    )
    return root, tmp


def _crop(root, cache, size: int, **options) -> tuple[np.ndarray, dict]:
    dataset, _ = prepare_source("celeba", root, "test", cache_dir=cache, face_crop=FaceCrop(size=size), **options)
    row = dataset[0]
    return np.asarray(row["image"].convert("RGB")).astype(int), row


def test_celeba_center_crop_is_the_centred_178_square_resized(aligned_celeba):
    root, tmp = aligned_celeba
    pixels, row = _crop(root, tmp / "cache", 178, crop="center")
    # At the square's own size no resampling: crop pixel (y, x) is image pixel (y + 20, x), 20 = (218 - 178) / 2.
    assert np.array_equal(pixels, coordinate_image(178, 218)[20:198].astype(int))
    assert row["crop_method"] == "protocol resize" and row["crop_angle"] == 0.0
    # At 224 px the same square, scaled by 224 / 178: the first and last rows sample image rows ~20 and ~197.
    pixels, _ = _crop(root, tmp / "cache", 224, crop="center")
    scale = 178 / 224
    for out_row in (0, 100, 223):
        assert pixels[out_row, :, 1].mean() == pytest.approx(20 + (out_row + 0.5) * scale - 0.5, abs=1.0)
    for out_col in (0, 223):
        assert pixels[:, out_col, 0].mean() == pytest.approx((out_col + 0.5) * scale - 0.5, abs=1.0)


def test_celeba_resize_crop_squashes_the_whole_image_and_qface_crop_aligns(aligned_celeba):
    root, tmp = aligned_celeba
    pixels, row = _crop(root, tmp / "cache", 178, crop="resize")
    assert np.array_equal(pixels[:, :, 0], coordinate_image(178, 178)[:, :, 0].astype(int))  # width unchanged
    for out_row in (0, 89, 177):  # height 218 -> 178: every image row is in, squashed
        assert pixels[out_row, :, 1].mean() == pytest.approx((out_row + 0.5) * 218 / 178 - 0.5, abs=1.0)
    assert row["crop_method"] == "protocol resize"
    _, row = _crop(root, tmp / "cache", 178)  # the default: the Q-Face crop from the 5 landmarks
    assert row["crop_method"] == "landmarks"
    with pytest.raises(ValueError, match="crop: expected one of qface, center, resize, got 'square'"):
        read_rows("celeba", root, "test", crop="square")
    assert protocol_name("celeba", "test", {"crop": "center"}) == "CelebA official test, centre 178 x 178 crop"


# ------------------------------------------------------------------------------------------------ the model card
def test_card_evaluation_table_names_each_sets_protocol():
    report = {
        "data": [
            {
                "label": "bp4d_test",
                "name": "bp4d",
                "split": "test",
                "protocol": "BP4D 3-fold subject-exclusive, mean of folds 1-3",
            },
            {"label": "celeba_test", "name": "celeba", "split": "test"},
        ],
        "metrics": {
            "bp4d_test": {"au/f1_mean": 0.61, "au/f1/AU1": 0.5},
            "celeba_test": {"attributes/accuracy_mean": 0.9},
        },
    }
    rows = evaluation_results(report)
    assert [(r["set"], r["metric"], r.get("protocol")) for r in rows] == [
        ("bp4d_test", "f1_mean", "BP4D 3-fold subject-exclusive, mean of folds 1-3"),
        ("celeba_test", "accuracy_mean", None),
    ]
    table = _evaluation_table(rows)
    protocol = "BP4D 3-fold subject-exclusive, mean of folds 1-3"
    assert f"| au | BP4D-Spontaneous | test | {protocol} | f1_mean | 0.6100 |" in table
    assert "| attributes | CelebA | test |  | accuracy_mean | 0.9000 |" in table
