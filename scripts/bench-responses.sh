#!/usr/bin/env bash
# What serving OpenAI's Responses API costs by how an instance serves it:
# passed through to a Responses API endpoint, converted to chat for a chat
# endpoint, and converted by way of chat to Anthropic's Messages API —
# against the same gateway serving chat; and Anthropic clients of an
# Anthropic endpoint (passed through) and of a chat endpoint (converted).
# One ringway process (one worker, CPU 0) with a route for each, side by
# side in interleaved rounds
# (`loadgen compare`, CPU time charged to the gateway); mock-llm (which
# serves all three APIs) and the load on CPU 1. JSON answers, then streams.
#   scripts/bench-responses.sh [OUT_DIR]    (default results/)
# Writes responses-api-json.json and responses-api-stream.json (the
# Responses routes), responses-chat-json.json / -stream.json (chat, the
# baseline) and responses-messages-json.json / -stream.json (Anthropic
# clients); the tables go to stdout (results/responses-api.md records a
# run). RINGWAY=path runs another build of the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
OUT=${1:-results}
mkdir -p "$OUT"
cargo build -q --release -p ringway -p loadgen -p mock-llm
B=target/release
dir=$(mktemp -d)
M=http://127.0.0.1:18201
route() { # name, uri, provider, endpoint
  cat <<Y
      - name: $1
        uris: [$2]
        plugins:
          ai-proxy-multi:
            keepalive_pool: 256
            instances:
              - {name: $1, provider: $3, weight: 1, auth: {header: {Authorization: "Bearer k"}},
                 options: {model: m}, override: {endpoint: "$4"}}
Y
}
{
  bench_gateway_header 18200
  route chat /chat/v1/chat/completions openai-compatible "$M/v1/chat/completions"
  route native /native/v1/responses openai-compatible "$M/v1/responses"
  route converted /converted/v1/responses openai-compatible "$M/v1/chat/completions"
  route anthropic /anthropic/v1/responses anthropic "$M/v1/messages"
  route messages /messages/v1/messages anthropic "$M/v1/messages"
  route messages-to-chat /messages-to-chat/v1/messages openai-compatible "$M/v1/chat/completions"
} > "$dir/gw.yaml"
taskset -c 1 $B/mock-llm --listen 127.0.0.1:18201 --tokens 16 >/dev/null 2>&1 &
MOCK=$!
taskset -c 0 ${RINGWAY:-$B/ringway} -c "$dir/gw.yaml" >"$dir/gw.log" 2>&1 &
GW=$!
trap 'kill $GW $MOCK 2>/dev/null; rm -rf "$dir"' EXIT
wait_for_port 18200
u() { echo "$1=http://127.0.0.1:18200/$1/v1/$2"; }
for mode in json stream; do
  flag=""; [ $mode = stream ] && flag="--stream"
  echo "== chat ($mode)"
  $B/loadgen compare --cpu 1 -c 16 -d 3 --rounds ${ROUNDS:-4} -q $flag \
    --target "direct=$M/v1/chat/completions" --target "$(u chat chat/completions)" --pid chat=$GW \
    --json "$OUT/responses-chat-$mode.json"
  echo "== Responses API ($mode)"
  $B/loadgen compare --cpu 1 -c 16 -d 3 --rounds ${ROUNDS:-4} -q $flag --template responses \
    --target "direct=$M/v1/responses" --target "$(u native responses)" \
    --target "$(u converted responses)" --target "$(u anthropic responses)" \
    --pid native=$GW --pid converted=$GW --pid anthropic=$GW \
    --json "$OUT/responses-api-$mode.json"
  echo "== Anthropic clients ($mode)"
  $B/loadgen compare --cpu 1 -c 16 -d 3 --rounds ${ROUNDS:-4} -q $flag --template anthropic \
    --target "direct=$M/v1/messages" --target "$(u messages messages)" \
    --target "$(u messages-to-chat messages)" --pid messages=$GW --pid messages-to-chat=$GW \
    --json "$OUT/responses-messages-$mode.json"
done
