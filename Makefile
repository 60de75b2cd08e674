# Front door for newcomers: `make test` and `make serve` do all set-up on Debian 12.
# Missing Debian packages are installed with apt-get when run as root; otherwise the exact
# apt-get line is printed and make stops.

BUILD ?= build
MODEL ?= models/fashion_mnist.safetensors

# Build, test and runtime packages (Debian 12 names).
PKGS := meson ninja-build pkg-config gcc libc6-dev \
	libopenblas-dev libjansson-dev zlib1g-dev libspng-dev libcriterion-dev \
	libuv1-dev libmicrohttpd-dev libsystemd-dev \
	dataset-fashion-mnist python3 python3-torch python3-numpy curl chromium gnuplot-nox wrk \
	systemd strace prometheus nginx python3-yaml

.PHONY: all deps build test serve bench clean

all: build

deps:
	@missing=""; for p in $(PKGS); do \
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

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=release

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

serve: build
	./$(BUILD)/cigtd --model $(MODEL)

bench: build
	bench/run

clean:
	rm -rf $(BUILD)
