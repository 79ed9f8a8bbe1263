#!/usr/bin/env bash
# Regenerates every benchmark in results/: builds release binaries,
# installs nginx from Debian's packages if missing (for the side-by-side
# columns), and runs `loadgen suite` with the gateway pinned to CPU 0 and
# mock-llm + load on CPU 1. Takes ~12 minutes; run by hand, not in CI.
# Installs the LiteLLM proxy into .venv-litellm for its column
# (WITH_LITELLM=0 skips it). Extra arguments go to `loadgen suite`
# (e.g. --rounds 3 --run-secs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "==> installing nginx-light (side-by-side baseline)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null
fi
cargo build --release -p ringway -p loadgen
LITELLM=()
if [ "${WITH_LITELLM:-1}" = 1 ]; then
  LITELLM=(--litellm "$(bash scripts/setup-litellm.sh)")
fi
exec target/release/loadgen suite --out results --ringway target/release/ringway "${LITELLM[@]}" "$@"
