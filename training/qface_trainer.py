"""`QFaceTrainer`: transformers' `Trainer` for Q-Face, whose saves and Hub pushes are the Q-Face export.

A plain `Trainer(push_to_hub=True)` gets three things wrong for a model loaded with `trust_remote_code`:
- its checkpoint pushes copy only `config.json` and the weights to the repository's root, so the pushed repo lacks
  the code, the `custom_pipelines` entry's pipeline and the image processor a fresh process needs;
- its final `push_to_hub()` replaces the model card with transformers' generic one;
- every save writes `training_args.bin`, a pickle (`torch.save` of `TrainingArguments`), and every push uploads it.

`QFaceTrainer` pushes the export of `modeling_qface.hub` instead (`export_model`: weights, config with `auto_map`
and `custom_pipelines`, every code file, image processor, the generated card), writes the training arguments as
`training_args.json` (JSON, tokens redacted by `TrainingArguments.to_dict`) and never a pickle into a model folder,
and its `create_model_card` writes the Q-Face card, with the last evaluation's metrics in a table.

It also fills in what every Q-Face run needs and a plain `Trainer` leaves to the user: `label_names` (one
`{task}_labels` per task, so evaluation computes a loss) and, when an `eval_dataset` is given, `compute_metrics`
(every task's shipped metric, `modeling_qface.training.batching.make_compute_metrics`).

`hub_strategy="checkpoint"` / `"all_checkpoints"` also push Trainer's resumable checkpoint folder as transformers
does: besides the export it holds Trainer's optimizer, scheduler and RNG state, which torch writes as pickles (what
`resume_from_checkpoint` reads). Those files stay out of the repository's root, which is the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import HubStrategy, SaveStrategy
from transformers.utils import PushInProgress, hf_api

from modeling_qface.hub import add_pipeline_code, export_model, write_model_card

from .batching import label_names, make_compute_metrics

PICKLED_ARGUMENTS_FILE = "training_args.bin"  # what Trainer writes (transformers.trainer.TRAINING_ARGS_NAME)
ARGUMENTS_FILE = "training_args.json"
# Never uploaded from the output folder: Trainer's own state ("_*" and checkpoints, as transformers ignores them)
# and any pickle (weights and arguments are safetensors and JSON here).
PUSH_IGNORE_PATTERNS = ["_*", "checkpoint-*", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle"]


class QFaceTrainer(Trainer):
    """A `transformers.Trainer` whose saved folders and Hub pushes are the Q-Face export (see the module docstring).

    Takes `Trainer`'s arguments. With a `QFaceModel` and `args.label_names` unset, the labels are the model's
    `{task}_labels`; with an `eval_dataset` and no `compute_metrics`, every task is scored by its shipped metric.
    """

    def __init__(self, model=None, args=None, *positional, **kwargs):
        config = getattr(model, "config", None)
        has_tasks = getattr(config, "task_names", None) is not None
        if has_tasks and args is not None and args.label_names is None:
            args.label_names = label_names(config)
        if has_tasks and kwargs.get("eval_dataset") is not None and kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = make_compute_metrics(config)
        super().__init__(model, args, *positional, **kwargs)

    # ------------------------------------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Trainer's save (`save_pretrained`: weights, config, the model's code; the image processor), made the Q-Face
        export (the pipeline's code and entry, the model card), then the arguments as JSON, not pickled."""
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            folder = Path(output_dir if output_dir is not None else self.args.output_dir)
            add_pipeline_code(folder)
            write_model_card(folder, self.hub_model_id, metrics=self.last_evaluation())
            self._write_arguments(folder)

    def _write_arguments(self, folder: Path) -> None:
        (folder / PICKLED_ARGUMENTS_FILE).unlink(missing_ok=True)
        temporary = folder / f".{ARGUMENTS_FILE}.tmp"
        temporary.write_text(self.args.to_json_string())
        os.replace(temporary, folder / ARGUMENTS_FILE)

    def _export(self, repo_id: str | None) -> None:
        """The complete export of the current model into `output_dir` (the folder every push uploads)."""
        folder = Path(self.args.output_dir)
        export_model(
            self.accelerator.unwrap_model(self.model),
            folder,
            self.processing_class,
            repo_id=repo_id,
            metrics=self.last_evaluation(),
        )
        self._write_arguments(folder)

    # ------------------------------------------------------------------------------------------------ the card
    def create_model_card(self, model_name: str | None = None, **_trainer_card_fields) -> None:
        """The Q-Face card (`modeling_qface.hub.write_model_card`) in `output_dir`, in place of transformers'
        generic one: Trainer's card fields (language, tasks, dataset tags, ...) do not apply to it."""
        if self.is_world_process_zero():
            write_model_card(self.args.output_dir, self.hub_model_id or model_name, metrics=self.last_evaluation())

    def last_evaluation(self) -> dict[str, float] | None:
        """The metrics of the latest evaluation in the training log (`{"task/metric": value}`), or None."""
        for entry in reversed(self.state.log_history):
            metrics = {
                key.removeprefix("eval_"): value
                for key, value in entry.items()
                if key.startswith("eval_") and "/" in key
            }
            if metrics:
                return metrics
        return None

    # ------------------------------------------------------------------------------------------------ pushes
    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """What Trainer pushes at each save (`hub_strategy` every_save, checkpoint, all_checkpoints): the export of
        the model just saved, from `output_dir`, in the background (one push at a time unless `hub_always_push`)."""
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        self._export(self.hub_model_id)
        if self.args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"
        jobs = [self._upload(self.args.output_dir, message)]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path_in_repo = (
                "last-checkpoint" if self.args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
            )
            jobs.append(self._upload(checkpoint_folder, message + ", checkpoint", path_in_repo=path_in_repo))
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

    def _upload(self, folder: str, message: str, path_in_repo: str | None = None):
        ignore = None if path_in_repo else PUSH_IGNORE_PATTERNS  # a resumable checkpoint keeps Trainer's state
        return hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=folder,
            path_in_repo=path_in_repo,
            commit_message=message,
            token=self.args.hub_token,
            run_as_future=True,
            ignore_patterns=ignore,
            revision=self.args.hub_revision,
        )


__all__ = ["ARGUMENTS_FILE", "PUSH_IGNORE_PATTERNS", "QFaceTrainer"]
