# Two commands: `make test` and `make demo` (plus `make lint`, which `make test` also checks).
# They create .venv when missing, install the pinned requirements and the project (editable,
# --no-build-isolation: the torch-extension convention), then run. Re-running is cheap: the
# install step is redone only when its inputs change. `make test` ends with `make test-runtime`:
# the runtime layer installed alone (no torch) in .venv-runtime, tested on an export.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The CUDA part of the extension compiles without a GPU when nvcc is found (see setup.py).
export CUDA_HOME ?= /usr/local/cuda
export TORCH_CUDA_ARCH_LIST ?= 9.0
export MAX_JOBS ?= 2

CSRC := $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cu csrc/cuda/*.cpp csrc/cuda/*.h csrc/cuda/*.cuh)

.PHONY: install browser test test-runtime lint demo bench clean

install: $(STAMP) browser

# requirements-app.txt: the web page (gradio) and its browser test (playwright), resolved with
# requirements.txt in one pip call.
$(STAMP): requirements.txt requirements-app.txt setup.py $(CSRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-app.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $(STAMP)

# Debian's Chromium for the web page's browser test (tests/test_app_browser.py drives it with
# Playwright; no browser download). Installed when missing, as root (CI runs as root); without
# root the test fails under CI=true and skips otherwise, saying why.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    set -x; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "note: $(CHROMIUM) is missing and this is not root: apt-get install chromium" \
	            "to run tests/test_app_browser.py"; fi; fi

test: install
	@$(PY) -m pytest -q tests research/tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5)"; exit 0; fi; exit $$rc
	@$(MAKE) --no-print-directory test-runtime

# The runtime layer alone: `pip install ".[runtime,app]"` (not editable) into .venv-runtime, no
# torch, then tests/runtime/ run from a copy outside the repository, so `export` is the installed
# package. Versions: requirements*.txt's pins, onnxruntime's CPU wheel for onnxruntime-gpu (one
# constraints file made from them). The venv is reinstalled when setup.py, the pins or a file of
# export/ change; the model (the tiny fixture, exported with .venv) when the fixture or the
# exporter changes.
RT_VENV := .venv-runtime
RT_PY := $(RT_VENV)/bin/python
RT_STAMP := $(RT_VENV)/.installed
RT_MODEL := out/runtime-fixture
RT_FACES := out/runtime-fixture-faces
FIXTURE := tests/fixtures/export_tiny
EXPORT_SRC := $(shell find export -type f -not -path '*/__pycache__/*' 2>/dev/null)
EXPORTER_SRC := $(shell find zoo/exporting -name '*.py' 2>/dev/null)

# Installed from a clean copy of the sources: setuptools packs whatever an earlier build left in
# build/lib, so a module deleted since would otherwise ship in the wheel.
$(RT_STAMP): setup.py requirements.txt requirements-app.txt $(EXPORT_SRC)
	@test -x $(RT_PY) || $(PYTHON) -m venv $(RT_VENV)
	sed 's/^onnxruntime-gpu==/onnxruntime==/' requirements.txt requirements-app.txt \
	  > $(RT_VENV)/constraints.txt
	@src=$$(mktemp -d) && \
	cp -r setup.py README.md LICENSE MANIFEST.in requirements.txt export zoo $$src/ && \
	(cd $$src && $(CURDIR)/$(RT_PY) -m pip install -q --disable-pip-version-check \
	  -c $(CURDIR)/$(RT_VENV)/constraints.txt ".[runtime,app]"); \
	rc=$$?; rm -rf $$src; exit $$rc
	@touch $(RT_STAMP)

$(RT_MODEL).stamp: $(STAMP) $(wildcard $(FIXTURE)/*) $(EXPORTER_SRC)
	rm -rf $(RT_MODEL) $(RT_FACES)
	$(PY) -m zoo.exporting $(FIXTURE) --out $(RT_MODEL) --no-torchscript
	$(PY) tests/runtime/conftest.py --faces $(RT_FACES)
	@touch $@

test-runtime: $(RT_STAMP) $(RT_MODEL).stamp
	@tmp=$$(mktemp -d) && cp tests/runtime/*.py $$tmp/ && \
	$(RT_PY) -m pip install -q --disable-pip-version-check -c $(RT_VENV)/constraints.txt \
	  pytest==9.2.0 && \
	cd $$tmp && ECLOSS_RUNTIME_MODEL=$(CURDIR)/$(RT_MODEL) \
	  ECLOSS_RUNTIME_FACES=$(CURDIR)/$(RT_FACES) ECLOSS_RUNTIME_INSTALLED=1 \
	  $(CURDIR)/$(RT_PY) -m pytest -q -p no:cacheprovider --import-mode=importlib .; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# ruff with ruff.toml (line length, pycodestyle, pyflakes, isort); tests/test_lint.py runs the same.
# research/ (the lab) is checked when it exists.
lint: install
	$(PY) -m ruff check research zoo export tests tools conftest.py setup.py

bench: install
	$(PY) -m pytest --benchmark

# The main job on the embedded default (ORL): train vgg19 with ECLoss (CPU preset without a GPU),
# load it from the registry, evaluate (metrics + figures), export to ONNX/TorchScript and use the
# torch-free runtime on held-out identities (s6: two images of one person, s8: another person;
# the per-part evidence of the s6 pair),
# audit the explanations on held-out faces (shown channels on the map border? fixed cells?), and
# play the part-swap game on held-out faces (does the explanation name the part that changed?).
DEMO_OUT := out/vgg19-ecloss
demo: install
	$(PY) -m zoo.train vgg19
	$(PY) -c "import zoo; m = zoo.load('vgg19-ecloss'); c = m.zoo_config; print('zoo.load:', c['name'], c['arch'], 'held-out accuracy', round(c['metrics']['orl']['accuracy'], 4))"
	$(PY) -m zoo.evaluate vgg19-ecloss
	$(PY) -m zoo.exporting vgg19-ecloss --out $(DEMO_OUT)
	@ORL=$$($(PY) -c "from zoo.data.orl import orl_root; print(orl_root())") && set -x && \
	$(PY) -m export.runtime verify $$ORL/s6/1.pgm $$ORL/s6/2.pgm --model $(DEMO_OUT) && \
	$(PY) -m export.runtime verify $$ORL/s6/1.pgm $$ORL/s8/1.pgm --model $(DEMO_OUT) && \
	$(PY) -m export.runtime verify $$ORL/s6/1.pgm $$ORL/s6/2.pgm --model $(DEMO_OUT) --explain $(DEMO_OUT)/why_s6.png && \
	$(PY) -m export.runtime explain $$ORL/s6/1.pgm --model $(DEMO_OUT) --out $(DEMO_OUT)/explain_s6_1.png && \
	$(PY) -m zoo.exporting.audit $$ORL/s6 $$ORL/s8 $$ORL/s13 --model $(DEMO_OUT) && \
	$(PY) -m zoo.swap_game $(DEMO_OUT) --orl heldout --pairs 20 --out $(DEMO_OUT)/swap_game.json

clean:
	rm -rf build *.egg-info zoo/_C*.so $(STAMP) $(RT_VENV) $(RT_MODEL) $(RT_MODEL).stamp \
	  $(RT_FACES)
