"""Q-Face training: data adapters, MAE pretraining, multi-task fine-tuning, evaluation, teachers (not needed for
inference).

On disk this folder is `training/` at the repository root; it is installed as `modeling_qface.training`
(pyproject.toml, `package-dir`), so it never claims the top-level name `training` in a user's environment.
"""

if __name__ != "modeling_qface.training":  # imported as a top-level `training` from a source checkout
    raise ImportError("Q-Face's training code is the package `modeling_qface.training`; import it by that name")
