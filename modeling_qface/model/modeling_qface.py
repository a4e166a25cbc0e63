# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Q-Face: a ViT-MAE encoder, multi-stage feature fusion, a label-query decoder and one head per task.

Shapes: B = batch, N = patches per image, S = fused stages, Q = label queries, D = `config.d_model`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel, ViTMAEConfig, ViTMAEModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.vit_mae.modeling_vit_mae import ViTMAELayer, build_2d_sinusoidal_position_embedding
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs

from .configuration_qface import QFaceConfig, normalize_task
from .heads_qface import build_task_head, check_labels, output_fields, task_loss


class CheckpointError(Exception):
    """A checkpoint `QFaceModel.from_pretrained` cannot use as it is: weights that lack tensors of the model, or a
    corrupt weights file; the message names the checkpoint. Not a `ValueError` / `OSError` on purpose:
    `transformers.pipeline` takes those as "try the next model class" and buries the message in a list of
    tracebacks."""


@dataclass
class QFaceOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when labels are given):
        Sum over tasks of `loss_weight` x the task's loss, each averaged over the labels present in the batch.
    expression_logits (`torch.FloatTensor` of shape `(B, 7)`):
        Expression class logits, classes in `config.get_task("expression")["labels"]` order.
    au_logits (`torch.FloatTensor` of shape `(B, 15)`):
        Action unit occurrence logits (sigmoid gives the probability of each AU).
    attributes_logits (`torch.FloatTensor` of shape `(B, 40)`):
        CelebA attribute logits (sigmoid gives the probability of each attribute).
    age_distribution (`torch.FloatTensor` of shape `(B, 101)`):
        Probability of each age in years 0..100.
    age (`torch.FloatTensor` of shape `(B,)`):
        Expected age in years.
    head_pose (`torch.FloatTensor` of shape `(B, 3)`):
        Yaw, pitch and roll in degrees (sign convention in the README, "Head pose").
    extra_task_outputs (`dict[str, torch.FloatTensor]`, *optional*):
        Outputs of tasks other than the five defaults, named like the defaults (`{name}_logits`, `{name}`,
        `{name}_distribution`).
    task_losses (`dict[str, torch.FloatTensor]`, *optional*):
        Unweighted loss of each task that had labels in the batch.
    hidden_states (`tuple[torch.FloatTensor]`, *optional*, returned with `output_hidden_states=True`):
        The encoder's hidden states, as ViTMAE returns them: `num_hidden_layers + 1` tensors of shape `(B, 1 + N, E)`
        (E = `config.backbone_config.hidden_size`, CLS token first, patches in row-major order): the embedding output,
        then the output of each encoder block (before the encoder's final LayerNorm). With `output_hidden_states` a
        list of indices (negative ones count from the end), only those are returned and the others are `None`.
    attentions (`tuple[torch.FloatTensor]`, *optional*, returned with `output_attentions=True` under eager attention):
        The encoder's self-attention weights, one `(B, encoder heads, 1 + N, 1 + N)` tensor per encoder block, as
        ViTMAE returns them. Only eager attention computes them: under `sdpa` (the default) this field stays `None`;
        load or switch the model with `attn_implementation="eager"` to get them. The decoder's maps below come with
        every attention implementation.
    cross_attentions (`tuple[torch.FloatTensor]`, *optional*, returned with `output_attentions=True`):
        One `(B, heads, Q, S * N)` tensor per decoder layer: how much each label query attends to each fused token
        (the paper's Fig. 4 maps). Token `s * N + n` is patch `n` (row-major) of fused stage `s`.
    stage_usage (`dict[str, torch.FloatTensor]`, *optional*, returned with `output_attentions=True`):
        Per task, `(B, S)`: the share of cross-attention its queries give each fused stage, averaged over layers,
        heads and the task's queries; each row sums to 1 (the paper's Fig. 5).
    """

    loss: torch.FloatTensor | None = None
    expression_logits: torch.FloatTensor | None = None
    au_logits: torch.FloatTensor | None = None
    attributes_logits: torch.FloatTensor | None = None
    age_distribution: torch.FloatTensor | None = None
    age: torch.FloatTensor | None = None
    head_pose: torch.FloatTensor | None = None
    extra_task_outputs: dict[str, torch.FloatTensor] | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    stage_usage: dict[str, torch.FloatTensor] | None = None

    def field(self, name: str) -> torch.Tensor | None:
        """A task output by field name, whether it is a default field or an extra task's."""
        if name in self.__dataclass_fields__:
            return getattr(self, name)
        return (self.extra_task_outputs or {}).get(name)


def sincos_position_embedding_2d(height: int, width: int, dim: int, device, dtype) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (as in MAE) of shape `(height * width, dim)`, row-major."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    out_w = cols.reshape(-1, 1) * omega[None]
    out_h = rows.reshape(-1, 1) * omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1).to(dtype)


