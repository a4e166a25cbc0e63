# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Q-Face web demo, Hugging Face Spaces layout: Spaces runs `python app.py` and serves `demo`.

Locally: `python app.py` or `qface serve --model PATH_OR_PRESET` (see docs/web-demo.md).
Settings come from the environment, as a Space gets them:
    QFACE_MODEL          folder of a saved Q-Face model, or a preset name (default: the shipped demo model)
    QFACE_SAMPLE_PHOTOS  folder of example photos (default: ~/.cache/qface/sample_photos)
    QFACE_MAX_FILE_SIZE  largest upload accepted, e.g. 5mb (default: 20mb); `demo.launch()` applies it
"""

import os

from modeling_qface.webdemo.serve import DEFAULT_MAX_FILE_SIZE, DEFAULT_MODEL, build_demo, file_size

demo = build_demo(
    os.environ.get("QFACE_MODEL", DEFAULT_MODEL),
    max_file_size=file_size(os.environ.get("QFACE_MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE)),
)

if __name__ == "__main__":
    demo.launch()
