#!/bin/sh
# Training determinism and interruption (issue 3): same seed and threads give a bit-identical
# model file; Ctrl-C saves a checkpoint, prints how to resume and exits 130; resuming from that
# checkpoint gives the same model file, bit for bit, as the run that was never interrupted.
#   A: train (2 epochs, 1,500 images, 300 validation, seed 1, 2 threads; the regularised
#      config, so the augmentation draws are covered too)
#      with --snapshots-from 1: A.e001 and A.e002 written, the best epoch's equal to A
#      cigt average of A.e001 and A.e002: every float the two's mean, the provenance the
#      fields both agree on plus the epochs averaged; another architecture refused
#   B: the same again, without snapshots                -> cmp A B (snapshots change nothing)
#   C: the same, SIGINT shortly after epoch 1 is logged -> exit 130, resume hint, C.ckpt
#      then --resume C.ckpt --snapshots-from 2         -> it continues (epoch 2 only), cmp A C,
#                                                          cmp A.e002 C.e002
#   usage: determinism.sh CIGT_BINARY SOURCE_ROOT
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT" >&2
	exit 2
fi
cigt=$1
root=$2
config=$root/models/fashion_mnist_regularized.json  # with weight decay and augmentation
py=/usr/bin/python3
[ -x "$py" ] || py=python3
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
	echo "determinism: $data is missing (apt-get install dataset-fashion-mnist)" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-determinism.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail=0
bad() {
	echo "FAIL: $*"
	fail=1
}
train() { # name [extra args]
	name=$1
	shift
	"$cigt" train --config "$config" --out "$tmp/$name.safetensors" --epochs 2 \
		--train-samples 1500 --validation 300 --seed 1 --threads 2 "$@"
}
epochs_logged() { # log -> the epoch numbers, space separated
	"$py" -c 'import json, sys
print(" ".join(str(json.loads(l)["epoch"]) for l in open(sys.argv[1]) if l.strip()))' "$1"
}

echo "== A and B: two identical runs (A also saves a snapshot of each epoch)"
for r in A B; do
	snap=
	[ $r = A ] && snap="--snapshots-from 1"
	# shellcheck disable=SC2086
	if ! train $r --log "$tmp/$r.jsonl" $snap >"$tmp/$r.out" 2>&1; then
		cat "$tmp/$r.out"
		echo "FAIL: run $r failed"
		exit 1
	fi
done
cat "$tmp/A.out"
[ "$(epochs_logged "$tmp/A.jsonl")" = "1 2" ] || bad "run A logged epochs '$(epochs_logged "$tmp/A.jsonl")', expected '1 2'"
if cmp "$tmp/A.safetensors" "$tmp/B.safetensors"; then
	echo "ok   same seed, same threads: bit-identical model files"
else
	bad "two runs with the same seed and threads differ"
fi
for e in 001 002; do
	[ -s "$tmp/A.e$e.safetensors" ] || bad "no snapshot A.e$e.safetensors of epoch $e"
