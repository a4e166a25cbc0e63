"""`qface`: one command for the whole workflow; each sub-command is its module's own `main(argv)`."""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module with `main(argv) -> int`, one-line description)
COMMANDS = {
    "pretrain": ("training.pretrain", "MAE pretraining of the encoder on unlabelled face images"),
    "train": ("training.finetune", "multi-task fine-tuning from a recipe (configuration/train-*.yaml)"),
    "evaluate": ("training.evaluation", "every task's metrics of a model on benchmark data; table + JSON"),
    "label": ("training.teachers.label", "teacher labels (expression, pose, geometry, age) for a folder of photos"),
    "analyze": ("modeling_qface.analyze", "every face of images/folders/globs -> JSONL or CSV, pictures, figures"),
    "serve": ("modeling_qface.serve", "the web demo (Gradio) on 127.0.0.1"),
    "demo": ("modeling_qface.demo", "the main job: every face of the sample photos through a Q-Face model"),
}


def usage() -> str:
    lines = ["usage: qface <command> [options]   (qface <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {description}" for name, (_, description) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"qface: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
