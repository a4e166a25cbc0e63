# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface export onnx MODEL OUT`: a saved Q-Face model as an ONNX graph that onnxruntime runs alone.

examples:
  qface export onnx default demo-onnx/           # the demo model shipped with the package (MODEL `default`)
  qface demo --model demo-onnx/ --output-dir demo-onnx-report/   # run by onnxruntime on the sample photos
  qface analyze my_photos/ --model demo-onnx/ --output faces.jsonl   # ... or on a folder of your photos
  qface export onnx runs/qface/final qface-onnx/   # a model you trained (`qface train` writes OUTPUT_DIR/final)

MODEL is a saved Q-Face folder (`save_pretrained`, `qface train`'s `final/` or `best/`), or `default`: the demo
model shipped with the package (a folder named so is `./default`). OUT gets `model.onnx` (input `pixel_values`
`(batch, 3, H, W)`, the batch axis dynamic; one output per task field, named as the `QFaceOutput` fields),
`config.json`, `preprocessor_config.json` and the model card `README.md`, as Optimum lays out its ONNX exports (see
`onnx_qface`). After writing, the graph is run by onnxruntime at two batch sizes and compared with the torch model:
the command fails if any output differs by more than 1e-4.

The graph holds the task outputs only: attention maps and hidden states (`output_attentions`,
`output_hidden_states`) stay with the torch model. Exporting needs the `onnx` extra (`pip install qface[onnx]`).

Exit status 2: bad arguments, a folder that is not a saved Q-Face model, an existing export without --overwrite,
missing exporter packages, or an export that does not match the torch model.
"""

from __future__ import annotations

import argparse
import errno
import importlib.resources
import json
import logging
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..cli import describe
from ..model.model_loading_qface import ModelLoadError
from ..model.onnx_qface import (
    CODE_CONFIG_KEYS,
    CONFIG_NAME,
    INPUT_NAME,
    ONNX_WEIGHTS_NAME,
    QFaceOnnxModel,
    is_onnx_model_folder,
    onnx_output_names,
)
from ..outputs.result_file import OutputWriteError, check_output_folder, write_errors

FORMATS = ("onnx",)
# MODEL `default`: the demo model shipped with the package, `modeling_qface.registry.DEFAULT_MODEL_DIR` (which this
# room may not import: docs/architecture.md), found as the package's data.
DEFAULT_MODEL_ALIAS = "default"
# The examples of the module docstring: the --help epilog too.
EXAMPLES = __doc__.split("\n\n")[1]
# Every output of the exported graph must be within this of torch float32 (measured: ~1e-5 for qface-base).
DEFAULT_ATOL = 1e-4
# Batch sizes of the check after export: two, so a graph whose batch axis was fixed during tracing fails it.
VERIFY_BATCH_SIZES = (1, 3)


class OnnxExportError(ValueError):
    """A model that cannot be exported as asked, or an export that does not reproduce the torch model."""


class QFaceOnnxWrapper(nn.Module):
    """`QFaceModel` with the calling convention of the graph: `pixel_values` `(B, 3, H, W)` -> a tuple of every task
    field (in `onnx_output_names` order), without attention maps, hidden states or losses."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.output_names = onnx_output_names(model.config)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(
            pixel_values=pixel_values, output_attentions=False, output_hidden_states=False, return_dict=True
        )
        return tuple(outputs.field(name) for name in self.output_names)


def check_exportable(model: nn.Module) -> None:
    """Raises `OnnxExportError` naming what the graph cannot carry."""
    config = model.config
    if getattr(config, "model_type", None) != "qface" or not hasattr(config, "tasks"):
        raise OnnxExportError(
            f"{type(model).__name__}: not a Q-Face model (config model_type {getattr(config, 'model_type', None)!r})"
        )
    for flag in ("output_attentions", "output_hidden_states"):
        if getattr(config, flag, False):
            raise OnnxExportError(
                f"config.{flag} is {getattr(config, flag)!r}, but an ONNX export has the task outputs only (no "
                f"attention maps, no hidden states): save the model with {flag}=False to export it"
            )
    if model.dtype != torch.float32:
        raise OnnxExportError(f"the model is in {model.dtype}; export it in float32 (model.float())")


