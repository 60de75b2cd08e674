#!/bin/bash
# train_ab.sh OTHER_CIGT [ROUNDS] -- training throughput of two cigt binaries side by side:
# OTHER_CIGT (e.g. an older commit's build) and this tree's build/cigt, each running the
# benchmark's training rows (bench/run, section train: one epoch of models/fashion_mnist.json
# on the first 12,500 training images, 500 held out, 2 threads; the warm-up phase as
# configured, the routed phase with warmup_epochs 0), alternating A, B, A, B, ... ROUNDS times
# (default 3) so drifting load on a shared machine hits both alike. Prints samples/s of every
# run (from the JSON log) and the medians with the ratio B/A. Nothing is asserted (speed
# never is).
set -euo pipefail
cd "$(dirname "$0")/.."
other=${1:?usage: bench/train_ab.sh OTHER_CIGT [ROUNDS]}
rounds=${2:-3}
work=$(mktemp -d /tmp/cigt-train-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["train"]["warmup_epochs"]=0
json.dump(c, open(sys.argv[2], "w"))' models/fashion_mnist.json "$work/routed.json"
for r in $(seq "$rounds"); do
  for phase in warmup routed; do
    cfg=models/fashion_mnist.json
    [ "$phase" = routed ] && cfg=$work/routed.json
    for who in A B; do
      bin=$other
      [ "$who" = B ] && bin=build/cigt
      rm -f "$work/log.jsonl"
      "$bin" train --config "$cfg" --out "$work/m.safetensors" --epochs 1 \
        --train-samples 12500 --validation 500 --threads 2 --log "$work/log.jsonl" >/dev/null
      echo "$who $phase $(python3 -c 'import json,sys
print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["samples_per_second"])' \
        "$work/log.jsonl") $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done | python3 -c '
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in sys.stdin:
    who, phase, sps, load = line.split()
    rows[who, phase].append(float(sps))
    print("%s %-6s %8.0f samples/s  (load %s)" % (who, phase, float(sps), load))
for phase in ("warmup", "routed"):
    a, b = statistics.median(rows["A", phase]), statistics.median(rows["B", phase])
    print("median %-6s A %8.0f  B %8.0f  B/A %.3f" % (phase, a, b, b / a))
'
