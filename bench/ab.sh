#!/bin/bash
# ab.sh OTHER_CIGTD [ROUNDS] [SECONDS] -- throughput and latency of two cigtd binaries side by
# side on one model: OTHER_CIGTD (e.g. main's build) and this tree's build/cigtd, each serving
# models/fashion_mnist.safetensors, under wrk (native JSON, 1 image per request, 64
# connections), alternating A, B, A, B, ... ROUNDS times (default 3) for SECONDS each (default
# 10), so drifting load on a shared machine hits both alike. Prints one line per run and the
# medians. Bodies come from bench/http/request_bodies.py. Nothing is asserted (speed never is).
set -euo pipefail
cd "$(dirname "$0")/.."
other=${1:?usage: bench/ab.sh OTHER_CIGTD [ROUNDS] [SECONDS]}
rounds=${2:-3}
secs=${3:-10}
work=$(mktemp -d /tmp/cigt-ab.XXXXXX)
python3 bench/http/request_bodies.py "$work/bodies" --images-per-request 1 --bodies 200 \
  --formats native_json >/dev/null
m=models/fashion_mnist.safetensors
"$other" --model $m --listen 127.0.0.1:18301 --max-connections-per-ip 0 --log-level warn &
a=$!
build/cigtd --model $m --listen 127.0.0.1:18302 --max-connections-per-ip 0 --log-level warn &
b=$!
trap 'kill $a $b 2>/dev/null; rm -rf "$work"' EXIT
sleep 2
for r in $(seq "$rounds"); do
  for who in A:18301 B:18302; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    wrk -t2 -c64 -d"${secs}s" --timeout 5s -s bench/http/native_json.lua \
      "http://127.0.0.1:${who#*:}" -- "$work/bodies/native_json-1" |
      sed -n "s/^WRK_JSON /${who%%:*} $load /p"
  done
done | python3 -c '
import json, statistics, sys
rows = {"A": [], "B": []}
for line in sys.stdin:
    who, load, js = line.split(" ", 2)
    j = json.loads(js)
    d = j["duration_us"] * 1e-6
    r = (j["requests"] / d, j["latency_us"]["p50"] / 1e3, j["latency_us"]["p99"] / 1e3,
         sum(j["errors"].values()))
    rows[who].append(r)
    print("%s  %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  (load %s)" % ((who,) + r + (load,)))
for who, name in (("A", sys.argv[1]), ("B", "build/cigtd")):
    rs = rows[who]
    print("%s median: %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  (%s)" % (
        who, statistics.median(x[0] for x in rs), statistics.median(x[1] for x in rs),
        statistics.median(x[2] for x in rs), name))
' "$other"
