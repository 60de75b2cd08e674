#!/bin/sh
# `make example-folder`: train and serve a colour trellis on your own kind of data, end to end.
# 1. writes a small image-folder dataset (Fashion-MNIST tinted per class, JPEG and PNG, in
#    OUT/data/{train,test}/<class>/), 2. trains examples/folder_trellis.json on it with
#    --input-stats (a few epochs), 3. evaluates it on test/, 4. serves it with cigtd and
#    classifies a JPEG and a PNG with curl, and asks the OIP metadata for its [N,3,H,W] shape.
# usage: examples/folder.sh [BUILD_DIR] [OUT_DIR]   (defaults: build, /tmp/cigt-example-folder)
set -eu
BUILD=${1:-build}
OUT=${2:-/tmp/cigt-example-folder}
HERE=$(dirname "$0")
PORT=${PORT:-18088}

rm -rf "$OUT"
mkdir -p "$OUT"
echo "== 1. an image folder: $OUT/data"
/usr/bin/python3 "$HERE/make_folder.py" "$OUT/data"
echo "== 2. cigt train --data $OUT/data --input-stats"
"$BUILD/cigt" train --config "$HERE/folder_trellis.json" --data "$OUT/data" \
	--out "$OUT/tinted.safetensors" --input-stats
echo "== 3. cigt eval --data $OUT/data (its test/ split)"
"$BUILD/cigt" eval "$OUT/tinted.safetensors" --data "$OUT/data"
echo "== 4. cigtd on 127.0.0.1:$PORT, and curl"
"$BUILD/cigtd" --model "$OUT/tinted.safetensors" --listen "127.0.0.1:$PORT" 2>"$OUT/cigtd.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
i=0
until curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "cigtd did not start:"; cat "$OUT/cigtd.log"; exit 1; }
	sleep 0.1
done
JPG=$(ls "$OUT"/data/test/sneaker/*.jpg | head -n 1)
PNG=$(ls "$OUT"/data/test/bag/*.png | head -n 1)
set -x
curl -s -H 'Content-Type: image/jpeg' --data-binary "@$JPG" "http://127.0.0.1:$PORT/v1/classify"
curl -s -H 'Content-Type: image/png' --data-binary "@$PNG" "http://127.0.0.1:$PORT/v1/classify"
curl -s "http://127.0.0.1:$PORT/v2/models/tinted_fashion"
