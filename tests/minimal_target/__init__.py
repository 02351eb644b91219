"""A minimal target, ``mcu8``: one profile and one writer (docs/targets.md walks through it).

An 8-bit microcontroller's datapath: int8 weights, int16 biases, a 20-bit membrane that saturates,
a decay by multiplication (beta = code / 256, rounded down), spikes on ``>=``. Its writer puts
each layer's decay code and threshold in ``layers.csv``. It has no backend of its own, so its
bundles run on the integer reference, and no resource model.
"""

from __future__ import annotations

from pathlib import Path

from hardware.bundle import Bundle
from hardware.profile import Profile
from hardware.targets import Target, Writer

MCU8 = Profile(
    name="mcu8", description="8-bit MCU: int8 weights, 20-bit saturating membrane, beta = code/256 (floor)",
    weight_min=-128, weight_max=127, weight_step=1, weight_exp_max=0,
    bias_mant_min=-32767, bias_mant_max=32767, bias_exp_min=0, bias_exp_max=0,
    decay_form="multiply", decay_shift=8, decay_rounding="floor", current_stage=False,
    act_shift=0, vth_shift=0, vth_max=(1 << 19) - 1, threshold=">=",
    state_bits=20, current_overflow="checked", voltage_overflow="saturate",
    synapse_bits=32, synapse_overflow="checked", input_bits=24,
)


def write_layers(bundle: Bundle, directory: Path) -> tuple[str, ...]:
    """One row per layer: its name, neurons, decay code and threshold."""
    rows = ["node,neurons,decay_code,vth"]
    rows += [f"{n.name},{n.neurons},{n.dv},{n.vth}" for n in bundle.integer_graph.nodes]
    (directory / "layers.csv").write_text("\n".join(rows) + "\n")
    return ("layers.csv",)


TARGET = Target(
    name="mcu8",
    description="an 8-bit microcontroller (bundle, model.nir, layers.csv)",
    profiles=(MCU8,),
    writers=(Writer("layers", "layers.csv", write_layers),),
)
