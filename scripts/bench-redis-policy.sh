#!/usr/bin/env bash
# What an ai-rate-limiting budget costs by where it lives: the local
# policy (atomics), `policy: redis` (a Redis round trip to check each
# request and one to charge it, APISIX's way) and `policy: redis` with
# `redis_lease_tokens` (claims in chunks, admitted locally). One ringway
# process (one worker, CPU 0) with a route for each, side by side in
# interleaved rounds (`loadgen compare`); mock-llm, redis-server and the
# load on CPU 1. Budgets are never reached, so every request is admitted
# and charged. Needs redis-server (scripts/setup-test-deps.sh installs it).
#   scripts/bench-redis-policy.sh [OUT_DIR]    (default results/)
# Writes redis-policy-c16.json and redis-policy-c1.json; the tables go to
# stdout (results/redis-policy.md records a run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
OUT=${1:-results}
mkdir -p "$OUT"
command -v redis-server >/dev/null || { echo "redis-server not found (scripts/setup-test-deps.sh)" >&2; exit 2; }
cargo build -q --release -p ringway -p loadgen -p mock-llm
B=target/release
dir=$(mktemp -d)
instance='{name: a, provider: openai-compatible, weight: 1, auth: {header: {Authorization: "Bearer k"}}, options: {model: gpt-4o-mini}, override: {endpoint: "http://127.0.0.1:18101/v1/chat/completions"}}'
route() { # name, extra ai-rate-limiting fields
  cat <<Y
      - name: $1
        uris: [/$1/v1/chat/completions]
        plugins:
          ai-rate-limiting: {limit: 10000000000, time_window: 3600$2}
          ai-proxy-multi:
            keepalive_pool: 256
            instances:
              - $instance
Y
}
redis=', policy: redis, redis_host: 127.0.0.1, redis_port: 18102'
{
  bench_gateway_header 18100
  route local ""
  route redis "$redis"
  route redis-lease "$redis, redis_lease_tokens: 10000"
} > "$dir/gw.yaml"
taskset -c 1 redis-server --port 18102 --save "" --appendonly no >/dev/null 2>&1 &
REDIS=$!
taskset -c 1 $B/mock-llm --listen 127.0.0.1:18101 --tokens 16 >/dev/null 2>&1 &
MOCK=$!
taskset -c 0 $B/ringway -c "$dir/gw.yaml" >"$dir/gw.log" 2>&1 &
GW=$!
trap 'kill $GW $MOCK $REDIS 2>/dev/null; rm -rf "$dir"' EXIT
wait_for_port 18100
url() { echo "$1=http://127.0.0.1:18100/$1/v1/chat/completions"; }
for c in ${CONCURRENCY:-16 1}; do
  $B/loadgen compare --cpu 1 -c $c -d 3 --rounds 6 -q \
    --target "$(url local)" --target "$(url redis)" --target "$(url redis-lease)" \
    --pid local=$GW --pid redis=$GW --pid redis-lease=$GW \
    --json "$OUT/redis-policy-c$c.json"
done
