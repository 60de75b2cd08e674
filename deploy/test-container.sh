#!/usr/bin/env bash
# Builds deploy/Dockerfile, runs the image and checks it the way a user would, through the
# published port on loopback:
#   - it runs as uid 10001 with a read-only root filesystem and no capabilities;
#   - /v2/health/ready answers 200 and the image's HEALTHCHECK passes;
#   - a real Fashion-MNIST test image is classified as its label (v1 PGM and v2 JSON);
#   - /metrics counts those requests;
#   - SIGTERM during load (batched requests from several clients): every HTTP answer is 200 with
#     the right classes or 503 (refused while draining), every request cigtd logged as answered
#     200 reached its client, cigtd logs a complete drain and the container exits 0;
#   - the image size is reported.
# Engine: $DOCKER if set; else ../shared/tools/podman-docker (this workplace: podman with a
# locally made debian base); else docker; else podman (with runc and explicit rlimits, as that
# tool does). Run from anywhere:
#   deploy/test-container.sh            # IMAGE=cigtd:test, KEEP_IMAGE=1 keeps it (default)
# Exit 0 when every check passed, 1 otherwise. The last line reads "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-cigtd:test}
RUN_LIMITS=""
BUILD_FLAGS=""
NAME=cigtd-test-$$
pass=0; fail=0
ok()   { echo "ok:   $*"; pass=$((pass + 1)); }
bad()  { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
  $DOCKER rm -f "$NAME" >/dev/null 2>&1 || true
  echo "container-test: $pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit $?
}

if [ -n "${DOCKER:-}" ]; then :
elif [ -f ../shared/tools/podman-docker ]; then DOCKER="bash ../shared/tools/podman-docker"
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then DOCKER=docker
elif command -v podman >/dev/null; then
  # Plain podman, as the workplace tool runs it: runc, and rlimits within this shell's own.
  DOCKER="podman --runtime runc"
  # Docker's image format: podman's default (OCI) drops HEALTHCHECK, which is tested below.
  BUILD_FLAGS="--format docker"
  RUN_LIMITS="--ulimit nofile=$(ulimit -Sn):$(ulimit -Hn) --ulimit nproc=4096:4096"
else echo "FAIL: no container engine (docker or podman)"; exit 1
fi
echo "engine: $DOCKER"
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found"; exit 1; }; }
need curl; need python3
[ -f models/fashion_mnist.safetensors ] || { echo "FAIL: models/fashion_mnist.safetensors missing"; exit 1; }
WORK=$(mktemp -d /tmp/cigt-container.XXXXXX)
trap 'rm -rf "$WORK"; $DOCKER rm -f "$NAME" >/dev/null 2>&1 || true' EXIT

# ---- build
t0=$(date +%s)
if nice -n 15 $DOCKER build $BUILD_FLAGS -t "$IMAGE" -f deploy/Dockerfile . >"$WORK/build.log" 2>&1; then
  ok "image $IMAGE built in $(( $(date +%s) - t0 )) s"
else
  tail -30 "$WORK/build.log"; bad "image build"; finish
fi
size=$($DOCKER image inspect "$IMAGE" --format '{{.Size}}' 2>/dev/null | tail -1)
echo "IMAGE_SIZE $IMAGE $size bytes ($(( size / 1000000 )) MB)"

# ---- run: read-only root, no capabilities, loopback port
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
if ! $DOCKER run $RUN_LIMITS -d --name "$NAME" --read-only --cap-drop ALL --security-opt no-new-privileges \
     -p "127.0.0.1:$PORT:8080" -p "127.0.0.1:$GPORT:8001" "$IMAGE" --access-log --workers 2 \
     >"$WORK/run.log" 2>&1; then
  cat "$WORK/run.log"; bad "container starts"; finish
fi
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v2/health/ready")" = 200 ]; }
for _ in $(seq 1 150); do ready && break; sleep 0.2; done
check "/v2/health/ready answers 200 through the published port $PORT" ready
uid=$($DOCKER exec "$NAME" sh -c 'grep ^Uid: /proc/1/status' 2>/dev/null | awk '{print $2}')
check "cigtd runs as uid 10001 (got '$uid')" [ "$uid" = 10001 ]
check "root filesystem is read-only" $DOCKER exec "$NAME" sh -c '! touch /usr/local/x 2>/dev/null'
check "HEALTHCHECK (cigtd --healthcheck) passes" sh -c "$DOCKER healthcheck run $NAME >/dev/null 2>&1 \
  || [ \"\$($DOCKER inspect --format '{{.State.Health.Status}}' $NAME)\" = healthy ]"

# ---- classify the first Fashion-MNIST test image (label 9, ankle boot)
python3 - "$WORK" <<'EOF'
import gzip, json, sys
w = sys.argv[1]
img = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
lab = gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").read()[8]
open(w + "/img.pgm", "wb").write(b"P5 28 28 255\n" + img)
json.dump({"id": "1", "inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "UINT8",
           "data": list(img)}]}, open(w + "/v2.json", "w"))
