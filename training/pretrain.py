# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""MAE pretraining of Q-Face's encoder on unlabelled face images, with Accelerate (works offline).

    python -m modeling_qface.training.pretrain --data faces/ --preset qface-small --output-dir runs/mae-small --epochs 100
    python -m modeling_qface.training.pretrain --config pretrain-tiny --data faces/ --output-dir runs/mae-tiny   # a recipe + flags
    accelerate launch -m modeling_qface.training.pretrain --config pretrain-base --source celeba --root /data/CelebA ...

The output folder is a `ViTMAEForPreTraining` checkpoint (safetensors) plus the image processor, ready for
`QFaceModel.from_pretrained_backbone(output_dir, config)`, with `pretrain_config.json` (options, resolved values,
package versions), `train_log.jsonl` (step, loss, lr, images/s) and `reconstruction.png`. It is written to
`<output_dir>.partial` and renamed at the end, so `output_dir` is either complete or absent.

Every `--save-every` optimizer steps the run writes a resumable checkpoint to `<output_dir>.partial/checkpoints/`
(`modeling_qface.training.checkpointing`: model, optimizer, scheduler, the python / numpy / torch RNG states, the position in the
data order, the step; written to a temporary folder and renamed, the last two kept). A killed run continues with
`--resume` (the last checkpoint; `--resume auto`: only if there is one; `--resume PATH`: that one) and ends with the
same weights, bit for bit, as an uninterrupted one. A run without `--resume` refuses to start over an interrupted
run's checkpoints unless `--overwrite-output-dir` says to. The checkpoints are deleted once the model is published.

Options come from dataclass defaults, then a YAML recipe (`--config`: a path or a name in `configuration/`), then
command-line flags; a flag replaces the recipe's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import datasets
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm
from transformers import ViTMAEConfig, ViTMAEForPreTraining, get_cosine_schedule_with_warmup

from modeling_qface import QFaceConfig, load_preset
from modeling_qface.configuration import PRESET_DIR
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.model.modeling_qface import init_vit_mae_embeddings
from modeling_qface.outputs.writers import strict_json

from .checkpointing import (
    TRAINER_STATE,
    checkpoint_root,
    list_checkpoints,
    load_checkpoint,
    remove_partial_checkpoints,
    resolve_resume,
    save_checkpoint,
)
from .data import load_source
from .mae_data import (
    BadImageError,
    DatasetImages,
    EpochBatchSampler,
    ImageFiles,
    MaeImageDataset,
    ProcessorCollator,
    RandomResizedCropFlip,
    UnreadableImages,
    check_images,
    find_image_files,
    load_rgb,
)
from .mae_figure import reconstruct, save_reconstruction_figure

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "qface-small"
DECODER_FIELDS = (
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_num_attention_heads",
    "decoder_intermediate_size",
)
# Options that name the same thing: a flag for one of them drops the recipe's value for the others.
EXCLUSIVE_OPTIONS = (("data", "source"), ("data", "root"), ("preset", "model_config"))
# Parameters left out of weight decay besides biases and norms (MAE: no decay on tokens and position embeddings).
NO_DECAY_NAMES = ("cls_token", "mask_token", "position_embeddings", "decoder_pos_embed")
LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "pretrain_config.json"
FIGURE_FILE = "reconstruction.png"
# Checkpoints kept in `<output_dir>.partial/checkpoints` (the newest ones).
KEEP_CHECKPOINTS = 2
# Options a resumed run may change: where and how it runs, not what it computes (see `read_checkpoint_state`).
RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "resume",
        "save_every",
        "num_workers",
        "cpu",
        "mixed_precision",
        "skip_bad_images",
        "log_every",
        "num_reconstructions",
    }
)


