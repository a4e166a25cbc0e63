# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The 3-fold subject-exclusive AU protocol: the folds partition BP4D / DISFA by subject, `qface train --folds` runs
one recipe per fold, and `qface evaluate --aggregate-folds` averages the per-AU F1 over the folds by hand's rule."""

from __future__ import annotations

import json

import pytest
import yaml

from modeling_qface.training import evaluation, finetune
from modeling_qface.training.data import read_rows
from modeling_qface.training.folds import aggregate_fold_reports, fold_recipes, parse_folds
from modeling_qface.training.recipe import RecipeError, load_recipe
from tests.fixtures.benchmark_formats import write_bp4d, write_disfa
from tests.fixtures.train_runs import REPO, TINY_RECIPE, single_thread, train_args
from tests.fixtures.training_data import write_training_data

PAPER_RECIPE = REPO / "configuration" / "train-paper.yaml"


@pytest.fixture(scope="module")
def au_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("au")
    return {"bp4d": write_bp4d(root, frames_per_task=1)[0], "disfa": write_disfa(root, frames_per_subject=1)[0]}


# ------------------------------------------------------------------------------------------------ the folds
@pytest.mark.parametrize(("name", "subjects"), [("bp4d", 41), ("disfa", 27)])
def test_the_three_test_folds_partition_the_subjects_and_the_frames(au_data, name, subjects):
    everything = read_rows(name, au_data[name], "all")[0]
    tests = {fold: read_rows(name, au_data[name], "test", fold=fold)[0] for fold in (1, 2, 3)}
    test_subjects = {fold: {r["subject_id"] for r in rows} for fold, rows in tests.items()}
    # Pairwise disjoint, and together every subject: each subject is tested exactly once.
    assert sum(len(s) for s in test_subjects.values()) == len(set().union(*test_subjects.values())) == subjects
    assert set().union(*test_subjects.values()) == {r["subject_id"] for r in everything}
    assert sorted(r["image"] for rows in tests.values() for r in rows) == sorted(r["image"] for r in everything)
    for fold in tests:  # a fold trains on exactly the subjects it does not test
        train = {r["subject_id"] for r in read_rows(name, au_data[name], "train", fold=fold)[0]}
        assert train.isdisjoint(test_subjects[fold]) and train | test_subjects[fold] == set(test_subjects[1]).union(
            test_subjects[2], test_subjects[3]
        )


def test_fold_recipes_set_every_au_source_and_their_own_output_folder():
    recipe = load_recipe(PAPER_RECIPE, check_paths=False)
    recipes = fold_recipes(recipe, parse_folds("1,2,3"))
    assert list(recipes) == [1, 2, 3]
    for fold, copy in recipes.items():
        assert copy.output_dir == f"runs/qface-base/fold-{fold}"
        au_sources = [
            s
            for section in (copy.data.train, copy.data.eval, copy.data.test)
            for s in section
            if s.name in ("bp4d", "disfa")
        ]
        assert len(au_sources) == 6 and all(s.options["fold"] == fold for s in au_sources)
        # the validation carve stays: each fold holds out 15 % of its own training subjects
        assert [s.options.get("val_fraction") for s in au_sources] == [0.15, 0.15, 0.15, 0.15, None, None]
        assert [s.options for s in copy.data.train if s.name == "raf_db"] == [{}]
    assert recipe.data.train[1].options["fold"] == 1  # the original is not touched
    for bad in ("0,1", "1,1", "a"):
        with pytest.raises(RecipeError, match="--folds"):
            parse_folds(bad)
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["data"]["train"] = [s for s in raw["data"]["train"] if s["name"] != "disfa"]
    raw["data"]["train"][0]["share"] += 0.125
    with pytest.raises(RecipeError, match="--folds: no bp4d or disfa source"):
        fold_recipes(load_recipe(raw=raw, check_paths=False), [1, 2])


def test_qface_train_folds_runs_one_recipe_per_fold(tmp_path):
    data = write_training_data(tmp_path / "data")["raf_db"].parent
    output = tmp_path / "run"
    args = train_args(
        data,
        output,
        1,
        logging__tensorboard=False,
        eval__every_steps=None,
        checkpoint__every_steps=None,
        data__eval=[],
        eval__best_metric=None,
    )
    with single_thread():
        assert finetune.main([*args, "--folds", "1,2"]) == 0
    for fold in (1, 2):
        saved = yaml.safe_load((output / f"fold-{fold}" / "recipe.yaml").read_text())
        assert [s["options"]["fold"] for s in saved["data"]["train"] if s["name"] == "disfa"] == [fold]
        assert (output / f"fold-{fold}" / "final" / "model.safetensors").is_file()
        summary = json.loads((output / f"fold-{fold}" / "train_summary.json").read_text())
        assert summary["steps"] == 1
    assert not (output / "fold-3").exists() and not (output / "final").exists()
    # --resume: finished folds are not run again (the summary is read back, nothing is trained).
    before = (output / "fold-1" / "final" / "model.safetensors").stat().st_mtime_ns
    with single_thread():
        assert finetune.main([*args, "--folds", "1", "--resume"]) == 0
    assert (output / "fold-1" / "final" / "model.safetensors").stat().st_mtime_ns == before


