#!/usr/bin/env bash
# Runs the campaign queue: each line of QUEUE is "CONFIG SEED [extra cigt train args]"; a line
# is claimed by moving it to QUEUE.done before it starts, so lines may be appended while it runs.
# Outputs go to OUTDIR/<config>_s<seed>.{safetensors,train.jsonl,out}. Usage:
#   nohup models/campaign/queue.sh QUEUE OUTDIR > OUTDIR/queue.log 2>&1 &
set -u
Q=$1; OUT=$2; CIGT=${CIGT:-build/cigt}; THREADS=${THREADS:-2}
while :; do
	line=$(head -n1 "$Q" 2>/dev/null)
	[ -z "$line" ] && { sleep 30; [ -s "$Q" ] || { [ -e "$Q.stop" ] && exit 0; continue; }; continue; }
	sed -i 1d "$Q"; echo "$line" >> "$Q.done"
	set -- $line; cfg=$1; seed=$2; shift 2
	name=$(basename "$cfg" .json)_s$seed
	echo "$(date -u +%FT%TZ) start $name $*"
	nice -n 19 "$CIGT" train --config "$cfg" --seed "$seed" --threads "$THREADS" \
		--out "$OUT/$name.safetensors" --log "$OUT/$name.train.jsonl" "$@" \
		> "$OUT/$name.out" 2>&1
	echo "$(date -u +%FT%TZ) end $name rc=$?"
done