@dataclass
class PretrainOptions:
    """Every option of a pretraining run; field names are the YAML keys, `--flag-names` the CLI flags."""

    output_dir: str | None = None
    overwrite_output_dir: bool = False
    # data: exactly one of `data` (image folder or save_to_disk folder) and `source` + `root`
    data: str | None = None
    source: str | None = None
    root: str | None = None
    split: str = "train"
    image_column: str = "image"
    skip_bad_images: bool = False
    # checkpoints: every `save_every` optimizer steps (0 = none); `resume`: "latest", "auto" or a checkpoint folder
    save_every: int = 500
    resume: str | None = None
    # model: the encoder of `preset` or of `model_config` (a Q-Face or ViTMAE config JSON); default qface-small
    preset: str | None = None
    model_config: str | None = None
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_hidden_size: int | None = None
    decoder_num_hidden_layers: int | None = None
    decoder_num_attention_heads: int | None = None
    decoder_intermediate_size: int | None = None
    # optimisation
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = None
    base_learning_rate: float = 1.5e-4
    weight_decay: float = 0.05
    adam_betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = 0.05
    warmup_steps: int | None = None
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    cpu: bool = False
    seed: int = 0
    num_workers: int | None = None
    # augmentation
    augment: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)
    hflip_prob: float = 0.5
    # reporting
    log_every: int = 10
    num_reconstructions: int = 4

    def __post_init__(self):
        for spec in fields(self):
            setattr(self, spec.name, _coerce(spec.name, spec.type, getattr(self, spec.name)))
        if self.output_dir is None:
            raise ValueError("output_dir: required (--output-dir DIR)")
        if (self.data is None) == (self.source is None):
            raise ValueError(
                "give exactly one input: --data DIR (image folder or save_to_disk dataset) or --source NAME --root DIR"
            )
        if self.source is not None and self.root is None:
            raise ValueError(f"--source {self.source}: needs --root DIR (the dataset's top folder)")
        if self.preset is not None and self.model_config is not None:
            raise ValueError("give --preset or --model-config, not both")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio: expected a value in (0, 1), got {self.mask_ratio}")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError(f"mixed_precision: expected auto, no or bf16, got {self.mixed_precision!r}")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.save_every < 0:
            raise ValueError(f"save_every: expected 0 (no checkpoints) or a positive integer, got {self.save_every}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected a positive integer, got {self.max_steps}")
        if self.num_reconstructions < 0 or not 0.0 <= self.hflip_prob <= 1.0:
            raise ValueError(
                f"expected num_reconstructions >= 0 and 0 <= hflip_prob <= 1, got {self.num_reconstructions}, "
                f"{self.hflip_prob}"
            )
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale: expected 0 < min <= max <= 1, got {self.crop_scale}")


def _coerce(name: str, type_text: str, value):
    """`value` as the field's declared type (YAML reads `1e-3` as a string); ValueError naming the option."""
    if value is None:
        return None
    base = type_text.split(" | ")[0]
    try:
        if (base == "bool") != isinstance(value, bool):  # YAML reads unquoted no/yes/off as booleans
            raise TypeError
        if base == "bool":
            return value
        if base.startswith("tuple"):
            pair = tuple(float(v) for v in value)
            if len(pair) != 2:
                raise ValueError
            return pair
        if base == "int" and (isinstance(value, bool) or float(value) != int(float(value))):
            raise ValueError
        return {"int": lambda v: int(float(v)), "float": float, "str": str}[base](value)
    except (TypeError, ValueError):
        hint = " (quote YAML words such as no, yes, off)" if isinstance(value, bool) else ""
        raise ValueError(f"option {name}: expected {type_text}, got {value!r}{hint}") from None


OPTION_NAMES = frozenset(spec.name for spec in fields(PretrainOptions))