def select_hidden_states(
    hidden_states: tuple[torch.Tensor, ...], selection: bool | int | list[int] | None
) -> tuple[torch.Tensor | None, ...] | None:
    """`hidden_states` as `output_hidden_states` asks for them: `None` when it is `None`/`False`, all of them when
    it is `True`, and for an index or list of indices (negative ones count from the end) those, the others `None`."""
    if selection is None or selection is False:
        return None
    if selection is True:
        return tuple(hidden_states)
    count = len(hidden_states)
    indices = [selection] if isinstance(selection, int) else list(selection)
    keep = {i % count for i in indices if -count <= i < count}
    return tuple(h if i in keep else None for i, h in enumerate(hidden_states))


class QFaceEncoderLayer(ViTMAELayer):
    """A ViTMAE encoder block with stochastic depth ("drop path"), as MAE's fine-tuning recipe uses it: in training,
    each sample's attention branch and MLP branch are each zeroed with probability `drop_prob` before they are added
    back to the residual stream, the kept ones scaled by 1 / (1 - `drop_prob`) so the expectation is unchanged.

    It has `ViTMAELayer`'s submodules under the same names, so checkpoints load into either; with `drop_prob=0` or in
    eval mode it computes exactly what `ViTMAELayer` does (tests/test_modeling.py checks this bit for bit).

    hidden_states `(B, L, E)` -> `(B, L, E)`.
    """

    def __init__(self, config: ViTMAEConfig, drop_prob: float = 0.0):
        super().__init__(config)
        self.drop_prob = drop_prob

    def drop_path(self, branch: torch.Tensor) -> torch.Tensor:
        """branch `(B, ...)`: zeroed per sample with probability `drop_prob` in training, the rest rescaled."""
        if not self.training or self.drop_prob == 0.0:
            return branch
        keep = 1.0 - self.drop_prob
        mask = branch.new_empty((branch.shape[0],) + (1,) * (branch.dim() - 1)).bernoulli_(keep)
        return branch * mask / keep

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        # `ViTMAELayer.forward` (pre-norm attention, then MLP, each with dropout and a residual), with drop path.
        residual = hidden_states
        hidden_states, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = self.drop_path(self.dropout(hidden_states)) + residual
        residual = hidden_states
        hidden_states = self.mlp(self.layernorm_after(hidden_states))
        return self.drop_path(self.dropout(hidden_states)) + residual

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def build_encoder(config: ViTMAEConfig, drop_path_rate: float = 0.0) -> ViTMAEModel:
    """transformers' `ViTMAEModel` whose blocks are `QFaceEncoderLayer`s (the same weights, initialised as ViTMAE
    initialises its own), with stochastic depth at `drop_path_rate` (`set_drop_path`).

    The blocks are swapped right after construction, before any forward pass: ViTMAE records its hidden states with
    hooks that it installs on its blocks at the first call."""
    encoder = ViTMAEModel(config)
    for index, block in enumerate(encoder.layers):
        replacement = QFaceEncoderLayer(config)
        replacement.load_state_dict(block.state_dict())
        encoder.layers[index] = replacement
    # Marks the new blocks initialised by ViTMAE's scheme, so a model's later `post_init` leaves them alone; the
    # random draws are undone (and the values above restored), so a seeded model is what it was with ViTMAE's blocks.
    with torch.random.fork_rng(devices=[]):
        states = [{key: value.clone() for key, value in block.state_dict().items()} for block in encoder.layers]
        encoder.init_weights()
        for block, state in zip(encoder.layers, states):
            block.load_state_dict(state)
    set_drop_path(encoder, drop_path_rate)
    return encoder


def set_drop_path(encoder: ViTMAEModel, drop_path_rate: float) -> None:
    """Stochastic depth rising linearly over the encoder's depth (0 at the first block, `drop_path_rate` at the last),
    as MAE's fine-tuning recipe does, for an encoder made by `build_encoder`."""
    blocks = encoder.layers
    for index, block in enumerate(blocks):
        if not isinstance(block, QFaceEncoderLayer):
            raise TypeError(
                f"set_drop_path: block {index} is a {type(block).__name__}; build the encoder with build_encoder"
            )
        block.drop_prob = drop_path_rate * index / max(1, len(blocks) - 1)


