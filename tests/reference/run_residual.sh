#!/bin/sh
# Cross-check of the C engine's residual trellises against the independent PyTorch reference
# (see README.md here): residual blocks (identity, 1x1-conv and pooling shortcuts, with and
# without the final relu), globalavgpool and router op chains, on three architectures:
#   residual_tiny.json (3x16x16), check_forward.py's residual_odd (1x28x28, odd shapes) and
#   models/cifar10_resnet110_trellis.json (3x32x32, the authors' CIFAR ResNet-110 trellis).
# Each has a model written by make_model.py (router batch norm calibrated so routes spread) and
# one by `cigt init --random-bn` (batch-norm folding exercised), evaluated by `cigt eval --dump`
# on Fashion-MNIST test images cropped/padded to the input size (fit_data.py: grey, replicated
# to 3 channels) and, for the colour models, on folders of one colour PPM per class
# (colour_folder.py). check_forward.py compares routes, classes, logits (1e-4) and each
# sample's MACs, and `cigt info --json` (MACs per expert/router/route, dense, shapes); and
# check_multipath.py the multipath tree on residual_odd at thresholds 0,0 and 0.3,0.2.
#   usage: run_residual.sh CIGT_BINARY SOURCE_ROOT
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT" >&2
	exit 2
fi
cigt=$1
root=$2
py=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
ref=$root/tests/reference

if [ ! -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
	echo "run_residual: $py with torch is missing (apt-get install python3-torch)" >&2
	exit 1
fi
if [ ! -f "$data/t10k-images-idx3-ubyte.gz" ]; then
	echo "run_residual: $data is missing (apt-get install dataset-fashion-mnist)" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-ref-res.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

fail=0
check() { # name model data limit [--folder]
	name=$1
	model=$2
	echo "== $name"
	if ! "$cigt" eval "$model" --data "$3" --limit "$4" --dump "$tmp/$name.jsonl" \
		>"$tmp/$name.eval" 2>&1; then
		cat "$tmp/$name.eval"
		echo "FAIL $name: cigt eval failed"
		fail=1
		return
	fi
	if ! "$cigt" info "$model" --json >"$tmp/$name.info"; then
		echo "FAIL $name: cigt info failed"
		fail=1
		return
	fi
	if [ $# -gt 4 ]; then
		set -- --folder "$3"
	else
		set -- --images "$3/t10k-images-idx3-ubyte.gz" --labels "$3/t10k-labels-idx1-ubyte.gz" \
			--limit "$4"
	fi
	if "$py" "$ref/check_forward.py" "$model" --dump "$tmp/$name.jsonl" --info "$tmp/$name.info" \
		--margin "$@"; then
		echo "ok   $name"
	else
		echo "FAIL $name: the engine and the PyTorch reference disagree"
		fail=1
	fi
}
models() { # name config data limit calibrate [colour]
	if "$py" "$ref/make_model.py" "$2" "$tmp/$1-cal.safetensors" --seed 5 --calibrate "$5"; then
		check "$1-calibrated" "$tmp/$1-cal.safetensors" "$3" "$4"
		if [ $# -gt 5 ]; then
			for s in 1 2; do
				"$py" "$ref/colour_folder.py" "$2" "$tmp/$1-colour$s" --seed $s &&
				check "$1-calibrated-colour$s" "$tmp/$1-cal.safetensors" \
					"$tmp/$1-colour$s" 1000 --folder
			done
		fi
	else
		echo "FAIL: make_model.py could not write a $1 model"
		fail=1
	fi
	if "$cigt" init "$2" -o "$tmp/$1-init.safetensors" --random-bn --seed 3; then
		check "$1-random-bn" "$tmp/$1-init.safetensors" "$3" "$4"
		if [ $# -gt 5 ]; then
			check "$1-random-bn-colour1" "$tmp/$1-init.safetensors" "$tmp/$1-colour1" 1000 \
				--folder
		fi
	else
		echo "FAIL: cigt init could not write a $1 model"
		fail=1
	fi
}

"$py" "$ref/fit_data.py" "$tmp/fm16" --size 16 16 --images 1000 &&
"$py" "$ref/fit_data.py" "$tmp/fm32" --size 32 32 --images 300 &&
"$py" "$ref/check_forward.py" --write-config residual_odd "$tmp/residual_odd.json" || {
	echo "FAIL: could not write the test data"
	exit 1
}
models tiny "$ref/residual_tiny.json" "$tmp/fm16" 1000 500 colour
models odd "$tmp/residual_odd.json" "$data" 1000 500
# multipath (format section 6) on a residual trellis: the tree of opened paths and its MACs
for t in 0,0 0.3,0.2; do
	echo "== odd-calibrated multipath $t"
	if "$cigt" eval "$tmp/odd-cal.safetensors" --thresholds $t --limit 500 \
		--dump "$tmp/odd-mp.jsonl" >"$tmp/odd-mp.eval" 2>&1 &&
		"$py" "$ref/check_multipath.py" "$tmp/odd-cal.safetensors" --dump "$tmp/odd-mp.jsonl" \
			--thresholds $t --limit 500; then
		echo "ok   odd-calibrated multipath $t"
	else
		echo "FAIL odd-calibrated multipath $t"
		fail=1
	fi
done
models resnet110 "$root/models/cifar10_resnet110_trellis.json" "$tmp/fm32" 300 300 colour
exit $fail
