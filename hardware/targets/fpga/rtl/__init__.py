"""The RTL design: synthesizable Verilog-2005 that runs an exported network, a chain or any graph of
the integer reference (numpy only).

The design is five fixed modules and one generated top:

* ``sdp_ram.v``     simple dual-port RAM (one write port, one registered read port): the input
  memory;
* ``lif_neuron.v``  one neuron update of an FPGA profile, in three pipeline stages of one
  multiply or one adder each, a neuron entering every cycle (decay by multiplier or
  by shift, bias, saturation, threshold ``>=``, reset to 0): :meth:`hardware.profile.Profile.lif_step`;
* ``lif_lane.v``    one output-channel lane of a layer: its slice of the layer's memories
  (accumulator, weights, bias, membranes, spikes), its accumulate adder and its ``lif_neuron``;
* ``lif_edge.v``    the event scanner of one edge (conv with shared kernels, or dense): the
  source's nonzero values turned into taps (accumulator word, weight word, value);
* ``lif_layer.v``   one node, time-multiplexed over its neurons, ``LANES`` output channels per
  cycle: its edges' taps accumulated one edge after another (a residual add), then one update
  pass that gives out the step's spikes (its consumers' source);
* the top (:mod:`hardware.targets.fpga.rtl.chain` writes it from the FPGA tables' manifest,
  read by :mod:`hardware.targets.fpga.rtl.network`): one ``lif_layer`` per node, one
  ``lif_edge`` per edge, each edge's banked copy of its source (input frames or spikes), the
  phase sequencer (in phase t layer k runs step t - k: the layers pipelined) and the host's
  read port.

* the IP core's top, ``lsg_axi_top`` (:mod:`hardware.targets.fpga.rtl.axi` writes it): AXI4-Stream input and
  result streams (the class computed in hardware), a register bus, a per-step trace and a debug port
  (docs/fpga-ip.md); :mod:`hardware.targets.fpga.rtl.ip` writes it into an export's ``rtl/`` with its memory
  images, ``tb_lsg.v`` (a self-checking testbench), ``lint.vlt`` and a Makefile.

:mod:`hardware.targets.fpga.rtl.driver` is the cocotb test that drives the AXI top sample by sample; it runs
inside the simulator (Verilator or Icarus: :mod:`hardware.targets.fpga.rtl.tools`), in the bench of
:mod:`hardware.targets.fpga.rtl.bench`, started by :mod:`hardware.targets.fpga.rtl.backend`.
"""

from __future__ import annotations

from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent
#: the fixed Verilog sources, in compile order (the generated top goes last)
SOURCES = tuple(RTL_DIR / name for name in ("sdp_ram.v", "lif_neuron.v", "lif_lane.v", "lif_edge.v", "lif_layer.v"))