# ----------------------------------------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `pretrain` arguments, added to `parser` (e.g. a `qface pretrain` subparser) or to a new parser.

    No argument has a default: only flags that are given reach `options_from_args`, so they can override a recipe.
    """
    if parser is None:
        parser = argparse.ArgumentParser(prog="qface pretrain", description=__doc__.split("\n\n")[0])
    defaults = PretrainOptions.__dataclass_fields__

    def add(*flags: str, help: str, **kwargs):
        dest = flags[0].lstrip("-").replace("-", "_")
        default = defaults[dest].default if dest in defaults else None
        shown = f" (default: {default})" if default not in (None, dataclasses.MISSING) else ""
        parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, help=help + shown, **kwargs)

    boolean = argparse.BooleanOptionalAction
    add("--config", help="YAML recipe: a path, or a name in configuration/ such as pretrain-tiny")
    add("--output-dir", help="folder for the pretrained model (written atomically)")
    add("--overwrite-output-dir", action=boolean, help="replace an existing non-empty output folder")
    add("--data", help="image folder (searched recursively) or a datasets folder written by save_to_disk")
    add("--source", help="a Q-Face data source (modeling_qface.training.data.SOURCES), e.g. celeba; labels are ignored")
    add("--root", help="the --source dataset's top folder")
    add("--split", help="split of --source, or of a saved DatasetDict")
    add("--image-column", help="image column of a saved dataset")
    add("--skip-bad-images", action=boolean, help="leave unreadable images out (counted) instead of stopping")
    add("--save-every", type=int, help="optimizer steps between resumable checkpoints (0 = none)")
    add(
        "--resume",
        nargs="?",
        const="latest",
        metavar="latest|auto|PATH",
        help="continue from the last checkpoint (auto: only if there is one) or from the checkpoint folder PATH",
    )
    add("--preset", help=f"encoder geometry of a preset (default when no --model-config: {DEFAULT_PRESET})")
    add("--model-config", help="encoder geometry from a Q-Face or ViTMAE config JSON")
    add("--mask-ratio", type=float, help="share of patches hidden from the encoder")
    add("--norm-pix-loss", action=boolean, help="regress per-patch normalised pixels")
    for name in DECODER_FIELDS:
        what = name.removeprefix("decoder_")
        add(f"--{name.replace('_', '-')}", type=int, help=f"MAE decoder {what} (default: the config's)")
    add("--epochs", type=int, help="passes over the images (ignored with --max-steps)")
    add("--max-steps", type=int, help="optimizer steps to run")
    add("--batch-size", type=int, help="images per device per forward pass")
    add("--gradient-accumulation-steps", type=int, help="forward passes per optimizer step")
    add("--learning-rate", type=float, help="peak learning rate (default: base lr x effective batch / 256)")
    add("--base-learning-rate", type=float, help="MAE's base learning rate for an effective batch of 256")
    add("--weight-decay", type=float, help="AdamW weight decay (not on biases, norms, tokens, positions)")
    add("--adam-betas", type=float, nargs=2, metavar=("BETA1", "BETA2"), help="AdamW betas")
    add("--warmup-ratio", type=float, help="share of the steps with linear warmup")
    add("--warmup-steps", type=int, help="warmup steps (replaces --warmup-ratio)")
    add("--max-grad-norm", type=float, help="gradient clipping norm (0 = no clipping)")
    add("--mixed-precision", choices=("auto", "no", "bf16"), help="auto = bf16 on a bf16 GPU, no on CPU")
    add("--cpu", action=boolean, help="train on CPU even when a GPU is present")
    add("--seed", type=int, help="seed of weights, masks, shuffling and augmentation")
    add("--num-workers", type=int, help="DataLoader workers (default: 0 on CPU, min(8, cores) on GPU)")
    add("--augment", action=boolean, help="random resized crop + horizontal flip")
    add("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="crop area range, share of the image")
    add("--hflip-prob", type=float, help="probability of a horizontal flip")
    add("--log-every", type=int, help="optimizer steps per train_log.jsonl line")
    add("--num-reconstructions", type=int, help="images in reconstruction.png (0 = no figure)")
    return parser


def read_recipe(path_or_name: str | os.PathLike) -> dict:
    """The options of a YAML recipe (keys are option names; `-` or `_`), checked against `PretrainOptions`."""
    path = Path(path_or_name)
    if not path.is_file():
        named = PRESET_DIR / f"{path_or_name}.yaml"
        if not named.is_file():
            available = sorted(p.stem for p in PRESET_DIR.glob("pretrain-*.yaml"))
            raise FileNotFoundError(f"recipe not found: {path_or_name} (not a file, nor one of {available})")
        path = named
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option: value, got {type(values).__name__}")
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - OPTION_NAMES)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; expected some of {sorted(OPTION_NAMES)}")
    return values


def options_from_args(args: argparse.Namespace) -> PretrainOptions:
    """Defaults < recipe (`args.config`) < the flags given; keys of `args` that are not options are ignored."""
    given = {key: value for key, value in vars(args).items() if key in OPTION_NAMES}
    values = read_recipe(args.config) if getattr(args, "config", None) else {}
    for group in EXCLUSIVE_OPTIONS:
        if any(key in given for key in group):
            for key in group:
                values.pop(key, None)
    return PretrainOptions(**{**values, **given})


def main(argv: list[str] | None = None) -> int:
    """`qface pretrain`: prints the output folder; bad options or input end with a one-line error and status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    try:
        output_dir = pretrain(options_from_args(parser.parse_args(argv)))
    except (ValueError, OSError) as error:  # bad options, data or output folder (a DataFormatError is a ValueError)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(output_dir)
    return 0