def export_onnx_graph(model: nn.Module, path: str | Path, opset_version: int | None = None) -> Path:
    """Writes `model` (a `QFaceModel`, put in eval mode) as an ONNX graph with a dynamic batch axis to `path`.

    One eager call first installs transformers' output-capturing hooks, whose installation (under a threading
    lock) TorchDynamo cannot trace; then `capture_graph`.
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise OnnxExportError(
            f"exporting needs the onnx extra ({error.name} is not installed): "
            "pip install 'qface[onnx]' (onnx, onnxscript)"
        ) from error
    check_exportable(model)
    model.eval()
    wrapper = QFaceOnnxWrapper(model).eval()
    size = model.config.backbone_config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    # Batch 2: torch.export specialises sizes 0 and 1, so an example of 1 would fix the batch axis.
    generator = torch.Generator().manual_seed(0)  # the caller's random state is left alone
    example = torch.randn(2, model.config.backbone_config.num_channels, height, width, generator=generator)
    example = example.to(model.device)
    with torch.no_grad():
        wrapper(example)
    batch = torch.export.Dim("batch", min=1)
    registration_logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_logger.level
    with warnings.catch_warnings():
        # Dynamo notes transformers' output-capturing context variable as a side effect; it is reset on exit.
        warnings.filterwarnings("ignore", message="While compiling, we found certain side effects")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # "torchvision is not installed. Skipping torchvision::nms" (and 3 more): Q-Face uses no torchvision op.
        registration_logger.setLevel(logging.ERROR)
        try:
            program = capture_graph(wrapper, example, {INPUT_NAME: {0: batch}})
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=wrapper.output_names,
                opset_version=opset_version,
                optimize=True,
                verbose=False,
            )
        finally:
            registration_logger.setLevel(level)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program.save(str(path))  # weights inside the file unless the graph exceeds protobuf's 2 GB
    return path


def capture_graph(wrapper: nn.Module, example: torch.Tensor, dynamic_shapes: dict):
    """`torch.export.export` of the wrapper with the batch axis dynamic: non-strict (Python tracing, fast) when the
    model keeps the batch size symbolic, else strict (TorchDynamo, several seconds more). The non-strict tracer turns
    `len(tensor)` into a constant (Python's `len` must return an int), which fixes the batch axis: the `UserError`
    "Constraints violated (batch)" that it then raises sends the export to TorchDynamo, which keeps `len` symbolic."""
    from torch._dynamo.exc import UserError

    try:
        return torch.export.export(wrapper, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    except UserError:
        return torch.export.export(wrapper, (example,), dynamic_shapes=dynamic_shapes, strict=True)


@dataclass
class OnnxExport:
    """What `export_onnx` wrote and how closely the graph reproduces the torch model."""

    folder: Path
    # output name -> largest |onnxruntime - torch| over the check batches (float32 random crops)
    max_abs_difference: dict[str, float]


def verify_export(model: nn.Module, folder: Path, atol: float = DEFAULT_ATOL, seed: int = 0) -> dict[str, float]:
    """Runs the export with onnxruntime and the torch model on the same random inputs at `VERIFY_BATCH_SIZES`;
    returns the largest difference per output and raises `OnnxExportError` when one exceeds `atol`."""
    onnx_model = QFaceOnnxModel.from_pretrained(folder)
    size = onnx_model._image_size()
    generator = torch.Generator().manual_seed(seed)
    worst: dict[str, float] = {}
    for batch in VERIFY_BATCH_SIZES:
        pixel_values = torch.randn(batch, model.config.backbone_config.num_channels, *size, generator=generator)
        got = onnx_model(pixel_values=pixel_values)
        with torch.no_grad():
            expected = model(pixel_values=pixel_values, output_attentions=False, output_hidden_states=False)
        for name in onnx_model.output_names:
            difference = (got.field(name) - expected.field(name).float()).abs().max().item()
            worst[name] = max(worst.get(name, 0.0), difference)
    bad = {name: value for name, value in worst.items() if not value <= atol}
    if bad:
        raise OnnxExportError(
            f"{folder / ONNX_WEIGHTS_NAME}: outputs differ from the torch model by more than {atol}: {bad}"
        )
    return worst


def export_onnx(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
    opset_version: int | None = None,
) -> OnnxExport:
    """Exports the saved Q-Face model in `model_dir` to `output_dir` (see the module docstring for the layout).

    Raises:
        ModelLoadError: `model_dir` is not a loadable Q-Face model folder.
        FileExistsError: `output_dir` holds an export already and `overwrite` is False.
        OnnxExportError: the model cannot be exported (attention / hidden-state outputs asked by its config, no
            exporter packages) or the graph does not reproduce the torch model within `atol`.
    """
    from ..model.model_loading_qface import load_qface_model

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    target = output_dir / ONNX_WEIGHTS_NAME
    if target.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "an export is there already (--overwrite replaces it)", str(target))
    if output_dir.exists() and output_dir.resolve() == model_dir.resolve():
        raise OnnxExportError(f"{output_dir}: the export must go to another folder than the model's")
    if is_onnx_model_folder(model_dir):
        raise OnnxExportError(f"{model_dir}: an ONNX export already; export from the torch model's folder")
    check_output_folder(output_dir, "OUTPUT")  # before the model loads and the graph is traced (seconds)
    model = load_qface_model(model_dir).eval()
    check_exportable(model)
    # Written in a scratch folder next to the target and moved in at the end: a failed export leaves no half folder.
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with (
        write_errors(output_dir, "ONNX export"),  # a full disk: one line naming OUTPUT, the scratch folder removed
        tempfile.TemporaryDirectory(prefix=".qface-onnx-", dir=output_dir.parent) as scratch,
    ):
        scratch = Path(scratch)
        export_onnx_graph(model, scratch / ONNX_WEIGHTS_NAME, opset_version=opset_version)
        write_config(model_dir, scratch / CONFIG_NAME)
        write_preprocessor(model_dir, model.config, scratch)
        write_card(model_dir, model, scratch, output_dir.name)
        differences = verify_export(model, scratch, atol) if verify else {}
        output_dir.mkdir(parents=True, exist_ok=True)
        for path in scratch.iterdir():
            shutil.move(str(path), output_dir / path.name)
    return OnnxExport(output_dir, differences)


def write_config(model_dir: Path, path: Path) -> None:
    """The model's `config.json` without the keys that point at Python code beside the weights (there is none here),
    so that `pipeline(model=folder)` loads the packaged Q-Face code instead of looking for remote code."""
    data = json.loads((model_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    for key in CODE_CONFIG_KEYS:
        data.pop(key, None)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_preprocessor(model_dir: Path, config, folder: Path) -> None:
    source = model_dir / "preprocessor_config.json"
    if source.is_file():
        shutil.copy2(source, folder / source.name)
    else:  # a model saved without one: Q-Face's processor is fully defined by the config
        from ..model.image_processing_qface import build_image_processor

        build_image_processor(config).save_pretrained(folder)


ONNX_CARD_SECTION = """

## ONNX export

This folder is the ONNX export of the model (`qface export onnx`): `model.onnx` takes `pixel_values`
`(batch, 3, {height}, {width})` float32 and returns {outputs}. It runs with onnxruntime alone:

```bash
qface analyze photos/ --model {name} --output faces.jsonl
```

```python
from transformers import pipeline
import modeling_qface  # registers the face-analysis pipeline
pipe = pipeline("face-analysis", model="{name}")
```

Attention maps and hidden states are not in the graph; use the torch model (`model.safetensors`) for them.
"""


def write_card(model_dir: Path, model, folder: Path, name: str) -> None:
    """The source folder's model card (generated when it has none) with a section on the ONNX export."""
    source = model_dir / "README.md"
    if source.is_file():
        text = source.read_text(encoding="utf-8")
    else:
        from ..hub.card import EVALUATION_FILE, build_model_card, read_json, read_training_config

        card = build_model_card(
            model.config,
            name,
            sum(p.numel() for p in model.parameters()),
            evaluation=read_json(model_dir / EVALUATION_FILE),
            training_config=read_training_config(model_dir),
        )
        text = str(card)
    size = model.config.backbone_config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    outputs = ", ".join(f"`{field}`" for field in onnx_output_names(model.config))
    section = ONNX_CARD_SECTION.format(height=height, width=width, outputs=outputs, name=name)
    (folder / "README.md").write_text(text.rstrip("\n") + section, encoding="utf-8")


# -------------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qface export",
        description="Export a saved Q-Face model for fast inference where it is deployed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the examples' lines as written
    )
    parser.add_argument("format", choices=FORMATS, help="the export format")
    parser.add_argument(
        "model",
        help=f"folder of a saved Q-Face model (e.g. runs/qface/final), or {DEFAULT_MODEL_ALIAS!r}: the demo model "
        "shipped with the package",
    )
    parser.add_argument("output", help="folder to write: model.onnx, config.json, preprocessor_config.json, README.md")
    parser.add_argument("--overwrite", action="store_true", help="replace an export already in OUTPUT")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help="largest difference to the torch model allowed in the check after export (default: %(default)s)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch check")
    return parser


