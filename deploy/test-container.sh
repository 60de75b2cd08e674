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
#   - the image size is reported;
#   - Kubernetes (deploy/k8s/deployment.yaml under `podman kube play`, in a network namespace of
#     its own, since podman 4.3 publishes every containerPort on that port of all the host's
#     addresses): the pod runs as the manifest says (uid, read-only root, no capabilities,
#     CPU and memory limits), its liveness probe passes (and fails while cigtd is stopped),
#     it classifies an image, and it drains on SIGTERM;
#   - a bare Debian 12 (debian:bookworm, a fresh debootstrap: no make, no git): a clean clone
#     copied in, the README's `./cigt.sh serve`; the packages it installed (dpkg list and /usr
#     size before and after), none of the Makefile's TEST_PKGS among them, the time to the
#     first answer, and the client commands of README.md's "Serving: cigtd" exactly as printed
#     (tests/deploy/readme_serving.py), each answered as the README says.
# Engine: $DOCKER if set; else ../shared/tools/podman-docker (this workplace: podman with a
# locally made debian base); else docker; else podman (with runc and explicit rlimits, as that
# tool does). Run from anywhere:
#   deploy/test-container.sh            # IMAGE=cigtd:test, KEEP_IMAGE=1 keeps it (default)
# Exit 0 when every check passed, 1 otherwise. The last line reads "N passed, M failed".
# Timings: lines starting TIME (each part, and the whole run).
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
T_START=$(date +%s)
# podman kube play needs podman itself (runc, rlimits within this sandbox's: containers.conf).
PODMAN=""
command -v podman >/dev/null && PODMAN="podman --runtime runc"
KUBE_NS=cigt-kube-$$
BARE=cigt-bare-$$
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found"; exit 1; }; }
need curl; need python3
[ -f models/fashion_mnist.safetensors ] || { echo "FAIL: models/fashion_mnist.safetensors missing"; exit 1; }
WORK=$(mktemp -d /tmp/cigt-container.XXXXXX)
cleanup() {
  $DOCKER rm -f "$NAME" "$BARE" >/dev/null 2>&1 || true
  if [ -e "/run/netns/$KUBE_NS" ]; then
    nsenter --net="/run/netns/$KUBE_NS" env CONTAINERS_CONF="$WORK/containers.conf" \
      podman kube down "$WORK/kube-deployment.yaml" >/dev/null 2>&1 || true
    ip netns del "$KUBE_NS" 2>/dev/null || true
  fi
  [ -n "$PODMAN" ] && $PODMAN rmi cigtd:0.1.0 >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

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
echo "TIME image build and run: $(( $(date +%s) - T_START )) s"

# ---- Kubernetes: deploy/k8s/deployment.yaml under podman kube play
# podman 4.3 (Debian 12) plays a Deployment as plain pods: it runs the liveness probe (an exec
# probe as written; an httpGet one it would turn into a curl inside the container), applies
# the security context and the CPU and memory limits, and ignores readiness and startup
# probes, preStop, terminationGracePeriodSeconds and every other kind (Service, HPA, PDB).
# It also publishes each containerPort on that port of every host address, so two replicas
# collide on it: the test plays one replica (the only change to the manifest), and plays it
# in a network namespace of its own so nothing binds the host's port 8080.
kube_play() {
  local t0 ns pod ctr img ans rc
  t0=$(date +%s)
  if [ -z "$PODMAN" ]; then bad "podman kube play: podman is not installed"; return; fi
  for t in ip nsenter; do
    command -v $t >/dev/null || { bad "podman kube play: $t not found (iproute2, util-linux)"; return; }
  done
  printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' \
    >"$WORK/containers.conf"
  python3 - deploy/k8s/deployment.yaml "$WORK/kube-deployment.yaml" <<'PY' || { bad "kube play: read deployment.yaml"; return; }
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
d["spec"]["replicas"] = 1
yaml.safe_dump(d, open(sys.argv[2], "w"), sort_keys=False)
PY
  img=$(python3 -c 'import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]["image"])' deploy/k8s/deployment.yaml)
  $PODMAN tag "$IMAGE" "localhost/$img" || { bad "kube play: tag $IMAGE as $img"; return; }
  ip netns add "$KUBE_NS" && ip netns exec "$KUBE_NS" ip link set lo up \
    || { bad "kube play: a network namespace of its own (ip netns add)"; return; }
  ns="nsenter --net=/run/netns/$KUBE_NS"
  kube() { $ns env CONTAINERS_CONF="$WORK/containers.conf" podman "$@"; }
  if ! kube kube play "$WORK/kube-deployment.yaml" >"$WORK/kube.log" 2>&1; then
    grep -v "systemd" "$WORK/kube.log" | tail -20; bad "podman kube play deploy/k8s/deployment.yaml"; return
  fi
  ok "podman kube play deploy/k8s/deployment.yaml (one replica) started its pod"
  pod=$(kube pod ps --format '{{.Name}}' | grep '^cigtd-pod' | head -1)
  ctr="$pod-cigtd"
  live() { [ "$($ns curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/v2/health/live)" = 200 ]; }
  for _ in $(seq 1 100); do live && break; sleep 0.2; done
  check "the pod answers /v2/health/live on its port 8080" live
  echo "  pod $pod up in $(( $(date +%s) - t0 )) s"
  check "kube play made the liveness probe the container's healthcheck" \
    sh -c "$PODMAN inspect $ctr --format '{{json .Config.Healthcheck.Test}}' | grep -q -- --healthcheck"
  check "liveness probe passes (podman healthcheck run $ctr)" $PODMAN healthcheck run "$ctr"
  $PODMAN kill --signal STOP "$ctr" >/dev/null 2>&1
  $PODMAN healthcheck run "$ctr" >/dev/null 2>&1; rc=$?
  $PODMAN kill --signal CONT "$ctr" >/dev/null 2>&1
  check "liveness probe fails while cigtd is stopped (SIGSTOP; exit $rc)" [ "$rc" != 0 ]
  check "liveness probe passes again after SIGCONT" $PODMAN healthcheck run "$ctr"
  uid=$($PODMAN exec "$ctr" sh -c 'grep ^Uid: /proc/1/status' 2>/dev/null | awk '{print $2}')
  check "pod runs as runAsUser 10001 (got '$uid')" [ "$uid" = 10001 ]
  check "readOnlyRootFilesystem" $PODMAN exec "$ctr" sh -c '! touch /usr/local/x 2>/dev/null'
  check "capabilities drop ALL (CapEff 0)" sh -c "$PODMAN exec $ctr grep -q '^CapEff:[[:space:]]*0*\$' /proc/1/status"
  lim=$($PODMAN inspect "$ctr" --format '{{.HostConfig.Memory}} {{.HostConfig.CpuQuota}}/{{.HostConfig.CpuPeriod}}')
  check "resources.limits applied: 512Mi memory, 2 CPUs (got '$lim')" [ "$lim" = "536870912 200000/100000" ]
  ans=$($ns curl -s -H 'Content-Type: image/x-portable-graymap' --data-binary @"$WORK/img.pgm" http://127.0.0.1:8080/v1/classify)
  echo "  pod: $ans" | cut -c1-160
  check "the pod classifies the first test image: class $label" python3 -c "import json,sys; a=json.loads(sys.argv[1]); sys.exit(not (a['class']==$label and a['macs']==5749632))" "$ans"
  kube pod stop "$pod" >/dev/null 2>&1
  code=$($PODMAN inspect "$ctr" --format '{{.State.ExitCode}}' 2>/dev/null)
  $PODMAN logs "$ctr" >"$WORK/kube-cigtd.log" 2>&1
  check "pod stop: cigtd drained and exited 0 (got '$code')" sh -c "[ '$code' = 0 ] && grep -q 'drained: every accepted request answered' $WORK/kube-cigtd.log"
  kube kube down "$WORK/kube-deployment.yaml" >/dev/null 2>&1
  ip netns del "$KUBE_NS"
  $PODMAN rmi "localhost/$img" >/dev/null 2>&1
  echo "TIME kube play: $(( $(date +%s) - t0 )) s"
}
kube_play

# ---- a bare Debian 12: the README's serving command in a fresh debian:bookworm
bare_serve() {
  local t0 t_ready st
  t0=$(date +%s)
  need git
  git clone -q --no-hardlinks "$PWD" "$WORK/clone" || { bad "git clone of this checkout"; return; }
  echo "  clean clone of $(git -C "$WORK/clone" log -1 --format='%h %s' | cut -c1-70)"
  # Before anything is installed: /usr's size and the package list; then the clone is copied
  # in (the container has no git) and the README's command runs.
  if ! $DOCKER run $RUN_LIMITS -d --name "$BARE" -v "$WORK/clone:/clone:ro" debian:bookworm sh -c '
      du -sk /usr > /tmp/usr-before
      dpkg-query -W -f="\${Package} \${Installed-Size}\n" | sort > /tmp/dpkg-before
      for t in make git gcc curl; do command -v $t; done > /tmp/tools-before
      cp -a /clone /src && cd /src && exec ./cigt.sh serve' >"$WORK/bare-run.log" 2>&1; then
    cat "$WORK/bare-run.log"; bad "bare debian:bookworm container starts"; return
  fi
  st=$($DOCKER inspect "$BARE" --format '{{.State.StartedAt}}' | tail -1)
  ready_in() {
    $DOCKER exec "$BARE" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET /v2/health/ready HTTP/1.0\r\n\r\n" >&3 && head -1 <&3' 2>/dev/null | grep -q ' 200 '
  }
  t_ready=""
  for _ in $(seq 1 900); do
    if ready_in; then t_ready=$(date +%s.%N); break; fi
    [ "$($DOCKER inspect "$BARE" --format '{{.State.Running}}' 2>/dev/null | tail -1)" = true ] || break
    sleep 1
  done
  $DOCKER logs -t "$BARE" >"$WORK/bare.log" 2>&1
  if [ -z "$t_ready" ]; then
    tail -30 "$WORK/bare.log"; bad "./cigt.sh serve in a bare debian:bookworm: no answer from cigtd"; return
  fi
  check "bare container had no make, git, gcc or curl before (found: $($DOCKER exec "$BARE" cat /tmp/tools-before | tr '\n' ' '))" \
    sh -c "[ -z \"\$($DOCKER exec $BARE cat /tmp/tools-before)\" ]"
  # The time to the first answer, and where it went (the log's own timestamps).
  python3 - "$st" "$t_ready" "$WORK/bare.log" <<'PY'
import datetime, re, sys
def ts(s):
    m = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?", s)
    t = datetime.datetime.strptime(m.group(1) + " " + m.group(2), "%Y-%m-%d %H:%M:%S")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp() + float((m.group(3) or ".0")[:7])
start, ready = ts(sys.argv[1]), float(sys.argv[2])
marks = [("cigt.sh: installing make", "make"), ("installing:", "SERVE_PKGS"),
         ("The Meson build system", "build"), ("serving model", "cigtd up")]
got = {}
for line in open(sys.argv[3], errors="replace"):
    for text, name in marks:
        if text in line and name not in got:
            got[name] = ts(line)
prev, parts = start, []
for _, name in marks:
    if name in got:
        parts.append("%s %.0f s" % ({"make": "start", "SERVE_PKGS": "make installed",
                                      "build": "packages installed",
                                      "cigtd up": "built, loaded"}[name], got[name] - prev))
        prev = got[name]
print("TIME bare debian:bookworm, ./cigt.sh serve to the first answer: %.0f s (%s)"
      % (ready - start, "; ".join(parts)))
PY
  # What the serving command installed.
  serve_pkgs=$(make -s --no-print-directory print-serve-pkgs)
  test_pkgs=$(make -s --no-print-directory print-test-pkgs)
  $DOCKER exec "$BARE" sh -c '
      du -sk /usr > /tmp/usr-after
      dpkg-query -W -f="\${Package} \${Installed-Size}\n" | sort > /tmp/dpkg-after
      dpkg-query -W -f="\${Status}\n" ca-certificates > /tmp/ca-status 2>&1
      comm -13 /tmp/dpkg-before /tmp/dpkg-after' >"$WORK/bare-new.txt"
  b=$($DOCKER exec "$BARE" cat /tmp/usr-before | awk '{print $1}')
  a=$($DOCKER exec "$BARE" cat /tmp/usr-after | awk '{print $1}')
  n=$(wc -l <"$WORK/bare-new.txt")
  sum=$(awk '{s += $2} END {print s}' "$WORK/bare-new.txt")
  echo "SERVE_INSTALLED $n packages, Installed-Size $(( sum / 1024 )) MiB; /usr $(( b / 1024 )) MiB -> $(( a / 1024 )) MiB (+$(( (a - b) / 1024 )) MiB)"
  awk '{printf "%s(%.1f) ", $1, $2 / 1024}' "$WORK/bare-new.txt" | fold -s -w 110 | sed 's/^/  /'; echo
  missing=""; for p in $serve_pkgs make; do grep -q "^$p " "$WORK/bare-new.txt" || missing="$missing $p"; done
  check "the serving command installed make and every SERVE_PKGS package (missing:${missing:- none})" [ -z "$missing" ]
  extra=""; for p in $test_pkgs python3-torch chromium prometheus nginx clang wrk libcriterion-dev dataset-fashion-mnist git; do
    grep -q "^$p " "$WORK/bare-new.txt" && extra="$extra $p"
  done
  check "no test-only package (TEST_PKGS) installed by the serving command (found:${extra:- none})" [ -z "$extra" ]
  check "ca-certificates not needed: not installed, before or after" \
    sh -c "! grep -q '^ca-certificates ' $WORK/bare-new.txt && ! $DOCKER exec $BARE cat /tmp/ca-status | grep -q 'ok installed'"
  check "serving grew /usr by less than 600 MiB (+$(( (a - b) / 1024 )) MiB)" [ $(( a - b )) -lt 614400 ]
  # The README's client commands, as printed, from a directory of their own. They need curl
  # and the dataset (the README says to install them on a machine that only serves).
  local tc; tc=$(date +%s)
  $DOCKER exec -e DEBIAN_FRONTEND=noninteractive "$BARE" sh -c \
    'apt-get install -y -qq --no-install-recommends curl dataset-fashion-mnist' >"$WORK/bare-client.log" 2>&1 \
    || { tail -5 "$WORK/bare-client.log"; bad "apt-get install curl dataset-fashion-mnist"; return; }
  echo "  client side: curl dataset-fashion-mnist installed in $(( $(date +%s) - tc )) s"
  python3 tests/deploy/readme_serving.py script README.md >"$WORK/readme.sh"
  $DOCKER exec -i "$BARE" bash -c 'mkdir -p /tmp/readme && cd /tmp/readme && bash -s' \
    <"$WORK/readme.sh" >"$WORK/readme.out" 2>"$WORK/readme.err"
  python3 tests/deploy/readme_serving.py check "$WORK/readme.sh" "$WORK/readme.out" >"$WORK/readme.check"
  cat "$WORK/readme.check"
  pass=$(( pass + $(grep -c '^ok:' "$WORK/readme.check") )); fail=$(( fail + $(grep -c '^FAIL:' "$WORK/readme.check") ))
  $DOCKER rm -f "$BARE" >/dev/null 2>&1
  echo "TIME bare debian:bookworm part: $(( $(date +%s) - t0 )) s"
}
bare_serve
echo "TIME container test: $(( $(date +%s) - T_START )) s"
finish
