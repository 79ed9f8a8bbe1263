# Shared by the benchmark scripts (sourced, not run): the start of a
# one-worker gateway config and waiting for a listener.

# bench_gateway_header PORT: a one-worker gateway on 127.0.0.1:PORT without
# admin, metrics or status, up to the `routes:` of service `bench` (the caller
# appends its routes). METRICS=on turns the metrics listener on (PORT+10),
# METRICS=unlabelled too but without the labelled families
# (`gateway.metrics.labels: false`), to measure what recording them costs.
bench_gateway_header() {
  local metrics="{enabled: false}"
  case "${METRICS:-off}" in
    on) metrics="{listen: \"127.0.0.1:$(($1 + 10))\"}" ;;
    unlabelled) metrics="{listen: \"127.0.0.1:$(($1 + 10))\", labels: false}" ;;
  esac
  cat <<Y
gateway:
  listen: ["127.0.0.1:$1"]
  workers: 1
  admin: {enabled: false}
  metrics: $metrics
  status: {enabled: false}
services:
  - name: bench
    routes:
Y
}

# wait_for_port PORT [SECONDS]: polls until something answers HTTP on
# 127.0.0.1:PORT, 100 tries SECONDS apart (default 0.2).
wait_for_port() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep "${2:-0.2}"
  done
}
