# Two set-up commands: `make demo` and `make test`. Both create .venv when missing and reuse it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Which PyTorch build .venv gets (read when .venv is set up; to switch, `make clean-venv` first):
#   TORCH=cpu  (default) the CPU build, torch==$(TORCH_VERSION)+cpu: from a wheel pip already finds (a machine's own
#              find-links or index), else from the PyTorch CPU index; on macOS PyPI's build, which is the CPU one.
#   TORCH=cuda PyPI's default build, which on Linux is the CUDA one (several GB).
TORCH ?= cpu
TORCH_VERSION := 2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: demo demo-emoji demo-icons test test-slow lint clean-venv torch

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(MAKE) --no-print-directory torch
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# torch before the project: the project's own range (torch>=2.3) would let pip pick a build. TORCH=cpu on Linux tries
# a +cpu wheel pip finds without the PyTorch index first (no request to an index that may be unreachable), then that index.
torch:
ifeq ($(TORCH),cpu)
ifeq ($(shell uname -s),Darwin)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
else
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	  || $(BIN)/pip install --quiet "torch==$(TORCH_VERSION)+cpu" --extra-index-url $(TORCH_CPU_INDEX)
endif
else ifeq ($(TORCH),cuda)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
else
	$(error TORCH must be cpu or cuda, got '$(TORCH)')
endif

demo: $(STAMP)
	$(BIN)/python jobs/generate.py jobs/examples/demo_prompts.parquet --out outputs/demo --variants 4 --overwrite

# the real-asset demo: fetches the pinned emoji packages from the npm registry (about 150 MB, once, into the cache
# folder), builds data/emoji.parquet, generates with the shipped emoji bundle, and puts the results beside the training
# images nearest each prompt (outputs/emoji/compare.png)
data/emoji.parquet: $(STAMP)
	$(BIN)/python -m llmgan data emoji --out $@ --split all

demo-emoji: data/emoji.parquet
	$(BIN)/python jobs/generate.py jobs/examples/emoji_prompts.csv --model emoji --out outputs/emoji --n-per-prompt 4 --overwrite
	$(BIN)/python -m llmgan compare outputs/emoji --data data/emoji.parquet --out outputs/emoji/compare.png --rows 16

# the game-icons demo: fetches the pinned @iconify-json/game-icons package (6 MB unpacked, once), builds the 75 items in
# their training pairings, generates the prompts (most in a pairing the icon never trained in) with the shipped icons
# bundle, and puts the results beside the training images nearest each prompt (outputs/icons/compare.png)
data/icons-items-train.parquet: $(STAMP)
	$(BIN)/python -m llmgan data game-icons --icons items --pairings 45 --heldout-rows 0 --out $@

demo-icons: data/icons-items-train.parquet
	$(BIN)/python jobs/generate.py jobs/examples/icons_prompts.csv --model icons --out outputs/icons --n-per-prompt 4 --overwrite
	$(BIN)/python -m llmgan compare outputs/icons --data data/icons-items-train.parquet --out outputs/icons/compare.png --rows 24

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the long cases (soak, training under faults, ...) that `make test` skips
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q --run-slow -m slow

lint: $(STAMP)
	$(BIN)/ruff check llmgan benchmarks jobs tests cluster

clean-venv:
	rm -rf $(VENV)
