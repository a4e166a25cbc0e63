"""The Q-Face model tester for transformers' common tests, modelled on transformers' `ViTMAEModelTester`
(tests/models/vit_mae/test_modeling_vit_mae.py).

What the common tests read from it:
- `num_hidden_layers`, `num_attention_heads`, `hidden_size`, `seq_length` describe the **encoder** (ViTMAE):
  `output_hidden_states` returns the encoder's hidden states (`num_hidden_layers + 1` tensors of `seq_length` tokens,
  CLS + every patch, of width `hidden_size`) and `output_attentions` its self-attentions in `attentions` (one
  `(B, num_attention_heads, seq_length, seq_length)` per block), as ViTMAE does. The decoder is deliberately shaped
  differently (`d_model`, `decoder_attention_heads`), so a test that got the decoder's tensors instead would fail.
- `prepare_config_and_inputs_for_common()` -> `(config, {"pixel_values": ...})`; `prepare_labels()` adds labels for
  every task (some missing, as in a mixed-source batch) when a test asks for a loss (`return_labels=True`).

The task set has one task of each kind plus a task in a second query group, so every head, the partial-label losses
and the grouped decoder path (several positional query groups through each decoder layer) are exercised.
"""

from __future__ import annotations

import torch
from transformers import ViTMAEConfig

from modeling_qface import QFaceConfig

# `config_common_kwargs` of transformers' tests/utils/test_configuration_utils.py (main branch, v5: the generation
# parameters are gone from `PreTrainedConfig`), which the sdist lacks; `sdist.write_stand_ins` writes it into the
# stand-in module. ConfigTester uses it only for configs without sub-configs, so QFaceConfig's run does not read it.
CONFIG_COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}

# Every skip of the common suite, with the reason it is right for Q-Face. Three kinds:
#
# 1. Skipped here (the test would fail or is meaningless for a model without text inputs), as transformers' ViTMAE
#    test skips them.
SKIPPED_COMMON_TESTS = {
    "test_inputs_embeds": "Q-Face takes pixel_values only: there are no input_ids / inputs_embeds (as ViTMAE)",
    "test_inputs_embeds_matches_input_ids": "Q-Face takes pixel_values only: there are no input_ids / inputs_embeds",
}

# 2. Tests that skip themselves (`self.skipTest`) after looking at the model. `QFaceModelTest.skipTest` fails any
#    other self-skip: a model change that makes a test skip itself (as `set_attn_implementation` support once
#    silently did) must be looked at, not go unnoticed. Keys are test names (parameterized tests: the base name).
EXPECTED_SELF_SKIPS = {
    "test_bc_cache_name_forward": "no KV cache: Q-Face does not generate",
    "test_causal_lm_loss_honors_shift_labels": "no causal language-modelling head",
    "test_encoder_decoder_loss_no_double_shift": "no sequence-to-sequence language-modelling head",
    "test_eager_matches_batched_and_grouped_inference": "for mixture-of-experts layers (grouped_mm); Q-Face has none",
    "test_enable_input_require_grads_with_gradient_checkpointing": (
        "the input embedding is ViTMAE's patch embedding, whose weight sits in its `projection` convolution, so "
        "the test finds no `weight` to follow (the same for ViTMAE); `test_enable_input_require_grads` and the "
        "`test_training_gradient_checkpointing*` tests run"
    ),
    "test_keep_in_fp32_modules": "no module needs to stay in fp32 (`_keep_in_fp32_modules` is not set)",
    "test_keep_in_fp32_modules_exist": "no module needs to stay in fp32 (`_keep_in_fp32_modules` is not set)",
    "test_keep_in_fp32_modules_strict_also_hardcode_fp32": "no `_keep_in_fp32_modules_strict`",
    "test_model_rope_scaling_from_config": "no rotary position embedding (ViTMAE's positions are fixed sin-cos)",
    "test_model_rope_scaling_frequencies": "no rotary position embedding",
    "test_model_rope_with_partial_rotation": "no rotary position embedding",
    "test_vision_axial_rope": "no rotary position embedding",
    "test_moe_models_record_router_logits": "no mixture-of-experts layers",
    "test_output_router_logits_from_config": "no mixture-of-experts layers",
    "test_resize_tokens_embeddings": "no token embedding to resize (`test_resize_embeddings = False`, as ViTMAE)",
    "test_resize_embeddings_untied": "no token embedding to resize (`test_resize_embeddings = False`, as ViTMAE)",
    "test_resize_embeddings_untied_no_reinit_on_post_init": "no token embedding to resize (as ViTMAE)",
    "test_resize_position_vector_embeddings": "the encoder's positions are fixed sin-cos, not a resizable table",
    "test_sdpa_can_dispatch_composite_models": (
        "written for vision-language models (looks for a vision tower and a language model); Q-Face's SDPA / eager "
        "dispatch is checked by `test_sdpa_can_dispatch_non_composite_models` and "
        "`test_attn_implementation_composite_models`"
    ),
    "test_sliding_window_mask": "no sliding-window attention",
    "test_tp_plan_matches_params": "no tensor-parallel plan",
}

