"""Resources per layer and in total (``hardware/resources.py``), against counts made by hand.

Small graphs are built record by record so every count is known; the digits network is trained
for one epoch (its shapes are the default's) and exported to both targets, and its FPGA weight
memory is checked against the words of the exported ``.mem`` tables.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware.bundle import read_bundle
from hardware.graph import Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.resources import format_resources
from hardware.targets import resources
from hardware.targets.fpga.profiles import FPGA_MUL, FPGA_MUL4, FPGA_SHIFT
from hardware.targets.fpga.resources import ICE40_UP5K, bram_blocks
from hardware.targets.fpga.tables import read_mem
from hardware.targets.loihi.profile import LOIHI2
from hardware.targets.loihi.resources import LOIHI2_LAVA_LIF_LIMITS, LOIHI2_LIMITS, LoihiLimits, loihi_layer_cores
from lsg_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]
LOIHI_NEURON_BITS = 24 + 24 + 13 + 3  #: u, v, bias_mant, bias_exp per neuron (Lava's LIF, fixed_pt widths)
LOIHI_NODE_BITS = 12 + 12 + 17  #: du, dv, vth per node


def _node(name: str, shape: tuple[int, ...], readout: bool = False) -> IntegerNode:
    return IntegerNode(name, shape, np.zeros(shape[0], np.int64), 0, 0, 0, 100, 1.0, readout)


def _edge(name: str, source: str, target: str, geometry: Geometry, weight_shape: tuple[int, ...]) -> IntegerEdge:
    return IntegerEdge(name, source, target, geometry, np.ones(weight_shape, np.int64), 0, 1.0)


def dense_net(fan_in: int, neurons: int, outputs: int = 2) -> Graph:
    """input (fan_in,) -> dense hidden (neurons,) -> dense readout (outputs,)."""
    return Graph(Input((fan_in,), "direct", 16),
                 (_node("h", (neurons,)), _node("out", (outputs,), readout=True)),
                 (_edge("h", "input", "h", Geometry("dense", (fan_in,), (neurons,)), (neurons, fan_in)),
                  _edge("out", "h", "out", Geometry("dense", (neurons,), (outputs,)), (outputs, neurons))))


def conv_net(padding: int) -> Graph:
    """input (2, 5, 5) -> 3x3 conv to 4 channels (stride 1) -> dense readout (3,)."""
    side = 5 + 2 * padding - 2
    hidden = (4, side, side)
    return Graph(Input((2, 5, 5), "direct", 16),
                 (_node("c", hidden), _node("out", (3,), readout=True)),
                 (_edge("c", "input", "c", Geometry("conv", (2, 5, 5), hidden, (1, 1), (padding, padding)),
                        (4, 2, 3, 3)),
                  _edge("out", "c", "out", Geometry("dense", hidden, (3,)), (3, 4 * side * side))))


# --- counts by hand ---------------------------------------------------------------------------------

def test_a_dense_layer_stores_its_whole_matrix_in_both_targets():
    n, f = 10, 20
    loihi = resources(dense_net(f, n), LOIHI2)["layers"][0]
    assert (loihi["neurons"], loihi["synapses"], loihi["stored_weights"]) == (n, n * f, n * f)
    assert loihi["weight_bits"] == n * f * 8  # 8-bit mantissa: Loihi's mixed-sign step of 2 drops a bit
    assert loihi["state_bits"] == n * 48 and loihi["bias_bits"] == n * 16 and loihi["parameter_bits"] == 41
    assert loihi["memory_bits"] == n * f * 8 + n * LOIHI_NEURON_BITS + LOIHI_NODE_BITS
    for profile, wb in ((FPGA_MUL, 8), (FPGA_SHIFT, 8), (FPGA_MUL4, 4)):
        hidden, readout = resources(dense_net(f, n), profile)["layers"]
        assert hidden["stored_weights"] == n * f and hidden["weight_bits"] == n * f * wb
        # bias per output channel (16), accumulator (24), membrane (16), spike (1) per neuron
        assert hidden["breakdown"] == {"weights": n * f * wb, "bias": n * 16, "accumulator": n * 24,
                                       "membrane": n * 16, "spikes": n}
        assert readout["breakdown"]["spikes"] == 0  # the readout has no spike buffer
        assert hidden["memory_bits"] == n * f * wb + n * (16 + 24 + 16 + 1)


@pytest.mark.parametrize("padding, synapses", [(0, 4 * 9 * 2 * 9), (1, 4 * 2 * 13 * 13)])
def test_a_conv_layer_stores_its_kernel_once(padding, synapses):
    # padding 0: 36 outputs x 18 inputs each; padding 1: per axis the 5 outputs see 2, 3, 3, 3, 2
    # taps (sum 13), so 13 x 13 per (output channel, input channel) pair
    for profile in (LOIHI2, FPGA_MUL):
        conv = resources(conv_net(padding), profile)["layers"][0]
        assert conv["kind"] == "conv" and conv["synapses"] == synapses
        assert conv["stored_weights"] == 4 * 2 * 3 * 3 and conv["weight_bits"] == 72 * 8


def test_cores_at_the_neurons_per_core_edge():
    npc = LOIHI2_LIMITS.neurons_per_core
    for neurons, cores in ((npc, 1), (npc + 1, 2), (2 * npc, 2), (2 * npc + 1, 3)):
        layer = resources(dense_net(1, neurons), LOIHI2)["layers"][0]
        assert (layer["cores"], layer["cores_by_neurons"]) == (cores, cores), neurons
        assert layer["cores_by_memory"] == 1  # 64 bits a neuron stays far below a core's memory
    lava = resources(dense_net(1, 4096), LOIHI2, limits=LOIHI2_LAVA_LIF_LIMITS)["layers"][0]
    assert lava["cores"] == 2  # Lava's compiler fits 4,095 LIF neurons per core


def test_cores_at_the_memory_per_core_edge():
    layer = resources(dense_net(20, 10), LOIHI2)["layers"][0]
    bits = layer["memory_bits"]
    for memory, cores in ((bits, 1), (bits - 1, 2), (bits // 2, 3)):
        limits = dataclasses.replace(LOIHI2_LIMITS, memory_per_core_bits=memory)
        got = resources(dense_net(20, 10), LOIHI2, limits=limits)["layers"][0]
        assert (got["cores"], got["cores_by_memory"], got["cores_by_neurons"]) == (cores, cores, 1), memory


def test_every_core_of_a_conv_layer_keeps_the_kernel():
    kernel = 72 * 8
    rest = 36 * LOIHI_NEURON_BITS + LOIHI_NODE_BITS  # 36 neurons and the node's parameters
    # a core holds the kernel and what is left for neurons: ceil(rest / (M - kernel)) cores
    # (a neuron takes ceil(2345 / 36) = 66 bits here, its 64 and its share of the parameters);
    # where the kernel and one neuron do not fit, the kernels are split by channel:
    # ceil((kernel + rest) / M)
    for memory, cores in ((kernel + rest, 1), (kernel + 1200, -(-rest // 1200)), (kernel + 66, 36),
                          (kernel + 65, -(-(kernel + rest) // (kernel + 65))), (500, -(-(kernel + rest) // 500))):
        limits = dataclasses.replace(LOIHI2_LIMITS, memory_per_core_bits=memory)
        assert resources(conv_net(0), LOIHI2, limits=limits)["layers"][0]["cores"] == cores, memory
    assert loihi_layer_cores(36, kernel, 0, rest, dataclasses.replace(LOIHI2_LIMITS, memory_per_core_bits=None)) \
        == (1, 1, None)


def test_chips_from_cores_neurons_and_synapses():
    small = LoihiLimits("small", neurons_per_core=4, cores_per_chip=2, neurons_per_chip=100, synapses_per_chip=10**6,
                        memory_per_core_bits=None, source="test")
    total = resources(dense_net(3, 4), LOIHI2, limits=small)["total"]
    assert (total["cores"], total["chips"]) == (2, 1)  # hidden 1 core, readout 1 core
    total = resources(dense_net(3, 5), LOIHI2, limits=small)["total"]
    assert (total["cores"], total["chips"]) == (3, 2) and total["chips_by"]["cores"] == 2
    by_neurons = dataclasses.replace(small, neurons_per_chip=6)
    assert resources(dense_net(3, 5), LOIHI2, limits=by_neurons)["total"]["chips_by"]["neurons"] == 2
    by_synapses = dataclasses.replace(small, cores_per_chip=100, synapses_per_chip=20)
    total = resources(dense_net(3, 5), LOIHI2, limits=by_synapses)["total"]
    assert total["stored_weights"] == 25 and total["chips"] == 2


def test_block_ram_shapes():
    assert bram_blocks(1024, 24) == 6  # 1024x4 mode, 6 wide
    assert bram_blocks(65536, 8) == 128 and bram_blocks(10, 24) == 2 and bram_blocks(64, 5) == 1
    assert ICE40_UP5K.bram_bits == 30 * 4096 and ICE40_UP5K.spram_bits == 1 << 20


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="needs the profile"):
        resources(dense_net(2, 2))
    with pytest.raises(TypeError, match="Bundle or a Graph"):
        resources("bundle", LOIHI2)
    with pytest.raises(ValueError, match="max_lanes"):
        resources(dense_net(2, 2), FPGA_MUL, max_lanes=0)
    with pytest.raises(ValueError, match="neurons_per_core"):
        dataclasses.replace(LOIHI2_LIMITS, neurons_per_core=0)
    # a profile no known target owns (another name, or the same name with other fields) has no model
    assert resources(dense_net(2, 2), dataclasses.replace(LOIHI2, name="unknown")) is None
    assert resources(dense_net(2, 2), dataclasses.replace(LOIHI2, vth_max=1000)) is None


def test_the_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any torch import would now fail
            "from hardware.targets import TARGETS\n"
            "print(sorted(name for name, t in TARGETS.items() if t.resources))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['fpga', 'loihi']"


# --- the digits network -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict[str, Path]:
    """The default digits-cnn (one short epoch: the shapes are the default's) exported to both
    targets, and to the FPGA's 4-bit profile."""
    root = tmp_path_factory.mktemp("resources")
    assert main(["train", "--epochs", "1", "--timesteps", "2", "--batch-size", "256", "--out", str(root / "run"),
                 "--quiet"]) == 0
    flags = {"loihi": ["--target", "loihi"], "fpga": ["--target", "fpga"],
             "fpga-mul4": ["--target", "fpga", "--profile", "fpga-mul4"]}
    out = {key: root / key for key in flags}
    for key, path in out.items():
        assert main(["export", *flags[key], str(root / "run" / "model.pt"), "--out", str(path), "--quiet"]) == 0
    return out


def test_digits_fpga_weight_bits_are_the_mem_words(digits):
    bundle = read_bundle(digits["fpga"])
    res = resources(bundle)
    manifest = json.loads((digits["fpga"] / "manifest.json").read_text())
    words = {e["target"]: len(read_mem(digits["fpga"] / e["weight"]["file"], 8)) for e in manifest["edges"]}
    bias_words = {n["name"]: len(read_mem(digits["fpga"] / n["bias"]["file"], 16)) for n in manifest["nodes"]}
    for layer in res["layers"]:
        assert layer["stored_weights"] == words[layer["name"]]
        assert layer["bias_bits"] == bias_words[layer["name"]] * 16
    assert res["total"]["weight_bits"] == sum(words.values()) * 8 == 85_392 * 8  # docs/fpga.md's 85,392 bytes
    neurons = 16 * 8 * 8 + 32 * 4 * 4 + 128 + 10
    assert res["total"]["memory_bits"] == (85_392 * 8 + (16 + 32 + 128 + 10) * 16 + neurons * (24 + 16)
                                           + (neurons - 10) + 64 * 5)  # spikes but the readout's; 5-bit pixels
    # by hand, one lane: conv1 1+1+6+4+1, conv2 36+1+3+2+1, fc1 128+1+2+1+1, readout 3+1+2+1, input 1
    assert [x["bram_estimate"] for x in res["layers"]] == [13, 43, 133, 7] and res["total"]["bram_estimate"] == 197
    assert not any(res["fits"][k] for k in ("bram_blocks", "bram_bits")) and res["fits"]["bram_and_spram_bits"]
    four = resources(bundle, max_lanes=4)
    assert four["total"]["bram_estimate"] == 241 and four["total"]["memory_bits"] == res["total"]["memory_bits"]
    text = format_resources(res)
    assert "BRAM est." in text and "85,392" in text and "SPRAM is not initialised" in text


def test_digits_fpga_mul4_halves_the_weight_memory(digits):
    """The same network with 4-bit weights: the .mem words, read at the manifest's 4 bits, are the
    stored weights; weight bits halve, everything else stays; per lane the weights take the 1024x4
    block RAM shape: by hand, one lane: conv1 1+1+6+4+1, conv2 18+1+3+2+1, fc1 64+1+2+1+1, readout
    2+1+2+1, input 1."""
    res, wide = resources(read_bundle(digits["fpga-mul4"])), resources(read_bundle(digits["fpga"]))
    manifest = json.loads((digits["fpga-mul4"] / "manifest.json").read_text())
    assert manifest["profile"]["weight"]["bits"] == 4
    words = {e["target"]: len(read_mem(digits["fpga-mul4"] / e["weight"]["file"], 4)) for e in manifest["edges"]}
    assert [layer["stored_weights"] for layer in res["layers"]] == [words[layer["name"]] for layer in res["layers"]]
    assert res["total"]["weight_bits"] == 85_392 * 4
    assert wide["total"]["memory_bits"] - res["total"]["memory_bits"] == 85_392 * 4
    assert [x["bram_estimate"] for x in res["layers"]] == [13, 25, 69, 6] and res["total"]["bram_estimate"] == 114


def test_digits_on_loihi(digits):
    res = resources(read_bundle(digits["loihi"]))
    assert res["target"] == "loihi" and [x["cores"] for x in res["layers"]] == [1, 1, 1, 1]
    assert res["total"]["cores"] == 4 and res["total"]["chips"] == 1
    assert res["total"]["stored_weights"] == 85_392 and res["total"]["synapses"] == 279_360
    with pytest.raises(ValueError, match="is in profile"):
        resources(read_bundle(digits["loihi"]), FPGA_MUL)
    text = format_resources(res)
    lines = text.splitlines()
    assert lines[1].split() == ["layer", "kind", "neurons", "synapses", "stored", "weights", "memory", "bits", "cores"]
    assert lines[3].split()[:5] == ["conv1", "conv", "1,024", "7,744", "144"]
    assert "chips: 1" in text and "NOT VERIFIED" in text
    json.dumps(res)  # a report can embed it as it is
