#!/usr/bin/env bash
# Builds ringway's container image without any registry and smoke-tests it
# the way a container runtime runs it:
#
#   1. builds ringway and mock-llm (release) on the host;
#   2. makes a stand-in for deploy/Dockerfile's runtime base
#      (gcr.io/distroless/cc-debian12:nonroot: Debian 12's glibc and
#      libgcc_s, a "nonroot" user 65532) FROM scratch, from the host's own
#      copies of the libraries the binary links (`ldd`);
#   3. builds deploy/Dockerfile's runtime stage itself — its lines after the
#      last FROM, verbatim, but for the binary, which comes from step 1
#      instead of the builder stage (the Rust builder image cannot be
#      pulled here either);
#   4. checks the image's user, entrypoint, command, stop signal and ports;
#   5. runs it read-only, all capabilities dropped, no new privileges,
#      on the host network, in front of mock-llm: /status/ready answers 200,
#      a chat is served, then `podman stop` (the image's STOPSIGNAL) while a
#      stream is open: /status/ready answers 503, the stream ends with
#      [DONE], the container exits 0.
#
# Needs podman (Debian: apt-get install podman buildah runc) and the
# gateway's ports 9080, 7085, 9091 free on the host. Where the default OCI
# runtime (crun) cannot run containers (a cgroup v1/v2 hybrid host: "cgroups
# in hybrid mode not supported") runc is used if installed. Exits non-zero
# naming the step that failed, 0 with "image smoke: OK".
#
#   scripts/image-smoke.sh            # image tag localhost/ringway:smoke
#   IMAGE=localhost/ringway:dev scripts/image-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/ringway:smoke}
BASE=localhost/ringway-smoke-base:latest
NAME=ringway-smoke-$$

step() { printf '==> %s\n' "$*"; }
fail() { printf 'image smoke: FAILED: %s\n' "$*" >&2; exit 1; }

if ! command -v podman >/dev/null 2>&1; then
  fail "podman is not installed (apt-get install -y podman buildah runc); no image was built"
fi
PODMAN=(podman)
if command -v runc >/dev/null 2>&1; then
  # crun refuses cgroup v1/v2 hybrid hosts; runc runs there.
  PODMAN+=(--runtime runc --cgroup-manager cgroupfs)
fi
# Podman's default limits (nofile 1048576) cannot be set where the host
# lacks CAP_SYS_RESOURCE: keep the open-file limit at the host's hard
# limit, and processes at 4096 (ringway runs a thread per worker and a few
# more).
RUN_LIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=4096:4096")