# 3. Tests transformers' own decorators skip on this machine (no GPU / flash-attn / kernels / deepspeed / several
#    devices; `RUN_SLOW` unset). Not enforced: they run wherever their requirements are met.
SKIPPED_BY_ENVIRONMENT = {
    "test_flash_attn_*, test_flash_attn_kernels_*": "need flash-attn and a CUDA GPU (Q-Face: no flash-attn)",
    "test_flash_attn_kernels_mps_inference_equivalence": "needs Apple MPS",
    "test_kernels_can_load_without_crashing": "needs the `kernels` library and an accelerator",
    "test_can_load_with_device_context_manager, test_can_load_with_global_device_set": "need an accelerator",
    "test_cpu_offload, test_disk_offload_bin, test_disk_offload_safetensors": "need an accelerator",
    "test_flex_attention_with_grads, test_sdpa_can_compile_dynamic": "need an accelerator",
    "test_sdpa_can_dispatch_on_flash": "needs an accelerator",
    "test_model_parallelism": "needs several accelerators",
    "test_resize_*_with_deepspeed*": "need deepspeed (and have no token embedding to resize)",
    "test_torch_compile_for_training": "slow test (RUN_SLOW) for text models on an accelerator",
}


class QFaceModelTester:
    def __init__(
        self,
        parent,
        batch_size=3,
        image_size=16,
        patch_size=4,
        num_channels=3,
        is_training=True,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        initializer_range=0.02,
        d_model=16,
        decoder_layers=2,
        decoder_attention_heads=2,
        decoder_ffn_dim=24,
        decoder_dropout=0.1,
        attention_dropout=0.1,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.is_training = is_training
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.d_model = d_model
        self.decoder_layers = decoder_layers
        self.decoder_attention_heads = decoder_attention_heads
        self.decoder_ffn_dim = decoder_ffn_dim
        self.decoder_dropout = decoder_dropout
        self.attention_dropout = attention_dropout
        # Q-Face never masks (mask_ratio is forced to 0): the encoder sees CLS + every patch.
        self.num_patches = (image_size // patch_size) ** 2
        self.seq_length = self.num_patches + 1

    def get_tasks(self) -> list[dict]:
        return [
            {"name": "expression", "kind": "multiclass", "labels": ["neutral", "happy", "sad"]},
            {"name": "au", "kind": "multilabel", "labels": ["AU1", "AU2", "AU4", "AU6"]},
            {"name": "age", "kind": "distribution", "labels": ["age"], "min_value": 0, "max_value": 10, "scale": 3.0},
            {"name": "head_pose", "kind": "regression", "labels": ["yaw", "pitch"], "scale": 30.0},
            {"name": "gender", "kind": "multiclass", "labels": ["female", "male"], "query_group": 1},
        ]

    def get_config(self) -> QFaceConfig:
        backbone = ViTMAEConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
        )
        return QFaceConfig(
            backbone_config=backbone,
            fusion_layers=list(range(1, self.num_hidden_layers + 1)),
            d_model=self.d_model,
            decoder_layers=self.decoder_layers,
            decoder_attention_heads=self.decoder_attention_heads,
            decoder_ffn_dim=self.decoder_ffn_dim,
            decoder_dropout=self.decoder_dropout,
            attention_dropout=self.attention_dropout,
            initializer_range=self.initializer_range,
            tasks=self.get_tasks(),
        )

    def prepare_config_and_inputs(self):
        pixel_values = torch.randn(self.batch_size, self.num_channels, self.image_size, self.image_size)
        return self.get_config(), pixel_values

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def prepare_labels(self, batch_size: int | None = None, device=None) -> dict:
        """Labels for every task, with a missing one (-1 / NaN) in each, as a batch mixing datasets has."""
        n = batch_size or self.batch_size
        generator = torch.Generator().manual_seed(0)
        expression = torch.randint(0, 3, (n,), generator=generator)
        expression[-1] = -1
        au = torch.randint(0, 2, (n, 4), generator=generator)
        au[0, :2] = -1
        age = torch.rand(n, generator=generator) * 10
        age[0] = float("nan")
        pose = (torch.rand(n, 2, generator=generator) - 0.5) * 60
        pose[-1] = float("nan")
        gender = torch.randint(0, 2, (n,), generator=generator)
        labels = {
            "expression_labels": expression,
            "au_labels": au,
            "age_labels": age,
            "head_pose_labels": pose,
            "task_labels": {"gender": gender},
        }
        labels["task_labels"] = {name: value.to(device) for name, value in labels["task_labels"].items()}
        return {name: value if isinstance(value, dict) else value.to(device) for name, value in labels.items()}
