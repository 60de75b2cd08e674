#!/usr/bin/env bash
# run.sh SECONDS [TARGET...] -- runs each libFuzzer target for SECONDS (all eight by default),
# JOBS at a time (default 2), from a copy of its seed corpus, and prints one line per target:
# executions, executions per second, corpus size and coverage. Exit 1 if any target crashed,
# leaked, timed out or broke a property; the input that did it is kept in
# $FUZZ_WORK/<target>/ (crash-*, leak-*, timeout-*, oom-*) and its log in
# $FUZZ_WORK/<target>.log. Turn such an input into a regression test by copying it to
# tests/fuzz/regress/<target>/ (see README.md).
#
# Needs the libFuzzer build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
# (or `make fuzz-build`). Environment: BUILD (default build-fuzz), JOBS (default 2),
# FUZZ_WORK (default a new temporary directory), NICE (default 15, the niceness to run at).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:?usage: run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(v1 v2 image model config arch repo grpc http)
build=${BUILD:-$root/build-fuzz}
jobs=${JOBS:-2}
work=${FUZZ_WORK:-$(mktemp -d /tmp/cigt-fuzz.XXXXXX)}
mkdir -p "$work"

for t in "${targets[@]}"; do
  if [ ! -x "$build/tests/fuzz/fuzz_$t" ]; then
    echo "run.sh: $build/tests/fuzz/fuzz_$t is missing; build with:" >&2
    echo "  CC=clang meson setup $build -Dfuzz=true && ninja -C $build" >&2
    exit 2
  fi
done

one() {
  local t=$1 dir="$work/$1"
  rm -rf "$dir" "$dir.corpus"
  mkdir -p "$dir" "$dir.corpus"
  cp "$here/corpus/$t/"* "$dir.corpus/"
  # Leaks are checked (libFuzzer's default); -timeout flags a single input taking > 10 s.
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  nice -n "${NICE:-15}" "$build/tests/fuzz/fuzz_$t" "$dir.corpus" \
    -max_total_time="$secs" -dict="$here/json.dict" -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/" \
    >"$dir.log" 2>&1
  echo $? >"$dir.rc"
}

pids=()
for t in "${targets[@]}"; do
  one "$t" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait

fail=0
printf '%-7s %8s %11s %8s %8s %7s  %s\n' target seconds execs exec/s corpus cov result
for t in "${targets[@]}"; do
  log="$work/$t.log"
  rc=$(cat "$work/$t.rc")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  line=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$line")
  art=$(ls "$work/$t" 2>/dev/null | head -1)
  if [ "$rc" = 0 ] && [ -z "$art" ]; then
    res=ok
  else
    res="FAILED (exit $rc${art:+, input $work/$t/$art}; log $log)"
    fail=1
    grep -E 'ERROR|SUMMARY|property violated|runtime error' "$log" | head -5 | sed 's/^/    /'
  fi
  printf '%-7s %8s %11s %8s %8s %7s  %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" \
    "${corp:-?}" "${cov:-?}" "$res"
done
echo "work directory: $work"
exit $fail