def model_folder(model: str) -> Path:
    """MODEL of the command line as a folder: `default` is the demo model shipped with the package."""
    if model == DEFAULT_MODEL_ALIAS:
        return Path(str(importlib.resources.files("modeling_qface") / "demo_model"))
    return Path(model)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export = export_onnx(
            model_folder(args.model),
            args.output,
            overwrite=args.overwrite,
            verify=not args.no_verify,
            atol=args.atol,
            opset_version=args.opset,
        )
    except (
        OnnxExportError,
        ModelLoadError,
        FileExistsError,
        OutputWriteError,
    ) as error:  # bad input: one line, exit status 2
        print(f"qface export: error: {describe(error)}", file=sys.stderr)
        return 2
    print(f"ONNX export of {model_folder(args.model)} written to {export.folder}")
    if export.max_abs_difference:
        worst = max(export.max_abs_difference.values())
        print(
            f"  checked with onnxruntime at batch sizes {list(VERIFY_BATCH_SIZES)}: every output within {worst:.1e} "
            f"of torch (largest per output: "
            + ", ".join(f"{k} {v:.1e}" for k, v in export.max_abs_difference.items())
            + ")"
        )
    return 0


__all__ = ["OnnxExport", "OnnxExportError", "QFaceOnnxWrapper", "export_onnx", "export_onnx_graph", "verify_export"]


if __name__ == "__main__":
    sys.exit(main())
