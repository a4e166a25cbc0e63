"""QFaceModel behaviour: outputs, patch order, fusion, partial-label losses, attention maps, add_task."""

from __future__ import annotations

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from torch.nn import functional as F

from modeling_qface import QFaceConfig, QFaceModel, default_tasks
from tests.conftest import partial_labels

OUTPUT_FIELDS = ("expression_logits", "au_logits", "attributes_logits", "age_distribution", "age", "head_pose")


def test_every_task_has_its_output(tiny_model, pixel_values):
    with torch.no_grad():
        out = tiny_model(pixel_values)
    assert out.loss is None and out.task_losses is None and out.cross_attentions is None
    shapes = {name: tuple(out[name].shape) for name in OUTPUT_FIELDS}
    assert shapes == {
        "expression_logits": (4, 7),
        "au_logits": (4, 15),
        "attributes_logits": (4, 40),
        "age_distribution": (4, 101),
        "age": (4,),
        "head_pose": (4, 3),
    }
    torch.testing.assert_close(out.age_distribution.sum(-1), torch.ones(4))
    torch.testing.assert_close(out.age, (out.age_distribution * torch.arange(101.0)).sum(-1))
    # Each image is answered independently of the rest of the batch.
    with torch.no_grad():
        single = tiny_model(pixel_values[2:3])
    torch.testing.assert_close(single.au_logits, out.au_logits[2:3], atol=1e-5, rtol=1e-5)


