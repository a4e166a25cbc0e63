"""Trainer pushes that ship the Q-Face export."""

from __future__ import annotations

from pathlib import Path

from transformers.trainer_callback import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .export import add_pipeline_code, export_model


class QFaceHubCallback(TrainerCallback):
    """Makes `Trainer(push_to_hub=True, hub_strategy="every_save")` push the Q-Face export: pass
    `callbacks=[QFaceHubCallback()]`. Before each push, the export (code, `custom_pipelines`, image processor, model
    card; `model.safetensors` and `config.json` again) is written into `args.output_dir`, which Trainer uploads;
    its own checkpoint push copies only weights and config there (the checkpoint's config gets the pipeline entry
    here), so without this the pushed repo lacks the code that `trust_remote_code` loads. The card's model-index
    comes from `eval_results.json` in `output_dir` when it is a `qface evaluate` report.

    `trainer.push_to_hub()` writes transformers' generic README after this hook runs, and Trainer uploads its pickled
    `training_args.bin`: `modeling_qface.training.qface_trainer.QFaceTrainer` (a Trainer subclass) does neither and
    needs no callback. With a plain Trainer, push the final model with `modeling_qface.push_to_hub(trainer.model,
    repo_id)` instead (`trainer.model.push_to_hub` is transformers' own: no pipeline code, no Q-Face card).
    """

    def on_push_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if model is None or not state.is_world_process_zero:
            return
        repo_id = args.hub_model_id or Path(args.output_dir).name
        export_model(model, args.output_dir, processing_class, repo_id=repo_id)
        # Trainer copies `config.json` over from the checkpoint it pushes, after this hook: give that one the entry too.
        checkpoint = Path(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if (checkpoint / "config.json").is_file():
            add_pipeline_code(checkpoint)