# ----------------------------------------------------------------------------------------------- model
def encoder_config(options: PretrainOptions) -> QFaceConfig:
    """The Q-Face config whose encoder is pretrained: a preset, or a Q-Face / ViTMAE config JSON."""
    if options.model_config is None:
        return load_preset(options.preset or DEFAULT_PRESET)
    path = Path(options.model_config)
    data = json.loads(path.read_text())
    model_type = data.get("model_type")
    if model_type == "qface":
        return QFaceConfig.from_dict(data)
    if model_type == "vit_mae":
        # Only the encoder (and its image size, for the processor) is used; one fused stage makes a valid config.
        return QFaceConfig(backbone_config=data, fusion_layers=[data.get("num_hidden_layers", 12)])
    raise ValueError(f"{path}: model_type is {model_type!r}, expected 'qface' or 'vit_mae'")


def pretraining_config(config: QFaceConfig, options: PretrainOptions) -> ViTMAEConfig:
    """The `ViTMAEConfig` of the MAE: the Q-Face encoder's geometry with masking on and the decoder options."""
    values = config.backbone_config.to_dict()
    values.update(mask_ratio=options.mask_ratio, norm_pix_loss=options.norm_pix_loss)
    values.update({name: getattr(options, name) for name in DECODER_FIELDS if getattr(options, name) is not None})
    return ViTMAEConfig.from_dict(values)


def build_mae_model(config: ViTMAEConfig) -> ViTMAEForPreTraining:
    """A fresh `ViTMAEForPreTraining` with the fixed sin-cos position embeddings MAE needs.

    In transformers 5.24 a freshly built model has all-zero encoder and decoder position embeddings, CLS and mask
    tokens: `ViTMAEEmbeddings.initialize_weights` returns early once the patch projection is marked initialised,
    and `_init_weights` zeroes the decoder's. The position embeddings are frozen, so training never repairs them:
    the model would not know where any patch is.
    """
    model = ViTMAEForPreTraining(config)
    init_vit_mae_embeddings(model.vit.embeddings)
    with torch.no_grad():
        model.decoder.initialize_weights(model.vit.embeddings.patch_embeddings.num_patches)
    for name in ("vit.embeddings.position_embeddings", "decoder.decoder_pos_embed"):
        if not model.get_parameter(name)[:, 1:].any():
            raise RuntimeError(f"{name} is still all zero after initialisation; this transformers version changed")
    return model


