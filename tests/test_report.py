"""The HTML report of analysed photos (`make demo`'s index.html): every face, every task, the pictures."""

from __future__ import annotations

import json

from PIL import Image

from modeling_qface.figures.report import summarise, write_report
from modeling_qface.samples import demo

FACE = {
    "box": [10.0, 20.0, 110.0, 140.0],
    "score": 0.98,
    "landmarks": [[0.0, 0.0]] * 5,
    "expression": {"label": "happiness", "scores": {"happiness": 0.81, "neutral": 0.19}},
    "age": {"years": 31.4, "std": 4.2},
    "head_pose": {"yaw": 12.0, "pitch": -3.1, "roll": 1.5},
    "gender": {"label": "female", "scores": {"female": 0.9, "male": 0.1}},  # a task added to the model
    "attributes": {"Smiling": 0.9, "Male": 0.2, "Eyeglasses": 0.7, "Young": 0.6},
}


def test_every_task_is_summarised():
    assert summarise(FACE["expression"]) == "happiness 0.81"
    assert summarise(FACE["age"]) == "31.4 &plusmn; 4.2 years"
    assert summarise(FACE["head_pose"]) == "yaw +12.0, pitch -3.1, roll +1.5"
    assert summarise(FACE["attributes"]) == "Smiling 0.90, Eyeglasses 0.70, Young 0.60"
    assert summarise(FACE["attributes"], limit=1) == "Smiling 0.90 (+2 more)"


def test_report_lists_faces_failures_and_links_the_pictures(tmp_path):
    results = tmp_path / "results.jsonl"
    records = [
        {"input": "/photos/group.jpg", "faces": [FACE, {**FACE, "score": 0.91}]},
        {"input": "/photos/empty.jpg", "faces": []},
        {"input": "/photos/broken.jpg", "error": "/photos/broken.jpg: cannot identify image file"},
        {"input": "/other/group.jpg", "faces": [FACE]},  # same stem: its pictures are group_2*
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "rendered").mkdir()
    (tmp_path / "attention").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "rendered" / "group.jpg")
    # Written in another order than the table's: the page follows the table (photo by photo, face by face).
    for name in ("group_2_face0", "group_face1", "group_face0"):
        Image.new("RGB", (8, 8)).save(tmp_path / "attention" / f"{name}_attention.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "attention" / "stage_usage.png")
    index = write_report(
        tmp_path, results, tmp_path / "rendered", tmp_path / "attention", title="T", notice="A demonstration model."
    )
    page = index.read_text()
    assert page.count("<tr><td>group.jpg</td>") == 3 and "happiness 0.81" in page and "female 0.90" in page
    assert "<th>face</th><th>box</th><th>detector score</th>" in page and "<th>gender</th>" in page
    # Faces numbered from 1 in each photo, as the rendered boxes are; the box in pixels, the score in its column.
    assert "<tr><td>group.jpg</td><td>1</td><td>10, 20, 110, 140</td><td>0.98</td>" in page
    assert "<tr><td>group.jpg</td><td>2</td><td>10, 20, 110, 140</td><td>0.91</td>" in page
    assert "empty.jpg</td><td colspan='8'>no face found" in page and "cannot identify image file" in page
    assert "src='rendered/group.jpg'" in page and "src='attention/stage_usage.png'" in page
    maps = [
        page.index(f"src='attention/{name}_attention.png'") for name in ("group_face0", "group_face1", "group_2_face0")
    ]
    assert maps == sorted(maps) and "<figcaption>group.jpg face 2</figcaption>" in page
    assert "A demonstration model." in page
    assert "http" not in page  # local files only


def test_demo_writes_the_report_and_says_where(tmp_path, sample_photos, capsys):
    photo = str(sample_photos["multi_face.jpg"])
    assert demo.main([photo, "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    page = (tmp_path / "index.html").read_text()
    assert page.count("<tr><td>multi_face.jpg</td>") == 5 and "src='rendered/multi_face.jpg'" in page
    assert f"Open {(tmp_path / 'index.html').resolve()}" in out
    assert sum(line.startswith("multi_face.jpg") for line in out.splitlines()) == 5
    # Run again into the same folder: written anew, not refused (the demo's own folder) and not appended to.
    assert demo.main([photo, "--output-dir", str(tmp_path)]) == 0
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1


def test_a_few_labels_are_all_shown_and_pose_keeps_its_order():
    assert summarise({"Male": 0.02, "Smiling": 0.91}) == "Male 0.02, Smiling 0.91"
    assert summarise({"roll": 0.5, "yaw": 0.25, "pitch": 0.0}) == "yaw +0.2, pitch +0.0, roll +0.5"
