#!/bin/sh
# Cross-check of one C training step against the independent PyTorch autograd reference
# (check_train_step.py, written from DESIGN.md section 2 and proto/model-format.md): a random
# model of the reference architecture with calibrated router batch norm (routes spread), one
# `cigt grad` step on the first 125 training images in
#   * warm-up mode at T = 25 (rows multiply: 125 / 2x125 / 4x250),
#   * argmax mode at T = 1 (each row one expert),
#   * warm-up mode at T = 1 (at T = 25 the information-gain gradient reaching the experts
#     through the router inputs is below the 1e-3 tolerance; at T = 1 it is not),
# each compared by check_train_step.py (loss 1e-5 relative, every gradient 1e-3 of its op's
# scale, running statistics 1e-4). Then the checker is run with two deliberate deviations from
# the spec (router inputs detached, biased variance in the running statistics) and must FAIL,
# so a checker that cannot fail is caught too.
#
#   usage: run_train_step.sh CIGT_BINARY SOURCE_ROOT [one-row]
#
# one-row: a batch of 5 in argmax mode, where experts receive 0, 1 and 2 rows. The project's
# batch-norm guard is per channel: with fewer than 2 VALUES per channel (rows * H * W < 2) an
# expert normalises with its running statistics and leaves them unchanged; a single image's
# feature map is normalised by its own spatial statistics, as torch's BatchNorm2d does. Exit 0 if
# the C step follows that rule, 1 otherwise.
set -u
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT [one-row]" >&2
	exit 2
fi
cigt=$1
root=$2
mode=${3:-main}
py=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
config=$root/models/fashion_mnist.json
ref=$root/tests/reference

if [ ! -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
	echo "run_train_step: $py with torch is missing (apt-get install python3-torch)" >&2
	exit 99
fi
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
	echo "run_train_step: $data is missing (apt-get install dataset-fashion-mnist)" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-step.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
model=$tmp/model.safetensors
if ! "$py" "$ref/make_model.py" "$config" "$model" --seed 5 --calibrate 500; then
	echo "FAIL: make_model.py could not write a model"
	exit 99
fi

grad() { # name mode temperature batch
	if ! "$cigt" grad "$model" --config "$config" --out "$tmp/$1.safetensors" --batch "$4" \
		--mode "$2" --temperature "$3" >"$tmp/$1.log" 2>&1; then
		cat "$tmp/$1.log"
		echo "FAIL $1: cigt grad failed"
		return 1
	fi
	cat "$tmp/$1.log"
}
check() { # name [checker options]
	name=$1
	shift
	"$py" "$ref/check_train_step.py" "$model" "$tmp/$name.safetensors" --config "$config" "$@"
}

if [ "$mode" = one-row ]; then
	echo "== argmax T=1, batch 5 (experts with 0, 1 and 2 rows)"
	grad small argmax 1 5 || exit 1
	echo "-- per-channel guard (fewer than 2 values per channel: running statistics)"
	if ! check small --bn-guard values; then
		echo "FAIL one-row: an expert that received one row does not follow the per-channel"
		echo "     batch-norm guard"
		exit 1
	fi
	echo "-- the per-row guard must differ here (so this case really exercises one row)"
	if check small --bn-guard rows >/dev/null; then
		echo "FAIL one-row: no expert received a single row; the case tests nothing"
		exit 1
	fi
	echo "ok   one-row: the C step follows the per-channel guard"
	exit 0
fi

fail=0
for c in "warmup 25" "argmax 1" "warmup 1"; do
	set -- $c
	name=$1-T$2
	echo "== $1 T=$2, batch 125"
	if grad "$name" "$1" "$2" 125; then
		if check "$name"; then
			echo "ok   $name"
		else
			echo "FAIL $name: the C trainer and the PyTorch reference disagree"
			fail=1
		fi
	else
		fail=1
	fi
done

# The checker must be able to fail: two deviations from the spec, each must be detected.
for c in "argmax-T1 detach-router-input" "warmup-T25 biased-running-var"; do
	set -- $c
	[ -f "$tmp/$1.safetensors" ] || continue
	echo "== checker with --mutate $2 on $1 (must FAIL)"
	check "$1" --mutate "$2" --show 0 >"$tmp/mutant.out" 2>&1
	rc=$?
	head -n 1 "$tmp/mutant.out" | cut -c1-160
	if [ $rc -eq 1 ]; then
		echo "ok   the checker detects $2"
	else
		cat "$tmp/mutant.out"
		echo "FAIL: the checker did not detect the deviation $2 (exit $rc)"
		fail=1
	fi
done
exit $fail