done
[ -e "$tmp/B.e001.safetensors" ] && bad "run B saved snapshots without --snapshots-from"
best=$("$py" -c 'import json, sys
print([r["epoch"] for r in map(json.loads, filter(str.strip, open(sys.argv[1]))) if r["best"]][-1])' "$tmp/A.jsonl")
if cmp "$tmp/A.safetensors" "$tmp/A.e00$best.safetensors"; then
	echo "ok   --snapshots-from 1: one file per epoch; the best (epoch $best) is the model file"
else
	bad "the snapshot of the best epoch ($best) differs from the model file"
fi
if cmp -s "$tmp/A.e001.safetensors" "$tmp/A.e002.safetensors"; then
	bad "the snapshots of epochs 1 and 2 are the same file"
fi
echo "== cigt average of the two snapshots"
if "$cigt" average -o "$tmp/avg.safetensors" "$tmp/A.e001.safetensors" "$tmp/A.e002.safetensors" \
	>"$tmp/avg.out" 2>&1; then
	# the mean worked out here, in double, from the files' bytes; and the provenance
	if check=$("$py" - "$tmp/A.e001.safetensors" "$tmp/A.e002.safetensors" "$tmp/avg.safetensors" <<'PY'
import json, struct, sys
from array import array
def read(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__")
    t = {}
    for k, v in h.items():
        a = array("f")
        a.frombytes(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
        t[k] = a
    return t, json.loads(meta["provenance"])
(a, pa), (b, pb), (m, pm) = read(sys.argv[1]), read(sys.argv[2]), read(sys.argv[3])
assert sorted(m) == sorted(a), "tensor names differ"
n = 0
for k in a:
    want = array("f", [(x + y) / 2 for x, y in zip(a[k], b[k])])
    assert m[k] == want, "%s is not the mean of the two snapshots" % k
    n += len(want)
assert pm["tool"] == "cigt average", pm
assert pm["averaged"] == [{"file": sys.argv[1], "epoch": 1}, {"file": sys.argv[2], "epoch": 2}], pm["averaged"]
for k in ("seed", "epochs", "data", "config"):
    assert pm[k] == pa[k], k
assert "epoch" not in pm and "validation_accuracy" not in pm, pm
print("%d floats the mean of the two; provenance %s" % (n, sorted(pm)))
PY
	); then
		echo "ok   average: $check"
	else
		bad "cigt average: $check"
	fi
else
	cat "$tmp/avg.out"
	bad "cigt average of two snapshots failed"
fi
if "$cigt" average -o "$tmp/bad.safetensors" "$tmp/A.safetensors" "$root/models/thin.safetensors" \
	>"$tmp/bad.out" 2>&1; then
	bad "cigt average of a trellis and the thin network was accepted"
elif grep -q "has another architecture than $tmp/A.safetensors" "$tmp/bad.out" &&
	[ ! -e "$tmp/bad.safetensors" ]; then
	echo "ok   average of two architectures: refused, $(cat "$tmp/bad.out")"
else
	bad "cigt average of two architectures: $(cat "$tmp/bad.out")"
fi
if "$cigt" train --config "$config" --out "$tmp/D.safetensors" --epochs 2 --snapshots-from 3 \
	>"$tmp/D.out" 2>&1; then
	bad "--snapshots-from 3 on a 2-epoch run was accepted"
elif grep -q -- "--snapshots-from 3 is beyond the run's 2 epochs" "$tmp/D.out"; then
	echo "ok   --snapshots-from beyond the last epoch: refused, $(cat "$tmp/D.out")"
else
	bad "--snapshots-from 3 on a 2-epoch run: unexpected message: $(cat "$tmp/D.out")"
fi

echo "== C: interrupted with SIGINT in epoch 2, then resumed"
# (exec: $! must be cigt itself, not a subshell that ignores SIGINT as a background job)
(exec "$cigt" train --config "$config" --out "$tmp/C.safetensors" --epochs 2 \
	--train-samples 1500 --validation 300 --seed 1 --threads 2 \
	--log "$tmp/C1.jsonl" >"$tmp/C1.out" 2>"$tmp/C1.err") &
pid=$!
# wait for epoch 1 to be logged (at most 120 s), then interrupt during epoch 2
i=0
while [ ! -s "$tmp/C1.jsonl" ] && [ $i -lt 1200 ] && kill -0 "$pid" 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
done
sleep 0.3
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
pid=
cat "$tmp/C1.out" "$tmp/C1.err"
if [ $rc -ne 130 ]; then
	bad "the interrupted run exited $rc, expected 130 (finished before the SIGINT?)"
	exit 1
fi
echo "ok   SIGINT: exit 130"
ckpt=$tmp/C.safetensors.ckpt
if [ -s "$ckpt" ]; then
	echo "ok   checkpoint written: $ckpt"
else
	bad "no checkpoint at $ckpt after SIGINT"
	exit 1
fi
if grep -q -- "--resume $ckpt" "$tmp/C1.out" "$tmp/C1.err"; then
	echo "ok   the resume hint names --resume $ckpt"
else
	bad "no resume hint naming '--resume $ckpt' in the output"
fi
# a checkpoint given where a model is expected says it is one and how to resume (issue 29)
if msg=$("$cigt" eval "$ckpt" --limit 1 2>&1); then
	bad "cigt eval accepted the checkpoint $ckpt as a model"
elif echo "$msg" | grep -q -- "a training checkpoint, not a model file.*--resume $ckpt"; then
	echo "ok   cigt eval CKPT names it a checkpoint and --resume $ckpt"
else
	bad "cigt eval CKPT: '$msg' does not name a checkpoint and --resume $ckpt"
fi
[ "$(epochs_logged "$tmp/C1.jsonl")" = "1" ] ||
	bad "the interrupted run logged epochs '$(epochs_logged "$tmp/C1.jsonl")', expected '1'"
# the model saved so far (epoch 1's) must not already be the final one, or cmp proves nothing
if [ -f "$tmp/C.safetensors" ] && cmp -s "$tmp/C.safetensors" "$tmp/A.safetensors"; then
	bad "the interrupted run's model already equals the finished run's"
fi

if ! train C --resume "$ckpt" --log "$tmp/C2.jsonl" --snapshots-from 2 >"$tmp/C2.out" 2>&1; then
	cat "$tmp/C2.out"
	bad "the resumed run failed"
	exit 1
fi
cat "$tmp/C2.out"
# it must continue where it stopped, not train again from the start
[ "$(epochs_logged "$tmp/C2.jsonl")" = "2" ] ||
	bad "the resumed run logged epochs '$(epochs_logged "$tmp/C2.jsonl")', expected '2' only"
# the resumed epoch 2 must report exactly A's figures: validation accuracy (the model alone)
# and the training sums over the whole epoch, the steps before the interruption included
# (they travel in the checkpoint)
va() { # log epoch
	"$py" -c 'import json, sys
print([[r[k] for k in ("validation_accuracy", "steps", "loss", "ce", "ig", "train_accuracy")]
       for r in map(json.loads, filter(str.strip, open(sys.argv[1])))
       if r["epoch"] == int(sys.argv[2])])' "$1" "$2"
}
if [ "$(va "$tmp/C2.jsonl" 2)" = "$(va "$tmp/A.jsonl" 2)" ]; then
	echo "ok   resumed epoch 2 logs the uninterrupted run's figures: $(va "$tmp/A.jsonl" 2)"
else
	bad "epoch 2 [validation accuracy, steps, loss, ce, ig, train accuracy]: resumed $(va "$tmp/C2.jsonl" 2), uninterrupted $(va "$tmp/A.jsonl" 2)"
fi
if cmp "$tmp/A.safetensors" "$tmp/C.safetensors"; then
	echo "ok   interrupted + resumed: bit-identical to the uninterrupted run"
else
	bad "the resumed model differs from the uninterrupted run's"
fi
if cmp "$tmp/A.e002.safetensors" "$tmp/C.e002.safetensors"; then
	echo "ok   the resumed run's snapshot of epoch 2 equals the uninterrupted run's"
else
	bad "the resumed run's snapshot of epoch 2 differs from the uninterrupted run's"
fi
[ -e "$tmp/C.e001.safetensors" ] && bad "the resumed run saved a snapshot of epoch 1 (--snapshots-from 2)"
exit $fail