def warn_if_decoder_dominates(model: ViTMAEForPreTraining) -> None:
    """Logs a warning when the MAE decoder has more parameters than the encoder.

    Presets that set no decoder get ViTMAEConfig's (8 blocks of width 512, 25 M parameters), sized for ViT-L: on
    qface-small's 2.7 M encoder it made pretraining ten times slower (7.7 vs 80 images/s on a CPU thread).
    """
    encoder = sum(p.numel() for p in model.vit.parameters())
    decoder = sum(p.numel() for p in model.decoder.parameters())
    if decoder > encoder:
        logger.warning(
            "the MAE decoder (%.1f M parameters) is larger than the encoder (%.1f M) and will dominate the cost; "
            "consider --decoder-hidden-size / --decoder-num-hidden-layers (see configuration/pretrain-small.yaml)",
            decoder / 1e6,
            encoder / 1e6,
        )


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices and convolutions only (not biases, norms, tokens, positions)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or name.endswith(".bias") or any(part in name for part in NO_DECAY_NAMES)
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------- data
def open_image_source(options: PretrainOptions, face_crop: FaceCrop | None = None) -> ImageFiles | DatasetImages:
    """The images named by `--data` (an image folder or a `save_to_disk` folder) or `--source/--root/--split`; a
    source's faces are cut into `face_crop` (the encoder's Q-Face crop), as fine-tuning and inference cut them."""
    if options.source is not None:
        dataset = load_source(options.source, options.root, options.split, face_crop=face_crop)
        return DatasetImages(dataset, "image", f"{options.source}/{options.split}", path_column="photo")
    path = Path(options.data)
    if not any((path / marker).is_file() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
        return ImageFiles(find_image_files(path))
    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if options.split not in dataset:
            raise ValueError(f"{path}: no split {options.split!r}; splits are {sorted(dataset)}")
        dataset = dataset[options.split]
    return DatasetImages(dataset, options.image_column, str(path))


# ----------------------------------------------------------------------------------------------- output
def staging_dir(output_dir: Path) -> Path:
    """Where the run writes until it is complete."""
    return output_dir.with_name(output_dir.name + ".partial")


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir {output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output_dir {output_dir} exists and is not empty; pass --overwrite-output-dir to replace it"
        )


def publish(staging: Path, output_dir: Path) -> None:
    """Moves the finished run into place with renames (an existing `output_dir` is replaced)."""
    if output_dir.exists():
        previous = output_dir.with_name(output_dir.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(output_dir, previous)
        os.replace(staging, output_dir)
        shutil.rmtree(previous)
    else:
        os.replace(staging, output_dir)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    packages = ("qface", "torch", "transformers", "accelerate", "datasets", "safetensors", "numpy", "pillow", "pyyaml")
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----------------------------------------------------------------------------------------------- checkpoints
def options_record(options: PretrainOptions) -> dict:
    """The options as JSON values (tuples as lists), as `pretrain_config.json` and the checkpoints hold them."""
    return json.loads(json.dumps(dataclasses.asdict(options)))


def check_interrupted_run(staging: Path, resume_from: Path | None, overwrite: bool) -> None:
    """Refuses to start over the checkpoints of an interrupted run unless told to (they are its only product)."""
    checkpoints = list_checkpoints(staging)
    if resume_from is None and checkpoints and not overwrite:
        raise FileExistsError(
            f"{staging} holds the checkpoints of an interrupted run (the last at step {checkpoints[-1][0]}); pass "
            "--resume to continue it, or --overwrite-output-dir to delete them and start over"
        )


def read_checkpoint_state(folder: Path, options: PretrainOptions) -> dict:
    """The checkpoint's trainer state, once its run's options are known to be this run's (bar those that change
    where and how it runs, not what it computes): another batch size or seed would not continue that run."""
    path = folder / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {folder} is not a complete pretraining checkpoint (no {TRAINER_STATE})")
    state = json.loads(path.read_text())
    saved, current = state.get("options", {}), options_record(options)
    changed = [name for name in current if name not in RESUME_MAY_CHANGE and saved.get(name) != current[name]]
    if changed:
        differences = ", ".join(f"{name} {saved.get(name)!r} (now {current[name]!r})" for name in changed)
        raise ValueError(f"--resume {folder}: the run that wrote it had other options: {differences}")
    return state


def check_same_images(state: dict, num_images: int, folder: Path) -> None:
    """The data order a checkpoint continues is a permutation of the readable images: their number must match."""
    if state["num_images"] != num_images:
        raise ValueError(
            f"--resume {folder}: that run trained on {state['num_images']} readable images, this one finds "
            f"{num_images}; resume on the same images (or start over with --overwrite-output-dir)"
        )


def prepare_staging(staging: Path, resume_from: Path | None, step: int) -> None:
    """A resumed run keeps its folder (less unfinished checkpoint folders and log lines past `step`); a new run
    starts from an empty one, saying what it removes."""
    if resume_from is not None:
        remove_partial_checkpoints(staging)
        truncate_log(staging / LOG_FILE, step)
        return
    if staging.exists():
        logger.warning("removing %s, left by an earlier run that did not finish", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)


def truncate_log(path: Path, last_step: int) -> None:
    """Keeps the `train_log.jsonl` lines up to `last_step`: the resumed run logs the later steps again. A line that
    does not parse (cut short by the kill) is dropped."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text("".join(f"{line}\n" for line in kept))
    os.replace(temporary, path)


def gather_unreadable(accelerator: Accelerator, unreadable: UnreadableImages) -> dict[str, str]:
    """Every process's images that failed to decode, by name (collective: call on every process)."""
    merged = {}
    for found in gather_object([unreadable.found]):
        merged.update(found)
    return dict(sorted(merged.items()))


@dataclass
class Progress:
    """Where a run stands: optimizer steps done, the epoch, and the micro-batches each process took from it."""

    step: int = 0
    epoch: int = 0
    batches: int = 0


# ----------------------------------------------------------------------------------------------- training
def build_dataloader(options: PretrainOptions, source, indices: list[int], processor, on_gpu: bool):
    """Batches `{"pixel_values": (B, 3, H, W), "unreadable", "error"}` in a seeded order per epoch, augmented
    when `options.augment`; returns the DataLoader and its `EpochBatchSampler` (which says where an epoch starts)."""
    augment = RandomResizedCropFlip(options.crop_scale, flip_prob=options.hflip_prob) if options.augment else None
    num_workers = options.num_workers
    if num_workers is None:  # on CPU, workers would compete with the model for the few cores
        num_workers = min(8, os.cpu_count() or 1) if on_gpu else 0
    sampler = EpochBatchSampler(len(indices), options.batch_size, options.seed)
    loader = torch.utils.data.DataLoader(
        MaeImageDataset(source, indices, augment, options.skip_bad_images, options.seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=ProcessorCollator(processor),
        # Its own generator: starting an epoch must not draw from the global RNG, which a checkpoint restores.
        generator=torch.Generator().manual_seed(options.seed),
        persistent_workers=num_workers > 0,
        pin_memory=on_gpu,
    )
    return loader, sampler


def pretrain(options: PretrainOptions) -> Path:
    """Runs MAE pretraining as `options` say and returns the output folder (see the module docstring)."""
    output_dir = Path(options.output_dir).absolute()
    check_output_dir(output_dir, options.overwrite_output_dir)
    staging = staging_dir(output_dir)
    resume_from = resolve_resume(staging, options.resume)
    check_interrupted_run(staging, resume_from, options.overwrite_output_dir)
    saved_state = read_checkpoint_state(resume_from, options) if resume_from is not None else None
    on_gpu = torch.cuda.is_available() and not options.cpu
    mixed_precision = options.mixed_precision
    if mixed_precision == "auto":  # bf16 autocast is 10x slower than fp32 on this project's CPUs
        mixed_precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        cpu=options.cpu,
    )
    set_seed(options.seed)

    config = encoder_config(options)
    processor = build_image_processor(config)
    with accelerator.main_process_first():  # the first process builds a --source's Arrow cache, the others reuse it
        source = open_image_source(options, FaceCrop.from_config(config))
    indices, unreadable = check_images(source, options.skip_bad_images, accelerator.is_local_main_process)
    if saved_state is not None:
        check_same_images(saved_state, len(indices), resume_from)
    dataloader, sampler = build_dataloader(options, source, indices, processor, on_gpu)
    model = build_mae_model(pretraining_config(config, options))
    warn_if_decoder_dominates(model)
    effective_batch = options.batch_size * options.gradient_accumulation_steps * accelerator.num_processes
    learning_rate = options.learning_rate
    if learning_rate is None:  # MAE's linear scaling rule
        learning_rate = options.base_learning_rate * effective_batch / 256
    groups = parameter_groups(model, options.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=options.adam_betas)
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    steps_per_epoch = math.ceil(len(dataloader) / options.gradient_accumulation_steps)
    total_steps = options.max_steps or options.epochs * steps_per_epoch
    warmup_steps = options.warmup_steps
    if warmup_steps is None:
        warmup_steps = round(options.warmup_ratio * total_steps)
    # Stepped once per optimizer step by every process, so not handed to `prepare` (which steps it per process);
    # registered so that checkpoints hold it.
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    accelerator.register_for_checkpointing(scheduler)
    resolved = {
        "learning_rate": learning_rate,
        "effective_batch_size": effective_batch,
        "total_steps": total_steps,
        "warmup_steps": warmup_steps,
        "steps_per_epoch": steps_per_epoch,
        "num_images": len(indices),
        "unreadable_images": len(unreadable),
        "unreadable_examples": unreadable[:20],
        "mixed_precision": mixed_precision,
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "num_workers": dataloader.num_workers,
    }
    logger.info("MAE pretraining: %s", json.dumps(resolved))

    if accelerator.is_main_process:
        prepare_staging(staging, resume_from, saved_state["step"] if saved_state else 0)
    accelerator.wait_for_everyone()
    progress, drawn = Progress(), UnreadableImages()
    if resume_from is not None:
        trainer_state, position = load_checkpoint(accelerator, resume_from)
        progress = Progress(step=trainer_state["step"], **position)
        drawn = UnreadableImages(trainer_state["unreadable"])
        logger.info("resumed from %s: step %d, epoch %d", resume_from, progress.step, progress.epoch)
    recipe_yaml = yaml.safe_dump(options_record(options), sort_keys=False)
    run_state = {"options": options_record(options), "num_images": len(indices), "total_steps": total_steps}

    def checkpoint(progress: Progress) -> None:
        state = {**run_state, "unreadable": gather_unreadable(accelerator, drawn)}
        position = {"epoch": progress.epoch, "batches": progress.batches}
        save_checkpoint(accelerator, staging, progress.step, state, position, recipe_yaml, KEEP_CHECKPOINTS)

    started = time.perf_counter()
    log = TrainLog(accelerator, staging / LOG_FILE, total_steps, options.log_every, initial=progress.step)
    try:
        final_loss = train_loop(
            accelerator,
            model,
            optimizer,
            scheduler,
            dataloader,
            sampler,
            options,
            total_steps,
            log,
            progress,
            drawn,
            checkpoint,
        )
    finally:
        log.close()
    result = {
        "steps": total_steps,
        "final_loss": final_loss,
        "train_seconds": round(time.perf_counter() - started, 3),
        "resumed_from": str(resume_from) if resume_from else None,
    }
    count_unreadable(resolved, result, gather_unreadable(accelerator, drawn))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model).eval()
        figure = reconstruction_images(source, indices, options.num_reconstructions)
        write_outputs(staging, model, processor, figure, options, {"resolved": resolved, "result": result})
        shutil.rmtree(checkpoint_root(staging), ignore_errors=True)  # the published model supersedes them
        publish(staging, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return output_dir


def count_unreadable(resolved: dict, result: dict, found: dict[str, str]) -> None:
    """Adds the images that passed the up-front check but failed to decode to the record's counts, once each."""
    result["unreadable_when_decoded"] = len(found)
    if found:
        resolved["unreadable_images"] += len(found)
        resolved["unreadable_examples"] = (resolved["unreadable_examples"] + list(found.values()))[:20]
        logger.warning(
            "%d image(s) could not be decoded during training and were skipped (listed in %s)", len(found), CONFIG_FILE
        )


def reconstruction_images(source, indices: list[int], count: int) -> list:
    """The first `count` images of `indices` that decode (one that does not is left out of the figure)."""
    images = []
    for index in indices:
        if len(images) == count:
            break
        try:
            images.append(load_rgb(source, index))
        except BadImageError:
            continue
    return images


def write_outputs(folder: Path, model, processor, figure_images: list, options: PretrainOptions, record: dict) -> None:
    """The checkpoint, the processor, `reconstruction.png` (of `figure_images`, if any) and `pretrain_config.json`."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if figure_images:
        pixel_values = processor(figure_images, return_tensors="pt")["pixel_values"].to(model.device)
        panels, figure_loss = reconstruct(model, pixel_values, processor.image_mean, processor.image_std, options.seed)
        save_reconstruction_figure(panels, folder / FIGURE_FILE)
        record["result"]["figure_loss"] = figure_loss
    record = {"options": dataclasses.asdict(options), **record, "versions": package_versions()}
    (folder / CONFIG_FILE).write_text(strict_json(record, indent=1) + "\n")


class TrainLog:
    """The progress bar and `train_log.jsonl`: one line per `every` optimizer steps (and at the last step).

    A line's loss is the mean over the forward passes (and processes) since the previous line; images/s counts every
    process's images over the wall time of those steps, data loading included.
    """

    def __init__(self, accelerator: Accelerator, path: Path, total_steps: int, every: int, initial: int = 0):
        self.accelerator, self.total_steps, self.every = accelerator, total_steps, every
        self.file = path.open("a") if accelerator.is_main_process else None
        self.bar = tqdm(
            total=total_steps,
            initial=initial,
            desc="MAE pretraining",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        self.last_loss = float("nan")
        self._reset()

    def _reset(self):
        self.loss_sum, self.passes, self.images, self.start = 0.0, 0, 0, time.perf_counter()

    def add_pass(self, loss: torch.Tensor, batch_size: int) -> None:
        self.loss_sum += loss.detach().float()
        self.passes += 1
        self.images += batch_size * self.accelerator.num_processes

    def end_step(self, step: int, epoch: int, lr: float, grad_norm) -> None:
        self.bar.update(1)
        if step % self.every and step != self.total_steps:
            return
        loss = self.accelerator.reduce(self.loss_sum / self.passes, "mean").item()  # every process takes part
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step}: MAE loss is {loss}; lower the learning rate or check the images")
        record = {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "images_per_second": self.images / (time.perf_counter() - self.start),
            "grad_norm": None if grad_norm is None else float(grad_norm),
        }
        self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{record['images_per_second']:.1f}")
        if self.file is not None:
            self.file.write(strict_json(record) + "\n")
            self.file.flush()
        self.last_loss = loss
        self._reset()

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()


def train_loop(
    accelerator,
    model,
    optimizer,
    scheduler,
    dataloader,
    sampler,
    options,
    total_steps: int,
    log: TrainLog,
    progress: Progress,
    unreadable: UnreadableImages,
    checkpoint,
) -> float:
    """Runs optimizer steps from `progress` (updated as it goes) to `total_steps`, calling `checkpoint(progress)`
    every `options.save_every` steps; returns the last logged loss."""
    model.train()
    while progress.step < total_steps:
        # A resumed epoch skips what its processes took before the checkpoint (empty when that ended the epoch).
        sampler.start(progress.epoch, progress.batches * accelerator.num_processes)
        for batch in dataloader:
            progress.batches += 1
            if batch["error"] is not None:
                raise BadImageError(batch["error"])
            unreadable.add(batch["unreadable"])
            with accelerator.accumulate(model):
                loss = model(pixel_values=batch["pixel_values"]).loss
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and options.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
                optimizer.step()  # the prepared optimizer steps only at the end of an accumulation window
                optimizer.zero_grad()
            log.add_pass(loss, len(batch["pixel_values"]))
            if not accelerator.sync_gradients:
                continue
            learning_rate = scheduler.get_last_lr()[0]  # the rate this step used
            scheduler.step()
            progress.step += 1
            log.end_step(progress.step, progress.epoch, learning_rate, grad_norm)
            if progress.step == total_steps:
                return log.last_loss
            if options.save_every and progress.step % options.save_every == 0:
                checkpoint(progress)
        progress.epoch, progress.batches = progress.epoch + 1, 0
    return log.last_loss


if __name__ == "__main__":
    sys.exit(main())
