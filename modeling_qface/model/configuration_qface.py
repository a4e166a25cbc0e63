# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Q-Face configuration: the encoder, the multi-stage fusion, the label-query decoder and the task set."""

from __future__ import annotations

import copy
import keyword
import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, ViTMAEConfig

# RAF-DB basic expression classes, in the order of the official label ids 1..7 (id k -> index k - 1).
EXPRESSION_NAMES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")

# The union of BP4D's 12 and DISFA's 8 coded action units.
AU_NAMES = tuple(f"AU{n}" for n in (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 23, 24, 25, 26))

# CelebA's 40 attributes in the column order of `list_attr_celeba.txt`.
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

# Head pose angles in degrees, in the 300W-LP / AFLW2000 convention (that of Hopenet / 6DRepNet / WHENet and of
# published head-pose numbers), seen in the image: yaw > 0 turns the nose towards the image's left (the subject's
# right), pitch > 0 raises the face (looking up), roll > 0 turns the face clockwise in the image (the top of the
# head towards the image's right). A horizontal flip negates yaw and roll and keeps pitch.
HEAD_POSE_NAMES = ("yaw", "pitch", "roll")

# The 5-point template of the standard ArcFace / insightface 112 x 112 crop (image-left eye, image-right eye, nose
# tip, image-left and image-right mouth corners).
ARCFACE_TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


def _mirror_symmetric(template, side: float) -> list[list[float]]:
    """The template averaged with its mirror image (x -> side - x, left and right points swapped)."""
    mirrored = [(side - x, y) for x, y in (template[1], template[0], template[2], template[4], template[3])]
    return [[round((a + b) / 2, 4) for a, b in zip(p, q)] for p, q in zip(template, mirrored)]


# The Q-Face crop's default template is ArcFace's made exactly mirror-symmetric (it moves no point by more than
# 0.2 px): ArcFace's eye line is tilted by 0.32 degrees, so the crop of a mirrored face would not be the mirrored
# crop, and a flip would change the crop's in-plane angle (and the reported roll) by 0.64 degrees. The margin of 0.15
# widens the field of view by 15 % of the side on each side: ArcFace's crop runs from mid-forehead to just below the
# mouth and often cuts the chin; with the margin the whole face shows, with forehead and chin.
DEFAULT_FACE_CROP = {"template": _mirror_symmetric(ARCFACE_TEMPLATE_112, 112.0), "template_size": 112.0, "margin": 0.15}

TASK_KINDS = ("multiclass", "multilabel", "regression", "distribution")

_TASK_KEYS = {
    "name",
    "kind",
    "labels",
    "loss_weight",
    "query_group",
    "scale",
    "units",
    "min_value",
    "max_value",
    "sigma",
    "l1_weight",
    "pos_weight",
}


def default_tasks() -> list[dict]:
    """The five tasks of the paper, in the order their queries are laid out.

    The age loss is DLDL-v2's (Gao et al., IJCAI 2018): KL + 1 x L1 in years, so its `scale` is 1 (the L1 term is
    divided by `scale`; 10 would weight it 0.1 per year)."""
    return [
        {"name": "expression", "kind": "multiclass", "labels": list(EXPRESSION_NAMES)},
        {"name": "au", "kind": "multilabel", "labels": list(AU_NAMES)},
        {"name": "attributes", "kind": "multilabel", "labels": list(ATTRIBUTE_NAMES)},
        {
            "name": "age",
            "kind": "distribution",
            "labels": ["age"],
            "units": "years",
            "min_value": 0,
            "max_value": 100,
            "sigma": 2.0,
            "scale": 1.0,
            "l1_weight": 1.0,
        },
        {"name": "head_pose", "kind": "regression", "labels": list(HEAD_POSE_NAMES), "units": "degrees", "scale": 30.0},
    ]