class QFaceMultiStageFusion(nn.Module):
    """Fuses the patch tokens of several encoder stages into one decoder memory.

    Each stage gets its own LayerNorm + projection to `d_model`, a learnable stage embedding (so the decoder can tell
    the stages apart) and the shared 2-D position embedding; the stages are concatenated along the token axis.
    """

    def __init__(self, config: QFaceConfig):
        super().__init__()
        encoder_width = config.backbone_config.hidden_size
        num_stages = len(config.fusion_layers)
        self.norms = nn.ModuleList(nn.LayerNorm(encoder_width, eps=config.layer_norm_eps) for _ in range(num_stages))
        self.projections = nn.ModuleList(nn.Linear(encoder_width, config.d_model) for _ in range(num_stages))
        self.stage_embeddings = nn.Embedding(num_stages, config.d_model)

    def forward(self, stage_states: list[torch.Tensor], grid_size: tuple[int, int]) -> torch.Tensor:
        """stage_states: S tensors `(B, N, encoder_width)`, or `(B, 1 + N, encoder_width)` with the encoder's CLS token
        first (dropped here) -> memory `(B, S * N, D)`."""
        first = stage_states[0]
        num_patches = grid_size[0] * grid_size[1]
        skip = first.shape[1] - num_patches
        position = sincos_position_embedding_2d(
            *grid_size, self.stage_embeddings.embedding_dim, first.device, first.dtype
        )
        # Normalising and projecting all 1 + N tokens of a hidden state (CLS included, dropped afterwards) costs 1/197
        # more multiply-adds at ViT-B but no copy: the sliced `[:, 1:]` view is not contiguous, so LayerNorm and the
        # matrix product would each first copy it; the additions read the slice. (Adding stage and position embedding
        # in this order keeps every bit of the memory as it was; their pre-summed offset would not.)
        fused = [
            projection(norm(states))[:, skip:] + self.stage_embeddings.weight[s] + position
            for s, (states, norm, projection) in enumerate(zip(stage_states, self.norms, self.projections))
        ]
        return torch.cat(fused, dim=1)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """query `(B, H, Lq, d)`, key/value `(B, H, Lk, d)` -> output `(B, Lq, H, d)`, weights `(B, H, Lq, Lk)`."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class QFaceAttention(nn.Module):
    """Multi-head attention from label queries to a key/value sequence (memory tokens or queries).

    The four projections are separate `nn.Linear`s (the checkpoint layout); projections of the same input are run as
    one matrix product over their concatenated weights (`project`). At the decoder's sizes (66 queries x 256 wide per
    image) each product is small: on CPU every extra one costs a pass over its output to broadcast the bias and, with
    several threads, a synchronisation, and on a busy CPU the decoder's time follows its number of operations more
    than its multiply-adds (BENCHMARKS.md, "Inference efficiency"). The results are bit-identical to separate products.
    """

    def __init__(self, config: QFaceConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.decoder_attention_heads
        self.head_dim = config.d_model // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.is_causal = False
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.o_proj = nn.Linear(config.d_model, config.d_model)

    def project(self, states: torch.Tensor, names: str) -> tuple[torch.Tensor, ...]:
        """states `(B, L, D)` -> one `(B, H, L, head_dim)` tensor per projection named in `names` (`"q"`, `"k"`, `"v"`,
        e.g. `"kv"`), all from one matrix product. The results are strided views of that product, as attention
        kernels take them (SDPA without a copy); the weights are concatenated per call (a few hundred KiB, against
        the product's L x 3 x D x D multiply-adds), so training, loading and `.to()` need no cached copy."""
        layers = [getattr(self, f"{name}_proj") for name in names]
        if len(layers) == 1:
            projected = layers[0](states)
        elif any(type(layer) is not nn.Linear or layer.bias is None for layer in layers):
            # A projection replaced by a wrapper (an adapter, a quantised layer) runs as itself: its weight alone
            # would not be what it computes.
            projected = torch.cat([layer(states) for layer in layers], dim=-1)
        else:
            # Weights and biases in one `cat` (one kernel, not two): [W_1 ... W_n (flattened), b_1 ... b_n].
            weight_numel = sum(layer.weight.numel() for layer in layers)
            flat = torch.cat([layer.weight.reshape(-1) for layer in layers] + [layer.bias for layer in layers])
            weight = flat[:weight_numel].view(-1, layers[0].in_features)
            projected = nn.functional.linear(states, weight, flat[weight_numel:])
        # (B, L, n * D) -> (n, B, H, L, head_dim)
        projected = projected.view(*states.shape[:2], len(layers), self.num_heads, self.head_dim)
        return projected.permute(2, 0, 3, 1, 4).unbind(0)

    def project_keys_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states `(B, L, D)` -> keys and values `(B, H, L, head_dim)`; computed once and shared by query groups."""
        return self.project(states, "kv")

    def attend(
        self, query_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query_states `(B, H, Q, head_dim)`, keys/values `(B, H, L, head_dim)` (strided views are fine) ->
        the output projection `(B, Q, D)` and, with `output_attentions`, the weights `(B, H, Q, L)`."""
        # The maps are returned with any attention implementation: only eager computes them.
        attention_interface: Callable = eager_attention_forward
        if not output_attentions:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            keys,
            values,
            None,
            scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0,
        )
        attn_output = self.o_proj(attn_output.reshape(*attn_output.shape[:2], -1))
        return attn_output, (attn_weights if output_attentions else None)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """queries `(B, Q, D)`, keys/values from `project_keys_values` -> `(B, Q, D)` and optional weights."""
        (query_states,) = self.project(queries, "q")
        return self.attend(query_states, keys, values, output_attentions)


