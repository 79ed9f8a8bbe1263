#!/usr/bin/env bash
# Builds ringway and mock-llm (release), starts two mock LLM instances and
# the gateway in front of them on conf/demo.yaml (ai-proxy-multi, 8:2,
# fallback, health checks, a metered route), prints what to try, and runs
# until Ctrl-C, which stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p ringway -p mock-llm

./target/release/mock-llm --listen 127.0.0.1:18001 --name openai-a --listen 127.0.0.1:18002 --name deepseek-b \
  --ttft-ms 150 --itl-ms 25 --tokens 24 &
MOCK_PID=$!
GW_PID=""
cleanup() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null || true
  kill "$MOCK_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/18002) 2>/dev/null; then break; fi
  sleep 0.05
done

cat <<'MSG'

ringway demo: gateway on http://127.0.0.1:9080 in front of two mock LLM
instances (openai-instance weight 8, deepseek-instance weight 2). Try:

  # a chat completion; -i shows X-Ringway-Instance / -Attempts / -Overhead-Us
  curl -si http://127.0.0.1:9080/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"What is 1+1?"}]}'

  # streamed (SSE), with usage in the last chunk
  curl -sN http://127.0.0.1:9080/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me a story"}]}'

  # OpenAI's Responses API, served by these chat endpoints (converted both ways)
  curl -s http://127.0.0.1:9080/v1/responses -H 'Content-Type: application/json' \
    -d '{"model":"any","instructions":"Be brief","input":"What is 1+1?"}'

  # a Responses API conversation over two accounts: the follow-up goes to
  # the account that stored the first answer (X-Ringway-Instance)
  id=$(curl -s http://127.0.0.1:9080/accounts/v1/responses -H 'Content-Type: application/json' \
    -d '{"model":"any","input":"What is 1+1?"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -si http://127.0.0.1:9080/accounts/v1/responses -H 'Content-Type: application/json' \
    -d "{\"model\":\"any\",\"input\":\"And 2+2?\",\"previous_response_id\":\"$id\"}"
  curl -si http://127.0.0.1:9080/accounts/v1/responses/$id
  # the same with the Conversations API: responses in a conversation go to
  # the account that holds it
  conv=$(curl -s http://127.0.0.1:9080/accounts/v1/conversations -H 'Content-Type: application/json' \
    -d '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -si http://127.0.0.1:9080/accounts/v1/responses -H 'Content-Type: application/json' \
    -d "{\"model\":\"any\",\"input\":\"Hi\",\"conversation\":\"$conv\"}"
  curl -s "http://127.0.0.1:9080/accounts/v1/conversations/$conv/items?order=asc"

  # the official OpenAI SDK (pip install openai)
  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="http://127.0.0.1:9080/v1", api_key="demo"); print(c.chat.completions.create(model="any", messages=[{"role":"user","content":"hi"}]).choices[0].message.content)'

  # chaos: openai-a answers 429 (Retry-After: 5) for 30 s; requests fall back
  curl -s -X POST http://127.0.0.1:18001/_control -d '{"status":429,"retry_after":5,"for_secs":30}'

  # key-auth + a 2000-token/min budget on openai-instance for consumer `demo`
  curl -si http://127.0.0.1:9080/metered/v1/chat/completions -H 'apikey: demo-key' \
    -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"hi"}]}'

  curl -s http://127.0.0.1:9091/metrics | grep ringway_            # Prometheus metrics
  curl -s http://127.0.0.1:9180/apisix/admin/routes -H 'X-API-KEY: demo-admin-key'   # Admin API
  tail -f /tmp/ringway-demo-access.log                            # JSON access log

Ctrl-C stops everything.

MSG
./target/release/ringway -c conf/demo.yaml &
GW_PID=$!
wait "$GW_PID"