def normalize_task(task: dict, where: str = "tasks") -> dict:
    """Checks one task description and fills in its defaults.

    A task is a dict with:
        name (`str`): a Python identifier, unique in the model; forward takes `{name}_labels`.
        kind (`str`): one of `multiclass` (one label per sample, cross-entropy), `multilabel` (independent binary
            labels, BCE), `regression` (one real value per label, L1), `distribution` (one real value predicted as
            a distribution over integer bins `min_value..max_value`, DLDL loss: KL to a Gaussian of std `sigma` plus
            `l1_weight` x L1 on the expectation).
        labels (`list[str]`): one learnable query per label. A `distribution` task has exactly one label.
        loss_weight (`float`, defaults to 1.0): weight of the task's loss in the total loss.
        query_group (`int`, defaults to 0): queries attend (in self-attention) only to queries of their own or an
            earlier group, so tasks added to a trained model (a later group) never change the outputs of old ones.
        scale (`float`, defaults to 1.0): regression/distribution only. Typical magnitude of the target; the
            regression head predicts `scale * linear(query)` and L1 terms are divided by `scale`.
        units (`str`, defaults to ""): units of regression/distribution values, for documentation and output.
        min_value, max_value (`int`): distribution only, the first and last bin.
        sigma (`float`, defaults to 2.0): distribution only, std of the Gaussian label distribution.
        l1_weight (`float`, defaults to 1.0): distribution only, weight of the L1 term on the expectation.
        pos_weight (`list[float]`, optional): multilabel only, BCE positive weight per label.
    """
    if not isinstance(task, dict):
        raise TypeError(f"{where}: expected a dict describing a task, got {type(task).__name__}")
    unknown = set(task) - _TASK_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TASK_KEYS)}")
    name = task.get("name")
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{where}.name: expected a Python identifier, got {name!r}")
    where = f"{where}[{name!r}]"
    kind = task.get("kind")
    if kind not in TASK_KINDS:
        raise ValueError(f"{where}.kind: expected one of {TASK_KINDS}, got {kind!r}")
    labels = task.get("labels")
    if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ValueError(f"{where}.labels: expected a non-empty list of label names, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}.labels: label names must be unique, got {list(labels)}")
    if kind == "multiclass" and len(labels) < 2:
        raise ValueError(f"{where}.labels: a multiclass task needs at least 2 classes, got {len(labels)}")
    if kind == "distribution" and len(labels) != 1:
        raise ValueError(f"{where}.labels: a distribution task predicts one value, got {len(labels)} labels")

    out = {"name": name, "kind": kind, "labels": list(labels)}
    out["loss_weight"] = _number(task.get("loss_weight", 1.0), f"{where}.loss_weight", minimum=0.0)
    group = task.get("query_group", 0)
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
        raise ValueError(f"{where}.query_group: expected an int >= 0, got {group!r}")
    out["query_group"] = group
    if kind in ("regression", "distribution"):
        out["scale"] = _number(task.get("scale", 1.0), f"{where}.scale", minimum=0.0, strict=True)
        out["units"] = str(task.get("units", ""))
    elif "scale" in task or "units" in task:
        raise ValueError(f"{where}: `scale`/`units` apply to regression and distribution tasks only")
    if kind == "distribution":
        lo, hi = task.get("min_value"), task.get("max_value")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or hi <= lo:
            raise ValueError(f"{where}: expected int min_value < max_value, got min_value={lo!r} max_value={hi!r}")
        out["min_value"], out["max_value"] = lo, hi
        out["sigma"] = _number(task.get("sigma", 2.0), f"{where}.sigma", minimum=0.0, strict=True)
        out["l1_weight"] = _number(task.get("l1_weight", 1.0), f"{where}.l1_weight", minimum=0.0)
    elif any(k in task for k in ("min_value", "max_value", "sigma", "l1_weight")):
        raise ValueError(f"{where}: `min_value`/`max_value`/`sigma`/`l1_weight` apply to distribution tasks only")
    if kind == "multilabel":
        pos_weight = task.get("pos_weight")
        if pos_weight is not None:
            if not isinstance(pos_weight, (list, tuple)) or len(pos_weight) != len(labels):
                raise ValueError(
                    f"{where}.pos_weight: expected {len(labels)} numbers (one per label), got {pos_weight!r}"
                )
            pos_weight = [_number(w, f"{where}.pos_weight", minimum=0.0, strict=True) for w in pos_weight]
        out["pos_weight"] = pos_weight
    elif task.get("pos_weight") is not None:
        raise ValueError(f"{where}.pos_weight: applies to multilabel tasks only")
    return out


