# The README's two commands: `make demo` (install + the main job end to end) and `make test`.
# Both create what they need on a fresh machine and are safe to re-run.
PYTHON311 ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

demo: $(VENV)/.installed
	$(BIN)/lsg-deploy train --out runs/digits
	$(BIN)/lsg-deploy export --target loihi runs/digits/model.pt --out deploy/digits
	$(BIN)/lsg-deploy simulate --fixed-point deploy/digits --json runs/digits/report.json

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check .

# torch==2.13.0 is the CPU build on this machine's disk; any other torch spec downloads GBs.
$(VENV)/.installed: pyproject.toml
	$(PYTHON311) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[train,test]"
	# SpikingJelly, the second NIR peer: --no-deps, its torchvision/torchaudio pins would replace torch
	$(BIN)/pip install -q --no-deps spikingjelly==2.0.0
	$(BIN)/pip install -q "loguru>=0.7,<1"
	touch $@

clean:
	rm -rf runs deploy .pytest_cache
