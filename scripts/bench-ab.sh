#!/usr/bin/env bash
# Two ringway configurations (or builds) side by side: what a setting or a
# change costs in CPU per request. Both gateways pinned to CPU 0 (one
# worker each) over one mock-llm (`--tokens 16`); `loadgen compare` on
# CPU 1, closed loop, 32 connections, interleaved rounds, A the baseline.
# The route is ai-proxy-multi over two instances weighted 8:2.
#
#   scripts/bench-ab.sh NAME_A BIN_A NAME_B BIN_B [loadgen compare args]
#
# Env: EXTRA_A / EXTRA_B, top-level YAML added to that side's file
# (`global_rules:`, `plugin_metadata:` ...; `\n` for new lines);
# METRICS_A / METRICS_B, that side's `gateway.metrics` (default: on,
# labelled); ROUNDS (default 6). Run by hand, not in CI (~1 minute).
# Used for results/observability-cost.md and results/allocator.md.
set -euo pipefail
cd "$(dirname "$0")/.."
NA=$1 BA=$2 NB=$3 BB=$4
shift 4
MOCK=18601
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

config() { # port metrics extra
  cat <<Y
gateway:
  listen: ["127.0.0.1:$1"]
  workers: 1
  admin: {enabled: false}
  metrics: $2
  status: {enabled: false}
$(printf '%b' "$3")
services:
  - name: bench
    routes:
      - name: chat
        uris: [/v1/chat/completions]
        plugins:
          ai-proxy-multi:
            instances:
              - {name: a, provider: openai-compatible, weight: 8, auth: {header: {Authorization: "Bearer k"}}, options: {model: gpt-4o-mini}, override: {endpoint: "http://127.0.0.1:$MOCK/v1/chat/completions"}}
              - {name: b, provider: openai-compatible, weight: 2, auth: {header: {Authorization: "Bearer k"}}, options: {model: gpt-4o-mini}, override: {endpoint: "http://127.0.0.1:$MOCK/v1/chat/completions"}}
Y
}

taskset -c 1 target/release/mock-llm --listen 127.0.0.1:$MOCK --tokens 16 --max-recorded 0 >/dev/null 2>&1 &
pids+=($!)
default_a='{listen: "127.0.0.1:18612"}'
default_b='{listen: "127.0.0.1:18613"}'
config 18602 "${METRICS_A:-$default_a}" "${EXTRA_A:-}" >"$tmp/a.yaml"
config 18603 "${METRICS_B:-$default_b}" "${EXTRA_B:-}" >"$tmp/b.yaml"
taskset -c 0 "$BA" -c "$tmp/a.yaml" >"$tmp/a.log" 2>&1 &
A=$!
pids+=($A)
taskset -c 0 "$BB" -c "$tmp/b.yaml" >"$tmp/b.log" 2>&1 &
B=$!
pids+=($B)
source scripts/lib/bench.sh
wait_for_port 18602 || { cat "$tmp/a.log"; exit 1; }
wait_for_port 18603 || { cat "$tmp/b.log"; exit 1; }
target/release/loadgen compare \
  --target "$NA=http://127.0.0.1:18602/v1/chat/completions" \
  --target "$NB=http://127.0.0.1:18603/v1/chat/completions" \
  --pid "$NA=$A" --pid "$NB=$B" --cpu 1 -c 32 -d 4 --rounds "${ROUNDS:-6}" "$@"
