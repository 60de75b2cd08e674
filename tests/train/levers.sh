#!/bin/sh
# The training levers end to end (models/README.md, the `train` section), on one or two steps:
#   router_weight_decay: written equal to weight_decay it changes nothing (same tensors as
#     without the key); set apart, one step changes the routers' tensors and no expert's
#   distill: a thin student distilled from thick.safetensors logs a positive "distill" term
#   ensemble + label_smoothing: a trellis step after warm-up runs and logs a finite loss
#   init: a same-architecture warm start of thin.safetensors scores above 85% on validation
#     after one step at a small learning rate (random weights score near 10%)
#   usage: levers.sh CIGT_BINARY SOURCE_ROOT
set -u
if [ $# -ne 2 ]; then
	echo "usage: $0 CIGT_BINARY SOURCE_ROOT" >&2
	exit 2
fi
cigt=$1
root=$2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cigt-levers.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0

# variant BASE NAME PYTHON-STATEMENT: $tmp/NAME.json = BASE changed by the statement (on dict c)
variant() {
	"$py" - "$1" "$tmp/$2.json" "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}
train() { # name [args]
	name=$1
	shift
	"$cigt" train --config "$tmp/$name.json" --out "$tmp/$name.safetensors" --epochs 1 \
		--train-samples 125 --validation 500 --threads 2 --log "$tmp/$name.jsonl" "$@" \
		>"$tmp/$name.out" 2>&1 || { echo "FAIL: $name: cigt train failed"; cat "$tmp/$name.out"; fail=1; }
}
trellis=$root/models/fashion_mnist_regularized.json
variant "$trellis" wd-absent 'c["train"]["warmup_epochs"] = 0'
variant "$trellis" wd-same 'c["train"]["warmup_epochs"] = 0; c["train"]["router_weight_decay"] = c["train"]["weight_decay"]'
variant "$trellis" wd-apart 'c["train"]["warmup_epochs"] = 0; c["train"]["router_weight_decay"] = 0.5; c["train"]["lr"] = 0.5'
variant "$trellis" wd-apart-ref 'c["train"]["warmup_epochs"] = 0; c["train"]["lr"] = 0.5'
for n in wd-absent wd-same wd-apart wd-apart-ref; do train $n; done
"$py" - "$tmp" <<'PY' || fail=1
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in h.items() if k != "__metadata__"}
t = sys.argv[1]
a, s = tensors(t + "/wd-absent.safetensors"), tensors(t + "/wd-same.safetensors")
ok = True
if a != s:
    print("FAIL: router_weight_decay equal to weight_decay changed the model"); ok = False
x, r = tensors(t + "/wd-apart.safetensors"), tensors(t + "/wd-apart-ref.safetensors")
diff = sorted(k for k in x if x[k] != r[k])
routers = [k for k in diff if k.startswith("routers.") and "running" not in k]
experts = [k for k in diff if not k.startswith("routers.")]
if experts or not routers:
    print("FAIL: router_weight_decay changed %s (experts %s)" % (diff, experts)); ok = False
print("ok   router_weight_decay: %d router tensors changed, no expert tensor" % len(routers))
sys.exit(0 if ok else 1)
PY

thin=$root/models/thin.json
variant "$thin" kd 'c["train"]["distill"] = {"teacher": "'"$root"'/models/thick.safetensors"}'
train kd
"$py" -c 'import json, sys
l = json.loads(open(sys.argv[1]).readline())
assert l["distill"] > 0 and l["loss"] > 0, l
print("ok   distill: loss %.4f, ce %.4f, distill %.4f" % (l["loss"], l["ce"], l["distill"]))' \
	"$tmp/kd.jsonl" || { echo "FAIL: distill log"; fail=1; }

variant "$trellis" ens 'c["train"]["warmup_epochs"] = 0; c["train"]["ensemble"] = {"share": 0.5, "weight": 0.5}; c["train"]["label_smoothing"] = 0.1'
train ens
"$py" -c 'import json, math, sys
l = json.loads(open(sys.argv[1]).readline())
assert math.isfinite(l["loss"]) and l["phase"] == "routed", l
print("ok   ensemble + label_smoothing: loss %.4f" % l["loss"])' "$tmp/ens.jsonl" ||
	{ echo "FAIL: ensemble log"; fail=1; }

variant "$thin" warm 'c["train"]["init"] = {"from": "'"$root"'/models/thin.safetensors"}; c["train"]["lr"] = 0.0005'
train warm
"$py" -c 'import json, sys
l = json.loads(open(sys.argv[1]).readline())
assert l["validation_accuracy"] > 0.85, l
print("ok   init (warm start): validation %.2f%% after one step" % (100 * l["validation_accuracy"]))' \
	"$tmp/warm.jsonl" || { echo "FAIL: warm start"; fail=1; }
exit $fail
