# gs-ds-env: `make help` lists the targets. Settings come from .env (see .env.example);
# THEME=, PY=, TARGET= on the command line override them for one run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/uv/bin/uv)
# The uv the locks are compiled with and the images install with (one pin, in docker/pins.env, read by bin/lib.sh).
UV_VERSION := $(shell bash bin/lib.sh get docker/pins.env UV_VERSION)
VENV := .venv
# uv's cache goes under WORKING_DIR (on a notebook instance the persistent volume), never ~/.cache on the root
# disk. bin/lib.sh resolves it as every script does (environment; .env through the settings once the project venv
# exists; the default before), and gs_ds_env/layout.env says where under it: the Makefile has no rule of its own.
WORKING_DIR_RESOLVED := $(shell bash bin/lib.sh working-dir)
$(if $(WORKING_DIR_RESOLVED),,$(error WORKING_DIR cannot be used (the line above says why)))
UV_CACHE_UNDER_WORKING_DIR := $(shell bash bin/lib.sh get gs_ds_env/layout.env UV_CACHE_DIR)
$(if $(UV_CACHE_UNDER_WORKING_DIR),,$(error gs_ds_env/layout.env has no UV_CACHE_DIR: restore it from git))
export UV_CACHE_DIR ?= $(WORKING_DIR_RESOLVED)/$(UV_CACHE_UNDER_WORKING_DIR)
INV := $(VENV)/bin/inv
# Every value passed on to the shell is single-quoted, so THEME='x;rm -rf ~' reaches inv as a (refused) name.
quote = '$(subst ','\'',$(1))'
# A line break would split the recipe's shell command (a syntax error, or a second command): refused in one line.
define newline


endef
$(foreach name,THEME PY TARGET THRESHOLD,$(if $(findstring $(newline),$($(name))),$(error $(name) contains a line break: give it on one line, e.g. $(name)=tabular)))
OPTS = $(if $(THEME),--theme $(call quote,$(THEME))) $(if $(PY),--py $(call quote,$(PY)))
TARGET_OPT = $(if $(TARGET),--target $(call quote,$(TARGET)))
# The entry points a person types; every other task is `inv <task>` (`inv --list`), tested against this file.

.PHONY: help venv kernel deploy doctor test test-fast lint format bench

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/uv/bin/uv:
	@echo "uv not found: installing it into .tools/uv (pip --target; nothing else is touched)"
	python3 -m pip install --quiet --disable-pip-version-check --target .tools/uv 'uv==$(UV_VERSION)'

# --compile-bytecode: every inv call starts from .pyc, also where PYTHONDONTWRITEBYTECODE is set (CI images often
# set it; the SageMaker SDK alone is ~2 s to import from source).
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --compile-bytecode
	@touch $@

venv: $(VENV)/.synced ## Create/refresh the project's tool venv (.venv) from uv.lock

kernel: venv ## Build the theme kernel: make kernel THEME=tabular PY=3.12 [FORCE=1]
	$(INV) kernel $(OPTS) $(if $(FORCE),--force)

deploy: venv ## Kernel -> image -> data -> training job -> report (TARGET=local by default; DRY_RUN=1: the plan)
	$(INV) deploy $(OPTS) $(TARGET_OPT) $(if $(DRY_RUN),--dry-run)

doctor: venv ## Health table: disk (THRESHOLD=80), caches, Docker, tools, kernels, lifecycle; exit 1 on a fail
	$(INV) doctor $(if $(THRESHOLD),--threshold $(call quote,$(THRESHOLD)))

# The Dev Containers reference CLI, for the test that opens `inv devcontainer`'s file (needs Node.js's npm).
DEVCONTAINER_CLI_VERSION := 0.89.0
DEVCONTAINER_CLI := .tools/devcontainers/node_modules/.bin/devcontainer

$(DEVCONTAINER_CLI):
	npm install --no-audit --no-fund --silent --prefix .tools/devcontainers '@devcontainers/cli@$(DEVCONTAINER_CLI_VERSION)'

# make test runs the test files on TEST_WORKERS processes at once (pytest-xdist; 0: one after another in this one).
# A file stays on one worker, so its module fixtures (a torch image, a kernel) are built once; the tests mostly wait
# on Docker, uv and the network: two workers on two CPUs take ~0.6x the time (README: Tests and CI).
TEST_WORKERS ?= 2

test: venv $(if $(shell command -v npm 2>/dev/null),$(DEVCONTAINER_CLI)) ## Run the test suite (real uv, real kernels, real Docker when available)
	$(VENV)/bin/pytest -n $(call quote,$(TEST_WORKERS)) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: venv ## The inner loop: every test that needs no Docker and builds no kernel or image (make test runs them too)
	$(VENV)/bin/pytest -m "not docker and not slow" --durations=5 $(PYTEST_ARGS)

lint: venv ## ruff (check + format check), shellcheck on every script, hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/shellcheck -S style bin/*.sh .ci/*.sh .ci/run training/app docker/*.sh docker/workspace/*.sh bench/serving_anchor/serve
	$(VENV)/bin/hadolint docker/Dockerfile bench/serving_anchor/Dockerfile

format: venv ## Fix what ruff can: format, then import order and simple rewrites
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv ## Benchmarks: kernel creation vs venv+pip, disk per venv, image build and deploy timings
	$(VENV)/bin/python bench/environments.py
	$(VENV)/bin/python bench/serving.py

