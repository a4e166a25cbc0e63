# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Running a Q-Face model exported to ONNX (`qface export onnx`) with onnxruntime alone.

An export folder is laid out as Optimum's ONNX exports are:

    model.onnx                 the graph: input `pixel_values` `(batch, 3, H, W)` float32, the batch axis dynamic;
                               one output per task field, named as the `QFaceOutput` fields (`expression_logits`,
                               `au_logits`, `attributes_logits`, `age_distribution`, `age`, `head_pose`, and
                               `{name}_logits` / `{name}` / `{name}_distribution` for added tasks)
    config.json                the model's `QFaceConfig` (without `auto_map` / `custom_pipelines`: there is no Python
                               code beside the graph)
    preprocessor_config.json   the image processor
    README.md                  the model card

`QFaceOnnxModel` wraps an `onnxruntime.InferenceSession` so that it stands in for `QFaceModel` in the
`face-analysis` pipeline: it carries the config, and calling it returns a `QFaceOutput` of torch tensors. Only the
task outputs exist in the graph: attention maps and hidden states need the torch model.

Exporting needs the `onnx` extra (`pip install qface[onnx]`: onnx, onnxscript); running an export needs only
onnxruntime, a core dependency of Q-Face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .configuration_qface import QFaceConfig
from .heads_qface import output_fields
from .model_loading_qface import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, ModelLoadError, read_config_json
from .modeling_qface import QFaceOutput
from .threads_qface import onnxruntime_session_options

ONNX_WEIGHTS_NAME = "model.onnx"
CONFIG_NAME = "config.json"
INPUT_NAME = "pixel_values"
# Keys of a saved Q-Face `config.json` that point at Python code next to the weights; an ONNX folder has none.
CODE_CONFIG_KEYS = ("auto_map", "custom_pipelines")


def onnx_output_names(config: QFaceConfig) -> list[str]:
    """The graph's output names, in config task order: every field each task fills (`heads_qface.output_fields`)."""
    return [field for task in config.tasks for field in output_fields(task).values()]


def is_onnx_model_folder(path) -> bool:
    """Whether `path` is an ONNX export folder: `model.onnx` and no safetensors weights (a folder with both is a torch
    model folder that also holds a graph, and loads as the torch model)."""
    if path is None:
        return False
    folder = Path(path)
    return (folder / ONNX_WEIGHTS_NAME).is_file() and not (
        (folder / SAFE_WEIGHTS_NAME).is_file() or (folder / SAFE_WEIGHTS_INDEX_NAME).is_file()
    )