class QFaceFeedForward(nn.Module):
    def __init__(self, config: QFaceConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.decoder_ffn_dim)
        self.activation = ACT2FN[config.activation_function]
        self.fc2 = nn.Linear(config.decoder_ffn_dim, config.d_model)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(states)))


class QFaceDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm decoder layer: cross-attention queries -> memory, self-attention among queries, feed-forward.

    Queries come in groups (tasks added later form later groups). Each group is computed on its own tensor and its
    self-attention sees only its own and earlier groups, so adding a task changes no bit of the older outputs.
    """

    def __init__(self, config: QFaceConfig):
        super().__init__()
        self.cross_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.cross_attn = QFaceAttention(config)
        self.self_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.self_attn = QFaceAttention(config)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = QFaceFeedForward(config)
        self.dropout = nn.Dropout(config.decoder_dropout)

    def forward(
        self, memory: torch.Tensor, *query_groups: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """memory `(B, S * N, D)`, query_groups: tensors `(B, Q_g, D)` -> the updated groups, followed by the
        cross-attention weights `(B, H, Q, S * N)` (all groups concatenated) when `output_attentions`.

        The result is a flat tuple of tensors: reentrant activation checkpointing (`use_reentrant=True`) only connects
        the gradient of top-level output tensors, so a nested tuple would come back detached.
        """
        memory_keys, memory_values = self.cross_attn.project_keys_values(memory)
        attended, weights = [], []
        for group in query_groups:
            update, group_weights = self.cross_attn(
                self.cross_attn_norm(group), memory_keys, memory_values, output_attentions
            )
            attended.append(group + self.dropout(update))
            weights.append(group_weights)

        # Queries, keys and values of each group in one product; group g's keys/values are those of groups 0..g.
        projected = [self.self_attn.project(self.self_attn_norm(group), "qkv") for group in attended]
        outputs = []
        for g, group in enumerate(attended):
            query_states, keys, values = projected[g]
            if g > 0:
                keys = torch.cat([p[1] for p in projected[: g + 1]], dim=2)
                values = torch.cat([p[2] for p in projected[: g + 1]], dim=2)
            update, _ = self.self_attn.attend(query_states, keys, values)
            group = group + self.dropout(update)
            outputs.append(group + self.dropout(self.ffn(self.ffn_norm(group))))
        if output_attentions:
            return (*outputs, torch.cat(weights, dim=2))
        return tuple(outputs)


class QFacePreTrainedModel(PreTrainedModel):
    config_class = QFaceConfig
    config: QFaceConfig
    base_model_prefix = "qface"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["QFaceDecoderLayer", "QFaceEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    # MAE pretraining checkpoints carry a pixel decoder that Q-Face does not use.
    _keys_to_ignore_on_load_unexpected = [r"decoder\.decoder_", r"decoder\.mask_token"]

    def _init_weights(self, module):
        # Linear layers outside the encoder (fusion projections, decoder, heads): Xavier-uniform weights and zero
        # biases, the original DETR scheme. With normal(initializer_range=0.02), a 32- to 256-wide decoder passes
        # almost nothing of the image to the label queries (0.5 % of the logits' spread at qface-tiny), and the
        # query tasks stayed at chance for a thousand steps on trivially separable images. LayerNorm: 1/0;
        # Embedding (label queries, stage embeddings): normal(initializer_range). The encoder's own modules are
        # initialised by ViTMAE's `_init_weights`.
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
            return
        super()._init_weights(module)

    def initialize_weights(self):
        super().initialize_weights()
        if isinstance(getattr(self, "encoder", None), ViTMAEModel):
            init_vit_mae_embeddings(self.encoder.embeddings)
            # The sin-cos positions are fixed, but `from_pretrained` hands them back as trainable parameters.
            self.encoder.embeddings.position_embeddings.requires_grad_(False)


def init_vit_mae_embeddings(embeddings: nn.Module) -> None:
    """ViTMAE's own initialisation of its embedding layer (sin-cos positions, the patch projection as a flattened
    linear layer, the CLS token), through `transformers.initialization`, whose functions leave every tensor that was
    loaded from a checkpoint as it is.

    In transformers 5.24 `ViTMAEEmbeddings.initialize_weights` returns early once its patch projection is initialised,
    which `initialize_weights` does first (children before parents): a fresh `ViTMAEModel` keeps all-zero position
    embeddings (they are frozen, so training never fixes them), and one loaded from a checkpoint without its encoder
    keeps uninitialised memory. This does what that method would have done.
    """
    config = embeddings.config
    grid = int(embeddings.patch_embeddings.num_patches**0.5)
    positions = build_2d_sinusoidal_position_embedding(
        height=grid, width=grid, embed_dim=embeddings.position_embeddings.shape[-1], cls_token=True
    )
    # ViTMAE's layout (its original implementation swapped the two halves; pretrained weights rely on it).
    half = positions.shape[-1] // 2
    positions = torch.cat([positions[..., half:], positions[..., :half]], dim=-1)
    weight = embeddings.patch_embeddings.projection.weight
    fan_out, fan_in = weight.shape[0], weight[0].numel()  # Xavier for the (out, in * kh * kw) matrix of the patches
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        init.copy_(embeddings.position_embeddings, positions.unsqueeze(0).to(embeddings.position_embeddings.dtype))
        init.uniform_(weight, -bound, bound)
        init.normal_(embeddings.cls_token, std=config.initializer_range)


class QFaceModel(QFacePreTrainedModel):
    """Q-Face: every task of `config.tasks` answered in one forward pass.

    Example:

    ```python
    >>> from modeling_qface import QFaceModel, load_preset
    >>> model = QFaceModel(load_preset("qface-tiny")).eval()
    >>> out = model(torch.randn(2, 3, 32, 32))
    >>> out.expression_logits.shape, out.age.shape, out.head_pose.shape
    (torch.Size([2, 7]), torch.Size([2]), torch.Size([2, 3]))
    ```
    """

    def __init__(self, config: QFaceConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.backbone_config, config.drop_path_rate)
        self.fusion = QFaceMultiStageFusion(config)
        self.label_queries = nn.ModuleDict(
            {task["name"]: nn.Embedding(len(task["labels"]), config.d_model) for task in config.tasks}
        )
        self.decoder_layers = nn.ModuleList(QFaceDecoderLayer(config) for _ in range(config.decoder_layers))
        self.decoder_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.heads = nn.ModuleDict({task["name"]: build_task_head(task, config.d_model) for task in config.tasks})
        self.post_init()

    @classmethod
    def from_pretrained_backbone(
        cls, pretrained_model_name_or_path: str, config: QFaceConfig | None = None, **kwargs
    ) -> QFaceModel:
        """A Q-Face model whose encoder comes from a MAE checkpoint; fusion, decoder and heads start fresh.

        Reads a `ViTMAEForPreTraining` or `ViTMAEModel` checkpoint (a local folder or a Hub id), in the
        transformers 4 key layout (`vit.encoder.layer.N.attention.attention.query`, as `facebook/vit-mae-base` is
        stored) or the 5 layout. Without `config`, the default task set is built on the checkpoint's own encoder
        geometry, fusing the last blocks of each third of the encoder (4, 8, 12 for 12 blocks). Raises if any encoder weight would stay randomly initialised or has the wrong shape.

        The encoder is loaded as a plain `ViTMAEModel` and copied in (rather than remapping keys in this class's
        `from_pretrained`) so no key conversion is remembered and later `save_pretrained` calls write a checkpoint
        that reloads exactly.
        """
        if config is None:
            from transformers import ViTMAEConfig

            encoder_config = ViTMAEConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)
            depth = encoder_config.num_hidden_layers
            # The paper's stages S4, S8, S12 of a 12-block ViT: the ends of each third of the encoder.
            fusion_layers = sorted({max(1, round(depth * k / 3)) for k in (1, 2, 3)})
            config = QFaceConfig(backbone_config=encoder_config, fusion_layers=fusion_layers)
        # Mismatched shapes are collected and reported below instead of transformers' generic error.
        encoder, info = ViTMAEModel.from_pretrained(
            pretrained_model_name_or_path,
            config=config.backbone_config,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
            **kwargs,
        )
        problems = [f"missing: {k}" for k in info["missing_keys"]]
        problems += [
            f"wrong shape: {key} (checkpoint {tuple(saved)} vs config {tuple(expected)})"
            for key, saved, expected in info["mismatched_keys"]
        ]
        if problems:
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(problems)} encoder weight(s) would stay random "
                f"({', '.join(sorted(map(str, problems))[:8])}{', ...' if len(problems) > 8 else ''}); is it a ViT-MAE "
                "checkpoint of the same geometry as config.backbone_config?"
            )
        model = cls(config)
        model.encoder.load_state_dict(encoder.state_dict())
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, allow_missing_weights: bool = False, **kwargs):
        """`PreTrainedModel.from_pretrained`, reading safetensors only and refusing an incomplete checkpoint, also when
        `AutoModel`, `pipeline(...)` or remote code load it:

        - a folder or repository holding only a pickled `pytorch_model.bin` (which can run code when unpickled) is
          refused; pass `use_safetensors=False` explicitly to override;
        - weights that lack any tensor of the model raise `CheckpointError` naming the checkpoint and the
          first missing tensors, instead of initialising them at random (the model would answer with noise); pass
          `allow_missing_weights=True` to start those from their initialisation (e.g. new heads on a checkpoint).
          A caller that gives the weights itself (`state_dict=`) or asks for the loading report
          (`output_loading_info=True`) gets transformers' behaviour: the missing tensors initialised, and reported;
        - a corrupt or truncated safetensors file raises `CheckpointError` naming the checkpoint.
        """
        kwargs.setdefault("use_safetensors", True)
        output_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        except SafetensorError as error:
            raise CheckpointError(
                f"{pretrained_model_name_or_path}: its safetensors weights are corrupt or truncated ({error})"
            ) from error
        missing = sorted(info.get("missing_keys") or [])
        checks = not (allow_missing_weights or output_loading_info or kwargs.get("state_dict") is not None)
        if missing and checks:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise CheckpointError(
                f"{pretrained_model_name_or_path}: the checkpoint lacks {len(missing)} of the model's tensors "
                f"({shown}); they would start at random. Is it the checkpoint of this config? "
                "(allow_missing_weights=True initialises them instead)"
            )
        return (model, info) if output_loading_info else model

    # ----------------------------------------------------------------------------------------------- layout
    def query_groups(self) -> list[list[dict]]:
        """Tasks grouped by `query_group`, in ascending group order and config order within a group."""
        groups: dict[int, list[dict]] = {}
        for task in self.config.tasks:
            groups.setdefault(task["query_group"], []).append(task)
        return [groups[g] for g in sorted(groups)]

    def add_task(self, name: str, kind: str, labels: list[str], **options) -> dict:
        """Adds a task (its label queries and head) to this model without changing what existing tasks output.

        The new task's queries form a new query group: they read the existing queries in self-attention, but no
        existing query reads them. Only the new queries and head are freshly initialised; train them (freezing the
        rest if the old tasks must keep their exact outputs). Returns the normalised task description.
        """
        if name in self.config.task_names:
            raise ValueError(f"add_task: this model already has a task named {name!r}")
        group = max(t["query_group"] for t in self.config.tasks) + 1
        task = normalize_task(
            {"name": name, "kind": kind, "labels": list(labels), **options, "query_group": group}, "add_task"
        )
        queries = nn.Embedding(len(task["labels"]), self.config.d_model)
        head = build_task_head(task, self.config.d_model)
        for module in (queries, head):
            module.apply(self._init_weights)
            module.to(device=self.device, dtype=self.dtype)
        self.label_queries[name] = queries
        self.heads[name] = head
        self.config.tasks = [*self.config.tasks, task]
        return task

    def get_input_embeddings(self) -> nn.Module:
        """The encoder's patch embedding (a `ViTMAEPatchEmbeddings`), as `ViTMAEModel.get_input_embeddings` returns."""
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.encoder.set_input_embeddings(value)

    # ----------------------------------------------------------------------------------------------- forward
    def encode(self, pixel_values: torch.Tensor, output_attentions: bool = False):
        """Runs the encoder on every patch in its original order, returning all its hidden states (and its
        self-attention weights with `output_attentions`, which needs eager attention).

        ViTMAE shuffles tokens (even with `mask_ratio=0`) unless its noise is monotone, so it gets `arange` noise:
        the returned `ids_restore` is then `arange(N)` for every image.
        """
        config = self.config.backbone_config
        if pixel_values.dim() != 4 or pixel_values.shape[1] != config.num_channels:
            raise ValueError(
                f"pixel_values: expected shape (batch, {config.num_channels}, height, width), got {tuple(pixel_values.shape)}"
            )
        size = config.image_size if isinstance(config.image_size, (list, tuple)) else (config.image_size,) * 2
        if tuple(pixel_values.shape[2:]) != tuple(size):
            raise ValueError(
                f"pixel_values: expected images of {size[0]}x{size[1]} pixels, got {tuple(pixel_values.shape[2:])}"
            )
        num_patches = self.encoder.embeddings.patch_embeddings.num_patches
        # `shape[0]`, not `len()`, here and below: torch.export (the ONNX export) would fix the batch size.
        batch_size = pixel_values.shape[0]
        noise = torch.arange(num_patches, device=pixel_values.device, dtype=torch.float32).expand(batch_size, -1)
        return self.encoder(pixel_values, noise=noise, output_hidden_states=True, output_attentions=output_attentions)

    def forward(
        self,
        pixel_values: torch.Tensor,
        expression_labels: torch.Tensor | None = None,
        au_labels: torch.Tensor | None = None,
        attributes_labels: torch.Tensor | None = None,
        age_labels: torch.Tensor | None = None,
        head_pose_labels: torch.Tensor | None = None,
        task_labels: dict[str, torch.Tensor] | None = None,
        output_attentions: bool | None = None,
        tasks: list[str] | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        return_dict: bool | None = None,
    ) -> QFaceOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`):
            Normalised face crops at the encoder's image size (see the image processor saved with the model).
        expression_labels (`torch.LongTensor` of shape `(B,)`, *optional*):
            Class index per sample, -1 where the sample has no expression label.
        au_labels (`torch.LongTensor` of shape `(B, 15)`, *optional*):
            1 / 0 per AU, -1 where the AU is not coded.
        attributes_labels (`torch.LongTensor` of shape `(B, 40)`, *optional*):
            1 / 0 per attribute, -1 where missing.
        age_labels (`torch.FloatTensor` of shape `(B,)`, *optional*):
            Age in years, NaN where missing.
        head_pose_labels (`torch.FloatTensor` of shape `(B, 3)`, *optional*):
            Yaw, pitch, roll in degrees, NaN where missing.
        task_labels (`dict[str, torch.Tensor]`, *optional*):
            Labels of any task by name (tasks added with `add_task` or a custom config).
        output_attentions (`bool`, *optional*, defaults to `config.output_attentions`):
            Also return the decoder's cross-attention maps (`cross_attentions`) and each task's `stage_usage`, and,
            when the model runs eager attention, the encoder's self-attention weights (`attentions`).
        tasks (`list[str]`, *optional*):
            Run only these tasks' heads (and losses); the other output fields stay `None`. The decoder still runs
            every query, since queries read each other: a task's answer never depends on which others were asked.
        output_hidden_states (`bool`, `int` or `list[int]`, *optional*, defaults to `config.output_hidden_states`):
            Also return the encoder's hidden states (`hidden_states`); an index or a list of indices returns only
            those (the others are `None`).
        return_dict (`bool`, *optional*, defaults to `config.return_dict`):
            `False` returns `QFaceOutput.to_tuple()`: the fields that are not `None`, in field order.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if tasks is not None:
            unknown = sorted(set(tasks) - set(self.config.task_names))
            if unknown:
                raise ValueError(f"tasks: unknown task(s) {unknown}; this model's tasks are {self.config.task_names}")
        labels = self._collect_labels(
            pixel_values.shape[0],
            {
                "expression": expression_labels,
                "au": au_labels,
                "attributes": attributes_labels,
                "age": age_labels,
                "head_pose": head_pose_labels,
                **(task_labels or {}),
            },
        )
        if tasks is not None and labels is not None and set(labels) - set(tasks):
            raise ValueError(
                f"labels given for {sorted(set(labels) - set(tasks))}, which are not in tasks={list(tasks)}"
            )

        # Only eager attention computes weights; the encoder is not asked under sdpa (it would warn and return none).
        encoder_attentions = output_attentions and self.encoder.config._attn_implementation == "eager"
        encoded = self.encode(pixel_values, output_attentions=encoder_attentions)
        hidden_states = encoded.hidden_states
        depth = self.config.backbone_config.num_hidden_layers
        # The last stage comes from `last_hidden_state` so the encoder's final LayerNorm is used; the fusion drops CLS.
        stage_states = [
            encoded.last_hidden_state if layer == depth else hidden_states[layer] for layer in self.config.fusion_layers
        ]
        patch_size = self.config.backbone_config.patch_size
        patch_size = patch_size if isinstance(patch_size, (list, tuple)) else (patch_size, patch_size)
        patch_grid = (pixel_values.shape[2] // patch_size[0], pixel_values.shape[3] // patch_size[1])
        memory = self.fusion(stage_states, patch_grid)

        groups = self.query_groups()
        batch = pixel_values.shape[0]
        query_states = tuple(
            torch.cat([self.label_queries[t["name"]].weight for t in group], dim=0)[None].expand(batch, -1, -1)
            for group in groups
        )
        cross_attentions = []
        for layer in self.decoder_layers:
            layer_outputs = layer(memory, *query_states, output_attentions=output_attentions)
            if output_attentions:
                query_states = layer_outputs[:-1]
                cross_attentions.append(layer_outputs[-1])
            else:
                query_states = layer_outputs

        fields, extra, head_outputs = {}, {}, {}
        for group, states in zip(groups, query_states):
            states = self.decoder_norm(states)
            start = 0
            for task in group:
                count = len(task["labels"])
                start += count
                if tasks is not None and task["name"] not in tasks:
                    continue
                head_outputs[task["name"]] = self.heads[task["name"]](states[:, start - count : start])
                for key, field in output_fields(task).items():
                    target = fields if field in QFaceOutput.__dataclass_fields__ else extra
                    target[field] = head_outputs[task["name"]][key]
        if extra:
            fields["extra_task_outputs"] = extra
        if labels is not None:
            fields["loss"], fields["task_losses"] = self._loss(head_outputs, labels)
        fields["hidden_states"] = select_hidden_states(hidden_states, output_hidden_states)
        if output_attentions:
            fields["attentions"] = encoded.attentions if encoder_attentions else None
            fields["cross_attentions"] = tuple(cross_attentions)
            fields["stage_usage"] = self._stage_usage(cross_attentions, groups, len(stage_states))
        # Built in one go so the output's key order (Trainer's `predictions` order) is the dataclass field order.
        output = QFaceOutput(**fields)
        return output if return_dict else output.to_tuple()

    def _collect_labels(self, batch_size: int, given: dict) -> dict[str, torch.Tensor] | None:
        given = {name: value for name, value in given.items() if value is not None}
        if not given:
            return None
        unknown = sorted(set(given) - set(self.config.task_names))
        if unknown:
            raise ValueError(f"labels given for {unknown}, but this model's tasks are {self.config.task_names}")
        return {name: check_labels(self.config.get_task(name), value, batch_size) for name, value in given.items()}

    def _loss(self, head_outputs: dict, labels: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Every head joins the graph with weight 0, so a batch without labels for some task still gives that head a
        # (zero) gradient and DDP's reducer does not stall.
        total = sum(out.sum() for outputs in head_outputs.values() for out in outputs.values()) * 0.0
        task_losses = {}
        for task in self.config.tasks:
            if task["name"] in labels:
                loss = task_loss(task, head_outputs[task["name"]], labels[task["name"]])
                if loss is not None:
                    task_losses[task["name"]] = loss
                    total = total + task["loss_weight"] * loss
        return total, task_losses

    def _stage_usage(self, cross_attentions: list, groups: list, num_stages: int) -> dict[str, torch.Tensor]:
        # (layers, B, H, Q, S * N) -> (B, Q, S): attention mass per stage, averaged over layers and heads.
        weights = torch.stack(cross_attentions).float()
        per_stage = weights.unflatten(-1, (num_stages, -1)).sum(-1).mean(dim=(0, 2))
        usage, start = {}, 0
        for group in groups:
            for task in group:
                count = len(task["labels"])
                usage[task["name"]] = per_stage[:, start : start + count].mean(1)
                start += count
        return usage


__all__ = [
    "CheckpointError",
    "QFaceEncoderLayer",
    "QFaceModel",
    "QFaceOutput",
    "QFacePreTrainedModel",
    "build_encoder",
    "init_vit_mae_embeddings",
    "set_drop_path",
]