# ------------------------------------------------------------------------------------------------ the fold average
def _report(fold: int, f1: dict[str, float | None], label: str = "bp4d_test", name: str = "bp4d") -> dict:
    """A `qface evaluate` report of one fold (only what the aggregation reads), with made-up per-AU F1."""
    finite = [v for v in f1.values() if v is not None]
    metrics = {
        "au/f1_mean": sum(finite) / len(finite),
        **{f"au/f1/{au}": v for au, v in f1.items()},
        "au/accuracy_mean": 0.9,
    }
    return {
        "model": f"runs/x/fold-{fold}/final",
        "data": [
            {"label": label, "name": name, "split": "test", "options": {"fold": fold}, "num_samples": 100 + fold},
            {"label": "raf_db_test", "name": "raf_db", "split": "test", "options": {}, "num_samples": 8},
        ],
        "metrics": {label: metrics, "raf_db_test": {"expression/accuracy": 0.5}},
    }


FOLD_F1 = {
    1: {"AU1": 0.50, "AU2": 0.40, "AU4": 0.60, "AU9": None},
    2: {"AU1": 0.70, "AU2": 0.20, "AU4": None, "AU9": None},
    3: {"AU1": 0.30, "AU2": 0.30, "AU4": 0.40, "AU9": None},
}


def test_fold_average_is_the_per_au_mean_over_folds_then_the_mean_over_aus(tmp_path, capsys):
    paths = []
    for fold in (3, 1, 2):  # any order: the folds are read from the reports
        path = tmp_path / f"fold{fold}.json"
        path.write_text(json.dumps(_report(fold, FOLD_F1[fold])))
        paths.append(str(path))
    output = tmp_path / "au-3fold.json"
    assert evaluation.main(["--aggregate-folds", *paths, "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    metrics = report["metrics"]["bp4d_test"]
    # By hand: AU1 (0.5 + 0.7 + 0.3) / 3 = 0.5, AU2 (0.4 + 0.2 + 0.3) / 3 = 0.3, AU4 (0.6 + 0.4) / 2 = 0.5 (fold 2 has
    # no F1 for it); AU9 is never coded. The headline: (0.5 + 0.3 + 0.5) / 3.
    assert metrics == pytest.approx(
        {"au/f1/AU1": 0.5, "au/f1/AU2": 0.3, "au/f1/AU4": 0.5, "au/f1_mean": (0.5 + 0.3 + 0.5) / 3}
    )
    assert report["folds_scored"]["bp4d_test"] == {"AU1": 3, "AU2": 3, "AU4": 2}
    assert report["per_fold"]["bp4d_test"]["au/f1/AU1"] == [0.5, 0.7, 0.3]  # in fold order
    assert report["per_fold"]["bp4d_test"]["au/f1/AU4"] == [0.6, None, 0.4]
    assert [d["label"] for d in report["data"]] == ["bp4d_test"]  # only the AU sets are fold-dependent
    assert report["data"][0]["protocol"] == "BP4D 3-fold subject-exclusive, mean of folds 1-3"
    assert report["data"][0]["num_samples"] == 101 + 102 + 103
    assert "bp4d_test (BP4D 3-fold subject-exclusive, mean of folds 1-3): au/f1_mean 0.4333" in capsys.readouterr().out
    # With every AU scored in every fold it is also the mean of the folds' own means.
    complete = {fold: {"AU1": v["AU1"], "AU2": v["AU2"]} for fold, v in FOLD_F1.items()}
    mean = aggregate_fold_reports([_report(f, complete[f]) for f in (1, 2, 3)], ["a", "b", "c"])
    assert mean["metrics"]["bp4d_test"]["au/f1_mean"] == pytest.approx(
        sum(sum(v.values()) / 2 for v in complete.values()) / 3
    )


def test_fold_average_refuses_a_repeated_or_missing_fold(tmp_path, capsys):
    reports = [_report(1, FOLD_F1[1]), _report(1, FOLD_F1[2]), _report(3, FOLD_F1[3])]
    with pytest.raises(
        ValueError,
        match=r"bp4d_test: the 3-fold protocol needs folds 1, 2 and 3 once each; got "
        r"fold 1 \(a\.json\), fold 1 \(b\.json\), fold 3 \(c\.json\)",
    ):
        aggregate_fold_reports(reports, ["a.json", "b.json", "c.json"])
    with pytest.raises(ValueError, match="folds 1, 2 and 3 once each"):
        aggregate_fold_reports(reports[:1], ["a.json"])
    missing = tmp_path / "missing.json"
    assert evaluation.main(["--aggregate-folds", str(missing), "--output", str(tmp_path / "o.json")]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
