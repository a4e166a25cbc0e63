# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""An HTML report of `qface analyze` results: annotated photos, a table of every face, attention maps and the
stage-usage chart, as one `index.html` next to the pictures (all local files, nothing fetched by the page).

    write_report(output_dir, results_jsonl, render_dir, attention_dir, title=..., notice=...)

Every task a model has is summarised generically: a multiclass task as its top class and probability, a distribution
task as its value +- std, a regression task as its values, a multilabel task as its labels' probabilities (those at
or above 0.5 when it has more than three).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from ..model.configuration_qface import HEAD_POSE_NAMES

# Keys of a face dict that are not task answers.
FACE_FIELDS = {"box", "score", "landmarks", "au_active", "stage_usage", "attention"}

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
.notice { background: #fff4d6; border: 1px solid #e0b000; padding: 0.6em 1em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 640px; max-height: 480px; border: 1px solid #ccc; }
figcaption { font-size: 0.85em; color: #555; }
"""


def summarise(value, limit: int = 5) -> str:
    """One task's answer for one face as short HTML text (see the module docstring); a multilabel task lists at most
    `limit` labels, most probable first."""
    if not isinstance(value, dict):
        return str(value)
    if "label" in value and "scores" in value:
        return f"{value['label']} {value['scores'][value['label']]:.2f}"
    if "std" in value:
        key = next(k for k in value if k != "std")
        return f"{value[key]:.1f} &plusmn; {value['std']:.1f} {html.escape(key)}"
    numbers = {k: v for k, v in value.items() if isinstance(v, (int, float))}
    if set(numbers) == set(HEAD_POSE_NAMES):
        return ", ".join(f"{name} {numbers[name]:+.1f}" for name in HEAD_POSE_NAMES)
    if numbers and all(0.0 <= v <= 1.0 for v in numbers.values()) and len(numbers) <= 3:  # a few labels: all of them
        return ", ".join(f"{html.escape(k)} {v:.2f}" for k, v in numbers.items())
    if numbers and all(0.0 <= v <= 1.0 for v in numbers.values()):
        on = [f"{html.escape(k)} {v:.2f}" for k, v in sorted(numbers.items(), key=lambda kv: -kv[1]) if v >= 0.5]
        more = f" (+{len(on) - limit} more)" if len(on) > limit else ""
        return ", ".join(on[:limit]) + more if on else "none &ge; 0.5"
    return ", ".join(f"{html.escape(k)} {v:+.1f}" for k, v in numbers.items())


def _relative(path: Path, start: Path) -> str:
    return html.escape(Path(os.path.relpath(path, start)).as_posix())


def write_report(
    output_dir: str | os.PathLike,
    results_jsonl: str | os.PathLike,
    render_dir: str | os.PathLike | None = None,
    attention_dir: str | os.PathLike | None = None,
    title: str = "Q-Face results",
    notice: str | None = None,
) -> Path:
    """Writes `output_dir/index.html` from a `qface analyze` JSONL file and the pictures it wrote; returns its path.

    Rendered photos are looked up as `render_dir/<stem>.jpg`, attention maps as
    `attention_dir/<stem>_face<i>_attention.png` and the chart as `attention_dir/stage_usage.png` (the names
    `qface analyze` gives them); missing pictures are left out.
    """
    out = Path(output_dir)
    records = [json.loads(line) for line in Path(results_jsonl).read_text().splitlines() if line.strip()]
    tasks = list(dict.fromkeys(key for r in records for f in r.get("faces", []) for key in f if key not in FACE_FIELDS))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if notice:
        parts.append(f"<p class='notice'>{notice}</p>")
    parts.append("<h2>Every face</h2><table><tr><th>photo</th><th>face</th><th>detector</th>")
    parts += [f"<th>{html.escape(task)}</th>" for task in tasks]
    parts.append("</tr>")
    for record in records:
        name = html.escape(Path(record["input"]).name)
        if record.get("error"):
            parts.append(f"<tr><td>{name}</td><td colspan='{len(tasks) + 2}'>{html.escape(record['error'])}</td></tr>")
        for index, face in enumerate(record.get("faces", [])):
            score = "" if face.get("score") is None else f"{face['score']:.2f}"
            cells = "".join(f"<td>{summarise(face[task]) if task in face else ''}</td>" for task in tasks)
            parts.append(f"<tr><td>{name}</td><td>{index}</td><td>{score}</td>{cells}</tr>")
        if not record.get("faces") and not record.get("error"):
            parts.append(f"<tr><td>{name}</td><td colspan='{len(tasks) + 2}'>no face found</td></tr>")
    parts.append("</table>")

    stems = [Path(record["input"]).stem for record in records]
    if render_dir is not None:
        parts.append("<h2>Photos</h2>")
        for stem in stems:
            picture = Path(render_dir) / f"{stem}.jpg"
            if picture.is_file():
                parts.append(
                    f"<figure><img src='{_relative(picture, out)}' alt='{html.escape(stem)}'>"
                    f"<figcaption>{html.escape(stem)}: boxes, landmarks, pose axes (x red, y green, "
                    "z blue: where the nose points)</figcaption></figure>"
                )
    if attention_dir is not None:
        chart = Path(attention_dir) / "stage_usage.png"
        if chart.is_file():
            parts.append(
                "<h2>Which encoder stages each task reads (the paper's Fig. 5)</h2>"
                f"<figure><img src='{_relative(chart, out)}' alt='stage usage'></figure>"
            )
        maps = sorted(Path(attention_dir).glob("*_attention.png"))
        if maps:
            parts.append("<h2>Where label queries look (the paper's Fig. 4)</h2>")
            parts += [
                f"<figure><img src='{_relative(m, out)}' alt='{html.escape(m.stem)}'>"
                f"<figcaption>{html.escape(m.stem)}</figcaption></figure>"
                for m in maps
            ]
    parts.append("</body></html>")
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


__all__ = ["summarise", "write_report"]
