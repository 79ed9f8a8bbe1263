#!/usr/bin/env bash
# Installs the LiteLLM proxy (from PyPI) into .venv-litellm for the optional
# LiteLLM column of the benchmark suite (`loadgen suite --litellm`).
# Idempotent; prints the path of the `litellm` executable.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.80.0  # newer releases move the proxy into litellm-proxy, not on every mirror
if [ ! -x .venv-litellm/bin/python ]; then
  python3 -m venv .venv-litellm >&2
fi
if ! .venv-litellm/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$VERSION')" 2>/dev/null; then
  echo "==> installing litellm[proxy]==$VERSION" >&2
  .venv-litellm/bin/pip install --quiet --disable-pip-version-check "litellm[proxy]==$VERSION" >&2
fi
echo "$PWD/.venv-litellm/bin/litellm"
