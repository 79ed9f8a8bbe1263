#!/usr/bin/env bash
# Regenerates every benchmark in results/: builds release binaries,
# installs nginx from Debian's packages if missing (for the side-by-side
# columns), and runs `loadgen suite` with the gateway pinned to CPU 0 and
# mock-llm + load on CPU 1. Takes ~12 minutes; run by hand, not in CI.
# Installs the LiteLLM proxy into .venv-litellm for its column
# (WITH_LITELLM=0 skips it). Extra arguments go to `loadgen suite`
# (e.g. --rounds 3 --run-secs 1); OUT=dir writes elsewhere than results/.
#
# HALTPOLL_NS=200000 (root, KVM guests whose cpuidle driver is haltpoll):
# idle vCPUs poll that long before halting, for this run only (restored
# on exit). On such a VM a halted vCPU's wake-up dominates every target's
# latency; results/light-load-latency.md shows both settings. The
# setting in force is in the results' "Machine" line.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${HALTPOLL_NS:-}" ]; then
  knob=/sys/module/haltpoll/parameters/guest_halt_poll_ns
  if [ ! -w "$knob" ]; then
    echo "HALTPOLL_NS: $knob is not writable (needs root and the haltpoll cpuidle driver)" >&2
    exit 2
  fi
  was=$(cat "$knob")
  trap 'echo "$was" > "$knob"' EXIT
  echo "$HALTPOLL_NS" > "$knob"
fi
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
target/release/loadgen suite --out "${OUT:-results}" --ringway target/release/ringway "${LITELLM[@]}" "$@"