class QFaceOnnxModel:
    r"""
    A Q-Face model exported to ONNX, run by onnxruntime on the CPU, with the calling convention of `QFaceModel`
    (task outputs only) so that `FaceAnalysisPipeline` runs it unchanged.

    Attributes that `transformers.Pipeline` reads from a model: `config`, `name_or_path`, `device` (always CPU),
    `dtype` (always `torch.float32`: the graph is float32), `input_modalities`, `main_input_name`.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> model = QFaceOnnxModel.from_pretrained("qface-onnx")          # written by `qface export onnx MODEL qface-onnx`
    >>> out = model(pixel_values=torch.randn(2, 3, 224, 224))
    >>> out.expression_logits.shape
    torch.Size([2, 7])
    >>> pipe = pipeline("face-analysis", model="qface-onnx")           # or model=model
    ```
    """

    main_input_name = INPUT_NAME
    input_modalities = ("image",)
    dtype = torch.float32
    device = torch.device("cpu")
    hf_device_map = None

    def __init__(self, session, config: QFaceConfig, name_or_path: str = ""):
        self.session = session
        self.config = config
        self.name_or_path = name_or_path
        self.output_names = onnx_output_names(config)
        self._check_graph()

    # ------------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *,
        intra_op_num_threads: int | None = None,
        providers: list | None = None,
        dtype=None,
        **kwargs,
    ) -> QFaceOnnxModel:
        """Loads an ONNX export folder (`model.onnx` + `config.json`).

        Args:
            pretrained_model_name_or_path: the folder.
            intra_op_num_threads: onnxruntime's intra-op thread count (default: the package's thread policy,
                `threads_qface.configured_num_threads`: `--threads`, `QFACE_NUM_THREADS`, ...).
            providers: onnxruntime execution providers (default: `["CPUExecutionProvider"]`).
            dtype: only float32 (or `None` / `"auto"`) is accepted: the graph is float32. A lower precision applies
                to the torch model (`pipeline(..., dtype=torch.bfloat16)` on a safetensors folder).
            kwargs: what `transformers.pipeline()` passes to every model class (`_from_pipeline`, `revision`,
                `trust_remote_code`, ...): ignored, since nothing is downloaded and no code is loaded.

        Raises:
            ModelLoadError: not a folder, no `model.onnx`, a `config.json` that is missing or not a Q-Face config, or
                a graph whose inputs / outputs do not match the config.
            ValueError: a dtype other than float32.
        """
        import onnxruntime

        folder = Path(pretrained_model_name_or_path).expanduser()
        where = f"ONNX model folder {folder}"
        if dtype not in (None, "auto", "float32", torch.float32):
            raise ValueError(
                f"{where}: dtype={dtype}: an ONNX export runs in float32 only; a lower precision applies to the torch "
                "model (a folder with model.safetensors)"
            )
        if not folder.is_dir():
            raise ModelLoadError(f"{where}: not found" if not folder.exists() else f"{where}: not a folder")
        if not (folder / ONNX_WEIGHTS_NAME).is_file():
            raise ModelLoadError(f"{where}: no {ONNX_WEIGHTS_NAME} (expected a folder written by `qface export onnx`)")
        config = load_onnx_config(folder)
        options = onnxruntime_session_options(intra_op_num_threads)
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = onnxruntime.InferenceSession(
                str(folder / ONNX_WEIGHTS_NAME), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for a corrupt or truncated graph
            message = " ".join(str(error).split())[:300]
            problem = f"{ONNX_WEIGHTS_NAME} could not be loaded by onnxruntime ({message})"
            raise ModelLoadError(f"{where}: {problem}") from error
        return cls(session, config, name_or_path=str(folder))

    def _check_graph(self) -> None:
        """The graph must take `pixel_values` at the config's geometry and give every task field of the config."""
        where = f"ONNX model {self.name_or_path or '(in memory)'}"
        inputs = {i.name: i for i in self.session.get_inputs()}
        if list(inputs) != [INPUT_NAME]:
            raise ModelLoadError(f"{where}: expected one input {INPUT_NAME!r}, got {list(inputs)}")
        expected = [self.config.backbone_config.num_channels, *self._image_size()]
        got = inputs[INPUT_NAME].shape[1:]
        if got != expected:
            raise ModelLoadError(
                f"{where}: input {INPUT_NAME} takes (batch, C, H, W) = (batch, {got}), but "
                f"{CONFIG_NAME} says {expected}"
            )
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [name for name in self.output_names if name not in outputs]
        if missing:
            raise ModelLoadError(
                f"{where}: the graph has no output(s) {missing} that the tasks of {CONFIG_NAME} need "
                f"(graph outputs: {sorted(outputs)}); was it exported from another model?"
            )

    def _image_size(self) -> list[int]:
        size = self.config.backbone_config.image_size
        return list(size) if isinstance(size, (list, tuple)) else [size, size]

    # ----------------------------------------------- what transformers.Pipeline expects of a model object
    def to(self, *args, **kwargs) -> QFaceOnnxModel:
        """Only the CPU (and float32) is supported: `.to("cpu")` is a no-op, anything else raises."""
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.dtype) and value != torch.float32:
                raise ValueError(f"{type(self).__name__}: the ONNX graph runs in float32, cannot move to {value}")
            if isinstance(value, (str, torch.device)) and torch.device(value).type != "cpu":
                raise ValueError(f"{type(self).__name__}: the ONNX backend runs on the CPU (onnxruntime), not {value}")
        return self

    def eval(self) -> QFaceOnnxModel:
        return self

    def can_generate(self) -> bool:
        return False

    def query_groups(self) -> list[list[dict]]:
        """Tasks grouped by `query_group` (as `QFaceModel.query_groups`)."""
        groups: dict[int, list[dict]] = {}
        for task in self.config.tasks:
            groups.setdefault(task["query_group"], []).append(task)
        return [groups[g] for g in sorted(groups)]

    # ------------------------------------------------------------------------------------------------- forward
    def __call__(
        self,
        pixel_values: torch.Tensor,
        tasks: list[str] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        return_dict: bool = True,
    ) -> QFaceOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`):
            Normalised face crops at the encoder's image size (any float dtype; run as float32).
        tasks (`list[str]`, *optional*):
            Return only these tasks' fields (the others stay `None`), as `QFaceModel` does.
        output_attentions, output_hidden_states:
            Not in the graph: a true value raises `ValueError` (use the torch model for attention maps).

        Returns a `QFaceOutput` of float32 CPU tensors: `expression_logits` `(B, 7)`, ..., `age` `(B,)`,
        `head_pose` `(B, 3)`, and `extra_task_outputs` for added tasks.
        """
        if output_attentions:
            raise ValueError(
                "output_attentions: an ONNX export has the task outputs only, no attention maps; run the torch model "
                "(a folder with model.safetensors) for them"
            )
        if output_hidden_states:
            raise ValueError(
                "output_hidden_states: an ONNX export has the task outputs only, no hidden states; run the torch "
                "model (a folder with model.safetensors) for them"
            )
        if tasks is not None:
            unknown = sorted(set(tasks) - set(self.config.task_names))
            if unknown:
                raise ValueError(f"tasks: unknown task(s) {unknown}; this model's tasks are {self.config.task_names}")
        expected = (self.config.backbone_config.num_channels, *self._image_size())
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values: expected shape (batch, {', '.join(map(str, expected))}), got "
                f"{tuple(pixel_values.shape)}"
            )
        selected = [t for t in self.config.tasks if tasks is None or t["name"] in tasks]
        names = [field for task in selected for field in output_fields(task).values()]
        array = np.ascontiguousarray(pixel_values.detach().to("cpu", torch.float32).numpy())
        results = self.session.run(names, {INPUT_NAME: array})
        fields, extra = {}, {}
        for name, value in zip(names, results):
            target = fields if name in QFaceOutput.__dataclass_fields__ else extra
            target[name] = torch.from_numpy(value)
        if extra:
            fields["extra_task_outputs"] = extra
        output = QFaceOutput(**fields)
        return output if return_dict else output.to_tuple()

    forward = __call__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name_or_path!r}, tasks={self.config.task_names})"


def load_onnx_config(folder: Path) -> QFaceConfig:
    """The `QFaceConfig` of an ONNX export folder, every problem named as a `ModelLoadError`."""
    where = f"ONNX model folder {folder}"
    raw = read_config_json(folder, where, expected="a folder written by `qface export onnx`")
    if raw.get("model_type") != QFaceConfig.model_type:
        got = raw.get("model_type")
        raise ModelLoadError(f"{where}: {CONFIG_NAME} is not a Q-Face config (model_type {got!r}, expected 'qface')")
    try:
        return QFaceConfig.from_dict(raw)
    except Exception as error:  # strict dataclass validation errors are not ValueErrors
        raise ModelLoadError(f"{where}: {CONFIG_NAME} is not a valid Q-Face config ({error})") from error


__all__ = ["ONNX_WEIGHTS_NAME", "QFaceOnnxModel", "is_onnx_model_folder", "load_onnx_config", "onnx_output_names"]
