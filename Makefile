# The two commands a new user needs: `make demo` and `make test`.
# Both install missing Debian packages first (scripts/install-deps.sh is idempotent).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: deps configure build test demo clean format

deps:
	bash scripts/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DFINCH_BUILD_TESTS=ON; \
	fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1

demo: build
	bash scripts/demo.sh

clean:
	rm -rf $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')
