# gpuq: `make run` sets up, builds and starts the daemon with the demo config;
# `make test` builds and runs every test. Both install missing Debian packages first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
CONFIG     ?= examples/demo.toml
JOBS       ?= $(shell nproc)
CTEST_JOBS ?= 2

# Debian packages the build and the tests need (libboost-dev 1.74 conflicts: we want 1.81).
PACKAGES = cmake ninja-build g++ ccache pkg-config \
  libboost1.81-dev libboost-url1.81-dev libsqlite3-dev libhiredis-dev nlohmann-json3-dev \
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libgtest-dev libgmock-dev \
  libbenchmark-dev
# The container engine of the docker tests (podman serving the Docker API, a busybox image made
# locally; tests/support/docker_engine.sh). Installed without recommends: podman's would bring
# dbus-user-session and with it systemd.
ENGINE_PACKAGES = podman runc conmon containernetworking-plugins busybox-static curl

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps configure build run test asan asan-test bench clean

all: build

# Installs only what is missing, so a warm machine does not touch apt at all.
deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@missing=$$(for p in $(ENGINE_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Only the binary and the demo's fake services: the quick start should not wait for the tests.
run: configure
	cmake --build $(BUILD) -j $(JOBS) --target gpuq gpuq-fake-service
	$(BUILD)/gpuq serve --config $(CONFIG)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(CTEST_JOBS) --timeout 600

$(ASAN_BUILD)/build.ninja: | deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DGPUQ_SANITIZE=ON -DGPUQ_BUILD_BENCH=OFF -DGPUQ_BUILD_E2E_AND_DOCKER_TESTS=OFF

asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# The unit and integration tests under ASan+UBSan (the e2e label runs in `make test`).
asan-test: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(CTEST_JOBS) --timeout 900 -L 'unit|integration'

bench: build
	bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
