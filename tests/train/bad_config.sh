#!/bin/sh
# Bad configurations (issue 3): `cigt train` must stop with exit status 1 and a ONE-line error
# on stderr naming the offending key or file, before any training starts (nothing on stdout,
# no model or checkpoint written). Cases: unknown keys (in "train", nested in
# "train.temperature", in an op), impossible shapes (a pooling kernel larger than its input, a
# router pool larger than the feature map, a last layer that does not end in one logit per
# class), an out-of-range value, the training levers (train.init: missing or mismatching
# source; train.distill: unknown key, missing teacher; train.ensemble on a single-path network), missing and truncated data files, a missing config file.
#   usage: bad_config.sh CIGT_BINARY SOURCE_ROOT
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT" >&2
	exit 2
fi
cigt=$1
root=$2
config=$root/models/fashion_mnist.json
py=/usr/bin/python3
[ -x "$py" ] || py=python3
data=/usr/share/datasets/fashion-mnist

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-badconfig.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# variant NAME PYTHON-STATEMENT: write $tmp/NAME.json = the reference config changed by the
# statement (on the dict c)
variant() {
	"$py" - "$config" "$tmp/$1.json" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
EOF
}

fail=0
n=0
# expect NAME WORD... -- ARGS: `cigt train ARGS` must exit 1 with one stderr line containing
# every WORD, print nothing on stdout and write no file
expect() {
	name=$1
	shift
	words=
	while [ "$1" != "--" ]; do
		words="$words$1
"
		shift
	done
	shift
	n=$((n + 1))
	out=$tmp/$name.model
	"$cigt" train --out "$out" --epochs 1 --train-samples 250 --validation 50 --threads 1 "$@" \
		>"$tmp/$name.stdout" 2>"$tmp/$name.stderr"
	rc=$?
	err=$(cat "$tmp/$name.stderr")
	lines=$(wc -l <"$tmp/$name.stderr")
	why=
	[ $rc -eq 1 ] || why="exit $rc, expected 1"
	[ -z "$why" ] && [ "$lines" -ne 1 ] && why="$lines lines on stderr, expected 1"
	if [ -z "$why" ]; then
		while IFS= read -r w; do
			[ -z "$w" ] && continue
			case $err in
			*"$w"*) ;;
			*) why="stderr does not name '$w'" ;;
			esac
		done <<EOF
$words
EOF
	fi
	case $err in *"line -1"* | *"column -1"*) [ -z "$why" ] && why="message has a meaningless position: $err" ;; esac
	[ -z "$why" ] && [ -s "$tmp/$name.stdout" ] && why="stdout not empty: training started?"
	[ -z "$why" ] && { [ -e "$out" ] || [ -e "$out.ckpt" ]; } && why="a model or checkpoint was written"
	if [ -z "$why" ]; then
		echo "ok   $name: $err"
	else
		echo "FAIL $name: $why"
		sed 's/^/     stdout: /' "$tmp/$name.stdout" | head -n 3
		sed 's/^/     stderr: /' "$tmp/$name.stderr" | head -n 5
		fail=1
	fi
}

variant unknown-train-key 'c["train"]["learning_rate_typo"] = 0.1'
expect unknown-train-key learning_rate_typo unknown-train-key.json -- \
	--config "$tmp/unknown-train-key.json"

variant unknown-nested-key 'c["train"]["temperature"]["floor"] = 0.1'
expect unknown-nested-key floor temperature -- --config "$tmp/unknown-nested-key.json"

variant unknown-op-key 'c["layers"][1]["ops"][0]["dilation"] = 2'
expect unknown-op-key dilation -- --config "$tmp/unknown-op-key.json"

variant pool-too-large 'c["layers"][2]["ops"][3]["kernel"] = 8'
expect pool-too-large "layers[2].ops[3]" -- --config "$tmp/pool-too-large.json"

variant router-pool-too-large 'c["layers"][0]["router"]["pool"] = 20'
expect router-pool-too-large "layers[0].router" pool -- --config "$tmp/router-pool-too-large.json"

variant wrong-logits 'c["layers"][2]["ops"][11]["out"] = 7'
expect wrong-logits "layers[2]" -- --config "$tmp/wrong-logits.json"

variant zero-batch 'c["train"]["batch_size"] = 0'
expect zero-batch batch_size -- --config "$tmp/zero-batch.json"

expect missing-config "$tmp/nope.json" "No such file" -- --config "$tmp/nope.json"
variant_text() { printf '%s' "$2" >"$tmp/$1.json"; }
variant_text truncated-config '{"name": "x", "layers": ['
expect truncated-config "$tmp/truncated-config.json" "line 1" -- --config "$tmp/truncated-config.json"
variant augment-bad-key 'c["train"]["augment"] = {"flip": True, "rotate": 15}'
expect augment-bad-key "train.augment: unknown key 'rotate'" -- --config "$tmp/augment-bad-key.json"

# train.init: a relative path is resolved against the config's directory; a source whose ops
# differ is refused naming the first mismatching op
variant init-missing 'c["train"]["init"] = {"from": "nope.safetensors"}'
expect init-missing train.init.from "$tmp/nope.safetensors" -- --config "$tmp/init-missing.json"
variant init-mismatch 'c["train"]["init"] = {"from": "'"$root"'/models/thick.safetensors"}'
expect init-mismatch train.init.from "op 4 does not match" "64x14x14" -- --config "$tmp/init-mismatch.json"
variant init-bad-key 'c["train"]["init"] = {"from": "x", "scale": 1}'
expect init-bad-key "train.init: unknown key 'scale'" -- --config "$tmp/init-bad-key.json"
variant distill-bad-key 'c["train"]["distill"] = {"teacher": "x", "alpha": 0.5}'
expect distill-bad-key "train.distill: unknown key 'alpha'" -- --config "$tmp/distill-bad-key.json"
variant distill-missing 'c["train"]["distill"] = {"teacher": "nope.safetensors"}'
expect distill-missing train.distill.teacher "$tmp/nope.safetensors" -- \
	--config "$tmp/distill-missing.json"
# paths that ensemble need a second expert at the last layer
"$py" - "$root/models/thin.json" "$tmp/thin-ensemble.json" <<'EOF2'
import json, sys
c = json.load(open(sys.argv[1]))
c["train"]["ensemble"] = {"share": 0.5}
json.dump(c, open(sys.argv[2], "w"))
EOF2
expect thin-ensemble train.ensemble "one expert" -- --config "$tmp/thin-ensemble.json"

expect missing-data-dir /nonexistent/cigt-data/train-images-idx3-ubyte.gz -- \
	--config "$config" --data /nonexistent/cigt-data

mkdir -p "$tmp/nolabels" "$tmp/truncated"
if [ -f "$data/train-images-idx3-ubyte.gz" ]; then
	ln -s "$data/train-images-idx3-ubyte.gz" "$tmp/nolabels/"
	expect missing-labels "$tmp/nolabels/train-labels-idx1-ubyte.gz" -- \
		--config "$config" --data "$tmp/nolabels"
	ln -s "$data/train-labels-idx1-ubyte.gz" "$tmp/truncated/"
	head -c 100000 "$data/train-images-idx3-ubyte.gz" >"$tmp/truncated/train-images-idx3-ubyte.gz"
	expect truncated-images "$tmp/truncated/train-images-idx3-ubyte.gz" -- \
		--config "$config" --data "$tmp/truncated"
fi

[ $fail -eq 0 ] && echo "all $n bad configurations rejected before training"
exit $fail
