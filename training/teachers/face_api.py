# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Age and gender teacher: @vladmandic/face-api 1.7.15's `age_gender_model` (tfjs) in Node.js on the wasm backend.

One Node process per teacher serves every face: Python writes one JSON line per crop (its RGB bytes in base64 and the
square to look at), Node answers one JSON line. Node needs nothing but the three npm tarballs in the cache
(`assets.face_api_dir`): the script maps `@tensorflow/tfjs` and `@tensorflow/tfjs-core` onto tfjs's self-contained
`dist/tf.js` bundle and `@tensorflow/tfjs-backend-wasm` onto `dist/tf-backend-wasm.js` (its only outside import,
tfjs-core, then resolves to that same bundle, so the backend registers with face-api's engine), then loads
`face-api.node-wasm.js`. Without Node on PATH the teacher is unavailable (`TeacherUnavailable`) and `qface label`
skips age and gender with a message.

What the network sees: face-api crops its own pipeline's "aligned box" of the 68 landmarks and classifies that. Here
the same square is laid on the Q-Face crop by its template points (centre between the eyes, 0.64 of the way down to
the mouth; side 2.9 eye distances: where face-api's own detector + landmarks put it on 11 faces of the sample photos,
whose age and gender it then reproduced within a few years / the same class), so no detector runs (about 30 ms a
view instead of 500). Each face is classified as it is and mirrored: the age is the mean of the two, `age_std` half
their difference (how unsure the regression is), the gender probability the mean P(male).
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assets import FACE_API_PACKAGES, face_api_dir
from .base import TeacherUnavailable, check_crop, view_box

FACE_API_TEACHER = "face-api"
ALIGNED_BOX_CENTRE_BELOW_EYES = 0.64
ALIGNED_BOX_SIDE_IN_EYE_DISTANCES = 2.9
SCRIPT_NAME = "qface_face_api_worker.js"

_FOLDERS = {spec.rsplit("@", 1)[0]: name.removesuffix(".tgz") for spec, (name, _) in FACE_API_PACKAGES.items()}

NODE_SCRIPT = r"""// Q-Face: face-api age/gender worker. argv[2] = folder with the unpacked tarballs.
// stdin: one JSON request per line, {"size": S, "box": [x, y, side], "pixels": base64 of S*S*3 RGB bytes};
// stdout: one JSON answer per line.
'use strict';
const path = require('path');
const Module = require('module');
const readline = require('readline');
const root = process.argv[2];
const FOLDERS = __FOLDERS__;
const bundle = path.join(root, FOLDERS['@tensorflow/tfjs'], 'dist', 'tf.js');
const wasmDir = path.join(root, FOLDERS['@tensorflow/tfjs-backend-wasm'], 'dist');
const aliases = {
  '@tensorflow/tfjs': bundle,
  '@tensorflow/tfjs-core': bundle,
  '@tensorflow/tfjs-backend-wasm': path.join(wasmDir, 'tf-backend-wasm.js'),
};
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return aliases[request] || resolve.call(this, request, ...rest);
};

async function main() {
  const faceapiDir = path.join(root, FOLDERS['@vladmandic/face-api']);
  const faceapi = require(path.join(faceapiDir, 'dist', 'face-api.node-wasm.js'));
  const tf = faceapi.tf;
  require('@tensorflow/tfjs-backend-wasm').setWasmPaths(wasmDir + '/');
  await tf.setBackend('wasm');
  await tf.ready();
  await faceapi.nets.ageGenderNet.loadFromDisk(path.join(faceapiDir, 'model'));
  const write = (object) => process.stdout.write(JSON.stringify(object) + '\n');
  write({ ready: true, backend: tf.getBackend(), tfjs: tf.version_core, faceapi: faceapi.version });
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let image, face, mirrored;
    try {
      const request = JSON.parse(line);
      const s = request.size;
      const [x, y, side] = request.box;
      const bytes = Buffer.from(request.pixels, 'base64');
      if (bytes.length !== s * s * 3) throw new Error(`expected ${s * s * 3} bytes, got ${bytes.length}`);
      image = tf.tensor3d(Int32Array.from(bytes), [s, s, 3], 'int32');
      face = tf.slice(image, [y, x, 0], [side, side, 3]);
      mirrored = tf.reverse(face, 1);
      const answers = [];
      for (const view of [face, mirrored]) {
        const result = await faceapi.nets.ageGenderNet.predictAgeAndGender(view);
        const p = result.genderProbability;
        answers.push({ age: result.age, male: result.gender === 'male' ? p : 1 - p });
      }
      write({ ages: answers.map((a) => a.age), male_probabilities: answers.map((a) => a.male) });
    } catch (error) {
      write({ error: String(error && error.message ? error.message : error) });
    } finally {
      for (const t of [image, face, mirrored]) if (t) t.dispose();
    }
  }
}
main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + '\n');
  process.exit(1);
});
""".replace("__FOLDERS__", json.dumps(_FOLDERS))


@dataclass(frozen=True)
class AgeGenderPrediction:
    """face-api on one face: `ages` and `male_probabilities` of the crop and of its mirror image."""

    ages: tuple[float, float]
    male_probabilities: tuple[float, float]

    @property
    def age(self) -> float:
        return float(np.mean(self.ages))

    @property
    def age_std(self) -> float:
        """Half the difference between the two views' ages (their standard deviation), in years."""
        return float(np.std(self.ages))

    @property
    def male_probability(self) -> float:
        return float(np.mean(self.male_probabilities))

    @property
    def gender(self) -> str:
        return "male" if self.male_probability >= 0.5 else "female"

    @property
    def gender_confidence(self) -> float:
        """The mean probability of the predicted gender."""
        return max(self.male_probability, 1.0 - self.male_probability)


def face_api_box(size: int) -> tuple[int, int, int]:
    """`(x, y, side)` in crop pixels of the square face-api classifies, kept inside the crop."""
    x1, y1, x2, _ = view_box(size, ALIGNED_BOX_CENTRE_BELOW_EYES, ALIGNED_BOX_SIDE_IN_EYE_DISTANCES)
    side = min(round(x2 - x1), size)
    x, y = min(max(0, round(x1)), size - side), min(max(0, round(y1)), size - side)
    return x, y, side


class FaceApiTeacher:
    """face-api's age and gender of a Q-Face crop, by a Node.js process kept for the teacher's lifetime.

    Args:
        cache_dir: the teachers' cache (`assets.resolve_cache_dir`); the npm tarballs are fetched into it if missing.
        node: the Node.js executable; default `node` on PATH.
        timeout: seconds to wait for Node's start and for each answer.

    Raises `TeacherUnavailable` when Node.js is missing, the tarballs cannot be fetched, or the worker fails to start.
    """

    name = FACE_API_TEACHER

    def __init__(self, cache_dir=None, node: str | None = None, timeout: float = 120.0):
        node = node or shutil.which("node")
        if node is None:
            raise TeacherUnavailable(
                f"{self.name} (age, gender): Node.js is not installed (no `node` on PATH); "
                "install Node.js >= 18 to get age and gender labels"
            )
        root = face_api_dir(cache_dir)
        script = Path(root) / SCRIPT_NAME
        if not script.is_file() or script.read_text() != NODE_SCRIPT:
            script.write_text(NODE_SCRIPT)
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [node, str(script), str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        try:
            ready = self._read_answer()
        except TeacherUnavailable:
            self.close()
            raise
        if not ready.get("ready"):
            self.close()
            raise TeacherUnavailable(f"{self.name}: unexpected start-up answer from Node: {ready}")
        self.versions = {key: ready.get(key) for key in ("backend", "tfjs", "faceapi")}

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-1500:]

    def _read_answer(self) -> dict:
        stdout = self._process.stdout
        while True:
            ready, _, _ = select.select([stdout], [], [], self.timeout)
            if not ready:
                raise TeacherUnavailable(f"{self.name}: Node did not answer within {self.timeout} s")
            line = stdout.readline()
            if not line:
                code = self._process.wait(timeout=5)
                raise TeacherUnavailable(f"{self.name}: the Node worker exited ({code}):\n{self._stderr_tail()}")
            if line.startswith("{"):
                return json.loads(line)

    def __call__(self, crop) -> AgeGenderPrediction:
        crop = check_crop(crop)
        size = crop.shape[0]
        request = {
            "size": size,
            "box": list(face_api_box(size)),
            "pixels": base64.b64encode(np.ascontiguousarray(crop).tobytes()).decode(),
        }
        if self._process.poll() is not None:
            raise TeacherUnavailable(f"{self.name}: the Node worker is not running:\n{self._stderr_tail()}")
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = self._read_answer()
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return AgeGenderPrediction(tuple(map(float, answer["ages"])), tuple(map(float, answer["male_probabilities"])))

    def close(self):
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # at interpreter shutdown anything may be gone already
            self.close()


__all__ = ["AgeGenderPrediction", "FACE_API_TEACHER", "FaceApiTeacher", "face_api_box"]
