"""The RTL design: synthesizable Verilog-2005 that runs an exported chain network (numpy only).

The design is four fixed modules and one generated top:

* ``sdp_ram.v``     simple dual-port RAM (one write port, one registered read port): the input
  memory;
* ``lif_neuron.v``  one neuron update of an FPGA profile, in three pipeline stages of one
  multiply or one adder each, a neuron entering every cycle (decay by multiplier or
  by shift, bias, saturation, threshold ``>=``, reset to 0): :meth:`hardware.profile.Profile.lif_step`;
* ``lif_lane.v``    one output-channel lane of a layer: its slice of the layer's memories
  (accumulator, weights, bias, membranes, spikes), its accumulate adder and its ``lif_neuron``;
* ``lif_layer.v``   one node and the edge into it (conv with shared kernels, or dense),
  time-multiplexed over its neurons, ``LANES`` output channels per cycle: event-driven
  accumulation, then one update pass that writes the spike buffer (the next layer's source);
* the top (:mod:`hardware.targets.fpga.rtl.chain` writes it from the FPGA tables' manifest): the input memory,
  one ``lif_layer`` per node, the step sequencer and the host's read port.

:mod:`hardware.targets.fpga.rtl.driver` is the cocotb test that drives the top sample by sample; it runs inside
the simulator, started by :mod:`hardware.targets.fpga.rtl.backend`.
"""

from __future__ import annotations

from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent
#: the fixed Verilog sources, in compile order (the generated top goes last)
SOURCES = tuple(RTL_DIR / name for name in ("sdp_ram.v", "lif_neuron.v", "lif_lane.v", "lif_layer.v"))
