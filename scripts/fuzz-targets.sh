#!/usr/bin/env bash
# Runs cargo-fuzz targets one after another, each for SECONDS (default
# 600), from their seeds and regressions, and prints the executions and
# the outcome of each. Needs cargo-fuzz and a nightly toolchain (or
# RUSTC_BOOTSTRAP=1 with stable): docs/fuzzing.md.
#   scripts/fuzz-targets.sh [SECONDS] [TARGET…]   (default: every target)
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-600}; shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo +nightly fuzz list 2>/dev/null || RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
if cargo +nightly --version >/dev/null 2>&1; then FUZZ=(cargo +nightly fuzz); else FUZZ=(env RUSTC_BOOTSTRAP=1 cargo fuzz); fi
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  dirs=("corpus/$t" "seeds/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  "${FUZZ[@]}" run -O "$t" "${dirs[@]}" -- -max_total_time="$SECS" >"$log" 2>&1
  rc=$?
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+')
  if [ $rc -eq 0 ]; then
    echo "$t: ${runs:-?} runs in ${SECS} s, no failure"
  else
    echo "$t: FAILED (exit $rc); the input is under fuzz/artifacts/$t/"; tail -30 "$log"; status=1
  fi
  rm -f "$log"
done
exit $status
