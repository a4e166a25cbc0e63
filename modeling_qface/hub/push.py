"""Pushing a Q-Face export to the Hub (`push_to_hub`), and `qface push FOLDER REPO_ID`: a saved Q-Face model folder to the Hugging Face Hub, with its model card.

    qface push runs/qface/final me/qface-base
    qface push runs/qface/best me/qface-base --evaluation eval_results.json --revision main --private

The folder (training's `final/` or `best/`, or any `save_pretrained` folder) is re-exported (`modeling_qface.hub`:
safetensors weights, config with `auto_map` and `custom_pipelines`, model and pipeline code, image processor) and
its model card generated from its files and the evaluation report, then pushed in one commit. Anyone can then run
`AutoModel.from_pretrained(REPO_ID, trust_remote_code=True)` or `pipeline("face-analysis", model=REPO_ID, trust_remote_code=True)`.
Log in first (`hf auth login`) or set HF_TOKEN. A Hub error (no permission, no such revision, no network) is one line
naming the repo, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

from .card import write_model_card
from .export import add_run_files, export_folder, export_model


class HubError(RuntimeError):
    """A push that the Hub refused or could not receive; the message names the repo and what to do. The
    `huggingface_hub` exception is kept as `original` (and not chained, so the message is all a user sees)."""

    def __init__(self, message: str, original: BaseException | None = None):
        super().__init__(message)
        self.original = original


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None = None):
    """Turns what `huggingface_hub` raises into one `HubError` whose message names the repo and the fix."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except RevisionNotFoundError as error:
        raise HubError(
            f"{repo_id}: revision {revision!r} does not exist on the Hub; push to an existing branch "
            "(create it first, e.g. `hf repo branch create`)",
            error,
        ) from None
    except RepositoryNotFoundError as error:
        raise HubError(
            f"{repo_id}: no such repository on the Hub, or your token cannot see it (check the name and "
            "`hf auth whoami`)",
            error,
        ) from None
    except OfflineModeIsEnabled as error:
        raise HubError(f"cannot push to {repo_id}: offline mode is on (HF_HUB_OFFLINE=1)", error) from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        detail = (error.server_message or str(error).splitlines()[0]).strip()
        if status in (401, 403):
            raise HubError(
                f"{repo_id}: no permission to write to this repository (HTTP {status}: {detail}); log in "
                "with a token that has write access (`hf auth login`)",
                error,
            ) from None
        raise HubError(f"{repo_id}: the Hub refused the push (HTTP {status}: {detail})", error) from None
    except Exception as error:
        # Connection refused, DNS failure, timeout: httpx(2) transport errors, or plain OSErrors.
        network = (ConnectionError, TimeoutError, socket.gaierror)  # not other OSErrors: those are local files
        if isinstance(error, network) or type(error).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            raise HubError(
                f"cannot reach the Hub at {constants.ENDPOINT} to push {repo_id}: {type(error).__name__}: {error}",
                error,
            ) from None
        raise


def push_to_hub(
    model,
    repo_id: str,
    image_processor=None,
    evaluation: dict | str | os.PathLike | None = None,
    training_config=None,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    create_pr: bool = False,
    metrics: dict[str, float] | None = None,
    **save_kwargs,
):
    """Pushes the complete Q-Face export (see the module docstring) with its generated card in one commit.

    `model` is a `QFaceModel` or a saved model folder (re-exported by `export_folder`). The repository is created
    when missing; `revision` must be an existing branch. Returns the `CommitInfo` (a `str`: the commit URL; `.oid`
    is the commit hash to pin with `from_pretrained(..., revision=oid)`).

    Raises:
        HubError: the Hub refused the push (no permission, no such revision, ...) or could not be reached; the
            message names the repo.
    """
    api = HfApi(token=token)
    with hub_errors(repo_id, revision):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory(prefix="qface-push-") as folder:
            if isinstance(model, (str, os.PathLike)):
                export_folder(model, folder, repo_id)
                add_run_files(folder, evaluation, training_config)  # given here: they replace the folder's
                write_model_card(folder, repo_id, metrics=metrics)
            else:
                export_model(
                    model,
                    folder,
                    image_processor,
                    evaluation,
                    training_config,
                    repo_id=repo_id,
                    metrics=metrics,
                    **save_kwargs,
                )
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                revision=revision,
                create_pr=create_pr,
                commit_message=commit_message or "Upload Q-Face model",
                commit_description=commit_description,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qface push",
        description="Push a saved Q-Face model folder to the Hugging Face Hub, with its model card, in one commit.",
    )
    parser.add_argument("folder", type=Path, help="a saved model folder (e.g. runs/qface/final)")
    parser.add_argument("repo_id", help="the Hub repository, owner/name (created when missing)")
    parser.add_argument("--revision", help="an existing branch to push to (default: the repository's default branch)")
    parser.add_argument(
        "--private", action="store_true", help="create the repository private (an existing one keeps its visibility)"
    )
    parser.add_argument(
        "--evaluation",
        type=Path,
        help="`qface evaluate`'s JSON report for the card's model-index "
        "(default: FOLDER/eval_results.json when there is one)",
    )
    parser.add_argument(
        "--commit-message", default="Upload Q-Face model", help="the commit's title (default: %(default)s)"
    )
    parser.add_argument("--token", help="a Hub token with write access (default: the logged-in one, or HF_TOKEN)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.folder / "config.json").is_file():
        raise FileNotFoundError(2, "not a saved model folder (no config.json)", str(args.folder))
    if args.evaluation is not None and not args.evaluation.is_file():
        raise FileNotFoundError(2, "no such evaluation report", str(args.evaluation))
    try:
        commit = push_to_hub(
            args.folder,
            args.repo_id,
            evaluation=args.evaluation,
            revision=args.revision,
            private=args.private or None,
            token=args.token,
            commit_message=args.commit_message,
        )
    except HubError as error:
        print(f"qface push: error: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.folder} to {args.repo_id}: {commit}")
    print(f"commit {commit.oid} (pin it with revision={commit.oid!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