open(w + "/label", "w").write(str(lab))
EOF
label=$(cat "$WORK/label")
v1=$(curl -s -H 'Content-Type: image/x-portable-graymap' --data-binary @"$WORK/img.pgm" "$URL/v1/classify")
echo "v1: $v1"
check "v1 classify: class $label" python3 -c "import json,sys; a=json.loads(sys.argv[1]); sys.exit(not (a['class']==$label and a['macs']==5749632))" "$v1"
v2=$(curl -s -H 'Content-Type: application/json' -d @"$WORK/v2.json" "$URL/v2/models/fashion_mnist/infer")
check "v2 infer: class $label" python3 -c "import json,sys; a=json.loads(sys.argv[1]); o={x['name']:x['data'] for x in a['outputs']}; sys.exit(o['class'][0]!=$label)" "$v2"
m=$(curl -s "$URL/metrics")
check "/metrics counts the v1 request" grep -q '^cigt_requests_total{endpoint="classify",code="200"} 1$' <<<"$m"
check "/metrics counts the v2 request" grep -q '^cigt_requests_total{endpoint="v2_infer",code="200"} 1$' <<<"$m"
check "/metrics: cigt_ready 1" grep -q '^cigt_ready 1$' <<<"$m"
# gRPC on the image's 8001 (issue 28), with stubs generated from proto/ (tests/grpc).
if /usr/bin/python3 -c 'import grpc' 2>/dev/null && command -v protoc >/dev/null; then
  g=$(SRCDIR=. /usr/bin/python3 - "$GPORT" <<'EOF'
import sys
sys.path.insert(0, "tests/grpc")
import grpc_common as G
pb, pb_grpc, grpc = G.stubs()
with grpc.insecure_channel("127.0.0.1:" + sys.argv[1]) as ch:
    r = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
        G.infer_request(pb, G.load_images(1)), timeout=30)
print(G.answers(r)[0]["class"])
EOF
)
  check "gRPC ModelInfer through the published port $GPORT: class $label (got '$g')" [ "$g" = "$label" ]
  check "/metrics counts the gRPC call" sh -c "curl -s $URL/metrics | grep -q '^cigt_grpc_requests_total{method=\"ModelInfer\",code=\"OK\"} 1\$'"
else
  echo "note: no python3-grpcio or protoc here: the gRPC port is not checked"
fi

# ---- SIGTERM during load
python3 - "$PORT" "$WORK" "$DOCKER kill --signal TERM $NAME" <<'EOF' 2>&1 | tee "$WORK/load.out"
import gzip, http.client, json, subprocess, sys, threading, time
port, work, kill = int(sys.argv[1]), sys.argv[2], sys.argv[3]
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
B = 64
imgs = [list(raw[16 + 784 * i:16 + 784 * (i + 1)]) for i in range(B * 4)]
bodies = [json.dumps({"images": imgs[k * B:(k + 1) * B]}).encode() for k in range(4)]
ref = {}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for k, b in enumerate(bodies):
    c.request("POST", "/v1/classify", b, {"Content-Type": "application/json"})
    ref[k] = [r["class"] for r in json.loads(c.getresponse().read())["results"]]
c.close()
res, stop, lock = [], threading.Event(), threading.Lock()
def client(n):
    i = n
    while not stop.is_set():
        k = i % 4; i += 1
        t = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            c.request("POST", "/v1/classify", bodies[k], {"Content-Type": "application/json"})
            r = c.getresponse(); body = r.read()
            good = r.status == 200 and [x["class"] for x in json.loads(body)["results"]] == ref[k]
            out = (t, r.status, good or r.status == 503)
        except (OSError, http.client.HTTPException) as e:
            out = (t, "no answer: %s" % type(e).__name__, None)
            time.sleep(0.02)
        finally:
            c.close()
        with lock:
            res.append(out)
ts = [threading.Thread(target=client, args=(n,)) for n in range(4)]
for t in ts: t.start()
time.sleep(1.5)
t_kill = time.monotonic()
subprocess.run(kill, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2.0)
stop.set()
for t in ts: t.join(60)
answered = [r for r in res if r[2] is not None]
wrong = [r for r in answered if not r[2]]
ok200 = sum(1 for r in answered if r[1] == 200)
after = sum(1 for r in answered if r[1] == 200 and r[0] >= t_kill)
s503 = sum(1 for r in answered if r[1] == 503)
noans_before = [r for r in res if r[2] is None and r[0] < t_kill]
noans = len(res) - len(answered)
print("LOAD requests=%d ok200=%d ok200_sent_after_SIGTERM=%d s503=%d no_answer=%d wrong=%d "
      "no_answer_before_SIGTERM=%d" % (len(res), ok200, after, s503, noans, len(wrong),
                                       len(noans_before)))
open(work + "/ok200", "w").write(str(ok200))
sys.exit(0 if answered and not wrong and not noans_before else 1)
EOF
load_rc=${PIPESTATUS[0]}
check "load through SIGTERM: every answer 200-correct or 503, none lost before SIGTERM" [ "$load_rc" = 0 ]
code=$($DOCKER wait "$NAME" 2>/dev/null | tail -1)
check "container exited 0 after SIGTERM (got '$code')" [ "$code" = 0 ]
$DOCKER logs "$NAME" >"$WORK/cigtd.log" 2>&1
check "cigtd logged a complete drain" grep -q "drained: every accepted request answered" "$WORK/cigtd.log"
served=$(grep -c '"POST /v1/classify" 200' "$WORK/cigtd.log")
got=$(( $(cat "$WORK/ok200" 2>/dev/null || echo -1) + 5 ))  # + the 4 reference batches + 1 PGM
check "every 200 cigtd logged reached its client ($served logged, $got received)" [ "$served" = "$got" ]
grep -E "SIGTERM|drain" "$WORK/cigtd.log" | sed 's/^/  cigtd: /'
finish
