# Two set-up commands: `make demo` and `make test`. Both create .venv when missing and reuse it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# The CPU torch wheel first: a bare `torch` would pull a multi-GB CUDA build here.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python jobs/generate.py jobs/examples/demo_prompts.parquet --out outputs/demo --variants 4 --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check llmgan benchmarks jobs tests cluster

clean-venv:
	rm -rf $(VENV)
