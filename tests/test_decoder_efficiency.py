"""The fusion and decoder give what their plain formulation gives (issue 10's speed work changed how, not what).

`QFaceAttention.project` runs the projections of one input as one matrix product over concatenated weights and the
fusion normalises and projects whole hidden states (CLS included, dropped afterwards). `reference_forward` below is
the formulation the model had before: every projection its own `nn.Linear` call, CLS sliced off before the fusion's
LayerNorm, softmax attention written out. Both read the same parameters, so the state dict is unchanged by
construction. Every output agrees within 1e-5 + 1e-5 x its size (float32 keeps 7 digits: a head-pose angle of 100
degrees from random weights is exact to ~1e-5 only), attention maps within 1e-5, gradients within 1e-5 x their largest entry. (Against the code
before the change, run with the same kernels, the outputs were bit-identical on every preset and the demo model.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modeling_qface import QFaceConfig, QFaceModel, load_preset
from modeling_qface.model.heads_qface import output_fields
from modeling_qface.model.modeling_qface import QFaceDecoderLayer, sincos_position_embedding_2d

DEMO_MODEL = Path(__file__).resolve().parents[1] / "modeling_qface" / "demo_model"
ATOL = 1e-5


def reference_attention(attention, queries: torch.Tensor, context: torch.Tensor):
    """queries `(B, Q, D)`, context `(B, L, D)` -> `(B, Q, D)` and the weights `(B, H, Q, L)`."""
    batch, count, width = queries.shape

    def heads(states):
        return states.view(batch, -1, attention.num_heads, attention.head_dim).transpose(1, 2)

    query, key, value = (
        heads(attention.q_proj(queries)),
        heads(attention.k_proj(context)),
        heads(attention.v_proj(context)),
    )
    weights = torch.softmax(query @ key.transpose(-1, -2) * attention.scaling, dim=-1)
    return attention.o_proj((weights @ value).transpose(1, 2).reshape(batch, count, width)), weights


def reference_forward(model: QFaceModel, pixel_values: torch.Tensor) -> tuple[dict, list[torch.Tensor]]:
    """Task outputs by field name and the cross-attention maps per layer, as the un-optimised code computed them."""
    config = model.config
    encoded = model.encode(pixel_values)
    depth = config.backbone_config.num_hidden_layers
    tokens = [
        (encoded.last_hidden_state if layer == depth else encoded.hidden_states[layer])[:, 1:]
        for layer in config.fusion_layers
    ]
    patch = config.backbone_config.patch_size
    grid = (pixel_values.shape[2] // patch, pixel_values.shape[3] // patch)
    fusion = model.fusion
    position = sincos_position_embedding_2d(*grid, config.d_model, pixel_values.device, pixel_values.dtype)
    memory = torch.cat(
        [
            projection(norm(stage)) + fusion.stage_embeddings.weight[s] + position
            for s, (stage, norm, projection) in enumerate(zip(tokens, fusion.norms, fusion.projections))
        ],
        dim=1,
    )
    batch = len(pixel_values)
    groups = model.query_groups()
    states = [
        torch.cat([model.label_queries[t["name"]].weight for t in group])[None].expand(batch, -1, -1)
        for group in groups
    ]
    cross_maps = []
    for layer in model.decoder_layers:
        attended, maps = [], []
        for group in states:
            update, weights = reference_attention(layer.cross_attn, layer.cross_attn_norm(group), memory)
            attended.append(group + update)
            maps.append(weights)
        cross_maps.append(torch.cat(maps, dim=2))
        normed = [layer.self_attn_norm(group) for group in attended]
        states = []
        for g, group in enumerate(attended):
            update, _ = reference_attention(layer.self_attn, normed[g], torch.cat(normed[: g + 1], dim=1))
            group = group + update
            states.append(group + layer.ffn(layer.ffn_norm(group)))
    outputs = {}
    for group, group_states in zip(groups, states):
        group_states = model.decoder_norm(group_states)
        start = 0
        for task in group:
            count = len(task["labels"])
            answers = model.heads[task["name"]](group_states[:, start : start + count])
            start += count
            for key, field in output_fields(task).items():
                outputs[field] = answers[key]
    return outputs, cross_maps


def assert_matches_reference(model: QFaceModel, pixel_values: torch.Tensor) -> None:
    with torch.no_grad():
        expected, expected_maps = reference_forward(model, pixel_values)
        for output_attentions in (False, True):
            out = model(pixel_values, output_attentions=output_attentions)
            assert set(expected) == {f for t in model.config.tasks for f in output_fields(t).values()}
            for field, value in expected.items():
                got = out.field(field)
                torch.testing.assert_close(got, value, atol=ATOL, rtol=ATOL, msg=field)
                assert value.abs().max().item() > 1e-3, f"{field} is all but zero: the comparison would be empty"
            if output_attentions:
                assert len(out.cross_attentions) == len(expected_maps)
                for got, value in zip(out.cross_attentions, expected_maps):
                    torch.testing.assert_close(got, value, atol=ATOL, rtol=0.0)
                    torch.testing.assert_close(got.sum(-1), torch.ones_like(got.sum(-1)))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_outputs_and_attention_maps_match_the_plain_formulation(tiny_model, pixel_values, attn_implementation):
    tiny_model.set_attn_implementation(attn_implementation)
    assert_matches_reference(tiny_model, pixel_values)


def test_added_query_groups_match_the_plain_formulation(tiny_model, pixel_values):
    # Later groups' self-attention reads the keys/values of every earlier group (concatenated per head here).
    torch.manual_seed(3)
    tiny_model.add_task("smile", "multilabel", ["smiling", "laughing"])
    tiny_model.add_task("gaze", "regression", ["gaze_yaw"], scale=10.0)
    assert [t["query_group"] for t in tiny_model.config.tasks][-2:] == [1, 2]
    assert_matches_reference(tiny_model, pixel_values)


def test_trained_demo_model_matches_the_plain_formulation():
    model = QFaceModel.from_pretrained(DEMO_MODEL).eval()
    size = model.config.backbone_config.image_size
    pixel_values = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    assert_matches_reference(model, pixel_values)


def test_gradients_match_the_plain_formulation(tiny_config, pixel_values):
    # The fused products take their weights through `torch.cat`: the gradient must still reach every q/k/v_proj.
    torch.manual_seed(0)
    model = QFaceModel(tiny_config).train()
    generator = torch.Generator().manual_seed(5)

    def scalar(outputs: dict) -> torch.Tensor:  # a fixed random linear function of every output
        return sum((outputs[f] * torch.randn(outputs[f].shape, generator=generator)).sum() for f in sorted(outputs))

    out = model(pixel_values)
    generator.manual_seed(5)
    scalar({f: out.field(f) for t in model.config.tasks for f in output_fields(t).values()}).backward()
    got = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    generator.manual_seed(5)
    scalar(reference_forward(model, pixel_values)[0]).backward()
    parameters = dict(model.named_parameters())
    for name, p in model.named_parameters():
        if name.endswith("k_proj.bias"):
            # A key bias adds the same number to every logit of a query: softmax ignores it, so its true gradient is
            # exactly zero and both formulations give float32 rounding noise, which differs by CPU kernel (AVX2 vs
            # AVX-512). Both must be noise against the layer's weight gradient, nothing more can be compared.
            weight_scale = max(1.0, parameters[name.replace(".bias", ".weight")].grad.abs().max().item())
            assert max(got[name].abs().max().item(), p.grad.abs().max().item()) <= 1e-3 * weight_scale, name
            continue
        if "decoder_layers" in name or "fusion" in name:
            assert name in got and p.grad is not None, name
            assert p.grad.abs().max().item() > 0, f"{name} gets no gradient"
            # A gradient sums over batch and tokens: float32 rounding scales with its largest entry.
            scale = max(1.0, p.grad.abs().max().item())
            assert (got[name] - p.grad).abs().max().item() <= ATOL * scale, name


def test_state_dict_layout_is_that_of_the_shipped_demo_model():
    # Same parameter names and shapes as the saved weights: exports made before this change load unchanged. (The
    # encoder's keys are saved in transformers' checkpoint layout and renamed on loading; fusion, decoder and heads
    # are saved as named here.)
    with safe_open(DEMO_MODEL / "model.safetensors", "pt") as saved:
        shapes = {
            key: tuple(saved.get_slice(key).get_shape()) for key in saved.keys() if not key.startswith("encoder.")
        }
    model = QFaceModel(QFaceConfig.from_pretrained(DEMO_MODEL))
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items() if not key.startswith("encoder.")}
    assert ours == shapes and len(shapes) > 100
    attention = model.decoder_layers[0].cross_attn
    assert [name for name, _ in attention.named_parameters()] == [
        f"{p}_proj.{kind}" for p in "qkvo" for kind in ("weight", "bias")
    ]


def test_base_preset_decoder_layer_matches_the_plain_formulation():
    # qface-base's widths (d_model 256, 8 heads, 66 queries, 3 x 196 memory tokens) on one decoder layer.
    config = load_preset("qface-base")
    torch.manual_seed(0)
    layer = QFaceDecoderLayer(config).eval()
    for module in layer.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.bias, std=0.1)
    generator = torch.Generator().manual_seed(4)
    memory = torch.randn(2, 3 * 196, config.d_model, generator=generator)
    queries = torch.randn(66, config.d_model, generator=generator)[None].expand(2, -1, -1)
    with torch.no_grad():
        got, got_maps = layer(memory, queries, output_attentions=True)
        update, maps = reference_attention(layer.cross_attn, layer.cross_attn_norm(queries), memory)
        attended = queries + update
        normed = layer.self_attn_norm(attended)
        update, _ = reference_attention(layer.self_attn, normed, normed)
        attended = attended + update
        expected = attended + layer.ffn(layer.ffn_norm(attended))
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(got_maps, maps, atol=ATOL, rtol=0.0)


def test_a_wrapped_projection_is_run_as_itself(tiny_model, pixel_values):
    # An adapter-style wrapper around v_proj (as LoRA / quantisation libraries install) must not be bypassed by the
    # fused product, which reads `.weight` directly.
    class Shifted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.weight, self.bias, self.in_features = inner.weight, inner.bias, inner.in_features

        def forward(self, states):
            return self.inner(states) + 0.5

    with torch.no_grad():
        before = tiny_model(pixel_values).expression_logits
    attention = tiny_model.decoder_layers[0].cross_attn
    attention.v_proj = Shifted(attention.v_proj)
    assert_matches_reference(tiny_model, pixel_values)
    with torch.no_grad():
        assert (tiny_model(pixel_values).expression_logits - before).abs().max().item() > 1e-3
