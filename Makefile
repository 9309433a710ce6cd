# Two commands on a fresh machine: `make demo` and `make test`.
# Every install goes through uv.lock (hashed, whole tree): the scheduler, the workers and CI install
# the same bytes. `make lock` moves the lock forward on purpose; `make test-latest` tries the newest
# releases in a throwaway venv without touching it.
PY ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PY)
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

SHELL := bash
# One line per step, with its time, instead of minutes of silence.
step = @t0=$$(date +%s%N); echo "==> $(1)" >&2; $(2) && \
	t=$$(( ($$(date +%s%N) - t0) / 100000000 )); echo "    $(1): done in $$((t / 10)).$$((t % 10)) s" >&2

.PHONY: venv demo test lint typecheck unit bench clean lock upgrade lock-check test-latest

$(UV):
	$(call step,bootstrapping uv $(UV_VERSION) into $(UV_HOME) (from PyPI),\
		$(PY) -m venv $(UV_HOME) && $(UV_HOME)/bin/python -m pip install -qq --disable-pip-version-check uv==$(UV_VERSION))

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(call step,installing the locked dependency tree into $(VENV) (uv sync --locked),\
		$(UV) sync --locked --extra dev --quiet)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(call step,running the demo,$(BIN)/contact-exporter demo)

# Fails when pyproject.toml and uv.lock disagree (someone edited one without the other).
lock-check: | $(UV)
	$(call step,checking uv.lock against pyproject.toml,$(UV) lock --check --quiet)

lock: | $(UV)
	$(UV) lock

upgrade: | $(UV)
	$(UV) lock --upgrade

lint: $(STAMP)
	$(BIN)/ruff check pipelines flows tests bench
	$(BIN)/ruff format --check pipelines flows tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration"

test: lock-check lint typecheck
	$(BIN)/pytest -q

# The newest releases allowed by pyproject.toml, resolved today, in a throwaway venv: upstream
# drift seen on purpose. The lock and .venv are not touched.
test-latest: | $(UV)
	rm -rf .venv-latest
	$(call step,installing the newest releases pyproject.toml allows into .venv-latest,\
		$(PY) -m venv .venv-latest && $(UV) pip install --quiet --python .venv-latest/bin/python --upgrade -e '.[dev]')
	.venv-latest/bin/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-latest .tools .prefect .pytest_cache .mypy_cache .ruff_cache data/exports data/warehouse.duckdb bench/cache
