#!/usr/bin/env bash
# Copies the running campaign runs' checkpoints, best-so-far models and logs from OUTDIR into
# this folder every INTERVAL seconds (default 600), so a session that stops without warning
# leaves them in the checkout for p150.sh to resume. A run whose queue last logged its end has
# its final model and log copied once to done/ (p150.sh skips it) and its resume files removed.
#   nohup models/campaign/resume/keep.sh OUTDIR [INTERVAL] > OUTDIR/keep.log 2>&1 &
set -u
OUT=${1:?usage: keep.sh OUTDIR [INTERVAL]}; EVERY=${2:-600}
HERE=$(cd "$(dirname "$0")" && pwd)
while :; do
	for ck in "$OUT"/*.safetensors.ckpt; do
		[ -e "$ck" ] || continue
		name=$(basename "$ck" .safetensors.ckpt)
		# Finished when the queue's last word on it is its end (a resumed run starts again).
		if grep -hs -E " (start|end) $name( |\$)" "$OUT"/q?.log | tail -n1 | grep -q " end $name rc=0"; then
			mkdir -p "$HERE/done"
			cmp -s "$OUT/$name.train.jsonl" "$HERE/done/$name.train.jsonl" && continue
			for f in "$name.safetensors" "$name.train.jsonl"; do
				cp "$OUT/$f" "$HERE/done/.$f.tmp" && mv "$HERE/done/.$f.tmp" "$HERE/done/$f"
			done
			rm -f "$HERE/$name.safetensors.ckpt" "$HERE/$name.safetensors" "$HERE/$name.train.jsonl"
			echo "$(date -u +%FT%TZ) done $name ($(wc -l < "$HERE/done/$name.train.jsonl") log lines)"
			continue
		fi
		for f in "$name.safetensors.ckpt" "$name.safetensors" "$name.train.jsonl"; do
			[ -e "$OUT/$f" ] && cp "$OUT/$f" "$HERE/.$f.tmp" && mv "$HERE/.$f.tmp" "$HERE/$f"
		done
		echo "$(date -u +%FT%TZ) kept $name ($(wc -l < "$HERE/$name.train.jsonl") log lines)"
	done
	sleep "$EVERY"
done
