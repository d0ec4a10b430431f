# The two commands a new user needs: `make demo` and `make test`.
# Both install missing Debian packages first (scripts/install-deps.sh is idempotent).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

ASAN_DIR ?= build-asan
# The suites that read untrusted bytes (core, io, data) and the CLI end to end.
ASAN_LABELS ?= ^(core|io|data|integration)$$

.PHONY: deps configure build test test-asan demo clean format

deps:
	bash scripts/install-deps.sh
	bash scripts/install-npm.sh $(BUILD_DIR)/npm

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DFINCH_BUILD_TESTS=ON; \
	fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Tests run JOBS at a time: each one picks its own ports and folders, and none times anything.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# AddressSanitizer + UBSan build in its own folder; any report fails the test that caused it.
test-asan: deps
	bash scripts/install-npm.sh $(ASAN_DIR)/npm
	@if [ ! -f $(ASAN_DIR)/build.ninja ]; then \
	  cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFINCH_BUILD_TESTS=ON \
	    -DFINCH_SANITIZE=ON -DFINCH_BUILD_PYTHON=OFF; \
	fi
	cmake --build $(ASAN_DIR) -j $(JOBS) --target finch_cli test_core test_io test_data test_integration fuzz_replay
	cd $(ASAN_DIR) && \
	  ASAN_OPTIONS=detect_container_overflow=0:abort_on_error=0:detect_leaks=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/asan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 1 -L '$(ASAN_LABELS)'

demo: build
	bash scripts/demo.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')
