#!/bin/sh
# Cross-check of multipath routing and escalation against the independent PyTorch reference
# (check_multipath.py, written from proto/model-format.md section 6): every operating point of
# the shipped model (escalating ones find models/thick.safetensors beside it), and explicit
# thresholds on a random model whose routers are calibrated so paths open often. Each run is
# `cigt eval --dump` on the first 500 test images, compared sample by sample (classes, argmax
# route, the set of paths, MACs, escalation, posteriors within 1e-5).
#   usage: run_multipath.sh CIGT_BINARY SOURCE_ROOT
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT" >&2
	exit 2
fi
cigt=$1
root=$2
py=/usr/bin/python3
ref=$root/tests/reference
model=$root/models/fashion_mnist.safetensors

if [ ! -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
	echo "run_multipath: $py with torch is missing (apt-get install python3-torch)" >&2
	exit 1
fi
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
	echo "run_multipath: dataset-fashion-mnist is missing" >&2
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-mp.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

fail=0
check() { # label model option value
	echo "== $1"
	if ! "$cigt" eval "$2" "$3" "$4" --limit 500 --dump "$tmp/d.jsonl" >"$tmp/eval" 2>&1; then
		cat "$tmp/eval"
		echo "FAIL $1: cigt eval failed"
		fail=1
		return
	fi
	if "$py" "$ref/check_multipath.py" "$2" --dump "$tmp/d.jsonl" "$3" "$4" --limit 500; then
		echo "ok   $1"
	else
		echo "FAIL $1"
		fail=1
	fi
}

points=$("$cigt" info "$model" --json |
	"$py" -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["operating_points"]))')
if [ -z "$points" ]; then
	echo "FAIL: $model has no operating points"
	fail=1
fi
for p in $points; do
	check "point $p" "$model" --compute "$p"
done

if "$py" "$ref/make_model.py" "$root/models/fashion_mnist.json" "$tmp/cal.safetensors" \
	--seed 5 --calibrate 500 >/dev/null; then
	for t in 0,0 0.3,0.2 0.45,1 1,0.1 0.75,0.75; do
		check "calibrated random model, thresholds $t" "$tmp/cal.safetensors" --thresholds "$t"
	done
else
	echo "FAIL: make_model.py could not write a model"
	fail=1
fi
exit $fail