def test_encoder_keeps_every_patch_in_original_order(tiny_model, pixel_values):
    with torch.no_grad():
        ordered = tiny_model.encode(pixel_values)
        shuffled = tiny_model.encoder(pixel_values, output_hidden_states=True)  # ViTMAE's own random order
    num_patches = (32 // 8) ** 2
    assert torch.equal(ordered.ids_restore, torch.arange(num_patches).expand(4, -1))
    assert ordered.last_hidden_state.shape == (4, 1 + num_patches, 64)
    assert not torch.equal(shuffled.ids_restore, ordered.ids_restore)

    def unshuffle(tokens, ids_restore):
        index = ids_restore[..., None].expand(-1, -1, tokens.shape[-1])
        return torch.cat([tokens[:, :1], torch.gather(tokens[:, 1:], 1, index)], dim=1)

    reference = unshuffle(shuffled.last_hidden_state, shuffled.ids_restore)
    torch.testing.assert_close(ordered.last_hidden_state, reference, atol=1e-5, rtol=1e-5)
    for layer in (1, 2, 3):
        reference = unshuffle(shuffled.hidden_states[layer], shuffled.ids_restore)
        torch.testing.assert_close(ordered.hidden_states[layer], reference, atol=1e-5, rtol=1e-5)


def test_fused_memory_covers_every_stage_and_uses_the_final_layernorm(tiny_model, pixel_values):
    model = tiny_model.train()
    out = model(pixel_values, output_attentions=True, **partial_labels())
    num_stages, num_patches = len(model.config.fusion_layers), 16
    assert [tuple(w.shape) for w in out.cross_attentions] == [(4, 4, 66, num_stages * num_patches)] * 2
    out.loss.backward()
    # The last stage is `last_hidden_state`, so the encoder's final LayerNorm gets a gradient (DDP needs that).
    assert model.encoder.layernorm.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def expected_loss(model: QFaceModel, out, labels: dict) -> dict[str, torch.Tensor]:
    """The design note's losses written out independently of the model code."""
    config = model.config
    expr = labels["expression_labels"]
    keep = expr >= 0
    losses = {"expression": F.cross_entropy(out.expression_logits[keep], expr[keep])}
    for name in ("au", "attributes"):
        target = labels[f"{name}_labels"]
        keep = target >= 0
        if keep.any():
            bce = F.binary_cross_entropy_with_logits(out[f"{name}_logits"][keep], target[keep].float())
            losses[name] = bce
    age_task = config.get_task("age")
    age = labels["age_labels"]
    keep = ~age.isnan()
    bins = torch.arange(101.0)
    gauss = torch.exp(-((bins[None] - age[keep, None]) ** 2) / (2 * age_task["sigma"] ** 2))
    gauss = gauss / gauss.sum(-1, keepdim=True)
    kl = (gauss * (gauss.clamp_min(1e-30).log() - out.age_distribution[keep].log())).sum(-1).mean()
    l1 = (out.age[keep] - age[keep]).abs().mean() / age_task["scale"]
    losses["age"] = kl + age_task["l1_weight"] * l1
    pose = labels["head_pose_labels"]
    keep = ~pose.isnan()
    losses["head_pose"] = (out.head_pose[keep] - pose[keep]).abs().mean() / config.get_task("head_pose")["scale"]
    return losses


def test_partial_label_losses_match_the_design(tiny_model, pixel_values):
    labels = partial_labels()
    out = tiny_model(pixel_values, **labels)
    expected = expected_loss(tiny_model, out, labels)
    assert set(out.task_losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(out.task_losses[name], value, atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(out.loss, sum(expected.values()), atol=1e-5, rtol=1e-5)


def test_loss_weights_scale_each_task(tiny_config, pixel_values):
    tasks = [{**t, "loss_weight": 0.25 if t["name"] == "head_pose" else 2.0} for t in tiny_config.tasks]
    torch.manual_seed(0)
    model = QFaceModel(QFaceConfig(**{**tiny_config.to_dict(), "tasks": tasks})).eval()
    out = model(pixel_values, **partial_labels())
    weighted = sum((0.25 if n == "head_pose" else 2.0) * v for n, v in out.task_losses.items())
    torch.testing.assert_close(out.loss, weighted)


def test_task_without_labels_gets_a_zero_gradient(tiny_model, pixel_values):
    model = tiny_model.train()
    missing = {"au_labels": torch.full((4, 15), -1), "age_labels": torch.full((4,), float("nan"))}
    out = model(pixel_values, expression_labels=torch.tensor([0, 3, 6, 2]), **missing)
    assert set(out.task_losses) == {"expression"}
    out.loss.backward()
    assert model.heads["expression"].proj.weight.grad.abs().sum() > 0
    for name in ("au", "attributes", "age", "head_pose"):
        grad = model.heads[name].proj.weight.grad
        assert grad is not None and torch.count_nonzero(grad) == 0, name


def test_batch_with_no_label_at_all_has_zero_loss(tiny_model, pixel_values):
    out = tiny_model(pixel_values, expression_labels=torch.full((4,), -1))
    assert out.task_losses == {} and out.loss.item() == 0.0 and out.loss.requires_grad


@pytest.mark.parametrize(
    "labels, message",
    [
        (
            {"expression_labels": torch.tensor([0, 1, 7, 2])},
            "expression_labels: value 7 is not a valid label .*allowed -1..6",
        ),
        ({"expression_labels": torch.zeros(4, 7)}, r"expression_labels: expected shape \(4,\) .* got \(4, 7\)"),
        ({"au_labels": torch.full((4, 15), 2)}, "au_labels: value 2 is not a valid label .*allowed -1, 0, 1"),
        ({"au_labels": torch.zeros(4, 12)}, r"au_labels: expected shape \(4, 15\)"),
        ({"expression_labels": torch.tensor([0.5, 1, 2, 3])}, "expression_labels: expected integer class ids"),
        ({"head_pose_labels": torch.full((4, 3), float("inf"))}, "head_pose_labels: infinite target"),
        ({"task_labels": {"gender": torch.zeros(4)}}, r"labels given for \['gender'\], but this model's tasks are"),
    ],
)
def test_bad_labels_are_named(tiny_model, pixel_values, labels, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny_model(pixel_values, **labels)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((4, 1, 32, 32), r"expected shape \(batch, 3, height, width\)"),
        ((4, 3, 48, 48), "expected images of 32x32 pixels"),
    ],
)
def test_bad_pixel_values_are_named(tiny_model, shape, message):
    with pytest.raises(ValueError, match=f"pixel_values: {message}"):
        tiny_model(torch.zeros(shape))


def test_sdpa_and_eager_agree_and_attentions_come_from_eager(tiny_model, pixel_values):
    assert tiny_model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        sdpa = tiny_model(pixel_values)
        with_maps = tiny_model(pixel_values, output_attentions=True)
        tiny_model.set_attn_implementation("eager")
        eager = tiny_model(pixel_values)
    for name in OUTPUT_FIELDS:
        torch.testing.assert_close(sdpa[name], eager[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sdpa[name], with_maps[name], atol=1e-5, rtol=1e-5)
    for weights in with_maps.cross_attentions:
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_stage_usage_is_each_task_share_of_attention_per_stage(tiny_model, pixel_values):
    with torch.no_grad():
        out = tiny_model(pixel_values, output_attentions=True)
    per_query = torch.stack(out.cross_attentions).unflatten(-1, (2, 16)).sum(-1).mean(dim=(0, 2))  # (B, Q, S)
    offsets = {"expression": (0, 7), "au": (7, 22), "attributes": (22, 62), "age": (62, 63), "head_pose": (63, 66)}
    for name, (start, stop) in offsets.items():
        usage = out.stage_usage[name]
        assert usage.shape == (4, 2)
        torch.testing.assert_close(usage.sum(-1), torch.ones(4))
        torch.testing.assert_close(usage, per_query[:, start:stop].mean(1))


def test_add_task_leaves_existing_outputs_bit_identical(tiny_model, pixel_values):
    with torch.no_grad():
        before = tiny_model(pixel_values, output_attentions=True)  # eager attention
        before_sdpa = tiny_model(pixel_values)
    task = tiny_model.add_task("gender", "multiclass", ["female", "male"], loss_weight=0.5)
    assert task["query_group"] == 1 and tiny_model.config.task_names[-1] == "gender"
    with torch.no_grad():
        after = tiny_model(pixel_values, output_attentions=True)
        unperturbed = tiny_model(pixel_values)
        # However the new queries change (training), old queries never see them.
        tiny_model.label_queries["gender"].weight.mul_(-3.0).add_(1.0)
        perturbed = tiny_model(pixel_values)
    for name in OUTPUT_FIELDS:
        assert torch.equal(before[name], after[name]), name
        assert torch.equal(before_sdpa[name], unperturbed[name]), name
        assert torch.equal(unperturbed[name], perturbed[name]), name
    for old, new in zip(before.cross_attentions, after.cross_attentions):
        assert torch.equal(old, new[:, :, :66])
    assert after.extra_task_outputs["gender_logits"].shape == (4, 2)
    assert not torch.equal(
        unperturbed.extra_task_outputs["gender_logits"], perturbed.extra_task_outputs["gender_logits"]
    )
    assert after.stage_usage["gender"].shape == (4, 2)


def test_added_task_trains_and_reads_old_queries(tiny_model, pixel_values):
    tiny_model.add_task("smile_intensity", "regression", ["intensity"], scale=2.0, units="FACS 0-5")
    tiny_model.train()
    target = torch.tensor([[0.0], [1.0], [float("nan")], [4.0]])
    out = tiny_model(pixel_values, task_labels={"smile_intensity": target})
    assert set(out.task_losses) == {"smile_intensity"}
    keep = ~target.isnan()
    expected = (out.extra_task_outputs["smile_intensity"][keep] - target[keep]).abs().mean() / 2.0
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert tiny_model.label_queries["smile_intensity"].weight.grad.abs().sum() > 0
    # The new task's self-attention reads the old queries, so their embeddings receive gradient from it.
    assert tiny_model.label_queries["expression"].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="already has a task named 'smile_intensity'"):
        tiny_model.add_task("smile_intensity", "regression", ["x"])


def test_activation_checkpointing_gives_the_same_gradients(tiny_config, pixel_values):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = QFaceModel(tiny_config).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.is_activation_checkpointing
            assert all(layer.gradient_checkpointing for layer in model.decoder_layers)
        model(pixel_values, **partial_labels()).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_dropped_task_has_no_output_and_refuses_its_labels(tiny_config, pixel_values):
    tasks = [t for t in default_tasks() if t["name"] != "au"]
    model = QFaceModel(QFaceConfig(**{**tiny_config.to_dict(), "tasks": tasks})).eval()
    out = model(pixel_values)
    assert out.au_logits is None and "au_logits" not in out.keys() and out.expression_logits.shape == (4, 7)
    with pytest.raises(ValueError, match=r"labels given for \['au'\]"):
        model(pixel_values, au_labels=torch.zeros(4, 15, dtype=torch.long))


def test_multilabel_pos_weight_is_applied(tiny_config, pixel_values):
    tasks = [{"name": "au", "kind": "multilabel", "labels": ["AU1", "AU2"], "pos_weight": [3.0, 1.0]}]
    model = QFaceModel(QFaceConfig(**{**tiny_config.to_dict(), "tasks": tasks})).eval()
    labels = torch.tensor([[1, 0], [0, 1], [1, -1], [-1, -1]])
    out = model(pixel_values, au_labels=labels)
    keep = labels >= 0
    weight = torch.where(labels == 1, torch.tensor([3.0, 1.0]).expand(4, 2), torch.ones(4, 2))
    logits = out.au_logits
    per = -(weight * labels.clamp(min=0) * F.logsigmoid(logits) + (1 - labels.clamp(min=0)) * F.logsigmoid(-logits))
    torch.testing.assert_close(out.loss, per[keep].mean())
    assert not math.isnan(out.loss.item())


def test_a_subset_of_tasks_gives_the_same_answers(tiny_model, pixel_values):
    with torch.no_grad():
        full = tiny_model(pixel_values)
        subset = tiny_model(pixel_values, tasks=["age", "expression"])
    assert torch.equal(subset.age, full.age) and torch.equal(subset.expression_logits, full.expression_logits)
    assert subset.au_logits is None and subset.head_pose is None and subset.attributes_logits is None
    with pytest.raises(ValueError, match=r"tasks: unknown task\(s\) \['gender'\]"):
        tiny_model(pixel_values, tasks=["gender"])
    with pytest.raises(ValueError, match=r"labels given for \['au'\], which are not in tasks"):
        tiny_model(pixel_values, tasks=["age"], au_labels=torch.zeros(4, 15, dtype=torch.long))
    out = tiny_model(pixel_values, tasks=["age"], age_labels=torch.tensor([20.0, 30.0, float("nan"), 50.0]))
    assert set(out.task_losses) == {"age"}


# ----------------------------------------------------------------------------------- transformers' model conventions
@pytest.mark.parametrize("use_reentrant", [True, False])
def test_activation_checkpointing_gives_the_same_gradients_reentrant_or_not(tiny_config, pixel_values, use_reentrant):
    # Reentrant checkpointing only connects the gradient of a layer's top-level output tensors: a decoder layer that
    # returned its query groups in a nested tuple cut everything below the decoder off from the loss, silently.
    gender = {"name": "gender", "kind": "multiclass", "labels": ["female", "male"], "query_group": 1}
    config = QFaceConfig(**{**tiny_config.to_dict(), "tasks": [*default_tasks(), gender]})  # two query groups
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = QFaceModel(config).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
        labels = {**partial_labels(), "task_labels": {"gender": torch.tensor([0, 1, -1, 1])}}
        model(pixel_values, **labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert len(grads[0]) == sum(p.requires_grad for p in model.parameters())
    assert grads[1].keys() == grads[0].keys(), sorted(grads[0].keys() - grads[1].keys())[:5]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


def test_set_attn_implementation_switches_encoder_and_decoder(tiny_model, pixel_values):
    from unittest import mock

    sdpa = torch.nn.functional.scaled_dot_product_attention

    def run():
        with mock.patch("torch.nn.functional.scaled_dot_product_attention", side_effect=sdpa) as spy, torch.no_grad():
            return tiny_model(pixel_values), spy.call_count

    reference, calls = run()
    encoder_layers, decoder_attentions = 4, 2 * 2  # ViTMAE blocks; cross- and self-attention per decoder layer
    assert calls == encoder_layers + decoder_attentions
    tiny_model.set_attn_implementation("eager")
    attention_configs = [m.config for m in tiny_model.modules() if hasattr(m, "q_proj") and hasattr(m, "config")]
    assert len(attention_configs) == encoder_layers + decoder_attentions
    assert {c._attn_implementation for c in attention_configs} == {"eager"}
    eager, calls = run()
    assert calls == 0
    tiny_model.set_attn_implementation("sdpa")
    again, calls = run()
    assert calls == encoder_layers + decoder_attentions
    for name in OUTPUT_FIELDS:
        torch.testing.assert_close(eager[name], reference[name], atol=1e-5, rtol=1e-5)
        assert torch.equal(again[name], reference[name])


def test_return_dict_false_gives_the_output_tuple(tiny_model, pixel_values):
    from modeling_qface import QFaceOutput

    labels = partial_labels()
    with torch.no_grad():
        out = tiny_model(pixel_values, **labels)
        as_tuple = tiny_model(pixel_values, return_dict=False, **labels)
        tiny_model.config.return_dict = False
        from_config = tiny_model(pixel_values, **labels)
        explicit = tiny_model(pixel_values, return_dict=True, **labels)
    assert isinstance(as_tuple, tuple) and not isinstance(as_tuple, QFaceOutput)
    for result in (as_tuple, from_config):
        assert len(result) == len(out.to_tuple()) and result[0] is not None
        assert torch.equal(result[0], out.loss) and torch.equal(result[1], out.expression_logits)
    assert isinstance(explicit, QFaceOutput)


def test_output_hidden_states_returns_the_encoder_hidden_states(tiny_model, pixel_values):
    with torch.no_grad():
        plain = tiny_model(pixel_values)
        out = tiny_model(pixel_values, output_hidden_states=True)
        encoded = tiny_model.encode(pixel_values)
        selected = tiny_model(pixel_values, output_hidden_states=[0, -1])
        tiny_model.config.output_hidden_states = True
        from_config = tiny_model(pixel_values)
        off = tiny_model(pixel_values, output_hidden_states=False)
    assert plain.hidden_states is None and off.hidden_states is None and "hidden_states" not in plain.keys()
    # The embedding output and the output of each of the 4 blocks (CLS + 16 patches, width 64), as ViTMAE returns.
    assert [tuple(h.shape) for h in out.hidden_states] == [(4, 17, 64)] * 5
    for mine, encoders in zip(out.hidden_states, encoded.hidden_states):
        assert torch.equal(mine, encoders)
    assert [h is None for h in selected.hidden_states] == [False, True, True, True, False]
    assert torch.equal(selected.hidden_states[4], out.hidden_states[4])
    assert len(from_config.hidden_states) == 5
    for name in OUTPUT_FIELDS:
        assert torch.equal(out[name], plain[name])


def test_output_attentions_adds_encoder_self_attentions_under_eager(tiny_model, pixel_values):
    with torch.no_grad():
        sdpa = tiny_model(pixel_values, output_attentions=True)
        tiny_model.set_attn_implementation("eager")
        eager = tiny_model(pixel_values, output_attentions=True)
    # sdpa computes no weights: the encoder's are not returned, the decoder's maps are (it computes them itself).
    assert sdpa.attentions is None and len(sdpa.cross_attentions) == 2
    assert [tuple(a.shape) for a in eager.attentions] == [(4, 2, 17, 17)] * 4  # (B, encoder heads, 1 + N, 1 + N)
    for weights in eager.attentions:
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    for old, new in zip(sdpa.cross_attentions, eager.cross_attentions):
        torch.testing.assert_close(old, new, atol=1e-5, rtol=1e-5)
    assert list(eager.keys())[-4:] == ["head_pose", "attentions", "cross_attentions", "stage_usage"]


def test_input_embeddings_are_the_encoder_patch_embedding(tiny_model):
    assert tiny_model.get_input_embeddings() is tiny_model.encoder.embeddings.patch_embeddings
    assert tiny_model.get_output_embeddings() is None


# ------------------------------------------------------------------------------------------------ stochastic depth
def test_drop_path_rises_over_depth_drops_whole_samples_and_is_off_in_eval(tiny_config, pixel_values):
    from modeling_qface.model.modeling_qface import QFaceEncoderLayer

    config = QFaceConfig.from_dict({**tiny_config.to_dict(), "drop_path_rate": 0.3})
    torch.manual_seed(0)
    model = QFaceModel(config)
    blocks = model.encoder.layers
    assert all(isinstance(block, QFaceEncoderLayer) for block in blocks)
    rates = [block.drop_prob for block in blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.3, len(blocks)).tolist()) and rates[0] == 0.0
    # The same weights, initialised alike (seeded), and identical outputs in eval.
    torch.manual_seed(0)
    plain = QFaceModel(tiny_config).eval()
    assert [block.drop_prob for block in plain.encoder.layers] == [0.0] * len(blocks)
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(value, plain.state_dict()[key]) for key, value in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(pixel_values).age, plain(pixel_values).age)
    # In training a branch is dropped for whole samples, the kept ones scaled so that the expectation is unchanged.
    block = blocks[-1].train()
    torch.manual_seed(1)
    out = block.drop_path(torch.ones(4000, 5, 3))
    per_sample = out.flatten(1)
    assert per_sample.unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert bool((per_sample == per_sample[:, :1]).all())  # a sample is dropped whole or kept whole
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(block.eval().drop_path(torch.ones(3, 2)), torch.ones(3, 2))
    # Training with it: the same inputs give different outputs from run to run (the deeper blocks drop).
    model.train()
    torch.manual_seed(2)
    first = model(pixel_values).age
    torch.manual_seed(3)
    assert not torch.equal(first, model(pixel_values).age)


def test_the_drop_path_block_computes_exactly_what_vitmae_s_block_does_without_drops(tiny_config):
    """`QFaceEncoderLayer` re-implements `ViTMAELayer.forward` to add drop path: at rate 0 (and in eval at any rate)
    it must stay bit-identical to transformers' own block, also in training mode with dropout (same random draws)."""
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAELayer

    from modeling_qface.model.modeling_qface import QFaceEncoderLayer

    encoder_config = tiny_config.backbone_config.__class__.from_dict(
        {**tiny_config.backbone_config.to_dict(), "hidden_dropout_prob": 0.1}
    )
    torch.manual_seed(0)
    theirs = ViTMAELayer(encoder_config)
    ours = QFaceEncoderLayer(encoder_config, drop_prob=0.0)
    ours.load_state_dict(theirs.state_dict())
    states = torch.randn(3, 17, encoder_config.hidden_size)
    for mode in ("eval", "train"):
        getattr(theirs, mode)()
        getattr(ours, mode)()
        torch.manual_seed(5)
        expected = theirs(states)
        torch.manual_seed(5)
        assert torch.equal(ours(states), expected), mode
    ours.drop_prob = 0.5
    assert torch.equal(ours.eval()(states), theirs.eval()(states))


def test_drop_path_set_on_a_used_model_changes_only_the_rates(tiny_model, pixel_values):
    from modeling_qface.model.modeling_qface import set_drop_path

    with torch.no_grad():
        before = tiny_model(pixel_values).age
    set_drop_path(tiny_model.encoder, 0.2)
    assert tiny_model.encoder.layers[-1].drop_prob == pytest.approx(0.2)
    with torch.no_grad():
        assert torch.equal(tiny_model.eval()(pixel_values).age, before)
        assert len(tiny_model(pixel_values, output_hidden_states=True).hidden_states) == 5  # still recorded


def test_drop_path_rate_round_trips_and_is_validated(tmp_path, tiny_config):
    config = QFaceConfig.from_dict({**tiny_config.to_dict(), "drop_path_rate": 0.2})
    QFaceModel(config).save_pretrained(tmp_path / "m")
    loaded = QFaceModel.from_pretrained(tmp_path / "m")
    assert loaded.config.drop_path_rate == 0.2
    assert loaded.encoder.layers[-1].drop_prob == pytest.approx(0.2)
    with pytest.raises(
        StrictDataclassClassValidationError, match=r"drop_path_rate: expected a probability in \[0, 1\)"
    ):
        QFaceConfig.from_dict({**tiny_config.to_dict(), "drop_path_rate": 1.5})


def test_a_seeded_model_has_vitmae_s_own_encoder_initialisation(tiny_config):
    """The encoder's blocks are Q-Face's (for drop path) but start as transformers' `ViTMAEModel` starts them."""
    from transformers import ViTMAEModel

    torch.manual_seed(0)
    reference = ViTMAEModel(tiny_config.backbone_config).state_dict()
    torch.manual_seed(0)
    encoder = QFaceModel(tiny_config).encoder.state_dict()
    blocks = [key for key in reference if key.startswith("layers.")]
    assert blocks and all(torch.equal(encoder[key], reference[key]) for key in blocks)
