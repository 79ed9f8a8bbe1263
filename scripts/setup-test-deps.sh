#!/usr/bin/env bash
# Installs what the test suite needs, idempotently:
#   - a Python venv at .venv with the official openai and anthropic SDKs
#     (the SDK wire-compatibility tests run them as real clients);
#   - Debian packages used by tests (redis-server for shared rate limits,
#     etcd-server for the etcd configuration source, prometheus for the
#     metrics test that scrapes ringway with a real Prometheus server);
#   - tansu, a Kafka-protocol broker, for the kafka-logger tests (built
#     with cargo once, about 10 minutes on 2 cores).
# Safe to run repeatedly; does nothing when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

REQ=scripts/requirements-test.txt
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python - "$REQ" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    if version(name) != want:
        raise SystemExit(1)
PY
then
  echo "==> installing Python test packages"
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$REQ"
fi

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # No recommends: prometheus would bring its node exporter along. The
  # tests start their own servers; none is left running as a service.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

TANSU_VERSION=0.6.0
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "==> installing tansu $TANSU_VERSION (Kafka-protocol broker; builds once, 10-15 min)"
  cargo install --quiet --locked tansu --version "$TANSU_VERSION" --features dynostore
fi
