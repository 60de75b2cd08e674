#!/usr/bin/env bash
# Restarts issue 25's two queues (models/README.md, "Issue 25") where the last session stopped:
# each queue's interrupted run resumes from the checkpoint kept in this folder (its best model
# so far and its log beside it), then the queue goes on with its remaining lines. One thread per
# run, as the runs started, so a resumed run gives the file an uninterrupted one would. Runs
# whose final model keep.sh put in done/ are finished and skipped.
#   models/campaign/resume/p150.sh OUTDIR        (from the repository root; build/cigt built)
# Outputs go to OUTDIR as queue.sh writes them; queue logs in OUTDIR/qa.log and qb.log.
set -eu
OUT=${1:?usage: p150.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CIGT=${CIGT:-$ROOT/build/cigt}
mkdir -p "$OUT"
for q in qa qb; do
	: > "$OUT/$q"
	while read -r cfg seed; do
		name=$(basename "$cfg" .json)_s$seed
		[ -e "$HERE/done/$name.safetensors" ] && continue  # finished (keep.sh)
		if [ -e "$HERE/$name.safetensors.ckpt" ]; then
			cp "$HERE/$name.safetensors" "$HERE/$name.safetensors.ckpt" \
			   "$HERE/$name.train.jsonl" "$OUT/"
			echo "$ROOT/models/campaign/$cfg $seed --resume $OUT/$name.safetensors.ckpt" >> "$OUT/$q"
		else
			echo "$ROOT/models/campaign/$cfg $seed" >> "$OUT/$q"
		fi
	done < "$HERE/p150.$q"
	CIGT=$CIGT THREADS=1 nohup "$ROOT/models/campaign/queue.sh" "$OUT/$q" "$OUT" \
		>> "$OUT/$q.log" 2>&1 &
done
echo "queues started; tail -f $OUT/qa.log $OUT/qb.log"
