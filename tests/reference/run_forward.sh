#!/bin/sh
# Cross-check of the C engine against the independent PyTorch reference (see README.md here):
# two random models of the reference architecture (one written by make_model.py with router
# batch norm calibrated so routes spread, one by `cigt init --random-bn` so folding is
# exercised), each evaluated by `cigt eval --dump` on 1,000 test images and compared by
# check_forward.py (identical routes and classes, logits within 1e-4).
#   usage: run_forward.sh CIGT_BINARY SOURCE_ROOT
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT" >&2
	exit 2
fi
cigt=$1
root=$2
py=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
arch=$root/models/fashion_mnist.json
ref=$root/tests/reference

if [ ! -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
	echo "run_forward: $py with torch is missing (apt-get install python3-torch)" >&2
	exit 1
fi
if [ ! -f "$data/t10k-images-idx3-ubyte.gz" ]; then
	echo "run_forward: $data is missing (apt-get install dataset-fashion-mnist)" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-ref.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

fail=0
check() { # name model
	echo "== $1"
	if ! "$cigt" eval "$2" --limit 1000 --dump "$tmp/$1.jsonl" >"$tmp/$1.eval" 2>&1; then
		cat "$tmp/$1.eval"
		echo "FAIL $1: cigt eval failed"
		fail=1
		return
	fi
	if "$py" "$ref/check_forward.py" "$2" --dump "$tmp/$1.jsonl" --margin; then
		echo "ok   $1"
	else
		echo "FAIL $1: the engine and the PyTorch reference disagree"
		fail=1
	fi
}

if "$py" "$ref/make_model.py" "$arch" "$tmp/calibrated.safetensors" --seed 5 --calibrate 500; then
	check calibrated "$tmp/calibrated.safetensors"
else
	echo "FAIL: make_model.py could not write a model"
	fail=1
fi
if "$cigt" init "$arch" -o "$tmp/random-bn.safetensors" --random-bn --seed 3; then
	check random-bn "$tmp/random-bn.safetensors"
else
	echo "FAIL: cigt init could not write a model"
	fail=1
fi
exit $fail
