# Front door for newcomers. On a bare Debian 12, where not even make is installed, the README's
# two commands are `./cigt.sh serve` and `./cigt.sh test`: cigt.sh installs make and hands over
# to the targets below. Missing Debian packages are installed with apt-get when run as root;
# otherwise the exact apt-get line is printed and make stops. Serving installs SERVE_PKGS
# only; testing (and bench, fuzzing, the sanitizer build) installs TEST_PKGS too.
# Nothing needs git after the clone, nor ca-certificates (apt reaches Debian over http; the
# build and the daemon fetch nothing). deploy/test-container.sh runs `./cigt.sh serve` in a
# bare bookworm container and fails if any TEST_PKGS package was installed.

BUILD ?= build
MODEL ?= models/fashion_mnist.safetensors

# What building and running cigt and cigtd needs (Debian 12 names). The shipped model is in
# models/, so serving needs no dataset. meson brings python3 (which embeds the page) and
# python3-setuptools; the gRPC service is built from proto/ by protoc-c.
SERVE_PKGS := meson ninja-build pkg-config gcc libc6-dev \
	libopenblas-dev libjansson-dev zlib1g-dev libspng-dev libjpeg62-turbo-dev \
	libuv1-dev libmicrohttpd-dev libsystemd-dev python3 python3-setuptools \
	libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libdnnl-dev

# What the tests, benchmarks, fuzzing and the manifests' schema check add. nodejs and npm run
# deploy/k8s/validate (npm ci); npm is only asked for where no npm is installed (a Node.js from
# elsewhere brings its own, and Debian's npm would fight it).
TEST_PKGS := libcriterion-dev \
	dataset-fashion-mnist python3-torch python3-numpy python3-pil python3-venv \
	python3-pip curl chromium gnuplot-nox wrk \
	systemd strace prometheus nginx python3-yaml python3-jsonschema clang libclang-rt-14-dev \
	protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf python3-hpack \
	nghttp2-client \
	nodejs $(if $(shell command -v npm),,npm)

PKGS := $(SERVE_PKGS) $(TEST_PKGS)

# The OpenAPI linter of proto/http-api.yaml (tests/api/lint.py) is an npm package, pinned in
# tests/api/package-lock.json and installed by `npm ci` into tests/api/node_modules (node >= 18.17).
API_LINT := tests/api/node_modules/.bin/redocly

.PHONY: all deps deps-serve programs build test serve serve-repository bench clean \
	test-sanitize fuzz-build fuzz soak example-folder k8s-validator api-lint-deps print-serve-pkgs print-test-pkgs

all: build

# $(call install_missing,PACKAGES): apt-get install those not installed (root), or say how.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing Debian packages; run:"; echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps-serve:
	$(call install_missing,$(SERVE_PKGS))

deps:
	$(call install_missing,$(PKGS))

print-serve-pkgs:
	@echo $(SERVE_PKGS)
print-test-pkgs:
	@echo $(TEST_PKGS)

# The programs alone (serving). A build directory this makes has no test suites (no Criterion
# needed); `make build` and `make test` turn them on in the same directory.
programs: deps-serve
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) --buildtype=release -Dtests=false
	ninja -C $(BUILD) cigt cigtd

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=release

build: deps $(BUILD)/build.ninja
	@meson configure $(BUILD) | grep -Eq '^ +tests +true' || meson configure $(BUILD) -Dtests=true
	ninja -C $(BUILD)

# The schema validator of deploy/k8s (the k8s-schemas test): npm ci from the committed lock,
# again whenever the lock changes.
K8S_VALIDATE := deploy/k8s/validate
$(K8S_VALIDATE)/node_modules/.package-lock.json: $(K8S_VALIDATE)/package-lock.json
	cd $(K8S_VALIDATE) && npm ci --no-audit --no-fund
k8s-validator: deps $(K8S_VALIDATE)/node_modules/.package-lock.json

# The linter, installed when missing or older than the lock file (npm ci needs the network;
# without it the api-lint test fails saying how to install the linter).
$(API_LINT): tests/api/package-lock.json | deps
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: run make deps (as root) or" \
	  "apt-get install nodejs npm"; exit 1; }
	cd tests/api && npm ci --ignore-scripts --no-audit --no-fund || { echo "make: npm ci" \
	  "failed: the OpenAPI linter (tests/api/package-lock.json) is not installed (see above)"; \
	  exit 1; }
	touch $@

api-lint-deps: $(API_LINT)

test: build k8s-validator api-lint-deps
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

serve: programs
	./$(BUILD)/cigtd --model $(MODEL)

# The demo repository: the trellis and the thin and thick baselines side by side, each in the
# Triton layout (<name>/<version>/model.safetensors, the folder named after the model's
# metadata name), served in explicit mode so the repository API can load and unload them. The
# trellis's version folder also gets thick.safetensors: its escalating operating points load it
# from beside the file.
REPO ?= $(BUILD)/model-repository
serve-repository: programs
	for m in fashion_mnist:fashion_mnist thin:fashion_mnist_thin \
	         thick:fashion_mnist_thick; do \
	  mkdir -p $(REPO)/$${m#*:}/1 && \
	  cp models/$${m%%:*}.safetensors $(REPO)/$${m#*:}/1/model.safetensors || exit 1; \
	done
	cp models/thick.safetensors $(REPO)/fashion_mnist/1/thick.safetensors
	./$(BUILD)/cigtd --model-repository $(REPO) --model-control-mode explicit \
	  --load-model fashion_mnist --load-model fashion_mnist_thin \
	  --load-model fashion_mnist_thick --default-model fashion_mnist

bench: build
	bench/run

# Train on your own images (README): writes a tinted Fashion-MNIST image folder, trains a small
# colour trellis on it, evaluates it and serves it with cigtd (examples/folder.sh).
example-folder: build
	examples/folder.sh $(BUILD)

# Reliability (issue 7, tests/RELIABILITY.md). test-sanitize: the unit, fuzz-replay and
# integration suites with everything built with ASan + UBSan (gcc) in build-asan, cigtd under
# LeakSanitizer (any report fails), then short soaks under ASan (leaks after mixed traffic,
# reloads and shutdown; and versions loaded and unloaded in a repository). fuzz: each
# libFuzzer target for FUZZ_SECONDS (clang, build-fuzz).
# soak: both soak tests (single model, repository) for SOAK_SECONDS each, release build.
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 600
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Dsanitize=true --buildtype=debugoptimized

test-sanitize: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	$(SAN_ENV) meson test -C $(ASAN_BUILD) --suite unit --suite integration \
	  --print-errorlogs --num-processes 2
	$(SAN_ENV) CIGTD=$(ASAN_BUILD)/cigtd CIGT=$(ASAN_BUILD)/cigt SRCDIR=. \
	  tests/soak/soak.py 30
	$(SAN_ENV) CIGTD=$(ASAN_BUILD)/cigtd CIGT=$(ASAN_BUILD)/cigt SRCDIR=. \
	  tests/soak/soak.py 30 --repository

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true --buildtype=debugoptimized

fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

fuzz: fuzz-build
	BUILD=$(FUZZ_BUILD) tests/fuzz/run.sh $(FUZZ_SECONDS)

soak: build
	CIGTD=$(BUILD)/cigtd CIGT=$(BUILD)/cigt SRCDIR=. tests/soak/soak.py $(SOAK_SECONDS)
	CIGTD=$(BUILD)/cigtd CIGT=$(BUILD)/cigt SRCDIR=. tests/soak/soak.py $(SOAK_SECONDS) \
	  --repository

clean:
	rm -rf $(BUILD)
