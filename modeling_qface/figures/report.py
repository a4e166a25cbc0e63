# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""An HTML report of `qface analyze` results: annotated photos, a table of every face, attention maps and the
stage-usage chart, as one `index.html` next to the pictures (all local files, nothing fetched by the page).

    write_report(output_dir, results_jsonl, render_dir, attention_dir, title=..., notice=...)

Every task a model has is summarised generically: a multiclass task as its top class and probability, a distribution
task as its value +- std, a regression task as its values, a multilabel task as its labels' probabilities (those at
or above 0.5 when it has more than three).
"""

from __future__ import annotations

import functools
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


def picture_name(stem: str, used: set[str]) -> str:
    """The name of an image's pictures: its file's `stem`, or `stem_2`, `stem_3`, ... when an earlier image of the
    run had the same stem (`qface analyze` names its renders and attention maps so; `used` collects the names)."""
    name, count = stem, 1
    while name in used:
        count += 1
        name = f"{stem}_{count}"
    used.add(name)
    return name


def write_report(
    output_dir: str | os.PathLike,
    results_jsonl: str | os.PathLike,
    render_dir: str | os.PathLike | None = None,
    attention_dir: str | os.PathLike | None = None,
    title: str = "Q-Face results",
    notice: str | None = None,
) -> Path:
    """Writes `output_dir/index.html` from a `qface analyze` JSONL file and the pictures it wrote; returns its path.

    The table has one row per face, numbered 1, 2, ... in each photo as `render` labels the boxes on the pictures,
    with its box (x1, y1, x2, y2, pixels), the detector's score and every task's answer. Rendered photos are looked up
    as `render_dir/<name>.jpg`, attention maps as `attention_dir/<name>_face<i>_attention.png` (`<name>`:
    `picture_name`, `<i>` from 0) and the chart as `attention_dir/stage_usage.png`, the names `qface analyze` gives
    them; the attention maps follow the table's order (photo by photo, face by face) and name the face as it does.
    Missing pictures are left out.
    """
    out = Path(output_dir)
    lines = [json.loads(line) for line in Path(results_jsonl).read_text().splitlines() if line.strip()]
    # A video's lines (one per frame, then its summary) go to the video section; photos and failures to the table.
    frames = [r for r in lines if "frame" in r]
    videos = [r for r in lines if "video" in r]
    records = [r for r in lines if "frame" not in r and "video" not in r]
    tasks = list(dict.fromkeys(key for r in records for f in r.get("faces", []) for key in f if key not in FACE_FIELDS))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if notice:
        parts.append(f"<p class='notice'>{notice}</p>")
    parts.append("<h2>Every face</h2><table><tr><th>photo</th><th>face</th><th>box</th><th>detector score</th>")
    parts += [f"<th>{html.escape(task)}</th>" for task in tasks]
    parts.append("</tr>")
    span = len(tasks) + 3
    for record in records:
        name = html.escape(Path(record["input"]).name)
        if record.get("error"):
            parts.append(f"<tr><td>{name}</td><td colspan='{span}'>{html.escape(record['error'])}</td></tr>")
        for number, face in enumerate(record.get("faces", []), 1):
            box = ", ".join(f"{value:.0f}" for value in face["box"])
            score = "" if face.get("score") is None else f"{face['score']:.2f}"
            cells = "".join(f"<td>{summarise(face[task]) if task in face else ''}</td>" for task in tasks)
            parts.append(f"<tr><td>{name}</td><td>{number}</td><td>{box}</td><td>{score}</td>{cells}</tr>")
        if not record.get("faces") and not record.get("error"):
            parts.append(f"<tr><td>{name}</td><td colspan='{span}'>no face found</td></tr>")
    parts.append("</table>")
    if videos:
        parts += _video_section(videos, frames, out)

    used: set[str] = set()  # the analysed images' picture names, in the order qface analyze gave them
    analysed = [(record, picture_name(Path(record["input"]).stem, used)) for record in records if "faces" in record]
    if render_dir is not None:
        parts.append("<h2>Photos</h2>")
        for record, stem in analysed:
            picture = Path(render_dir) / f"{stem}.jpg"
            if picture.is_file():
                parts.append(
                    f"<figure><img src='{_relative(picture, out)}' alt='{html.escape(stem)}'>"
                    f"<figcaption>{html.escape(Path(record['input']).name)}: boxes numbered as the table's faces, "
                    "landmarks, pose axes (x red, y green, z blue: where the nose points)</figcaption></figure>"
                )
    if attention_dir is not None:
        chart = Path(attention_dir) / "stage_usage.png"
        if chart.is_file():
            parts.append(
                "<h2>Which encoder stages each task reads (the paper's Fig. 5)</h2>"
                f"<figure><img src='{_relative(chart, out)}' alt='stage usage'></figure>"
            )
        maps = [
            (
                Path(attention_dir) / f"{stem}_face{index}_attention.png",
                f"{Path(record['input']).name} face {index + 1}",
            )
            for record, stem in analysed
            for index in range(len(record["faces"]))
        ]
        maps = [(path, caption) for path, caption in maps if path.is_file()]
        if maps:
            parts.append("<h2>Where label queries look (the paper's Fig. 4)</h2>")
            parts += [
                f"<figure><img src='{_relative(path, out)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                for path, caption in maps
            ]
    parts.append("</body></html>")
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def _video_section(videos: list[dict], frames: list[dict], out: Path) -> list[str]:
    """Per video: its per-track table (seen from / to, frames, the most frequent top expression, mean age) and the
    timeline figure, saved beside the report."""
    import matplotlib.pyplot as plt

    from ..outputs.result_file import save_picture
    from .timeline import timeline_figure

    parts = ["<h2>Videos: every person over time</h2>"]
    used: set[str] = set()
    for video in videos:
        name = Path(video["input"]).name
        parts.append(f"<h3>{html.escape(name)}</h3><table><tr><th>id</th><th>seen</th><th>frames</th>")
        parts.append("<th>top expression (share of frames)</th><th>mean age</th></tr>")
        for track in video.get("tracks", []):
            shares = track.get("expression_share") or {}
            top = max(shares, key=shares.get) if shares else None
            expression = f"{html.escape(top)} ({shares[top]:.0%})" if top else ""
            age = track["mean"].get("age")
            parts.append(
                f"<tr><td>{track['track_id']}</td><td>{track['first_s']:.2f} to {track['last_s']:.2f} s</td>"
                f"<td>{track['frames']}</td><td>{expression}</td><td>{'' if age is None else f'{age:.0f}'}</td></tr>"
            )
        parts.append("</table>")
        figure = timeline_figure([f for f in frames if f["input"] == video["input"]], title=name)
        if figure is not None:
            out.mkdir(parents=True, exist_ok=True)
            picture = out / f"{picture_name(Path(video['input']).stem, used)}_timeline.png"
            save_picture(functools.partial(figure.savefig, dpi=90), picture)
            plt.close(figure)
            parts.append(
                f"<figure><img src='{picture.name}' alt='timeline of {html.escape(name)}'><figcaption>"
                f"{html.escape(name)}: expression probabilities (lines) and attributes (dashed) per person, and "
                "their yaw and pitch, over time</figcaption></figure>"
            )
    return parts


__all__ = ["picture_name", "summarise", "write_report"]