for port in 9080 7085 9091; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port is in use on this host (the image's configuration listens there)"
  fi
done

step "cargo build --release -p ringway -p mock-llm"
cargo build --release --locked -p ringway -p mock-llm
BIN=target/release/ringway

CTX=$(mktemp -d)
MOCK_PID=""
cleanup() {
  "${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
  rm -rf "$CTX"
}
trap cleanup EXIT

step "base image $BASE (stand-in for distroless cc-debian12:nonroot)"
mkdir -p "$CTX/base/rootfs/etc" "$CTX/base/rootfs/tmp"
chmod 1777 "$CTX/base/rootfs/tmp"
for lib in $(ldd "$BIN" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$CTX/base/rootfs$(dirname "$lib")"
  cp -L "$lib" "$CTX/base/rootfs$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "$CTX/base/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$CTX/base/rootfs/etc/group"
cat > "$CTX/base/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
"${PODMAN[@]}" build --quiet --pull=never -t "$BASE" "$CTX/base" >/dev/null

step "image $IMAGE from deploy/Dockerfile's runtime stage"
mkdir -p "$CTX/image/deploy" "$CTX/image/out"
cp "$BIN" "$CTX/image/out/ringway"
cp deploy/ringway.yaml "$CTX/image/deploy/ringway.yaml"
last_from=$(grep -n '^FROM ' deploy/Dockerfile | tail -1 | cut -d: -f1)
grep -q '^COPY --from=builder /out/ringway ' deploy/Dockerfile \
  || fail "deploy/Dockerfile's runtime stage no longer copies /out/ringway from the builder"
{
  echo "FROM $BASE"
  tail -n "+$((last_from + 1))" deploy/Dockerfile \
    | sed 's#^COPY --from=builder /out/ringway #COPY out/ringway #'
} > "$CTX/image/Containerfile"
"${PODMAN[@]}" build --quiet --pull=never -t "$IMAGE" "$CTX/image" >/dev/null

step "image configuration"
cfg=$("${PODMAN[@]}" image inspect --format '{{json .Config}}' "$IMAGE")
python3 - "$cfg" <<'PY' || fail "the image's configuration is not what deploy/Dockerfile says"
import json, sys
c = json.loads(sys.argv[1])
want = {
    "User": "65532:65532",
    "Entrypoint": ["ringway"],
    "Cmd": ["-c", "/etc/ringway/ringway.yaml"],
    "StopSignal": "SIGTERM",
}
bad = {k: c.get(k) for k, v in want.items() if c.get(k) != v}
ports = sorted(c.get("ExposedPorts", {}))
if ports != ["7085/tcp", "9080/tcp", "9091/tcp"]:
    bad["ExposedPorts"] = ports
if bad:
    print("  unexpected:", bad, file=sys.stderr)
    sys.exit(1)
print("  user 65532:65532, entrypoint ringway, cmd -c /etc/ringway/ringway.yaml, stop signal SIGTERM, ports 9080 7085 9091")
PY

step "mock-llm on the host"
MOCK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/mock-llm --listen "127.0.0.1:$MOCK_PORT" --name openai --api-key sk-smoke \
  --tokens 12 --itl-ms 100 >/dev/null 2>&1 &
MOCK_PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$MOCK_PORT") 2>/dev/null && break
  sleep 0.05
done

step "podman run (read-only, cap-drop ALL, no-new-privileges, host network)"
"${PODMAN[@]}" run -d --name "$NAME" --network host --read-only --cap-drop ALL \
  --security-opt no-new-privileges "${RUN_LIMITS[@]}" \
  -e OPENAI_API_KEY=sk-smoke \
  -e "OPENAI_CHAT_ENDPOINT=http://127.0.0.1:$MOCK_PORT/v1/chat/completions" \
  "$IMAGE" >/dev/null || fail "the container did not start"

ready=""
for _ in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7085/status/ready || true)
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  "${PODMAN[@]}" logs "$NAME" >&2 || true
  fail "/status/ready never answered 200"
fi
status=$(curl -s http://127.0.0.1:7085/status)
echo "  /status/ready 200; /status: $status"

step "a chat through the container"
headers=$(mktemp -p "$CTX")
body=$(curl -s -D "$headers" http://127.0.0.1:9080/v1/chat/completions \
  -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
grep -qi '^HTTP/1.1 200' "$headers" || fail "chat: $(head -1 "$headers") $body"
grep -qi '^x-ringway-instance: openai' "$headers" || fail "chat not served by the openai instance"
echo "  200 from instance openai"
curl -sf http://127.0.0.1:9091/apisix/prometheus/metrics | grep -q '^apisix_http_status{' \
  || fail "no apisix_http_status on 9091 /apisix/prometheus/metrics"
echo "  metrics on 9091 /apisix/prometheus/metrics"

step "podman stop (STOPSIGNAL) while a stream is open"
stream_out=$(mktemp -p "$CTX")
curl -sN http://127.0.0.1:9080/v1/chat/completions -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"a story"}]}' \
  > "$stream_out" &
CURL_PID=$!
for _ in $(seq 1 100); do
  [ -s "$stream_out" ] && break
  sleep 0.02
done
"${PODMAN[@]}" stop -t 45 "$NAME" >/dev/null &
STOP_PID=$!
draining=""
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7085/status/ready || true)
  if [ "$code" = 503 ]; then draining=1; break; fi
  sleep 0.02
done
[ -n "$draining" ] || fail "/status/ready did not turn 503 while draining"
echo "  /status/ready 503 while draining"
wait "$CURL_PID" || true
tail -c 200 "$stream_out" | grep -q 'data: \[DONE\]' || fail "the open stream was cut: $(tail -c 200 "$stream_out")"
echo "  the open stream finished with [DONE]"
wait "$STOP_PID" || fail "podman stop failed"
exit_code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
logs=$("${PODMAN[@]}" logs "$NAME" 2>&1)
[ "$exit_code" = 0 ] || { echo "$logs" >&2; fail "exit code $exit_code"; }
grep -q 'shutting down' <<<"$logs" || fail "no drain line in the log"
grep -q 'io_uring is unavailable' <<<"$logs" && echo "  (io_uring refused by the container's seccomp profile: epoll)"
echo "  exit code 0"
echo "image smoke: OK ($IMAGE)"
