# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Model selection on validation data only: deterministic validation carves disjoint from modeling_qface.training, the recipe guard
against test splits, and a training run that never reads a test split (asserted through the data loader)."""

from __future__ import annotations

import pytest
import yaml
from datasets import Dataset

from modeling_qface.training import evaluation
from modeling_qface.training.data import SOURCES, holds_test_rows, loading, read_rows
from modeling_qface.training.recipe import RecipeError, load_recipe
from modeling_qface.training.selection import check_selection_data
from tests.fixtures.benchmark_formats import write_bp4d, write_disfa, write_pose_dataset, write_raf_db
from tests.fixtures.train_runs import TINY_RECIPE, run_in_process
from tests.fixtures.training_data import write_training_data


def _images(rows) -> list[str]:
    return sorted(r["image"] for r in rows)


# ------------------------------------------------------------------------------------------------ the carves
def test_raf_db_val_is_a_deterministic_tenth_of_the_official_train(tmp_path):
    root = write_raf_db(tmp_path, {**{f"train_{i:05d}.jpg": 1 + i % 7 for i in range(1, 41)}, "test_0001.jpg": 3})
    train, val, trainval = (_images(read_rows("raf_db", root, split)[0]) for split in ("train", "val", "trainval"))
    assert len(val) == 4 and len(train) == 36 and set(train).isdisjoint(val)
    assert sorted(train + val) == trainval and all(path.rsplit("/", 1)[-1].startswith("train_") for path in trainval)
    assert _images(read_rows("raf_db", root, "val")[0]) == val  # deterministic
    assert _images(read_rows("raf_db", root, "val", seed=1)[0]) != val  # and the seed moves it


@pytest.mark.parametrize(
    ("name", "writer", "fold_subjects"), [("bp4d", write_bp4d, (28, 27, 27)), ("disfa", write_disfa, (18, 18, 18))]
)
def test_au_val_is_a_seeded_share_of_the_folds_training_subjects(tmp_path, name, writer, fold_subjects):
    root = writer(tmp_path, 1)[0]

    def subjects(split, fold, **options):
        return {r["subject_id"] for r in read_rows(name, root, split, fold=fold, **options)[0]}

    for fold, count in zip((1, 2, 3), fold_subjects):
        protocol_train, test = subjects("train", fold), subjects("test", fold)
        assert len(protocol_train) == count  # val_fraction 0 (the default): the protocol's training subjects
        train, val = subjects("train", fold, val_fraction=0.15), subjects("val", fold, val_fraction=0.15)
        assert len(val) == count - round(0.85 * count) and val  # 4 of 28 / 27 BP4D subjects, 3 of 18 DISFA ones
        assert train.isdisjoint(val) and train | val == protocol_train and val.isdisjoint(test)
        assert subjects("val", fold, val_fraction=0.15) == val  # deterministic
    assert subjects("val", 1, val_fraction=0.15, seed=1) != subjects("val", 1, val_fraction=0.15)
    rows = read_rows(name, root, "val", fold=1, val_fraction=0.15)[0]
    assert len(rows) == len({r["image"] for r in rows}) > 0


def test_300w_lp_val_holds_whole_source_faces_with_their_views_and_flips(tmp_path):
    samples = {
        f"{folder}/{subset}_{face}_1_{view}.jpg": (0.1, 0.2, 0.3)
        for subset in ("AFW", "HELEN")
        for folder in (subset, f"{subset}_Flip")
        for face in range(10)
        for view in range(3)
    }
    root = write_pose_dataset(tmp_path, "300W_LP", samples)
    train, val = (read_rows("300w_lp", root, split, val_fraction=0.25)[0] for split in ("train", "val"))
    assert len(val) == 5 * 6 and len(train) == 15 * 6  # 5 of the 20 source faces, each 3 views x (it + its flip)
    assert _images(train + val) == _images(read_rows("300w_lp", root, "train")[0])
    faces = {
        split: {(r["image"].split("/")[-2].removesuffix("_Flip"), r["subject_id"]) for r in rows}
        for split, rows in (("train", train), ("val", val))
    }
    assert faces["train"].isdisjoint(faces["val"]) and len(faces["val"]) == 5
    assert _images(read_rows("300w_lp", root, "val", val_fraction=0.25)[0]) == _images(val)


# ------------------------------------------------------------------------------------------------ the guard
def _recipe(**data) -> dict:
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"].update(allow_test_splits=False, **data)
    return raw


def test_a_test_split_in_train_or_eval_is_refused_naming_the_source():
    raw = _recipe()
    with pytest.raises(RecipeError) as info:
        load_recipe(raw=raw, check_paths=False)
    message = str(info.value)
    for source in (
        "data.train[3] (utkface_all)",
        "data.eval[0] (raf_db_test)",
        "data.eval[1] (celeba_test)",
        "data.eval[2] (aflw2000_test)",
    ):
        assert f"{source}: a test split" in message, message
    assert "data.train[0]" not in message and "data.allow_test_splits: true overrides this" in message
    raw["data"]["allow_test_splits"] = True
    assert load_recipe(raw=raw, check_paths=False).data.allow_test_splits
    # `qface evaluate` only scores: it reads such a recipe.
    assert holds_test_rows("bp4d", "all", {}) and holds_test_rows("aflw2000", "test", {})
    assert not holds_test_rows("300w_lp", "train", {}) and not holds_test_rows(
        "utkface", "all", {"split_fractions": {"train": 0.9, "val": 0.1}}
    )


def test_val_without_its_carve_and_a_bad_fraction_are_named():
    raw = _recipe(
        eval=[{"name": "disfa", "root": "disfa", "split": "val", "options": {"fold": 1}}],
        test=[{"name": "300w_lp", "root": "300W_LP", "split": "val", "options": {"val_fraction": 1.5}}],
    )
    raw["data"]["train"][3]["split"] = "train"
    raw["eval"]["best_metric"] = None
    with pytest.raises(RecipeError) as info:
        load_recipe(raw=raw, check_paths=False)
    assert (
        "data.eval[0].split: unknown split 'val' of disfa (expected one of train, test, all); 'val' needs "
        "options.val_fraction > 0"
    ) in str(info.value)
    assert "data.test[0].options.val_fraction: expected a fraction in [0, 1) of the source faces, got 1.5" in str(
        info.value
    )


def test_an_eval_set_sharing_photos_with_training_is_refused_when_it_selects():
    raw = _recipe(eval=[{"name": "raf_db", "root": "basic", "split": "val"}])
    raw["data"]["train"][3]["split"] = "train"
    recipe = load_recipe(raw=raw, check_paths=False)
    train = {"raf_db_trainval": Dataset.from_dict({"photo": ["a.jpg", "b.jpg", "c.jpg"]})}
    val = {"raf_db_val": Dataset.from_dict({"photo": ["c.jpg", "d.jpg"]})}
    with pytest.raises(
        RecipeError,
        match=r"data\.eval raf_db_val shares 1 of its 2 photos with data\.train "
        r"raf_db_trainval \(e\.g\. c\.jpg\)",
    ):
        check_selection_data(recipe, train, val)
    check_selection_data(recipe, train, {"raf_db_val": Dataset.from_dict({"photo": ["d.jpg"]})})
    recipe.eval.best_metric = None  # nothing selected on it: a warning only
    check_selection_data(recipe, train, val)


# ------------------------------------------------------------------------------------------------ a run
def test_training_never_reads_a_test_split(tmp_path, monkeypatch):
    """Every (source, split) that reaches the loading function or an adapter's `iter_rows` during `qface train` is
    recorded: the validation and training splits are, no test split is (the recipe's data.test is for the end)."""
    data = write_training_data(tmp_path / "data")["raf_db"].parent
    carve = {"disfa": {"fold": 1, "val_fraction": 0.2}, "300w_lp": {"val_fraction": 0.25}}
    utkface = {"split_fractions": {"train": 0.75, "test": 0.25}}
    raw = _recipe(
        root=str(data),
        cache_dir=str(tmp_path / "cache"),  # a fresh cache: every split is read from its files
        train=[
            {"name": "raf_db", "root": "basic", "split": "train", "share": 0.25},
            {"name": "celeba", "root": "celeba", "split": "train", "share": 0.25},
            {"name": "disfa", "root": "disfa", "split": "train", "share": 0.125, "options": carve["disfa"]},
            {"name": "utkface", "root": "UTKFace", "split": "train", "share": 0.125, "options": utkface},
            {"name": "300w_lp", "root": "300W_LP", "split": "train", "share": 0.25, "options": carve["300w_lp"]},
        ],
        eval=[
            {"name": "raf_db", "root": "basic", "split": "val"},
            {"name": "celeba", "root": "celeba", "split": "val"},
            {"name": "disfa", "root": "disfa", "split": "val", "options": carve["disfa"]},
            {"name": "300w_lp", "root": "300W_LP", "split": "val", "options": carve["300w_lp"]},
        ],
        test=[
            {"name": "raf_db", "root": "basic", "split": "test"},
            {"name": "celeba", "root": "celeba", "split": "test"},
            {"name": "disfa", "root": "disfa", "split": "test", "options": {"fold": 1}},
            {"name": "utkface", "root": "UTKFace", "split": "test", "options": utkface},
            {"name": "aflw2000", "root": "AFLW2000", "split": "test", "options": {"crop": "loose"}},
        ],
    )
    raw.update(output_dir=str(tmp_path / "run"))
    raw["train"]["max_steps"] = 2
    raw["eval"].update(every_steps=None, best_metric="raf_db_val/expression/accuracy")
    raw["checkpoint"]["every_steps"] = None
    raw["logging"]["tensorboard"] = False
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))

    loaded, read = [], []
    prepare = loading.prepare_source

    def recording_prepare(name, root, split="train", **kwargs):
        loaded.append((name, split))
        return prepare(name, root, split, **kwargs)

    monkeypatch.setattr(loading, "prepare_source", recording_prepare)
    for cls in set(SOURCES.values()):

        def recording_iter_rows(self, split, report, _original=cls.iter_rows):
            read.append((self.name, split))
            return _original(self, split, report)

        monkeypatch.setattr(cls, "iter_rows", recording_iter_rows)
    summary = run_in_process(["--config", str(recipe_file)])

    expected = {(s["name"], s["split"]) for s in raw["data"]["train"] + raw["data"]["eval"]}
    assert set(loaded) == expected and set(read) == expected  # read from the files, through the adapters
    options = {(s["name"], s["split"]): s.get("options", {}) for s in raw["data"]["train"] + raw["data"]["eval"]}
    assert not [pair for pair in loaded + read if holds_test_rows(*pair, options[pair])]
    assert summary["best"]["metric"] == "raf_db_val/expression/accuracy" and summary["best"]["step"] == 2
    assert "--config " + str(tmp_path / "run" / "recipe.yaml") in summary["test_command"]
    # `qface evaluate --config` of the run's recipe scores data.test, the test splits, once, at the end.
    sources = evaluation.recipe_sources(str(tmp_path / "run" / "recipe.yaml"), None, None)
    assert [s["label"] for s in sources] == [
        "raf_db_test",
        "celeba_test",
        "disfa_test",
        "utkface_test",
        "aflw2000_test",
    ]
    assert [s["label"] for s in evaluation.recipe_sources(str(recipe_file), None, "eval")] == [
        "raf_db_val",
        "celeba_val",
        "disfa_val",
        "300w_lp_val",
    ]
