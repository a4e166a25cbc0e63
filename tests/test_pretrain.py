"""MAE pretraining (`modeling_qface.training.pretrain`): a real run of the tiny recipe on generated faces, its outputs, the hand-off
to `QFaceModel.from_pretrained_backbone`, and the errors on bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw
from transformers import ViTMAEForPreTraining

from modeling_qface import QFaceModel, load_preset
from modeling_qface.configuration import PRESET_DIR
from modeling_qface.model.face_alignment_qface import FaceCrop
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.training.mae_data import (
    BadImageError,
    DatasetImages,
    ImageFiles,
    MaeImageDataset,
    RandomResizedCropFlip,
    check_images,
    load_rgb,
)
from modeling_qface.training.mae_figure import COLUMNS, GAP, HEADER, MASK_GREY, MIN_TILE, reconstruct
from modeling_qface.training.mae_model import build_mae_model, encoder_config, open_image_source, pretraining_config
from modeling_qface.training.optim import parameter_groups
from modeling_qface.training.pretrain import main, pretrain
from modeling_qface.training.pretrain_recipe import (
    PretrainDataSection,
    PretrainModelSection,
    PretrainRecipe,
    build_parser,
    load_pretrain_recipe,
    recipe_from_args,
)
from modeling_qface.training.recipe_base import RecipeError

NUM_IMAGES = 16
STEPS = 20
NUM_FIGURE_IMAGES = 3


def make_faces(folder, count: int, size: int = 48, seed: int = 0) -> list:
    """Writes `count` cartoon faces (shaded background, coloured oval, eyes, mouth) as PNGs; returns their paths.

    Structured images, unlike noise, have patches a small MAE can learn to predict from their neighbours.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xx = np.mgrid[0:size, 0:size][1] / size
    paths = []
    for i in range(count):
        background = rng.uniform(0, 255, 3)
        image = Image.fromarray((background * (0.6 + 0.4 * xx[..., None])).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        margin = rng.uniform(0.1, 0.2) * size
        skin = tuple(rng.integers(80, 256, 3).tolist())
        draw.ellipse([margin, 0.8 * margin, size - margin, size - 0.6 * margin], fill=skin)
        for eye_x in (0.35, 0.65):
            draw.ellipse([eye_x * size - 3, 0.4 * size - 3, eye_x * size + 3, 0.4 * size + 3], fill=(20, 20, 20))
        draw.line([0.35 * size, 0.72 * size, 0.65 * size, 0.72 * size], fill=(150, 30, 30), width=2)
        path = folder / ("nested" if i % 2 else "") / f"face_{i:03d}.png"  # a subfolder: the search is recursive
        path.parent.mkdir(exist_ok=True)
        image.save(path)
        paths.append(path)
    return paths


def tiny_recipe(output_dir, data: dict, **sections) -> PretrainRecipe:
    """A pretraining recipe of the qface-tiny encoder on `data`; `sections` such as `train={"max_steps": 1}`."""
    raw = {"output_dir": str(output_dir), "model": {"preset": "qface-tiny"}, "data": data, **sections}
    return load_pretrain_recipe(raw=raw)


def mae_sincos_reference(embed_dim: int, grid_size: int) -> np.ndarray:
    """MAE's own `get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=True)` (facebookresearch/mae,
    util/pos_embed.py), rewritten here as an independent reference: (1 + grid_size**2, embed_dim)."""

    def one_axis(dim, positions):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32)))
    embedding = np.concatenate([one_axis(embed_dim // 2, grid[0]), one_axis(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), embedding], axis=0)


def assert_sincos_positions(model: ViTMAEForPreTraining) -> None:
    grid = model.config.image_size // model.config.patch_size
    for parameter, width in (
        (model.vit.embeddings.position_embeddings, model.config.hidden_size),
        (model.decoder.decoder_pos_embed, model.config.decoder_hidden_size),
    ):
        expected = torch.from_numpy(mae_sincos_reference(width, grid)).float()[None]
        assert parameter.abs().sum() > 0
        torch.testing.assert_close(parameter.detach(), expected, atol=1e-6, rtol=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model trains in ~30 ms a step on one thread; two OpenMP threads on a busy shared 2-core machine
    were measured at ~3 s a step (threads waiting for each other), which would make this file take a minute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run through the CLI: the tiny recipe, with flags for a fixed set to overfit (no augmentation)."""
    root = tmp_path_factory.mktemp("pretrain")
    paths = make_faces(root / "faces", NUM_IMAGES)
    output_dir = root / "mae-tiny"
    argv = [
        "--config",
        "pretrain-tiny",
        "--data",
        str(root / "faces"),
        "--output-dir",
        str(output_dir),
        "--max-steps",
        str(STEPS),
        "--batch-size",
        str(NUM_IMAGES),
        "--learning-rate",
        "3e-3",
        "--warmup-steps",
        "0",
        "--no-augment",
        "--log-every",
        "1",
        "--num-reconstructions",
        str(NUM_FIGURE_IMAGES),
    ]
    assert main(argv) == 0
    return {"output_dir": output_dir, "paths": sorted(paths)}


def read_log(output_dir) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def test_run_writes_the_checkpoint_processor_config_and_log(run):
    output_dir = run["output_dir"]
    names = {p.name for p in output_dir.iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "pretrain_config.json",
        "train_log.jsonl",
        "reconstruction.png",
    }
    assert not output_dir.with_name(output_dir.name + ".partial").exists()

    record = json.loads((output_dir / "pretrain_config.json").read_text())
    recipe = yaml.safe_load((PRESET_DIR / "pretrain-tiny.yaml").read_text())
    assert record["recipe"]["model"]["preset"] == recipe["model"]["preset"] == "qface-tiny"  # from the recipe
    assert record["recipe"]["optimizer"]["weight_decay"] == recipe["optimizer"]["weight_decay"]
    assert record["recipe"]["optimizer"]["lr"] == 3e-3 != recipe["optimizer"]["lr"]  # the flag wins
    assert record["resolved"]["total_steps"] == STEPS and record["resolved"]["num_images"] == NUM_IMAGES
    assert record["resolved"]["mixed_precision"] == "no"
    assert record["versions"]["packages"]["torch"] == torch.__version__

    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "vit_mae" and config["mask_ratio"] == 0.75 and config["norm_pix_loss"] is True
    processor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert processor == json.loads(build_image_processor(load_preset("qface-tiny")).to_json_string())

    log = read_log(output_dir)
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert all(r["images_per_second"] > 0 for r in log)
    lrs = [r["lr"] for r in log]
    assert lrs[0] == pytest.approx(3e-3)  # no warmup: the peak at once, then cosine decay
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.05 * lrs[0]


def test_loss_is_finite_and_decreases_when_overfitting(run):
    losses = [r["loss"] for r in read_log(run["output_dir"])]
    assert all(math.isfinite(x) for x in losses)
    # Predicting zeros for per-patch normalised targets scores 1.0; learning the faces' structure goes below.
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:3]), losses


def test_fresh_model_has_sincos_positions_and_random_tokens():
    torch.manual_seed(0)
    config = pretraining_config(load_preset("qface-tiny"), PretrainModelSection())
    model = build_mae_model(config)
    assert_sincos_positions(model)
    assert not model.vit.embeddings.position_embeddings.requires_grad
    assert not model.decoder.decoder_pos_embed.requires_grad
    for token in (model.vit.embeddings.cls_token, model.decoder.mask_token):
        assert 0.01 < token.std().item() < 0.03  # normal(std=initializer_range), not left at zero


def test_saved_checkpoint_reloads_with_sincos_positions(run):
    model, info = ViTMAEForPreTraining.from_pretrained(run["output_dir"], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert_sincos_positions(model)


def test_reconstruction_figure(run):
    figure = Image.open(run["output_dir"] / "reconstruction.png").convert("RGB")
    image_size = load_preset("qface-tiny").backbone_config.image_size
    scale = math.ceil(MIN_TILE / image_size)
    tile = image_size * scale
    width = len(COLUMNS) * tile + (len(COLUMNS) + 1) * GAP
    assert figure.size == (width, HEADER + NUM_FIGURE_IMAGES * (tile + GAP) + GAP)

    pixels = np.asarray(figure).astype(int)
    processor = build_image_processor(load_preset("qface-tiny"))
    patch = load_preset("qface-tiny").backbone_config.patch_size
    grey = round(MASK_GREY * 255)
    for row, path in enumerate(run["paths"][:NUM_FIGURE_IMAGES]):  # the first images in path order
        top = HEADER + GAP + row * (tile + GAP)
        tiles = [pixels[top : top + tile, GAP + c * (tile + GAP) : GAP + c * (tile + GAP) + tile] for c in range(4)]
        original, masked, _, pasted = (t[::scale, ::scale] for t in tiles)
        # The original tile is the processor's input, un-normalised.
        expected = processor(Image.open(path).convert("RGB"), return_tensors="np")["pixel_values"][0]
        expected = expected.transpose(1, 2, 0)
        expected = np.clip(expected * processor.image_std + processor.image_mean, 0, 1) * 255
        assert np.abs(original - expected).max() <= 1
        # 75 % of the patches are grey in the masked tile; the others, and the same patches of the pasted tile,
        # are the original.
        grid = image_size // patch
        blocks = [(r * patch, c * patch) for r in range(grid) for c in range(grid)]
        hidden = [(r, c) for r, c in blocks if (masked[r : r + patch, c : c + patch] == grey).all()]
        assert len(hidden) == round(0.75 * grid * grid)
        for r, c in set(blocks) - set(hidden):
            assert (masked[r : r + patch, c : c + patch] == original[r : r + patch, c : c + patch]).all()
            assert (pasted[r : r + patch, c : c + patch] == original[r : r + patch, c : c + patch]).all()


def test_handoff_to_qface_is_exact(run, tmp_path):
    pretrained = ViTMAEForPreTraining.from_pretrained(run["output_dir"])
    model = QFaceModel.from_pretrained_backbone(str(run["output_dir"]), load_preset("qface-tiny"))
    encoder, vit = model.encoder.state_dict(), pretrained.vit.state_dict()
    assert encoder.keys() == vit.keys()
    assert all(torch.equal(encoder[key], vit[key]) for key in vit)
    assert model.config.backbone_config.mask_ratio == 0.0
    assert not model.encoder.embeddings.position_embeddings.requires_grad  # still the fixed sin-cos

    model.save_pretrained(tmp_path / "qface")
    reloaded = QFaceModel.from_pretrained(tmp_path / "qface")
    original, again = model.state_dict(), reloaded.state_dict()
    assert original.keys() == again.keys() and all(torch.equal(original[k], again[k]) for k in original)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = model.eval()(pixel_values), reloaded.eval()(pixel_values)
    assert torch.equal(before.expression_logits, after.expression_logits) and torch.equal(before.age, after.age)


def test_empty_folder_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    recipe = tiny_recipe(tmp_path / "out", {"folder": str(tmp_path / "empty")})
    with pytest.raises(ValueError, match=r"empty: no images found"):
        pretrain(recipe)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    # The command line reports it in one line and exits with status 2.
    argv = ["--data", str(tmp_path / "empty"), "--preset", "qface-tiny", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith(f"qface pretrain: error: {tmp_path / 'empty'}: no images found (searched recursively")


def write_bad_images(folder) -> dict[str, bytes]:
    """An undecodable file and a PNG cut in half (both caught by the header check)."""
    png = (folder / "face_000.png").read_bytes()
    bad = {"broken.jpg": b"this is not a JPEG", "truncated.png": png[: len(png) // 2]}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return bad


def test_corrupt_image_is_an_error_naming_the_file(tmp_path):
    make_faces(tmp_path / "faces", 4)
    write_bad_images(tmp_path / "faces")
    recipe = tiny_recipe(tmp_path / "out", {"folder": str(tmp_path / "faces")})
    with pytest.raises(BadImageError, match=r"broken\.jpg: not a readable image.*--skip-bad-images"):
        pretrain(recipe)
    assert not (tmp_path / "out").exists()


def test_skip_bad_images_trains_on_the_rest_and_counts_them(tmp_path):
    make_faces(tmp_path / "faces", 4)
    bad = write_bad_images(tmp_path / "faces")
    output_dir = pretrain(
        tiny_recipe(
            tmp_path / "out",
            {"folder": str(tmp_path / "faces"), "skip_bad_images": True},
            train={"max_steps": 1, "batch_size": 4},
            logging={"num_reconstructions": 0},
        )
    )
    resolved = json.loads((output_dir / "pretrain_config.json").read_text())["resolved"]
    assert resolved["num_images"] == 4 and resolved["unreadable_images"] == len(bad)
    assert all(any(name in example for example in resolved["unreadable_examples"]) for name in bad)
    assert not (output_dir / "reconstruction.png").exists()


def test_jpeg_truncated_after_its_header_is_caught_by_the_up_front_check(tmp_path):
    """`verify()` reads no JPEG data, so a JPEG cut after its header used to pass the check and end the run when
    first drawn; one that lacks its end-of-image marker is now decoded up front."""
    good = make_faces(tmp_path, 1)[0]
    Image.open(good).convert("RGB").save(tmp_path / "cut.jpg")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.open(good).convert("RGB").save(tmp_path / "padded.jpg")
    (tmp_path / "padded.jpg").write_bytes((tmp_path / "padded.jpg").read_bytes() + b"trailing bytes")  # still fine
    source = ImageFiles([tmp_path / "cut.jpg", good, tmp_path / "padded.jpg"])
    with pytest.raises(BadImageError, match=r"cut\.jpg: not a readable image \(image file is truncated.*--skip-bad"):
        check_images(source)
    good_indices, bad = check_images(source, skip_bad_images=True)
    assert good_indices == [1, 2] and len(bad) == 1 and "cut.jpg" in bad[0]


def test_an_image_that_fails_when_drawn_is_named_or_replaced(tmp_path):
    """What the header check cannot see fails when decoded: without `skip_bad_images` the draw fails naming the
    file; with it the next image is taken and the bad one reported once by this process, then skipped undecoded."""
    good = make_faces(tmp_path, 1)[0]
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    source = ImageFiles([tmp_path / "cut.jpg", good])
    failed = MaeImageDataset(source, [0, 1])[0]
    assert failed.image is None and failed.error.startswith(f"{tmp_path / 'cut.jpg'}: cannot decode image")
    assert failed.error.endswith("pass --skip-bad-images to leave unreadable images out")
    dataset = MaeImageDataset(source, [0, 1], skip_bad_images=True)
    replacement = dataset[0]
    assert np.array_equal(np.asarray(replacement.image), np.asarray(load_rgb(source, 1)))
    assert [name for name, _ in replacement.unreadable] == [str(tmp_path / "cut.jpg")] and replacement.error is None
    assert dataset[(0, 1)].unreadable == ()  # known to be bad in this process: not decoded, not reported again


def test_saved_dataset_and_data_source_inputs(tmp_path):
    import datasets

    paths = make_faces(tmp_path / "faces", 3)
    features = datasets.Features({"photo": datasets.Image()})
    datasets.Dataset.from_dict({"photo": [str(p) for p in paths]}, features=features).save_to_disk(tmp_path / "saved")
    source = open_image_source(PretrainDataSection(folder=str(tmp_path / "saved"), image_column="photo"))
    assert isinstance(source, DatasetImages) and len(source) == 3
    assert np.array_equal(np.asarray(load_rgb(source, 2)), np.asarray(Image.open(paths[2]).convert("RGB")))
    with pytest.raises(ValueError, match=r"no image column 'image'; columns are \['photo'\]"):
        open_image_source(PretrainDataSection(folder=str(tmp_path / "saved")))

    lines = [json.dumps({"file_name": str(p.relative_to(tmp_path / "faces")), "age": 30}) for p in paths]
    (tmp_path / "faces" / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    data = PretrainDataSection(source="image_folder", root=str(tmp_path / "faces"), split="all")
    source = open_image_source(data, FaceCrop(size=48))
    assert len(source) == 3 and source.name(0).endswith(f"({paths[0]})")
    # A source's images are its faces in the encoder's Q-Face crop (no face in these: the central square).
    crop = FaceCrop(size=48).central(np.asarray(Image.open(paths[0]).convert("RGB"))).crop
    assert np.array_equal(np.asarray(load_rgb(source, 0)), crop)


def test_recipe_values_are_overridden_by_flags(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: {preset: qface-small}\noptimizer: {lr: 1e-3}\ntrain: {batch_size: 8}\ndata: {folder: f}\n"
    )
    args = ["--config", str(recipe), "--output-dir", "out"]
    parsed = recipe_from_args(build_parser().parse_args(args))
    assert (parsed.model.preset, parsed.optimizer.lr, parsed.train.batch_size) == ("qface-small", 1e-3, 8)
    assert parsed.data.folder == "f" and parsed.output_dir == "out"
    flags = ["--batch-size", "2", "--model-config", "c.json", "--source", "celeba", "--root", "r"]
    parsed = recipe_from_args(build_parser().parse_args([*args, *flags, "--set", "optimizer.betas=[0.9, 0.99]"]))
    assert (parsed.train.batch_size, parsed.model.preset, parsed.model.config) == (2, None, "c.json")
    assert (parsed.data.folder, parsed.data.source, parsed.optimizer.betas) == (None, "celeba", (0.9, 0.99))

    # Errors name the file and the key, as `qface train`'s recipes do.
    recipe.write_text("model: {preset: qface-small}\noptimizer: {learning_rate: 1e-3}\ndata: {folder: f}\n")
    with pytest.raises(RecipeError, match=rf"^{recipe}: optimizer\.learning_rate: unknown key"):
        recipe_from_args(build_parser().parse_args(args))
    recipe.write_text("train: {mixed_precision: fp8}\ndata: {folder: f}\n")
    with pytest.raises(RecipeError, match=r"recipe\.yaml: train\.mixed_precision: Input should be 'auto', 'no' or"):
        recipe_from_args(build_parser().parse_args(args))
    recipe.write_text("train: {mixed_precision: no}\ndata: {folder: f}\n")  # YAML's false: taken as "no"
    assert recipe_from_args(build_parser().parse_args(args)).train.mixed_precision == "no"
    with pytest.raises(RecipeError, match="data: give exactly one input"):
        recipe_from_args(build_parser().parse_args(["--output-dir", "o"]))
    with pytest.raises(RecipeError, match="give at most one of max_steps and epochs"):
        recipe_from_args(
            build_parser().parse_args(
                ["--data", "f", "--output-dir", "o", "--set", "train.epochs=2", "--max-steps", "3"]
            )
        )
    for name in ("pretrain-tiny", "pretrain-small", "pretrain-base", "pretrain-demo"):  # every shipped recipe
        load_pretrain_recipe(name, [(["output_dir"], "o"), (["data", "folder"], "f")])


def test_weight_decay_only_on_matrices():
    model = build_mae_model(pretraining_config(load_preset("qface-tiny"), PretrainModelSection()))
    decay, no_decay = parameter_groups(model, 1e-3, 0.05)
    assert (decay["name"], no_decay["name"]) == ("decay", "no_decay")
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0) and decay["lr"] == no_decay["lr"] == 1e-3
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | exempt == trainable and not decayed & exempt
    assert {"vit.embeddings.cls_token", "decoder.mask_token"} <= exempt
    assert all(n.endswith(".bias") or "norm" in n or "token" in n for n in exempt)
    assert all(model.get_parameter(n).ndim >= 2 and "token" not in n for n in decayed)
    assert "vit.embeddings.position_embeddings" not in trainable  # frozen sin-cos


def test_random_resized_crop_stays_in_the_image_and_the_ranges():
    torch.manual_seed(0)
    augment = RandomResizedCropFlip(scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3))
    for _ in range(200):
        left, top, right, bottom = augment.crop_box(60, 40)
        width, height = right - left, bottom - top
        assert 0 <= left < right <= 60 and 0 <= top < bottom <= 40
        assert 0.5 * 2400 * 0.9 <= width * height <= 2400 and 0.7 <= width / height <= 1.4
    image = Image.fromarray(np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3))
    flipped = RandomResizedCropFlip(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_prob=1.0)(image)
    assert np.array_equal(np.asarray(flipped), np.asarray(image)[:, ::-1])


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruction_of_a_perfect_prediction_is_the_image(norm_pix_loss):
    """`reconstruct` maps the decoder's (normalised) patch predictions back to pixels: a decoder that predicted
    its training target exactly must give back the original image."""
    torch.manual_seed(0)
    settings = PretrainModelSection(norm_pix_loss=norm_pix_loss)
    model = build_mae_model(pretraining_config(load_preset("qface-tiny"), settings)).eval()
    real_forward = model.forward

    def perfect_forward(pixel_values, noise):
        output = real_forward(pixel_values=pixel_values, noise=noise)
        target = model.patchify(pixel_values)
        if norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        output.logits = target
        return output

    model.forward = perfect_forward
    processor = build_image_processor(load_preset("qface-tiny"))
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    panels, _ = reconstruct(model, pixel_values, processor.image_mean, processor.image_std)
    torch.testing.assert_close(panels["reconstruction"], panels["original"], atol=1e-4, rtol=0)
    torch.testing.assert_close(panels["reconstruction + visible"], panels["original"], atol=1e-4, rtol=0)
    masked_share = (panels["masked"] != panels["original"]).any(1).float().mean().item()
    assert masked_share == pytest.approx(0.75, abs=0.01)


def test_model_config_json_gives_the_same_encoder_as_the_preset(run):
    preset = load_preset("qface-tiny").backbone_config
    geometry = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "image_size",
        "patch_size",
    )
    for path in (PRESET_DIR / "qface-tiny.json", run["output_dir"] / "config.json"):  # a Q-Face and a ViTMAE config
        settings = PretrainModelSection(config=str(path))
        config = pretraining_config(encoder_config(settings), settings)
        assert [getattr(config, k) for k in geometry] == [getattr(preset, k) for k in geometry]
        assert (config.mask_ratio, config.decoder_hidden_size) == (0.75, preset.decoder_hidden_size)
    bad = run["output_dir"].parent / "bad.json"
    bad.write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match=r"bad\.json: model_type is 'bert', expected 'qface' or 'vit_mae'"):
        encoder_config(PretrainModelSection(config=str(bad)))
