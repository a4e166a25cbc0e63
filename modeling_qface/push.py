"""`qface push FOLDER REPO_ID`: a saved Q-Face model folder to the Hugging Face Hub, with its model card.

    qface push runs/qface/final me/qface-base
    qface push runs/qface/best me/qface-base --evaluation eval_results.json --revision main --private

The folder (training's `final/` or `best/`, or any `save_pretrained` folder) is re-exported (`modeling_qface.hub`:
safetensors weights, config with `auto_map` and `custom_pipelines`, model and pipeline code, image processor) and
its model card generated from its files and the evaluation report, then pushed in one commit. Anyone can then run
`AutoModel.from_pretrained(REPO_ID, trust_remote_code=True)` or `pipeline(model=REPO_ID, trust_remote_code=True)`.
Log in first (`hf auth login`) or set HF_TOKEN. A Hub error (no permission, no such revision, no network) is one line
naming the repo, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qface push", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a saved model folder (e.g. runs/qface/final)")
    parser.add_argument("repo_id", help="the Hub repository, owner/name (created when missing)")
    parser.add_argument("--revision", help="an existing branch to push to (default: main)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--evaluation", type=Path,
                        help="`qface evaluate`'s JSON report for the card's model-index "
                             "(default: FOLDER/eval_results.json when there is one)")  # fmt: skip
    parser.add_argument("--commit-message", default="Upload Q-Face model")
    parser.add_argument("--token", help="a Hub token with write access (default: the logged-in one, or HF_TOKEN)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .hub import HubError, push_to_hub

    args = build_parser().parse_args(argv)
    if not (args.folder / "config.json").is_file():
        raise FileNotFoundError(2, "not a saved model folder (no config.json)", str(args.folder))
    if args.evaluation is not None and not args.evaluation.is_file():
        raise FileNotFoundError(2, "no such evaluation report", str(args.evaluation))
    try:
        commit = push_to_hub(args.folder, args.repo_id, evaluation=args.evaluation, revision=args.revision,
                             private=args.private or None, token=args.token,
                             commit_message=args.commit_message)  # fmt: skip
    except HubError as error:
        print(f"qface push: error: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.folder} to {args.repo_id}: {commit}")
    print(f"commit {commit.oid} (pin it with revision={commit.oid!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
