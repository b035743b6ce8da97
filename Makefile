# One command per job, on a fresh machine:
#   make run    set up .venv and run the CPU-scale paper experiment (recipes/cpu.yaml)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_ROOT ?= $(shell [ -d ../shared/data ] && cd ../shared/data && pwd)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test quick smoke bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and exactly 2.13.0, with pip: the CPU wheel; anything looser may pull a CUDA build. The rest with uv,
# which installs the same packages as pip would, several times faster (benchmarks/README.md, "Setting up and the
# test suite"), torch held at the version installed; byte-compiled, since an environment with
# PYTHONDONTWRITEBYTECODE would otherwise compile them again at every import. uv reads no pip.conf: where it cannot
# reach an index (a pip-only mirror), pip installs the rest instead.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	if $(BIN)/pip install -q uv && $(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode \
		-e '.[dev]' torch==2.13.0; then :; else \
		echo "uv could not install the dependencies: installing them with pip"; $(BIN)/pip install -q -e '.[dev]'; fi
	touch $@

setup: $(VENV)/.installed

# two stages side by side, each on its share of the cores: small models use a core better as a second job than as
# a second thread (benchmarks/README.md, "Stages side by side"); logs in runs/cpu/logs, report in runs/cpu
JOBS ?= 2
run: setup
	$(BIN)/babyllama run recipes/cpu.yaml $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --makefile runs/cpu/stages.mk
	$(MAKE) --no-print-directory -j$(JOBS) -f runs/cpu/stages.mk

smoke: setup
	$(BIN)/babyllama run recipes/smoke.yaml $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

# one worker per core (pytest-xdist), a test file's tests on one worker, the longest files first (tests/conftest.py
# orders them by tests/durations.json; `pytest --store-durations` refreshes it); passive OpenMP waits, so that the
# workers' thread pools do not spin against each other
test: setup
	OMP_WAIT_POLICY=passive $(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

# the quick loop: everything but the end-to-end runs (marked slow); needs no ../shared
quick: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
