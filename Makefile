# sealguard: the two commands of the quick start are `make demo` and `make check`.
#   make deps      install the Debian packages (scripts/install-deps.sh)
#   make build     configure and build into build/ (build-san/ with SAN=1)
#   make check     build and run the whole test suite under ctest   (SAN=1: ASan + UBSan)
#   make demo      build, start every function on loopback, run the secured scenario, stop
#   make bench     run the benchmarks in bench/ against their peers
#   make fuzz      fuzz every target in fuzz/ for FUZZ_SECONDS each (libFuzzer, clang)
#   make format    clang-format every C file
SAN ?= 0
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(SAN),1)
BUILD_DIR ?= build-san
CMAKE_FLAGS += -DSG_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD_DIR ?= build
endif

.PHONY: all deps build check demo bench fuzz format clean

all: build

deps:
	@sh scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

check: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)/sealguard

bench: build
	@sh scripts/install-deps.sh --bench
	@bash bench/transport.sh $(BUILD_DIR)/sealguard

fuzz:
	@sh scripts/install-deps.sh --fuzz
	@bash scripts/fuzz.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-san build-fuzz
