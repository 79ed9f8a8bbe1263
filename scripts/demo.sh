#!/usr/bin/env bash
# Builds ringway and mock-llm (release), starts two mock LLM instances and
# the gateway in front of them on conf/demo.yaml, prints what to try, and
# runs until Ctrl-C (which stops both).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p ringway -p mock-llm

MOCK_A=127.0.0.1:18001
MOCK_B=127.0.0.1:18002
./target/release/mock-llm --listen "$MOCK_A" --name openai-a --listen "$MOCK_B" --name deepseek-b \
  --ttft-ms 150 --itl-ms 25 --tokens 24 &
MOCK_PID=$!
trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/18002) 2>/dev/null; then break; fi
  sleep 0.05
done

cat <<'MSG'

ringway demo: gateway on http://127.0.0.1:9080, two mock LLM instances behind it
(weights 8:2). Try:

  curl -s http://127.0.0.1:9080/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"What is 1+1?"}]}'

  curl -sN http://127.0.0.1:9080/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"stream":true,"messages":[{"role":"user","content":"Tell me a story"}]}'

  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="http://127.0.0.1:9080/v1", api_key="demo"); print(c.chat.completions.create(model="any", messages=[{"role":"user","content":"hi"}]).choices[0].message.content)'

Ctrl-C stops everything.

MSG
exec ./target/release/ringway -c conf/demo.yaml