def _is_finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _number(value, where: str, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{where}: expected a number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


@strict
class QFaceConfig(PreTrainedConfig):
    r"""
    Configuration of a [`QFaceModel`]: a ViT-MAE encoder whose hidden states from several blocks are fused into one
    memory, read by learnable label queries through a transformer decoder, with one head per task.

    Args:
        backbone_config (`ViTMAEConfig` or `dict`, *optional*):
            The encoder. Defaults to ViT-B/16 at 224 px. `mask_ratio` is always forced to 0.0: Q-Face reads every
            patch, in order.
        fusion_layers (`list[int]`, *optional*, defaults to `(4, 8, 12)`):
            1-based indices of the encoder blocks whose outputs are fused (the paper's stages S4, S8, S12). Strictly
            increasing; the last must be the encoder's last block, whose output is taken after the final LayerNorm.
        d_model (`int`, *optional*, defaults to 256):
            Width of the fused memory, the label queries and the decoder.
        decoder_layers (`int`, *optional*, defaults to 6):
            Number of decoder layers (cross-attention, self-attention, feed-forward).
        decoder_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads in each decoder attention; must divide `d_model`.
        decoder_ffn_dim (`int`, *optional*, defaults to 1024):
            Hidden size of the decoder feed-forward network.
        decoder_dropout (`float`, *optional*, defaults to 0.0):
            Dropout after attention and feed-forward blocks of the decoder.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the decoder's attention probabilities.
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth of the encoder, in training only: each block's attention and MLP branches are dropped
            for a whole sample with a probability rising linearly from 0 at the first block to `drop_path_rate` at
            the last (and the kept ones scaled by 1 / keep), as in MAE fine-tuning (0.1) and Faceptor (0.2). Off in
            `eval()`; 0 changes nothing.
        activation_function (`str`, *optional*, defaults to `"gelu"`):
            Activation of the decoder feed-forward network.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the fusion and decoder LayerNorms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of projections, label queries and stage embeddings.
        face_crop (`dict`, *optional*):
            The Q-Face crop, the only thing the model ever sees (data preparation, training, evaluation and the
            pipeline all cut faces with it; see `face_alignment_qface.FaceCrop`): `template` (5 `[x, y]` points in
            `LANDMARK_NAMES` order, in a `template_size` square), `template_size` and `margin` (extra field of view
            on each side, a fraction of the template square). The crop's side is the encoder's `image_size`.
            Defaults to the ArcFace template, made mirror-symmetric, with a 0.15 margin.
        tasks (`list[dict]`, *optional*):
            The task set, as data (see [`normalize_task`] for the keys). Defaults to the paper's five tasks:
            `expression` (7 RAF-DB classes), `au` (15 AUs, BP4D + DISFA), `attributes` (40 CelebA attributes),
            `age` (distribution over 0..100 years) and `head_pose` (yaw, pitch, roll in degrees).

    Example:

    ```python
    >>> from modeling_qface import QFaceConfig, QFaceModel
    >>> config = QFaceConfig(tasks=[t for t in QFaceConfig().tasks if t["name"] != "au"])  # drop a task
    >>> model = QFaceModel(config)
    ```"""

    model_type = "qface"
    sub_configs_defaults = {"backbone_config": ViTMAEConfig}
    # Trainer's `predictions` keep the per-task answers only (also when the config asks for hidden states/attentions).
    keys_to_ignore_at_inference = [
        "age_distribution",
        "task_losses",
        "hidden_states",
        "attentions",
        "cross_attentions",
        "stage_usage",
    ]

    backbone_config: dict | PreTrainedConfig | None = None
    fusion_layers: list[int] | tuple[int, ...] = (4, 8, 12)
    d_model: int = 256
    decoder_layers: int = 6
    decoder_attention_heads: int = 8
    decoder_ffn_dim: int = 1024
    decoder_dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    drop_path_rate: float | int = 0.0
    activation_function: str = "gelu"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    face_crop: dict | None = None
    tasks: list[dict] | tuple[dict, ...] | None = None

    def __post_init__(self, **kwargs):
        if "backbone" in kwargs:
            raise ValueError("QFaceConfig has no `backbone` field: pass the encoder as `backbone_config`.")
        if isinstance(self.backbone_config, dict):
            encoder = dict(self.backbone_config)
            model_type = encoder.pop("model_type", ViTMAEConfig.model_type)
            if model_type != ViTMAEConfig.model_type:
                raise ValueError(f"backbone_config.model_type: expected 'vit_mae', got {model_type!r}")
            self.backbone_config = ViTMAEConfig(**encoder)
        elif self.backbone_config is not None and not isinstance(self.backbone_config, ViTMAEConfig):
            raise ValueError(
                f"backbone_config: expected a ViTMAEConfig or dict, got {type(self.backbone_config).__name__}"
            )
        super().__post_init__(**kwargs)
        self._drop_registered_custom_pipelines()
        # Never keep a caller's mask_ratio: a masked encoder silently drops 75 % of the patches.
        self.backbone_config.mask_ratio = 0.0
        self.fusion_layers = list(self.fusion_layers)
        self.face_crop = {**copy.deepcopy(DEFAULT_FACE_CROP), **(self.face_crop or {})}
        tasks = default_tasks() if self.tasks is None else copy.deepcopy(list(self.tasks))
        self.tasks = [normalize_task(t, f"tasks[{i}]") for i, t in enumerate(tasks)]

    def _drop_registered_custom_pipelines(self) -> None:
        """Leaves out of a loaded config the `custom_pipelines` entries of tasks this process has registered.

        An exported folder names its pipeline code in `custom_pipelines` (`face-analysis`), and transformers'
        `pipeline()` then demands `trust_remote_code=True` to run the folder's copy of that code, even where this
        package is installed and has registered the same task. Without the entry, the registered (installed) code
        runs; where the package is not installed nothing registers the task, the entry stays and the folder's code
        runs with `trust_remote_code=True`. The export path writes the entry again (`hub.export.add_pipeline_code`).
        """
        entries = getattr(self, "custom_pipelines", None)
        if not entries:
            return
        from transformers.pipelines import PIPELINE_REGISTRY  # here: the config module stays light to import

        kept = {task: entry for task, entry in entries.items() if task not in PIPELINE_REGISTRY.supported_tasks}
        if kept:
            self.custom_pipelines = kept
        else:
            del self.custom_pipelines

    def validate_fusion_layers(self):
        depth = self.backbone_config.num_hidden_layers
        layers = self.fusion_layers
        if not layers or any(not isinstance(i, int) or isinstance(i, bool) for i in layers):
            raise ValueError(f"fusion_layers: expected a non-empty list of block indices, got {layers!r}")
        if any(b <= a for a, b in zip(layers, layers[1:])) or layers[0] < 1:
            raise ValueError(f"fusion_layers: expected strictly increasing indices >= 1, got {layers}")
        if layers[-1] != depth:
            raise ValueError(
                f"fusion_layers: the last fused block must be the encoder's last block ({depth}, so its final "
                f"LayerNorm is used), got {layers}; to fuse shallower blocks only, lower "
                "backbone_config.num_hidden_layers"
            )

    def validate_decoder(self):
        for name in ("d_model", "decoder_layers", "decoder_attention_heads", "decoder_ffn_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.d_model % 4:
            raise ValueError(f"d_model: expected a multiple of 4 (2-D sine-cosine positions), got {self.d_model}")
        if self.d_model % self.decoder_attention_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by decoder_attention_heads ({self.decoder_attention_heads})"
            )
        for name in ("decoder_dropout", "attention_dropout", "drop_path_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")

    def validate_face_crop(self):
        crop = self.face_crop
        unknown = sorted(set(crop) - set(DEFAULT_FACE_CROP))
        if unknown:
            raise ValueError(f"face_crop: unknown key(s) {unknown}; allowed: {sorted(DEFAULT_FACE_CROP)}")
        points = crop["template"]
        if (
            not isinstance(points, (list, tuple))
            or len(points) != 5
            or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points)
            or not all(_is_finite_number(v) for p in points for v in p)
        ):
            raise ValueError(f"face_crop.template: expected 5 [x, y] points, got {points!r}")
        crop["template"] = [[float(v) for v in p] for p in points]
        crop["template_size"] = _number(crop["template_size"], "face_crop.template_size", minimum=0.0, strict=True)
        margin = crop["margin"]
        if not _is_finite_number(margin) or not 0.0 <= margin < 2.0:
            raise ValueError(f"face_crop.margin: expected a fraction of the template square in [0, 2), got {margin!r}")
        crop["margin"] = float(margin)

    def validate_tasks(self):
        if not self.tasks:
            raise ValueError("tasks: expected at least one task")
        names = [t["name"] for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tasks: task names must be unique, {duplicates} appear more than once")

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    def get_task(self, name: str) -> dict:
        for task in self.tasks:
            if task["name"] == name:
                return task
        raise KeyError(f"no task named {name!r}; this model's tasks are {self.task_names}")


__all__ = [
    "ARCFACE_TEMPLATE_112",
    "ATTRIBUTE_NAMES",
    "AU_NAMES",
    "DEFAULT_FACE_CROP",
    "EXPRESSION_NAMES",
    "HEAD_POSE_NAMES",
    "TASK_KINDS",
    "QFaceConfig",
    "default_tasks",
    "normalize_task",
]
