# Two commands: `make test` and `make demo`. Both create .venv when missing, install the pinned
# requirements and the project (editable, --no-build-isolation: the torch-extension convention),
# then run. Re-running is cheap: the install step is redone only when its inputs change.
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

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py $(CSRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $(STAMP)

test: install
	@$(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5)"; exit 0; fi; exit $$rc

bench: install
	$(PY) -m pytest --benchmark

demo: install
	$(PY) -m zoo.demo

clean:
	rm -rf build *.egg-info zoo/_C*.so $(STAMP)
