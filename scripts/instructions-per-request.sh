#!/usr/bin/env bash
# Instructions per request of a ringway build, counted by callgrind
# (deterministic, unlike wall clock on a noisy VM): one worker on CPU 0
# under valgrind, mock-llm (two instances) and `loadgen run -c 4` on
# CPU 1; a dump after a 1,000-request warm-up, another after 3,000 more
# (a dump resets the counters, so the second holds only those).
#   scripts/instructions-per-request.sh BINARY [LOADGEN_ARGS…]
# e.g. --stream, or --body benches/payloads/agent-32k.json (an agent's body).
# EXTRA_PLUGINS adds plugins to the route (YAML flow mappings, one per line,
# e.g. 'ai-rate-limiting: {limit: 100000000, time_window: 3600}').
# PORT_BASE (default 18000) moves its ports (gateway +80, mocks +1 and +2)
# so two runs can share a machine.
# ROUTE=plain makes the route a plain upstream (`upstream: {nodes: [first
# mock]}`, proxy/ forwarding, no plugin) instead of ai-proxy-multi (the
# default, ROUTE=ai); EXTRA_PLUGINS still apply.
# Compare builds side by side on one machine (results/instructions-per-request.md).
set -euo pipefail
BIN=$(realpath "$1"); shift; ARGS=("$@")
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
cargo build -q --release -p loadgen -p mock-llm
B=target/release
P=${PORT_BASE:-18000}
GW=$((P + 80)) M1=$((P + 1)) M2=$((P + 2))
dir=$(mktemp -d)
{
bench_gateway_header $GW
if [ "${ROUTE:-ai}" = plain ]; then
cat <<Y
      - name: chat
        uris: [/v1/chat/completions]
        upstream: {nodes: [{host: 127.0.0.1, port: $M1, weight: 1}]}
Y
[ -n "${EXTRA_PLUGINS:-}" ] && echo "        plugins:"
else
cat <<Y
      - name: chat
        uris: [/v1/chat/completions]
        plugins:
          ai-proxy-multi:
            instances:
              - {name: i0, provider: openai-compatible, weight: 8, auth: {header: {Authorization: "Bearer k"}},
                 options: {model: gpt-4o-mini}, override: {endpoint: "http://127.0.0.1:$M1/v1/chat/completions"}}
              - {name: i1, provider: openai-compatible, weight: 2, auth: {header: {Authorization: "Bearer k"}},
                 options: {model: gpt-4o-mini}, override: {endpoint: "http://127.0.0.1:$M2/v1/chat/completions"}}
Y
fi
while IFS= read -r line; do [ -n "$line" ] && echo "          $line"; done <<< "${EXTRA_PLUGINS:-}"
} > "$dir/gw.yaml"
taskset -c 1 $B/mock-llm --listen 127.0.0.1:$M1 --name m1 --listen 127.0.0.1:$M2 --name m2 --tokens 16 >/dev/null 2>&1 &
MOCK=$!
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" "$BIN" -c "$dir/gw.yaml" >/dev/null 2>&1 &
VG=$!
trap 'kill -9 $VG $MOCK 2>/dev/null; rm -rf "$dir"' EXIT
wait_for_port $GW 0.3
total() {
  callgrind_control -d $VG >/dev/null; sleep 1
  callgrind_annotate "$(ls -t "$dir"/cg.* | head -1)" | awk '/PROGRAM TOTALS/ && !n {gsub(",", "", $1); print $1; n = 1}'
}
taskset -c 1 $B/loadgen run -c 4 -n 1000 --warmup 0 -q "${ARGS[@]}" http://127.0.0.1:$GW/v1/chat/completions >/dev/null
total >/dev/null
taskset -c 1 $B/loadgen run -c 4 -n 3000 --warmup 0 -q "${ARGS[@]}" http://127.0.0.1:$GW/v1/chat/completions >/dev/null
echo "$(( $(total) / 3000 )) instructions per request${ARGS[*]:+ (${ARGS[*]})}"
