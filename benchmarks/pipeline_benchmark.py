"""End-to-end speed of the `face-analysis` pipeline on a real multi-face photo (issue: inference).

For each preset (random weights: speed does not depend on them), fp32, on one photo:
  end to end   `pipe(photo, batch_size=b)`: load, detect, align, Q-Face on every face, post-process; faces/s
  detection    `detect_faces` on the photo
  refinement   `refine_landmarks` for every face (the pipeline's default; `refine_landmarks=False` skips it)
  alignment    `align_face` for every face
  model        image processor + one Q-Face forward on all aligned faces
  five pipes   what a user would otherwise run on the same aligned faces: five transformers
               `image-classification` pipelines, one ViT of the same size per task (7 expression classes, 15 AUs,
               40 attributes, 101 age bins, 3 pose values), each over all faces at the same batch size
Medians over repeats; the three stages are timed separately, so their shares of the end-to-end time show where
time goes (the rest is image decoding and post-processing).

    python benchmarks/pipeline_benchmark.py --presets qface-tiny qface-base --photo t1.jpg --batch-sizes 1 16
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from measure import median_seconds, run_header, write_json
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification, pipeline

from modeling_qface import QFaceModel, load_preset
from modeling_qface.model.face_alignment_qface import align_face, detect_faces, refine_landmarks
from modeling_qface.model.image_processing_qface import build_image_processor
from modeling_qface.samples.photos import fetch_sample_photos

TASK_WIDTHS = {"expression": 7, "au": 15, "attributes": 40, "age": 101, "head_pose": 3}


def single_task_pipelines(preset: str, processor) -> list:
    """Five ViT image classifiers with Q-Face's encoder geometry, one per task, as transformers pipelines."""
    encoder = load_preset(preset).backbone_config
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size", "patch_size")
    pipes = []
    for width in TASK_WIDTHS.values():
        config = ViTConfig(**{k: getattr(encoder, k) for k in keys}, num_labels=width)
        model = ViTForImageClassification(config).eval()
        pipes.append(pipeline("image-classification", model=model, image_processor=processor, top_k=width))
    return pipes


def run(preset: str, photo: Image.Image, batch_sizes: list[int], repeats: int) -> dict:
    torch.manual_seed(0)
    model = QFaceModel(load_preset(preset)).eval()
    processor = build_image_processor(model.config)
    pipe = pipeline("face-analysis", model=model, image_processor=processor)
    rgb = np.asarray(photo.convert("RGB"))
    faces = detect_faces(rgb)
    size = model.config.backbone_config.image_size
    crops = [align_face(rgb, face.landmarks, size) for face in faces]
    crop_images = [Image.fromarray(crop) for crop in crops]
    pixels = processor(crop_images, return_tensors="pt")["pixel_values"]
    others = single_task_pipelines(preset, processor)
    result = {"faces": len(faces), "batch_sizes": {}}
    with torch.inference_mode():
        result["detection_s"] = median_seconds(lambda: detect_faces(rgb), repeats)
        result["refinement_s"] = median_seconds(lambda: [refine_landmarks(rgb, f.landmarks) for f in faces], repeats)
        result["alignment_s"] = median_seconds(lambda: [align_face(rgb, f.landmarks, size) for f in faces], repeats)
        for batch_size in batch_sizes:
            chunks = [pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)]
            model_s = median_seconds(lambda: [model(chunk) for chunk in chunks], repeats)
            end_to_end_s = median_seconds(lambda: pipe(photo, batch_size=batch_size), repeats)
            unrefined_s = median_seconds(lambda: pipe(photo, batch_size=batch_size, refine_landmarks=False), repeats)
            five_s = median_seconds(lambda: [p(crop_images, batch_size=batch_size) for p in others], repeats)
            result["batch_sizes"][batch_size] = {
                "end_to_end_s": end_to_end_s,
                "faces_per_s": len(faces) / end_to_end_s,
                "model_s": model_s,
                "unrefined_faces_per_s": len(faces) / unrefined_s,
                "five_pipelines_s": five_s,
                "qface_faces_per_s_on_crops": len(faces) / model_s,
                "five_pipelines_faces_per_s_on_crops": len(faces) / five_s,
            }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["qface-tiny", "qface-base"])
    parser.add_argument(
        "--photo", default="t1.jpg", help="a sample photo name (modeling_qface.samples.photos) or a path"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    photos = fetch_sample_photos()
    photo = Image.open(photos.get(args.photo, args.photo))
    results = {**run_header("cpu"), "photo": args.photo, "presets": {}}
    for preset in args.presets:
        r = run(preset, photo, args.batch_sizes, args.repeats)
        results["presets"][preset] = r
        print(
            f"\n{preset} on {args.photo} ({photo.width}x{photo.height}, {r['faces']} faces), median of {args.repeats}"
        )
        print(
            "| batch | faces/s end to end | without refinement | detection | refinement | alignment | model "
            "| Q-Face on crops | 5 pipelines on crops |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for batch_size, b in r["batch_sizes"].items():
            total = b["end_to_end_s"]
            shares = [r[k] / total for k in ("detection_s", "refinement_s", "alignment_s")] + [b["model_s"] / total]
            print(
                f"| {batch_size} | {b['faces_per_s']:.1f} | {b['unrefined_faces_per_s']:.1f} | {shares[0]:.0%} | "
                f"{shares[1]:.0%} | {shares[2]:.0%} | {shares[3]:.0%} | "
                f"{b['qface_faces_per_s_on_crops']:.1f} faces/s | {b['five_pipelines_faces_per_s_on_crops']:.1f} faces/s "
                f"({b['five_pipelines_s'] / b['model_s']:.1f}x slower) |"
            )
    write_json(results, args.json)


if __name__ == "__main__":
    main()
