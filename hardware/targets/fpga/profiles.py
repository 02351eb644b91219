"""The FPGA target's profiles: datapaths with int16 biases, a 16-bit saturating membrane and a
proven-wide accumulator. ``FPGA_MUL`` and ``FPGA_SHIFT`` have 8-bit weights and decay by a
multiplier or (multiplier-free) by a right shift; ``FPGA_MUL4`` is ``FPGA_MUL`` with 4-bit weights,
the narrowest. The RTL design (:mod:`hardware.targets.fpga.rtl`) computes each of them."""

from __future__ import annotations

from dataclasses import replace

from hardware.profile import Profile, ProfileError


def twos_complement_weights(bits: int) -> dict[str, int]:
    """``weight_min`` and ``weight_max`` of ``bits``-bit two's-complement weights: the word's whole
    range ``[-2^(bits-1), 2^(bits-1) - 1]``.

    The whole range, not a symmetric ``+-(2^(bits-1) - 1)``: the quantizer maps a layer's largest
    ``|W|`` onto ``weight_max`` (:mod:`export.quantize`), so the most negative word is written
    only for a negative weight clipped beyond that range (``--weight-percentile`` below 100 with
    ``--clip``), and there it is one more level that the datapath holds at no cost: the RTL
    sign-extends the word and never negates a weight, and the accumulator bound counts it. Loihi's
    mixed-sign weights are asymmetric the same way (``[-256, 254]``)."""
    if not 2 <= bits <= 16:
        raise ProfileError(f"weights of {bits} bits: choose 2 to 16")
    return {"weight_min": -(1 << (bits - 1)), "weight_max": (1 << (bits - 1)) - 1}


#: what every FPGA datapath shares: int16 biases (no exponent), a 16-bit membrane that saturates,
#: a 15-bit threshold compared with >= (the float model's comparison), no current stage, a
#: 24-bit accumulator that the export proves never overflows, and inputs no wider than that
#: accumulator's positive range (one input times a weight of 1 fits it); the weight width and
#: the decay are each profile's own
_FPGA = dict(
    weight_step=1, weight_exp_max=0,
    bias_mant_min=-(1 << 15) + 1, bias_mant_max=(1 << 15) - 1, bias_exp_min=0, bias_exp_max=0,
    current_stage=False, act_shift=0, vth_shift=0, vth_max=(1 << 15) - 1, threshold=">=",
    state_bits=16, current_overflow="checked", voltage_overflow="saturate", synapse_bits=24, synapse_overflow="checked",
    input_bits=24,
)

#: an FPGA datapath with one small multiplier per neuron update: an 11-bit decay code,
#: beta = code / 1024, rounded half up; 8-bit weights
FPGA_MUL = Profile(
    name="fpga-mul",
    description="FPGA: int8 weights, 16-bit saturating membrane, decay multiplier beta = code/1024 (round half up)",
    decay_form="multiply", decay_shift=10, decay_rounding="half-up", **twos_complement_weights(8), **_FPGA,
)

#: a multiplier-free FPGA datapath: the membrane leaks by a right shift, beta = 1 - 2^-k
FPGA_SHIFT = Profile(
    name="fpga-shift",
    description="FPGA, no multiplier: int8 weights, 16-bit saturating membrane, leak v - (v >>> k), beta = 1 - 2^-k",
    decay_form="shift", decay_shift=15, decay_rounding="floor", **twos_complement_weights(8), **_FPGA,
)

#: the narrowest FPGA datapath: ``FPGA_MUL`` with 4-bit weights, [-8, 7] (half the weight memory;
#: one hex digit per ``.mem`` word)
FPGA_MUL4 = replace(
    FPGA_MUL, name="fpga-mul4",
    description="FPGA, narrowest: 4-bit weights [-8, 7], otherwise fpga-mul (16-bit saturating membrane, "
                "decay multiplier beta = code/1024)",
    **twos_complement_weights(4),
)
