# make demo: install dependencies, build, and serve the built-in demo model on http://127.0.0.1:8000/v1.
# make test: install dependencies, build, and run every test.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo bench clean

all: build

deps:
	./scripts/setup-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	./$(BUILD)/dsv3 serve --host 127.0.0.1 --port 8000

bench: build
	./$(BUILD)/dsv3 bench --device cpu -m preset:moonlight --dtype fp8

clean:
	rm -rf $(BUILD)
